//! `latchkey exec [--env NAME] -- CMD [ARGS]`: runs CMD with a fresh access token
//! in its environment (default `LATCHKEY_ACCESS_TOKEN`) and passes its exit code
//! through. The token is never printed. On Unix the process becomes CMD (exec),
//! so signals and the exit status are CMD's own; elsewhere it waits for CMD.
//! A CMD that cannot be started exits 127 (not found) or 126, as shells do.

use std::ffi::OsString;
use std::process::{Command, ExitCode};

use latchkey::Error;

use super::Ctx;
use crate::render;

pub fn run(ctx: &Ctx, json: bool, env: &str, min_ttl: u64, command: &[OsString]) -> ExitCode {
    if env.is_empty() || env.contains(['=', '\0']) {
        return render::error(
            json,
            &Error::usage(format!("{env:?} is not an environment variable name"), None),
        );
    }
    let Some((program, args)) = command.split_first() else {
        return render::error(
            json,
            &Error::usage("name the command to run after `--`", None),
        );
    };
    let token = ctx
        .profile_name()
        .and_then(|profile| ctx.client.token_blocking(&profile, min_ttl))
        // An embedded refresh whose session the disk refused must not look fine.
        .and_then(|token| ctx.client.close().map(|()| token));
    for notice in ctx.client.take_notices() {
        render::notice(&notice);
    }
    let token = match token {
        Ok(t) => t,
        Err(e) => return render::error(json, &e),
    };
    let mut child = Command::new(program);
    child.args(args).env(env, token.access_token.expose());
    drop(token);
    start(child, program)
}

#[cfg(unix)]
fn start(mut child: Command, program: &OsString) -> ExitCode {
    use std::os::unix::process::CommandExt;
    // Returns only when the program could not be started.
    let e = child.exec();
    cannot_start(program, &e)
}

#[cfg(not(unix))]
fn start(mut child: Command, program: &OsString) -> ExitCode {
    match child.status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
            None => ExitCode::from(1),
        },
        Err(e) => cannot_start(program, &e),
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the one line for a command that cannot start"
)]
fn cannot_start(program: &OsString, e: &std::io::Error) -> ExitCode {
    eprintln!("error: cannot run {}: {e}", program.to_string_lossy());
    ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}
