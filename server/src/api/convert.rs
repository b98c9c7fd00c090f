//! Conversions between the manager's views and the generated `corral.v1` types:
//! the one place where generated types meet domain types.

use corral::pb;

use crate::agent::{Activity, ActivityState, Evidence, Profile};
use crate::clock::to_timestamp;
use crate::domain::names::{session_name, worker_name};
use crate::domain::state::{Action, State, available_actions};
use crate::manager::{SessionView, WorkerView};
use crate::store::checkpoints::checkpoint;
use crate::store::messages::message;
use crate::supervisor::{ExitInfo, WindowSize};

/// A domain state as the API's enum.
pub fn state_to_pb(state: State) -> pb::session::State {
    use pb::session::State as P;
    match state {
        State::Created => P::Created,
        State::Starting => P::Starting,
        State::Active => P::Active,
        State::Paused => P::Paused,
        State::Stopped => P::Stopped,
        State::Archived => P::Archived,
        State::Error => P::Error,
        State::Deleted => P::Deleted,
    }
}

/// A domain action as the API's enum.
pub fn action_to_pb(action: Action) -> pb::session::Action {
    use pb::session::Action as P;
    match action {
        Action::Start => P::Start,
        Action::Pause => P::Pause,
        Action::Resume => P::Resume,
        Action::Stop => P::Stop,
        Action::Restart => P::Restart,
        Action::Archive => P::Archive,
        Action::Reopen => P::Reopen,
        Action::Retry => P::Retry,
        Action::Discard => P::Discard,
        Action::Delete => P::Delete,
    }
}

fn worker_state_to_pb(state: &str) -> pb::worker::State {
    pb::worker::State::from_str_name(state).unwrap_or(pb::worker::State::Unspecified)
}

/// A session view as the API's resource.
pub fn session_to_pb(view: &SessionView) -> pb::Session {
    let model = &view.row.model;
    let state = view.state();
    let id = uuid::Uuid::try_parse(&model.id).unwrap_or_default();
    let source = match model.kind.as_str() {
        "WORKTREE" => Some(pb::session::Source::Worktree(pb::WorktreeSource {
            repository: model.repository.clone().unwrap_or_default(),
            branch: model.branch.clone().unwrap_or_default(),
            base_ref: model.base_ref.clone().unwrap_or_default(),
            worktree_path: model.worktree_path.clone().unwrap_or_default(),
            saved_ref: model.saved_ref.clone().unwrap_or_default(),
        })),
        _ => Some(pb::session::Source::Quick(pb::QuickSource {
            work_dir: model.work_dir.clone(),
        })),
    };
    let kind = match model.kind.as_str() {
        "WORKTREE" => pb::session::Kind::Worktree,
        "QUICK" => pb::session::Kind::Quick,
        _ => pb::session::Kind::Unspecified,
    };
    pb::Session {
        name: session_name(id),
        id: model.id.clone(),
        display_name: model.display_name.clone(),
        description: model.description.clone(),
        labels: view.row.labels.clone().into_iter().collect(),
        source,
        kind: kind.into(),
        work_dir: model.work_dir.clone(),
        state: state_to_pb(state).into(),
        available_actions: available_actions(state)
            .into_iter()
            .map(|a| action_to_pb(a).into())
            .collect(),
        state_reason: model.state_reason.clone(),
        last_error: model.last_error.clone(),
        auto_archived: model.auto_archived,
        create_time: Some(to_timestamp(model.create_time)),
        update_time: Some(to_timestamp(model.update_time)),
        start_time: model.start_time.map(to_timestamp),
        pause_time: model.pause_time.map(to_timestamp),
        resume_time: model.resume_time.map(to_timestamp),
        stop_time: model.stop_time.map(to_timestamp),
        archive_time: model.archive_time.map(to_timestamp),
        delete_time: model.delete_time.map(to_timestamp),
        purge_time: model.purge_time.map(to_timestamp),
        resume_deadline: view.resume_deadline.map(to_timestamp),
        pause_count: model.pause_count,
        resume_count: model.resume_count,
        retry_count: model.retry_count,
        restart_count: model.restart_count,
        attached_clients: i32::try_from(view.attached).unwrap_or(i32::MAX),
        message_count: model.message_count,
        user_messages: model.user_messages,
        assistant_messages: model.assistant_messages,
        workers: view.workers.iter().map(worker_to_pb).collect(),
        creator: model.creator.clone(),
        etag: crate::manager::etag(&view.row),
    }
}

