//! Opaque, tamper-evident page cursors: what the next page needs (for the feed: the pinned origin, the index
//! snapshot, what was shown) serialised as JSON, signed with HMAC-SHA256 (RFC 2104) under a server key, and
//! written as `base64url(payload).base64url(tag)`. A cursor that was cut, edited or signed under another key
//! is refused with a reason, never half-read; clients treat it as a string.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// SHA-256's block size, which HMAC pads the key to.
const BLOCK: usize = 64;

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("a cursor is two base64url parts joined by `.`, found {0:?}")]
    Shape(String),
    #[error("the cursor was altered or was not issued by this server (its signature does not match)")]
    Signature,
    #[error("the cursor's contents do not parse: {0}")]
    Contents(String),
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// `state` as a signed cursor.
pub fn encode<T: Serialize>(state: &T, key: &[u8]) -> String {
    let payload = serde_json::to_vec(state).expect("cursor state serialises");
    let tag = hmac_sha256(key, &payload);
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
}

/// The state a cursor carries, once its signature checks out under `key`.
pub fn decode<T: DeserializeOwned>(cursor: &str, key: &[u8]) -> Result<T, CursorError> {
    let shape = || CursorError::Shape(cursor.chars().take(40).collect());
    let (payload, tag) = cursor.split_once('.').ok_or_else(shape)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| shape())?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| shape())?;
    let expected = hmac_sha256(key, &payload);
    // compared in constant time: every byte is looked at whatever the first difference
    if tag.len() != expected.len() || tag.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Err(CursorError::Signature);
    }
    serde_json::from_slice(&payload).map_err(|e| CursorError::Contents(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Page {
        origin: i64,
        shown: Vec<String>,
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // test case 2 (a short key) and 6 (a key longer than the block)
        let t2 = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&t2), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let t6 = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&t6), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn a_cursor_round_trips_and_any_change_is_refused() {
        let page = Page { origin: 1_733_000_000, shown: vec!["a".into(), "b".into()] };
        let c = encode(&page, b"key");
        assert_eq!(decode::<Page>(&c, b"key").unwrap(), page);
        assert_eq!(decode::<Page>(&c, b"other key"), Err(CursorError::Signature));
        // a payload edited to show fewer items, re-encoded without the key
        let (_, tag) = c.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"{"origin":1733000000,"shown":[]}"#));
        assert_eq!(decode::<Page>(&forged, b"key"), Err(CursorError::Signature));
        assert!(matches!(decode::<Page>("not a cursor", b"key"), Err(CursorError::Shape(_))));
        assert!(matches!(
            decode::<Page>(&c[..c.len() - 3], b"key"),
            Err(CursorError::Signature | CursorError::Shape(_))
        ));
        // signed, but not this state's shape
        let other = encode(&serde_json::json!({"x": 1}), b"key");
        assert!(matches!(decode::<Page>(&other, b"key"), Err(CursorError::Contents(_))));
    }
}
