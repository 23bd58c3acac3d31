//! `latchkey docker-credential get|store|erase|list|version` (and
//! `docker-credential-latchkey`): the protocol of docker-credential-helpers
//! (docs/behaviour.md, "Credential helpers").
//!
//! - `get`: the registry (a server URL) on stdin; the profile is the one whose
//!   `docker_registries` lists it (`--profile` narrows it to that profile), over
//!   https or http on loopback. The answer is
//!   `{"ServerURL", "Username", "Secret"}` with `docker_username` (default
//!   `oauth2accesstoken`) and the access token. A registry no profile lists, or a
//!   profile without a session (one line on stderr with the login command), is
//!   docker's own "not found": `credentials not found in native keychain` on
//!   stdout, exit 1.
//! - `store`: nothing (the session is Latchkey's).
//! - `erase`: `docker logout` or a refused credential: the session is refreshed,
//!   never deleted.
//! - `list`: every configured registry and its user name.
//! - `version`: this helper's version.

use std::io::Read;

use latchkey::Error;
use latchkey_daemon::config::ProfileConfig;
use latchkey_daemon::engine::DEFAULT_MIN_TTL;
use latchkey_proto::profile::ProfileName;
use serde_json::json;

use super::Ctx;
use crate::render::Output;

/// docker's own words for "no credential here", which it matches.
const NOT_FOUND: &str = "credentials not found in native keychain";
const DEFAULT_USERNAME: &str = "oauth2accesstoken";

fn plain(exit: u8, text: String) -> Output {
    Output {
        exit,
        text,
        json: serde_json::Value::Null,
    }
}

pub async fn run(ctx: &Ctx, operation: &str) -> Result<Output, Error> {
    match operation {
        "version" => Ok(plain(
            0,
            format!(
                "docker-credential-latchkey (latchkey {})\n",
                env!("CARGO_PKG_VERSION")
            ),
        )),
        "list" => list(ctx),
        "get" => {
            let server = read_stdin()?.trim().to_string();
            let Some((profile, settings)) = profile(ctx, &server)? else {
                return Ok(plain(1, format!("{NOT_FOUND}\n")));
            };
            match ctx.client.token(&profile, DEFAULT_MIN_TTL).await {
                Ok(token) => {
                    let username = settings
                        .docker_username
                        .as_deref()
                        .unwrap_or(DEFAULT_USERNAME);
                    // Declassification: docker asked for this credential.
                    let doc = json!({
                        "ServerURL": server,
                        "Username": username,
                        "Secret": token.access_token.expose(),
                    });
                    Ok(plain(0, format!("{doc}\n")))
                }
                Err(e) => {
                    super::no_credential(&profile, &e);
                    Ok(plain(1, format!("{NOT_FOUND}\n")))
                }
            }
        }
        "erase" => {
            let server = read_stdin()?.trim().to_string();
            if let Some((profile, _)) = profile(ctx, &server)?
                && let Err(e) = ctx.client.refresh(&profile).await
            {
                super::no_credential(&profile, &e);
            }
            Ok(plain(0, String::new()))
        }
        "store" => {
            // Read what docker sends, so it never sees a closed pipe; keep nothing.
            read_stdin()?;
            Ok(plain(0, String::new()))
        }
        // As docker-credential-helpers answer one: the message on stdout, exit 1.
        other => Ok(plain(1, format!("unknown credential action `{other}`\n"))),
    }
}

fn read_stdin() -> Result<String, Error> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| Error::usage(format!("cannot read docker's request: {e}"), None))?;
    Ok(text)
}

/// The profile for the registry (`config::tools`) and its settings; `None`: not ours.
fn profile(ctx: &Ctx, server: &str) -> Result<Option<(ProfileName, ProfileConfig)>, Error> {
    let config = ctx.config()?;
    let chosen = config.registry_profile(ctx.explicit_profile.as_deref(), server);
    super::tool_profile(&config, chosen)
}

fn list(ctx: &Ctx) -> Result<Output, Error> {
    let config = ctx.config()?;
    let mut map = serde_json::Map::new();
    for p in config.profiles.values() {
        let user = p
            .docker_username
            .clone()
            .unwrap_or_else(|| DEFAULT_USERNAME.into());
        for r in &p.docker_registries {
            map.insert(r.clone(), serde_json::Value::String(user.clone()));
        }
    }
    Ok(plain(0, format!("{}\n", serde_json::Value::Object(map))))
}
