//! Detach keys: the key sequence that leaves an `attach` without stopping the
//! worker, like `docker attach --detach-keys`.
//!
//! A spec is a comma-separated list of keys, each `ctrl-<letter>`, `ctrl-@`,
//! `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`, `ctrl-_` or a single printable character
//! (the comma itself cannot be a key, it is the separator). The default is
//! `ctrl-p,ctrl-q`.
//!
//! [`DetachMatcher`] watches the raw input byte stream. Bytes that could be the start
//! of the sequence are held back; when the whole sequence has been typed the caller
//! detaches and the sequence is never sent. When a held prefix turns out not to be
//! the sequence, the held bytes are released in order, except for a tail that starts
//! the sequence again (so `ctrl-p ctrl-p ctrl-q` forwards one `ctrl-p` and detaches).
//! Matching is independent of how the input is split into reads.
//!
//! This module is pure (no I/O) so that all of the above is unit-tested.

use std::fmt;
use std::str::FromStr;

/// A parsed, non-empty detach key sequence, as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys {
    bytes: Vec<u8>,
    spec: String,
}

/// Why a detach key spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetachKeysError {
    /// The whole spec is empty.
    #[error("the detach key sequence is empty")]
    Empty,
    /// One comma-separated element is empty (e.g. `ctrl-p,,ctrl-q`).
    #[error("empty key in detach sequence {0:?} (keys are separated by ',')")]
    EmptyKey(String),
    /// `ctrl-` followed by something that has no control code.
    #[error(
        "invalid detach key {0:?}: `ctrl-` must be followed by a letter or one of @ [ \\ ] ^ _"
    )]
    BadCtrl(String),
    /// Neither `ctrl-…` nor a single printable character.
    #[error("invalid detach key {0:?}: expected `ctrl-<key>` or a single printable character")]
    BadKey(String),
}

impl DetachKeys {
    /// The key sequence as the bytes a terminal sends for it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl FromStr for DetachKeys {
    type Err = DetachKeysError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if spec.trim().is_empty() {
            return Err(DetachKeysError::Empty);
        }
        let mut bytes = Vec::new();
        for key in spec.split(',') {
            let key = key.trim();
            if key.is_empty() {
                return Err(DetachKeysError::EmptyKey(spec.to_owned()));
            }
            parse_key(key, &mut bytes)?;
        }
        Ok(Self {
            bytes,
            spec: spec.to_owned(),
        })
    }
}

impl fmt::Display for DetachKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

/// Appends the bytes of one key (`ctrl-x` or a single character) to `out`.
fn parse_key(key: &str, out: &mut Vec<u8>) -> Result<(), DetachKeysError> {
    let lower = key.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("ctrl-") {
        let code = match rest {
            "@" => 0,
            "[" => 27,
            // `ctrl-\` as typed in a shell, or `ctrl-\\` with the backslash escaped.
            "\\" | "\\\\" => 28,
            "]" => 29,
            "^" => 30,
            "_" => 31,
            _ => match rest.as_bytes() {
                [letter @ b'a'..=b'z'] => letter - b'a' + 1,
                _ => return Err(DetachKeysError::BadCtrl(key.to_owned())),
            },
        };
        out.push(code);
        return Ok(());
    }
    let mut chars = key.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if !c.is_control() && !c.is_whitespace() => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            Ok(())
        }
        _ => Err(DetachKeysError::BadKey(key.to_owned())),
    }
}

/// What [`DetachMatcher::feed`] decided about one chunk of input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fed {
    /// Bytes to forward to the worker now, in order.
    pub forward: Vec<u8>,
    /// The detach sequence was completed: send `detach` (after `forward`, if any) and
    /// ignore everything after it.
    pub detach: bool,
}

/// The detach-key state machine over the input byte stream.
#[derive(Debug, Clone)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    /// Bytes held back because they are a (proper) prefix of `keys`.
    held: Vec<u8>,
}

