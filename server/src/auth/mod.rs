//! Who is calling: credentials, principals, and which sessions a caller may see.
//!
//! ```text
//!  request ──► guard layer ──► Authenticator::authenticate(path, headers, TLS info)
//!                 │                  └─► Principal, or UNAUTHENTICATED
//!                 └─► handler runs inside CALLER.scope(principal)
//!                           └─► Manager::load / list_sessions ask `visible_creator()`
//! ```
//!
//! Credentials, checked by [`Authenticator`] for every RPC except
//! `grpc.health.v1.Health` (and reflection when `--reflection open`):
//! - `authorization: Bearer <token>` or `authorization: Basic base64(name:token)`,
//!   against the configured [`tokens::TokenSet`] (SHA-256 hashes, constant time);
//! - with `--tls-client-ca` and no tokens, the client certificate rustls verified
//!   during the handshake is the credential.
//!
//! With neither configured, authentication is off and every caller is the
//! [`Principal::anonymous`] admin: the configuration refuses that unless the
//! server listens on loopback or a Unix socket (see `security.rs`).
//!
//! **Principals and sessions.** A session records its creator. An admin principal
//! sees and acts on every session; any other principal only on the sessions it
//! created: the others answer NOT_FOUND, exactly like sessions that do not exist,
//! and are left out of listings. The rule is enforced where sessions are loaded
//! (`Manager::load`, `Manager::list_sessions`), which read the caller from the
//! task-local [`CALLER`] that the guard layer sets around every call, so an RPC
//! cannot forget it. Code running outside any call (start-up reconciliation, exit
//! recording) has no caller and is the server itself.

pub mod tokens;

use base64::Engine;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};

use crate::config::ReflectionAccess;
use tokens::TokenSet;

/// The gRPC path prefix of the health service, open to everyone.
pub const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// The gRPC path prefixes of server reflection (v1 and v1alpha).
pub const REFLECTION_PREFIXES: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The one message of every UNAUTHENTICATED answer: the same for a missing, a
/// malformed, a wrong and an unknown credential, so it helps nobody guess.
pub const UNAUTHENTICATED_MESSAGE: &str = "authentication required: send `authorization: Bearer <token>` (or HTTP Basic name:token) with a token this server accepts";

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The name sessions record as their creator (`Session.creator`); empty for the
    /// anonymous principal.
    pub name: String,
    /// Sees and acts on every session, not only its own.
    pub admin: bool,
}

impl Principal {
    /// A principal.
    pub fn new(name: String, admin: bool) -> Self {
        Principal { name, admin }
    }

    /// The caller when authentication is off (loopback or Unix socket without
    /// tokens): an admin with an empty name.
    pub fn anonymous() -> Self {
        Principal::new(String::new(), true)
    }

    /// The caller of the RPCs open to everyone (health, open reflection): sees no
    /// session (its name cannot be a principal's name, so it created none).
    pub fn unauthenticated() -> Self {
        Principal::new("(unauthenticated)".into(), false)
    }

    /// Whether this principal may see a session created by `creator`.
    pub fn may_see(&self, creator: &str) -> bool {
        self.admin || self.name == creator
    }
}

tokio::task_local! {
    /// The principal of the call the current task is serving; set by the guard
    /// layer around every call. Absent in server-internal tasks.
    pub static CALLER: Principal;
}

/// The principal of the current call, if the current task serves one.
pub fn caller() -> Option<Principal> {
    CALLER.try_with(Clone::clone).ok()
}

/// Whose sessions the current task may see: `None` for all (an admin caller, or
/// the server itself), `Some(name)` for only those `name` created.
pub fn visible_creator() -> Option<String> {
    match caller() {
        Some(principal) if !principal.admin => Some(principal.name),
        _ => None,
    }
}

/// Whether the current task may see a session created by `creator`.
pub fn may_see(creator: &str) -> bool {
    caller().is_none_or(|principal| principal.may_see(creator))
}

/// The creator to record for a session made by the current task (empty outside a
/// call or when authentication is off).
pub fn creator() -> String {
    caller().map(|p| p.name).unwrap_or_default()
}

/// Decides who a request comes from.
#[derive(Clone, Debug)]
pub struct Authenticator {
    tokens: TokenSet,
    client_certificates: bool,
    reflection: ReflectionAccess,
}

impl Authenticator {
    /// An authenticator accepting `tokens`, and client certificates as credentials
    /// when `client_certificates` (mutual TLS) is on and no token is configured.
    pub fn new(tokens: TokenSet, client_certificates: bool, reflection: ReflectionAccess) -> Self {
        Authenticator {
            tokens,
            client_certificates,
            reflection,
        }
    }

