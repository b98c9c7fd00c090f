//! Resource names built from command-line arguments.
//!
//! The server resolves both ids and display names inside resource names, so the CLI
//! never looks anything up: `demo` becomes `sessions/demo`, and worker `shell` of it
//! `sessions/demo/workers/shell`. Arguments that already are full resource names
//! (start with `sessions/`) are used as they are.

/// The collection prefix of session names.
const SESSIONS: &str = "sessions/";

/// `sessions/<arg>`, unless `arg` already starts with `sessions/`.
pub fn session_name(arg: &str) -> String {
    if arg.starts_with(SESSIONS) {
        arg.to_owned()
    } else {
        format!("{SESSIONS}{arg}")
    }
}

/// `sessions/<session>/workers/<worker>`; a `worker` that already is a full name
/// (starts with `sessions/`) is used as it is.
pub fn worker_name(session: &str, worker: &str) -> String {
    if worker.starts_with(SESSIONS) {
        worker.to_owned()
    } else {
        format!("{}/workers/{worker}", session_name(session))
    }
}

/// The last segment of a resource name (`sessions/x/workers/y` → `y`), for compact
/// display.
pub fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// A session resource name without its `sessions/` prefix, for compact display.
pub fn strip_sessions(name: &str) -> &str {
    name.strip_prefix(SESSIONS).unwrap_or(name)
}

/// The first 8 characters of an id, as `docker ps` shows container ids.
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names() {
        assert_eq!(session_name("demo"), "sessions/demo");
        assert_eq!(session_name("sessions/demo"), "sessions/demo");
        assert_eq!(
            session_name("0190a5b4-7c1e-7d2a-9f00-123456789abc"),
            "sessions/0190a5b4-7c1e-7d2a-9f00-123456789abc"
        );
    }

    #[test]
    fn worker_names() {
        assert_eq!(worker_name("demo", "shell"), "sessions/demo/workers/shell");
        assert_eq!(
            worker_name("sessions/demo", "shell"),
            "sessions/demo/workers/shell"
        );
        assert_eq!(
            worker_name("demo", "sessions/other/workers/w"),
            "sessions/other/workers/w"
        );
    }

    #[test]
    fn display_helpers() {
        assert_eq!(last_segment("sessions/x/workers/y"), "y");
        assert_eq!(last_segment("plain"), "plain");
        assert_eq!(strip_sessions("sessions/x"), "x");
        assert_eq!(strip_sessions("other"), "other");
        assert_eq!(short_id("0190a5b4-7c1e-7d2a"), "0190a5b4");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("ééééééééé"), "éééééééé");
    }
}
