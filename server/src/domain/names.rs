//! Resource names (AIP-122) and the rules for display names and labels.
//!
//! A session is `sessions/{session}` and a worker `sessions/{session}/workers/{worker}`,
//! where each `{…}` segment is either the resource's UUID or its display name. The
//! two cannot be confused: a display name may not have the shape of a UUID.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

/// Longest display name, in bytes (an AIP-122 resource id segment).
pub const MAX_DISPLAY_NAME_BYTES: usize = 63;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Most labels on one session.
pub const MAX_LABELS: usize = 64;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// How a request names one resource: by id or by display name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ref {
    Id(Uuid),
    Name(String),
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Id(id) => write!(f, "{id}"),
            Ref::Name(name) => f.write_str(name),
        }
    }
}

/// A malformed name, label or text: which field and why, in words a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses one id-or-display-name segment.
fn parse_segment(field: &str, kind: &str, segment: &str) -> Result<Ref, Invalid> {
    if let Ok(id) = Uuid::try_parse(segment) {
        return Ok(Ref::Id(id));
    }
    validate_display_name(field, segment).map_err(|invalid| {
        Invalid::new(
            field,
            format!(
                "{kind} {segment:?} is neither a UUID nor a valid display name ({})",
                invalid.reason
            ),
        )
    })?;
    Ok(Ref::Name(segment.to_owned()))
}

/// Parses `sessions/{session}`.
///
/// Errors: [`Invalid`] naming `field` when the name has another shape or the segment
/// is neither a UUID nor a valid display name.
pub fn parse_session_name(field: &str, name: &str) -> Result<Ref, Invalid> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["sessions", session] if !session.is_empty() => parse_segment(field, "session", session),
        _ => Err(Invalid::new(
            field,
            format!("{name:?} is not a session name; expected \"sessions/{{id or display name}}\""),
        )),
    }
}

/// Parses `sessions/{session}/workers/{worker}`.
pub fn parse_worker_name(field: &str, name: &str) -> Result<(Ref, Ref), Invalid> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["sessions", session, "workers", worker] if !session.is_empty() && !worker.is_empty() => {
            Ok((
                parse_segment(field, "session", session)?,
                parse_segment(field, "worker", worker)?,
            ))
        }
        _ => Err(Invalid::new(
            field,
            format!(
                "{name:?} is not a worker name; expected \"sessions/{{session}}/workers/{{worker}}\""
            ),
        )),
    }
}

/// Parses `sessions/{session}/workers/{worker}/checkpoints/{version}`, where
/// `{version}` is the checkpoint's version (1, 2, …) within its worker.
pub fn parse_checkpoint_name(field: &str, name: &str) -> Result<(Ref, Ref, i64), Invalid> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        [
            "sessions",
            session,
            "workers",
            worker,
            "checkpoints",
            version,
        ] if !session.is_empty() && !worker.is_empty() => {
            let version = version
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| {
                    Invalid::new(
                        field,
                        format!("checkpoint {version:?} is not a version number (1, 2, …)"),
                    )
                })?;
            Ok((
                parse_segment(field, "session", session)?,
                parse_segment(field, "worker", worker)?,
                version,
            ))
        }
        _ => Err(Invalid::new(
            field,
            format!(
                "{name:?} is not a checkpoint name; expected \"sessions/{{session}}/workers/{{worker}}/checkpoints/{{version}}\""
            ),
        )),
    }
}

/// `sessions/{id}`.
pub fn session_name(id: Uuid) -> String {
    format!("sessions/{id}")
}

/// `sessions/{session}/workers/{worker}`.
pub fn worker_name(session: Uuid, worker: Uuid) -> String {
    format!("sessions/{session}/workers/{worker}")
}

