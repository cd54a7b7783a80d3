//! damocles-worker: the sealing worker of a damocles cluster.
//!
//! It offers `damocles-worker processor <stage>`, which runs any builtin stage as an external
//! processor child (under this worker, under damocles' worker, or as the manager's ext-prover),
//! and the daemon (`damocles-worker daemon`): its configuration ([`config`]), the sealing and
//! wdpost threads with their planners ([`sealing`]), the manager they talk to through
//! [`port::ManagerPort`] (implemented over JSON-RPC by [`client`]), the processors of every
//! stage ([`processors`]), the stage limits ([`limits`]) and the control server ([`server`]).

pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod limits;
pub mod port;
pub mod processors;
pub mod sealing;
pub mod server;
