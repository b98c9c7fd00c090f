//! Agent workers end to end, against a real server with the fake Claude Code
//! (`tests/fake_agent/fake_claude.py`) in real PTYs: profiles, the conversation
//! (SendMessage, ListMessages, counts), refusals by state, export in three formats,
//! full-text search, and activity from the screen; and the built-in `gemini` and
//! `aider` profiles with the fake Gemini CLI and aider (`tests/fake_agent/`).

mod common;

use common::agent::{
    agent, agent_server, conversation_id, create_agent_session, expect_activity, messages, resume,
    send, server_with_fake, start_agent_session, started_agent_session, stop, transcript_path,
    use_fake_claude, wait_message, wait_turn_checkpoint,
};
use common::{TestServer, eventually};
use corral::pb;
use corral::pb::message::{Origin, Role};
use corral::pb::session::State;
use corral::pb::worker::Activity;
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_listed_with_their_capabilities() {
    let server = TestServer::start().await;
    let profiles = server
        .workers
        .clone()
        .list_agent_profiles(pb::ListAgentProfilesRequest {})
        .await
        .unwrap()
        .into_inner()
        .profiles;
    let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["aider", "claude", "codex", "custom", "gemini"]);
    let claude = &profiles[1];
    assert_eq!(claude.command, "claude");
    assert!(claude.resumable);
    assert_eq!(claude.transcript_format, "claude-jsonl");
    assert_eq!(profiles[2].transcript_format, "codex-jsonl");
    assert!(!profiles[3].resumable, "custom has no resume");
    assert_eq!(profiles[4].transcript_format, "gemini-jsonl");
    assert_eq!(profiles[0].transcript_format, "aider-markdown");
    assert!(profiles[0].resumable, "aider continues its history");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_specs_are_checked_against_the_profile() {
    let server = TestServer::start().await;
    let work_dir = server.work_dir("x");
    let create = |agent: pb::AgentSpec| {
        let mut sessions = server.sessions.clone();
        let work_dir = work_dir.display().to_string();
        async move {
            sessions
                .create_session(pb::CreateSessionRequest {
                    session: Some(pb::Session {
                        source: Some(pb::session::Source::Quick(pb::QuickSource { work_dir })),
                        ..Default::default()
                    }),
                    workers: vec![pb::Worker {
                        spec: Some(pb::worker::Spec::Agent(agent)),
                        ..Default::default()
                    }],
                    validate_only: true,
                })
                .await
        }
    };
    let unknown = create(pb::AgentSpec {
        profile: "bash".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(
        unknown.message().contains("choose one of: aider, claude"),
        "{}",
        unknown.message()
    );
    let arbitrary = create(pb::AgentSpec {
        profile: "claude".into(),
        extra_args: vec!["--continue".into()],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(arbitrary.code(), tonic::Code::InvalidArgument);
    assert!(
        arbitrary
            .message()
            .contains("\"--continue\" is not allowed"),
        "{}",
        arbitrary.message()
    );
    let fine = create(pb::AgentSpec {
        profile: "claude".into(),
        model: "opus".into(),
        extra_args: vec!["--permission-mode".into(), "plan".into()],
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    let worker = &fine.workers[0];
    assert_eq!(worker.display_name, "claude");
    assert_eq!(worker.kind(), pb::worker::Kind::Agent);
    assert_eq!(worker.activity(), Activity::Unknown);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_agent_binary_is_an_error_naming_profile_and_command() {
    let server = TestServer::start_with(
        |config| {
            use_fake_claude(config, "");
            let path = config.profiles.clone().unwrap();
            std::fs::write(
                &path,
                "[profiles.claude]\ncommand = \"claude-not-installed-here\"\n",
            )
            .unwrap();
        },
        None,
    )
    .await;
    create_agent_session(&server, "nobin", "claude").await;
    let session = server.start_session("nobin").await;
    assert_eq!(session.state(), State::Error);
    assert!(
        session.last_error.contains("agent profile \"claude\"")
            && session
                .last_error
                .contains("\"claude-not-installed-here\" failed: command not found in PATH"),
        "{}",
        session.last_error
    );
    let worker = &session.workers[0];
    assert_eq!(worker.state(), pb::worker::State::Failed);
    assert!(worker.last_error.contains("claude-not-installed-here"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_is_read_from_the_transcript_and_counted() {
    let server = agent_server().await;
    let session = started_agent_session(&server, "chat").await;
    let worker = &session.workers[0];
    let agent_session_id = conversation_id(worker);
    assert_eq!(agent_session_id.len(), 36, "Corral chose a UUID");

    let sent = send(&server, "chat", "hello there").await.unwrap();
    assert_eq!(sent.role(), Role::User);
    assert_eq!(sent.origin(), Origin::SendMessage);
    assert_eq!(sent.sequence, 1);
    assert_eq!(sent.worker, worker.name);
    wait_message(&server, "chat", Role::Assistant, "You said: hello there").await;

    // The transcript is where Claude Code keeps it, under the chosen id.
    let transcript = transcript_path(&server, &session.work_dir, &agent_session_id);
    let text = std::fs::read_to_string(&transcript).unwrap();
    assert!(text.contains("\"hello there\"") && text.contains("end_turn"));

    // The prompt is one message, not two: the transcript's copy claimed it.
    let all = messages(&server, "chat").await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        (all[0].role(), all[0].text.as_str()),
        (Role::User, "hello there")
    );
    assert_eq!(all[1].role(), Role::Assistant);
    assert_eq!(all[1].origin(), Origin::Transcript);
    assert_eq!(all[1].sequence, 2);
    assert_eq!(all[1].name, format!("{}/messages/2", session.name));

    send(&server, "chat", "and again").await.unwrap();
    wait_message(&server, "chat", Role::Assistant, "You said: and again").await;
    let session = server.get_session("chat").await;
    assert_eq!(
        (
            session.message_count,
            session.user_messages,
            session.assistant_messages
        ),
        (4, 2, 2)
    );
    // Paginated.
    let first = server
        .sessions
        .clone()
        .list_messages(pb::ListMessagesRequest {
            parent: "sessions/chat".into(),
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.messages.len(), first.total_size), (3, 4));
    let rest = server
        .sessions
        .clone()
        .list_messages(pb::ListMessagesRequest {
            parent: "sessions/chat".into(),
            page_size: 3,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.messages.len(), 1);
    assert_eq!(rest.messages[0].sequence, 4);
    assert!(rest.next_page_token.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_is_refused_unless_the_session_is_active() {
    let server = agent_server().await;
    create_agent_session(&server, "quiet", "claude").await;
    let refused = |status: tonic::Status, state: &str| {
        assert_eq!(
            status.code(),
            tonic::Code::FailedPrecondition,
            "{state}: {status:?}"
        );
        assert!(
            status.message().contains(state),
            "{state}: {}",
            status.message()
        );
    };
    refused(
        send(&server, "quiet", "too early").await.unwrap_err(),
        "CREATED",
    );
    start_agent_session(&server, "quiet").await;

    server
        .sessions
        .clone()
        .pause_session(pb::PauseSessionRequest {
            name: "sessions/quiet".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    refused(
        send(&server, "quiet", "while paused").await.unwrap_err(),
        "PAUSED",
    );
    server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: "sessions/quiet".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    refused(
        send(&server, "quiet", "after stop").await.unwrap_err(),
        "STOPPED",
    );
    server
        .sessions
        .clone()
        .archive_session(pb::ArchiveSessionRequest {
            name: "sessions/quiet".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    refused(
        send(&server, "quiet", "archived").await.unwrap_err(),
        "ARCHIVED",
    );
    assert!(
        messages(&server, "quiet").await.is_empty(),
        "nothing was recorded"
    );
    let deleted = server
        .sessions
        .clone()
        .delete_session(pb::DeleteSessionRequest {
            name: "sessions/quiet".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A tombstone is found by id only.
    refused(
        send(&server, &deleted.id, "deleted").await.unwrap_err(),
        "DELETED",
    );

    let empty = send(&server, "quiet", "   ").await.unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_goes_working_then_waiting_for_input_then_idle() {
    let server = agent_server().await;
    let session = started_agent_session(&server, "busy").await;
    let worker = session.workers[0].name.clone();
    let mut client = server
        .attach(&worker, Some((30, 100)), Some(pb::replay::Mode::None(true)))
        .await;
    // "hold": the fake keeps working until it gets a "g" key.
    send(&server, "busy", "hold ask for permission")
        .await
        .unwrap();
    let working = expect_activity(&mut client, Activity::Working).await;
    let evidence = working.activity_evidence.unwrap();
    assert_eq!(
        (evidence.rule.as_str(), evidence.source.as_str()),
        ("claude/spinner", "screen")
    );
    assert!(
        evidence.matched_text.contains("esc to interrupt"),
        "{}",
        evidence.matched_text
    );
    assert_eq!(agent(&server, "busy").await.activity(), Activity::Working);

    client.input(b"g").await;
    let waiting = expect_activity(&mut client, Activity::WaitingForInput).await;
    assert_eq!(
        waiting.activity_evidence.unwrap().rule,
        "claude/permission-prompt"
    );
    let stored = agent(&server, "busy").await;
    assert_eq!(stored.activity(), Activity::WaitingForInput);
    assert!(stored.activity_evidence.unwrap().time.is_some());

    client.input(b"1").await;
    expect_activity(&mut client, Activity::Idle).await;
    wait_message(
        &server,
        "busy",
        Role::Assistant,
        "You said: hold ask for permission",
    )
    .await;
    let all = messages(&server, "busy").await;
    let tools: Vec<&pb::Message> = all.iter().filter(|m| m.role() == Role::Tool).collect();
    assert_eq!(tools.len(), 2, "the Bash call and its result: {all:?}");
    assert!(tools.iter().all(|m| m.tool_name == "Bash"));

    // Every change is in the event log.
    let session_id = session.id.clone();
    let events = server
        .server
        .as_ref()
        .unwrap()
        .manager()
        .store()
        .events_after(0, Some(&session_id), 1000)
        .await
        .unwrap();
    let changes: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "ACTIVITY_CHANGED")
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["to"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let position = |activity: &str| changes.iter().position(|c| c == activity);
    let (working, waiting) = (
        position("WORKING").unwrap(),
        position("WAITING_FOR_INPUT").unwrap(),
    );
    assert!(working < waiting, "{changes:?}");
    assert!(
        changes[waiting..].contains(&"IDLE".to_string()),
        "{changes:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_in_json_csv_and_markdown_parses_back_even_when_archived() {
    let server = agent_server().await;
    started_agent_session(&server, "doc").await;
    let tricky = "say \"hi\", then\nstop, please";
    send(&server, "doc", tricky).await.unwrap();
    wait_message(&server, "doc", Role::Assistant, "You said: say \"hi\"").await;
    for call in ["stop", "archive"] {
        let mut sessions = server.sessions.clone();
        let name = "sessions/doc".to_string();
        match call {
            "stop" => {
                sessions
                    .stop_session(pb::StopSessionRequest {
                        name,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            _ => {
                sessions
                    .archive_session(pb::ArchiveSessionRequest {
                        name,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }
    }
    let export = |format: pb::export_session_request::Format| {
        let mut sessions = server.sessions.clone();
        async move {
            let mut stream = sessions
                .export_session(pb::ExportSessionRequest {
                    name: "sessions/doc".into(),
                    format: format as i32,
                })
                .await
                .unwrap()
                .into_inner();
            let mut data = Vec::new();
            let mut first = None;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap();
                if first.is_none() {
                    first = Some((chunk.content_type.clone(), chunk.filename.clone()));
                }
                data.extend_from_slice(&chunk.data);
            }
            (first.unwrap(), String::from_utf8(data).unwrap())
        }
    };
    use pb::export_session_request::Format;

    let ((content_type, filename), json) = export(Format::Json).await;
    assert_eq!(
        (content_type.as_str(), filename.as_str()),
        ("application/json", "doc.json")
    );
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["session"]["display_name"], "doc");
    assert_eq!(doc["session"]["state"], "ARCHIVED");
    assert_eq!(doc["messages"][0]["text"], tricky);
    assert_eq!(doc["messages"][0]["role"], "USER");
    assert_eq!(doc["messages"].as_array().unwrap().len(), 2);

    let ((content_type, _), csv_text) = export(Format::Csv).await;
    assert!(content_type.starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let text_column = headers.iter().position(|h| h == "text").unwrap();
    let role_column = headers.iter().position(|h| h == "role").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][text_column], tricky);
    assert_eq!(&rows[0][role_column], "USER");
    assert_eq!(&rows[1][text_column], format!("You said: {tricky}"));
    assert_eq!(
        &rows[1][headers
            .iter()
            .position(|h| h == "session_display_name")
            .unwrap()],
        "doc"
    );

    let ((content_type, filename), markdown) = export(Format::Markdown).await;
    assert!(content_type.starts_with("text/markdown"));
    assert_eq!(filename, "doc.md");
    assert!(markdown.starts_with("# doc\n"));
    assert!(markdown.contains("| State | ARCHIVED |"));
    assert!(markdown.contains("### 1 · User"));
    assert!(markdown.contains(tricky));

    let missing = server
        .sessions
        .clone()
        .export_session(pb::ExportSessionRequest {
            name: "sessions/doc".into(),
            format: 0,
        })
        .await
        .expect_err("a format is required");
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_a_word_in_one_session_and_not_the_others() {
    let server = agent_server().await;
    started_agent_session(&server, "breakfast").await;
    started_agent_session(&server, "dinner").await;
    send(&server, "breakfast", "how do I flip a pancake")
        .await
        .unwrap();
    send(&server, "dinner", "how do I roast a chicken")
        .await
        .unwrap();
    wait_message(&server, "breakfast", Role::Assistant, "pancake").await;
    wait_message(&server, "dinner", Role::Assistant, "chicken").await;
    let search = |query: &str, filter: &str| {
        let mut sessions = server.sessions.clone();
        let request = pb::SearchMessagesRequest {
            query: query.into(),
            filter: filter.into(),
            ..Default::default()
        };
        async move { sessions.search_messages(request).await }
    };
    let breakfast = server.get_session("breakfast").await;
    let found = search("PANCAKE", "").await.unwrap().into_inner().results;
    assert_eq!(found.len(), 2, "the prompt and the reply: {found:?}");
    assert!(found.iter().all(|r| r.session == breakfast.name));
    assert!(
        found.iter().all(|r| r.snippet.contains("[pancake]")),
        "{found:?}"
    );
    let both = search("how do I", "").await.unwrap().into_inner().results;
    assert_eq!(both.len(), 4);
    let every_word = search("flip chicken", "")
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(every_word.is_empty(), "every word must match");
    let filtered = search("how", "display_name = \"dinner\"")
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(!filtered.is_empty() && filtered.iter().all(|r| r.session != breakfast.name));
    let operators = search("pancake OR \"(", "")
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(operators.is_empty(), "query syntax is plain words");
    assert_eq!(
        search("  ", "").await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        search("x", "state = NOPE").await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_that_stop_an_agent_from_starting_are_unset() {
    // Every worker gets CLAUDECODE=1 (as if the server ran inside Claude Code);
    // the fake, like Claude Code, refuses to start nested. The profile unsets it.
    let server = TestServer::start_with(
        |config| {
            use_fake_claude(config, "");
            config.worker_env.push(("CLAUDECODE".into(), "1".into()));
        },
        None,
    )
    .await;
    let session = started_agent_session(&server, "nested").await;
    assert_eq!(session.workers[0].state(), pb::worker::State::Running);
    send(&server, "nested", "still here").await.unwrap();
    wait_message(&server, "nested", Role::Assistant, "You said: still here").await;
    server.stop().await;
}

/// Claude Code keeps its transcripts under `CLAUDE_CONFIG_DIR` when that is set
/// (people with several accounts set it): Corral reads them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_under_claude_config_dir_are_read() {
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().to_str().unwrap().to_owned();
    let server = TestServer::start_with(
        |config| {
            use_fake_claude(config, "");
            config
                .worker_env
                .push(("CLAUDE_CONFIG_DIR".into(), config_path.clone()));
        },
        None,
    )
    .await;
    let session = started_agent_session(&server, "elsewhere").await;
    let agent_session_id = conversation_id(&session.workers[0]);
    send(&server, "elsewhere", "where are you").await.unwrap();
    wait_message(
        &server,
        "elsewhere",
        Role::Assistant,
        "You said: where are you",
    )
    .await;
    let default_place = transcript_path(&server, &session.work_dir, &agent_session_id);
    assert!(
        !default_place.exists(),
        "{default_place:?} should not exist"
    );
    let file = default_place.file_name().unwrap();
    let slug = default_place.parent().unwrap().file_name().unwrap();
    assert!(
        config_dir
            .path()
            .join("projects")
            .join(slug)
            .join(file)
            .exists(),
        "the transcript is under CLAUDE_CONFIG_DIR"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_switches_conversations_is_followed() {
    let server = agent_server().await;
    let session = started_agent_session(&server, "switch").await;
    let first = conversation_id(&session.workers[0]);
    send(&server, "switch", "before the clear").await.unwrap();
    wait_message(
        &server,
        "switch",
        Role::Assistant,
        "You said: before the clear",
    )
    .await;
    send(&server, "switch", "/clear").await.unwrap();
    send(&server, "switch", "after the clear").await.unwrap();
    wait_message(
        &server,
        "switch",
        Role::Assistant,
        "You said: after the clear",
    )
    .await;
    let worker = agent(&server, "switch").await;
    let second = conversation_id(&worker);
    assert_ne!(second, first, "the worker follows the new conversation");
    assert!(transcript_path(&server, &session.work_dir, &second).exists());
    let texts: Vec<String> = messages(&server, "switch")
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        vec![
            "before the clear",
            "You said: before the clear",
            "/clear",
            "after the clear",
            "You said: after the clear",
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_picks_its_own_conversation_id_is_learned_and_resumed() {
    // Like Codex: no way to choose the id at start; Corral learns it from the
    // newest transcript of the directory, then resumes by that id.
    let server = TestServer::start_with(
        |config| {
            use_fake_claude(
                config,
                &format!(
                    "[profiles.picker]\ncommand = {:?}\nresume_args = [\"--resume\", \"{{session_id}}\"]\nbracketed_paste = true\nresume_failure_patterns = ['No conversation found']\n[profiles.picker.transcript]\nformat = \"claude-jsonl\"\ndir = \"{{home}}/.claude/projects/{{cwd_slug}}\"\nfile = \"{{session_id}}.jsonl\"\n",
                    common::agent::fake_claude().display().to_string()
                ),
            )
        },
        None,
    )
    .await;
    create_agent_session(&server, "picker", "picker").await;
    let started = server.start_session("picker").await;
    assert_eq!(started.state(), State::Active, "{}", started.last_error);
    assert!(
        conversation_id(&started.workers[0]).is_empty(),
        "not known before the agent writes"
    );
    // No screen rules: the activity comes from the transcript alone. Wait for
    // the input box before typing (an agent flushes what came before).
    let mut screen = server.attach(&started.workers[0].name, None, None).await;
    screen.expect("for shortcuts").await;
    send(&server, "picker", "who are you").await.unwrap();
    wait_message(&server, "picker", Role::Assistant, "You said: who are you").await;
    eventually("the conversation id is learned", || async {
        !conversation_id(&agent(&server, "picker").await).is_empty()
    })
    .await;
    let learned = conversation_id(&agent(&server, "picker").await);
    assert!(transcript_path(&server, &started.work_dir, &learned).exists());
    eventually("IDLE from the transcript's stop_reason", || async {
        let worker = agent(&server, "picker").await;
        worker.activity() == Activity::Idle
            && worker
                .activity_evidence
                .is_some_and(|e| e.rule == "transcript/stop_reason")
    })
    .await;

    stop(&server, "picker").await;
    let stopped = agent(&server, "picker").await;
    assert_eq!(stopped.activity(), Activity::Unknown);
    let resumed = resume(&server, "picker").await;
    assert_eq!(conversation_id(&resumed.workers[0]), learned);
    let mut client = server.attach(&resumed.workers[0].name, None, None).await;
    client.expect("resumed with 1 turns").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_cli_conversation_is_read_from_its_chat_file_and_resumed() {
    let server = server_with_fake("gemini", "fake_gemini.py").await;
    create_agent_session(&server, "gem", "gemini").await;
    let started = start_agent_session(&server, "gem").await;
    // Gemini CLI writes its session line at start: the id is learned from it.
    eventually("the conversation id is learned", || async {
        !conversation_id(&agent(&server, "gem").await).is_empty()
    })
    .await;
    let learned = conversation_id(&agent(&server, "gem").await);
    let chats = server.dir.path().join("home/.gemini/tmp/gem/chats");
    let file = chats.join(
        std::fs::read_dir(&chats)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name(),
    );
    assert!(
        file.to_string_lossy()
            .ends_with(&format!("-{}.jsonl", &learned[..8])),
        "{file:?}"
    );

    send(&server, "gem", "list with a tool").await.unwrap();
    wait_message(
        &server,
        "gem",
        Role::Assistant,
        "You said: list with a tool",
    )
    .await;
    send(&server, "gem", "thanks").await.unwrap();
    wait_message(&server, "gem", Role::Assistant, "You said: thanks").await;
    // The first answer was appended three times (as said, with its token counts,
    // with its tool call): each part is kept once, in order; each prompt is one
    // message (the chat file's copy claimed the one SendMessage stored).
    let read: Vec<(Role, String, String)> = messages(&server, "gem")
        .await
        .into_iter()
        .map(|m| (m.role(), m.text.clone(), m.tool_name.clone()))
        .collect();
    let tool = "run_shell_command".to_string();
    assert_eq!(
        read,
        vec![
            (Role::User, "list with a tool".into(), String::new()),
            (Role::Assistant, "I'll run ls.".into(), String::new()),
            (Role::Tool, r#"{"command":"ls"}"#.into(), tool.clone()),
            (Role::Tool, "Command: ls\nStdout: a.txt".into(), tool),
            (
                Role::Assistant,
                "You said: list with a tool".into(),
                String::new()
            ),
            (Role::User, "thanks".into(), String::new()),
            (Role::Assistant, "You said: thanks".into(), String::new()),
        ]
    );
    // The second prompt closed the first turn: a TURN checkpoint counts it.
    wait_turn_checkpoint(&server, &started.workers[0].name, 1).await;

    stop(&server, "gem").await;
    let resumed = resume(&server, "gem").await;
    assert_eq!(conversation_id(&resumed.workers[0]), learned);
    // `gemini --resume <id>`: the same chat file, read back (one turn closed).
    let mut client = server.attach(&resumed.workers[0].name, None, None).await;
    client.expect(&format!("session {learned}")).await;
    client.expect("resumed with 1 turns").await;
    assert_eq!(std::fs::read_dir(&chats).unwrap().count(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aider_conversation_is_read_from_its_chat_history_and_continued() {
    let server = server_with_fake("aider", "fake_aider.py").await;
    create_agent_session(&server, "aid", "aider").await;
    // The directory already has a history: another conversation, not this one.
    let history = server.work_dir("aid").join(".aider.chat.history.md");
    let earlier = "\n# aider chat started at 2026-01-02 03:04:05\n\n\
        #### an earlier prompt  \n\nan earlier answer\n\n> Tokens: 1 sent, 1 received.  \n";
    std::fs::write(&history, earlier).unwrap();
    let started = start_agent_session(&server, "aid").await;
    // The conversation is named by the start time of the chat this run began.
    eventually("the conversation is named by its chat", || async {
        !conversation_id(&agent(&server, "aid").await).is_empty()
    })
    .await;
    let chat = conversation_id(&agent(&server, "aid").await);
    let text = std::fs::read_to_string(&history).unwrap();
    assert!(
        text.contains(&format!("# aider chat started at {chat}\n"))
            && chat != "2026-01-02 03:04:05",
        "{chat:?} in {text:?}"
    );

    send(&server, "aid", "please edit hello").await.unwrap();
    wait_message(&server, "aid", Role::System, "Applied edit to hello.py").await;
    send(&server, "aid", "thanks").await.unwrap();
    let tokens = "Tokens: 1.2k sent, 20 received.";
    let read = || async {
        messages(&server, "aid")
            .await
            .into_iter()
            .map(|m| (m.role(), m.text.clone()))
            .collect::<Vec<(Role, String)>>()
    };
    eventually("the second answer's note", || async {
        read().await.last() == Some(&(Role::System, tokens.to_owned()))
    })
    .await;
    let answer = "I'll add it.\n\nhello.py\n```python\n<<<<<<< SEARCH\n=======\n\
        def hello():\n\n    print(\"hello\")\n>>>>>>> REPLACE\n```";
    // In the order written (each block as soon as the file ends with it); the
    // earlier conversation is not read; each prompt is one message (the
    // history's copy claimed the one SendMessage stored).
    assert_eq!(
        read().await,
        vec![
            (Role::System, "Aider v0.86.2 (fake) with fake-model".into()),
            (Role::User, "please edit hello".into()),
            (Role::Assistant, answer.into()),
            (Role::System, format!("Applied edit to hello.py\n{tokens}")),
            (Role::User, "thanks".into()),
            (Role::Assistant, "You said: thanks".into()),
            (Role::System, tokens.into()),
        ]
    );
    // The second prompt closed the first turn: a TURN checkpoint counts it.
    wait_turn_checkpoint(&server, &started.workers[0].name, 1).await;

    // An answer with nothing after it yet is read: the file ends with it.
    send(&server, "aid", "be quiet").await.unwrap();
    wait_message(&server, "aid", Role::Assistant, "You said: be quiet").await;
    stop(&server, "aid").await;

    // `aider --restore-chat-history`: the same conversation, continued in a new
    // chat of the same file.
    let resumed = resume(&server, "aid").await;
    assert_eq!(conversation_id(&resumed.workers[0]), chat);
    let mut client = server.attach(&resumed.workers[0].name, None, None).await;
    client.expect("resumed with 4 turns").await;
    send(&server, "aid", "once more").await.unwrap();
    wait_message(&server, "aid", Role::Assistant, "You said: once more").await;
    let prompts: Vec<String> = messages(&server, "aid")
        .await
        .into_iter()
        .filter(|m| m.role() == Role::User)
        .map(|m| m.text)
        .collect();
    assert_eq!(
        prompts,
        ["please edit hello", "thanks", "be quiet", "once more"]
    );
    server.stop().await;
}
