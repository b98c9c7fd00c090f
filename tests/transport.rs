//! Transport security with real certificates made in the test (rcgen) and a real
//! server: TLS with tokens, mutual TLS where the client certificate is the
//! credential, and the Unix socket that only the server's user can open.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{TestServer, clients_as, quick_session, test_config};
use corral::pb;
use corral::pb::session_service_client::SessionServiceClient;
use corral_server::auth::tokens::entry_line;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// PEM files of a test PKI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// A CA; a server certificate for localhost and 127.0.0.1 signed by it; a client
    /// certificate signed by it; and a client certificate signed by another CA.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let leaf = |names: Vec<String>,
                    usage: ExtendedKeyUsagePurpose,
                    issuer: &CertifiedIssuer<'_, KeyPair>| {
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            params
                .distinguished_name
                .push(DnType::CommonName, "corral test");
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let authority = ca("Corral test CA");
        write("ca.pem", authority.pem());
        let (cert, key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            &authority,
        );
        write("server.pem", cert);
        write("server.key", key);
        let (cert, key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, &authority);
        write("client.pem", cert);
        write("client.key", key);
        let stranger = ca("Someone else's CA");
        write("other-ca.pem", stranger.pem());
        let (cert, key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, &stranger);
        write("stranger.pem", cert);
        write("stranger.key", key);
        Pki { dir }
    }

    /// A TLS channel to `port` trusting `ca`, presenting `client` (`name.pem`,
    /// `name.key`) if given.
    async fn connect(&self, port: u16, ca: &str, client: Option<&str>) -> Result<Channel, String> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.read(ca)));
        if let Some(client) = client {
            tls = tls.identity(Identity::from_pem(
                self.read(&format!("{client}.pem")),
                self.read(&format!("{client}.key")),
            ));
        }
        let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        // The handshake may complete lazily: make a call to be sure.
        SessionServiceClient::new(channel.clone())
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .map_err(|s| format!("{s:?}"))
            .map(|_| channel.clone())
            .or_else(|e| {
                if e.contains("Unauthenticated") {
                    Ok(channel)
                } else {
                    Err(e)
                }
            })
    }
}

fn tls(config: &mut corral_server::Config, pki: &Pki) {
    config.tls_cert = Some(pki.path("server.pem"));
    config.tls_key = Some(pki.path("server.key"));
}

const TOKEN: &str = "a-token-that-is-long-enough";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_carries_tokens_and_terminals() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path()).await;
    let mut config = test_config(dir.path(), &db);
    tls(&mut config, &pki);
    config.tokens = Some(entry_line("ci", TOKEN, false));
    let server = corral_server::serve(config).await.expect("serves TLS");
    let port = server.local_addr().port();

    let channel = pki
        .connect(port, "ca.pem", None)
        .await
        .expect("TLS with the CA");
    let (mut sessions, workers) = clients_as(&channel, &format!("Bearer {TOKEN}"));
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    sessions
        .create_session(quick_session("tls", &work))
        .await
        .unwrap();
    sessions
        .start_session(pb::StartSessionRequest {
            name: "sessions/tls".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut client =
        common::Client::open_with(workers, "sessions/tls/workers/shell", None, None).await;
    client.input(b"echo over-$((6*7))-tls\n").await;
    client.expect("over-42-tls").await;

    // A client that does not trust the server's CA, or speaks plain HTTP/2, gets nowhere.
    assert!(pki.connect(port, "other-ca.pem", None).await.is_err());
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    let plain = match plain.connect().await {
        Ok(channel) => SessionServiceClient::new(channel)
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .map(|_| ())
            .map_err(|s| s.to_string()),
        Err(err) => Err(err.to_string()),
    };
    assert!(plain.is_err(), "plain HTTP/2 must not be served: {plain:?}");

    server.shutdown();
    server.wait().await.unwrap();
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_name_the_principal() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path()).await;
    let mut config = test_config(dir.path(), &db);
    tls(&mut config, &pki);
    config.tls_client_ca = Some(pki.path("ca.pem"));
    // Mutual TLS is authentication: a non-loopback address is allowed.
    config.listen = "0.0.0.0:0".parse().unwrap();
    let server = corral_server::serve(config)
        .await
        .expect("serves mutual TLS");
    let port = server.local_addr().port();

    assert!(
        pki.connect(port, "ca.pem", None).await.is_err(),
        "no client certificate"
    );
    assert!(
        pki.connect(port, "ca.pem", Some("stranger")).await.is_err(),
        "a certificate from another CA"
    );
    let channel = pki
        .connect(port, "ca.pem", Some("client"))
        .await
        .expect("a certificate from the configured CA");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let created = SessionServiceClient::new(channel)
        .create_session(quick_session("mtls", &work))
        .await
        .unwrap()
        .into_inner();
    assert!(
        created.creator.starts_with("cert:") && created.creator.len() == 5 + 16,
        "the certificate names the creator: {:?}",
        created.creator
    );

    server.shutdown();
    server.wait().await.unwrap();
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_is_private_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("corral.sock");
    let server = TestServer::start_with(
        |config| config.listen = corral_server::config::ListenAddr::Unix(socket.clone()),
        None,
    )
    .await;
    let running = server.server.as_ref().unwrap();
    assert_eq!(running.unix_path(), Some(socket.as_path()));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the server's user may connect");

    let channel = common::eventually_connect_unix(&socket).await;
    let work = server.work_dir("uds");
    let created = SessionServiceClient::new(channel)
        .create_session(quick_session("uds", &work))
        .await
        .expect("served over the socket without a token: only the owner can connect")
        .into_inner();
    assert_eq!(created.creator, "");
    server.stop().await;
    assert!(!Path::new(&socket).exists(), "removed at shutdown");
}

/// A configuration that `Config::check` refuses (here an address other
/// machines can reach, without authentication) makes `serve` fail with
/// INVALID_ARGUMENT naming the problem, not INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path()).await;
    let mut config = test_config(dir.path(), &db);
    config.listen = "0.0.0.0:0".parse().unwrap();
    let Err(err) = corral_server::serve(config).await else {
        panic!("served on 0.0.0.0 without authentication");
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "invalid configuration: refusing to listen on 0.0.0.0:0 without authentication"
        ),
        "{message}"
    );
}
