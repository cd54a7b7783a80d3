//! A daemon's keys in its home directory, laid out as Lotus lays out a repo: the secret at
//! `keystore/MF2XI2BNNJ3XILLQOJUXMYLUMU` (the base32 of `auth-jwt-private`) and an `admin`
//! token for the local CLI at `token`, both readable by the owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{create_token, Perm, Secret, SecretError, SECRET_FILE_MODE};

/// The secret's path under a home.
pub const SECRET_FILE: &str = "keystore/MF2XI2BNNJ3XILLQOJUXMYLUMU";
/// The local admin token's path under a home.
pub const TOKEN_FILE: &str = "token";
/// The name the local admin token carries (it shows in the logs of what it did).
pub const LOCAL_ADMIN_NAME: &str = "local-admin";

/// The keys of a home, made on first use.
#[derive(Debug)]
pub struct HomeKeys {
    /// Signs and checks the daemon's tokens.
    pub secret: Secret,
    /// Where the secret lives.
    pub secret_path: PathBuf,
    /// Where the local admin token lives.
    pub token_path: PathBuf,
    /// The secret was made by this call (a first start, or an upgrade from a version without
    /// tokens).
    pub created: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the keys of `home`: loads the secret, or makes it (and the keystore directory, mode
/// 0700) when it does not exist; writes the local admin token when it is missing.
pub fn open_home(home: &Path) -> Result<HomeKeys, SecretError> {
    let secret_path = home.join(SECRET_FILE);
    let token_path = home.join(TOKEN_FILE);
    if let Some(dir) = secret_path.parent() {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(io(dir))?;
        }
    }
    let (secret, created) = Secret::load_or_create(&secret_path)?;
    if created || !token_path.exists() {
        let token =
            create_token(&secret, Perm::Admin, Some(LOCAL_ADMIN_NAME), None).map_err(|e| {
                SecretError::Invalid {
                    path: secret_path.clone(),
                    why: e.to_string(),
                }
            })?;
        write_private(&token_path, token.as_bytes())?;
    }
    Ok(HomeKeys {
        secret,
        secret_path,
        token_path,
        created,
    })
}

/// The local admin token of `home`, if there is one (its file is written by [`open_home`]).
pub fn read_local_token(home: &Path) -> Option<String> {
    std::fs::read_to_string(home.join(TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A new token of the secret of `home`, granting `perm` to `name` for `valid_for` (never
/// expiring when not given). The secret must exist: only a daemon makes one, since tokens of a
/// secret made elsewhere would not be taken.
pub fn token_of_home(
    home: &Path,
    perm: Perm,
    name: Option<&str>,
    valid_for: Option<std::time::Duration>,
) -> anyhow::Result<String> {
    let path = home.join(SECRET_FILE);
    if !path.exists() {
        anyhow::bail!(
            "no API secret at {}: is this the daemon's home? The daemon makes it at its first \
             start",
            path.display()
        );
    }
    let secret = Secret::load(&path)?;
    let exp = match valid_for {
        None => None,
        Some(d) => Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| anyhow::anyhow!("the clock is before 1970"))?
                .saturating_add(d)
                .as_secs(),
        ),
    };
    Ok(create_token(&secret, perm, name, exp)?)
}

/// Replaces `path` with `bytes`, readable by the owner only (a temporary file renamed over it).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, SECRET_FILE_MODE);
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_home_gets_a_private_secret_and_an_admin_token_that_verifies() {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = open_home(dir.path()).expect("open");
        assert!(keys.created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&keys.secret_path), 0o600);
            assert_eq!(mode(&keys.token_path), 0o600);
            assert_eq!(mode(keys.secret_path.parent().expect("keystore")), 0o700);
        }
        let token = read_local_token(dir.path()).expect("token");
        let caller = crate::verify(&keys.secret, &token).expect("verify");
        assert_eq!(caller.level, Perm::Admin);
        assert_eq!(caller.name.as_deref(), Some(LOCAL_ADMIN_NAME));

        // A second open keeps the secret, so tokens given out stay valid.
        let again = open_home(dir.path()).expect("reopen");
        assert!(!again.created);
        assert_eq!(again.secret, keys.secret);
        // A deleted token file is written again.
        std::fs::remove_file(&keys.token_path).expect("rm");
        open_home(dir.path()).expect("reopen");
        let token = read_local_token(dir.path()).expect("token again");
        assert_eq!(
            crate::verify(&keys.secret, &token).expect("verify").level,
            Perm::Admin
        );
    }
}
