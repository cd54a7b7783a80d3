//! The damocles processor protocol and the builtin processors.
//!
//! A *processor* performs one stage of sealing or proving (add pieces, tree-d, PC1, PC2, C2,
//! SnapDeals encode and prove, transfer, WindowPoSt, WinningPoSt, unseal). It runs in-process, or
//! as a child process that speaks the line protocol of [`protocol`] over stdin/stdout, which lets
//! any executable, in any language, replace a builtin stage.
//!
//! - [`protocol`]: the [`Task`] and [`Processor`] traits and the request/response envelopes;
//! - [`consumer`]: the child-side main loop ([`consumer::run_consumer`]);
//! - [`producer`]: the parent side, which starts, supervises and talks to a child
//!   ([`producer::Producer`]);
//! - [`layout`]: the sector layout (sector names, store directories, cache files, sector sizes,
//!   `sectorstore.json`) that every crate takes from here;
//! - [`sys`]: start-up placement of a child (NUMA memory preference, cgroup cpuset);
//! - [`b64serde`]: base64 byte strings, the one non-array byte encoding of the wire format;
//! - `builtin` (feature `builtin`): every task type with its exact JSON, the processors built on
//!   `filecoin-proofs-api`, the `processor <stage>` entry point, parameter generation, and the
//!   in-process helpers (C1, synthetic proofs) the worker needs.
//!
//! Without `builtin` the crate is light: serde, crossbeam and libc only.

pub mod b64serde;
pub mod consumer;
pub mod daemon_env;
pub mod layout;
pub mod producer;
pub mod protocol;
pub mod sys;

#[cfg(feature = "builtin")]
pub mod builtin;

pub use consumer::{run_consumer, ConsumerOptions};
pub use producer::{Producer, ProducerBuilder, ProducerConfig, ProducerError};
pub use protocol::{DaemonProcessor, Processor, Request, Response, Task};
