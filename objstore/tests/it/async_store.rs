//! `AsyncStore`: a blocking store used from async code, on the blocking pool.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use objstore::conformance::Harness;
use objstore::{
    AsyncStore, ByteRange, Error, InstanceInfo, ObjectMeta, ObjectReader, ObjectStat, ObjectStore,
    ObjectWriter, Result, StoreConfig,
};

/// Delegates to a real store and records the threads that call it.
struct Recording {
    inner: Arc<dyn ObjectStore>,
    threads: Mutex<Vec<ThreadId>>,
}

impl Recording {
    fn seen(&self) {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::thread::current().id());
    }
}

impl ObjectStore for Recording {
    fn config(&self) -> &StoreConfig {
        self.inner.config()
    }
    fn info(&self) -> Result<InstanceInfo> {
        self.seen();
        self.inner.info()
    }
    fn stat(&self, path: &str) -> Result<ObjectStat> {
        self.seen();
        self.inner.stat(path)
    }
    fn get(&self, path: &str) -> Result<ObjectReader> {
        self.seen();
        self.inner.get(path)
    }
    fn get_range(&self, path: &str, range: ByteRange) -> Result<Vec<u8>> {
        self.seen();
        self.inner.get_range(path, range)
    }
    fn get_ranges(&self, path: &str, ranges: &[ByteRange]) -> Result<Vec<Vec<u8>>> {
        self.seen();
        self.inner.get_ranges(path, ranges)
    }
    fn writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>> {
        self.seen();
        self.inner.writer(path)
    }
    fn delete(&self, path: &str) -> Result<()> {
        self.seen();
        self.inner.delete(path)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.seen();
        self.inner.list(prefix)
    }
    fn local_path(&self, path: &str) -> Result<Option<std::path::PathBuf>> {
        self.inner.local_path(path)
    }
    fn full_path(&self, path: &str) -> String {
        self.inner.full_path(path)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn async_callers_get_the_same_store_off_the_runtime_thread() {
    let h = crate::cplugin::harness();
    let recording = Arc::new(Recording {
        inner: h.open(false),
        threads: Mutex::new(Vec::new()),
    });
    let store = AsyncStore::new(recording.clone());
    let runtime_thread = std::thread::current().id();

    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        store.put_bytes("a/obj", data.clone()).await.expect("put"),
        data.len() as u64
    );
    assert_eq!(
        store.stat("a/obj").await.expect("stat").size,
        data.len() as u64
    );
    assert_eq!(store.get_all("a/obj").await.expect("get"), data);
    assert_eq!(
        store
            .get_range("a/obj", ByteRange::new(10, 5))
            .await
            .expect("range"),
        &data[10..15]
    );
    let parts = store
        .get_ranges("a/obj", vec![ByteRange::new(0, 2), ByteRange::new(100, 3)])
        .await
        .expect("ranges");
    assert_eq!(parts, vec![data[0..2].to_vec(), data[100..103].to_vec()]);
    assert_eq!(store.list("a").await.expect("list").len(), 1);
    store.delete("a/obj").await.expect("delete");
    assert!(matches!(
        store.stat("a/obj").await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.info().await.expect("info").kind, "memory");

    let threads = recording
        .threads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        threads.len() >= 9,
        "every call reached the store: {threads:?}"
    );
    assert!(
        threads.iter().all(|t| *t != runtime_thread),
        "no store call ran on the runtime's own thread"
    );
}
