//! The `processor <stage>` entry point: run one builtin stage as a child process.
//!
//! Any binary can offer it by flattening [`ProcessorCommand`] into its clap CLI and calling
//! [`run`]; `damocles-worker processor <stage>` does. The child speaks the protocol on
//! stdin/stdout and logs to stderr.

use anyhow::Result;
use tracing::warn;

use super::processors::BuiltinProcessor;
use super::tasks::*;
use crate::consumer::{run_consumer, ConsumerOptions};
use crate::protocol::Task;

/// Options every stage accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The most requests this child runs at once (0: no limit beyond 256).
    #[arg(
        long = "max-concurrent",
        env = "VC_PROCESSOR_MAX_CONCURRENT",
        default_value_t = 0
    )]
    pub max_concurrent: usize,
}

/// Options of the `pc1` stage.
#[derive(Debug, Clone, clap::Args)]
pub struct Pc1Args {
    /// Directory prefix of hugepage memory files (damocles' fork only).
    #[arg(
        long = "hugepage-files-path",
        alias = "hugepage_files_path",
        env = "HUGEPAGE_FILES_PATH"
    )]
    pub hugepage_files_path: Option<String>,
    /// Pattern of hugepage memory files (damocles' fork only).
    #[arg(
        long = "hugepage-files-path-pattern",
        alias = "hugepage_files_path_pattern",
        env = "HUGEPAGE_FILES_PATH_PATTERN"
    )]
    pub hugepage_files_path_pattern: Option<String>,
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options of the `transfer` stage.
#[derive(Debug, Clone, clap::Args)]
pub struct TransferArgs {
    /// Never make symlinks: copy even when a route allows links.
    #[arg(
        long = "disable-link",
        alias = "disable_link",
        env = "DISABLE_LINK",
        value_parser = clap::builder::FalseyValueParser::new(),
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub disable_link: bool,
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The stage to serve.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ProcessorCommand {
    /// Write pieces into a staged file.
    #[command(name = "add_pieces", alias = "add-pieces")]
    AddPieces(CommonArgs),
    /// Build the data tree of a staged file.
    #[command(name = "tree_d", alias = "tree-d")]
    TreeD(CommonArgs),
    /// PreCommit phase 1.
    #[command(name = "pc1")]
    Pc1(Pc1Args),
    /// PreCommit phase 2.
    #[command(name = "pc2")]
    Pc2(CommonArgs),
    /// Commit phase 2 (the PoRep SNARK).
    #[command(name = "c2")]
    C2(CommonArgs),
    /// SnapDeals encode.
    #[command(name = "snap_encode", alias = "snap-encode")]
    SnapEncode(CommonArgs),
    /// SnapDeals prove.
    #[command(name = "snap_prove", alias = "snap-prove")]
    SnapProve(CommonArgs),
    /// Copy or link sector files.
    #[command(name = "transfer")]
    Transfer(TransferArgs),
    /// WindowPoSt.
    #[command(name = "window_post", alias = "window-post")]
    WindowPost(CommonArgs),
    /// WinningPoSt.
    #[command(name = "winning_post", alias = "winning-post")]
    WinningPost(CommonArgs),
    /// Unseal a range of a sector.
    #[command(name = "unseal")]
    Unseal(CommonArgs),
}

impl ProcessorCommand {
    /// The stage name this command serves.
    pub fn stage(&self) -> &'static str {
        match self {
            ProcessorCommand::AddPieces(_) => AddPieces::STAGE,
            ProcessorCommand::TreeD(_) => TreeD::STAGE,
            ProcessorCommand::Pc1(_) => PC1::STAGE,
            ProcessorCommand::Pc2(_) => PC2::STAGE,
            ProcessorCommand::C2(_) => C2::STAGE,
            ProcessorCommand::SnapEncode(_) => SnapEncode::STAGE,
            ProcessorCommand::SnapProve(_) => SnapProve::STAGE,
            ProcessorCommand::Transfer(_) => Transfer::STAGE,
            ProcessorCommand::WindowPost(_) => WindowPoSt::STAGE,
            ProcessorCommand::WinningPost(_) => WinningPoSt::STAGE,
            ProcessorCommand::Unseal(_) => Unseal::STAGE,
        }
    }

