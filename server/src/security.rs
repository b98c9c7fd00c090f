//! The security settings, read and checked together at start-up: tokens, TLS
//! files, allowed roots, and the rule that ties them to the listener — **a server
//! reachable from other machines must authenticate its callers**.
//!
//! | listener                    | credentials configured | outcome                         |
//! |-----------------------------|------------------------|---------------------------------|
//! | loopback TCP or `unix:`     | none                   | auth off: everyone is an admin  |
//! | loopback TCP or `unix:`     | tokens and/or mTLS     | every RPC but health needs them |
//! | any other address           | none                   | refused at start-up, with why   |
//! | any other address           | tokens and/or mTLS     | served (TLS strongly advised)   |

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::Authenticator;
use crate::auth::tokens::TokenSet;
use crate::config::Config;
use crate::confinement::AllowedRoots;

/// Everything security-related the server needs, loaded from the configuration.
#[derive(Clone, Debug)]
pub struct Security {
    /// Checks the credentials of every call.
    pub authenticator: Authenticator,
    /// TLS for the listener, when `--tls-cert`/`--tls-key` are given.
    pub tls: Option<ServerTlsConfig>,
    /// The resolved `--allowed-root`s.
    pub allowed_roots: AllowedRoots,
}

fn read(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

impl Security {
    /// Reads the token file, the TLS files and the allowed roots, and checks that a
    /// listener other machines can reach has authentication. Reads files: call it
    /// before the runtime starts or from a blocking task.
    ///
    /// Errors: what is wrong, in words, naming the flag and file.
    pub fn load(config: &Config) -> Result<Security, String> {
        let tokens = TokenSet::load(config.token_file.as_deref(), config.tokens.as_deref())?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
                let mut tls = ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &config.tls_client_ca {
                    tls = tls.client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?));
                }
                // Building the acceptor parses the PEM files: fail now, not at the
                // first connection.
                tonic::transport::Server::builder()
                    .tls_config(tls.clone())
                    .map_err(|e| {
                        format!(
                            "--tls-cert {} / --tls-key {}: {}",
                            cert.display(),
                            key.display(),
                            error_chain(&e)
                        )
                    })?;
                Some(tls)
            }
            (None, None) if config.tls_client_ca.is_some() => {
                return Err("--tls-client-ca needs --tls-cert and --tls-key".into());
            }
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let authenticator =
            Authenticator::new(tokens, config.tls_client_ca.is_some(), config.reflection);
        if !config.listen.is_local() && !authenticator.enabled() {
            return Err(format!(
                "refusing to listen on {} without authentication: Corral runs shells for whoever connects. \
                 Configure tokens (--token-file or CORRAL_TOKENS; `corrald token new NAME` makes one) \
                 or client certificates (--tls-client-ca), or listen on 127.0.0.1, ::1 or unix:/path",
                config.listen
            ));
        }
        let allowed_roots = AllowedRoots::new(&config.allowed_roots)?;
        Ok(Security {
            authenticator,
            tls,
            allowed_roots,
        })
    }
}

/// An error and its sources, joined with ": ".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_are_checked_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        let err = Security::load(&config).unwrap_err();
        assert!(err.contains("--tls-cert"), "{err}");

        config.tls_cert = Some(dir.path().join("missing.pem"));
        let err = Security::load(&config).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn a_unix_socket_needs_no_authentication() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.listen = "unix:/tmp/x/corral.sock".parse().unwrap();
        let security = Security::load(&config).unwrap();
        assert!(!security.authenticator.enabled());
    }
}
