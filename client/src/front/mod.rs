//! What the two binaries of the `latchkey` command share. Not a stable API: it is
//! public only so both binaries reach it.
//!
//! `latchkey` (`src/bin/latchkey/`) is a small front: it answers `latchkey token`
//! and `latchkey refresh` (and `--version`) when a daemon gives a final answer, with nothing on its start
//! path but std, the socket exchange and these printers, and hands every other
//! invocation to the full program, `latchkey-full` (`src/bin/latchkey-full/`), by
//! `exec` with the same arguments (the same process, so exit codes, signals and
//! the pid pass through). The full program answers everything, `latchkey token`
//! included, so the front is only ever a shortcut: whenever it is in doubt (an
//! argument form it does not know, no daemon, a stale or foreign one, logging
//! asked for, a helper name) it hands over and the full program decides.
//!
//! Why two binaries: `latchkey token` through a warm daemon should cost little more
//! than starting a process (docs/behaviour.md, "Performance targets"), and the full
//! program's start-up alone (its dynamic relocations and the pages they touch, two
//! thirds of its cost) was more than the whole floor's request. See ARCHITECTURE.md.

pub mod render;

use std::ffi::OsString;
use std::path::Path;

use serde_json::json;

use latchkey_proto::api;

use crate::Token;
use render::{Output, in_words, seconds_until};

/// The full program's file name (see [`sibling`] for where it is looked for).
pub const FULL_PROGRAM: &str = "latchkey-full";

/// The variable that puts `latchkey` in shell-completion mode (clap_complete's
/// environment mode, answered by the full program).
pub const COMPLETE_VAR: &str = "LATCHKEY_COMPLETE";

/// The variable that turns logs on (a tracing filter); only the full program logs.
pub const LOG_VAR: &str = "LATCHKEY_LOG";

/// Whether `--json` is among the arguments: decided before parsing, so even a
/// usage error is answered in JSON.
pub fn json_requested(args: &[OsString]) -> bool {
    args.iter().skip(1).any(|a| a == "--json")
}

/// The subcommand a helper name stands for: the helpers that tools find by name
/// (`git-credential-latchkey`, `docker-credential-latchkey`, links installed by
/// packaging) are `latchkey git-credential ARGS` and `latchkey docker-credential
/// ARGS`.
pub fn helper_subcommand(program: &std::ffi::OsStr) -> Option<&'static str> {
    match Path::new(program).file_stem()?.to_str()? {
        "git-credential-latchkey" => Some("git-credential"),
        "docker-credential-latchkey" => Some("docker-credential"),
        _ => None,
    }
}

/// `args` with a helper name in `argv[0]` turned into `latchkey SUBCOMMAND ...`.
pub fn by_program_name(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(sub) = args.first().and_then(|a| helper_subcommand(a)) else {
        return args;
    };
    args[0] = "latchkey".into();
    args.insert(1, sub.into());
    args
}

/// Where a program installed with Latchkey (`latchkey-full`, `latchkeyd`) is,
/// relative to the running executable's folder D (symlinks resolved where the
/// platform does): `D/NAME` (an install's bin folder, a build folder), else
/// `D/../libexec/latchkey/NAME` (the full program in a distribution package),
/// else, when D is such a libexec folder, `D/../../bin/NAME` (the daemon, seen
/// from the full program there). `None` when none is a file.
pub fn sibling(name: &str) -> Option<std::path::PathBuf> {
    let name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let mut candidates = vec![dir.join(&name), dir.join("../libexec/latchkey").join(&name)];
    if dir.ends_with("libexec/latchkey") {
        candidates.push(dir.join("../../bin").join(&name));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Set by the front for the full program when the daemon did not answer within
/// the deadline: `<pid> hung`. The full program goes straight to the fallback
/// table's `Hung` row instead of waiting a second time (the client falls back
/// within one deadline). Honoured only by the process whose pid it names (`exec`
/// keeps the pid), so a child that inherits it ignores it.
pub const HANDOVER_VAR: &str = "LATCHKEY_FRONT_HANDOVER";

/// The value of [`HANDOVER_VAR`] that says the daemon was found hung by `pid`.
pub fn hung_handover(pid: u32) -> String {
    format!("{pid} hung")
}

/// How `latchkey token` prints the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// The token alone, one line.
    Raw,
    /// The JSON document `--json` prints.
    Json,
    /// `Authorization: Bearer …`, one line.
    Header,
}

impl TokenFormat {
    fn from_name(name: &str) -> Option<TokenFormat> {
        match name {
            "raw" => Some(TokenFormat::Raw),
            "json" => Some(TokenFormat::Json),
            "header" => Some(TokenFormat::Header),
            _ => None,
        }
    }
}

/// `latchkey token` as the front recognises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenArgs {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `--min-ttl`.
    pub min_ttl: u64,
    /// `--format`.
    pub format: TokenFormat,
}