    fn common(&self) -> &CommonArgs {
        match self {
            ProcessorCommand::Pc1(a) => &a.common,
            ProcessorCommand::Transfer(a) => &a.common,
            ProcessorCommand::AddPieces(c)
            | ProcessorCommand::TreeD(c)
            | ProcessorCommand::Pc2(c)
            | ProcessorCommand::C2(c)
            | ProcessorCommand::SnapEncode(c)
            | ProcessorCommand::SnapProve(c)
            | ProcessorCommand::WindowPost(c)
            | ProcessorCommand::WinningPost(c)
            | ProcessorCommand::Unseal(c) => c,
        }
    }
}

/// Serves `cmd`'s stage on stdin/stdout until stdin ends.
pub fn run(cmd: ProcessorCommand) -> Result<()> {
    let mut options = ConsumerOptions::default();
    if cmd.common().max_concurrent > 0 {
        options.max_concurrent = cmd.common().max_concurrent;
    }
    let builtin = BuiltinProcessor::from_env();
    match cmd {
        ProcessorCommand::AddPieces(_) => run_consumer::<AddPieces, _>(builtin, options)?,
        ProcessorCommand::TreeD(_) => run_consumer::<TreeD, _>(builtin, options)?,
        ProcessorCommand::Pc1(args) => {
            if args.hugepage_files_path.is_some() || args.hugepage_files_path_pattern.is_some() {
                warn!(
                    "hugepage memory files are ignored: the upstream proof library has no \
                     hugepage memory pool (a feature of damocles' fork); PC1 uses ordinary memory"
                );
            }
            run_consumer::<PC1, _>(builtin, options)?
        }
        ProcessorCommand::Pc2(_) => run_consumer::<PC2, _>(builtin, options)?,
        ProcessorCommand::C2(_) => run_consumer::<C2, _>(builtin, options)?,
        ProcessorCommand::SnapEncode(_) => run_consumer::<SnapEncode, _>(builtin, options)?,
        ProcessorCommand::SnapProve(_) => run_consumer::<SnapProve, _>(builtin, options)?,
        ProcessorCommand::Transfer(args) => run_consumer::<Transfer, _>(
            BuiltinProcessor {
                allow_links: !args.disable_link,
                ..builtin
            },
            options,
        )?,
        ProcessorCommand::WindowPost(_) => run_consumer::<WindowPoSt, _>(builtin, options)?,
        ProcessorCommand::WinningPost(_) => run_consumer::<WinningPoSt, _>(builtin, options)?,
        ProcessorCommand::Unseal(_) => run_consumer::<Unseal, _>(builtin, options)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(subcommand)]
        cmd: ProcessorCommand,
    }

    fn parse(args: &[&str]) -> ProcessorCommand {
        Wrap::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .expect("parses")
            .cmd
    }

    #[test]
    fn stage_names_and_aliases() {
        assert_eq!(parse(&["add_pieces"]).stage(), "add_pieces");
        assert_eq!(parse(&["tree-d"]).stage(), "tree_d");
        assert_eq!(parse(&["window_post"]).stage(), "window_post");
        assert_eq!(parse(&["winning_post"]).stage(), "winning_post");
        assert_eq!(parse(&["unseal"]).stage(), "unseal");
        match parse(&["transfer", "--disable_link"]) {
            ProcessorCommand::Transfer(a) => assert!(a.disable_link),
            _ => panic!("transfer"),
        }
        match parse(&["transfer"]) {
            ProcessorCommand::Transfer(a) => assert!(!a.disable_link),
            _ => panic!("transfer"),
        }
        match parse(&["pc1", "--hugepage_files_path", "/hp"]) {
            ProcessorCommand::Pc1(a) => assert_eq!(a.hugepage_files_path.as_deref(), Some("/hp")),
            _ => panic!("pc1"),
        }
        assert!(
            Wrap::try_parse_from(["x", "c1"]).is_err(),
            "c1 runs in-process only"
        );
    }
}