/// A worker view as the API's resource.
pub fn worker_to_pb(view: &WorkerView) -> pb::Worker {
    let model = &view.model;
    let session = uuid::Uuid::try_parse(&model.session_id).unwrap_or_default();
    let id = uuid::Uuid::try_parse(&model.id).unwrap_or_default();
    let (kind, spec) = match model.kind.as_str() {
        "AGENT" => (
            pb::worker::Kind::Agent,
            pb::worker::Spec::Agent(pb::AgentSpec {
                profile: model.agent_profile.clone(),
                model: model.model.clone(),
                extra_args: serde_json::from_str(&model.extra_args).unwrap_or_default(),
                agent_session_id: model.agent_session_id.clone(),
            }),
        ),
        _ => (
            pb::worker::Kind::Terminal,
            pb::worker::Spec::Terminal(pb::TerminalSpec {
                command: serde_json::from_str(&model.command).unwrap_or_default(),
                env: serde_json::from_str(&model.env).unwrap_or_default(),
            }),
        ),
    };
    let exit_status = (model.exit_code.is_some() || model.exit_signal.is_some()).then(|| {
        exit_to_pb(&ExitInfo {
            code: model.exit_code,
            signal: model
                .exit_signal
                .as_deref()
                .and_then(|name| name.parse::<nix::sys::signal::Signal>().ok())
                .map(|s| s as i32),
            core_dumped: false,
        })
    });
    pb::Worker {
        name: worker_name(session, id),
        id: model.id.clone(),
        display_name: model.display_name.clone(),
        kind: kind.into(),
        spec: Some(spec),
        state: worker_state_to_pb(&model.state).into(),
        pid: view.pid.unwrap_or(0),
        exit_status,
        last_error: model.last_error.clone(),
        attached_clients: i32::try_from(view.attached).unwrap_or(i32::MAX),
        size: Some(size_to_pb(view.size)),
        output_offset: i64::try_from(view.output_offset).unwrap_or(i64::MAX),
        activity: if kind == pb::worker::Kind::Agent {
            Activity::parse(&model.activity)
                .map_or(pb::worker::Activity::Unknown, activity_to_pb)
                .into()
        } else {
            pb::worker::Activity::Unspecified.into()
        },
        activity_evidence: (kind == pb::worker::Kind::Agent)
            .then(|| serde_json::from_str::<Evidence>(&model.activity_evidence).ok())
            .flatten()
            .map(|evidence| evidence_to_pb(&evidence)),
        create_time: Some(to_timestamp(model.create_time)),
        start_time: model.start_time.map(to_timestamp),
        exit_time: model.exit_time.map(to_timestamp),
        restart_count: model.restart_count,
    }
}

/// A PTY size as the API's message.
pub fn size_to_pb(size: WindowSize) -> pb::WindowSize {
    pb::WindowSize {
        rows: u32::from(size.rows),
        cols: u32::from(size.cols),
    }
}

/// An exit as the API's message.
pub fn exit_to_pb(exit: &ExitInfo) -> pb::ExitStatus {
    pb::ExitStatus {
        code: exit.code,
        signal: exit.signal_name().unwrap_or_default(),
        core_dumped: exit.core_dumped,
        description: exit.describe(),
    }
}

/// An agent's activity as the API's enum.
pub fn activity_to_pb(activity: Activity) -> pb::worker::Activity {
    match activity {
        Activity::Unknown => pb::worker::Activity::Unknown,
        Activity::Working => pb::worker::Activity::Working,
        Activity::WaitingForInput => pb::worker::Activity::WaitingForInput,
        Activity::Idle => pb::worker::Activity::Idle,
    }
}

/// Activity evidence as the API's message.
pub fn evidence_to_pb(evidence: &Evidence) -> pb::ActivityEvidence {
    pb::ActivityEvidence {
        rule: evidence.rule.clone(),
        source: evidence.source.clone(),
        matched_text: evidence.matched_text.clone(),
        time: (evidence.time != 0).then(|| to_timestamp(evidence.time)),
    }
}

/// An agent's live activity as an Attach `WorkerUpdate` frame.
pub fn activity_update_to_pb(state: &ActivityState) -> pb::WorkerUpdate {
    pb::WorkerUpdate {
        state: if state.evidence.rule == "corral/not-running" {
            pb::worker::State::Unspecified.into()
        } else {
            pb::worker::State::Running.into()
        },
        activity: activity_to_pb(state.activity).into(),
        activity_evidence: Some(evidence_to_pb(&state.evidence)),
        size: None,
    }
}

/// A stored message as the API's message.
pub fn message_to_pb(message: &message::Model) -> pb::Message {
    use pb::message::{Origin, Role};
    let role = match message.role.as_str() {
        "USER" => Role::User,
        "ASSISTANT" => Role::Assistant,
        "TOOL" => Role::Tool,
        "SYSTEM" => Role::System,
        _ => Role::Unspecified,
    };
    let origin = match message.origin.as_str() {
        "TRANSCRIPT" => Origin::Transcript,
        "SEND_MESSAGE" => Origin::SendMessage,
        _ => Origin::Unspecified,
    };
    pb::Message {
        name: crate::manager::message_name(&message.session_id, message.sequence),
        role: role.into(),
        text: message.text.clone(),
        tool_name: message.tool_name.clone(),
        create_time: Some(to_timestamp(message.create_time)),
        worker: if message.worker_id.is_empty() {
            String::new()
        } else {
            format!(
                "sessions/{}/workers/{}",
                message.session_id, message.worker_id
            )
        },
        origin: origin.into(),
        sequence: message.sequence,
    }
}

