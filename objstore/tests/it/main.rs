//! objstore: the C example plugin through the loader (conformance and loader errors), panics
//! in Rust plugins, and a leak check of the C plugin under valgrind.

mod async_store;
mod cplugin;
mod panics;
