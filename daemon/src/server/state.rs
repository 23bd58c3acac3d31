//! The daemon's shared state: the engine, the in-memory session cache checked
//! against the vault file's identity on every request, counters, the event bus and
//! the pending logins.
//!
//! Architecture invariant: memory is a cache of the vault. Every answer first
//! compares the vault's (device, inode, size, mtime) with what was loaded; a change
//! means a re-read (a decrypt with the cached key, never a new key derivation unless
//! the salt changed). A login or logout by any process is seen on the next request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use latchkey_proto::api;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::convert::rfc3339;
use crate::engine::{AccessToken, Engine};
use crate::error::EngineError;
use crate::policy;
use crate::session::refresh::Want;
use crate::vault::{FileIdentity, Loaded, unix_now};

use super::login::PendingLogin;

/// Locks a std mutex, recovering from poisoning: every section in this module
/// leaves its map consistent (single inserts and removals).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the cache holds for one profile.
#[derive(Debug, Default)]
struct Slot {
    identity: Option<FileIdentity>,
    loaded: Option<Loaded>,
}

/// Operator counters (SPEC §4 `daemon status`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub token_requests: AtomicU64,
    pub refreshes_ok: AtomicU64,
    pub refreshes_failed: AtomicU64,
    pub event_subscribers: AtomicU64,
}

/// How a token request was answered, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    FromMemory,
    Refreshed,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    pub(crate) engine: Engine,
    config_identity: Mutex<Option<FileIdentity>>,
    /// std Mutex: looked up and updated in short sections, never across an await.
    slots: Mutex<HashMap<String, Slot>>,
    pub(crate) counters: Counters,
    last_refresh: Mutex<Option<api::LastRefresh>>,
    pub(crate) events: broadcast::Sender<api::SessionEvent>,
    pub(crate) logins: Mutex<HashMap<String, Arc<PendingLogin>>>,
    /// Sessions the provider rotated but the vault write refused (disk full, a
    /// read-only folder). Served from here and written as soon as the disk allows:
    /// the old refresh token in the file is already spent.
    unsaved: Mutex<HashMap<String, latchkey_proto::vault::SessionRecord>>,
    pub(crate) started: Instant,
    pub(crate) started_at: i64,
    pub(crate) socket: PathBuf,
    pub(crate) activation: api::Activation,
    /// The one shutdown source: signals, `POST /v1/shutdown` and idle exit cancel it.
    pub shutdown: CancellationToken,
    /// Refreshes in flight, each in a task of its own: a graceful stop waits for
    /// them, so SIGTERM or an idle exit never ends one between the provider's
    /// answer and the write.
    pub(crate) refreshes: tokio_util::task::TaskTracker,
    /// Unix milliseconds of the last request, for `--idle-exit`.
    pub(crate) last_activity: AtomicU64,
}

