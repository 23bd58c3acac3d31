//! The daemon's shared state: the engine (which owns every session rule, the
//! session cache and unsaved sessions), the config file's identity, the operator
//! counters, the pending socket logins and the shutdown source.
//!
//! Architecture invariant: no session rule lives here. Freshness, refreshes, the
//! cache and unsaved sessions are the engine's session service; the daemon adds
//! transport, access checks, counters and events.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use latchkey_proto::api;
use tokio_util::sync::CancellationToken;

use crate::convert::rfc3339;
use crate::engine::{AccessToken, Engine};
use crate::error::EngineError;
use crate::session::id_token::IdToken;
use crate::vault::{FileIdentity, unix_now};

use super::login::PendingLogin;

pub(crate) use crate::session::slot::lock;

/// Operator counters (`daemon status`). Refreshes are counted by the engine.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub token_requests: AtomicU64,
    pub event_subscribers: AtomicU64,
    pub proxy_requests: AtomicU64,
    pub proxy_retries: AtomicU64,
    pub proxy_upstream_errors: AtomicU64,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    pub(crate) engine: Arc<Engine>,
    config_identity: Mutex<Option<FileIdentity>>,
    pub(crate) counters: Counters,
    pub(crate) logins: Mutex<HashMap<String, Arc<PendingLogin>>>,
    pub(crate) started: Instant,
    pub(crate) started_at: i64,
    pub(crate) socket: PathBuf,
    pub(crate) activation: api::Activation,
    /// The one shutdown source: signals, `POST /v1/shutdown` and idle exit cancel it.
    pub shutdown: CancellationToken,
    /// Unix milliseconds of the last request, for `--idle-exit`.
    pub(crate) last_activity: AtomicU64,
}

impl Daemon {
    pub fn new(engine: Engine, socket: PathBuf, activation: api::Activation) -> Arc<Daemon> {
        let identity = crate::vault::fs::identity(&engine.paths().config_file)
            .ok()
            .flatten();
        Arc::new(Daemon {
            engine: Arc::new(engine),
            config_identity: Mutex::new(identity),
            counters: Counters::default(),
            logins: Mutex::new(HashMap::new()),
            started: Instant::now(),
            started_at: unix_now(),
            socket,
            activation,
            shutdown: CancellationToken::new(),
            last_activity: AtomicU64::new(now_ms()),
        })
    }

    /// The engine this daemon serves.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn touch(&self) {
        self.last_activity.store(now_ms(), Ordering::Relaxed);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads config.toml when it changed on disk (one stat per request).
    pub(crate) fn sync_config(&self) -> Result<(), EngineError> {
        let path = &self.engine.paths().config_file;
        let now = crate::vault::fs::identity(path)?;
        let mut known = lock(&self.config_identity);
        if *known != now {
            let config = crate::config::Config::load(path)?;
            self.engine.set_config(config);
            *known = now;
        }
        Ok(())
    }

    /// The hot path: the engine's token, counted.
    pub async fn token(&self, profile: &str, min_ttl: u64) -> Result<AccessToken, EngineError> {
        self.counters.token_requests.fetch_add(1, Ordering::Relaxed);
        self.engine.token(profile, min_ttl).await
    }

    /// The session's ID token (kube-credential), counted as a token request.
    pub async fn id_token(&self, profile: &str, min_ttl: u64) -> Result<IdToken, EngineError> {
        self.counters.token_requests.fetch_add(1, Ordering::Relaxed);
        self.engine.id_token(profile, min_ttl).await
    }

    /// The state of every configured profile.
    pub async fn profiles(&self) -> Vec<api::ProfileState> {
        crate::convert::profiles(&self.engine).await
    }

    /// Writes the client tokens' `last_used_at` (at most once a minute unless
    /// `now_anyway`, at a stop). A failure is logged: the uses stay in memory for
    /// the next attempt, and nothing depends on them.
    pub async fn write_client_token_uses(&self, now_anyway: bool) {
        let written = self
            .engine
            .blocking(move |e| e.client_tokens().write_last_used(now_anyway))
            .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot write when client tokens were last used")
            }
            Err(e) => tracing::warn!(error = %e, "cannot write when client tokens were last used"),
        }
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> api::DaemonStatus {
        let c = &self.counters;
        let refreshes = self.engine.refresh_stats();
        api::DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: latchkey_proto::PROTOCOL_VERSION,
            uptime_seconds: self.started.elapsed().as_secs(),
            socket: self.socket.display().to_string(),
            activation: self.activation,
            profiles: self.profiles().await,
            counters: api::Counters {
                requests: c.requests.load(Ordering::Relaxed),
                token_requests: c.token_requests.load(Ordering::Relaxed),
                refreshes_ok: refreshes.ok,
                refreshes_failed: refreshes.failed,
                kdf_derivations: self.engine.vault().kdf_derivations(),
                vault_reads: self.engine.vault().vault_reads(),
                event_subscribers: c.event_subscribers.load(Ordering::Relaxed),
                proxy_requests: c.proxy_requests.load(Ordering::Relaxed),
                proxy_retries: c.proxy_retries.load(Ordering::Relaxed),
                proxy_upstream_errors: c.proxy_upstream_errors.load(Ordering::Relaxed),
            },
            last_refresh: refreshes.last.map(|(at, outcome)| api::LastRefresh {
                at: rfc3339(at),
                outcome,
            }),
            rss_bytes: rss_bytes(),
            log_file: log_file(),
        }
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> api::Health {
        api::Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: latchkey_proto::PROTOCOL_VERSION,
            pid: std::process::id(),
            started_at: rfc3339(self.started_at),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Resident memory from /proc/self/statm (Linux; `None` elsewhere).
#[cfg(unix)]
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

#[cfg(not(unix))]
fn rss_bytes() -> Option<u64> {
    None
}

/// The file stderr is, when it is a regular file (Linux; `None` elsewhere): where
/// `latchkey daemon status` tells a person to look.
#[cfg(target_os = "linux")]
fn log_file() -> Option<String> {
    let fd = std::path::Path::new("/proc/self/fd/2");
    if !std::fs::metadata(fd).ok()?.is_file() {
        return None;
    }
    Some(std::fs::read_link(fd).ok()?.display().to_string())
}

#[cfg(not(target_os = "linux"))]
fn log_file() -> Option<String> {
    None
}
