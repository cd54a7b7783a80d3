//! The secret that signs a daemon's tokens: 32 random bytes in a file only its owner reads,
//! in Lotus' key format (`{"Type":"jwt-hmac-secret","PrivateKey":"<base64>"}`).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The mode of the secret's file; one readable by group or others is refused.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// The key type Lotus writes.
const KEY_TYPE: &str = "jwt-hmac-secret";
/// Bytes of a new secret.
const SECRET_LEN: usize = 32;

/// The signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Never printed.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a secret could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The secret's file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Group or others may read it.
    #[error("{}: mode {mode:o} lets others read the API secret; run `chmod 600 {}`", path.display(), path.display())]
    TooOpen {
        /// The secret's file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It is not a key of ours.
    #[error("{}: not an API secret ({why})", path.display())]
    Invalid {
        /// The secret's file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
struct KeyInfo {
    #[serde(rename = "Type")]
    key_type: String,
    #[serde(rename = "PrivateKey")]
    private_key: String,
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// A secret of these bytes (tests, and keys made elsewhere).
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Writes a new secret to `path`, which must not exist, readable by its owner only.
    pub fn create(path: &Path) -> Result<Secret, SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let secret = Secret::generate();
        let info = KeyInfo {
            key_type: KEY_TYPE.into(),
            private_key: base64::engine::general_purpose::STANDARD.encode(&secret.0),
        };
        let text = serde_json::to_vec(&info).map_err(|e| io(std::io::Error::other(e)))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, SECRET_FILE_MODE);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(secret)
    }

    /// Reads the secret of `path`; refuses a file others may read.
    pub fn load(path: &Path) -> Result<Secret, SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::TooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let invalid = |why: String| SecretError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read(path).map_err(io)?;
        let info: KeyInfo = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if info.key_type != KEY_TYPE {
            return Err(invalid(format!(
                "Type is {:?}, not {KEY_TYPE:?}",
                info.key_type
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(info.private_key.trim())
            .map_err(|e| invalid(format!("PrivateKey is not base64: {e}")))?;
        if bytes.len() < SECRET_LEN {
            return Err(invalid(format!(
                "PrivateKey holds {} bytes, fewer than {SECRET_LEN}",
                bytes.len()
            )));
        }
        Ok(Secret(bytes))
    }

    /// The secret of `path`, made there when the file does not exist; `true` when it was made.
    pub fn load_or_create(path: &Path) -> Result<(Secret, bool), SecretError> {
        if path.exists() {
            return Secret::load(path).map(|s| (s, false));
        }
        Secret::create(path).map(|s| (s, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_made_private_read_back_and_refused_when_others_may_read_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api-secret");
        let (made, created) = Secret::load_or_create(&path).expect("create");
        assert!(created);
        assert_eq!(made.bytes().len(), SECRET_LEN);
        let (again, created) = Secret::load_or_create(&path).expect("load");
        assert!(!created);
        assert_eq!(again, made);
        assert!(!format!("{made:?}").contains(&format!("{:?}", made.bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, SECRET_FILE_MODE);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = Secret::load(&path).expect_err("0644");
            assert!(matches!(e, SecretError::TooOpen { mode: 0o644, .. }), "{e}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        assert!(matches!(Secret::create(&path), Err(SecretError::Io { .. })));
    }

    #[test]
    fn a_file_that_is_not_a_secret_is_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api-secret");
        for (text, why) in [
            ("not json", "expected"),
            (r#"{"Type":"bls","PrivateKey":"AAAA"}"#, "Type is \"bls\""),
            (
                r#"{"Type":"jwt-hmac-secret","PrivateKey":"%%"}"#,
                "not base64",
            ),
            (
                r#"{"Type":"jwt-hmac-secret","PrivateKey":"AAAA"}"#,
                "3 bytes",
            ),
        ] {
            std::fs::write(&path, text).expect("write");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            let e = Secret::load(&path).expect_err(text);
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(e.to_string().contains("api-secret"), "{e}");
        }
    }
}
