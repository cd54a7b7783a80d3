//! The state database: RocksDB with one column family per collection of damocles (manager-spec
//! §1.2), keys laid out as damocles lays them out. Every write that precedes an acknowledgement
//! is synced.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Collections (column families).
pub mod cf {
    /// Numbers and online sector states.
    pub const META: &str = "meta";
    /// Offline sector states.
    pub const OFFLINE_META: &str = "offline_meta";
    /// Where sealed files are.
    pub const SECTOR_INDEX: &str = "sector-index";
    /// Store reservations.
    pub const COMMON: &str = "common";
    /// Worker registry.
    pub const WORKER: &str = "worker";
    /// Deals and pieces (our addition).
    pub const DEALS: &str = "deals";
    /// The embedded devnet's state (our addition).
    pub const CHAIN: &str = "chain";
    /// The worker-prover's WindowPoSt jobs.
    pub const PROVER: &str = "prover";
    /// Every collection.
    pub const ALL: [&str; 8] = [
        META,
        OFFLINE_META,
        SECTOR_INDEX,
        COMMON,
        WORKER,
        DEALS,
        CHAIN,
        PROVER,
    ];
}

/// The database handle, cheap to clone.
#[derive(Clone)]
pub struct Kv {
    db: Arc<DB>,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv").field("path", &self.db.path()).finish()
    }
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

/// One change of a [`Kv::write`] batch.
#[derive(Debug)]
pub enum Op {
    /// Sets a key.
    Put(&'static str, Vec<u8>, Vec<u8>),
    /// Deletes a key.
    Del(&'static str, Vec<u8>),
}

impl Op {
    /// A put of a JSON value.
    pub fn put_json<T: Serialize>(cf: &'static str, key: impl Into<Vec<u8>>, v: &T) -> Result<Op> {
        Ok(Op::Put(
            cf,
            key.into(),
            serde_json::to_vec(v).context("encoding a record")?,
        ))
    }
}

impl Kv {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Kv> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the database directory {}", path.display()))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = cf::ALL
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).with_context(|| {
            format!(
                "opening the database {} (is another damocles-manager using it?)",
                path.display()
            )
        })?;
        Ok(Kv { db: Arc::new(db) })
    }

    fn handle(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .with_context(|| format!("column family {name} missing"))
    }

    /// Reads a key.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.handle(cf)?, key)
            .with_context(|| format!("reading {cf}/{}", String::from_utf8_lossy(key)))
    }

    /// Reads a JSON record.
    pub fn get_json<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>> {
        match self.get(cf, key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).with_context(|| {
                format!("decoding the record {cf}/{}", String::from_utf8_lossy(key))
            }),
        }
    }

    /// Writes a key, synced.
    pub fn put(&self, cf: &'static str, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(vec![Op::Put(cf, key.to_vec(), value.to_vec())])
    }

    /// Writes a JSON record, synced.
    pub fn put_json<T: Serialize>(&self, cf: &'static str, key: &[u8], v: &T) -> Result<()> {
        self.write(vec![Op::put_json(cf, key.to_vec(), v)?])
    }

    /// Deletes a key, synced.
    pub fn delete(&self, cf: &'static str, key: &[u8]) -> Result<()> {
        self.write(vec![Op::Del(cf, key.to_vec())])
    }

    /// Applies several changes atomically, synced.
    pub fn write(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                Op::Put(cf, k, v) => batch.put_cf(self.handle(cf)?, k, v),
                Op::Del(cf, k) => batch.delete_cf(self.handle(cf)?, k),
            }
        }
        self.db
            .write_opt(batch, &synced())
            .context("writing to the database")
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    pub fn scan(&self, cf: &str, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.handle(cf)?,
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.with_context(|| format!("scanning {cf}"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Every JSON record under `prefix`, with its key.
    pub fn scan_json<T: DeserializeOwned>(
        &self,
        cf: &str,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>> {
        self.scan(cf, prefix)?
            .into_iter()
            .map(|(k, v)| {
                let t = serde_json::from_slice(&v).with_context(|| {
                    format!("decoding the record {cf}/{}", String::from_utf8_lossy(&k))
                })?;
                Ok((k, t))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_survive_reopening_and_scans_stop_at_the_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let kv = Kv::open(dir.path()).expect("open");
            kv.put(cf::META, b"a/1", b"x").expect("put");
            kv.put(cf::META, b"a/2", b"y").expect("put");
            kv.put(cf::META, b"b/1", b"z").expect("put");
            kv.write(vec![
                Op::Del(cf::META, b"a/2".to_vec()),
                Op::Put(cf::WORKER, b"w".to_vec(), b"1".to_vec()),
            ])
            .expect("batch");
        }
        let kv = Kv::open(dir.path()).expect("reopen");
        let a: Vec<_> = kv
            .scan(cf::META, b"a/")
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(a, vec![b"a/1".to_vec()]);
        assert_eq!(kv.get(cf::WORKER, b"w").expect("get"), Some(b"1".to_vec()));
        let second = Kv::open(dir.path());
        assert!(
            second.is_err(),
            "a second open of the same database must fail"
        );
    }
}
