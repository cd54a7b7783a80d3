//! Errors the API answers: a JSON-RPC code and a message that says what was wrong.

use damocles_manager_api::types::SectorId;
use damocles_manager_api::ERR_SECTOR_STATE_NOT_FOUND;
use jsonrpsee::types::ErrorObjectOwned;

/// The default application error code (damocles' go-jsonrpc default).
pub const ERR_DEFAULT: i32 = 1;

/// An error answered to an RPC caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The sector's state is missing (code 11001: the worker aborts the sector).
    #[error("error code 11001: sector state not found: {0}")]
    SectorStateNotFound(SectorId),
    /// The request is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// Anything else (code 1): the worker retries later.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

/// Results of API operations.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The JSON-RPC code.
    pub fn code(&self) -> i32 {
        match self {
            ApiError::SectorStateNotFound(_) => ERR_SECTOR_STATE_NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::Internal(_) => ERR_DEFAULT,
        }
    }

    /// A bad-request error.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

/// A refusal of the chain is the request's fault; an unavailable chain is worth a retry.
impl From<crate::chain::ChainError> for ApiError {
    fn from(e: crate::chain::ChainError) -> Self {
        match e {
            crate::chain::ChainError::Rejected(why) => ApiError::BadRequest(why),
            crate::chain::ChainError::Unavailable(e) => ApiError::Internal(e),
        }
    }
}

impl From<ApiError> for ErrorObjectOwned {
    fn from(e: ApiError) -> Self {
        ErrorObjectOwned::owned(e.code(), e.to_string(), None::<()>)
    }
}

/// Runs `work` (synced RocksDB writes, per-sector mutexes, file system calls) on the blocking
/// pool, so a slow disk stalls only the request that waits for it, not the async runtime.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("blocking task of a request: {e}")))?
}
