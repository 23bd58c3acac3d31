//! `latchkey git-credential get|store|erase` (and `git-credential-latchkey`): the
//! helper protocol of git-credential(1) (docs/behaviour.md, "Credential helpers").
//!
//! - `get`: the profile is the one whose `git_hosts` lists the host git names
//!   (`--profile` narrows it to that profile), over https or http on loopback;
//!   none: no answer, so git asks its next helper. The answer is
//!   `username` (`git_username`, default `oauth2`), `password` (the access token)
//!   and `password_expiry_utc`; when git announced `capability[]=authtype` and the
//!   profile says `git_auth = "bearer"`, `authtype=Bearer` with `credential` and
//!   `ephemeral=1` instead. Never a browser: without a session, one line on stderr
//!   with the login command, and no answer.
//! - `store`: nothing (the session is Latchkey's, not git's).
//! - `erase` with the current access token: git says it was refused, so the
//!   session is refreshed and the next `get` answers the new token. A session is
//!   never deleted by git.

use std::io::Read;

use latchkey::Error;
use latchkey_daemon::config::ProfileConfig;
use latchkey_daemon::config::tools::GitAuth;
use latchkey_daemon::engine::DEFAULT_MIN_TTL;
use latchkey_proto::profile::ProfileName;

use super::Ctx;
use crate::render::Output;

/// What git sent: `key=value` lines up to a blank line or the end.
#[derive(Debug, Default)]
struct Request {
    fields: Vec<(String, String)>,
}

impl Request {
    fn parse(text: &str) -> Request {
        let fields = text
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Request { fields }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, key: &str, value: &str) -> bool {
        self.fields.iter().any(|(k, v)| k == key && v == value)
    }
}

pub async fn run(ctx: &Ctx, operation: &str) -> Result<Output, Error> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| Error::usage(format!("cannot read git's request: {e}"), None))?;
    let request = Request::parse(&text);
    let quiet = Output {
        exit: 0,
        text: String::new(),
        json: serde_json::Value::Null,
    };
    // `store`, and any operation a later git adds: nothing to do, nothing to read.
    if operation != "get" && operation != "erase" {
        return Ok(quiet);
    }
    let Some((profile, settings)) = profile(ctx, &request)? else {
        return Ok(quiet);
    };
    match operation {
        "get" => match ctx.client.token(&profile, DEFAULT_MIN_TTL).await {
            Ok(token) => Ok(Output {
                exit: 0,
                text: answer(&settings, &request, &token),
                json: serde_json::Value::Null,
            }),
            Err(e) => {
                super::no_credential(&profile, &e);
                Ok(quiet)
            }
        },
        "erase" => {
            let presented = request
                .get("password")
                .or_else(|| request.get("credential"));
            // Only the token held now: an older one is already replaced.
            if let (Some(presented), Ok(current)) = (presented, ctx.client.token(&profile, 0).await)
                && presented == current.access_token.expose()
                && let Err(e) = ctx.client.refresh(&profile).await
            {
                super::no_credential(&profile, &e);
            }
            Ok(quiet)
        }
        _ => Ok(quiet),
    }
}

/// The profile for git's host (`config::tools`) and its settings; `None`: not ours.
fn profile(ctx: &Ctx, request: &Request) -> Result<Option<(ProfileName, ProfileConfig)>, Error> {
    let Some(host) = request.get("host") else {
        return Ok(None);
    };
    let protocol = request.get("protocol").unwrap_or("https");
    let config = ctx.config()?;
    let chosen = config.git_profile(ctx.explicit_profile.as_deref(), protocol, host);
    super::tool_profile(&config, chosen)
}

fn answer(settings: &ProfileConfig, request: &Request, token: &latchkey::Token) -> String {
    let bearer =
        request.has("capability[]", "authtype") && settings.git_auth == Some(GitAuth::Bearer);
    // Declassification: git asked for this credential, and it goes to git alone.
    let secret = token.access_token.expose();
    let mut out = String::new();
    if bearer {
        out.push_str("capability[]=authtype\nauthtype=Bearer\n");
        out.push_str(&format!("credential={secret}\nephemeral=1\n"));
    } else {
        let user = settings.git_username.as_deref().unwrap_or("oauth2");
        out.push_str(&format!("username={user}\npassword={secret}\n"));
    }
    if let Some(at) = token
        .expires_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    {
        out.push_str(&format!("password_expiry_utc={}\n", at.as_secs()));
    }
    out
}
