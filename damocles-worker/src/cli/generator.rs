//! `damocles-worker generator …`: build static files the config can point at (worker-spec §5.2).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use tracing::info;
use vc_processors::builtin::proofs::{create_tree_d, seal_proof_for_size, tree_d_path_in_dir};

use crate::config::SectorSize;

/// Generators.
#[derive(Debug, Subcommand)]
pub enum GeneratorCommand {
    /// Build `<path>/sc-02-data-tree-d.dat`, the data tree of an all-zero sector (for
    /// `processors.static_tree_d`); prints its path.
    TreeD {
        /// Sector size, e.g. `2KiB`, `32GiB`.
        #[arg(short = 's', long, value_name = "SIZE")]
        sector_size: SectorSize,
        /// Directory to write the tree into (created if missing).
        #[arg(short = 'p', long, value_name = "DIR")]
        path: PathBuf,
    },
}

impl GeneratorCommand {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
            GeneratorCommand::TreeD { sector_size, path } => {
                let (tree, comm_d) = static_tree_d(sector_size, &path)?;
                info!(sector_size = %sector_size, comm_d = ?comm_d, "tree-d built");
                println!("{}", tree.display());
                Ok(())
            }
        }
    }
}

/// Builds the tree-d of an all-zero sector of `size` into `dir`; answers its path and root.
///
/// The zero sector is a sparse temporary file in `dir` (removed afterwards), so no
/// sector-sized buffer is held in memory as damocles does.
pub fn static_tree_d(size: SectorSize, dir: &Path) -> Result<(PathBuf, [u8; 32])> {
    let proof = seal_proof_for_size(size.0)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the tree-d directory {}", dir.display()))?;
    let staged = tempfile::Builder::new()
        .prefix(".zero-sector-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a zero sector file in {}", dir.display()))?;
    staged
        .as_file()
        .set_len(size.0)
        .with_context(|| format!("sizing the zero sector file {}", staged.path().display()))?;
    let comm_d = create_tree_d(proof, staged.path(), dir)
        .with_context(|| format!("building the {size} tree-d in {}", dir.display()))?;
    Ok((tree_d_path_in_dir(dir), comm_d))
}

#[cfg(test)]
mod tests {
    use vc_processors::builtin::proofs::zero_piece_commitment;

    use super::*;

    #[test]
    fn the_2kib_zero_tree_has_the_zero_commitment() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("static/2k");
        let size: SectorSize = "2KiB".parse().expect("size");
        let (tree, comm_d) = static_tree_d(size, &dir).expect("tree-d");
        assert_eq!(tree, dir.join("sc-02-data-tree-d.dat"));
        // 64 leaves: 127 nodes of 32 bytes.
        assert_eq!(std::fs::metadata(&tree).expect("stat").len(), 127 * 32);
        assert_eq!(comm_d, zero_piece_commitment(2048).expect("zero comm"));
        let left: Vec<String> = std::fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            ["sc-02-data-tree-d.dat"],
            "the zero sector is removed"
        );
    }
}
