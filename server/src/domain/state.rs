//! The session state machine of DESIGN.md §2 (after seed 000), as a pure table.
//!
//! [`transition`] answers, for a (state, action) pair, the state the session moves
//! to, or why the action is refused. Nothing here does I/O: the manager asks the
//! table first, then stores the result with optimistic concurrency, so a transition
//! the table forbids can never be written.
//!
//! Automatic transitions (STARTING → ACTIVE when the workers are up, → ERROR when
//! one fails, ACTIVE → ERROR when an agent crashes, STOPPED → ARCHIVED by the
//! retention task, and what a server restart does to running sessions) are
//! [`Event`]s, checked by [`on_event`] the same way.

use std::fmt;

/// The lifecycle state of a session. Stored as its upper-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Defined, nothing running.
    Created,
    /// Processes being spawned (transient).
    Starting,
    /// Processes running; clients may attach and type.
    Active,
    /// Every process suspended (SIGSTOP); PTYs open; input refused.
    Paused,
    /// Processes ended; history kept; read-only.
    Stopped,
    /// Kept permanently; read-only.
    Archived,
    /// A start or a run failed.
    Error,
    /// Final; a tombstone until purged.
    Deleted,
}

/// A lifecycle action a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Start,
    Pause,
    Resume,
    Stop,
    Restart,
    Archive,
    Reopen,
    Retry,
    Discard,
    Delete,
}

/// Something that happens to a session without a client asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Every worker of a STARTING session is running.
    Ready,
    /// A worker could not start (STARTING), or an agent worker ended abnormally
    /// (ACTIVE / PAUSED).
    Failed,
    /// The retry budget is spent: the failing session is discarded.
    RetriesExhausted,
    /// A STOPPED session outlived the resume window.
    ResumeWindowExpired,
    /// Every worker of an ACTIVE session ended on its own.
    AllWorkersExited,
    /// The server restarted while the session was running and the restart policy
    /// resumes it: STARTING and ACTIVE start again (→ STARTING); PAUSED stays
    /// PAUSED (its processes are started again, then suspended).
    Recovered,
    /// The server restarted while the session was running and the restart policy
    /// stops it (→ STOPPED, resumable).
    Orphaned,
}

impl State {
    /// Every state, in table order.
    pub const ALL: [State; 8] = [
        State::Created,
        State::Starting,
        State::Active,
        State::Paused,
        State::Stopped,
        State::Archived,
        State::Error,
        State::Deleted,
    ];