impl DetachMatcher {
    /// A matcher for this sequence.
    pub fn new(keys: &DetachKeys) -> Self {
        Self {
            keys: keys.as_bytes().to_vec(),
            held: Vec::new(),
        }
    }

    /// The bytes held back right now (a proper prefix of the sequence).
    #[cfg(test)]
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Feeds one chunk of input, returning what to forward and whether to detach.
    /// Once `detach` is returned, the rest of the chunk is dropped.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut fed = Fed::default();
        for &byte in input {
            self.held.push(byte);
            // Release bytes from the front until what is held is a prefix of the
            // sequence again (possibly empty): the longest tail that still matches
            // stays held, so a repeated first key does not lose the real start.
            let mut start = 0;
            while start < self.held.len() && !self.keys.starts_with(&self.held[start..]) {
                start += 1;
            }
            fed.forward.extend(self.held.drain(..start));
            if self.held.len() == self.keys.len() {
                self.held.clear();
                fed.detach = true;
                return fed;
            }
        }
        fed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTRL_P: u8 = 0x10;
    const CTRL_Q: u8 = 0x11;

    fn keys(spec: &str) -> DetachKeys {
        spec.parse().unwrap()
    }

    #[test]
    fn parses_the_default() {
        assert_eq!(keys("ctrl-p,ctrl-q").as_bytes(), [CTRL_P, CTRL_Q]);
        assert_eq!(keys("ctrl-p,ctrl-q").to_string(), "ctrl-p,ctrl-q");
    }

    #[test]
    fn parses_every_ctrl_key() {
        assert_eq!(keys("ctrl-a").as_bytes(), [1]);
        assert_eq!(keys("ctrl-z").as_bytes(), [26]);
        assert_eq!(keys("CTRL-P").as_bytes(), [CTRL_P]);
        assert_eq!(keys("ctrl-@").as_bytes(), [0]);
        assert_eq!(keys("ctrl-[").as_bytes(), [27]);
        assert_eq!(keys("ctrl-\\").as_bytes(), [28]);
        assert_eq!(keys("ctrl-\\\\").as_bytes(), [28]);
        assert_eq!(keys("ctrl-]").as_bytes(), [29]);
        assert_eq!(keys("ctrl-^").as_bytes(), [30]);
        assert_eq!(keys("ctrl-_").as_bytes(), [31]);
    }

    #[test]
    fn parses_printable_characters_and_spaces_around_commas() {
        assert_eq!(keys("ctrl-a, x").as_bytes(), [1, b'x']);
        assert_eq!(keys("q,Q,~").as_bytes(), b"qQ~");
        assert_eq!(keys("é").as_bytes(), "é".as_bytes());
    }

    #[test]
    fn refuses_bad_specs_with_clear_errors() {
        assert_eq!("".parse::<DetachKeys>(), Err(DetachKeysError::Empty));
        assert_eq!(
            "ctrl-p,,ctrl-q".parse::<DetachKeys>(),
            Err(DetachKeysError::EmptyKey("ctrl-p,,ctrl-q".into()))
        );
        assert_eq!(
            "ctrl-p,".parse::<DetachKeys>(),
            Err(DetachKeysError::EmptyKey("ctrl-p,".into()))
        );
        for bad in ["ctrl-1", "ctrl-", "ctrl-ab", "ctrl-é"] {
            assert_eq!(
                bad.parse::<DetachKeys>(),
                Err(DetachKeysError::BadCtrl(bad.into())),
                "{bad:?}"
            );
        }
        for bad in ["ab", "alt-x", "\u{1}", "\u{7f}"] {
            assert_eq!(
                bad.parse::<DetachKeys>(),
                Err(DetachKeysError::BadKey(bad.into())),
                "{bad:?}"
            );
        }
        let message = "ctrl-1".parse::<DetachKeys>().unwrap_err().to_string();
        assert!(
            message.contains("ctrl-1") && message.contains("letter"),
            "{message}"
        );
    }

    fn matcher() -> DetachMatcher {
        DetachMatcher::new(&keys("ctrl-p,ctrl-q"))
    }

