//! Opaque, tamper-proof page tokens (AIP-158).
//!
//! A token is `base64url(cursor_json || tag)`, where `tag` is the first 16 bytes of
//! HMAC-SHA256 over the cursor and the *scope*: a string that pins the query the
//! token belongs to (method, filter, order). A token that was altered, forged, or
//! reused with another filter fails the check and is refused with INVALID_ARGUMENT
//! instead of being trusted. The key is generated once per store and kept in the
//! database so tokens stay valid across restarts and across servers sharing it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use super::names::Invalid;

/// Bytes of the HMAC tag kept in a token.
const TAG_BYTES: usize = 16;
/// Longest token accepted, in bytes (a cursor is small; anything longer is garbage).
pub const MAX_TOKEN_BYTES: usize = 1024;

/// Signs and checks page tokens with one secret key.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens { key: <redacted> }")
    }
}

impl PageTokens {
    /// A signer with `key` (at least 16 bytes; 32 random bytes recommended).
    pub fn new(key: Vec<u8>) -> Self {
        PageTokens { key }
    }

    fn tag(&self, scope: &str, payload: &[u8]) -> [u8; TAG_BYTES] {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    /// Encodes `cursor` for the query identified by `scope`.
    pub fn encode<T: Serialize>(&self, scope: &str, cursor: &T) -> String {
        // Serializing plain structs of numbers and strings cannot fail.
        let mut bytes = serde_json::to_vec(cursor).unwrap_or_default();
        let tag = self.tag(scope, &bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a token made by [`encode`](Self::encode) with the same `scope`.
    ///
    /// Errors: [`Invalid`] on `page_token` when the token is malformed, was altered,
    /// or belongs to another query.
    pub fn decode<T: DeserializeOwned>(&self, scope: &str, token: &str) -> Result<T, Invalid> {
        let invalid = || {
            Invalid::new(
                "page_token",
                "is not a token this server issued for this query (it was altered, or the filter or order changed); start again without page_token",
            )
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() <= TAG_BYTES {
            return Err(invalid());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag).map_err(|_| invalid())?;
        serde_json::from_slice(payload).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Cursor {
        t: i64,
        id: String,
    }

    fn tokens() -> PageTokens {
        PageTokens::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[test]
    fn round_trip() {
        let cursor = Cursor {
            t: 42,
            id: "x".into(),
        };
        let token = tokens().encode("sessions|state = ACTIVE", &cursor);
        let back: Cursor = tokens().decode("sessions|state = ACTIVE", &token).unwrap();
        assert_eq!(back, cursor);
    }

    #[test]
    fn tampered_forged_and_foreign_tokens_are_refused() {
        let token = tokens().encode(
            "q",
            &Cursor {
                t: 1,
                id: "a".into(),
            },
        );
        // Flip one character of the payload.
        let mut chars: Vec<char> = token.chars().collect();
        chars[2] = if chars[2] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(tokens().decode::<Cursor>("q", &tampered).is_err());
        // Another query.
        assert!(tokens().decode::<Cursor>("other", &token).is_err());
        // Another key.
        let other = PageTokens::new(b"another key entirely, 32 bytes!!".to_vec());
        assert!(other.decode::<Cursor>("q", &token).is_err());
        // Garbage.
        for garbage in ["", "!!!", "abc", &"A".repeat(2000)] {
            assert!(
                tokens().decode::<Cursor>("q", garbage).is_err(),
                "{garbage:?}"
            );
        }
        // A forged cursor without a valid tag.
        let forged = URL_SAFE_NO_PAD.encode(br#"{"t":0,"id":"zzz"}0000000000000000"#);
        assert!(tokens().decode::<Cursor>("q", &forged).is_err());
    }
}
