//! The persistent side of a sealing thread: what survives a restart.
//!
//! - [`state`]: sector states, planner events, the sector record that the engine updates after
//!   every step (worker-spec §1.7, §2.0), and the `sealer` planner's transition table (§2.1);
//! - [`store`]: the thread's local sealing store: the `data/` file layout, the RocksDB metadb
//!   holding the sector record, and finalization (§1.8).
//!
//! The engine loop, the handlers and the other planners live elsewhere; this module has no
//! knowledge of the manager or of processors.

pub mod control;
pub mod engine;
pub mod failure;
pub mod sealer;
pub mod state;
pub mod store;
pub mod thread;
pub mod wdpost;
