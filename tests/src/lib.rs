//! Shared test support, and the future home of the end-to-end tests of the whole cluster.
//!
//! Today the process-level tests that start both binaries live in `manager-rs/tests/it`
//! (`cluster`, `e2e`, `post_s3`, `ext_python`, `restart`, …) and the worker's own in
//! `damocles-worker/tests/it`; `tests/support/golden_json.rs` holds the golden-JSON checks the
//! crates' tests include. See `docs/architecture.md` for where each kind of test goes.
