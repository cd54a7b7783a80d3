//! damocles-manager: the manager of a damocles sealing cluster.
//!
//! So far it offers the parameter tooling (`util params generate|check`); the daemon, the
//! worker-facing API and the devnet chain come with their own issues.

pub mod cli;
