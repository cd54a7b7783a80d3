//! A store for async code: every call runs on tokio's blocking pool, so a slow disk or a
//! remote service never stalls the runtime's worker threads.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::{ByteRange, InstanceInfo, ObjectMeta, ObjectStat, ObjectStore};

/// An [`ObjectStore`] wrapped for async callers.
#[derive(Clone)]
pub struct AsyncStore {
    inner: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for AsyncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncStore")
            .field("instance", &self.inner.instance())
            .finish()
    }
}

impl AsyncStore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        AsyncStore { inner }
    }

    /// The wrapped store, for blocking code.
    pub fn blocking(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&dyn ObjectStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| {
                Error::backend_msg(
                    self.inner.instance(),
                    op,
                    "",
                    format!("the blocking task failed: {e}"),
                )
            })?
    }

    /// See [`ObjectStore::info`].
    pub async fn info(&self) -> Result<InstanceInfo> {
        self.run("info", |s| s.info()).await
    }

    /// See [`ObjectStore::stat`].
    pub async fn stat(&self, path: &str) -> Result<ObjectStat> {
        let path = path.to_string();
        self.run("stat", move |s| s.stat(&path)).await
    }

    /// See [`ObjectStore::get_range`].
    pub async fn get_range(&self, path: &str, range: ByteRange) -> Result<Vec<u8>> {
        let path = path.to_string();
        self.run("get_range", move |s| s.get_range(&path, range))
            .await
    }

    /// See [`ObjectStore::get_ranges`].
    pub async fn get_ranges(&self, path: &str, ranges: Vec<ByteRange>) -> Result<Vec<Vec<u8>>> {
        let path = path.to_string();
        self.run("get_ranges", move |s| s.get_ranges(&path, &ranges))
            .await
    }

    /// Reads a whole object into memory (see [`ObjectStore::get`] for streaming).
    pub async fn get_all(&self, path: &str) -> Result<Vec<u8>> {
        let path = path.to_string();
        self.run("get", move |s| {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut s.get(&path)?, &mut out)
                .map_err(|e| Error::backend(s.instance(), "get", &path, e))?;
            Ok(out)
        })
        .await
    }

    /// Writes an object from memory (see [`ObjectStore::put`] for streaming).
    pub async fn put_bytes(&self, path: &str, data: Vec<u8>) -> Result<u64> {
        let path = path.to_string();
        self.run("put", move |s| s.put(&path, &mut data.as_slice()))
            .await
    }

    /// See [`ObjectStore::delete`].
    pub async fn delete(&self, path: &str) -> Result<()> {
        let path = path.to_string();
        self.run("delete", move |s| s.delete(&path)).await
    }

    /// See [`ObjectStore::list`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = prefix.to_string();
        self.run("list", move |s| s.list(&prefix)).await
    }
}