/// Checks a display name: 1-63 bytes of `[A-Za-z0-9._-]`, starting with a letter or
/// digit, and not shaped like a UUID (so that names and ids never collide).
pub fn validate_display_name(field: &str, name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if name.len() > MAX_DISPLAY_NAME_BYTES {
        return Err(Invalid::new(
            field,
            format!(
                "is {} bytes long; the limit is {MAX_DISPLAY_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(Invalid::new(field, "must start with a letter or a digit"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Invalid::new(
            field,
            format!("contains {bad:?}; only letters, digits, '.', '_' and '-' are allowed"),
        ));
    }
    if Uuid::try_parse(name).is_ok() {
        return Err(Invalid::new(field, "must not have the shape of a UUID"));
    }
    Ok(())
}

/// Checks labels: at most [`MAX_LABELS`]; keys 1-63 bytes of `[a-z0-9_.-]` starting
/// with a lower-case letter; values at most [`MAX_LABEL_VALUE_BYTES`] without control
/// characters.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if labels.len() > MAX_LABELS {
        return Err(Invalid::new(
            "labels",
            format!("{} labels; the limit is {MAX_LABELS}", labels.len()),
        ));
    }
    for (key, value) in labels {
        validate_label_key(key)?;
        let field = format!("labels.{key}");
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(Invalid::new(
                field,
                format!(
                    "value is {} bytes long; the limit is {MAX_LABEL_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(Invalid::new(field, "value contains a control character"));
        }
    }
    Ok(())
}

/// Checks one label key (see [`validate_labels`]).
pub fn validate_label_key(key: &str) -> Result<(), Invalid> {
    let field = format!("labels.{key}");
    if key.is_empty() || key.len() > MAX_LABEL_KEY_BYTES {
        return Err(Invalid::new(
            "labels",
            format!("label key {key:?} must be 1 to {MAX_LABEL_KEY_BYTES} bytes long"),
        ));
    }
    if !key.as_bytes()[0].is_ascii_lowercase() {
        return Err(Invalid::new(
            field,
            "key must start with a lower-case letter",
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(Invalid::new(
            field,
            "key may only contain a-z, 0-9, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// Checks free text (descriptions): at most `max` bytes, no NUL.
pub fn validate_text(field: &str, text: &str, max: usize) -> Result<(), Invalid> {
    if text.len() > max {
        return Err(Invalid::new(
            field,
            format!("is {} bytes long; the limit is {max}", text.len()),
        ));
    }
    if text.contains('\0') {
        return Err(Invalid::new(field, "contains a NUL character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_by_id_and_display_name() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_session_name("name", &format!("sessions/{id}")),
            Ok(Ref::Id(id))
        );
        assert_eq!(
            parse_session_name("name", "sessions/demo"),
            Ok(Ref::Name("demo".into()))
        );
        for bad in [
            "",
            "sessions/",
            "demo",
            "sessions/a/b",
            "session/x",
            "sessions/-x",
            "sessions/a b",
        ] {
            assert!(parse_session_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn worker_names() {
        let (s, w) = parse_worker_name("name", "sessions/demo/workers/logs").unwrap();
        assert_eq!((s, w), (Ref::Name("demo".into()), Ref::Name("logs".into())));
        for bad in [
            "sessions/demo",
            "sessions/demo/workers/",
            "sessions//workers/x",
            "sessions/d/w/x",
        ] {
            assert!(parse_worker_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_name_rules() {
        for good in ["demo", "a", "JIRA-12", "my_session.2", &"x".repeat(63)] {
            assert!(
                validate_display_name("display_name", good).is_ok(),
                "{good:?}"
            );
        }
        for bad in [
            "",
            "-lead",
            ".hidden",
            "has space",
            "slash/y",
            "nul\0",
            "ünïcode",
            &"x".repeat(64),
            "67e55044-10b1-426f-9247-bb680e5fe0c8",
        ] {
            assert!(
                validate_display_name("display_name", bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn label_rules() {
        let mut labels = BTreeMap::new();
        labels.insert("task".to_string(), "JIRA-12".to_string());
        labels.insert("repository".to_string(), "github.com/x/y".to_string());
        assert!(validate_labels(&labels).is_ok());
        for bad_key in ["", "Task", "1x", "a b", "a=b", &"k".repeat(64)] {
            let mut labels = BTreeMap::new();
            labels.insert(bad_key.to_string(), "v".to_string());
            assert!(validate_labels(&labels).is_err(), "{bad_key:?}");
        }
        let mut labels = BTreeMap::new();
        labels.insert("k".to_string(), "v".repeat(257));
        assert!(validate_labels(&labels).is_err());
        let mut labels = BTreeMap::new();
        labels.insert("k".to_string(), "line\nbreak".to_string());
        assert!(validate_labels(&labels).is_err());
        let labels: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_labels(&labels).is_err());
    }
}
