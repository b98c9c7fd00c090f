//! What every generic gRPC tool relies on: health checking, server reflection (v1
//! and v1alpha, so `grpcurl list` works without .proto files), and a graceful
//! shutdown that ends open Attach streams instead of waiting for them forever.

mod common;

use common::TestServer;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_service_serving() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel.clone());
    for service in [
        "",
        "corral.v1.SessionService",
        "corral.v1.WorkerService",
        "corral.v1.CheckpointService",
        "corral.v1.EventService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::start().await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1 reflection")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("not a service list: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "corral.v1.SessionService",
        "corral.v1.WorkerService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "corral.v1.SessionService".into(),
            ),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    assert!(
        matches!(
            response.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref files))
                if !files.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_attach_streams_and_keeps_the_sessions_for_the_restart_policy() {
    let mut server = TestServer::start().await;
    server.create_session("drain").await;
    let started = server.start_session("drain").await;
    let pid = started.workers[0].pid;
    let mut client = server
        .attach("sessions/drain/workers/shell", None, None)
        .await;
    client.input(b"echo ready-$((1+1))\n").await;
    client.expect("ready-2").await;

    let running = server.server.take().expect("running");
    let manager = running.manager().clone();
    running.shutdown();
    // The stream ends on its own; without that, waiting for the server would hang.
    let _ = client.until_end().await;
    tokio::time::timeout(common::PATIENCE, running.wait())
        .await
        .expect("the server drains")
        .expect("clean shutdown");

    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z")),
        "the worker's shell ended with the server"
    );
    let row = manager
        .store()
        .find_session(&corral_server::domain::names::Ref::Name("drain".into()))
        .await
        .unwrap()
        .expect("stored");
    // The session keeps its state for the next start's restart policy (resume by
    // default: see tests/restart.rs), with its worker's exit recorded.
    assert_eq!(row.model.state, "ACTIVE", "{:?}", row.model);
    let worker = manager
        .store()
        .find_worker(
            &row.model.id,
            &corral_server::domain::names::Ref::Name("shell".into()),
        )
        .await
        .unwrap()
        .expect("worker stored");
    assert!(
        worker.exit_time.is_some(),
        "the exit is recorded: {worker:?}"
    );
    server.db.drop_database().await;
}
