//! objstore: persistent sector storage behind one trait, with backends loaded as plugins.
//!
//! This crate will hold the `ObjectStore` trait, the versioned C ABI for plugins, the plugin
//! loader and the conformance suite every backend runs. It is empty until the objstore issue
//! lands: nothing here is usable yet, and nothing pretends to be.
