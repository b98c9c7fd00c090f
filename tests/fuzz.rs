//! A fuzz harness, driven by proptest and bounded so that it runs in CI in seconds
//! (`PROPTEST_CASES` sets the number of cases of each target; failures shrink).
//!
//! Against a real in-process server (real database, real PTYs):
//! - **requests**: for every RPC in the descriptor set, messages built from the
//!   descriptor with random field values (biased towards names, filters and paths
//!   that reach deep into the handlers), the same messages corrupted on the wire
//!   (truncated, bit-flipped, invalid UTF-8 in a string field), and plain random
//!   bytes;
//! - **Attach frame sequences**: random `open`, `input`, `resize`, `detach`, empty
//!   and undecodable frames against a running worker.
//!
//! Asserted for every case: no INTERNAL, UNKNOWN, DATA_LOSS or UNAVAILABLE (a
//! client's mistake is never the server's fault), every error has a message, Attach streams end
//! once the client detaches, and the server still answers health afterwards (no
//! panic took it down). Server streams that may rightly stay open (WatchEvents)
//! are read for 300 ms and dropped.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::rpc::{self, Method, call_raw};
use common::{TestServer, quick_session};
use corral::pb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};
use tonic::Code;

/// Cases per target: `PROPTEST_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads random choices from the bytes proptest generated (zeros once they run
/// out, which ends every recursion), so that shrinking the bytes shrinks the
/// message.
struct Entropy<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Entropy<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn pick<'v, T>(&mut self, items: &'v [T]) -> &'v T {
        &items[usize::from(self.byte()) % items.len()]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = usize::from(self.byte()) % (max + 1);
        (0..len).map(|_| self.byte()).collect()
    }
}

/// The strings random requests are made of.
struct Vocabulary {
    /// The fuzz session's work dir (inside the allowed root).
    work_dir: String,
    /// Strings that lead somewhere — real names, filters, paths — and bad ones.
    words: Vec<String>,
}

fn vocabulary(work_dir: &str) -> Vocabulary {
    Vocabulary {
        work_dir: work_dir.into(),
        words: words(work_dir),
    }
}

fn words(work_dir: &str) -> Vec<String> {
    vec![
        String::new(),
        "sessions/fuzz".into(),
        "sessions/fuzz/workers/shell".into(),
        "sessions/fuzz/workers/nobody".into(),
        format!("sessions/{}", uuid::Uuid::new_v4()),
        "sessions/".into(),
        "sessions/../etc".into(),
        "shell".into(),
        "fuzz".into(),
        work_dir.into(),
        format!("{work_dir}/../../.."),
        "/etc".into(),
        "relative/dir".into(),
        "state = ACTIVE".into(),
        "state = NOPE".into(),
        "labels.team = \"a\" OR display_name = \"x' OR '1'='1\"".into(),
        "((((state".into(),
        "create_time desc".into(),
        "update_time sideways".into(),
        "display_name".into(),
        "labels".into(),
        "labels.team".into(),
        "\"1\"".into(),
        "a\0b".into(),
        "\u{202e}evil\u{0007}".into(),
        "x".repeat(5000),
        "y".repeat(100_000),
        "e30".into(),
        "Zm9vYmFy.c2lnbmF0dXJl".into(),
    ]
}

/// Values that fit fields of a given name, so that requests get past the first
/// checks and into the handlers.
fn likely(field: &str, work_dir: &str) -> Vec<String> {
    let strings: &[&str] = match field {
        "name" | "parent" | "worker" => &[
            "sessions/fuzz",
            "sessions/fuzz/workers/shell",
            "sessions/fuzz/workers/nobody",
            "sessions/nope",
            "sessions/spare",
            "sessions/spare/workers/shell",
        ],
        "work_dir" => {
            return vec![
                work_dir.into(),
                format!("{work_dir}/../../.."),
                "/etc".into(),
            ];
        }
        "filter" => &[
            "state = ACTIVE",
            "labels.team:*",
            "kind = QUICK AND NOT state = DELETED",
            "create_time > \"2020-01-01T00:00:00Z\"",
            "display_name = \"x'; DROP TABLE sessions; --\"",
        ],
        "order_by" => &["create_time", "update_time asc", "create_time desc"],
        "etag" => &["", "\"1\"", "\"2\"", "\"999\""],
        "display_name" => &["spare", "shell", "logs", "fuzz"],
        "paths" => &[
            "display_name",
            "description",
            "labels",
            "labels.team",
            "state",
        ],
        _ => &[],
    };
    strings.iter().map(|s| (*s).to_owned()).collect()
}