/// `latchkey refresh` as the front recognises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshArgs {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--json`.
    pub json: bool,
}

/// What the front may answer itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Token(TokenArgs),
    Refresh(RefreshArgs),
}

/// `latchkey token` and `latchkey refresh` in their common forms, recognised
/// without clap: the command with `--profile P` and `--json` (before or after it),
/// and for `token` `--min-ttl N` and `--format raw|json|header` after it; each
/// option at most once, `--opt value` or `--opt=value`. Anything else, every error
/// and `--help` included, is `None`: the full program's clap parses it, so the two
/// cannot disagree on what they both accept (the full program's tests hold this
/// parser against clap).
pub fn parse(args: &[OsString]) -> Option<Invocation> {
    let mut command: Option<&str> = None;
    let mut profile: Option<String> = None;
    let mut json = false;
    let mut min_ttl: Option<u64> = None;
    let mut format: Option<TokenFormat> = None;
    let mut it = args.iter().map(|a| a.to_str());
    while let Some(arg) = it.next() {
        let arg = arg?;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        let mut value = || match inline {
            Some(v) => Some(v),
            None => it.next().flatten(),
        };
        let token_options = command == Some("token");
        match name {
            "token" | "refresh" if command.is_none() && inline.is_none() => command = Some(name),
            "--json" if !json && inline.is_none() => json = true,
            "--profile" if profile.is_none() => {
                let v = value()?;
                if v.is_empty() || v.starts_with('-') {
                    return None;
                }
                profile = Some(v.to_string());
            }
            "--min-ttl" if token_options && min_ttl.is_none() => {
                let v = value()?;
                if !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                min_ttl = Some(v.parse().ok()?);
            }
            "--format" if token_options && format.is_none() => {
                format = Some(TokenFormat::from_name(value()?)?);
            }
            _ => return None,
        }
    }
    match command? {
        "token" => Some(Invocation::Token(TokenArgs {
            profile,
            json,
            min_ttl: min_ttl.unwrap_or(latchkey_daemon::engine::DEFAULT_MIN_TTL),
            format: format.unwrap_or(TokenFormat::Raw),
        })),
        _ => Some(Invocation::Refresh(RefreshArgs { profile, json })),
    }
}

/// The profile a command is about when it is named without parsing config.toml:
/// `--profile`, else `LATCHKEY_PROFILE`, else the config's top-level
/// `default_profile` line. `None`: read the whole config to decide (and to say
/// what is wrong). The name is not checked here; whoever uses it does.
pub fn named_profile(explicit: Option<String>, config_file: &Path) -> Option<String> {
    let from_env = std::env::var("LATCHKEY_PROFILE")
        .ok()
        .filter(|s| !s.is_empty());
    explicit
        .or(from_env)
        .or_else(|| latchkey_daemon::config::default_profile_hint(config_file))
}

/// What `latchkey token` prints for `token`, in `format` (`--json` prints the
/// output's JSON whatever the format).
pub fn token_output(profile: &str, token: &Token, format: TokenFormat) -> Output {
    // Declassification: this command exists to hand the token to its caller.
    let secret = token.access_token.expose();
    let json = json!({
        "access_token": secret,
        "token_type": token.token_type,
        "expires_at": token.expires_at,
        "profile": profile,
    });
    Output {
        exit: 0,
        text: match format {
            TokenFormat::Raw => format!("{secret}\n"),
            TokenFormat::Header => format!("Authorization: Bearer {secret}\n"),
            TokenFormat::Json => format!("{json}\n"),
        },
        json,
    }
}

/// What `latchkey refresh` prints once the daemon or the engine refreshed `profile`.
pub fn refresh_output(profile: &str, r: &api::Refreshed) -> Output {
    let when = match r.expires_at.as_deref().and_then(seconds_until) {
        Some(left) => format!("expires {}", in_words(left)),
        None => "has no stated expiry".to_string(),
    };
    Output {
        exit: 0,
        text: format!("Refreshed profile {profile}: the new access token {when}.\n"),
        json: json!({
            "profile": profile,
            "expires_at": r.expires_at,
            "generation": r.generation,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_names_become_their_subcommands() {
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(
            by_program_name(os(&["/usr/bin/git-credential-latchkey", "get"])),
            os(&["latchkey", "git-credential", "get"])
        );
        assert_eq!(
            by_program_name(os(&["docker-credential-latchkey", "list"])),
            os(&["latchkey", "docker-credential", "list"])
        );
        assert_eq!(
            by_program_name(os(&["/opt/latchkey", "token"])),
            os(&["/opt/latchkey", "token"])
        );
    }
}
