//! `latchkey-full`: the whole `latchkey` command, which the front
//! (`src/bin/latchkey/`) hands every invocation to that it does not answer itself
//! (see [`latchkey::front`]). Wiring only: parse, run the command, render.

mod cli;
mod cmd;
mod render;
mod ui;

use std::process::ExitCode;

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
    // A shell asking for completions (LATCHKEY_COMPLETE set) is answered here.
    cmd::shell::complete_if_asked();
    // Decided before parsing, so even a usage error honours --json.
    let args = latchkey::front::by_program_name(std::env::args_os().collect());
    let json_requested = latchkey::front::json_requested(&args);
    let cli = match cli::parse(&args) {
        Ok(cli) => cli,
        Err(e) => return render::clap_error(e, json_requested),
    };
    let json = cli.global.json;
    init_logging();
    // A panic is a bug: report it as the `internal` category (exit 1) in the shape the
    // caller asked for, instead of Rust's exit 101 and a backtrace hint.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // The payload is not shown: it could quote data the program was handling.
        tracing::error!("latchkey panicked{at}");
    }));
    match std::panic::catch_unwind(move || run(cli, json)) {
        Ok(code) => code,
        Err(_) => render::error(
            json,
            &Error::Internal("latchkey hit a bug and stopped; please report it".into()),
        ),
    }
}

/// `LATCHKEY_LOG` (a tracing filter, e.g. `debug` or `latchkey_daemon=trace`) turns
/// on logs on stderr; without it only warnings are shown.
fn init_logging() {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false);
    // Without LATCHKEY_LOG a plain level filter: no directive parsing on the hot path.
    let filter = std::env::var(latchkey::front::LOG_VAR)
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok());
    let installed = match filter {
        Some(f) => builder.with_env_filter(f).try_init(),
        None => builder.with_max_level(tracing::Level::WARN).try_init(),
    };
    if installed.is_err() {
        // Only possible if something installed a subscriber first; logs go there.
    }
}

fn run(cli: Cli, json: bool) -> ExitCode {
    #[cfg(debug_assertions)]
    if std::env::var_os("LATCHKEY_TEST_PANIC").is_some() {
        // Debug builds only: lets the tests prove a bug is reported as `internal`.
        panic!("panic requested by LATCHKEY_TEST_PANIC");
    }
    let ctx = match cmd::Ctx::from_env(cli.global.profile) {
        Ok(c) => c,
        Err(e) => return render::error(json, &e),
    };
    let result = match cli.command {
        Command::Profile(p) => cmd::profile::run(&ctx, p),
        Command::Status { all } => block_on(cmd::status::run(&ctx, all)),
        Command::Daemon(d) => block_on(cmd::daemon::run(&ctx, d)),
        Command::Token { min_ttl, format } => cmd::token::token(&ctx, min_ttl, format),
        Command::Exec {
            env,
            min_ttl,
            command,
        } => return cmd::exec::run(&ctx, json, &env, min_ttl, &command),
        Command::Refresh => block_on(cmd::token::refresh(&ctx)),
        Command::Login(args) => block_on(cmd::login::run(&ctx, json, &args)),
        Command::Logout { local } => block_on(cmd::logout::run(&ctx, local)),
        Command::Doctor { server } => block_on(cmd::doctor::run(&ctx, server)),
        Command::ClientToken(c) => block_on(cmd::client_token::run(&ctx, c)),
        Command::Api(args) => block_on(cmd::api::run(&ctx, json, args)),
        Command::GitCredential { operation } => {
            block_on(cmd::git_credential::run(&ctx, &operation))
        }
        Command::KubeCredential { access_token } => {
            block_on(cmd::kube_credential::run(&ctx, access_token))
        }
        Command::DockerCredential { operation } => {
            block_on(cmd::docker_credential::run(&ctx, &operation))
        }
        Command::Completions { shell } => cmd::shell::completions(shell),
        Command::Man { out_dir } => cmd::shell::man(out_dir.as_deref()),
        Command::Mcp => {
            // stdout is the protocol's: a failure to start goes to stderr, as text.
            return match block_on(cmd::mcp::run(ctx)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => render::error(false, &e),
            };
        }
    };
    // An embedded refresh whose session the disk refused is lost at exit: say so
    // (local_storage) instead of printing what cannot last.
    let result = result.and_then(|out| ctx.client.close().map(|()| out));
    for notice in ctx.client.take_notices() {
        render::notice(&notice);
    }
    match result {
        Ok(out) => render::success(json, &out),
        Err(e) => render::error(json, &e),
    }
}
