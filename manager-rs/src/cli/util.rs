//! `damocles-manager util …`.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use vc_processors::builtin::params::{self, format_sector_size, parse_sector_size, ParamKind};

/// Utility commands.
#[derive(Debug, Subcommand)]
pub enum UtilCommand {
    /// Groth16 parameters of the proof system.
    #[command(subcommand)]
    Params(ParamsCommand),
}

impl UtilCommand {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
            UtilCommand::Params(cmd) => cmd.run(),
        }
    }
}

/// Which parameters.
#[derive(Debug, Clone, Args)]
pub struct ParamsSelection {
    /// Sector size: 2KiB, 8MiB or 512MiB (check also accepts 32GiB and 64GiB).
    #[arg(long = "sector-size", value_parser = parse_sector_size)]
    pub sector_size: u64,
    /// Circuits, comma separated: porep, window-post, winning-post, snap-deals (default: all).
    #[arg(long = "kind", value_delimiter = ',')]
    pub kinds: Vec<ParamKind>,
}

impl ParamsSelection {
    fn kinds(&self) -> Vec<ParamKind> {
        if self.kinds.is_empty() {
            ParamKind::ALL.to_vec()
        } else {
            self.kinds.clone()
        }
    }
}

/// `util params generate|check`.
///
/// Parameters live in `FIL_PROOFS_PARAMETER_CACHE` (default
/// `/var/tmp/filecoin-proof-parameters`). Generated parameters are random: proofs made with
/// them verify only against the same cache.
#[derive(Debug, Subcommand)]
pub enum ParamsCommand {
    /// Generate the missing parameters, cheapest first, with progress on stderr.
    Generate(ParamsSelection),
    /// Report which parameters are present; exits non-zero if any is missing.
    Check(ParamsSelection),
}

impl ParamsCommand {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
            ParamsCommand::Generate(sel) => {
                let outcomes = params::generate(
                    sel.sector_size,
                    &sel.kinds(),
                    Duration::from_secs(30),
                    &params::print_progress,
                )?;
                for o in outcomes {
                    let what = match o.generated_in {
                        Some(t) => format!("generated in {:.1}s", t.as_secs_f64()),
                        None => "already present".to_string(),
                    };
                    println!(
                        "{:<8} {:<13} {:<16} {}",
                        format_sector_size(o.entry.sector_size),
                        o.entry.kind,
                        what,
                        o.entry.params.display()
                    );
                }
                Ok(())
            }
            ParamsCommand::Check(sel) => {
                let statuses = params::check(sel.sector_size, &sel.kinds())?;
                let mut missing = Vec::new();
                for s in &statuses {
                    let state = if s.is_complete() {
                        "present".to_string()
                    } else {
                        missing.push(s.entry.kind);
                        format!("MISSING {}", s.problems().join(" "))
                    };
                    let size = s
                        .params_bytes
                        .map(|b| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64))
                        .unwrap_or_else(|| "-".to_string());
                    println!(
                        "{:<8} {:<13} {:<24} {:>11}  {}",
                        format_sector_size(s.entry.sector_size),
                        s.entry.kind,
                        state,
                        size,
                        s.entry.params.display()
                    );
                }
                if !missing.is_empty() {
                    let kinds: Vec<String> = missing.iter().map(ToString::to_string).collect();
                    bail!(
                        "missing parameters for {}: {}; run `damocles-manager util params generate --sector-size {} --kind {}`",
                        format_sector_size(sel.sector_size),
                        kinds.join(", "),
                        format_sector_size(sel.sector_size),
                        kinds.join(",")
                    );
                }
                Ok(())
            }
        }
    }
}
