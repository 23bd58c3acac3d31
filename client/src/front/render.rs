//! How a command's answer and errors are printed, for both binaries of the
//! `latchkey` command (the front answers `latchkey token` through the daemon with
//! these; the full program prints everything else with them).
//!
//! With `--json` each run prints exactly one JSON document on stdout, success or
//! failure (`login` alone prints JSON Lines as it goes, its last line the result). Without it, answers go to stdout as sentences and errors to stderr as
//! `error: ...` plus `hint: ...`. A closed stdout (`latchkey token | head -c0`) is
//! not an error (docs/behaviour.md, "CLI contract").

use std::io::Write;
use std::process::ExitCode;

use crate::Error;

/// What a successful command answers, in both forms.
#[derive(Debug)]
pub struct Output {
    /// For people (or, for `latchkey token`, the token line itself).
    pub text: String,
    /// For scripts.
    pub json: serde_json::Value,
    /// The exit code of an answer that is not an error but says something failed
    /// (`doctor` with a failing check, `daemon status` with no daemon).
    pub exit: u8,
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
        Ok(()) => ExitCode::from(out.exit),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(out.exit),
        Err(e) => {
            drop(stdout);
            error(json, &Error::Output(e))
        }
    }
}

/// Prints an error and returns its exit code (docs/behaviour.md, "Exit codes and
/// error categories").
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

pub fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Seconds from now until an RFC 3339 time.
pub fn seconds_until(at: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    let now = std::time::SystemTime::now();
    Some(match t.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    })
}

/// A duration in words, relative to now: "in 59 min", "3 min ago", "in 2 h 5 min".
pub fn in_words(seconds_from_now: i64) -> String {
    let s = seconds_from_now.unsigned_abs();
    let span = if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 86_400 {
        match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        }
    } else {
        format!("{} d", s / 86_400)
    };
    if seconds_from_now >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(in_words(3540), "in 59 min");
        assert_eq!(in_words(45), "in 45 s");
        assert_eq!(in_words(-180), "3 min ago");
        assert_eq!(in_words(7500), "in 2 h 5 min");
        assert_eq!(in_words(7200), "in 2 h");
        assert_eq!(in_words(200_000), "in 2 d");
    }
}
