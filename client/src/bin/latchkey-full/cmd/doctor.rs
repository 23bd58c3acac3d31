//! `latchkey doctor [--server]`: checks that say what is wrong and what to do.
//!
//! Offline by default: no network request at all (no HTTP client is even built).
//! `--server` adds discovery, clock skew against the provider's `Date` header, a
//! refresh if needed, and a userinfo call. Exit 0 when no check fails (warnings
//! allowed); otherwise the exit code of the first failing check's category (a
//! corrupt vault 8, no session 3, the provider unreachable 6), never 1, which
//! stays for bugs.

use std::time::Duration;

use latchkey::Error;
use latchkey_daemon::Engine;
use latchkey_daemon::config::Config;
use latchkey_daemon::vault::{fs, unix_now};
use latchkey_proto::error::Category;
use latchkey_proto::paths::RuntimeDirKind;
use serde_json::json;

use super::Ctx;
use crate::render::{Output, in_words};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    /// Failed, with the category whose exit code doctor ends with when this is the
    /// first failure.
    Fail(Category),
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail(_) => "fail",
        }
    }
}

#[derive(Debug)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    hint: Option<String>,
}

fn check(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    hint: Option<String>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        hint,
    }
}

fn failed(name: &'static str, e: &Error) -> Check {
    check(name, Status::Fail(e.category()), e.to_string(), e.hint())
}

pub async fn run(ctx: &Ctx, server: bool) -> Result<Output, Error> {
    let mut checks = Vec::new();
    let config = offline(ctx, &mut checks);
    if config.is_some() {
        checks.push(daemon_check(ctx).await);
    }
    if server && let Some((engine, profile)) = &config {
        online(ctx, engine, profile, &mut checks).await;
    }
    let first_failure = checks.iter().find_map(|c| match c.status {
        Status::Fail(category) => Some(category),
        _ => None,
    });
    let any_failed = first_failure.is_some();
    let mut text = String::new();
    for c in &checks {
        text.push_str(&format!(
            "{:<5} {}: {}\n",
            c.status.as_str(),
            c.name,
            c.detail
        ));
        if c.status != Status::Ok
            && let Some(h) = &c.hint
        {
            text.push_str(&format!("      hint: {h}\n"));
        }
    }
    text.push_str(if any_failed {
        "Some checks failed.\n"
    } else {
        "No check failed.\n"
    });
    let docs: Vec<_> = checks
        .iter()
        .map(|c| json!({"name": c.name, "status": c.status.as_str(), "detail": c.detail, "hint": c.hint}))
        .collect();
    Ok(Output {
        exit: first_failure.map_or(0, |c| u8::try_from(c.exit_code()).unwrap_or(1)),
        text,
        json: json!({ "checks": docs }),
    })
}

/// The offline checks; returns the engine and profile when they resolved.
fn offline(ctx: &Ctx, checks: &mut Vec<Check>) -> Option<(std::sync::Arc<Engine>, String)> {
    let paths = &ctx.paths;
    let config = match ctx.config() {
        Ok(c) if !paths.config_file.exists() => {
            checks.push(check(
                "config",
                Status::Warn,
                format!("no config file at {}", paths.config_file.display()),
                Some(
                    "add a profile with `latchkey profile add NAME --issuer URL --client-id ID`"
                        .into(),
                ),
            ));
            c
        }
        Ok(c) => {
            checks.push(check(
                "config",
                Status::Ok,
                paths.config_file.display().to_string(),
                None,
            ));
            c
        }
        Err(e) => {
            checks.push(failed("config", &e));
            return None;
        }
    };
    let profile = match ctx.profile(&config) {
        Ok(p) => {
            let pc = &config.profiles[&p];
            checks.push(check(
                "profile",
                Status::Ok,
                format!("{p} (issuer {}, client {})", pc.issuer, pc.client_id),
                None,
            ));
            p
        }
        Err(e) => {
            checks.push(failed("profile", &e));
            folders(ctx, checks);
            return None;
        }
    };
    folders(ctx, checks);
    let engine = std::sync::Arc::new(Engine::new(paths.clone(), Config::clone(&config)));
    session_checks(&engine, &profile, checks);
    Some((engine, profile))
}

