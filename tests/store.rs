//! The store on a real database (SQLite by default, PostgreSQL with
//! `CORRAL_TEST_DATABASE_URL`): create, get, list, transitions, and concurrent
//! transitions that must leave exactly one winner and a state the table allows.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{TestDb, TestServer};
use corral::pb;
use corral_server::domain::names::Ref;
use corral_server::domain::state::{Action, State, transition};
use corral_server::manager::{Cause, Retention, lifecycle};
use corral_server::store::entities::session;
use corral_server::store::{EventKind, SessionQuery, SessionRow, Store, Write};
use uuid::Uuid;

fn row(name: &str, now: i64) -> SessionRow {
    SessionRow {
        model: session::Model {
            id: Uuid::new_v4().to_string(),
            display_name: name.into(),
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
            create_time: now,
            update_time: now,
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
        },
        labels: BTreeMap::from([("task".to_string(), "JIRA-12".to_string())]),
    }
}

async fn store() -> (Store, TestDb, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path()).await;
    let store = Store::connect(&db.url).await.expect("connect and migrate");
    (store, db, dir)
}

const RETENTION: Retention = Retention {
    tombstone_micros: 1_000_000,
};

/// Applies `action` to `old` as the manager would.
fn next(
    old: &SessionRow,
    action: Action,
    now: i64,
) -> (SessionRow, corral_server::store::NewEvent) {
    let from = State::parse(&old.model.state).unwrap();
    let to = transition(from, action).expect("allowed by the table");
    let mut new = old.clone();
    let event = lifecycle::apply(
        &mut new.model,
        from,
        to,
        &Cause::Action(action),
        now,
        RETENTION,
    );
    (new, event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_and_transition() {
    let (store, db, _dir) = store().await;
    let mut created = row("alpha", 10);
    created.labels.insert("team".into(), "infra".into());
    store
        .create_session(&created, &[], vec![])
        .await
        .expect("create");
    // A session without labels reads back without any.
    let bare = SessionRow {
        labels: BTreeMap::new(),
        ..row("bare", 10)
    };
    store.create_session(&bare, &[], vec![]).await.unwrap();
    assert_eq!(
        store.find_session(&Ref::Name("bare".into())).await.unwrap(),
        Some(bare)
    );

    let by_name = store
        .find_session(&Ref::Name("alpha".into()))
        .await
        .unwrap()
        .expect("found by name");
    assert_eq!(by_name, created);
    let id = Uuid::parse_str(&created.model.id).unwrap();
    assert_eq!(
        store.find_session(&Ref::Id(id)).await.unwrap().as_ref(),
        Some(&created)
    );

    // A second live session may not take the name.
    let err = store
        .create_session(&row("alpha", 11), &[], vec![])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    // Start: version moves, the event is written in the same transaction.
    let (started, event) = next(&created, Action::Start, 20);
    let written = match store
        .write_session(&created, &started, vec![event])
        .await
        .unwrap()
    {
        Write::Done(row) => row,
        Write::Conflict => panic!("no concurrent writer"),
    };
    assert_eq!(written.model.version, 2);
    assert_eq!(written.model.state, "STARTING");
    assert_eq!(written.model.start_time, Some(20));
    let events = store
        .events_after(0, Some(&created.model.id), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::SessionStateChanged.as_str());

    // A write based on the stale row is refused and changes nothing.
    let (stale, event) = next(&created, Action::Delete, 30);
    assert_eq!(
        store
            .write_session(&created, &stale, vec![event])
            .await
            .unwrap(),
        Write::Conflict
    );
    let now = store.find_session(&Ref::Id(id)).await.unwrap().unwrap();
    assert_eq!(now, written);
    assert_eq!(
        store.events_after(0, None, 10).await.unwrap().len(),
        1,
        "no event for a refused write"
    );

    // Listing: filter on state and label, tombstones hidden.
    store
        .create_session(&row("beta", 12), &[], vec![])
        .await
        .unwrap();
    let page = store
        .list_sessions(&SessionQuery {
            filter: corral_server::domain::filter::parse(
                "state = STARTING AND labels.task = \"JIRA-12\"",
            )
            .unwrap(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.sessions[0].model.display_name, "alpha");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_writers_leave_one_winner() {
    let (store, db, _dir) = store().await;
    let created = row("race", 1);
    store.create_session(&created, &[], vec![]).await.unwrap();
    let store = Arc::new(store);
    // 50 writers read the same version and race to apply different transitions.
    let actions = [Action::Start, Action::Delete];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let base = created.clone();
        let action = actions[i % 2];
        tasks.push(tokio::spawn(async move {
            let (new, event) = next(&base, action, 100 + i as i64);
            store.write_session(&base, &new, vec![event]).await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task
            .await
            .unwrap()
            .expect("no database error under contention")
        {
            Write::Done(_) => winners += 1,
            Write::Conflict => {}
        }
    }
    assert_eq!(winners, 1);
    let after = store.get_session(&created.model.id).await.unwrap().unwrap();
    assert_eq!(after.model.version, 2);
    let state = State::parse(&after.model.state).unwrap();
    assert!(matches!(state, State::Starting | State::Deleted), "{state}");
    assert_eq!(store.events_after(0, None, 100).await.unwrap().len(), 1);
    db.drop_database().await;
}

/// The same race through the API: 50 concurrent calls, one succeeds, the others
/// are refused by the state machine (FAILED_PRECONDITION) or lose the race
/// (ABORTED); the stored state is one the table allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_rpcs_on_one_session() {
    let server = TestServer::start().await;
    server.create_session("contested").await;
    let mut calls = Vec::new();
    for i in 0..50 {
        let mut sessions = server.sessions.clone();
        calls.push(tokio::spawn(async move {
            let name = "sessions/contested".to_string();
            if i % 2 == 0 {
                sessions
                    .start_session(pb::StartSessionRequest {
                        name,
                        ..Default::default()
                    })
                    .await
            } else {
                sessions
                    .delete_session(pb::DeleteSessionRequest {
                        name,
                        ..Default::default()
                    })
                    .await
            }
        }));
    }
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => assert!(
                matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::Aborted | tonic::Code::NotFound
                ),
                "unexpected {status:?}"
            ),
        }
    }
    assert_eq!(ok, 1, "exactly one call wins");
    let listed = server
        .sessions
        .clone()
        .list_sessions(pb::ListSessionsRequest {
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions.len(), 1);
    let state = listed.sessions[0].state();
    assert!(
        matches!(
            state,
            pb::session::State::Active | pb::session::State::Deleted
        ),
        "{state:?}"
    );
    server.stop().await;
}

/// Concurrent writers appending one event (SQLite: one statement, the counter
/// raised by a trigger) and several at once (the counter bumped first) share one
/// gapless sequence, and the head the feed reads is its last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_and_batched_event_appends_share_one_gapless_sequence() {
    let (store, db, _dir) = store().await;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let created = row(&format!("seq-{i}"), 1);
            let id = created.model.id.clone();
            let event =
                |kind| corral_server::store::NewEvent::session(kind, &id, Default::default());
            // Two events in one append.
            store
                .create_session(
                    &created,
                    &[],
                    vec![
                        event(EventKind::SessionCreated),
                        event(EventKind::SessionUpdated),
                    ],
                )
                .await
                .unwrap();
            // Then one at a time.
            let mut current = created.clone();
            for (step, action) in [Action::Start, Action::Stop, Action::Delete]
                .into_iter()
                .enumerate()
            {
                let (new, event) = next(&current, action, 10 + step as i64);
                match store
                    .write_session(&current, &new, vec![event])
                    .await
                    .unwrap()
                {
                    Write::Done(written) => current = written,
                    Write::Conflict => panic!("nobody else writes this session"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events = store.events_after(0, None, 1000).await.unwrap();
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=16 * 5).collect::<Vec<i64>>());
    assert_eq!(store.event_head().await.unwrap(), 16 * 5);
    db.drop_database().await;
}
