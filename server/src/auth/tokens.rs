//! Access tokens: how they are configured, stored and checked.
//!
//! The server never stores a token, only its SHA-256: a token file is lines of
//! `name:sha256-hex[:admin]` (`#` starts a comment), and `CORRAL_TOKENS` holds the
//! same entries separated by commas or white space. Tokens are meant to be long
//! random strings (`corrald token new` makes 256-bit ones), so a plain hash is
//! enough: there is nothing to brute-force, unlike a password.
//!
//! Checking a presented token hashes it and compares the digest with **every**
//! entry using `subtle`'s constant-time equality, accumulating the match without a
//! branch, so the time taken says nothing about which entry (or how much of one)
//! matched. HTTP Basic credentials (`name:token`) compare the SHA-256 of the name
//! the same way, so their length or spelling does not leak either.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::Principal;

/// Longest principal name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// One accepted token: who it is, and the SHA-256 of the token.
#[derive(Clone)]
struct Entry {
    name: String,
    name_digest: [u8; 32],
    digest: [u8; 32],
    admin: bool,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// The accepted tokens.
#[derive(Clone, Debug, Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The SHA-256 of `token`, as 64 lower-case hex digits (what a token file stores).
pub fn hash_token(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

/// The token-file line for principal `name` holding `token`.
pub fn entry_line(name: &str, token: &str, admin: bool) -> String {
    let suffix = if admin { ":admin" } else { "" };
    format!("{name}:{}{suffix}", hash_token(token))
}

/// A new random token: two v4 UUIDs (244 bits from the OS's CSPRNG) as base64url
/// without padding, prefixed `crl_` so that leak scanners can recognise it.
pub fn new_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "crl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Checks a principal name: 1-64 bytes of letters, digits, `.`, `_`, `-`, `@`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "principal name {name:?} must be 1 to {MAX_NAME_BYTES} bytes long"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(format!(
            "principal name {name:?} contains {bad:?}; use letters, digits, '.', '_', '-' and '@'"
        ));
    }
    Ok(())
}

