//! The `latchkey` command. Wiring only: parse, run the command, render.

mod cli;
mod cmd;
mod render;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // Decided before parsing, so even a usage error honours --json.
    let json_requested = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return render::clap_error(e, json_requested),
    };
    let json = cli.global.json;
    let result = cmd::Ctx::from_env(cli.global.profile).and_then(|ctx| match cli.command {
        Command::Token { min_ttl } => cmd::token::run(&ctx, min_ttl),
        Command::Profile(p) => cmd::profile::run(&ctx, p),
    });
    match result {
        Ok(out) => render::success(json, &out),
        Err(e) => render::error(json, &e),
    }
}
