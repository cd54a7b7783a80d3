//! damocles-config: what the config files of both daemons share, so that `sector-manager.cfg`
//! (damocles-manager) and `damocles-worker.toml` (damocles-worker) are read the same way.
//!
//! - [`load`]: the one strict TOML loader. An unknown key is an error naming its dotted path
//!   (damocles ignores typos); a TOML or type error names the file, the key it concerns and
//!   toml's own text with the line and column.
//! - [`units`]: the one set of value types written in those files: durations in humantime
//!   syntax ([`units::HumanDuration`], the worker's) and in Go syntax ([`units::GoDuration`],
//!   the manager's), byte amounts ([`units::ByteSize`]), sector sizes ([`units::SectorSize`])
//!   and FIL amounts ([`units::FilAmount`]).
//!
//! Keys, defaults and checks of each file stay with their daemon (`damocles_manager::config`,
//! `damocles_worker::config`).

pub mod load;
pub mod units;