    /// The name stored in the database and shown to people (`ACTIVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "CREATED",
            State::Starting => "STARTING",
            State::Active => "ACTIVE",
            State::Paused => "PAUSED",
            State::Stopped => "STOPPED",
            State::Archived => "ARCHIVED",
            State::Error => "ERROR",
            State::Deleted => "DELETED",
        }
    }

    /// Parses a stored name (case-insensitive). `None` for anything else.
    pub fn parse(name: &str) -> Option<State> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(name))
    }

    /// True while processes may exist for the session (STARTING, ACTIVE, PAUSED).
    pub fn is_running(self) -> bool {
        matches!(self, State::Starting | State::Active | State::Paused)
    }

    /// True when the session takes no writes from clients (STOPPED, ARCHIVED, DELETED).
    pub fn is_read_only(self) -> bool {
        matches!(self, State::Stopped | State::Archived | State::Deleted)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// Every action, in table order.
    pub const ALL: [Action; 10] = [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Stop,
        Action::Restart,
        Action::Archive,
        Action::Reopen,
        Action::Retry,
        Action::Discard,
        Action::Delete,
    ];

    /// The lower-case verb shown to people (`resume`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Archive => "archive",
            Action::Reopen => "reopen",
            Action::Retry => "retry",
            Action::Discard => "discard",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The next state for `action` in `state` (the table of DESIGN.md §2), or `None`
/// when the state does not allow it.
///
/// Resume means SIGCONT from PAUSED (→ ACTIVE) and a fresh start from STOPPED
/// (→ STARTING); whether a STOPPED session is still inside its resume window is a
/// rule of the manager (it needs a clock), not of the table.
pub fn next_state(state: State, action: Action) -> Option<State> {
    use Action as A;
    use State as S;
    match (state, action) {
        (S::Created, A::Start) => Some(S::Starting),
        (S::Created, A::Delete) => Some(S::Deleted),

        (S::Starting, A::Stop) => Some(S::Stopped),

        (S::Active, A::Pause) => Some(S::Paused),
        (S::Active, A::Stop) => Some(S::Stopped),
        (S::Active, A::Restart) => Some(S::Starting),

        (S::Paused, A::Resume) => Some(S::Active),
        (S::Paused, A::Stop) => Some(S::Stopped),

        (S::Stopped, A::Resume) => Some(S::Starting),
        (S::Stopped, A::Archive) => Some(S::Archived),
        (S::Stopped, A::Delete) => Some(S::Deleted),

        (S::Archived, A::Reopen) => Some(S::Stopped),
        (S::Archived, A::Delete) => Some(S::Deleted),

        (S::Error, A::Retry) => Some(S::Starting),
        (S::Error, A::Discard) => Some(S::Deleted),

        _ => None,
    }
}

/// The next state for an automatic `event` in `state`, or `None` when the event
/// does not apply (e.g. `Ready` after a concurrent Stop already won).
pub fn on_event(state: State, event: Event) -> Option<State> {
    use Event as E;
    use State as S;
    match (state, event) {
        (S::Starting, E::Ready) => Some(S::Active),
        (S::Starting | S::Active | S::Paused, E::Failed) => Some(S::Error),
        (S::Error, E::RetriesExhausted) => Some(S::Deleted),
        (S::Stopped, E::ResumeWindowExpired) => Some(S::Archived),
        (S::Active, E::AllWorkersExited) => Some(S::Stopped),
        (S::Starting | S::Active, E::Recovered) => Some(S::Starting),
        (S::Paused, E::Recovered) => Some(S::Paused),
        (S::Starting | S::Active | S::Paused, E::Orphaned) => Some(S::Stopped),
        _ => None,
    }
}

/// The actions `state` allows, in table order (the session's `available_actions`).
pub fn available_actions(state: State) -> Vec<Action> {
    Action::ALL
        .into_iter()
        .filter(|action| next_state(state, *action).is_some())
        .collect()
}

/// Why an action was refused: the state and the actions it allows. Its `Display`
/// is the message a person sees (FAILED_PRECONDITION).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub state: State,
    pub action: Action,
    pub allowed: Vec<Action>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} a session that is {}; ",
            self.action, self.state
        )?;
        if self.allowed.is_empty() {
            write!(f, "{} is final and allows no action", self.state)
        } else {
            let allowed: Vec<&str> = self.allowed.iter().map(|a| a.as_str()).collect();
            write!(f, "allowed actions: {}", allowed.join(", "))
        }
    }
}