    #[test]
    fn plain_input_passes_through() {
        let mut m = matcher();
        let fed = m.feed(b"ls -l\r");
        assert_eq!(fed.forward, b"ls -l\r");
        assert!(!fed.detach);
    }

    #[test]
    fn the_sequence_detaches_and_is_not_forwarded() {
        let mut m = matcher();
        let fed = m.feed(&[b'a', CTRL_P, CTRL_Q, b'b']);
        assert_eq!(fed.forward, b"a");
        assert!(fed.detach);
    }

    #[test]
    fn a_sequence_split_across_reads_still_matches() {
        let mut m = matcher();
        let first = m.feed(&[b'x', CTRL_P]);
        assert_eq!(first.forward, b"x");
        assert!(!first.detach);
        assert_eq!(m.held(), [CTRL_P]);
        let second = m.feed(&[CTRL_Q]);
        assert!(second.forward.is_empty());
        assert!(second.detach);
    }

    #[test]
    fn a_broken_prefix_releases_the_held_bytes_then_the_new_byte() {
        let mut m = matcher();
        assert!(m.feed(&[CTRL_P]).forward.is_empty());
        let fed = m.feed(b"x");
        assert_eq!(fed.forward, [CTRL_P, b'x']);
        assert!(!fed.detach);
        assert!(m.held().is_empty());
    }

    #[test]
    fn a_repeated_first_key_forwards_one_and_keeps_matching() {
        let mut m = matcher();
        let fed = m.feed(&[CTRL_P, CTRL_P, CTRL_Q]);
        assert_eq!(fed.forward, [CTRL_P]);
        assert!(fed.detach);

        let mut m = matcher();
        let mut forwarded = Vec::new();
        for byte in [CTRL_P, CTRL_P, CTRL_P] {
            forwarded.extend(m.feed(&[byte]).forward);
        }
        assert_eq!(forwarded, [CTRL_P, CTRL_P]);
        assert_eq!(m.held(), [CTRL_P]);
        assert!(m.feed(&[CTRL_Q]).detach);
    }

    #[test]
    fn the_second_key_alone_is_forwarded() {
        let mut m = matcher();
        let fed = m.feed(&[CTRL_Q, b'a']);
        assert_eq!(fed.forward, [CTRL_Q, b'a']);
        assert!(!fed.detach);
    }

    #[test]
    fn overlapping_prefixes_in_longer_sequences() {
        // a,a,b: input "aaab" must detach after forwarding one 'a'.
        let mut m = DetachMatcher::new(&keys("a,a,b"));
        let fed = m.feed(b"aaab");
        assert_eq!(fed.forward, b"a");
        assert!(fed.detach);
        // a,b,a,c: "ababac" forwards "ab", then matches "abac".
        let mut m = DetachMatcher::new(&keys("a,b,a,c"));
        let fed = m.feed(b"ababac");
        assert_eq!(fed.forward, b"ab");
        assert!(fed.detach);
    }

    #[test]
    fn a_single_key_sequence() {
        let mut m = DetachMatcher::new(&keys("ctrl-]"));
        let fed = m.feed(&[b'a', 29, b'b']);
        assert_eq!(fed.forward, b"a");
        assert!(fed.detach);
    }

    #[test]
    fn byte_by_byte_feeding_equals_one_chunk() {
        let input = [
            b'h', CTRL_P, b'i', CTRL_P, CTRL_P, b'!', CTRL_Q, CTRL_P, CTRL_Q,
        ];
        let mut whole = matcher();
        let all = whole.feed(&input);
        let mut split = matcher();
        let mut forwarded = Vec::new();
        let mut detached = false;
        for byte in input {
            let fed = split.feed(&[byte]);
            forwarded.extend(fed.forward);
            if fed.detach {
                detached = true;
                break;
            }
        }
        assert_eq!(all.forward, forwarded);
        assert_eq!(
            all.forward,
            [b'h', CTRL_P, b'i', CTRL_P, CTRL_P, b'!', CTRL_Q]
        );
        assert!(all.detach && detached);
    }
}
