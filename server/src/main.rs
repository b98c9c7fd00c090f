//! `corrald`: parses its configuration, sets up logging, runs the server until
//! SIGINT or SIGTERM, then drains.
// No `unwrap`/`expect` outside tests: whatever a client or the OS can make fail is
// mapped to an error (tests may unwrap; `cfg(test)` builds allow it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;

use clap::Parser;
use corral_server::Config;
use tracing_subscriber::EnvFilter;

/// Exit code for bad configuration (EX_USAGE of sysexits.h).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Some(tool) = &config.tool {
        return run_tool(tool);
    }
    if let Err(message) = config.validate() {
        eprintln!("corrald: {message}");
        return ExitCode::from(EX_USAGE);
    }
    let filter = match EnvFilter::try_new(&config.log) {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!(
                "corrald: --log {:?} is not a valid filter: {err}",
                config.log
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("corrald: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "corrald failed");
            eprintln!("corrald: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `corrald token new|hash`: prints a token-file line (and, for `new`, the token).
fn run_tool(tool: &corral_server::config::Tool) -> ExitCode {
    use corral_server::auth::tokens::{entry_line, new_token, validate_name};
    use corral_server::config::{TokenTool, Tool};
    let Tool::Token(token_tool) = tool;
    let (name, admin) = match token_tool {
        TokenTool::New { name, admin } | TokenTool::Hash { name, admin } => (name, *admin),
    };
    if let Err(message) = validate_name(name) {
        eprintln!("corrald: {message}");
        return ExitCode::from(EX_USAGE);
    }
    match token_tool {
        TokenTool::New { .. } => {
            let token = new_token();
            println!("token: {token}");
            println!("line:  {}", entry_line(name, &token, admin));
            eprintln!(
                "corrald: give the token to the client (corral --token, CORRAL_TOKEN) and add the line to --token-file"
            );
        }
        TokenTool::Hash { .. } => {
            let mut token = String::new();
            if let Err(err) = std::io::stdin().read_line(&mut token) {
                eprintln!("corrald: reading the token from standard input: {err}");
                return ExitCode::FAILURE;
            }
            let token = token.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                eprintln!("corrald: no token on standard input");
                return ExitCode::from(EX_USAGE);
            }
            if token.len() < 16 {
                eprintln!(
                    "corrald: warning: a {}-character token is easy to guess; `corrald token new` makes a random one",
                    token.len()
                );
            }
            println!("{}", entry_line(name, token, admin));
        }
    }
    ExitCode::SUCCESS
}

async fn run(config: Config) -> corral_server::error::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let server = corral_server::serve(config).await?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| corral_server::error::Error::Internal(format!("SIGINT handler: {e}")))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| corral_server::error::Error::Internal(format!("SIGTERM handler: {e}")))?;
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    server.shutdown();
    server.wait().await
}
