//! damocles-manager-api: the worker-facing `Venus.*` API, shared by the manager (server) and
//! the worker (client).
//!
//! Empty until the manager issue lands: the wire types and the RPC trait come with it.