/// Socket and daemon reachability, protocol and version skew. Never starts one.
async fn daemon_check(ctx: &Ctx) -> Check {
    let socket = &ctx.paths.socket;
    if ctx.client.mode() == latchkey::Mode::EmbeddedOnly {
        return check(
            "daemon",
            Status::Ok,
            "not used (LATCHKEY_NO_DAEMON=1)",
            None,
        );
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mode = meta.mode() & 0o777;
        if !meta.file_type().is_socket()
            || Some(meta.uid()) != fs::current_uid()
            || mode & 0o077 != 0
        {
            return check(
                "daemon",
                Status::Fail(Category::LocalStorage),
                format!(
                    "{} is not a private socket of yours (mode {mode:04o})",
                    socket.display()
                ),
                Some("stop any latchkeyd, remove the file, and run `latchkey daemon start`".into()),
            );
        }
    }
    match ctx.client.daemon_status().await {
        Ok(Some(st)) if st.version != env!("CARGO_PKG_VERSION") => check(
            "daemon",
            Status::Warn,
            format!(
                "running, pid {}, but version {} while this CLI is {}",
                st.pid,
                st.version,
                env!("CARGO_PKG_VERSION")
            ),
            Some("run `latchkey daemon restart` to run the installed version".into()),
        ),
        Ok(Some(st)) if st.profiles.iter().any(|p| p.unsaved) => check(
            "daemon",
            Status::Warn,
            format!(
                "running, pid {}, holding session changes (refreshes or logouts) it could not save: {}",
                st.pid,
                st.profiles.iter().filter(|p| p.unsaved).map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Some("free disk space or make the state folder writable; the daemon retries every few seconds".into()),
        ),
        Ok(Some(st)) => check(
            "daemon",
            Status::Ok,
            format!(
                "running, pid {}, protocol {}, on {}",
                st.pid, st.protocol, st.socket
            ),
            None,
        ),
        Ok(None) if socket.exists() => check(
            "daemon",
            Status::Warn,
            format!("{} exists but no daemon answers in time", socket.display()),
            Some("run `latchkey daemon restart`".into()),
        ),
        Ok(None) if latchkey::daemon_program().is_none() => check(
            "daemon",
            Status::Warn,
            "not running, and latchkeyd is not installed (neither beside latchkey nor on PATH): every command derives the vault key itself",
            Some("install latchkeyd with latchkey (`cargo install --locked --path daemon` from a source checkout)".into()),
        ),
        Ok(None) => check(
            "daemon",
            Status::Ok,
            "not running: commands are answered from the encrypted file by the embedded engine",
            None,
        ),
        Err(e) => check("daemon", Status::Warn, e.to_string(), e.hint()),
    }
}

fn folders(ctx: &Ctx, checks: &mut Vec<Check>) {
    let state = &ctx.paths.state_dir;
    checks.push(match fs::check_dir(state) {
        Ok(true) => check(
            "state_folder",
            Status::Ok,
            format!("{} (private)", state.display()),
            None,
        ),
        Ok(false) => check(
            "state_folder",
            Status::Ok,
            format!("{} does not exist yet (nothing stored)", state.display()),
            None,
        ),
        Err(e) => failed(
            "state_folder",
            &Error::from(latchkey_daemon::EngineError::from(e)),
        ),
    });
    let run = &ctx.paths.runtime_dir;
    checks.push(match fs::check_dir(run) {
        Ok(true) => check("runtime_folder", Status::Ok, format!("{} (private)", run.display()), None),
        Ok(false) => check(
            "runtime_folder",
            Status::Ok,
            format!("{} does not exist yet", run.display()),
            None,
        ),
        Err(e) => {
            let mut c = failed("runtime_folder", &Error::from(latchkey_daemon::EngineError::from(e)));
            if ctx.paths.runtime_dir_kind == RuntimeDirKind::TempFallback {
                c.hint = Some(format!(
                    "{} is shared with other users; remove it if it is not yours, or set XDG_RUNTIME_DIR",
                    run.display()
                ));
            }
            c
        }
    });
}

fn session_checks(engine: &Engine, profile: &str, checks: &mut Vec<Check>) {
    let vault_path = match engine.vault().path(profile) {
        Ok(p) => p,
        Err(e) => {
            checks.push(failed(
                "vault",
                &Error::from(latchkey_daemon::EngineError::from(e)),
            ));
            return;
        }
    };
    let key_file = engine.paths().key_file();
    let vault_exists = vault_path.exists();
    checks.push(match fs::read_private(&key_file, 64, true) {
        Ok(Some((bytes, _))) if bytes.len() == 32 => check(
            "machine_key",
            Status::Ok,
            format!("{} (32 bytes, private)", key_file.display()),
            None,
        ),
        Ok(Some((bytes, _))) => check(
            "machine_key",
            Status::Fail(Category::LocalStorage),
            format!(
                "{} holds {} bytes instead of 32",
                key_file.display(),
                bytes.len()
            ),
            Some("restore the original key file, or delete it and log in again".into()),
        ),
        Ok(None) if vault_exists => check(
            "machine_key",
            Status::Fail(Category::LocalStorage),
            format!(
                "{} is missing, so the stored session cannot be decrypted",
                key_file.display()
            ),
            Some("restore the key file, or log in again".into()),
        ),
        Ok(None) => check(
            "machine_key",
            Status::Ok,
            format!("{} will be made at the first login", key_file.display()),
            None,
        ),
        Err(e) => failed(
            "machine_key",
            &Error::from(latchkey_daemon::EngineError::from(e)),
        ),
    });
    match engine.status_blocking(profile) {
        Ok(st) if st.generation.is_none() => checks.push(check(
            "vault",
            Status::Fail(Category::NotLoggedIn),
            format!("no session stored for {profile} ({})", vault_path.display()),
            Some(format!("run `latchkey login --profile {profile}`")),
        )),
        Ok(st) => {
            checks.push(check(
                "vault",
                Status::Ok,
                format!(
                    "{} decrypts (generation {})",
                    vault_path.display(),
                    st.generation.unwrap_or_default()
                ),
                None,
            ));
            let now = unix_now();
            checks.push(match (st.session_expired, st.expires_at) {
                (true, _) => check(
                    "session",
                    Status::Fail(Category::SessionExpired),
                    "the provider no longer accepts this session",
                    Some(format!("run `latchkey login --profile {profile}`")),
                ),
                (false, Some(at)) if at <= now => check(
                    "session",
                    Status::Warn,
                    format!(
                        "the access token expired {}; it will be refreshed on next use",
                        in_words(at - now)
                    ),
                    None,
                ),
                (false, Some(at)) => check(
                    "session",
                    Status::Ok,
                    format!(
                        "access token expires {}; refresh token {}",
                        in_words(at - now),
                        if st.has_refresh_token {
                            "held"
                        } else {
                            "not held"
                        }
                    ),
                    None,
                ),
                (false, None) => check(
                    "session",
                    Status::Ok,
                    "access token has no stated expiry",
                    None,
                ),
            });
        }
        Err(e) => checks.push(failed("vault", &Error::from(e))),
    }
    // A lock that cannot be taken at once is held by a live process (the kernel
    // releases flock locks of dead ones), so it is at worst a refresh in progress.
    checks.push(match engine.vault().lock(profile, Duration::ZERO) {
        Ok(_released_on_drop) => check("lock", Status::Ok, "free", None),
        Err(e) => check(
            "lock",
            Status::Warn,
            e.to_string(),
            Some("a login or refresh is in progress; if it persists, find that process".into()),
        ),
    });
}

async fn online(
    ctx: &Ctx,
    engine: &std::sync::Arc<Engine>,
    profile: &str,
    checks: &mut Vec<Check>,
) {
    let p = match engine.profile(profile) {
        Ok(p) => p,
        Err(e) => return checks.push(failed("discovery", &Error::from(e))),
    };
    let http = match engine.http(profile) {
        Ok(h) => h,
        Err(e) => return checks.push(failed("discovery", &Error::from(e))),
    };
    match latchkey_daemon::oauth::discovery::probe(http, &p).await {
        Ok(date) => {
            checks.push(check(
                "discovery",
                Status::Ok,
                format!("{} answers", p.issuer),
                None,
            ));
            checks.push(clock_skew(date.as_deref()));
        }
        Err(error) => {
            let e = Error::from(latchkey_daemon::EngineError::OAuth {
                profile: profile.to_string(),
                error,
            });
            checks.push(failed("discovery", &e));
            return;
        }
    }
    // Through the client: a running daemon refreshes (it may hold the session
    // unsaved), and only without one does this process refresh itself.
    let name = match latchkey_proto::profile::ProfileName::new(profile) {
        Ok(n) => n,
        Err(e) => {
            checks.push(check(
                "refresh",
                Status::Fail(Category::Usage),
                e.to_string(),
                None,
            ));
            return;
        }
    };
    let token = match ctx
        .client
        .token(&name, latchkey_daemon::engine::DEFAULT_MIN_TTL)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            checks.push(failed("refresh", &e));
            return;
        }
    };
    checks.push(check(
        "refresh",
        Status::Ok,
        match token
            .expires_at
            .as_deref()
            .and_then(crate::render::seconds_until)
        {
            Some(left) => format!("access token valid, expires {}", in_words(left)),
            None => "access token valid".to_string(),
        },
        None,
    ));
    checks.push(match engine.userinfo(profile, &token.access_token).await {
        Ok((user, _)) => check(
            "userinfo",
            Status::Ok,
            format!(
                "the provider accepts the session (user {})",
                user.email.unwrap_or(user.sub)
            ),
            None,
        ),
        Err(e) => failed("userinfo", &Error::from(e)),
    });
}

