//! The connection to the server and the typed clients of the four services.
//!
//! One HTTP/2 channel is opened eagerly at start-up, so an unreachable server is
//! reported once, naming the address, with exit code 69 (instead of surfacing as an
//! `UNAVAILABLE` status of whatever RPC came first). Every client shares that channel
//! through an [`Auth`] interceptor that adds `authorization: Bearer <token>` when a
//! token was given.
//!
//! HTTP/2 keep-alive pings are enabled so that long streams (`attach`,
//! `events --follow`) notice a dead server instead of hanging.
//!
//! Three kinds of address: `http://host:port` (or `host:port`), `https://host:port`
//! (TLS via rustls: the server's certificate is checked against `--tls-ca`, or the
//! Mozilla roots without it; `--tls-cert`/`--tls-key` present a client certificate
//! to servers that require one), and `unix:/path` (the server's Unix socket).

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral::pb::checkpoint_service_client::CheckpointServiceClient;
use corral::pb::event_service_client::EventServiceClient;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::error::{CliError, error_chain};

/// How long to wait for the TCP connection (and HTTP/2 handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Interval of HTTP/2 keep-alive pings on long streams.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keep-alive ping may go unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest response message accepted (tonic's default is 4 MiB; a page of 1000
/// sessions with their workers can come close).
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The channel type every client uses.
pub type AuthChannel = InterceptedService<Channel, Auth>;

/// Adds the bearer token, if any, to every request.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    header: Option<MetadataValue<Ascii>>,
}

impl Auth {
    /// An interceptor sending `authorization: Bearer <token>`; no header when `token`
    /// is `None`. Fails on a token that cannot be an HTTP header value.
    pub fn new(token: Option<&str>) -> Result<Self, CliError> {
        let header = match token {
            None => None,
            Some(token) => {
                let mut value: MetadataValue<Ascii> =
                    format!("Bearer {token}").parse().map_err(|_| {
                        CliError::Usage(
                            "the token must be printable ASCII without line breaks".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self { header })
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// `--server` as a URL: `host:port` gets `http://` in front.
pub fn normalize_server(server: &str) -> String {
    let server = server.trim();
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// Files for TLS connections (`--tls-ca`, `--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificates (PEM) that sign the server's certificate.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for servers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The rustls settings these files describe.
    fn config(&self) -> Result<ClientTlsConfig, CliError> {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).map_err(|e| CliError::io(format!("{flag} {}", path.display()), e))
        };
        let mut config = match &self.ca {
            Some(ca) => {
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?))
            }
            None => ClientTlsConfig::new().with_webpki_roots(),
        };
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("--tls-cert", cert)?,
                    read("--tls-key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(CliError::Usage(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        }
        Ok(config)
    }
}

/// A connected channel and the interceptor, handing out typed clients.
#[derive(Debug, Clone)]
pub struct Clients {
    channel: Channel,
    auth: Auth,
}

impl Clients {
    /// Connects to `server` (`http://host:port`, `host:port`, `https://host:port`
    /// or `unix:/path`), sending `token` with every call.
    pub async fn connect(
        server: &str,
        token: Option<&str>,
        tls: &TlsFiles,
    ) -> Result<Self, CliError> {
        let auth = Auth::new(token)?;
        if let Some(path) = server.trim().strip_prefix("unix:") {
            if tls.any() {
                return Err(CliError::Usage(
                    "--tls-ca, --tls-cert and --tls-key need an https:// server, not a unix: socket"
                        .into(),
                ));
            }
            return Self::connect_unix(PathBuf::from(path), auth).await;
        }
        let address = normalize_server(server);
        let https = address.starts_with("https://");
        if !https && !address.starts_with("http://") {
            return Err(CliError::Usage(format!(
                "invalid server address {server:?}: expected host:port, http://host:port, https://host:port or unix:/path"
            )));
        }
        if !https && tls.any() {
            return Err(CliError::Usage(format!(
                "--tls-ca, --tls-cert and --tls-key need an https:// server, not {address}"
            )));
        }
        let mut endpoint = Self::tune(
            Endpoint::from_shared(address.clone())
                .map_err(|e| CliError::Usage(format!("invalid server address {server:?}: {e}")))?,
        )
        .tcp_nodelay(true);
        if https {
            endpoint = endpoint.tls_config(tls.config()?).map_err(|e| {
                CliError::Usage(format!("TLS settings for {address}: {}", error_chain(&e)))
            })?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| CliError::Unreachable {
                address,
                reason: error_chain(&e),
            })?;
        Ok(Self { channel, auth })
    }

    fn tune(endpoint: Endpoint) -> Endpoint {
        endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .max_frame_size(corral::CLIENT_MAX_FRAME_BYTES)
    }

    /// Connects over the Unix socket at `path` (HTTP/2 without TLS; the URI is a
    /// placeholder that only names the `:authority`).
    async fn connect_unix(path: PathBuf, auth: Auth) -> Result<Self, CliError> {
        let address = format!("unix:{}", path.display());
        let endpoint = Self::tune(Endpoint::from_static("http://localhost"));
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| CliError::Unreachable {
                address,
                reason: error_chain(&e),
            })?;
        Ok(Self { channel, auth })
    }

    fn intercepted(&self) -> AuthChannel {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    /// A `SessionService` client.
    pub fn sessions(&self) -> SessionServiceClient<AuthChannel> {
        SessionServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    /// A `WorkerService` client.
    pub fn workers(&self) -> WorkerServiceClient<AuthChannel> {
        WorkerServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    /// A `CheckpointService` client.
    pub fn checkpoints(&self) -> CheckpointServiceClient<AuthChannel> {
        CheckpointServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    /// An `EventService` client.
    pub fn events(&self) -> EventServiceClient<AuthChannel> {
        EventServiceClient::new(self.intercepted())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            normalize_server("127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(normalize_server("localhost:1"), "http://localhost:1");
        assert_eq!(normalize_server("http://h:2"), "http://h:2");
        assert_eq!(normalize_server(" https://h:3 "), "https://h:3");
    }

    #[tokio::test]
    async fn tls_files_need_an_https_server() {
        let tls = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        for server in ["http://127.0.0.1:1", "unix:/nonexistent.sock"] {
            let err = Clients::connect(server, None, &tls).await.unwrap_err();
            assert!(matches!(err, CliError::Usage(_)), "{server}: {err}");
        }
        let half = TlsFiles {
            cert: Some("/nonexistent/cert.pem".into()),
            ..Default::default()
        };
        assert!(half.config().is_err());
    }

    #[test]
    fn the_interceptor_adds_the_bearer_token() {
        let mut auth = Auth::new(Some("s3cret")).unwrap();
        let request = auth.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        let mut none = Auth::new(None).unwrap();
        let request = none.call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
        assert!(Auth::new(Some("bad\ntoken")).is_err());
    }
}
