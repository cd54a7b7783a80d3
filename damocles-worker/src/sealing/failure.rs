//! Failure levels (worker-spec §3): every step of a planner fails with one, and the engine and
//! the sealing thread react to it.

use std::fmt;

use crate::port::ManagerError;
use crate::sealing::control::Interrupted;

/// How bad a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// May succeed later: retried after `recover_interval`, up to `max_retries`.
    Temporary,
    /// Needs an operator: the thread pauses, the sector is kept.
    Permanent,
    /// A local invariant is broken (I/O, database, transition): the thread pauses.
    Critical,
    /// The sector must be dropped: it is reported aborted and wiped; the thread goes on.
    Abort,
}

impl Level {
    /// The name in `ReportState.Failure.Level`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Level::Temporary => "Temporary",
            Level::Permanent => "Permanent",
            Level::Critical => "Critical",
            Level::Abort => "Abort",
        }
    }

    /// The name in `last_error` (`<level>: <error>`).
    pub fn lower_name(self) -> &'static str {
        match self {
            Level::Temporary => "temporary",
            Level::Permanent => "permanent",
            Level::Critical => "critical",
            Level::Abort => "abort",
        }
    }
}

/// A failure with its level.
#[derive(Debug)]
pub struct Failure {
    /// The level.
    pub level: Level,
    /// What went wrong, with its causes.
    pub error: anyhow::Error,
}

impl Failure {
    /// A failure of `level`.
    pub fn new(level: Level, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            level,
            error: error.into(),
        }
    }

    /// Whether this is a pause or stop request seen in a wait rather than an error.
    pub fn is_interrupt(&self) -> bool {
        self.error.downcast_ref::<Interrupted>().is_some()
    }

    /// The text of `last_error` and `ReportState.Failure.Desc`: the error with its causes.
    pub fn desc(&self) -> String {
        format!("{:#}", self.error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:#}", self.level.lower_name(), self.error)
    }
}

/// An interrupted wait pauses the thread (level Permanent, no `last_error`).
impl From<Interrupted> for Failure {
    fn from(i: Interrupted) -> Self {
        Failure::new(Level::Permanent, i)
    }
}

/// §3.3: code 11001 drops the sector; every other manager error may pass.
impl From<ManagerError> for Failure {
    fn from(e: ManagerError) -> Self {
        let level = match e {
            ManagerError::SectorStateNotFound { .. } => Level::Abort,
            ManagerError::MethodNotFound { .. }
            | ManagerError::Rejected { .. }
            | ManagerError::Unavailable { .. } => Level::Temporary,
        };
        Failure::new(level, e)
    }
}

/// The result of a step.
pub type StepResult<T> = Result<T, Failure>;

/// Gives a level to any error: `fs::create_dir_all(p).context(..).crit()?`.
pub trait WithLevel<T> {
    /// As a Temporary failure.
    fn temp(self) -> StepResult<T>;
    /// As a Permanent failure.
    fn perm(self) -> StepResult<T>;
    /// As a Critical failure.
    fn crit(self) -> StepResult<T>;
    /// As an Abort failure.
    fn abort(self) -> StepResult<T>;
}

impl<T, E: Into<anyhow::Error>> WithLevel<T> for Result<T, E> {
    fn temp(self) -> StepResult<T> {
        self.map_err(|e| Failure::new(Level::Temporary, e))
    }
    fn perm(self) -> StepResult<T> {
        self.map_err(|e| Failure::new(Level::Permanent, e))
    }
    fn crit(self) -> StepResult<T> {
        self.map_err(|e| Failure::new(Level::Critical, e))
    }
    fn abort(self) -> StepResult<T> {
        self.map_err(|e| Failure::new(Level::Abort, e))
    }
}

/// A required field of the sector record is missing: Abort (§2.0.4).
pub fn required<T>(v: Option<T>, what: &str) -> StepResult<T> {
    v.ok_or_else(|| Failure::new(Level::Abort, anyhow::anyhow!("{what} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_map_to_their_levels() {
        use crate::port::Method;
        let gone: Failure =
            ManagerError::from_code(Method::ReportState, 11001, "not found".into()).into();
        assert_eq!(gone.level, Level::Abort);
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let other: Failure = ManagerError::Unavailable {
            method: Method::AssignTicket,
            cause: std::sync::Arc::new(refused),
        }
        .into();
        assert_eq!(other.level, Level::Temporary);
        assert_eq!(
            other.to_string(),
            "temporary: Venus.AssignTicket: rpc error: connection refused"
        );
        let rejected: Failure =
            ManagerError::from_code(Method::SubmitProof, 1, "bad proof".into()).into();
        assert_eq!(rejected.level, Level::Temporary);
    }

    #[test]
    fn interrupts_pause_without_being_errors() {
        let f: Failure = Interrupted::Pause.into();
        assert_eq!(f.level, Level::Permanent);
        assert!(f.is_interrupt());
        let e: StepResult<()> = Err(std::io::Error::other("disk")).crit();
        let e = e.expect_err("critical");
        assert_eq!(e.level, Level::Critical);
        assert!(!e.is_interrupt());
        let missing = required::<u8>(None, "pc1out").expect_err("abort");
        assert_eq!(missing.level, Level::Abort);
        assert_eq!(missing.desc(), "pc1out is required");
        assert_eq!(Level::Critical.wire_name(), "Critical");
    }
}
