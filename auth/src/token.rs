//! Making and checking tokens.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{Perm, Secret};

/// What a token says. Lotus writes `Allow`; sophon-auth writes one `perm` (and a `name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The permissions granted, Lotus style; names we do not know are ignored.
    #[serde(rename = "Allow", default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// The highest permission granted, sophon-auth style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perm: Option<String>,
    /// Who the token is for (shown in logs of what it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it expires (unix seconds); none means never, as Lotus issues them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl Claims {
    /// The highest permission the token grants, if any.
    pub fn level(&self) -> Option<Perm> {
        self.allow
            .iter()
            .chain(self.perm.as_ref())
            .filter_map(|p| p.parse::<Perm>().ok())
            .max()
    }
}

/// A caller a token let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What it may do.
    pub level: Perm,
    /// Who it is, when the token says (or a label: the legacy static token, a tokenless
    /// caller of an open network).
    pub name: Option<String>,
    /// Whether a token signed by the daemon's secret let it in: only then is `name` the
    /// token's own claim, which something may be bound to.
    pub signed: bool,
}

impl Caller {
    /// The `name` claim of a signed token; `None` for a label.
    pub fn token_name(&self) -> Option<&str> {
        self.name.as_deref().filter(|_| self.signed)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not signed by this daemon's secret, malformed, of another algorithm, or expired.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Valid, but it grants no permission we know.
    #[error(
        "the token grants no permission (its Allow list names none of read, write, sign, admin)"
    )]
    NoPermission,
}

/// A token granting `perm` (and every permission below it), for `name`, expiring at `exp`
/// (unix seconds) when given.
pub fn create_token(
    secret: &Secret,
    perm: Perm,
    name: Option<&str>,
    exp: Option<u64>,
) -> Result<String, TokenError> {
    let claims = Claims {
        allow: perm
            .allow_list()
            .into_iter()
            .map(|p| p.as_str().to_string())
            .collect(),
        perm: None,
        name: name.map(str::to_string),
        exp,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.bytes()),
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))
}

/// Checks `token` against `secret`: HS256 only, an expiry (when the token has one) in the
/// future.
pub fn verify(secret: &Secret, token: &str) -> Result<Caller, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.leeway = 0;
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.bytes()),
        &validation,
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))?;
    let level = data.claims.level().ok_or(TokenError::NoPermission)?;
    Ok(Caller {
        level,
        name: data.claims.name,
        signed: true,
    })
}

/// Whether `given` is `expected`, compared in constant time (only the lengths can be told
/// apart); an empty `expected` matches nothing.
pub fn legacy_token_eq(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token Lotus makes for `write` (`{"Allow":["read","write"]}`) with a secret of 32 zero
    /// bytes.
    const LOTUS_WRITE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJBbGxvdyI6WyJyZWFkIiwid3JpdGUiXX0.sf1-1TUFfSyRrCjYNcXwsNzuHDQPpeRYyVo2r6YO4J4";

    fn zero_secret() -> Secret {
        Secret::from_bytes(vec![0; 32])
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn tokens_round_trip_with_their_permission_and_name() {
        let secret = Secret::generate();
        for perm in Perm::ALL {
            let token = create_token(&secret, perm, Some("worker-1"), None).expect("token");
            let caller = verify(&secret, &token).expect("verify");
            assert_eq!(caller.level, perm);
            assert_eq!(caller.name.as_deref(), Some("worker-1"));
        }
        let later = create_token(&secret, Perm::Read, None, Some(now() + 3600)).expect("token");
        assert_eq!(verify(&secret, &later).expect("verify").level, Perm::Read);
    }

    #[test]
    fn a_lotus_token_and_a_sophon_token_verify() {
        let caller = verify(&zero_secret(), LOTUS_WRITE_TOKEN).expect("lotus token");
        assert_eq!(
            caller,
            Caller {
                level: Perm::Write,
                name: None,
                signed: true,
            }
        );
        let sophon = Claims {
            perm: Some("sign".into()),
            name: Some("venus".into()),
            ..Claims::default()
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &sophon,
            &EncodingKey::from_secret(&[0; 32]),
        )
        .expect("encode");
        assert_eq!(
            verify(&zero_secret(), &token).expect("sophon").level,
            Perm::Sign
        );
    }

    #[test]
    fn forged_expired_and_empty_tokens_are_refused() {
        let secret = zero_secret();
        let other = Secret::from_bytes(vec![1; 32]);
        let forged = create_token(&other, Perm::Admin, None, None).expect("token");
        assert!(matches!(
            verify(&secret, &forged),
            Err(TokenError::Invalid(_))
        ));
        // The payload changed to admin, the signature kept.
        let mut parts: Vec<&str> = LOTUS_WRITE_TOKEN.split('.').collect();
        let admin = "eyJBbGxvdyI6WyJhZG1pbiJdfQ"; // {"Allow":["admin"]}
        parts[1] = admin;
        assert!(verify(&secret, &parts.join(".")).is_err());
        // alg none.
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{admin}.");
        assert!(verify(&secret, &none).is_err());
        // HS512 with the right secret is still another algorithm.
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                allow: vec!["admin".into()],
                ..Claims::default()
            },
            &EncodingKey::from_secret(&[0; 32]),
        )
        .expect("encode");
        assert!(verify(&secret, &hs512).is_err());
        let expired = create_token(&secret, Perm::Admin, None, Some(now() - 10)).expect("token");
        let e = verify(&secret, &expired).expect_err("expired");
        assert!(e.to_string().contains("xpired"), "{e}");
        let nothing = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                allow: vec!["root".into()],
                ..Claims::default()
            },
            &EncodingKey::from_secret(&[0; 32]),
        )
        .expect("encode");
        assert_eq!(verify(&secret, &nothing), Err(TokenError::NoPermission));
        assert!(verify(&secret, "").is_err());
        assert!(verify(&secret, "garbage").is_err());
    }

    #[test]
    fn static_tokens_compare_whole() {
        assert!(legacy_token_eq("s3cret", "s3cret"));
        assert!(!legacy_token_eq("s3cre", "s3cret"));
        assert!(!legacy_token_eq("s3creT", "s3cret"));
        assert!(
            !legacy_token_eq("", ""),
            "no token configured lets nobody in"
        );
    }
}
