//! Parsers for command-line values that clap's built-in parsers do not cover.
//!
//! Each parser is a plain function or `FromStr` impl returning a readable error, so
//! clap reports a bad value as a usage error (exit code 2) naming the option, and
//! each is unit-tested below without any server.

use std::fmt;
use std::str::FromStr;

use corral::pb;

/// A `KEY=VALUE` pair (`--label`, `--env`, `--terminal`). The value may be empty and
/// may contain `=`; the key may not be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Text before the first `=`.
    pub key: String,
    /// Text after the first `=`.
    pub value: String,
}

impl FromStr for KeyValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(Self {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
            Some(_) => Err(format!(
                "expected KEY=VALUE with a non-empty KEY, got {s:?}"
            )),
            None => Err(format!("expected KEY=VALUE, got {s:?}")),
        }
    }
}

/// A command line split into argv the way a POSIX shell would (quotes and
/// backslashes), without running a shell. An empty string gives an empty argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

impl FromStr for Argv {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        shell_words::split(s)
            .map(Argv)
            .map_err(|e| format!("cannot split {s:?} into arguments: {e}"))
    }
}

/// Which history `attach` asks the server to replay (`--replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaySpec {
    /// All the scrollback the server keeps (the server's default).
    All,
    /// Nothing: live output only.
    None,
    /// The last N bytes of the scrollback.
    Last(i64),
    /// From absolute output offset N.
    From(i64),
}

impl ReplaySpec {
    /// The `AttachOpen.replay` field for this spec (`None` leaves it unset, which
    /// replays all the scrollback).
    pub fn to_pb(self) -> Option<pb::Replay> {
        use pb::replay::Mode;
        let mode = match self {
            Self::All => return None,
            Self::None => Mode::None(true),
            Self::Last(n) => Mode::LastBytes(n),
            Self::From(n) => Mode::FromOffset(n),
        };
        Some(pb::Replay { mode: Some(mode) })
    }
}

impl FromStr for ReplaySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let count = |n: &str| {
            n.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("expected a byte count (0 or more) after ':' in {s:?}"))
        };
        match lower.split_once(':') {
            None if lower == "all" => Ok(Self::All),
            None if lower == "none" => Ok(Self::None),
            Some(("last", n)) => count(n).map(Self::Last),
            Some(("from", n)) => count(n).map(Self::From),
            _ => Err(format!(
                "invalid replay spec {s:?}: expected all, none, last:N or from:N"
            )),
        }
    }
}

impl fmt::Display for ReplaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::None => f.write_str("none"),
            Self::Last(n) => write!(f, "last:{n}"),
            Self::From(n) => write!(f, "from:{n}"),
        }
    }
}

/// Every signal of the API's `Signal` enum, for error messages.
const SIGNALS: &[pb::Signal] = &[
    pb::Signal::Sighup,
    pb::Signal::Sigint,
    pb::Signal::Sigquit,
    pb::Signal::Sigkill,
    pb::Signal::Sigusr1,
    pb::Signal::Sigusr2,
    pb::Signal::Sigterm,
    pb::Signal::Sigcont,
    pb::Signal::Sigstop,
    pb::Signal::Sigtstp,
    pb::Signal::Sigwinch,
];

/// Parses a signal given as `INT`, `SIGINT`, `sigint` or its number `2`.
///
/// Only the signals of the API's `Signal` enum are accepted; numbers are the Linux
/// numbers the enum uses.
pub fn parse_signal(s: &str) -> Result<pb::Signal, String> {
    let s = s.trim();
    let supported = || {
        SIGNALS
            .iter()
            .map(|sig| format!("{} ({})", sig.as_str_name(), *sig as i32))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let signal = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<i32>()
            .ok()
            .and_then(|n| pb::Signal::try_from(n).ok())
    } else {
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        pb::Signal::from_str_name(&name)
    };
    match signal {
        Some(signal) if signal != pb::Signal::Unspecified => Ok(signal),
        _ => Err(format!(
            "unknown or unsupported signal {s:?}; supported: {}",
            supported()
        )),
    }
}

