//! `latchkey completions bash|zsh|fish` and `latchkey man`: what the shell and
//! `man` know of the CLI, generated from the same clap definitions that parse it.
//!
//! Completions are dynamic (clap_complete's environment mode): the script a shell
//! loads calls `latchkey` back with `LATCHKEY_COMPLETE=<shell>` at each Tab, so
//! subcommands and options come from the binary the person runs (never stale
//! after an upgrade) and profile names from their config.toml. The variable is
//! Latchkey's own, not clap's generic `COMPLETE`, so an unrelated `COMPLETE` in
//! someone's environment can never turn `latchkey token` into a completer.

use std::path::Path;

use clap_complete::env::EnvCompleter as _;
use latchkey::Error;

use crate::cli::{self, Shell};
use crate::render::Output;

use latchkey::front::COMPLETE_VAR;

/// Answers a shell's completion request and exits, when this process is one
/// (`LATCHKEY_COMPLETE` set); otherwise returns at once. Called before anything
/// else in `main`: one environment lookup on every other path.
pub fn complete_if_asked() {
    if std::env::var_os(COMPLETE_VAR).is_none_or(|v| v.is_empty()) {
        return;
    }
    clap_complete::CompleteEnv::with_factory(cli::command)
        .var(COMPLETE_VAR)
        .complete();
}

/// The profile names of config.toml, for completing `--profile` and
/// `profile remove|default`; none when there is no readable config.
pub fn profile_candidates() -> Vec<clap_complete::CompletionCandidate> {
    let env = latchkey_daemon::engine::process_env();
    let Ok(paths) = latchkey_proto::paths::Paths::resolve(&env) else {
        return Vec::new();
    };
    match latchkey_daemon::config::Config::load(&paths.config_file) {
        Ok(config) => config
            .profile_names()
            .into_iter()
            .map(clap_complete::CompletionCandidate::new)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `latchkey completions SHELL`: the script that registers `latchkey`'s
/// completion with the shell (it calls `latchkey` from PATH at each Tab).
pub fn completions(shell: Shell) -> Result<Output, Error> {
    let mut script = Vec::new();
    let written = match shell {
        Shell::Bash => clap_complete::env::Bash.write_registration(
            COMPLETE_VAR,
            "latchkey",
            "latchkey",
            "latchkey",
            &mut script,
        ),
        Shell::Zsh => clap_complete::env::Zsh.write_registration(
            COMPLETE_VAR,
            "latchkey",
            "latchkey",
            "latchkey",
            &mut script,
        ),
        Shell::Fish => clap_complete::env::Fish.write_registration(
            COMPLETE_VAR,
            "latchkey",
            "latchkey",
            "latchkey",
            &mut script,
        ),
    };
    written.map_err(|e| Error::Internal(format!("cannot write the completion script: {e}")))?;
    Ok(Output {
        exit: 0,
        text: String::from_utf8_lossy(&script).into_owned(),
        json: serde_json::Value::Null,
    })
}

/// `latchkey man [--out-dir DIR]`: latchkey(1) on stdout, or with `--out-dir`
/// one page per command (`latchkey.1`, `latchkey-token.1`, ...) written there.
pub fn man(out_dir: Option<&Path>) -> Result<Output, Error> {
    let cmd = cli::command();
    let Some(dir) = out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))?;
        return Ok(Output {
            exit: 0,
            text: String::from_utf8_lossy(&page).into_owned(),
            json: serde_json::Value::Null,
        });
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::usage(format!("cannot create {}: {e}", dir.display()), None))?;
    clap_mangen::generate_to(cmd, dir).map_err(|e| {
        Error::usage(
            format!("cannot write the man pages into {}: {e}", dir.display()),
            None,
        )
    })?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("latchkey") && n.ends_with(".1"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let text: String = names
        .iter()
        .map(|n| format!("{}\n", dir.join(n).display()))
        .collect();
    Ok(Output {
        exit: 0,
        text,
        json: serde_json::json!({ "pages": names }),
    })
}
