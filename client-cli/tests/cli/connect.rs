//! How `corral` reaches a server that is locked down: over its Unix socket, over
//! TLS with the server's CA, and with a token (or without one, and refused).

use std::path::Path;

use corral_server::auth::tokens::entry_line;
use corral_server::{Config, RunningServer};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::harness::{command, run};

const TOKEN: &str = "cli-token-0123456789abcdef";

/// A server in `dir` (SQLite there) accepting `TOKEN`, with `edit` applied.
async fn serve(dir: &Path, edit: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::with_data_dir(dir.join("data"));
    config.tokens = Some(entry_line("cli", TOKEN, false));
    edit(&mut config);
    corral_server::serve(config)
        .await
        .expect("the server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talks_to_a_unix_socket_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("corral.sock");
    let server = serve(dir.path(), |config| {
        config.listen = corral_server::config::ListenAddr::Unix(socket.clone());
    })
    .await;
    let address = format!("unix:{}", socket.display());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let work = work.display().to_string();

    let create = [
        "--token",
        TOKEN,
        "session",
        "create",
        "--work-dir",
        &work,
        "--name",
        "uds",
    ];
    run(command(&address, dir.path(), &create))
        .await
        .assert_success(&create);
    let list = ["--token", TOKEN, "-o", "json", "session", "list"];
    let listed = run(command(&address, dir.path(), &list)).await;
    listed.assert_success(&list);
    assert!(listed.stdout.contains("\"uds\""), "{listed:?}");

    for args in [
        &["session", "list"][..],
        &["--token", "wrong-token", "session", "list"][..],
    ] {
        let refused = run(command(&address, dir.path(), args)).await;
        let message = refused.assert_rpc_error("UNAUTHENTICATED");
        assert_eq!(message, corral_server::auth::UNAUTHENTICATED_MESSAGE);
    }
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talks_tls_to_a_server_whose_ca_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), cert.pem()).unwrap();
    std::fs::write(path("server.key"), key.serialize_pem()).unwrap();
    let server = serve(dir.path(), |config| {
        config.tls_cert = Some(path("server.pem"));
        config.tls_key = Some(path("server.key"));
    })
    .await;
    let address = format!("https://127.0.0.1:{}", server.local_addr().port());
    let ca_file = path("ca.pem").display().to_string();

    let list = ["--tls-ca", &ca_file, "--token", TOKEN, "session", "list"];
    run(command(&address, dir.path(), &list))
        .await
        .assert_success(&list);

    // Without the CA the server's certificate is not trusted: unreachable (69).
    let untrusted = run(command(
        &address,
        dir.path(),
        &["--token", TOKEN, "session", "list"],
    ))
    .await;
    assert_eq!(untrusted.code, Some(69), "{untrusted:?}");
    assert!(untrusted.stderr.contains("cannot reach"), "{untrusted:?}");

    // TLS files with a plain-text address are a usage error (2).
    let plain = format!("http://127.0.0.1:{}", server.local_addr().port());
    let mixed = run(command(
        &plain,
        dir.path(),
        &["--tls-ca", &ca_file, "session", "list"],
    ))
    .await;
    assert_eq!(mixed.code, Some(2), "{mixed:?}");
    server.shutdown();
    server.wait().await.unwrap();
}
