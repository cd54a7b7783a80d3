//! damocles-worker: the sealing worker of a damocles cluster.
//!
//! It offers `damocles-worker processor <stage>`, which runs any builtin stage as an external
//! processor child (under this worker, under damocles' worker, or as the manager's ext-prover),
//! the worker's configuration ([`config`]) and the persistent side of a sealing thread
//! ([`sealing`]). The daemon loop and the planners are being built on these.

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod limits;
pub mod processors;
pub mod sealing;
pub mod server;
