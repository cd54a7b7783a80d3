//! Builtin tasks and processors on `filecoin-proofs-api` (feature `builtin`).
//!
//! - [`tasks`]: every task and output type with damocles' exact JSON;
//! - [`processors`]: [`BuiltinProcessor`], which performs them all in this process;
//! - [`proofs`]: helpers shared with the worker (prover id, tree-d, C1, synthetic proofs, …);
//! - [`params`]: generation and check of Groth16 parameters for test sector sizes;
//! - [`post_fetch`]: PoSt of sectors in object stores, from the challenged ranges only;
//! - [`pools`]: the proof libraries' thread pools, created at a chosen CPU priority;
//! - [`cli`]: the reusable `processor <stage>` entry point.

pub mod cli;
mod fsutil;
pub mod params;
pub mod pools;
pub mod post_fetch;
pub mod processors;
pub mod proofs;
pub mod tasks;

pub use fsutil::{
    create_dir_all_durable, is_temp_name, spawn_temp_sweep, sweep_temp_files, sync_paths, Swept,
    SWEEP_MIN_AGE,
};
pub use processors::BuiltinProcessor;
