//! The `latchkey` command. Wiring only: parse, run the command, render.

mod cli;
mod cmd;
mod render;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use latchkey::Error;

/// Runs a command's future on a current-thread runtime: one process, one request
/// at a time; a multi-thread runtime would only add start-up cost.
fn block_on<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}

fn main() -> ExitCode {
    // Decided before parsing, so even a usage error honours --json.
    let json_requested = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return render::clap_error(e, json_requested),
    };
    let json = cli.global.json;
    let result = cmd::Ctx::from_env(cli.global.profile).and_then(|ctx| match cli.command {
        Command::Profile(p) => cmd::profile::run(&ctx, p),
        Command::Status { all } => cmd::status::run(&ctx, all),
        Command::Token { min_ttl } => block_on(cmd::token::token(&ctx, min_ttl)),
        Command::Refresh => block_on(cmd::token::refresh(&ctx)),
        Command::Login(args) => block_on(cmd::login::run(&ctx, json, &args)),
        Command::Logout { local } => block_on(cmd::logout::run(&ctx, local)),
        Command::Doctor { server } => block_on(cmd::doctor::run(&ctx, server)),
    });
    match result {
        Ok(out) => render::success(json, &out),
        Err(e) => render::error(json, &e),
    }
}