/// Every event type, for error messages.
const EVENT_TYPES: &[pb::event::Type] = &[
    pb::event::Type::SessionCreated,
    pb::event::Type::SessionUpdated,
    pb::event::Type::SessionStateChanged,
    pb::event::Type::SessionDeleted,
    pb::event::Type::WorkerCreated,
    pb::event::Type::WorkerStarted,
    pb::event::Type::WorkerExited,
    pb::event::Type::WorkerDeleted,
    pb::event::Type::ActivityChanged,
    pb::event::Type::CheckpointSaved,
    pb::event::Type::SessionPurged,
];

/// Parses an event type given as `SESSION_CREATED`, `session_created` or
/// `session-created`.
pub fn parse_event_type(s: &str) -> Result<pb::event::Type, String> {
    let name = s.trim().to_ascii_uppercase().replace('-', "_");
    match pb::event::Type::from_str_name(&name) {
        Some(t) if t != pb::event::Type::Unspecified => Ok(t),
        _ => Err(format!(
            "unknown event type {s:?}; one of: {}",
            EVENT_TYPES
                .iter()
                .map(|t| t.as_str_name().to_ascii_lowercase().replace('_', "-"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_first_equals() {
        let kv: KeyValue = "task=a=b".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("task", "a=b"));
        let kv: KeyValue = "empty=".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("empty", ""));
        assert!("novalue".parse::<KeyValue>().is_err());
        assert!("=v".parse::<KeyValue>().is_err());
    }

    #[test]
    fn argv_splits_like_a_shell() {
        let argv: Argv = r#"tail -f "/var/log/my log" it\'s"#.parse().unwrap();
        assert_eq!(argv.0, ["tail", "-f", "/var/log/my log", "it's"]);
        assert_eq!("".parse::<Argv>().unwrap().0, Vec::<String>::new());
        assert!("echo 'unterminated".parse::<Argv>().is_err());
    }

    #[test]
    fn replay_specs() {
        assert_eq!("all".parse(), Ok(ReplaySpec::All));
        assert_eq!("NONE".parse(), Ok(ReplaySpec::None));
        assert_eq!("last:4096".parse(), Ok(ReplaySpec::Last(4096)));
        assert_eq!("from:0".parse(), Ok(ReplaySpec::From(0)));
        for bad in [
            "", "some", "last", "last:", "last:-1", "from:x", "all:1", "to:3",
        ] {
            assert!(
                bad.parse::<ReplaySpec>().is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn replay_specs_map_to_the_proto() {
        use pb::replay::Mode;
        assert_eq!(ReplaySpec::All.to_pb(), None);
        let mode = |spec: ReplaySpec| spec.to_pb().and_then(|r| r.mode);
        assert_eq!(mode(ReplaySpec::None), Some(Mode::None(true)));
        assert_eq!(mode(ReplaySpec::Last(10)), Some(Mode::LastBytes(10)));
        assert_eq!(mode(ReplaySpec::From(7)), Some(Mode::FromOffset(7)));
        assert_eq!(ReplaySpec::Last(10).to_string(), "last:10");
    }

    #[test]
    fn signals_by_name_short_name_and_number() {
        for s in ["INT", "SIGINT", "sigint", "int", "2", " SigInt "] {
            assert_eq!(parse_signal(s), Ok(pb::Signal::Sigint), "{s:?}");
        }
        assert_eq!(parse_signal("9"), Ok(pb::Signal::Sigkill));
        assert_eq!(parse_signal("winch"), Ok(pb::Signal::Sigwinch));
        assert_eq!(parse_signal("usr1"), Ok(pb::Signal::Sigusr1));
        for bad in ["", "0", "4", "99", "SIGFOO", "NAL_UNSPECIFIED", "-9", "SIG"] {
            assert!(parse_signal(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn event_types() {
        for s in ["SESSION_CREATED", "session_created", "session-created"] {
            assert_eq!(parse_event_type(s), Ok(pb::event::Type::SessionCreated));
        }
        assert!(parse_event_type("type-unspecified").is_err());
        let err = parse_event_type("bogus").unwrap_err();
        assert!(err.contains("worker-exited"), "{err}");
    }
}