/// [`next_state`] with the refusal spelled out.
pub fn transition(state: State, action: Action) -> Result<State, Refused> {
    next_state(state, action).ok_or_else(|| Refused {
        state,
        action,
        allowed: available_actions(state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table of DESIGN.md §2, written out independently of `next_state`:
    /// every (state, action) cell is checked, allowed or refused.
    const TABLE: &[(State, &[(Action, State)])] = &[
        (
            State::Created,
            &[
                (Action::Start, State::Starting),
                (Action::Delete, State::Deleted),
            ],
        ),
        (State::Starting, &[(Action::Stop, State::Stopped)]),
        (
            State::Active,
            &[
                (Action::Pause, State::Paused),
                (Action::Stop, State::Stopped),
                (Action::Restart, State::Starting),
            ],
        ),
        (
            State::Paused,
            &[
                (Action::Resume, State::Active),
                (Action::Stop, State::Stopped),
            ],
        ),
        (
            State::Stopped,
            &[
                (Action::Resume, State::Starting),
                (Action::Archive, State::Archived),
                (Action::Delete, State::Deleted),
            ],
        ),
        (
            State::Archived,
            &[
                (Action::Reopen, State::Stopped),
                (Action::Delete, State::Deleted),
            ],
        ),
        (
            State::Error,
            &[
                (Action::Retry, State::Starting),
                (Action::Discard, State::Deleted),
            ],
        ),
        (State::Deleted, &[]),
    ];

    #[test]
    fn every_cell_of_the_table() {
        let mut cells = 0;
        for (state, allowed) in TABLE {
            for action in Action::ALL {
                cells += 1;
                let expected = allowed
                    .iter()
                    .find(|(a, _)| *a == action)
                    .map(|(_, next)| *next);
                assert_eq!(next_state(*state, action), expected, "{state} × {action}");
                match (transition(*state, action), expected) {
                    (Ok(next), Some(want)) => assert_eq!(next, want),
                    (Err(refused), None) => {
                        assert_eq!(refused.state, *state);
                        assert_eq!(refused.action, action);
                        let want: Vec<Action> = allowed.iter().map(|(a, _)| *a).collect();
                        assert_eq!(refused.allowed, want);
                    }
                    (got, want) => panic!("{state} × {action}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(cells, 80, "8 states × 10 actions");
    }

    #[test]
    fn available_actions_match_the_table() {
        for (state, allowed) in TABLE {
            let want: Vec<Action> = allowed.iter().map(|(a, _)| *a).collect();
            assert_eq!(available_actions(*state), want, "{state}");
        }
    }

    #[test]
    fn deleted_is_final() {
        assert!(available_actions(State::Deleted).is_empty());
        for event in [
            Event::Ready,
            Event::Failed,
            Event::RetriesExhausted,
            Event::ResumeWindowExpired,
            Event::AllWorkersExited,
            Event::Recovered,
            Event::Orphaned,
        ] {
            assert_eq!(on_event(State::Deleted, event), None);
        }
    }

    #[test]
    fn every_cell_of_the_automatic_transitions() {
        use Event as E;
        let events = [
            E::Ready,
            E::Failed,
            E::RetriesExhausted,
            E::ResumeWindowExpired,
            E::AllWorkersExited,
            E::Recovered,
            E::Orphaned,
        ];
        let allowed: &[(State, Event, State)] = &[
            (State::Starting, E::Ready, State::Active),
            (State::Starting, E::Failed, State::Error),
            (State::Active, E::Failed, State::Error),
            (State::Paused, E::Failed, State::Error),
            (State::Error, E::RetriesExhausted, State::Deleted),
            (State::Stopped, E::ResumeWindowExpired, State::Archived),
            (State::Active, E::AllWorkersExited, State::Stopped),
            (State::Starting, E::Recovered, State::Starting),
            (State::Active, E::Recovered, State::Starting),
            (State::Paused, E::Recovered, State::Paused),
            (State::Starting, E::Orphaned, State::Stopped),
            (State::Active, E::Orphaned, State::Stopped),
            (State::Paused, E::Orphaned, State::Stopped),
        ];
        for state in State::ALL {
            for event in events {
                let want = allowed
                    .iter()
                    .find(|(s, e, _)| *s == state && *e == event)
                    .map(|(_, _, next)| *next);
                assert_eq!(on_event(state, event), want, "{state} × {event:?}");
            }
        }
    }

    #[test]
    fn refusal_names_state_and_allowed_actions() {
        let refused = transition(State::Stopped, Action::Pause).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "cannot pause a session that is STOPPED; allowed actions: resume, archive, delete"
        );
        let refused = transition(State::Deleted, Action::Start).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "cannot start a session that is DELETED; DELETED is final and allows no action"
        );
    }

    #[test]
    fn state_names_round_trip() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
            assert_eq!(State::parse(&state.as_str().to_lowercase()), Some(state));
        }
        assert_eq!(State::parse("RUNNING"), None);
    }
}
