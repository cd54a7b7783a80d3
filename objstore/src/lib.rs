//! objstore: persistent sector storage behind one trait, with backends loaded as plugins.
//!
//! - [`ObjectStore`]: the blocking trait every backend implements (stat, streaming get, ranged
//!   and multi-range gets, streaming put, delete, list, local paths), with the typed
//!   [`Error`]s every backend reports alike;
//! - [`path`]: what an object path may be;
//! - [`abi`]: the versioned C ABI of plugins (`include/objstore.h`) and
//!   [`export_plugin!`] for Rust plugins;
//! - [`plugin`]: the host side, loading a plugin library and opening stores through it;
//! - `AsyncStore` (feature `tokio`): the same store for async code, run on the blocking pool;
//! - `conformance` (feature `conformance`): the suite every backend must pass.
//!
//! The store knows nothing about sectors: callers name objects by path
//! (`sealed/s-t01000-1`, `cache/s-t01000-1/p_aux`).

pub mod abi;
pub mod error;
pub mod path;
pub mod plugin;
pub mod store;

#[cfg(feature = "tokio")]
mod async_store;
#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(feature = "tokio")]
pub use async_store::AsyncStore;
pub use error::{Error, Result};
pub use plugin::{LoadError, PluginLibrary, PluginStore};
pub use store::{
    ByteRange, InstanceInfo, ObjectMeta, ObjectReader, ObjectStat, ObjectStore, ObjectWriter,
    StoreConfig,
};
