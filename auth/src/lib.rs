//! API tokens of the damocles daemons, as Lotus makes them: a JWT signed with HS256 whose
//! `Allow` claim lists permissions (`read`, `write`, `sign`, `admin`), with the secret kept in the
//! daemon's home (mode 0600).
//!
//! - [`Perm`]: the permissions, ordered; a caller holds the highest one its token lists.
//! - [`Secret`]: the signing secret, created once and refused when its file is readable by
//!   others.
//! - [`create_token`] / [`verify`]: make and check tokens; Lotus tokens and sophon-auth tokens
//!   (`perm` instead of `Allow`) verify too.
//! - [`ApiInfo`]: the `<token>:<multiaddr>` form of `*_API_INFO` variables.
//! - [`open_home`]: a daemon's secret and local admin token in its home, Lotus' layout.
//! - [`Method`]: a method's row in a server's table (name, params, permission); with the
//!   feature `rpc`, [`rpc`] enforces the tables on a jsonrpsee server.
//! - [`legacy_token_eq`]: the constant-time check of a static token.

mod api_info;
mod home;
mod method;
mod perm;
#[cfg(feature = "rpc")]
pub mod rpc;
mod secret;
mod token;

pub use api_info::ApiInfo;
pub use home::{
    open_home, read_local_token, token_of_home, HomeKeys, LOCAL_ADMIN_NAME, SECRET_FILE, TOKEN_FILE,
};
pub use method::Method;
pub use perm::{Perm, UnknownPerm};
pub use secret::{Secret, SecretError, SECRET_FILE_MODE};
pub use token::{create_token, legacy_token_eq, verify, Caller, Claims, TokenError};
