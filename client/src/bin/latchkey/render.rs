//! Everything the CLI prints goes through here.
//!
//! With `--json` each run prints exactly one JSON document on stdout, success or
//! failure (login's JSON Lines come later). Without it, answers go to stdout as
//! sentences and errors to stderr as `error: ...` plus `hint: ...`. A closed stdout
//! (`latchkey token | head -c0`) is not an error.

use std::io::Write;
use std::process::ExitCode;

use latchkey::Error;

/// What a successful command answers, in both forms.
#[derive(Debug)]
pub struct Output {
    /// For people (or, for `latchkey token`, the token line itself).
    pub text: String,
    /// For scripts.
    pub json: serde_json::Value,
}

/// Prints a success and returns the exit code.
pub fn success(json: bool, out: &Output) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer(&mut stdout, &out.json)
            .map_err(std::io::Error::from)
            .and_then(|()| stdout.write_all(b"\n"))
    } else {
        stdout.write_all(out.text.as_bytes())
    }
    .and_then(|()| stdout.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            drop(stdout);
            error(json, &Error::Output(e))
        }
    }
}

/// Prints an error and returns its exit code (SPEC §4).
#[allow(clippy::print_stderr, reason = "this is the CLI's one error printer")]
pub fn error(json: bool, err: &Error) -> ExitCode {
    let code = exit_code(err.category().exit_code());
    if json {
        let doc = err.to_document();
        let mut stdout = std::io::stdout().lock();
        let written = serde_json::to_writer(&mut stdout, &doc)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout));
        if written.is_err() {
            // Nothing is left to report it on; the exit code still says what happened.
        }
    } else {
        eprintln!("error: {err}");
        if let Some(hint) = err.hint() {
            eprintln!("hint: {hint}");
        }
    }
    code
}

/// Prints a clap parse failure: help and version to stdout with exit 0, usage errors
/// as exit 2 (as JSON when `--json` was among the arguments).
#[allow(clippy::print_stderr, reason = "clap's own rendering of usage errors")]
pub fn clap_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            if e.print().is_err() {
                // Help goes to stdout; a closed pipe (`latchkey --help | head`) is fine.
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                exit_code(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ if json => {
            let message = e
                .render()
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            error(
                true,
                &Error::usage(message, Some("see `latchkey --help`".into())),
            )
        }
        _ => {
            eprint!("{}", e.render());
            exit_code(2)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Formats Unix seconds as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
