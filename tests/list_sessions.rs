//! ListSessions with AIP-158 pagination and AIP-160 filters, done in the database
//! (run it with `CORRAL_TEST_DATABASE_URL` for PostgreSQL), over 120 sessions in
//! every state reachable by real transitions; UpdateSession with update masks and
//! etags; DeleteSession with a stale etag.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use corral::pb;
use corral::pb::session::State;
use corral_server::clock::{Clock, ManualClock};
use prost_types::FieldMask;
use tonic::Code;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000_000;
const SESSIONS: usize = 120;
const PAGE: i32 = 25;

/// What the test itself knows about a session it made.
#[derive(Clone, Debug)]
struct Known {
    id: String,
    name: String,
    state: State,
    labels: BTreeMap<String, String>,
}

/// Which known sessions a filter should return.
type Keep<'a> = Box<dyn Fn(&Known) -> bool + 'a>;

fn micros(ts: &Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.as_ref().expect("timestamp set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

async fn list(
    server: &TestServer,
    filter: &str,
    order_by: &str,
    show_deleted: bool,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListSessionsResponse, tonic::Status> {
    server
        .sessions
        .clone()
        .list_sessions(pb::ListSessionsRequest {
            page_size,
            page_token: page_token.into(),
            filter: filter.into(),
            order_by: order_by.into(),
            show_deleted,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Reads every page; checks page sizes, the total, and that tokens end. Returns the
/// sessions in the order received and the number of pages.
async fn all_pages(
    server: &TestServer,
    filter: &str,
    order_by: &str,
    show_deleted: bool,
) -> (Vec<pb::Session>, usize) {
    let mut sessions = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    let mut total = None;
    loop {
        let page = list(server, filter, order_by, show_deleted, PAGE, &token)
            .await
            .unwrap_or_else(|status| panic!("{filter:?} / {order_by:?}: {status:?}"));
        pages += 1;
        assert!(page.sessions.len() <= PAGE as usize);
        assert_eq!(
            *total.get_or_insert(page.total_size),
            page.total_size,
            "total_size is stable"
        );
        sessions.extend(page.sessions);
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(pages <= SESSIONS, "pagination does not end");
        token = page.next_page_token;
    }
    assert_eq!(
        total.unwrap() as usize,
        sessions.len(),
        "{filter:?}: total_size"
    );
    let full_pages = sessions.len() / PAGE as usize;
    let expected_pages = full_pages + usize::from(sessions.len() % PAGE as usize != 0);
    assert_eq!(
        pages,
        expected_pages.max(1),
        "{filter:?}: every page but the last is full"
    );
    (sessions, pages)
}

fn ids(sessions: &[pb::Session]) -> Vec<String> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

/// The ids of `known` sessions matching `keep`, newest first (create_time, then id,
/// both descending — the default order).
fn expected(known: &[Known], keep: impl Fn(&Known) -> bool) -> Vec<String> {
    // `known` is in creation order and create_time never decreases along it; ties
    // (two sessions per clock tick) are broken by id.
    let mut keyed: Vec<(usize, &Known)> = known
        .iter()
        .enumerate()
        .filter(|(_, k)| keep(k))
        .map(|(i, k)| (i / 2, k))
        .collect();
    keyed.sort_by(|(ta, a), (tb, b)| tb.cmp(ta).then(b.id.cmp(&a.id)));
    keyed.into_iter().map(|(_, k)| k.id.clone()).collect()
}

/// Makes 120 sessions (two per clock tick) with labels and states:
/// every 4th from 3 DELETED, every 5th from 1 STOPPED (after a real start), every
/// 10th from 1 then ARCHIVED, the rest CREATED.
async fn populate(server: &TestServer, clock: &ManualClock) -> Vec<Known> {
    let mut known = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        if i % 2 == 0 {
            clock.advance(Duration::from_secs(1));
        }
        let mut labels = BTreeMap::new();
        labels.insert("task".to_owned(), format!("JIRA-{}", i % 4));
        labels.insert(
            "repository".to_owned(),
            if i % 2 == 0 { "acme/web" } else { "acme/api" }.to_owned(),
        );
        if i % 3 == 0 {
            labels.insert("workflow".to_owned(), "review".to_owned());
        }
        let name = format!("s-{i:03}");
        let work_dir = server.work_dir(&name);
        let created = server
            .sessions
            .clone()
            .create_session(pb::CreateSessionRequest {
                session: Some(pb::Session {
                    display_name: name.clone(),
                    labels: labels.clone().into_iter().collect(),
                    source: Some(pb::session::Source::Quick(pb::QuickSource {
                        work_dir: work_dir.display().to_string(),
                    })),
                    ..Default::default()
                }),
                workers: vec![pb::Worker {
                    display_name: "sleeper".into(),
                    spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                        command: vec!["sleep".into(), "600".into()],
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                validate_only: false,
            })
            .await
            .expect("create")
            .into_inner();
        known.push(Known {
            id: created.id,
            name,
            state: State::Created,
            labels,
        });
    }
    let mut sessions = server.sessions.clone();
    for (i, k) in known.iter_mut().enumerate() {
        let name = format!("sessions/{}", k.id);
        if i % 4 == 3 {
            clock.advance(Duration::from_millis(1));
            sessions
                .delete_session(pb::DeleteSessionRequest {
                    name,
                    ..Default::default()
                })
                .await
                .unwrap();
            k.state = State::Deleted;
        } else if i % 5 == 1 {
            clock.advance(Duration::from_millis(1));
            let started = sessions
                .start_session(pb::StartSessionRequest {
                    name: name.clone(),
                    etag: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(started.state(), State::Active, "{}", started.last_error);
            clock.advance(Duration::from_millis(1));
            sessions
                .stop_session(pb::StopSessionRequest {
                    name: name.clone(),
                    etag: String::new(),
                    grace_ms: 1_000,
                })
                .await
                .unwrap();
            k.state = State::Stopped;
            if i % 10 == 1 {
                clock.advance(Duration::from_millis(1));
                sessions
                    .archive_session(pb::ArchiveSessionRequest {
                        name,
                        etag: String::new(),
                    })
                    .await
                    .unwrap();
                k.state = State::Archived;
            }
        }
    }
    known
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pages_in_the_database() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(|_| {}, Some(clock.clone() as Arc<dyn Clock>)).await;
    let known = populate(&server, &clock).await;
    let live = |k: &Known| k.state != State::Deleted;
    assert_eq!(known.iter().filter(|k| !live(k)).count(), 30);
    assert_eq!(
        known.iter().filter(|k| k.state == State::Archived).count(),
        6
    );
    assert_eq!(
        known.iter().filter(|k| k.state == State::Stopped).count(),
        12
    );

    // No filter: the 90 live sessions, newest first, in 4 pages.
    let (sessions, pages) = all_pages(&server, "", "", false).await;
    assert_eq!(pages, 4);
    assert_eq!(ids(&sessions), expected(&known, live));
    // The state and labels listed are the ones stored.
    for s in &sessions {
        let k = known.iter().find(|k| k.id == s.id).unwrap();
        assert_eq!(s.state(), k.state, "{}", k.name);
        assert_eq!(s.display_name, k.name);
        let labels: BTreeMap<String, String> = s.labels.clone().into_iter().collect();
        assert_eq!(labels, k.labels);
    }
    // Tombstones only with show_deleted.
    let (sessions, pages) = all_pages(&server, "", "", true).await;
    assert_eq!((sessions.len(), pages), (120, 5));
    assert_eq!(ids(&sessions), expected(&known, |_| true));

    let label = |k: &Known, key: &str| k.labels.get(key).cloned();
    let cases: Vec<(&str, bool, Keep)> = vec![
        (
            r#"state = CREATED AND labels.task = "JIRA-2""#,
            false,
            Box::new(|k: &Known| {
                k.state == State::Created && label(k, "task").as_deref() == Some("JIRA-2")
            }),
        ),
        (
            "state = STOPPED OR state = ARCHIVED",
            false,
            Box::new(|k: &Known| matches!(k.state, State::Stopped | State::Archived)),
        ),
        (
            r#"labels.repository = "acme/web" AND NOT state = CREATED"#,
            false,
            Box::new(|k: &Known| {
                live(k)
                    && label(k, "repository").as_deref() == Some("acme/web")
                    && k.state != State::Created
            }),
        ),
        (
            "labels.workflow:*",
            false,
            Box::new(|k: &Known| live(k) && k.labels.contains_key("workflow")),
        ),
        (
            r#"labels.workflow != "review""#,
            false,
            Box::new(|k: &Known| live(k) && label(k, "workflow").as_deref() != Some("review")),
        ),
        (
            r#"(labels.task = "JIRA-0" OR labels.task = "JIRA-1") labels.workflow:*"#,
            true,
            Box::new(|k: &Known| {
                matches!(label(k, "task").as_deref(), Some("JIRA-0" | "JIRA-1"))
                    && k.labels.contains_key("workflow")
            }),
        ),
        ("kind = QUICK", false, Box::new(live)),
        ("kind = WORKTREE", true, Box::new(|_: &Known| false)),
        ("state = DELETED", false, Box::new(|_: &Known| false)),
        (
            "state = DELETED",
            true,
            Box::new(|k: &Known| k.state == State::Deleted),
        ),
        (
            r#"display_name = "s-042""#,
            false,
            Box::new(|k: &Known| k.name == "s-042"),
        ),
        (
            r#"create_time > "2026-01-01T00:00:30Z""#,
            false,
            Box::new(|k: &Known| {
                let i: usize = k.name[2..].parse().unwrap();
                live(k) && (i / 2 + 1) > 30
            }),
        ),
    ];
    let mut most_pages = 0;
    for (filter, show_deleted, keep) in &cases {
        let (sessions, pages) = all_pages(&server, filter, "", *show_deleted).await;
        let want = expected(&known, keep);
        assert_eq!(
            ids(&sessions),
            want,
            "filter {filter:?} (show_deleted {show_deleted})"
        );
        most_pages = most_pages.max(pages);
    }
    assert!(most_pages >= 3, "filtered results span pages too");

    // Orders: create_time ascending is the reverse; update_time both ways matches
    // the stored update times with ties broken by id.
    let (asc, _) = all_pages(&server, "", "create_time asc", false).await;
    let mut reversed = expected(&known, live);
    reversed.reverse();
    assert_eq!(ids(&asc), reversed);
    let (desc, _) = all_pages(&server, "", "create_time desc", false).await;
    assert_eq!(ids(&desc), expected(&known, live));
    let (everything, _) = all_pages(&server, "", "", true).await;
    for (order_by, descending) in [
        ("update_time", true),
        ("update_time desc", true),
        ("update_time asc", false),
    ] {
        let mut want: Vec<(i64, String)> = everything
            .iter()
            .filter(|s| s.state() != State::Deleted)
            .map(|s| (micros(&s.update_time), s.id.clone()))
            .collect();
        want.sort();
        if descending {
            want.reverse();
        }
        let (got, _) = all_pages(&server, "", order_by, false).await;
        assert_eq!(
            ids(&got),
            want.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
            "{order_by}"
        );
    }
    assert!(
        everything
            .iter()
            .map(|s| micros(&s.update_time))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 10,
        "update times differ, so the update_time orders are meaningful"
    );

    // Page size: 0 means 50; larger than the maximum is coerced; a token may be
    // continued with another page size.
    let first = list(&server, "", "", false, 0, "").await.unwrap();
    assert_eq!(first.sessions.len(), 50);
    let huge = list(&server, "", "", false, 100_000, "").await.unwrap();
    assert_eq!(
        (huge.sessions.len(), huge.next_page_token.as_str()),
        (90, "")
    );
    let next = list(&server, "", "", false, 10, &first.next_page_token)
        .await
        .unwrap();
    assert_eq!(ids(&next.sessions), expected(&known, live)[50..60].to_vec());

    // Tokens are opaque and bound to their query.
    let filter = "state = CREATED";
    let page = list(&server, filter, "", false, PAGE, "").await.unwrap();
    let token = page.next_page_token;
    assert!(!token.is_empty());
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let refusals = [
        (
            "tampered",
            list(&server, filter, "", false, PAGE, &tampered).await,
        ),
        (
            "garbage",
            list(&server, filter, "", false, PAGE, "not-a-token").await,
        ),
        (
            "another filter",
            list(&server, "state = STOPPED", "", false, PAGE, &token).await,
        ),
        (
            "another order",
            list(&server, filter, "update_time", false, PAGE, &token).await,
        ),
        (
            "show_deleted",
            list(&server, filter, "", true, PAGE, &token).await,
        ),
    ];
    for (what, result) in refusals {
        let status = result.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("page_token"),
            "{what}: {}",
            status.message()
        );
    }
    // Bad requests are refused with INVALID_ARGUMENT, never INTERNAL.
    for (filter, order_by, page_size) in [
        ("state = ", "", PAGE),
        ("state = RUNNING", "", PAGE),
        ("owner = \"me\"", "", PAGE),
        ("labels.task = \"x\" AND (", "", PAGE),
        ("", "name", PAGE),
        ("", "create_time sideways", PAGE),
        ("", "", -1),
    ] {
        let status = list(&server, filter, order_by, false, page_size, "")
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{filter:?} {order_by:?} {page_size}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_session_follows_its_mask_and_etag_and_never_changes_state() {
    let server = TestServer::start().await;
    let work_dir = server.work_dir("meta");
    let created = server
        .sessions
        .clone()
        .create_session(pb::CreateSessionRequest {
            session: Some(pb::Session {
                display_name: "meta".into(),
                description: "first".into(),
                labels: [("task", "JIRA-12"), ("repository", "acme/web")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: work_dir.display().to_string(),
                })),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let started = server.start_session("meta").await;
    assert_eq!(started.state(), State::Active);
    let pid = started.workers[0].pid;
    let update = |session: pb::Session, paths: &[&str]| {
        let mut client = server.sessions.clone();
        let request = pb::UpdateSessionRequest {
            session: Some(session),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
        };
        async move {
            client
                .update_session(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };

    // `labels.<key>`: one label set, one removed (absent from the message), the
    // others untouched; the description is not in the mask and stays.
    let updated = update(
        pb::Session {
            name: "sessions/meta".into(),
            description: "ignored".into(),
            labels: [("workflow".to_owned(), "review".to_owned())]
                .into_iter()
                .collect(),
            etag: started.etag.clone(),
            ..Default::default()
        },
        &["labels.workflow", "labels.repository"],
    )
    .await
    .unwrap();
    let labels: BTreeMap<_, _> = updated.labels.clone().into_iter().collect();
    assert_eq!(
        labels,
        [("task", "JIRA-12"), ("workflow", "review")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    );
    assert_eq!(updated.description, "first");
    assert_eq!(updated.state(), State::Active, "never changes state");
    assert_eq!(updated.workers[0].pid, pid, "nor processes");
    assert_ne!(updated.etag, started.etag);
    assert!(micros(&updated.update_time) >= micros(&started.update_time));

    // A stale etag: ABORTED, nothing written.
    let status = update(
        pb::Session {
            name: "sessions/meta".into(),
            description: "stale".into(),
            etag: started.etag.clone(),
            ..Default::default()
        },
        &["description"],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(server.get_session("meta").await.description, "first");

    // `labels` replaces the whole map; display_name renames.
    let renamed = update(
        pb::Session {
            name: "sessions/meta".into(),
            display_name: "meta2".into(),
            labels: [("task".to_owned(), "JIRA-13".to_owned())]
                .into_iter()
                .collect(),
            ..Default::default()
        },
        &["display_name", "labels"],
    )
    .await
    .unwrap();
    assert_eq!(renamed.display_name, "meta2");
    assert_eq!(renamed.labels.len(), 1);
    assert_eq!(renamed.id, created.id);

    // Bad masks and bad values.
    for (paths, code) in [
        (vec!["state"], Code::InvalidArgument),
        (vec!["labels.Bad Key"], Code::InvalidArgument),
    ] {
        let status = update(
            pb::Session {
                name: "sessions/meta2".into(),
                ..Default::default()
            },
            &paths,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), code, "{paths:?}");
    }
    server.create_session("other").await;
    let status = update(
        pb::Session {
            name: "sessions/meta2".into(),
            display_name: "other".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    // Delete with a stale etag: ABORTED; with the current one: DELETED.
    let status = server
        .sessions
        .clone()
        .delete_session(pb::DeleteSessionRequest {
            name: "sessions/other".into(),
            etag: "\"999\"".into(),
            delete_branch: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let other = server.get_session("other").await;
    let deleted = server
        .sessions
        .clone()
        .delete_session(pb::DeleteSessionRequest {
            name: "sessions/other".into(),
            etag: other.etag,
            delete_branch: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.state(), State::Deleted);
    // A deleted session takes no updates.
    let status = update(
        pb::Session {
            name: format!("sessions/{}", deleted.id),
            description: "late".into(),
            ..Default::default()
        },
        &["description"],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    server.stop().await;
}
