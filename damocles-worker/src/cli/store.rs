//! `damocles-worker store …`: prepare store directories (worker-spec §1.8, §5.2).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tracing::info;

use crate::sealing::store::SealingStore;

/// Store preparation.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Initialise sealing stores: creates each location with its parents, `.holder` (refused
    /// if it exists), `data/` and the `meta/` database. Every location is tried; exits non-zero
    /// naming the ones that failed (damocles logs them and exits 0).
    SealingInit {
        /// Location of a sealing store; repeat or list several.
        #[arg(short = 'l', long = "loc", value_name = "DIR", required = true, num_args = 1..)]
        locations: Vec<PathBuf>,
    },
    /// Create persist store directories (`mkdir -p`; no `sectorstore.json`). Every location is
    /// tried; exits non-zero naming the ones that failed.
    FileInit {
        /// Location of a persist store; repeat or list several.
        #[arg(short = 'l', long = "loc", value_name = "DIR", required = true, num_args = 1..)]
        locations: Vec<PathBuf>,
    },
}

impl StoreCommand {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
            StoreCommand::SealingInit { locations } => for_each(&locations, "sealing store", |l| {
                SealingStore::init(l, true).map(drop)
            }),
            StoreCommand::FileInit { locations } => for_each(&locations, "persist store", |l| {
                std::fs::create_dir_all(l)
                    .with_context(|| format!("creating persist store directory {}", l.display()))
            }),
        }
    }
}

/// Runs `init` on every location, logging each success; fails naming every location that
/// failed, with its error.
fn for_each(
    locations: &[PathBuf],
    what: &str,
    init: impl Fn(&std::path::Path) -> Result<()>,
) -> Result<()> {
    let mut failed = Vec::new();
    for loc in locations {
        match init(loc) {
            Ok(()) => info!(location = %loc.display(), "{what} initialised"),
            Err(e) => failed.push(format!("{}: {e:#}", loc.display())),
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} {what} locations failed: {}",
            failed.len(),
            locations.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::store::{DATA_DIR, HOLDER_FILE, META_DIR};

    #[test]
    fn sealing_init_creates_every_store_and_names_the_failures() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("deep/a");
        let b = tmp.path().join("b");
        StoreCommand::SealingInit {
            locations: vec![a.clone(), b.clone()],
        }
        .run()
        .expect("init");
        for loc in [&a, &b] {
            assert!(loc.join(HOLDER_FILE).is_file());
            assert!(loc.join(DATA_DIR).is_dir());
            assert!(loc.join(META_DIR).is_dir());
        }

        let c = tmp.path().join("c");
        let err = StoreCommand::SealingInit {
            locations: vec![a.clone(), c.clone()],
        }
        .run()
        .expect_err("a is initialised");
        let msg = format!("{err:#}");
        assert!(msg.contains(&a.display().to_string()), "{msg}");
        assert!(!msg.contains(&c.display().to_string()), "{msg}");
        assert!(c.join(HOLDER_FILE).is_file(), "the others are still done");
    }

    #[test]
    fn file_init_is_mkdir_p() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("x/y/z");
        StoreCommand::FileInit {
            locations: vec![a.clone(), a.clone()],
        }
        .run()
        .expect("init");
        assert!(a.is_dir());
    }
}
