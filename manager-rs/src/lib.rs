//! damocles-manager: the manager of a damocles sealing cluster.
//!
//! It serves the worker-facing `Venus.*` API at `/rpc/v0` ([`rpc`]) over services with
//! private state: a sector's life from allocation to finalize ([`lifecycle`]), the workers'
//! pings ([`workers`]), the chain's views ([`chain::views`]). It keeps every sector's
//! state in RocksDB ([`kv`], [`sectors`]), manages the persist stores through objstore
//! ([`stores`]), batches chain messages ([`commit`]), queues deals ([`deals`]) and reaches a
//! chain through the [`chain::Chain`] trait, whose first implementation is an embedded devnet
//! that verifies real proofs ([`chain::devnet`]), proves WindowPoSt and WinningPoSt ([`post`]),
//! and runs its background tasks under one [`supervisor`].

pub mod attach;
pub mod chain;
pub mod cli;
pub mod commit;
pub mod config;
pub mod daemon;
pub mod deals;
pub mod error;
pub mod kv;
pub mod lifecycle;
pub mod piece_layout;
pub mod post;
pub mod proofs;
pub mod rpc;
pub mod sectors;
pub mod services;
pub mod stores;
pub mod supervisor;
pub mod util;
pub mod workers;

/// The manager's version string (`Version`).
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"), "-rs");
