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

use std::time::Duration;

use corral::pb::checkpoint_service_client::CheckpointServiceClient;
use corral::pb::event_service_client::EventServiceClient;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
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

/// A connected channel and the interceptor, handing out typed clients.
#[derive(Debug, Clone)]
pub struct Clients {
    channel: Channel,
    auth: Auth,
}

impl Clients {
    /// Connects to `server` (`http://host:port` or `host:port`).
    pub async fn connect(server: &str, token: Option<&str>) -> Result<Self, CliError> {
        let auth = Auth::new(token)?;
        let address = normalize_server(server);
        if address.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "{address}: TLS is not supported by this build of corral; use http://"
            )));
        }
        if !address.starts_with("http://") {
            return Err(CliError::Usage(format!(
                "invalid server address {server:?}: expected http://host:port or host:port"
            )));
        }
        let endpoint = Endpoint::from_shared(address.clone())
            .map_err(|e| CliError::Usage(format!("invalid server address {server:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = endpoint
            .connect()
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
