//! A method of an API as its server declares it: wire name, param count, permission.

use crate::Perm;

/// One method of a table: its wire name, how many positional params it takes, and the least
/// permission that may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// Wire name, e.g. `Venus.AllocateSector`.
    pub name: &'static str,
    /// Number of positional params (a call with another number is refused with -32602).
    pub params: usize,
    /// Least permission of a caller.
    pub perm: Perm,
}

impl Method {
    /// A table row.
    pub const fn new(name: &'static str, params: usize, perm: Perm) -> Method {
        Method { name, params, perm }
    }
}
