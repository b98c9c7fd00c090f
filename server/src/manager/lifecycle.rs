//! What a transition writes besides the state: timestamps and counters (seed 000),
//! the reason, and the event that records it. Pure: the manager computes the new row
//! here and then stores it conditionally.

use crate::clock::Micros;
use crate::domain::state::{Action, State};
use crate::store::entities::session;
use crate::store::{EventKind, EventPayload, NewEvent};

/// Why a transition happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A client asked for `Action`.
    Action(Action),
    /// The manager decided (workers ready, failure, expiry, …), with the reason in
    /// plain words.
    Automatic(String),
}

impl Cause {
    fn action(&self) -> Option<Action> {
        match self {
            Cause::Action(action) => Some(*action),
            Cause::Automatic(_) => None,
        }
    }
}

/// Settings that shape a transition's bookkeeping.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// How long a tombstone is kept before it is purged (µs).
    pub tombstone_micros: Micros,
}

/// Applies the transition `from → to` for `cause` at `now` to `model` (state,
/// timestamps, counters, reason) and returns the event that records it.
pub fn apply(
    model: &mut session::Model,
    from: State,
    to: State,
    cause: &Cause,
    now: Micros,
    retention: Retention,
) -> NewEvent {
    model.state = to.as_str().to_owned();
    model.update_time = now;
    let action = cause.action();
    model.state_reason = match cause {
        Cause::Automatic(reason) => reason.clone(),
        Cause::Action(_) => String::new(),
    };
    match to {
        State::Starting => {
            model.start_time = Some(now);
            match action {
                Some(Action::Resume) => {
                    model.resume_time = Some(now);
                    model.resume_count += 1;
                }
                Some(Action::Retry) => model.retry_count += 1,
                Some(Action::Restart) => model.restart_count += 1,
                _ => {}
            }
            if action.is_some() {
                model.last_error.clear();
            }
        }
        State::Active if from == State::Paused => {
            model.resume_time = Some(now);
            model.resume_count += 1;
        }
        // A PAUSED session brought back paused after a restart was not paused again.
        State::Paused if from != State::Paused => {
            model.pause_time = Some(now);
            model.pause_count += 1;
        }
        // Reopening from the archive starts a new resume window: the session is
        // STOPPED as of now (DESIGN.md §2: after the window, "reopen it from the
        // archive" is the way to resume).
        State::Stopped => model.stop_time = Some(now),
        State::Archived => {
            model.archive_time = Some(now);
            model.auto_archived = action.is_none();
        }
        State::Error => {
            if let Cause::Automatic(reason) = cause {
                model.last_error = reason.clone();
            }
        }
        State::Deleted => {
            model.delete_time = Some(now);
            model.purge_time = Some(now.saturating_add(retention.tombstone_micros));
        }
        _ => {}
    }
    if from == State::Archived && to == State::Stopped {
        model.auto_archived = false;
    }
    let payload = EventPayload {
        from: from.as_str().to_owned(),
        to: to.as_str().to_owned(),
        action: action.map(|a| a.as_str().to_owned()).unwrap_or_default(),
        reason: match cause {
            Cause::Automatic(reason) => reason.clone(),
            Cause::Action(_) => String::new(),
        },
        ..Default::default()
    };
    let kind = if to == State::Deleted {
        EventKind::SessionDeleted
    } else {
        EventKind::SessionStateChanged
    };
    NewEvent::session(kind, &model.id, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> session::Model {
        session::Model {
            id: "s".into(),
            display_name: "demo".into(),
            description: String::new(),
            kind: "QUICK".into(),
            work_dir: "/tmp".into(),
            repository: None,
            branch: None,
            base_ref: None,
            worktree_path: None,
            saved_ref: None,
            state: "CREATED".into(),
            version: 1,
            state_reason: String::new(),
            last_error: String::new(),
            auto_archived: false,
            creator: String::new(),
            create_time: 0,
            update_time: 0,
            start_time: None,
            pause_time: None,
            resume_time: None,
            stop_time: None,
            archive_time: None,
            delete_time: None,
            purge_time: None,
            pause_count: 0,
            resume_count: 0,
            retry_count: 0,
            restart_count: 0,
            message_count: 0,
            user_messages: 0,
            assistant_messages: 0,
            server_id: None,
        }
    }

    const RETENTION: Retention = Retention {
        tombstone_micros: 1_000,
    };

    #[test]
    fn pause_and_resume_count_and_stamp() {
        let mut m = model();
        apply(
            &mut m,
            State::Active,
            State::Paused,
            &Cause::Action(Action::Pause),
            10,
            RETENTION,
        );
        assert_eq!((m.pause_count, m.pause_time), (1, Some(10)));
        let event = apply(
            &mut m,
            State::Paused,
            State::Active,
            &Cause::Action(Action::Resume),
            20,
            RETENTION,
        );
        assert_eq!((m.resume_count, m.resume_time), (1, Some(20)));
        assert_eq!(m.state, "ACTIVE");
        assert_eq!(m.update_time, 20);
        assert_eq!(event.kind, EventKind::SessionStateChanged);
        assert_eq!(event.payload.from, "PAUSED");
        assert_eq!(event.payload.action, "resume");
    }

    #[test]
    fn resume_from_stopped_counts_as_resume() {
        let mut m = model();
        apply(
            &mut m,
            State::Stopped,
            State::Starting,
            &Cause::Action(Action::Resume),
            5,
            RETENTION,
        );
        assert_eq!((m.resume_count, m.start_time), (1, Some(5)));
    }

    #[test]
    fn errors_keep_the_reason_and_retries_clear_it() {
        let mut m = model();
        let cause = Cause::Automatic("worker \"shell\" (nope): command not found".into());
        let event = apply(&mut m, State::Starting, State::Error, &cause, 1, RETENTION);
        assert!(m.last_error.contains("command not found"));
        assert_eq!(event.payload.reason, m.last_error);
        apply(
            &mut m,
            State::Error,
            State::Starting,
            &Cause::Action(Action::Retry),
            2,
            RETENTION,
        );
        assert_eq!(m.retry_count, 1);
        assert!(m.last_error.is_empty());
    }

    #[test]
    fn delete_sets_tombstone_times() {
        let mut m = model();
        let event = apply(
            &mut m,
            State::Stopped,
            State::Deleted,
            &Cause::Action(Action::Delete),
            7,
            RETENTION,
        );
        assert_eq!((m.delete_time, m.purge_time), (Some(7), Some(1_007)));
        assert_eq!(event.kind, EventKind::SessionDeleted);
    }

    #[test]
    fn archive_marks_automatic_archiving() {
        let mut m = model();
        apply(
            &mut m,
            State::Stopped,
            State::Archived,
            &Cause::Automatic("resume window over".into()),
            3,
            RETENTION,
        );
        assert!(m.auto_archived);
        assert_eq!(m.archive_time, Some(3));
        apply(
            &mut m,
            State::Archived,
            State::Stopped,
            &Cause::Action(Action::Reopen),
            4,
            RETENTION,
        );
        assert!(!m.auto_archived);
        assert_eq!(m.stop_time, Some(4), "reopening starts a new resume window");
    }
}
