//! The worker's threads: sealing threads driven by planners, and wdpost threads.
//!
//! - [`thread`]: a sealing thread's loop over sectors, with its hot config;
//! - [`engine`]: drives one sector through a planner (plan, persist, run, report), with the
//!   environment every thread shares ([`engine::SealingEnv`], the manager as a
//!   [`crate::port::ManagerPort`]);
//! - [`sealer`]: the `sealer` planner's handlers (allocate … finalize);
//! - [`state`]: sector states, planner events, the sector record that the engine updates after
//!   every step (worker-spec §1.7, §2.0), and the `sealer` planner's transition table (§2.1);
//! - [`store`]: the thread's local sealing store: the `data/` files, the RocksDB metadb holding
//!   the sector record, and finalization (§1.8);
//! - [`failure`]: failure levels and how each is handled;
//! - [`control`]: what `worker list` shows, pause and resume, interruptible waits;
//! - [`supervise`]: restarts a thread whose body panicked;
//! - [`wdpost`]: the `wdpost` planner, which proves the manager's WindowPoSt jobs.
//!
//! Planners talk to the manager only through the port: nothing here knows the transport.

pub mod control;
pub mod engine;
pub mod failure;
pub mod sealer;
pub mod state;
pub mod store;
pub mod supervise;
pub mod thread;
pub mod wdpost;