    /// True when callers must present credentials.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.client_certificates
    }

    /// Who calls `path` with these `headers` over a connection described by
    /// `extensions` (tonic's connect info), or `None`: answer UNAUTHENTICATED with
    /// [`UNAUTHENTICATED_MESSAGE`].
    pub fn authenticate(
        &self,
        path: &str,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<Principal> {
        let open = path.starts_with(HEALTH_PREFIX)
            || (self.reflection == ReflectionAccess::Open
                && REFLECTION_PREFIXES.iter().any(|p| path.starts_with(p)));
        if open {
            return Some(Principal::unauthenticated());
        }
        if !self.enabled() {
            return Some(Principal::anonymous());
        }
        if !self.tokens.is_empty() {
            return self.check_authorization(headers);
        }
        // Mutual TLS without tokens: rustls verified the certificate chain during
        // the handshake; the certificate names the principal.
        peer_certificate(extensions).map(|der| {
            let digest: [u8; 32] = Sha256::digest(&der).into();
            let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            Principal::new(format!("cert:{short}"), true)
        })
    }

    fn check_authorization(&self, headers: &HeaderMap) -> Option<Principal> {
        let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
        let (scheme, rest) = split_scheme(value)?;
        if scheme.eq_ignore_ascii_case(b"bearer") {
            self.tokens.verify_bearer(trim(rest))
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(trim(rest))
                .ok()?;
            let colon = decoded.iter().position(|&b| b == b':')?;
            self.tokens
                .verify_basic(&decoded[..colon], &decoded[colon + 1..])
        } else {
            None
        }
    }
}

fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|&b| b == b' ')?;
    Some((&value[..space], &value[space + 1..]))
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The DER of the client's leaf certificate, when the connection is TLS and the
/// client presented one.
fn peer_certificate(extensions: &http::Extensions) -> Option<Vec<u8>> {
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<UdsConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs)
        })?;
    certs.first().map(|cert| cert.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn authenticator() -> Authenticator {
        let mut tokens = TokenSet::default();
        tokens
            .add(&tokens::entry_line("alice", "alice-token", false))
            .unwrap();
        Authenticator::new(tokens, false, ReflectionAccess::Authenticated)
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    const PATH: &str = "/corral.v1.SessionService/ListSessions";

    #[test]
    fn bearer_and_basic_credentials_name_the_principal() {
        let auth = authenticator();
        let none = http::Extensions::new();
        let alice = Some(Principal::new("alice".into(), false));
        assert_eq!(
            auth.authenticate(PATH, &headers("Bearer alice-token"), &none),
            alice
        );
        assert_eq!(
            auth.authenticate(PATH, &headers("bearer  alice-token "), &none),
            alice
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:alice-token");
        assert_eq!(
            auth.authenticate(PATH, &headers(&format!("Basic {basic}")), &none),
            alice
        );
    }

    #[test]
    fn missing_and_wrong_credentials_are_refused() {
        let auth = authenticator();
        let none = http::Extensions::new();
        assert_eq!(auth.authenticate(PATH, &HeaderMap::new(), &none), None);
        for bad in [
            "Bearer wrong",
            "Bearer",
            "alice-token",
            "Token alice-token",
            "Basic !!!",
            "Basic YWxpY2U=",
        ] {
            assert_eq!(auth.authenticate(PATH, &headers(bad), &none), None, "{bad}");
        }
        let basic = base64::engine::general_purpose::STANDARD.encode("bob:alice-token");
        assert_eq!(
            auth.authenticate(PATH, &headers(&format!("Basic {basic}")), &none),
            None
        );
    }

    #[test]
    fn health_is_open_and_reflection_follows_the_setting() {
        let none = http::Extensions::new();
        let auth = authenticator();
        let open = Some(Principal::unauthenticated());
        assert_eq!(
            auth.authenticate("/grpc.health.v1.Health/Check", &HeaderMap::new(), &none),
            open
        );
        let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        assert_eq!(
            auth.authenticate(reflection, &HeaderMap::new(), &none),
            None
        );
        let mut tokens = TokenSet::default();
        tokens.add(&tokens::entry_line("a", "t", false)).unwrap();
        let auth = Authenticator::new(tokens, false, ReflectionAccess::Open);
        assert_eq!(
            auth.authenticate(reflection, &HeaderMap::new(), &none),
            open
        );
    }

    #[test]
    fn without_credentials_configured_everyone_is_the_anonymous_admin() {
        let auth = Authenticator::new(TokenSet::default(), false, ReflectionAccess::Authenticated);
        assert!(!auth.enabled());
        assert_eq!(
            auth.authenticate(PATH, &HeaderMap::new(), &http::Extensions::new()),
            Some(Principal::anonymous())
        );
    }

    #[test]
    fn client_certificates_without_a_certificate_are_refused() {
        let auth = Authenticator::new(TokenSet::default(), true, ReflectionAccess::Authenticated);
        assert!(auth.enabled());
        assert_eq!(
            auth.authenticate(PATH, &HeaderMap::new(), &http::Extensions::new()),
            None
        );
    }

    #[test]
    fn visibility_follows_the_caller() {
        assert!(may_see("anyone"), "no caller: the server itself");
        assert_eq!(visible_creator(), None);
        let alice = Principal::new("alice".into(), false);
        CALLER.sync_scope(alice, || {
            assert!(may_see("alice"));
            assert!(!may_see("bob"));
            assert!(!may_see(""));
            assert_eq!(visible_creator(), Some("alice".into()));
            assert_eq!(creator(), "alice");
        });
        CALLER.sync_scope(Principal::new("root".into(), true), || {
            assert!(may_see("bob"));
            assert_eq!(visible_creator(), None);
        });
    }
}
