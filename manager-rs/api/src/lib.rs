//! damocles-manager-api: the worker-facing `Venus.*` API, shared by the manager (server) and
//! the worker (client).
//!
//! - [`json`]: the JSON encodings of the Go types (base64 byte strings, `{"/": cid}`, …);
//! - [`types`]: every payload type with damocles' exact JSON;
//! - `rpc` (features `server` / `client`): the jsonrpsee traits with the wire method names.
//!
//! The transport is JSON-RPC 2.0 over HTTP POST (and websocket) at `/rpc/v0`, namespace
//! `Venus`, positional params.

pub mod json;
#[cfg(any(feature = "server", feature = "client"))]
pub mod rpc;
pub mod types;

/// The JSON-RPC path.
pub const RPC_PATH: &str = "/rpc/v0";
/// The application error code meaning the sector's state is not known (the worker aborts the
/// sector on it).
pub const ERR_SECTOR_STATE_NOT_FOUND: i32 = 11001;
