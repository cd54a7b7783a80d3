//! JSON encodings of the Go types the Venus API carries (manager-spec §0).
//!
//! The manager is Go: `[]byte` is a base64 string (`nil` is `null`), `[32]byte` an array of 32
//! numbers, a CID `{"/": "<cid>"}`, big integers decimal strings, seal proof types integers.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Go `[]byte`: a base64 string (standard alphabet, padded).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({})", STANDARD.encode(&self.0))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Go decodes `null` into a nil slice.
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Bytes(Vec::new())),
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map(Bytes)
                .map_err(|e| D::Error::custom(format!("invalid base64: {e}"))),
        }
    }
}

/// A 32-byte commitment (`[32]byte` in Go): an array of 32 numbers.
pub type Commitment = [u8; 32];

/// A CID, as `{"/": "<cid string>"}`. The string is checked to be a valid CID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(pub String);

impl Cid {
    /// Parses and checks a CID string.
    pub fn parse(s: &str) -> Result<Self, String> {
        cid::Cid::from_str(s)
            .map(|c| Cid(c.to_string()))
            .map_err(|e| format!("invalid CID {s:?}: {e}"))
    }

    /// The CID string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Serialize, Deserialize)]
struct CidJson {
    #[serde(rename = "/")]
    cid: String,
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CidJson {
            cid: self.0.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = CidJson::deserialize(d)?;
        Cid::parse(&j.cid).map_err(D::Error::custom)
    }
}

/// A big integer (`big.Int`, token amounts) as a decimal string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BigInt(pub u128);

impl Serialize for BigInt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for BigInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map(BigInt)
            .map_err(|_| D::Error::custom(format!("invalid big integer {s:?}")))
    }
}

/// A Go string that may arrive as `null` (decoded as empty) and is always sent as a string.
pub mod go_string {
    use super::*;

    /// Serialises the string as it is.
    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    /// Accepts a string or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

/// Multicodec of a data commitment CID (`fil-commitment-unsealed`).
pub const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// Multicodec of a replica commitment CID (`fil-commitment-sealed`).
pub const FIL_COMMITMENT_SEALED: u64 = 0xf102;
/// Multihash code of CommD / CommP (`sha2-256-trunc254-padded`).
pub const SHA2_256_TRUNC254_PADDED: u64 = 0x1012;
/// Multihash code of CommR (`poseidon-bls12_381-a2-fc1`).
pub const POSEIDON_BLS12_381_A1_FC1: u64 = 0xb401;

fn commitment_cid(codec: u64, hash: u64, comm: &Commitment) -> Cid {
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = cid::multihash::Multihash::<64>::wrap(hash, comm)
        .unwrap_or_else(|_| unreachable!("32-byte digest fits a 64-byte multihash"));
    Cid(cid::Cid::new_v1(codec, mh).to_string())
}

fn cid_commitment(c: &Cid, codec: u64, hash: u64, what: &str) -> Result<Commitment, String> {
    let parsed = cid::Cid::from_str(c.as_str()).map_err(|e| format!("invalid CID {c}: {e}"))?;
    if parsed.codec() != codec || parsed.hash().code() != hash {
        return Err(format!(
            "{c} is not a {what} CID (codec {:#x}, hash {:#x})",
            parsed.codec(),
            parsed.hash().code()
        ));
    }
    parsed
        .hash()
        .digest()
        .try_into()
        .map_err(|_| format!("{c}: the {what} digest is not 32 bytes"))
}

/// The CID of a data or piece commitment (CommD, CommP).
pub fn data_commitment_cid(comm: &Commitment) -> Cid {
    commitment_cid(FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED, comm)
}

/// The CID of a replica commitment (CommR, the sealed CID).
pub fn replica_commitment_cid(comm: &Commitment) -> Cid {
    commitment_cid(FIL_COMMITMENT_SEALED, POSEIDON_BLS12_381_A1_FC1, comm)
}

/// The commitment inside a data or piece commitment CID.
pub fn data_commitment_of(c: &Cid) -> Result<Commitment, String> {
    cid_commitment(
        c,
        FIL_COMMITMENT_UNSEALED,
        SHA2_256_TRUNC254_PADDED,
        "data commitment",
    )
}

/// The commitment inside a replica commitment CID.
pub fn replica_commitment_of(c: &Cid) -> Result<Commitment, String> {
    cid_commitment(
        c,
        FIL_COMMITMENT_SEALED,
        POSEIDON_BLS12_381_A1_FC1,
        "replica commitment",
    )
}
