//! A Rust plugin that panics: the panic becomes an error on the host side, never an unwind
//! across the C boundary.

use std::sync::Arc;

use objstore::abi::{plugin_table, ObjstorePluginV1, Plugin};
use objstore::{
    ByteRange, Error, InstanceInfo, ObjectMeta, ObjectReader, ObjectStat, ObjectStore,
    ObjectWriter, PluginLibrary, Result, StoreConfig,
};

struct Panicky {
    config: StoreConfig,
}

impl ObjectStore for Panicky {
    fn config(&self) -> &StoreConfig {
        &self.config
    }
    fn info(&self) -> Result<InstanceInfo> {
        panic!("info exploded")
    }
    fn stat(&self, _path: &str) -> Result<ObjectStat> {
        panic!("stat exploded")
    }
    fn get(&self, _path: &str) -> Result<ObjectReader> {
        Ok(Box::new(PanickyReader))
    }
    fn get_range(&self, _path: &str, _range: ByteRange) -> Result<Vec<u8>> {
        panic!("get_range exploded")
    }
    fn writer(&self, _path: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(PanickyWriter))
    }
    fn delete(&self, _path: &str) -> Result<()> {
        Ok(())
    }
    fn list(&self, _prefix: &str) -> Result<Vec<ObjectMeta>> {
        panic!("list exploded")
    }
    fn local_path(&self, _path: &str) -> Result<Option<std::path::PathBuf>> {
        Ok(None)
    }
    fn full_path(&self, path: &str) -> String {
        path.to_string()
    }
}

struct PanickyReader;
impl std::io::Read for PanickyReader {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        panic!("read exploded")
    }
}

struct PanickyWriter;
impl ObjectWriter for PanickyWriter {
    fn write(&mut self, _data: &[u8]) -> Result<()> {
        panic!("write exploded")
    }
    fn commit(self: Box<Self>) -> Result<u64> {
        panic!("commit exploded")
    }
}

impl Plugin for Panicky {
    const NAME: &'static str = "panicky";
    fn open(config: StoreConfig) -> Result<Self> {
        if config.meta.contains_key("panic") {
            panic!("open exploded");
        }
        Ok(Panicky { config })
    }
}

static TABLE: ObjstorePluginV1 = plugin_table::<Panicky>();

#[test]
fn panics_in_a_rust_plugin_come_back_as_errors() {
    let lib = PluginLibrary::from_static(&TABLE).expect("linked-in plugin");
    assert_eq!(lib.name(), "panicky");

    let mut cfg = StoreConfig::new("p", "/nowhere");
    cfg.meta.insert("panic".into(), "1".into());
    let err = lib.open(cfg).expect_err("open panics");
    assert!(
        err.to_string()
            .contains("the plugin panicked: open exploded"),
        "{err}"
    );

    let store: Arc<dyn ObjectStore> =
        Arc::new(lib.open(StoreConfig::new("p", "/nowhere")).expect("open"));
    for (what, err) in [("info", store.info().err()), ("list", store.list("").err())] {
        let err = err.unwrap_or_else(|| panic!("{what} should fail"));
        assert!(
            err.to_string()
                .contains(&format!("the plugin panicked: {what} exploded")),
            "{err}"
        );
    }
    let err = store.stat("a").expect_err("stat");
    assert!(
        matches!(err, Error::Backend { .. }) && err.to_string().contains("stat exploded"),
        "{err}"
    );
    let err = store
        .get_range("a", ByteRange::new(0, 1))
        .expect_err("range");
    assert!(err.to_string().contains("get_range exploded"), "{err}");
    let mut reader = store.get("a").expect("reader");
    let err = std::io::Read::read(&mut reader, &mut [0u8; 4]).expect_err("read");
    assert!(err.to_string().contains("read exploded"), "{err}");
    let err = store.put("a", &mut &b"x"[..]).expect_err("put");
    assert!(err.to_string().contains("write exploded"), "{err}");
    let mut w = store.writer("a").expect("writer");
    let err = w.write(b"x").expect_err("write");
    assert!(err.to_string().contains("write exploded"), "{err}");
    drop(w);
    // The host process is still here, and the store still answers.
    store.delete("a").expect("delete works");
}