fn random_string(e: &mut Entropy<'_>, vocab: &Vocabulary) -> String {
    match e.byte() % 4 {
        0 => String::from_utf8_lossy(&e.bytes(40)).into_owned(),
        1 => e
            .bytes(20)
            .into_iter()
            .map(|b| char::from(b'a' + b % 26))
            .collect(),
        _ => e.pick(&vocab.words).clone(),
    }
}

fn scalar(
    field_name: &str,
    kind: &Kind,
    e: &mut Entropy<'_>,
    vocab: &Vocabulary,
    depth: usize,
) -> Option<Value> {
    Some(match kind {
        Kind::Double => Value::F64(*e.pick(&[0.0, -1.0, f64::NAN, f64::INFINITY, 1e308])),
        Kind::Float => Value::F32(*e.pick(&[0.0, -1.0, f32::NAN, f32::MAX])),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(match e.byte() % 3 {
            0 => e.u32() as i32,
            _ => *e.pick(&[0, 1, -1, 24, 80, 1000, 1001, 65535, i32::MIN, i32::MAX]),
        }),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(match e.byte() % 3 {
            0 => i64::from(e.u32() as i32) * 1_000_003,
            _ => *e.pick(&[0, 1, -1, 100, i64::MIN, i64::MAX]),
        }),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(match e.byte() % 3 {
            0 => e.u32(),
            _ => *e.pick(&[0, 1, 24, 80, 1000, 65535, u32::MAX]),
        }),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(*e.pick(&[0, 1, 1 << 40, u64::MAX])),
        Kind::Bool => Value::Bool(e.byte() & 1 == 1),
        Kind::String => {
            let likely = likely(field_name, &vocab.work_dir);
            if !likely.is_empty() && !e.byte().is_multiple_of(4) {
                Value::String(e.pick(&likely).clone())
            } else {
                Value::String(random_string(e, vocab))
            }
        }
        Kind::Bytes => Value::Bytes(Bytes::from(e.bytes(64))),
        Kind::Enum(descriptor) => {
            let mut numbers: Vec<i32> = descriptor.values().map(|v| v.number()).collect();
            numbers.extend([999, -1]);
            Value::EnumNumber(*e.pick(&numbers))
        }
        Kind::Message(descriptor) => {
            if depth == 0 {
                return None;
            }
            Value::Message(build(descriptor, e, vocab, depth - 1))
        }
    })
}

/// A random message of type `descriptor`.
fn build(
    descriptor: &MessageDescriptor,
    e: &mut Entropy<'_>,
    vocab: &Vocabulary,
    depth: usize,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        if e.byte().is_multiple_of(3) {
            continue;
        }
        let value = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let mut map = std::collections::HashMap::new();
            for _ in 0..=(e.byte() % 3) {
                let key = random_string(e, vocab);
                let Some(value) =
                    scalar("", &entry.map_entry_value_field().kind(), e, vocab, depth)
                else {
                    continue;
                };
                map.insert(prost_reflect::MapKey::String(key), value);
            }
            Value::Map(map)
        } else if field.is_list() {
            let items: Vec<Value> = (0..(e.byte() % 4))
                .filter_map(|_| scalar(field.name(), &field.kind(), e, vocab, depth))
                .collect();
            Value::List(items)
        } else {
            match scalar(field.name(), &field.kind(), e, vocab, depth) {
                Some(value) => value,
                None => continue,
            }
        };
        message.set_field(&field, value);
    }
    message
}

