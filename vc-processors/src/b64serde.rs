//! Byte strings as standard base64 with padding, for the few wire fields that use it.
//!
//! In the processor protocol only PoSt proofs (`SnarkProof`) are base64; every other byte field
//! (commitments, tickets, C2 proofs, vanilla proofs) is a JSON array of integers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `Vec<u8>` that serialises as a base64 string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BytesVec(pub Vec<u8>);

impl From<Vec<u8>> for BytesVec {
    fn from(v: Vec<u8>) -> Self {
        BytesVec(v)
    }
}

impl From<BytesVec> for Vec<u8> {
    fn from(v: BytesVec) -> Self {
        v.0
    }
}

impl std::ops::Deref for BytesVec {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for BytesVec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for BytesVec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(BytesVec)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// A `[u8; 32]` that serialises as a base64 string (used by the manager API, not by tasks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BytesArray32(pub [u8; 32]);

impl Serialize for BytesArray32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for BytesArray32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            serde::de::Error::custom(format!("expected 32 bytes, got {}", bytes.len()))
        })?;
        Ok(BytesArray32(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        let v = BytesVec(vec![0xa1, 0xb2, 0xc3]);
        let json = serde_json::to_string(&v).expect("serialize");
        assert_eq!(json, r#""obLD""#);
        assert_eq!(serde_json::from_str::<BytesVec>(&json).expect("parse"), v);
        assert!(serde_json::from_str::<BytesVec>(r#""!!""#).is_err());
        assert!(serde_json::from_str::<BytesArray32>(r#""obLD""#).is_err());
        let a = BytesArray32([7; 32]);
        let json = serde_json::to_string(&a).expect("serialize");
        assert_eq!(
            serde_json::from_str::<BytesArray32>(&json).expect("parse"),
            a
        );
    }
}
