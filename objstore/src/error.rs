//! Errors of every store operation, whatever the backend.

use std::fmt;

/// The result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. A missing object is always [`Error::NotFound`], whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No object at that path (a directory is not an object).
    #[error("{instance}: object not found: {path}")]
    NotFound {
        /// Store instance name.
        instance: String,
        /// The object path.
        path: String,
    },
    /// The store is read-only.
    #[error("{instance}: read only store: cannot {op} {path}")]
    ReadOnly {
        /// Store instance name.
        instance: String,
        /// What was refused (`put`, `delete`).
        op: &'static str,
        /// The object path.
        path: String,
    },
    /// The path is not a valid object path (absolute, `..`, empty component, …).
    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// The object exists but is not a regular file (a strict store refuses symlinks and the
    /// like).
    #[error("{instance}: not a regular file: {path}")]
    NotRegularFile {
        /// Store instance name.
        instance: String,
        /// The object path.
        path: String,
    },
    /// The store configuration was refused.
    #[error("{instance}: invalid config: {reason}")]
    InvalidConfig {
        /// Store instance name (or path when it has no name).
        instance: String,
        /// What is wrong.
        reason: String,
    },
    /// The operation is not available on this store.
    #[error("{instance}: {op} is not supported by this store")]
    Unsupported {
        /// Store instance name.
        instance: String,
        /// The operation.
        op: &'static str,
    },
    /// The backend failed (I/O, network, the object service).
    #[error("{instance}: {op} {path}: {message}")]
    Backend {
        /// Store instance name.
        instance: String,
        /// The operation (`get`, `put`, …).
        op: &'static str,
        /// The object path, or the prefix for `list`.
        path: String,
        /// The failure, with the backend's own context.
        message: String,
        /// The underlying error, when it lives in this process.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// A backend error wrapping `source`.
    pub fn backend(
        instance: &str,
        op: &'static str,
        path: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            instance: instance.to_string(),
            op,
            path: path.to_string(),
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// A backend error described by a message only.
    pub fn backend_msg(
        instance: &str,
        op: &'static str,
        path: &str,
        message: impl fmt::Display,
    ) -> Self {
        Error::Backend {
            instance: instance.to_string(),
            op,
            path: path.to_string(),
            message: message.to_string(),
            source: None,
        }
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