/// The request bytes of one case: a random message (`mode` 0-2), corrupted on
/// the wire (3-4), or random bytes (5).
fn request_bytes(method: &Method, mode: u8, entropy: &[u8], vocab: &Vocabulary) -> Bytes {
    let mut e = Entropy {
        bytes: entropy,
        at: 0,
    };
    if mode == 5 {
        return Bytes::copy_from_slice(entropy);
    }
    let mut bytes = build(&method.input, &mut e, vocab, 3).encode_to_vec();
    if mode >= 3 {
        match e.byte() % 4 {
            0 if !bytes.is_empty() => {
                let at = usize::from(e.byte()) % bytes.len();
                bytes.truncate(at);
            }
            1 if !bytes.is_empty() => {
                let at = usize::from(e.byte()) % bytes.len();
                bytes[at] ^= 1 << (e.byte() % 8);
            }
            2 => {
                let strings: Vec<u32> = method
                    .input
                    .fields()
                    .filter(|f| f.kind() == Kind::String && !f.is_list())
                    .map(|f| f.number())
                    .collect();
                if let Some(number) = strings.get(usize::from(e.byte()) % strings.len().max(1)) {
                    bytes.push(((number << 3) | 2) as u8);
                    bytes.extend_from_slice(&[2, 0xff, 0xfe]);
                }
            }
            _ => bytes.extend(e.bytes(16)),
        }
    }
    Bytes::from(bytes)
}

fn check_status(what: &str, status: &tonic::Status) -> Result<(), TestCaseError> {
    prop_assert!(
        !matches!(
            status.code(),
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable
        ),
        "{what}: the server blamed itself: {status:?}"
    );
    prop_assert!(
        !status.message().is_empty(),
        "{what}: an error without a message: {status:?}"
    );
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A server confined to the test's directory, running only shells, with a session
/// `fuzz` whose worker `shell` runs `cat` on a raw terminal (so random input is
/// just echoed).
async fn fuzz_server() -> TestServer {
    let server = TestServer::start_with(
        |config| {
            config.allowed_roots = vec![config.data_dir().parent().expect("a parent").into()];
            // Random commands must not run random programs on the test machine.
            config.terminal_commands = corral_server::config::TerminalCommands::List;
            config.allowed_commands = vec!["sh".into()];
            config.stop_grace = Duration::from_millis(500);
        },
        None,
    )
    .await;
    let mut request = quick_session("fuzz", &server.work_dir("fuzz"));
    request.workers = vec![pb::Worker {
        display_name: "shell".into(),
        spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
            command: vec!["sh".into(), "-c".into(), "stty raw -echo; exec cat".into()],
            ..Default::default()
        })),
        ..Default::default()
    }];
    server
        .sessions
        .clone()
        .create_session(request)
        .await
        .expect("the fuzz session");
    server.start_session("fuzz").await;
    server
}

async fn assert_healthy(server: &TestServer) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("the server still answers")
        .into_inner();
    assert_eq!(
        answer.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    server
        .sessions
        .clone()
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .expect("and still serves");
}

