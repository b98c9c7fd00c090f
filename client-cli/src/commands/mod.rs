//! The subcommands: each turns parsed arguments into RPCs and prints the results.
//!
//! [`run`] connects once and dispatches; every command returns the process exit
//! code on success (0, except for `attach`, which passes the worker's on) or a
//! [`CliError`] that `main` prints and maps to an exit code.

mod checkpoint;
mod conversation;
mod events;
mod session;
mod worker;

use std::collections::HashMap;
use std::future::Future;

use corral::pb;

use crate::attach;
use crate::cli::{Cli, Command, DEFAULT_SERVER};
use crate::client::Clients;
use crate::error::CliError;
use crate::output::Output;
use crate::parse::KeyValue;

/// What every command needs: the clients and the output settings.
pub struct Context {
    /// Typed clients over the one connection.
    pub clients: Clients,
    /// Format and colour of the output.
    pub out: Output,
}

/// Connects to the server and runs the command; returns the exit code.
pub async fn run(cli: Cli) -> Result<i32, CliError> {
    let out = Output::new(cli.output);
    // An empty CORRAL_SERVER or CORRAL_TOKEN counts as unset.
    let server = match cli.server.trim() {
        "" => DEFAULT_SERVER,
        server => server,
    };
    let token = cli.token.as_deref().filter(|t| !t.is_empty());
    let tls = crate::client::TlsFiles {
        ca: cli.tls_ca.clone(),
        cert: cli.tls_cert.clone(),
        key: cli.tls_key.clone(),
    };
    let clients = Clients::connect(server, token, &tls).await?;
    let ctx = Context { clients, out };
    match cli.command {
        Command::Session(command) => session::run(&ctx, command).await.map(|()| 0),
        Command::Attach(args) => attach::run(&ctx.clients, &args).await,
        Command::Worker(command) => worker::run(&ctx, command).await,
        Command::Profiles => worker::profiles(&ctx).await.map(|()| 0),
        Command::Messages(args) => conversation::messages(&ctx, args).await.map(|()| 0),
        Command::Send(args) => conversation::send(&ctx, args).await.map(|()| 0),
        Command::Export(args) => conversation::export(&ctx, args).await.map(|()| 0),
        Command::Search(args) => conversation::search(&ctx, args).await.map(|()| 0),
        Command::Checkpoint(command) => checkpoint::run(&ctx, command).await.map(|()| 0),
        Command::Events(args) => events::run(&ctx, args).await.map(|()| 0),
    }
}

/// A list response that comes in pages.
trait Paged {
    /// The token of the next page; empty on the last page.
    fn next_page_token(&self) -> &str;
    /// Adds the items of the following page and takes its token.
    fn append(&mut self, next: Self);
}

macro_rules! paged {
    ($($ty:ty => $items:ident),* $(,)?) => {
        $(impl Paged for $ty {
            fn next_page_token(&self) -> &str {
                &self.next_page_token
            }
            fn append(&mut self, next: Self) {
                self.$items.extend(next.$items);
                self.next_page_token = next.next_page_token;
            }
        })*
    };
}

paged! {
    pb::ListSessionsResponse => sessions,
    pb::ListWorkersResponse => workers,
    pb::ListMessagesResponse => messages,
    pb::SearchMessagesResponse => results,
    pb::ListCheckpointsResponse => checkpoints,
}

/// Fetches the page at `page_token` and, with `all`, every following page, merged
/// into one response (whose `next_page_token` is then empty).
async fn fetch_pages<R, F, Fut>(page_token: String, all: bool, mut fetch: F) -> Result<R, CliError>
where
    R: Paged,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    let mut merged = fetch(page_token.clone()).await?.into_inner();
    let mut previous = page_token;
    while all && !merged.next_page_token().is_empty() {
        let token = merged.next_page_token().to_owned();
        if token == previous {
            return Err(CliError::Other(format!(
                "the server returned the same page token twice ({token:?})"
            )));
        }
        let page = fetch(token.clone()).await?.into_inner();
        merged.append(page);
        previous = token;
    }
    Ok(merged)
}

/// `KEY=VALUE` pairs as a map; a key given twice is a usage error.
fn to_map(pairs: &[KeyValue], option: &str) -> Result<HashMap<String, String>, CliError> {
    let mut map = HashMap::with_capacity(pairs.len());
    for KeyValue { key, value } in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            return Err(CliError::Usage(format!("{option} {key} is given twice")));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused() {
        let pairs: Vec<KeyValue> = ["a=1", "b=2"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(to_map(&pairs, "--label").unwrap().len(), 2);
        let twice: Vec<KeyValue> = ["a=1", "a=2"].iter().map(|s| s.parse().unwrap()).collect();
        assert!(matches!(to_map(&twice, "--label"), Err(CliError::Usage(_))));
    }

    #[tokio::test]
    async fn pages_are_followed_and_merged() {
        let pages = |token: String| async move {
            let (sessions, next) = match token.as_str() {
                "" => (vec!["a", "b"], "t1"),
                "t1" => (vec!["c"], "t2"),
                _ => (vec!["d"], ""),
            };
            Ok(tonic::Response::new(pb::ListSessionsResponse {
                sessions: sessions
                    .into_iter()
                    .map(|n| pb::Session {
                        display_name: n.into(),
                        ..Default::default()
                    })
                    .collect(),
                next_page_token: next.into(),
                total_size: 4,
            }))
        };
        let one = fetch_pages(String::new(), false, pages).await.unwrap();
        assert_eq!(one.sessions.len(), 2);
        assert_eq!(one.next_page_token, "t1");
        let all = fetch_pages(String::new(), true, pages).await.unwrap();
        let names: Vec<_> = all
            .sessions
            .iter()
            .map(|s| s.display_name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(all.next_page_token, "");
        assert_eq!(all.total_size, 4);
    }

    #[tokio::test]
    async fn a_repeated_token_stops_the_loop() {
        let stuck = |_token: String| async {
            Ok(tonic::Response::new(pb::ListWorkersResponse {
                workers: vec![],
                next_page_token: "same".into(),
            }))
        };
        assert!(fetch_pages(String::new(), true, stuck).await.is_err());
    }
}
