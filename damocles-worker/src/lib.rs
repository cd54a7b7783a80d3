//! damocles-worker: the sealing worker of a damocles cluster.
//!
//! So far it offers `damocles-worker processor <stage>`, which runs any builtin stage as an
//! external processor child (under this worker, under damocles' worker, or as the manager's
//! ext-prover). The daemon, its sealing threads and planners come with the worker issue.

pub mod cli;