impl TokenSet {
    /// Reads `--token-file` (if any) and `CORRAL_TOKENS` (if any).
    ///
    /// Errors (in words, naming the file and line): unreadable file, malformed
    /// entry, a name or token hash given twice.
    pub fn load(file: Option<&Path>, inline: Option<&str>) -> Result<TokenSet, String> {
        let mut set = TokenSet::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or_default().trim();
                if !line.is_empty() {
                    set.add(line).map_err(|e| {
                        format!("--token-file {} line {}: {e}", path.display(), number + 1)
                    })?;
                }
            }
        }
        if let Some(inline) = inline {
            for entry in inline
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty())
            {
                set.add(entry).map_err(|e| format!("CORRAL_TOKENS: {e}"))?;
            }
        }
        Ok(set)
    }

    /// Adds one `name:sha256-hex[:admin]` entry.
    pub fn add(&mut self, entry: &str) -> Result<(), String> {
        let parts: Vec<&str> = entry.split(':').collect();
        let (name, hash, admin) = match parts.as_slice() {
            [name, hash] => (*name, *hash, false),
            [name, hash, "admin"] => (*name, *hash, true),
            _ => {
                return Err(
                    "expected name:sha256-hex or name:sha256-hex:admin (see `corrald token hash`)"
                        .into(),
                );
            }
        };
        validate_name(name)?;
        let digest = unhex(&hash.to_ascii_lowercase()).ok_or_else(|| {
            format!("the hash of {name:?} is not 64 hex digits (the SHA-256 of the token)")
        })?;
        if self.entries.iter().any(|e| e.name == name) {
            return Err(format!("principal {name:?} is given twice"));
        }
        if self.entries.iter().any(|e| e.digest == digest) {
            return Err(format!(
                "the token of {name:?} is also another principal's token"
            ));
        }
        self.entries.push(Entry {
            name: name.to_owned(),
            name_digest: sha256(name.as_bytes()),
            digest,
            admin,
        });
        Ok(())
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The principal holding `token`, compared in constant time with every entry.
    pub fn verify_bearer(&self, token: &[u8]) -> Option<Principal> {
        let digest = sha256(token);
        self.select(|entry| entry.digest.ct_eq(&digest))
    }

    /// The principal `name` if `token` is its token (HTTP Basic), in constant time.
    pub fn verify_basic(&self, name: &[u8], token: &[u8]) -> Option<Principal> {
        let name_digest = sha256(name);
        let digest = sha256(token);
        self.select(|entry| entry.name_digest.ct_eq(&name_digest) & entry.digest.ct_eq(&digest))
    }

    /// Visits every entry and keeps the index of the one `matches` accepts, without
    /// branching on the comparison.
    fn select(&self, matches: impl Fn(&Entry) -> Choice) -> Option<Principal> {
        let mut found = Choice::from(0);
        let mut index = 0u32;
        for (i, entry) in self.entries.iter().enumerate() {
            let hit = matches(entry);
            index = u32::conditional_select(&index, &(i as u32), hit);
            found |= hit;
        }
        if bool::from(found) {
            let entry = &self.entries[index as usize];
            Some(Principal::new(entry.name.clone(), entry.admin))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[&str]) -> TokenSet {
        let mut set = TokenSet::default();
        for entry in entries {
            set.add(entry).unwrap();
        }
        set
    }

    #[test]
    fn bearer_tokens_match_their_principal_only() {
        let tokens = set(&[
            &entry_line("alice", "alice-secret", false),
            &entry_line("root", "root-secret", true),
        ]);
        assert_eq!(
            tokens.verify_bearer(b"alice-secret"),
            Some(Principal::new("alice".into(), false))
        );
        assert_eq!(
            tokens.verify_bearer(b"root-secret"),
            Some(Principal::new("root".into(), true))
        );
        assert_eq!(tokens.verify_bearer(b"alice-secre"), None);
        assert_eq!(tokens.verify_bearer(b""), None);
        assert_eq!(TokenSet::default().verify_bearer(b"anything"), None);
    }

    #[test]
    fn basic_credentials_need_the_right_name_and_token() {
        let tokens = set(&[
            &entry_line("alice", "alice-secret", false),
            &entry_line("bob", "bob-secret", false),
        ]);
        assert!(tokens.verify_basic(b"alice", b"alice-secret").is_some());
        assert!(tokens.verify_basic(b"bob", b"alice-secret").is_none());
        assert!(tokens.verify_basic(b"carol", b"alice-secret").is_none());
    }

    #[test]
    fn entries_are_checked() {
        let hash = hash_token("t");
        let mut tokens = TokenSet::default();
        assert!(tokens.add("alice").is_err());
        assert!(tokens.add(&format!("alice:{hash}:root")).is_err());
        assert!(tokens.add("alice:abcd").unwrap_err().contains("64 hex"));
        assert!(tokens.add(&format!("al ice:{hash}")).is_err());
        assert!(tokens.add(&format!(":{hash}")).is_err());
        tokens
            .add(&format!("alice:{}", hash.to_uppercase()))
            .unwrap();
        assert!(
            tokens
                .add(&format!("alice:{}", hash_token("u")))
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            tokens
                .add(&format!("bob:{hash}"))
                .unwrap_err()
                .contains("another")
        );
        assert_eq!(tokens.len(), 1);
    }

    #[test]
    fn files_and_inline_entries_load_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            format!(
                "# Corral tokens\n\n{}  # the CI\n{}\n",
                entry_line("ci", "one", false),
                entry_line("ops", "two", true)
            ),
        )
        .unwrap();
        let inline = format!(
            "{}, {}",
            entry_line("a", "three", false),
            entry_line("b", "four", false)
        );
        let tokens = TokenSet::load(Some(&path), Some(&inline)).unwrap();
        assert_eq!(tokens.len(), 4);
        assert!(tokens.verify_bearer(b"two").unwrap().admin);

        std::fs::write(&path, "ci:nothex\n").unwrap();
        let err = TokenSet::load(Some(&path), None).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = TokenSet::load(Some(&dir.path().join("missing")), None).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn new_tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("crl_") && a.len() == 4 + 43, "{a}");
    }
}
