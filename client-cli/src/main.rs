//! `corral`: the command-line client of Corral.
//!
//! Every RPC of the four `corral.v1` services is a subcommand (`corral --help`). The
//! program is organised as:
//!
//! * [`cli`]: the command line (clap derive types and help texts);
//! * [`parse`], [`detach`], [`filter`], [`names`]: pure helpers turning arguments into
//!   API values (values like `k=v` or `last:N`, detach keys, AIP-160 filters,
//!   resource names), each unit-tested;
//! * [`client`]: the connection, the bearer-token interceptor and typed clients;
//! * [`commands`]: one module per command group, making RPCs and printing results;
//! * [`attach`]: the interactive terminal attach (raw mode, resize, detach keys);
//! * [`output`]: tables, JSON (`-o json`), colours and human-readable values;
//! * [`error`]: the error type and exit codes (1 RPC/local failure, 2 usage, 69
//!   server unreachable).
//!
//! `main` parses the command line, runs the command on a Tokio runtime and ends the
//! process with `std::process::exit`, without waiting for anything still blocked
//! (such as `attach`'s stdin reader thread).
// No `unwrap`/`expect` outside tests: whatever a client or the OS can make fail is
// mapped to an error (tests may unwrap; `cfg(test)` builds allow it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod attach;
mod cli;
mod client;
mod commands;
mod detach;
mod error;
mod filter;
mod names;
mod output;
mod parse;

use std::io::Write;

use clap::Parser;

use crate::error::{CliError, EXIT_FAILURE};

fn main() {
    let cli = cli::Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => match runtime.block_on(commands::run(cli)) {
            Ok(code) => code,
            Err(error) if error.is_broken_pipe() => 0,
            Err(error) => {
                output::print_error(&error);
                error.exit_code()
            }
        },
        Err(e) => {
            output::print_error(&CliError::io("starting the async runtime", e));
            EXIT_FAILURE
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