#[test]
fn random_requests_to_every_rpc_never_blame_the_server() {
    let runtime = runtime();
    let server = runtime.block_on(fuzz_server());
    let methods = rpc::corral_methods();
    let vocab = vocabulary(&server.work_dir("fuzz").display().to_string());
    let mut runner = TestRunner::new(Config {
        cases: cases(512),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..methods.len(),
        0u8..6,
        prop::collection::vec(any::<u8>(), 0..256),
    );
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let result = runner.run(&strategy, |(index, mode, entropy)| {
        let method = &methods[index];
        let request = request_bytes(method, mode, &entropy, &vocab);
        let outcome = runtime.block_on(call_raw(
            &server.channel,
            method,
            vec![request],
            None,
            Duration::from_millis(300),
        ));
        let code = outcome
            .status
            .as_ref()
            .err()
            .map_or(Code::Ok, tonic::Status::code);
        *seen.lock().unwrap().entry(format!("{code:?}")).or_default() += 1;
        if let Err(status) = &outcome.status {
            check_status(&method.full_name, status)?;
        }
        Ok(())
    });
    let seen = seen.into_inner().unwrap();
    eprintln!("answers by code: {seen:?}");
    assert!(
        seen.keys().filter(|code| *code != "Unimplemented").count() >= 3,
        "the requests reached the handlers: {seen:?}"
    );
    runtime.block_on(assert_healthy(&server));
    runtime.block_on(server.stop());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// One client frame of a random Attach sequence.
#[derive(Clone, Debug)]
enum Frame {
    Open {
        worker: u8,
        rows: u32,
        cols: u32,
        replay: u8,
        read_only: bool,
    },
    Input(Vec<u8>),
    Resize(u32, u32),
    Detach,
    Empty,
    Undecodable(Vec<u8>),
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    let size = prop_oneof![
        Just(0u32),
        Just(1),
        Just(24),
        Just(1000),
        Just(1001),
        Just(65535),
        Just(u32::MAX)
    ];
    prop_oneof![
        (
            any::<u8>(),
            size.clone(),
            size.clone(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(worker, rows, cols, replay, read_only)| Frame::Open {
                worker,
                rows,
                cols,
                replay,
                read_only
            }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Input),
        (size.clone(), size).prop_map(|(rows, cols)| Frame::Resize(rows, cols)),
        Just(Frame::Detach),
        Just(Frame::Empty),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(Frame::Undecodable),
    ]
}

fn encode_frame(frame: &Frame) -> Bytes {
    use pb::attach_request::Frame as F;
    let message = match frame {
        Frame::Open {
            worker,
            rows,
            cols,
            replay,
            read_only,
        } => F::Open(pb::AttachOpen {
            worker: [
                "sessions/fuzz/workers/shell",
                "sessions/fuzz",
                "sessions/fuzz/workers/nobody",
                "",
                "sessions/../x",
            ][usize::from(*worker) % 5]
                .into(),
            size: (*rows != 0 || *cols != 0).then_some(pb::WindowSize {
                rows: *rows,
                cols: *cols,
            }),
            replay: Some(pb::Replay {
                mode: Some(match replay % 4 {
                    0 => pb::replay::Mode::None(true),
                    1 => pb::replay::Mode::FromOffset(i64::from(*replay) - 128),
                    2 => pb::replay::Mode::LastBytes(i64::from(*replay) * 1000 - 1000),
                    _ => pb::replay::Mode::FromOffset(i64::MAX),
                }),
            }),
            read_only: *read_only,
        }),
        Frame::Input(bytes) => F::Input(Bytes::copy_from_slice(bytes)),
        Frame::Resize(rows, cols) => F::Resize(pb::WindowSize {
            rows: *rows,
            cols: *cols,
        }),
        Frame::Detach => F::Detach(pb::Detach {}),
        Frame::Empty => return Bytes::new(),
        Frame::Undecodable(bytes) => {
            // Field 2 (`input`, bytes) would accept anything: use `open.worker`
            // (a string) with bytes that are not UTF-8.
            let mut open = vec![0x0a, bytes.len() as u8 + 1];
            open.push(0xff);
            open.extend_from_slice(bytes);
            let mut out = vec![0x0a, open.len() as u8];
            out.extend(open);
            return Bytes::from(out);
        }
    };
    Bytes::from(
        pb::AttachRequest {
            frame: Some(message),
        }
        .encode_to_vec(),
    )
}

#[test]
fn random_attach_frame_sequences_end_cleanly() {
    let runtime = runtime();
    let server = runtime.block_on(fuzz_server());
    let attach = rpc::corral_methods()
        .into_iter()
        .find(|m| m.full_name == "corral.v1.WorkerService/Attach")
        .expect("Attach");
    let mut runner = TestRunner::new(Config {
        cases: cases(64),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec(frame_strategy(), 0..8);
    let result = runner.run(&strategy, |frames| {
        let mut requests: Vec<Bytes> = frames.iter().map(encode_frame).collect();
        // Whatever came before, a detach must end the stream.
        requests.push(encode_frame(&Frame::Detach));
        let outcome = runtime.block_on(call_raw(
            &server.channel,
            &attach,
            requests,
            None,
            common::PATIENCE,
        ));
        prop_assert!(
            !outcome.still_open,
            "the stream did not end after a detach: {frames:?}"
        );
        if let Err(status) = &outcome.status {
            check_status("Attach", status)?;
        }
        for message in &outcome.messages {
            let response = pb::AttachResponse::decode(message.clone())
                .map_err(|e| TestCaseError::fail(format!("undecodable response: {e}")))?;
            if let Some(pb::attach_response::Frame::Error(error)) = response.frame {
                check_status(
                    "Attach error frame",
                    &tonic::Status::new(Code::from_i32(error.code), error.message),
                )?;
            }
        }
        Ok(())
    });
    runtime.block_on(assert_healthy(&server));
    runtime.block_on(server.stop());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
