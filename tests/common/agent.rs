//! Helpers for agent-worker tests: a server whose `claude` profile runs the fake
//! Claude Code of `tests/fake_agent/fake_claude.py` (every other field of the
//! built-in profile — arguments, transcript location, screen rules — stays as
//! shipped), with short polls and backoffs so tests are quick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral::pb;
use corral_server::Config;

use super::{Client, PATIENCE, TestServer, eventually};

/// The fake agent program.
pub fn fake_claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_agent/fake_claude.py")
}

/// Writes a profiles file next to the server's data directory and points the
/// configuration at it; `extra` is appended (more profiles).
pub fn use_fake_claude(config: &mut Config, extra: &str) {
    let dir = config
        .data_dir()
        .parent()
        .expect("data dir has a parent")
        .to_owned();
    let path = dir.join("profiles.toml");
    let text = format!(
        "[profiles.claude]\ncommand = {:?}\n{extra}",
        fake_claude().display().to_string()
    );
    std::fs::write(&path, text).expect("profiles file");
    config.profiles = Some(path);
    config.transcript_poll = Duration::from_millis(50);
    config.activity_settle = Duration::from_millis(100);
    config.agent_restart_backoff = Duration::from_millis(50);
    config.resume_verify_timeout = Duration::from_secs(3);
}

/// A server with the fake `claude` profile.
pub async fn agent_server() -> TestServer {
    TestServer::start_with(|config| use_fake_claude(config, ""), None).await
}

/// A server with the fake `claude` profile whose built-in `profile` too runs a
/// fake, `tests/fake_agent/<fake>` (only its command replaced: arguments,
/// transcript location and screen rules stay as shipped).
pub async fn server_with_fake(profile: &str, fake: &str) -> TestServer {
    let program = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fake_agent")
        .join(fake);
    let extra = format!(
        "[profiles.{profile}]\ncommand = {:?}\n",
        program.display().to_string()
    );
    TestServer::start_with(|config| use_fake_claude(config, &extra), None).await
}

