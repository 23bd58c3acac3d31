//! `latchkey`, the command people and scripts run: a small front that answers
//! `latchkey token` and `latchkey refresh` through a warm daemon itself and hands every other invocation
//! to the full program (`latchkey-full`) with the same arguments. See
//! [`latchkey::front`] for the rules; this file is wiring only.
//!
//! Nothing on this path may pull in the full program's start-up: no clap, no
//! logging subscriber, no async runtime, no engine. The binary's size and its
//! dynamic relocations are what `latchkey token` pays before its first
//! instruction (docs/benchmarks.md breaks the figure down).

use std::ffi::OsString;
use std::process::ExitCode;

use latchkey::front::{self, Invocation, render};
use latchkey::{Client, Error, FirstAsk, Token};
use latchkey_proto::profile::ProfileName;
use latchkey_proto::request as rq;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let json = front::json_requested(&args);
    // A panic is a bug: reported as the `internal` category (exit 1), as the full
    // program does, without its payload (it could quote data being handled).
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(|| answer(&args)) {
        Ok(Answered::Done(code)) => code,
        Ok(Answered::HandOver { hung }) => hand_over(&args, hung),
        Err(_) => render::error(
            json,
            &Error::Internal("latchkey hit a bug and stopped; please report it".into()),
        ),
    }
}

enum Answered {
    Done(ExitCode),
    /// The full program decides; `hung`: the daemon was just found hung.
    HandOver {
        hung: bool,
    },
}

const HAND_OVER: Answered = Answered::HandOver { hung: false };

/// What the front answers itself: `latchkey --version`, and `latchkey token` and
/// `latchkey refresh` in the forms [`front::parse`] knows when the daemon's answer
/// is final.
fn answer(args: &[OsString]) -> Answered {
    // Helper names (git-credential-latchkey, ...), a shell asking for completions,
    // and logs asked for are the full program's.
    if args
        .first()
        .is_some_and(|a| front::helper_subcommand(a).is_some())
        || std::env::var_os(front::COMPLETE_VAR).is_some_and(|v| !v.is_empty())
        || std::env::var_os(front::LOG_VAR).is_some()
    {
        return HAND_OVER;
    }
    let rest = args.get(1..).unwrap_or_default();
    if rest.len() == 1 && (rest[0] == "--version" || rest[0] == "-V") {
        return version();
    }
    let Some(invocation) = front::parse(rest) else {
        return HAND_OVER;
    };
    let Ok(client) = Client::from_env() else {
        return HAND_OVER;
    };
    let (named, json) = match &invocation {
        Invocation::Token(t) => (t.profile.clone(), t.json),
        Invocation::Refresh(r) => (r.profile.clone(), r.json),
    };
    let Some(profile) = front::named_profile(named, &client.paths().config_file)
        .and_then(|name| ProfileName::new(name).ok())
    else {
        return HAND_OVER;
    };
    let printed = match &invocation {
        Invocation::Token(t) => client
            .ask_if_final(&rq::Token {
                profile: profile.clone(),
                min_ttl: t.min_ttl,
            })
            .map(|r| {
                r.map(|answer| {
                    front::token_output(profile.as_str(), &Token::from(answer), t.format)
                })
            }),
        Invocation::Refresh(_) => client
            .ask_if_final(&rq::Refresh {
                profile: profile.clone(),
            })
            .map(|r| r.map(|answer| front::refresh_output(profile.as_str(), &answer))),
    };
    match printed {
        Ok(Ok(out)) => Answered::Done(render::success(json, &out)),
        Ok(Err(e)) => Answered::Done(render::error(json, &e)),
        Err(FirstAsk::Hung) => Answered::HandOver { hung: true },
        Err(FirstAsk::Other) => HAND_OVER,
    }
}

/// clap's `--version` line, which the full program prints the same way (a test
/// compares the two).
fn version() -> Answered {
    let out = render::Output {
        text: format!("latchkey {}\n", env!("CARGO_PKG_VERSION")),
        json: serde_json::Value::Null,
        exit: 0,
    };
    Answered::Done(render::success(false, &out))
}

/// Runs the full program in this process's place, with the same arguments
/// (`argv[0]` included, so helper names still dispatch).
fn hand_over(args: &[OsString], hung: bool) -> ExitCode {
    let json = front::json_requested(args);
    let Some(full) = front::sibling(front::FULL_PROGRAM) else {
        return render::error(
            json,
            &Error::usage(
                format!("cannot find {} beside this latchkey", front::FULL_PROGRAM),
                Some(
                    "install latchkey and latchkey-full together (`cargo install --locked --path client` installs both)"
                        .into(),
                ),
            ),
        );
    };
    let mut cmd = std::process::Command::new(&full);
    if hung {
        cmd.env(
            front::HANDOVER_VAR,
            front::hung_handover(std::process::id()),
        );
    }
    run(cmd, args, &full, json)
}

#[cfg(unix)]
fn run(
    mut cmd: std::process::Command,
    args: &[OsString],
    full: &std::path::Path,
    json: bool,
) -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    cmd.args(args.iter().skip(1));
    if let Some(a) = args.first() {
        cmd.arg0(a);
    }
    // `exec` returns only on failure.
    cannot_run(full, &cmd.exec(), json)
}

#[cfg(not(unix))]
fn run(
    mut cmd: std::process::Command,
    args: &[OsString],
    full: &std::path::Path,
    json: bool,
) -> ExitCode {
    // No exec on Windows, and no argv[0] to hand over: a helper name becomes its
    // subcommand here, then the full program runs as a child whose exit code is
    // passed on (Ctrl-C reaches both: they share the console).
    cmd.args(front::by_program_name(args.to_vec()).iter().skip(1));
    match cmd.status() {
        Ok(s) => render::exit_code(s.code().unwrap_or(1)),
        Err(e) => cannot_run(full, &e, json),
    }
}

/// The full program is there but could not be run: an `internal` error.
fn cannot_run(full: &std::path::Path, e: &std::io::Error, json: bool) -> ExitCode {
    render::error(
        json,
        &Error::Internal(format!("cannot run {}: {e}", full.display())),
    )
}