impl Daemon {
    pub fn new(engine: Engine, socket: PathBuf, activation: api::Activation) -> Arc<Daemon> {
        let (events, _) = broadcast::channel(256);
        let identity = crate::vault::fs::identity(&engine.paths().config_file)
            .ok()
            .flatten();
        Arc::new(Daemon {
            engine,
            config_identity: Mutex::new(identity),
            slots: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            last_refresh: Mutex::new(None),
            events,
            logins: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
            started: Instant::now(),
            started_at: unix_now(),
            socket,
            activation,
            shutdown: CancellationToken::new(),
            refreshes: tokio_util::task::TaskTracker::new(),
            last_activity: AtomicU64::new(now_ms()),
        })
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
            lock(&self.slots).clear();
        }
        Ok(())
    }

    /// The session of `profile` as the vault holds it now: from memory when the
    /// file is unchanged, else re-read. `Ok(None)` when there is none.
    pub(crate) fn current(&self, profile: &str) -> Result<Option<Loaded>, EngineError> {
        self.engine.profile(profile)?;
        let identity = self.engine.vault().identity(profile)?;
        if let Some(slot) = lock(&self.slots).get(profile)
            && slot.identity == identity
            && identity.is_some()
        {
            return Ok(slot.loaded.clone());
        }
        let loaded = match identity {
            None => None,
            Some(_) => match self.engine.load(profile) {
                Ok(l) => l,
                // A session for another issuer or client counts as absent.
                Err(EngineError::NotLoggedIn { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        let identity = loaded.as_ref().map(|l| l.identity).or(identity);
        let previous = lock(&self.slots).insert(
            profile.to_string(),
            Slot {
                identity,
                loaded: loaded.clone(),
            },
        );
        // Only a change against an earlier view is news: the first read after start
        // or after a config reload has nothing to compare with.
        if let Some(previous) = previous {
            self.announce_change(profile, previous.loaded.as_ref(), loaded.as_ref());
        }
        Ok(loaded)
    }

    /// Publishes what changed between two views of a vault, so subscribers learn
    /// about logins, refreshes and logouts done by any process.
    fn announce_change(&self, profile: &str, before: Option<&Loaded>, after: Option<&Loaded>) {
        use api::SessionChange as C;
        let change = match (before, after) {
            (None, Some(a)) if !a.session.expired => C::Login,
            (Some(_), None) => C::Logout,
            (Some(b), Some(a)) if a.session.expired && !b.session.expired => C::Expired,
            (Some(b), Some(a)) if a.session.logged_in_at != b.session.logged_in_at => C::Login,
            (Some(b), Some(a)) if a.generation != b.generation && !a.session.expired => C::Refresh,
            _ => return,
        };
        self.publish(profile, change, after.map(|a| a.generation));
    }

    pub(crate) fn publish(
        &self,
        profile: &str,
        change: api::SessionChange,
        generation: Option<u64>,
    ) {
        let event = api::SessionEvent {
            profile: profile.to_string(),
            change,
            generation,
        };
        if self.events.send(event).is_err() {
            tracing::trace!("no event subscriber");
        }
    }

    /// Whether the cache holds a view of `profile` (even "no session").
    pub(crate) fn has_view(&self, profile: &str) -> bool {
        lock(&self.slots).contains_key(profile)
    }

    /// Forgets the cached view of `profile`, so the next request re-reads it.
    pub(crate) fn invalidate(&self, profile: &str) {
        lock(&self.slots).remove(profile);
    }

    /// The hot path: a token that is fresh enough, from memory when possible.
    pub async fn token(
        self: &Arc<Self>,
        profile: &str,
        min_ttl: u64,
    ) -> Result<(AccessToken, Served), EngineError> {
        self.counters.token_requests.fetch_add(1, Ordering::Relaxed);
        let held = lock(&self.unsaved).get(profile).cloned();
        if let Some(s) = held {
            if policy::is_fresh_enough(unix_now(), s.issued_at, s.expires_at, min_ttl) {
                return Ok((unsaved_token(&s), Served::FromMemory));
            }
            // Stale and unsaved: the vault's refresh token is spent, so the write
            // must succeed before any further refresh.
            self.save_unsaved(profile).await?;
        }
        let loaded = self
            .current(profile)?
            .ok_or_else(|| EngineError::NotLoggedIn {
                profile: profile.to_string(),
            })?;
        if loaded.session.expired {
            return Err(crate::session::expired(profile, &loaded.session));
        }
        let s = &loaded.session;
        if policy::is_fresh_enough(unix_now(), s.issued_at, s.expires_at, min_ttl) {
            return Ok((AccessToken::from_loaded(&loaded), Served::FromMemory));
        }
        self.refresh(profile, Want::Fresh { min_ttl })
            .await
            .map(|t| (t, Served::Refreshed))
    }

    /// Runs the engine's refresh transaction and keeps the books.
    ///
    /// The transaction runs in a task of its own, so that nothing the requester does
    /// can cancel it half way: a client that gives up (the 500 ms fallback), a
    /// dropped connection or a route deadline drops only its wait. A refresh
    /// cancelled after the provider answered and before the write would leave a
    /// spent refresh token in the vault, and the provider's reuse detection would
    /// end the session on the next refresh.
    pub async fn refresh(
        self: &Arc<Self>,
        profile: &str,
        want: Want,
    ) -> Result<AccessToken, EngineError> {
        let this = Arc::clone(self);
        let name = profile.to_string();
        let task = self
            .refreshes
            .spawn(async move { this.refresh_to_the_end(&name, want).await });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(EngineError::Internal(format!(
                "the refresh task failed: {e}"
            ))),
        }
    }

    async fn refresh_to_the_end(
        &self,
        profile: &str,
        want: Want,
    ) -> Result<AccessToken, EngineError> {
        let result = match self.engine.refresh_as(profile, want).await {
            Err(EngineError::Unsaved {
                profile: p,
                session,
                source,
            }) => {
                tracing::error!(profile = %p, error = %source, "the refreshed session could not be saved; serving it from memory and retrying the write");
                let token = unsaved_token(&session);
                lock(&self.unsaved).insert(p, *session);
                Ok(token)
            }
            other => other,
        };
        let outcome = match &result {
            Ok(_) => {
                self.counters.refreshes_ok.fetch_add(1, Ordering::Relaxed);
                "ok".to_string()
            }
            Err(e) => {
                self.counters
                    .refreshes_failed
                    .fetch_add(1, Ordering::Relaxed);
                e.category().as_str().to_string()
            }
        };
        *lock(&self.last_refresh) = Some(api::LastRefresh {
            at: rfc3339(unix_now()),
            outcome,
        });
        // Re-read now: the write changed the file, and `current` tells subscribers.
        if let Err(e) = self.current(profile) {
            tracing::warn!(profile, error = %e, "cannot re-read the vault after a refresh");
        }
        result
    }

    /// Tries to write the unsaved session of `profile`; `Ok` when there is none
    /// left (written, or superseded by a newer login in the file).
    pub async fn save_unsaved(&self, profile: &str) -> Result<(), EngineError> {
        let Some(session) = lock(&self.unsaved).get(profile).cloned() else {
            return Ok(());
        };
        let file_lock = self.engine.lock(profile).await?;
        if let Ok(Some(on_disk)) = self.engine.vault().load(profile)
            && on_disk.session.logged_in_at != session.logged_in_at
        {
            tracing::info!(profile, "a newer login replaced the unsaved session");
            lock(&self.unsaved).remove(profile);
            return Ok(());
        }
        match self.engine.vault().store(&file_lock, &session) {
            Ok(stored) => {
                lock(&self.unsaved).remove(profile);
                tracing::info!(
                    profile,
                    generation = stored.generation,
                    "the refreshed session is saved now"
                );
                drop(file_lock);
                if let Err(e) = self.current(profile) {
                    tracing::warn!(profile, error = %e, "cannot re-read the vault after saving");
                }
                Ok(())
            }
            Err(source) => Err(EngineError::Unsaved {
                profile: profile.to_string(),
                session: Box::new(session),
                source,
            }),
        }
    }

    /// Profiles with a session waiting to be written.
    pub(crate) fn unsaved_profiles(&self) -> Vec<String> {
        lock(&self.unsaved).keys().cloned().collect()
    }

    /// The state of every configured profile.
    pub fn profiles(&self) -> Vec<api::ProfileState> {
        let config = self.engine.config();
        config
            .profile_names()
            .into_iter()
            .map(|name| {
                let loaded = self.current(&name).ok().flatten();
                let unsaved = lock(&self.unsaved).get(&name).cloned();
                let expires_at = match &unsaved {
                    Some(s) => s.expires_at,
                    None => loaded.as_ref().and_then(|l| l.session.expires_at),
                };
                api::ProfileState {
                    unsaved: unsaved.is_some(),
                    logged_in: unsaved.is_some()
                        || loaded.as_ref().is_some_and(|l| !l.session.expired),
                    generation: loaded.as_ref().map(|l| l.generation),
                    expires_at: expires_at.map(rfc3339),
                    name,
                }
            })
            .collect()
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> api::DaemonStatus {
        let c = &self.counters;
        api::DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: latchkey_proto::PROTOCOL_VERSION,
            uptime_seconds: self.started.elapsed().as_secs(),
            socket: self.socket.display().to_string(),
            activation: self.activation,
            profiles: self.profiles(),
            counters: api::Counters {
                requests: c.requests.load(Ordering::Relaxed),
                token_requests: c.token_requests.load(Ordering::Relaxed),
                refreshes_ok: c.refreshes_ok.load(Ordering::Relaxed),
                refreshes_failed: c.refreshes_failed.load(Ordering::Relaxed),
                kdf_derivations: self.engine.vault().kdf_derivations(),
                vault_reads: self.engine.vault().vault_reads(),
                event_subscribers: c.event_subscribers.load(Ordering::Relaxed),
            },
            last_refresh: lock(&self.last_refresh).clone(),
            rss_bytes: rss_bytes(),
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

/// A token answered from an unsaved session (generation 0: the file's has not
/// moved, and this session is in no file yet).
fn unsaved_token(s: &latchkey_proto::vault::SessionRecord) -> AccessToken {
    AccessToken {
        access_token: s.access_token.clone(),
        token_type: s.token_type.clone(),
        expires_at: s.expires_at,
        generation: 0,
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