fn clock_skew(date: Option<&str>) -> Check {
    let Some(date) = date else {
        return check(
            "clock_skew",
            Status::Warn,
            "the provider sent no Date header",
            None,
        );
    };
    let Ok(theirs) = humantime::parse_rfc3339_weak(&imf_to_rfc3339(date).unwrap_or_default())
    else {
        return check(
            "clock_skew",
            Status::Warn,
            format!("cannot read the provider's Date {date:?}"),
            None,
        );
    };
    let ours = std::time::SystemTime::now();
    let skew = match ours.duration_since(theirs) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let detail = format!(
        "this clock is {} s {} the provider's",
        skew.abs(),
        if skew >= 0 { "ahead of" } else { "behind" }
    );
    let hint = Some("synchronise the system clock (NTP); token expiry depends on it".into());
    match skew.abs() {
        0..=60 => check("clock_skew", Status::Ok, detail, None),
        61..=300 => check("clock_skew", Status::Warn, detail, hint),
        _ => check("clock_skew", Status::Fail(Category::Usage), detail, hint),
    }
}

/// Turns an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's IMF-fixdate)
/// into `1994-11-06 08:49:37` for humantime's RFC 3339 parser.
fn imf_to_rfc3339(date: &str) -> Option<String> {
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x == month)? + 1;
    Some(format!("{year}-{m:02}-{day:0>2} {time}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            imf_to_rfc3339("Sun, 06 Nov 1994 08:49:37 GMT").unwrap(),
            "1994-11-06 08:49:37"
        );
        assert!(imf_to_rfc3339("garbage").is_none());
        let now = httpdate_now();
        assert_eq!(clock_skew(Some(&now)).status, Status::Ok);
        assert_eq!(
            clock_skew(Some("Sun, 06 Nov 1994 08:49:37 GMT")).status,
            Status::Fail(Category::Usage)
        );
    }

    fn httpdate_now() -> String {
        // humantime renders RFC 3339; rebuild an IMF-fixdate from it for the test.
        let s = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
        let mut d = date.split('-');
        let (y, m, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "Mon, {day} {} {y} {time} GMT",
            MONTHS[m.parse::<usize>().unwrap() - 1]
        )
    }
}
