//! Ranged reads and puts: the file read directly, the fs plugin and the S3 plugin (against the
//! loopback S3 test server), both loaded through the C ABI.
//!
//! - ranged reads: 16 KiB at random offsets of a 256 MiB object, with 1 and 64 requests in
//!   flight: latency p50/p99 and throughput;
//! - put: a 1 GiB object streamed in.
//!
//! Printed as figures and as ratios plugin / direct. `cargo bench -p objstore-s3`;
//! `OBJSTORE_BENCH_SECS` sets the seconds per read case (default 5), `OBJSTORE_BENCH_PUT_MIB`
//! the put size (default 1024).

#[path = "../tests/it/server.rs"]
#[allow(dead_code)]
mod server;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use objstore::conformance::PatternReader;
use objstore::{ByteRange, ObjectStore, StoreConfig};

const OBJECT: u64 = 256 << 20;
const RANGE: u64 = 16 << 10;

/// One way of reading 16 KiB at an offset.
trait RangeReader: Send + Sync {
    fn read(&self, offset: u64) -> usize;
}

struct DirectFile(File);

impl RangeReader for DirectFile {
    fn read(&self, offset: u64) -> usize {
        let mut buf = vec![0u8; RANGE as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = self
                .0
                .read_at(&mut buf[done..], offset + done as u64)
                .expect("pread");
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }
}

struct Store(Arc<dyn ObjectStore>, &'static str);

impl RangeReader for Store {
    fn read(&self, offset: u64) -> usize {
        self.0
            .get_range(self.1, ByteRange::new(offset, RANGE))
            .expect("get_range")
            .len()
    }
}

struct ReadFigures {
    p50: Duration,
    p99: Duration,
    mib_s: f64,
    ops: usize,
}

fn offsets(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % (OBJECT - RANGE)) & !4095
    }
}

fn read_case(reader: Arc<dyn RangeReader>, in_flight: usize, secs: u64) -> ReadFigures {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..in_flight)
        .map(|t| {
            let reader = reader.clone();
            std::thread::spawn(move || {
                let mut next = offsets(0x1234_5678 + t as u64);
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let n = reader.read(next());
                    lat.push(t0.elapsed());
                    assert_eq!(n as u64, RANGE);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("reader"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pick = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    ReadFigures {
        p50: pick(0.5),
        p99: pick(0.99),
        mib_s: all.len() as f64 * RANGE as f64 / (1 << 20) as f64 / elapsed,
        ops: all.len(),
    }
}

fn put_direct(path: &Path, size: u64) -> f64 {
    let t = Instant::now();
    let mut f = File::create(path).expect("create");
    std::io::copy(&mut PatternReader::new(9, size), &mut f).expect("write");
    f.flush().expect("flush");
    f.sync_all().expect("sync");
    size as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
}

fn put_store(store: &dyn ObjectStore, path: &str, size: u64) -> f64 {
    let t = Instant::now();
    let n = store
        .put(path, &mut PatternReader::new(9, size))
        .expect("put");
    assert_eq!(n, size);
    size as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let secs: u64 = std::env::var("OBJSTORE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 5 } else { 1 });
    let put_mib: u64 = std::env::var("OBJSTORE_BENCH_PUT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1024 } else { 64 });

    let dir = tempfile::tempdir().expect("tmp");
    let root: PathBuf = dir.path().join("fs");
    std::fs::create_dir_all(&root).expect("root");
    let fs = Arc::new(
        objstore::conformance::built_plugin("fs")
            .open(StoreConfig::new("bench-fs", root.to_string_lossy()))
            .expect("fs plugin"),
    ) as Arc<dyn ObjectStore>;
    let server = server::S3Server::start();
    let mut s3cfg = StoreConfig::new("bench-s3", "");
    for (k, v) in [
        ("Endpoint", server.endpoint.as_str()),
        ("Bucket", server::BUCKET),
        ("AccessKey", server::ACCESS_KEY),
        ("SecretKey", server::SECRET_KEY),
    ] {
        s3cfg.meta.insert(k.into(), v.into());
    }
    let s3 = Arc::new(
        objstore::conformance::built_plugin("s3")
            .open(s3cfg)
            .expect("s3 plugin"),
    ) as Arc<dyn ObjectStore>;

    // The 256 MiB object, in both stores.
    fs.put("bench/obj", &mut PatternReader::new(1, OBJECT))
        .expect("fs put");
    s3.put("bench/obj", &mut PatternReader::new(1, OBJECT))
        .expect("s3 put");
    let direct: Arc<dyn RangeReader> = Arc::new(DirectFile(
        File::open(root.join("bench/obj")).expect("open"),
    ));
    let fsr: Arc<dyn RangeReader> = Arc::new(Store(fs.clone(), "bench/obj"));
    let s3r: Arc<dyn RangeReader> = Arc::new(Store(s3.clone(), "bench/obj"));

    println!("ranged reads: 16 KiB at random offsets of a 256 MiB object, {secs} s per case");
    println!(
        "{:<10} {:<12} {:>12} {:>12} {:>12} {:>10} {:>16}",
        "in flight", "reader", "p50", "p99", "MiB/s", "reads", "MiB/s vs direct"
    );
    for in_flight in [1usize, 64] {
        let d = read_case(direct.clone(), in_flight, secs);
        for (name, r) in [
            ("direct", &direct),
            ("fs plugin", &fsr),
            ("s3 plugin", &s3r),
        ] {
            let f = if name == "direct" {
                ReadFigures { ..d }
            } else {
                read_case(r.clone(), in_flight, secs)
            };
            println!(
                "{:<10} {:<12} {:>12} {:>12} {:>12.1} {:>10} {:>16.3}",
                in_flight,
                name,
                us(f.p50),
                us(f.p99),
                f.mib_s,
                f.ops,
                f.mib_s / d.mib_s
            );
        }
    }

    let size = put_mib << 20;
    println!();
    println!("put: one {put_mib} MiB object, streamed");
    let d = put_direct(&root.join("direct-put"), size);
    let f = put_store(&*fs, "bench/put", size);
    let s = put_store(&*s3, "bench/put", size);
    println!("{:<12} {:>10} {:>16}", "writer", "MiB/s", "vs direct");
    for (name, v) in [("direct", d), ("fs plugin", f), ("s3 plugin", s)] {
        println!("{:<12} {:>10.1} {:>16.3}", name, v, v / d);
    }
}
