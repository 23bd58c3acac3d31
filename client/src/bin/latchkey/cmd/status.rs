//! `latchkey status [--all]`: offline, from the encrypted file.

use latchkey::Error;
use latchkey_daemon::session::status::SessionStatus;
use latchkey_daemon::vault::unix_now;
use serde_json::{Value, json};

use super::Ctx;
use crate::render::{Output, in_words, rfc3339};

/// How storage is described to people (SPEC §4).
const STORAGE: &str = "encrypted file (scrypt, XChaCha20-Poly1305)";

pub fn run(ctx: &Ctx, all: bool) -> Result<Output, Error> {
    if all {
        let config = ctx.config()?;
        let engine = latchkey_daemon::Engine::new(ctx.paths.clone(), config.clone());
        let mut text = String::new();
        let mut docs = Vec::new();
        if config.profiles.is_empty() {
            text.push_str("No profiles yet. Add one with: latchkey profile add NAME --issuer URL --client-id ID\n");
        }
        for name in config.profile_names() {
            let st = engine.status(&name)?;
            text.push_str(&sentences(&st));
            docs.push(document(&st));
        }
        return Ok(Output {
            exit: 0,
            text,
            json: json!({ "profiles": docs }),
        });
    }
    let (engine, profile) = ctx.engine()?;
    let st = engine.status(&profile)?;
    Ok(Output {
        exit: 0,
        text: sentences(&st),
        json: document(&st),
    })
}

fn document(st: &SessionStatus) -> Value {
    let now = unix_now();
    json!({
        "profile": st.profile,
        "logged_in": st.logged_in,
        "session_expired": st.session_expired,
        "user": st.user.as_ref().map(|u| json!({"sub": u.sub, "email": u.email, "name": u.name})),
        "groups": st.groups,
        "scopes": st.scopes,
        "expires_at": st.expires_at.map(rfc3339),
        "expires_in_seconds": st.expires_at.map(|e| e - now),
        "has_refresh_token": st.has_refresh_token,
        "generation": st.generation,
        "storage": {"kind": "encrypted_file", "path": st.vault_path},
        "daemon": {"running": false, "pid": Value::Null},
    })
}

fn sentences(st: &SessionStatus) -> String {
    let who = st.user.as_ref().map(|u| match (&u.name, &u.email) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (None, Some(e)) => e.clone(),
        (Some(n), None) => n.clone(),
        (None, None) => u.sub.clone(),
    });
    let mut out = String::new();
    if st.session_expired {
        out.push_str(&format!(
            "Profile {}: the session{} has expired; run `latchkey login --profile {}`.\n",
            st.profile,
            who.map(|w| format!(" of {w}")).unwrap_or_default(),
            st.profile
        ));
    } else if !st.logged_in {
        out.push_str(&format!(
            "Profile {}: not logged in; run `latchkey login --profile {}`.\n",
            st.profile, st.profile
        ));
        return out;
    } else {
        out.push_str(&format!(
            "Profile {}: logged in{}.\n",
            st.profile,
            who.map(|w| format!(" as {w}")).unwrap_or_default()
        ));
    }
    if !st.groups.is_empty() {
        out.push_str(&format!("  groups: {}\n", st.groups.join(", ")));
    }
    match st.expires_at {
        Some(at) => {
            let left = at - unix_now();
            let refresh_note = if left <= 0 && st.has_refresh_token {
                "; it will be refreshed on next use"
            } else {
                ""
            };
            out.push_str(&format!(
                "  access token: {} ({}){refresh_note}\n",
                if left > 0 {
                    format!("expires {}", in_words(left))
                } else {
                    format!("expired {}", in_words(left))
                },
                rfc3339(at)
            ));
        }
        None => out.push_str("  access token: no stated expiry\n"),
    }
    out.push_str(if st.has_refresh_token {
        "  refresh token: held\n"
    } else {
        "  refresh token: none\n"
    });
    out.push_str(&format!(
        "  storage: {STORAGE} at {}\n",
        st.vault_path.display()
    ));
    out.push_str("  daemon: not running: answered from the encrypted file\n");
    out
}
