//! The permissions a token grants, from least to most.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A permission. Each includes the ones before it: a `write` caller may `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Perm {
    /// Views: nothing changes.
    Read,
    /// What a worker does: sealing calls, reports, reservations.
    Write,
    /// Signing messages (kept for Lotus and sophon-auth tokens; no method needs it yet).
    Sign,
    /// State surgery, store attach, token issue.
    Admin,
}

impl Perm {
    /// Every permission, least first.
    pub const ALL: [Perm; 4] = [Perm::Read, Perm::Write, Perm::Sign, Perm::Admin];

    /// The name in tokens and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Perm::Read => "read",
            Perm::Write => "write",
            Perm::Sign => "sign",
            Perm::Admin => "admin",
        }
    }

    /// The `Allow` list of a token with this permission, as Lotus issues it (`write` →
    /// `["read","write"]`).
    pub fn allow_list(self) -> Vec<Perm> {
        Perm::ALL.into_iter().filter(|p| *p <= self).collect()
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission name that is none of `read`, `write`, `sign`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?}: use read, write, sign or admin")]
pub struct UnknownPerm(pub String);

impl FromStr for Perm {
    type Err = UnknownPerm;

    fn from_str(s: &str) -> Result<Self, UnknownPerm> {
        Perm::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPerm(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_ordered_and_lists_are_lotus_lists() {
        assert!(Perm::Read < Perm::Write && Perm::Sign < Perm::Admin);
        assert_eq!(Perm::Write.allow_list(), vec![Perm::Read, Perm::Write]);
        assert_eq!(Perm::Admin.allow_list(), Perm::ALL.to_vec());
        for p in Perm::ALL {
            assert_eq!(p.as_str().parse::<Perm>(), Ok(p));
        }
        let e = "root".parse::<Perm>().expect_err("root");
        assert!(e.to_string().contains("\"root\""), "{e}");
    }
}
