//! The process-level tests of the damocles cluster, and what they share.
//!
//! `it/` holds the tests that start the real binaries: the manager alone (`api`, `params`,
//! `restart`, `stores`) or the manager with workers on the devnet (`cluster`, `e2e`,
//! `post_s3`, `ext_python`), with their helpers (`common` for a manager in a temporary home,
//! `worker` for a worker beside it, `stall` for a proxy that holds back chosen requests).
//! [`bins`] finds the binaries and builds them on first use. `support/golden_json.rs` holds the
//! golden-JSON checks the crates' own tests include. See `docs/architecture.md` for where each
//! kind of test goes.

pub mod bins;
