//! Short human forms of API values for tables and lines: enum names without their
//! prefixes, local times, ages (`5m`, `2h`, `3d`), exit statuses and sizes.

use chrono::{DateTime, Local, Utc};
use corral::pb;
use prost_types::Timestamp;

/// Defines `fn $fn(value: i32) -> String` giving the proto name of an enum value
/// (`ACTIVE`), an empty string for the `*_UNSPECIFIED` zero value, and the number
/// for values this build does not know (a newer server).
macro_rules! enum_names {
    ($($(#[$doc:meta])* $fn:ident => $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn(value: i32) -> String {
                match <$ty>::try_from(value) {
                    Ok(_) if value == 0 => String::new(),
                    Ok(known) => known.as_str_name().to_owned(),
                    Err(_) => value.to_string(),
                }
            }
        )*
    };
}

enum_names! {
    /// `Session.state`, e.g. `ACTIVE`.
    session_state => pb::session::State;
    /// `Session.kind`, e.g. `QUICK`.
    session_kind => pb::session::Kind;
    /// `Session.Action`, e.g. `PAUSE`.
    session_action => pb::session::Action;
    /// `Worker.kind`, e.g. `TERMINAL`.
    worker_kind => pb::worker::Kind;
    /// `Worker.state`, e.g. `RUNNING`.
    worker_state => pb::worker::State;
    /// `Worker.activity`, e.g. `WAITING_FOR_INPUT`.
    worker_activity => pb::worker::Activity;
    /// `Message.role`, e.g. `USER`.
    message_role => pb::message::Role;
    /// `Checkpoint.trigger`, e.g. `TURN`.
    checkpoint_trigger => pb::checkpoint::Trigger;
    /// `Event.type`, e.g. `SESSION_CREATED`.
    event_type => pb::event::Type;
}

/// A protobuf timestamp as a UTC date-time (`None` when out of chrono's range).
pub fn to_utc(ts: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos.clamp(0, 999_999_999)).unwrap_or(0);
    DateTime::from_timestamp(ts.seconds, nanos)
}

/// A timestamp in local time, `2024-05-01 14:03:07 +02:00`; empty when unset.
pub fn local_time(ts: Option<&Timestamp>) -> String {
    ts.and_then(to_utc)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_default()
}

/// A timestamp in local time as one RFC 3339 word, `2024-05-01T14:03:07.123+02:00`
/// (for event lines, which are split on spaces); `-` when unset.
pub fn local_rfc3339(ts: Option<&Timestamp>) -> String {
    ts.and_then(to_utc)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
                .to_string()
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// How long ago `ts` was, like `docker ps`: `45s`, `5m`, `2h`, `3d`, `1y`; empty
/// when unset. Times in the future (clock skew) count as `0s`.
pub fn age(ts: Option<&Timestamp>, now: DateTime<Utc>) -> String {
    ts.and_then(to_utc)
        .map(|t| humanize_seconds((now - t).num_seconds()))
        .unwrap_or_default()
}

/// A duration in seconds in its largest whole unit (`s`, `m`, `h`, `d`, `y`).
pub fn humanize_seconds(seconds: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const YEAR: i64 = 365 * DAY;
    let s = seconds.max(0);
    match s {
        _ if s < MINUTE => format!("{s}s"),
        _ if s < HOUR => format!("{}m", s / MINUTE),
        _ if s < DAY => format!("{}h", s / HOUR),
        _ if s < YEAR => format!("{}d", s / DAY),
        _ => format!("{}y", s / YEAR),
    }
}

/// An exit status in one word for tables: the code (`0`), else the signal
/// (`SIGKILL`); empty when there is none.
pub fn exit_short(status: Option<&pb::ExitStatus>) -> String {
    match status {
        Some(pb::ExitStatus {
            code: Some(code), ..
        }) => code.to_string(),
        Some(status) if !status.signal.is_empty() => status.signal.clone(),
        Some(status) => status.description.clone(),
        None => String::new(),
    }
}

/// An exit status in words: its `description`, else built from code or signal.
pub fn exit_long(status: &pb::ExitStatus) -> String {
    if !status.description.is_empty() {
        return status.description.clone();
    }
    match (status.code, status.signal.as_str()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, "") => "exited".to_owned(),
        (None, signal) => format!("killed by {signal}"),
    }
}

/// A terminal size as rows×cols (`24x80`, the order `stty size` prints and the
/// project uses everywhere); empty when unset.
pub fn size(size: Option<&pb::WindowSize>) -> String {
    size.map(|s| format!("{}x{}", s.rows, s.cols))
        .unwrap_or_default()
}

/// `count` with `unit`, pluralized with an `s`: `1 byte`, `3 bytes`.
pub fn plural(count: impl Into<i64>, unit: &str) -> String {
    let count = count.into();
    if count == 1 {
        format!("{count} {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

/// The first line of `text`, cut to `max` characters with `…` when longer.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let more_lines = text.trim().lines().nth(1).is_some();
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || more_lines {
        out.push('…');
    }
    out
}

/// `text` with control characters other than newline and tab shown as `^X` or
/// `\u{..}` so that terminal escape sequences in stored output cannot drive the
/// user's terminal when printed in a table view.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_without_prefix_noise() {
        assert_eq!(session_state(pb::session::State::Active as i32), "ACTIVE");
        assert_eq!(session_state(0), "");
        assert_eq!(session_state(99), "99");
        assert_eq!(worker_kind(pb::worker::Kind::Terminal as i32), "TERMINAL");
        assert_eq!(
            worker_activity(pb::worker::Activity::WaitingForInput as i32),
            "WAITING_FOR_INPUT"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(humanize_seconds(-5), "0s");
        assert_eq!(humanize_seconds(59), "59s");
        assert_eq!(humanize_seconds(5 * 60 + 59), "5m");
        assert_eq!(humanize_seconds(2 * 3600 + 1), "2h");
        assert_eq!(humanize_seconds(3 * 86400), "3d");
        assert_eq!(humanize_seconds(800 * 86400), "2y");
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let ts = Timestamp {
            seconds: 1_000_000 - 300,
            nanos: 0,
        };
        assert_eq!(age(Some(&ts), now), "5m");
        assert_eq!(age(None, now), "");
    }

    #[test]
    fn exit_statuses() {
        let code = pb::ExitStatus {
            code: Some(3),
            description: "exited with code 3".into(),
            ..Default::default()
        };
        assert_eq!(exit_short(Some(&code)), "3");
        assert_eq!(exit_long(&code), "exited with code 3");
        let killed = pb::ExitStatus {
            signal: "SIGKILL".into(),
            ..Default::default()
        };
        assert_eq!(exit_short(Some(&killed)), "SIGKILL");
        assert_eq!(exit_long(&killed), "killed by SIGKILL");
        assert_eq!(exit_short(None), "");
    }

    #[test]
    fn sizes_lines_and_sanitizing() {
        assert_eq!(size(Some(&pb::WindowSize { rows: 24, cols: 80 })), "24x80");
        assert_eq!(size(None), "");
        assert_eq!(plural(1, "byte"), "1 byte");
        assert_eq!(plural(2, "byte"), "2 bytes");
        assert_eq!(one_line("hello\nworld", 80), "hello…");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("\n  \nfirst", 80), "first");
        assert_eq!(sanitize("a\x1b[31mb\r\n\tc"), "a^[[31mb\n\tc");
    }
}
