//! `latchkey status [--all]`: who, until when, where it is stored, and whether a
//! daemon answered. From the daemon when one runs, else from the encrypted file.

use latchkey::{Error, Via};
use latchkey_proto::api;
use serde_json::{Value, json};

use super::Ctx;
use crate::render::{Output, in_words, seconds_until};

/// How storage is described to people (docs/behaviour.md, "Commands").
const STORAGE: &str = "encrypted file (scrypt, XChaCha20-Poly1305)";

pub async fn run(ctx: &Ctx, all: bool) -> Result<Output, Error> {
    let names = if all {
        ctx.config()?
            .profile_names()
            .into_iter()
            .map(super::checked)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![ctx.profile_name()?]
    };
    let mut sessions = Vec::new();
    for name in &names {
        sessions.push(ctx.client.session(name).await?);
    }
    let daemon = match sessions.first() {
        Some((_, Via::Daemon)) => ctx.client.daemon_status().await.ok().flatten(),
        _ => None,
    };
    let mut text = String::new();
    if names.is_empty() {
        text.push_str("No profiles yet. Add one with: latchkey profile add NAME --issuer URL --client-id ID\n");
    }
    let mut docs = Vec::new();
    for (s, via) in &sessions {
        let answered = *via == Via::Daemon;
        text.push_str(&sentences(s, daemon.as_ref(), answered));
        docs.push(document(s, daemon.as_ref(), answered));
    }
    let json = if all {
        json!({ "profiles": docs })
    } else {
        docs.pop().unwrap_or(Value::Null)
    };
    Ok(Output {
        exit: 0,
        text,
        json,
    })
}

/// `answered`: the daemon gave the session; its operator status may still be
/// withheld (a client token may not read it).
fn document(s: &api::Session, daemon: Option<&api::DaemonStatus>, answered: bool) -> Value {
    json!({
        "profile": s.profile,
        "logged_in": s.logged_in,
        "session_expired": s.session_expired,
        "user": s.user,
        "groups": s.groups,
        "scopes": s.scopes,
        "expires_at": s.expires_at,
        "expires_in_seconds": s.expires_at.as_deref().and_then(seconds_until),
        "has_refresh_token": s.has_refresh_token,
        "generation": s.generation,
        "storage": s.storage,
        "unsaved": s.unsaved,
        "daemon": {"running": daemon.is_some() || answered, "pid": daemon.map(|d| d.pid)},
    })
}

fn sentences(s: &api::Session, daemon: Option<&api::DaemonStatus>, answered: bool) -> String {
    let who = s.user.as_ref().map(|u| match (&u.name, &u.email) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (None, Some(e)) => e.clone(),
        (Some(n), None) => n.clone(),
        (None, None) => u.sub.clone(),
    });
    let mut out = String::new();
    if s.session_expired {
        out.push_str(&format!(
            "Profile {}: the session{} has expired; run `latchkey login --profile {}`.\n",
            s.profile,
            who.map(|w| format!(" of {w}")).unwrap_or_default(),
            s.profile
        ));
    } else if !s.logged_in {
        out.push_str(&format!(
            "Profile {}: not logged in; run `latchkey login --profile {}`.\n",
            s.profile, s.profile
        ));
        return out;
    } else {
        out.push_str(&format!(
            "Profile {}: logged in{}.\n",
            s.profile,
            who.map(|w| format!(" as {w}")).unwrap_or_default()
        ));
    }
    if !s.groups.is_empty() {
        out.push_str(&format!("  groups: {}\n", s.groups.join(", ")));
    }
    match (
        &s.expires_at,
        s.expires_at.as_deref().and_then(seconds_until),
    ) {
        (Some(at), Some(left)) => {
            let refresh_note = if left <= 0 && s.has_refresh_token {
                "; it will be refreshed on next use"
            } else {
                ""
            };
            let when = if left > 0 {
                format!("expires {}", in_words(left))
            } else {
                format!("expired {}", in_words(left))
            };
            out.push_str(&format!("  access token: {when} ({at}){refresh_note}\n"));
        }
        _ => out.push_str("  access token: no stated expiry\n"),
    }
    out.push_str(if s.has_refresh_token {
        "  refresh token: held\n"
    } else {
        "  refresh token: none\n"
    });
    out.push_str(&format!("  storage: {STORAGE} at {}\n", s.storage.path));
    if s.unsaved {
        out.push_str("  NOT SAVED: the session changed (refreshed, or found expired) but the disk refused the write; the daemon keeps it and retries (free disk space, see `latchkey doctor`)\n");
    }
    match daemon {
        Some(d) => out.push_str(&format!(
            "  daemon: running, pid {}, up {}\n",
            d.pid,
            in_words(i64::try_from(d.uptime_seconds).unwrap_or(i64::MAX)).trim_start_matches("in ")
        )),
        None if answered => out.push_str("  daemon: running (its details are for the owner)\n"),
        None => out.push_str("  daemon: not running: answered from the encrypted file\n"),
    }
    out
}