/// An agent worker of `profile`.
pub fn agent_worker(profile: &str) -> pb::Worker {
    pb::Worker {
        spec: Some(pb::worker::Spec::Agent(pb::AgentSpec {
            profile: profile.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Creates a quick session `name` with one agent worker of `profile`.
pub async fn create_agent_session(server: &TestServer, name: &str, profile: &str) -> pb::Session {
    let work_dir = server.work_dir(name);
    server
        .sessions
        .clone()
        .create_session(pb::CreateSessionRequest {
            session: Some(pb::Session {
                display_name: name.into(),
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: work_dir.display().to_string(),
                })),
                ..Default::default()
            }),
            workers: vec![agent_worker(profile)],
            validate_only: false,
        })
        .await
        .expect("create agent session")
        .into_inner()
}

/// Creates and starts a session with the fake claude; waits until its input box
/// is on screen (IDLE).
pub async fn started_agent_session(server: &TestServer, name: &str) -> pb::Session {
    create_agent_session(server, name, "claude").await;
    start_agent_session(server, name).await
}

/// Starts a created agent session; waits until the agent's input box is on
/// screen (IDLE).
pub async fn start_agent_session(server: &TestServer, name: &str) -> pb::Session {
    let session = server.start_session(name).await;
    assert_eq!(
        session.state(),
        pb::session::State::Active,
        "last_error: {}",
        session.last_error
    );
    wait_activity(server, name, pb::worker::Activity::Idle).await;
    server.get_session(name).await
}

/// Sends a prompt.
pub async fn send(
    server: &TestServer,
    name: &str,
    text: &str,
) -> Result<pb::Message, tonic::Status> {
    server
        .sessions
        .clone()
        .send_message(pb::SendMessageRequest {
            name: format!("sessions/{name}"),
            text: text.into(),
            worker: String::new(),
        })
        .await
        .map(|r| r.into_inner().message.expect("message"))
}

/// Every message of a session.
pub async fn messages(server: &TestServer, name: &str) -> Vec<pb::Message> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = server
            .sessions
            .clone()
            .list_messages(pb::ListMessagesRequest {
                parent: format!("sessions/{name}"),
                page_size: 0,
                page_token: token,
            })
            .await
            .expect("list messages")
            .into_inner();
        all.extend(page.messages);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// Waits until the session has a message with `role` whose text contains `text`.
pub async fn wait_message(server: &TestServer, name: &str, role: pb::message::Role, text: &str) {
    eventually(
        &format!("a {role:?} message containing {text:?}"),
        || async {
            messages(server, name)
                .await
                .iter()
                .any(|m| m.role() == role && m.text.contains(text))
        },
    )
    .await;
}

/// The session's (first) agent worker.
pub async fn agent(server: &TestServer, name: &str) -> pb::Worker {
    server
        .get_session(name)
        .await
        .workers
        .into_iter()
        .find(|w| w.kind() == pb::worker::Kind::Agent)
        .expect("an agent worker")
}

/// Waits until the session's agent reports `activity`.
pub async fn wait_activity(server: &TestServer, name: &str, activity: pb::worker::Activity) {
    eventually(&format!("agent activity {activity:?}"), || async {
        agent(server, name).await.activity() == activity
    })
    .await;
}

/// Reads an attach stream until an `update` frame with `activity` arrives;
/// returns it.
pub async fn expect_activity(
    client: &mut Client,
    activity: pb::worker::Activity,
) -> pb::WorkerUpdate {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = 0;
    loop {
        for frame in &client.frames[seen..] {
            if let pb::attach_response::Frame::Update(update) = frame
                && update.activity() == activity
            {
                return update.clone();
            }
        }
        seen = client.frames.len();
        match tokio::time::timeout_at(deadline, client.pump()).await {
            Ok(true) => {}
            Ok(false) => panic!(
                "stream ended before activity {activity:?}; frames: {:?}",
                client.frames
            ),
            Err(_) => panic!(
                "no {activity:?} update within {PATIENCE:?}; frames: {:?}\nscreen output:\n{}",
                client.frames,
                String::from_utf8_lossy(&client.output)
            ),
        }
    }
}

/// The transcript the fake claude writes for conversation `id` in `work_dir`.
pub fn transcript_path(server: &TestServer, work_dir: &str, id: &str) -> PathBuf {
    let slug: String = work_dir
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    server
        .dir
        .path()
        .join("home/.claude/projects")
        .join(slug)
        .join(format!("{id}.jsonl"))
}

/// The agent's conversation id (`AgentSpec.agent_session_id`) of `worker`.
pub fn conversation_id(worker: &pb::Worker) -> String {
    match &worker.spec {
        Some(pb::worker::Spec::Agent(agent)) => agent.agent_session_id.clone(),
        other => panic!("not an agent: {other:?}"),
    }
}

/// Stops session `name`; returns it as StopSession did.
pub async fn stop(server: &TestServer, name: &str) -> pb::Session {
    server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: format!("sessions/{name}"),
            ..Default::default()
        })
        .await
        .expect("stop")
        .into_inner()
}

/// Resumes the stopped session `name`; checks that it is ACTIVE.
pub async fn resume(server: &TestServer, name: &str) -> pb::Session {
    let resumed = server
        .sessions
        .clone()
        .resume_session(pb::ResumeSessionRequest {
            name: format!("sessions/{name}"),
            ..Default::default()
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(
        resumed.state(),
        pb::session::State::Active,
        "{}",
        resumed.last_error
    );
    resumed
}

/// The checkpoints of worker `parent` (`sessions/{s}/workers/{w}`).
pub async fn list_checkpoints(server: &TestServer, parent: &str) -> Vec<pb::Checkpoint> {
    corral::pb::checkpoint_service_client::CheckpointServiceClient::new(server.channel.clone())
        .list_checkpoints(pb::ListCheckpointsRequest {
            parent: parent.into(),
            ..Default::default()
        })
        .await
        .expect("list checkpoints")
        .into_inner()
        .checkpoints
}

/// Waits until worker `worker` (its resource name) has a TURN checkpoint counting
/// `turns` turns.
pub async fn wait_turn_checkpoint(server: &TestServer, worker: &str, turns: i32) {
    eventually(&format!("a TURN checkpoint with {turns} turns"), || async {
        list_checkpoints(server, worker)
            .await
            .iter()
            .any(|c| c.trigger() == pb::checkpoint::Trigger::Turn && c.turn_count == turns)
    })
    .await;
}
