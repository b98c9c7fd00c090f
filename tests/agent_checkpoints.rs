//! Checkpoints and verified resume end to end, with the fake Claude Code: a
//! checkpoint per turn and on stop, crash → automatic restart on the same
//! conversation, the third crash in a row → ERROR, resuming from a checkpoint
//! after the transcript was deleted, a failed resume falling back to a new
//! conversation, and checkpoint expiry.

mod common;

use std::time::Duration;

use common::agent::{
    agent, agent_server, conversation_id, create_agent_session, list_checkpoints, messages, resume,
    send, start_agent_session, started_agent_session, stop, transcript_path, use_fake_claude,
    wait_activity, wait_message, wait_turn_checkpoint,
};
use common::{TestServer, eventually};
use corral::pb;
use corral::pb::checkpoint_service_client::CheckpointServiceClient;
use corral::pb::message::Role;
use corral::pb::session::State;
use corral::pb::worker::Activity;

fn checkpoints_client(server: &TestServer) -> CheckpointServiceClient<tonic::transport::Channel> {
    CheckpointServiceClient::new(server.channel.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_written_per_turn_and_on_stop() {
    let server = agent_server().await;
    let session = started_agent_session(&server, "turns").await;
    let worker = session.workers[0].name.clone();
    for (turn, prompt) in ["first question", "second question"].iter().enumerate() {
        send(&server, "turns", prompt).await.unwrap();
        wait_message(
            &server,
            "turns",
            Role::Assistant,
            &format!("You said: {prompt}"),
        )
        .await;
        wait_turn_checkpoint(&server, &worker, turn as i32 + 1).await;
    }
    let listed = list_checkpoints(&server, &worker).await;
    assert!(
        listed.windows(2).all(|w| w[0].version > w[1].version),
        "newest first"
    );
    assert!(
        listed.iter().all(|c| c.transcript_delta.is_empty()),
        "BASIC view by default"
    );
    let newest = &listed[0];
    assert_eq!(
        newest.agent_session_id,
        conversation_id(&session.workers[0])
    );
    assert_eq!(newest.work_dir, session.work_dir);
    assert!(
        newest.expire_time.unwrap().seconds - newest.create_time.unwrap().seconds
            >= 7 * 24 * 3600 - 1
    );

    // FULL: the transcript lines of that turn and the screen's tail.
    let full = checkpoints_client(&server)
        .get_checkpoint(pb::GetCheckpointRequest {
            name: newest.name.clone(),
            view: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let delta = String::from_utf8(full.transcript_delta.to_vec()).unwrap();
    assert!(
        delta.contains("second question") && !delta.contains("first question"),
        "{delta}"
    );
    assert!(delta.ends_with('\n'));
    assert!(!full.scrollback_tail.is_empty());
    // The deltas of all checkpoints, in order, are the transcript.
    let mut rebuilt = Vec::new();
    for c in listed.iter().rev() {
        let full = checkpoints_client(&server)
            .get_checkpoint(pb::GetCheckpointRequest {
                name: c.name.clone(),
                view: pb::checkpoint::View::Full as i32,
            })
            .await
            .unwrap()
            .into_inner();
        rebuilt.extend_from_slice(&full.transcript_delta);
    }
    assert_eq!(rebuilt, std::fs::read(&newest.transcript_path).unwrap());

    let stopped = stop(&server, "turns").await;
    assert_eq!(stopped.state(), State::Stopped);
    let after = list_checkpoints(&server, "sessions/turns").await;
    assert_eq!(
        after[0].trigger(),
        pb::checkpoint::Trigger::Stop,
        "written before StopSession returned"
    );
    assert_eq!(after[0].turn_count, 2);

    // Delete one; get it again → NOT_FOUND.
    checkpoints_client(&server)
        .delete_checkpoint(pb::DeleteCheckpointRequest {
            name: after[0].name.clone(),
        })
        .await
        .unwrap();
    let gone = checkpoints_client(&server)
        .get_checkpoint(pb::GetCheckpointRequest {
            name: after[0].name.clone(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let bad = checkpoints_client(&server)
        .get_checkpoint(pb::GetCheckpointRequest {
            name: "sessions/turns/checkpoints/1".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // Deleting the session deletes its checkpoints.
    server
        .sessions
        .clone()
        .delete_session(pb::DeleteSessionRequest {
            name: "sessions/turns".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let store = server.server.as_ref().unwrap().manager().store();
    let left = store
        .list_checkpoints(
            &corral_server::store::checkpoints::CheckpointScope {
                session_id: &session.id,
                worker_id: None,
            },
            0,
            100,
            false,
        )
        .await
        .unwrap();
    assert!(left.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_agent_restarts_on_the_same_conversation() {
    let server = agent_server().await;
    let session = started_agent_session(&server, "crashy").await;
    let before = conversation_id(&session.workers[0]);
    send(&server, "crashy", "remember the word zebra")
        .await
        .unwrap();
    wait_message(
        &server,
        "crashy",
        Role::Assistant,
        "You said: remember the word zebra",
    )
    .await;

    send(&server, "crashy", "crash").await.unwrap();
    eventually("the agent restarted", || async {
        let worker = agent(&server, "crashy").await;
        worker.restart_count == 1 && worker.state() == pb::worker::State::Running
    })
    .await;
    let session = server.get_session("crashy").await;
    assert_eq!(session.state(), State::Active);
    assert_eq!(
        conversation_id(&session.workers[0]),
        before,
        "same conversation id"
    );
    let crash = list_checkpoints(&server, "sessions/crashy")
        .await
        .into_iter()
        .find(|c| c.trigger() == pb::checkpoint::Trigger::Crash)
        .expect("a CRASH checkpoint");
    assert_eq!(crash.agent_session_id, before);

    // The agent was resumed with its conversation (the fake says so on screen).
    let mut client = server.attach(&session.workers[0].name, None, None).await;
    client.expect("resumed with 1 turns").await;
    wait_activity(&server, "crashy", Activity::Idle).await;
    send(&server, "crashy", "what was the word").await.unwrap();
    wait_message(
        &server,
        "crashy",
        Role::Assistant,
        "You said: what was the word",
    )
    .await;
    let transcript =
        std::fs::read_to_string(transcript_path(&server, &session.work_dir, &before)).unwrap();
    for text in ["remember the word zebra", "crash", "what was the word"] {
        assert!(transcript.contains(text), "{text} in the transcript");
    }
    let texts: Vec<String> = messages(&server, "crashy")
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        vec![
            "remember the word zebra",
            "You said: remember the word zebra",
            "crash",
            "what was the word",
            "You said: what was the word",
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_crash_in_a_row_moves_the_session_to_error() {
    let server = agent_server().await;
    started_agent_session(&server, "fragile").await;
    for restarts in 1..=2 {
        send(&server, "fragile", "crash").await.unwrap();
        eventually(&format!("restart {restarts}"), || async {
            let worker = agent(&server, "fragile").await;
            worker.restart_count == restarts && worker.state() == pb::worker::State::Running
        })
        .await;
        wait_activity(&server, "fragile", Activity::Idle).await;
    }
    send(&server, "fragile", "crash").await.unwrap();
    eventually("ERROR after the third crash", || async {
        server.get_session("fragile").await.state() == State::Error
    })
    .await;
    let session = server.get_session("fragile").await;
    assert!(
        session.last_error.contains("crashed 3 times in a row")
            && session.last_error.contains("code 3"),
        "{}",
        session.last_error
    );
    let worker = &session.workers[0];
    assert_eq!(worker.state(), pb::worker::State::Failed);
    // The worker's error says what the agent printed last.
    assert!(
        worker.last_error.contains("exited with code 3")
            && worker.last_error.contains("crashing on purpose"),
        "{}",
        worker.last_error
    );
    assert_eq!(worker.restart_count, 2);
    assert_eq!(worker.activity(), Activity::Unknown);
    let refused = send(&server, "fragile", "anyone there?").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("ERROR"), "{}", refused.message());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_checkpoint_restores_a_deleted_transcript() {
    let server = agent_server().await;
    let session = started_agent_session(&server, "restore").await;
    let id = conversation_id(&session.workers[0]);
    send(&server, "restore", "write it down").await.unwrap();
    wait_message(
        &server,
        "restore",
        Role::Assistant,
        "You said: write it down",
    )
    .await;
    stop(&server, "restore").await;
    let path = transcript_path(&server, &session.work_dir, &id);
    let original = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    let newest = list_checkpoints(&server, "sessions/restore")
        .await
        .remove(0);
    let resumed = checkpoints_client(&server)
        .resume_from_checkpoint(pb::ResumeFromCheckpointRequest {
            name: newest.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.session, session.name);
    assert!(
        resumed.description.contains("restored from checkpoint"),
        "{}",
        resumed.description
    );
    assert!(
        resumed
            .description
            .contains(&format!("resumed conversation {id}")),
        "{}",
        resumed.description
    );
    assert_eq!(
        std::fs::read(&path).unwrap()[..original.len()],
        original[..]
    );
    let session = server.get_session("restore").await;
    assert_eq!(session.state(), State::Active);
    assert_eq!(conversation_id(&session.workers[0]), id);
    let mut client = server.attach(&session.workers[0].name, None, None).await;
    client.expect("resumed with 1 turns").await;

    // While it runs, resuming it from a checkpoint is refused.
    let refused = checkpoints_client(&server)
        .resume_from_checkpoint(pb::ResumeFromCheckpointRequest { name: newest.name })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_resume_falls_back_to_a_new_conversation() {
    // `forgetful` resumes a conversation id the fake never wrote, so the fake
    // answers "No conversation found" and exits: the resume fails verification.
    let server = TestServer::start_with(
        |config| {
            use_fake_claude(
                config,
                &format!(
                    "[profiles.forgetful]\ncommand = {:?}\nstart_args = [\"--session-id\", \"{{session_id}}\"]\nresume_args = [\"--resume\", \"00000000-0000-4000-8000-{{session_id}}\"]\nresume_failure_patterns = ['No conversation found']\nbracketed_paste = true\n[profiles.forgetful.transcript]\nformat = \"claude-jsonl\"\ndir = \"{{home}}/.claude/projects/{{cwd_slug}}\"\nfile = \"{{session_id}}.jsonl\"\n[[profiles.forgetful.screen_rules]]\nname = \"input\"\nactivity = \"IDLE\"\nregion = \"bottom:5\"\npattern = 'for shortcuts'\npriority = 1\n",
                    common::agent::fake_claude().display().to_string()
                ),
            )
        },
        None,
    )
    .await;
    create_agent_session(&server, "amnesia", "forgetful").await;
    start_agent_session(&server, "amnesia").await;
    let first = conversation_id(&agent(&server, "amnesia").await);
    send(&server, "amnesia", "hello").await.unwrap();
    wait_message(&server, "amnesia", Role::Assistant, "You said: hello").await;
    stop(&server, "amnesia").await;

    let resumed = resume(&server, "amnesia").await;
    let worker = agent(&server, "amnesia").await;
    assert_eq!(worker.state(), pb::worker::State::Running);
    let second = conversation_id(&worker);
    assert_ne!(second, first, "a new conversation");
    let store = server.server.as_ref().unwrap().manager().store();
    let events = store
        .events_after(0, Some(&resumed.id), 1000)
        .await
        .unwrap();
    let reasons: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "WORKER_STARTED")
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let fallback = reasons.last().unwrap();
    assert!(
        fallback.contains(&format!("resume of conversation {first} failed"))
            && fallback.contains("No conversation found")
            && fallback.contains(&format!("started conversation {second}")),
        "{reasons:?}"
    );
    // The failed attempt is recorded as stopped, not as a crash.
    assert!(resumed.last_error.is_empty());
    wait_activity(&server, "amnesia", Activity::Idle).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_checkpoints_are_deleted_once_by_the_retention_task() {
    let clock = corral_server::clock::ManualClock::new(1_800_000_000_000_000);
    let server =
        TestServer::start_with(|config| use_fake_claude(config, ""), Some(clock.clone())).await;
    started_agent_session(&server, "old").await;
    send(&server, "old", "keep this").await.unwrap();
    wait_message(&server, "old", Role::Assistant, "You said: keep this").await;
    stop(&server, "old").await;
    let count = list_checkpoints(&server, "sessions/old").await.len() as u64;
    assert!(count >= 2, "a TURN and a STOP checkpoint");
    let store = server.server.as_ref().unwrap().manager().store();
    use corral_server::clock::Clock;
    let now = clock.now();
    assert_eq!(
        store.expire_checkpoints(now).await.unwrap(),
        0,
        "nothing expired yet"
    );
    clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    // The retention task does it: once.
    let reaper =
        corral_server::reaper::Reaper::new(server.server.as_ref().unwrap().manager().clone());
    assert_eq!(
        reaper.run_once(clock.now()).await.checkpoints_expired,
        count
    );
    assert_eq!(
        reaper.run_once(clock.now()).await.checkpoints_expired,
        0,
        "idempotent"
    );
    assert!(list_checkpoints(&server, "sessions/old").await.is_empty());
    server.stop().await;
}