/// A stored checkpoint as the API's message; the large fields only with `full`.
pub fn checkpoint_to_pb(row: &checkpoint::Model, full: bool) -> pb::Checkpoint {
    use pb::checkpoint::Trigger;
    let trigger = match row.trigger.as_str() {
        "TURN" => Trigger::Turn,
        "STOP" => Trigger::Stop,
        "CRASH" => Trigger::Crash,
        _ => Trigger::Unspecified,
    };
    pb::Checkpoint {
        name: crate::manager::checkpoint_name(&row.session_id, &row.worker_id, row.version),
        version: row.version,
        trigger: trigger.into(),
        agent_session_id: row.agent_session_id.clone(),
        turn_count: row.turn_count,
        model: row.model.clone(),
        work_dir: row.work_dir.clone(),
        transcript_path: row.transcript_path.clone(),
        transcript_bytes: row.transcript_bytes,
        transcript_delta: if full {
            row.transcript_delta.clone().into()
        } else {
            Default::default()
        },
        scrollback_tail: if full {
            row.scrollback_tail.clone().into()
        } else {
            Default::default()
        },
        create_time: Some(to_timestamp(row.create_time)),
        expire_time: Some(to_timestamp(row.expire_time)),
    }
}

/// An agent profile as the API's message.
pub fn profile_to_pb(profile: &Profile) -> pb::AgentProfile {
    pb::AgentProfile {
        name: profile.name.clone(),
        description: profile.description.clone(),
        command: profile.command.clone(),
        models: profile.models.clone(),
        resumable: profile.resumable(),
        transcript_format: profile
            .transcript
            .as_ref()
            .map(|t| t.format.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// A stored event as the API's message: its type by name, its resource names,
/// and the detail its payload holds for that type. Unknown stored names become
/// the `_UNSPECIFIED` values rather than errors (the log outlives code changes).
pub fn event_to_pb(row: &crate::store::entities::event::Model) -> pb::Event {
    use crate::store::EventPayload;
    let payload: EventPayload = serde_json::from_str(&row.payload).unwrap_or_default();
    let kind = pb::event::Type::from_str_name(&row.kind).unwrap_or(pb::event::Type::Unspecified);
    let session = uuid::Uuid::try_parse(&row.session_id).ok();
    let worker = uuid::Uuid::try_parse(&row.worker_id).ok();
    let state = |name: &str| {
        State::parse(name)
            .map(state_to_pb)
            .unwrap_or(pb::session::State::Unspecified) as i32
    };
    use pb::event::{Detail, Type};
    let detail = match kind {
        Type::SessionCreated
        | Type::SessionStateChanged
        | Type::SessionDeleted
        | Type::SessionPurged => Some(Detail::StateChange(pb::StateChange {
            from: state(&payload.from),
            to: state(&payload.to),
            action: pb::session::Action::from_str_name(&payload.action.to_ascii_uppercase())
                .unwrap_or(pb::session::Action::Unspecified) as i32,
            reason: payload.reason.clone(),
        })),
        Type::WorkerExited => Some(Detail::WorkerExit(pb::WorkerExit {
            exit_status: Some(pb::ExitStatus {
                code: payload.exit_code,
                signal: payload.exit_signal.clone(),
                core_dumped: false,
                description: payload.reason.clone(),
            }),
        })),
        Type::ActivityChanged => {
            let activity = |name: &str| {
                pb::worker::Activity::from_str_name(name)
                    .unwrap_or(pb::worker::Activity::Unspecified) as i32
            };
            Some(Detail::ActivityChange(pb::ActivityChange {
                from: activity(&payload.from),
                to: activity(&payload.to),
                evidence: (!payload.rule.is_empty()).then(|| pb::ActivityEvidence {
                    rule: payload.rule.clone(),
                    source: payload.source.clone(),
                    matched_text: payload.matched_text.clone(),
                    time: Some(to_timestamp(row.time)),
                }),
            }))
        }
        Type::CheckpointSaved => Some(Detail::CheckpointSaved(pb::CheckpointSaved {
            checkpoint: payload.checkpoint.clone(),
            version: payload.version.unwrap_or_default(),
        })),
        _ => None,
    };
    pb::Event {
        sequence: row.sequence,
        r#type: kind as i32,
        time: Some(to_timestamp(row.time)),
        session: session.map(session_name).unwrap_or_default(),
        worker: match (session, worker) {
            (Some(session), Some(worker)) => worker_name(session, worker),
            _ => String::new(),
        },
        detail,
    }
}
