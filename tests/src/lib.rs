//! End-to-end tests of the whole cluster (manager and workers as real processes).
//!
//! The harness and the tests arrive with the manager and worker issues. Until then the
//! process-level tests live beside each binary (`damocles-worker/tests/`).
