//! Everything the CLI prints goes through here: the answer and error printers
//! shared with the front ([`latchkey::front::render`]), plus what only the full
//! program prints (login's JSON Lines [`progress`], notices, clap's usage errors).
//!
//! `login --json` prints JSON Lines, one per step; every other command one
//! document (docs/behaviour.md, "CLI contract").

use std::io::Write;
use std::process::ExitCode;

use latchkey::Error;
pub use latchkey::front::render::{Output, error, exit_code, in_words, seconds_until, success};

/// Prints one step of a long command as it happens: a sentence block for people,
/// or one JSON line (skipped when `doc` is null) with `--json`.
pub fn progress(json: bool, text: &str, doc: &serde_json::Value) {
    let mut stdout = std::io::stdout().lock();
    let written = if json {
        if doc.is_null() {
            return;
        }
        serde_json::to_writer(&mut stdout, doc)
            .map_err(std::io::Error::from)
            .and_then(|()| stdout.write_all(b"\n"))
    } else {
        stdout.write_all(text.as_bytes())
    }
    .and_then(|()| stdout.flush());
    if written.is_err() {
        // A closed stdout does not stop the login; its outcome still sets the exit code.
    }
}

/// A warning for people on stderr (a fallback that happened), never on stdout.
#[allow(clippy::print_stderr, reason = "notices belong on stderr")]
pub fn notice(text: &str) {
    eprintln!("warning: {text}");
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

pub use latchkey_daemon::convert::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
