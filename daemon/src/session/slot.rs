//! The session service's state: one [`Slot`] per profile, the refresh tasks, the
//! change feed and the refresh statistics.
//!
//! A slot holds three things:
//! - the in-process single flight, an async mutex that every read-modify-write of
//!   the profile's session (refresh, save, login save, logout) takes first; while
//!   the session is unsaved it also keeps the profile's *file* lock between
//!   operations, so no other process can take it and send the spent refresh token;
//! - the view: the vault as last read and the file identity it was read at, so a
//!   caller pays one `lstat` when nothing changed;
//! - the unsaved change, when the disk refused what the provider or the person
//!   already did: a session the provider rotated (it is the current session for
//!   every operation until written), or a logout whose deletion failed (the
//!   profile is logged out for every operation until the vault is gone).
//!
//! Lock order: the flight, then the file lock, then (briefly, never across an
//! await) the view's std mutex.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use latchkey_proto::vault::SessionRecord;
use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;

use crate::engine::{AccessToken, Served};
use crate::error::EngineError;
use crate::vault::{FileIdentity, Loaded, ProfileLock};

/// Locks a std mutex, recovering from poisoning: every section under these locks
/// leaves its data consistent (single assignments).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The session the engine acts on for a profile: the unsaved one when there is one,
/// else the vault's.
#[derive(Debug, Clone)]
pub struct Current {
    pub session: SessionRecord,
    /// The vault generation this session has, or will have once saved.
    pub generation: u64,
    /// Rotated at the provider but not on disk yet.
    pub unsaved: bool,
}

impl Current {
    /// The access token of this session.
    pub fn token(&self, served: Served) -> AccessToken {
        AccessToken {
            access_token: self.session.access_token.clone(),
            token_type: self.session.token_type.clone(),
            expires_at: self.session.expires_at,
            generation: self.generation,
            served,
        }
    }

    pub(crate) fn from_loaded(l: &Loaded) -> Current {
        Current {
            session: l.session.clone(),
            generation: l.generation,
            unsaved: false,
        }
    }
}

/// What happened to a session, for subscribers (the daemon's event stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Login,
    Refresh,
    Logout,
    Expired,
}

/// One change of one profile's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    pub profile: String,
    pub change: Change,
    pub generation: Option<u64>,
}

/// Refreshes run by this engine, for the operator status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshStats {
    pub ok: u64,
    pub failed: u64,
    /// Unix seconds and outcome (`ok` or the error's category) of the last one.
    pub last: Option<(i64, String)>,
}

/// A change the disk refused after it happened elsewhere: a session rotated at
/// the provider, or a logout.
#[derive(Debug, Clone)]
pub(crate) struct Unsaved {
    /// The session to write; `None` for a logout: the vault still on disk must be
    /// deleted, and until it is, nothing is served from it (its refresh token may
    /// be spent, its tokens revoked).
    pub session: Option<SessionRecord>,
    /// The generation the session gets when written (the file's, plus one).
    pub generation: u64,
}

/// The vault as last read.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// Whether the vault was read at all since start (or since the config changed):
    /// only a change against an earlier view is news for subscribers.
    pub seen: bool,
    pub identity: Option<FileIdentity>,
    pub loaded: Option<Loaded>,
    pub unsaved: Option<Unsaved>,
    /// +1 on every change of the view. A read that ran outside the flight (on the
    /// blocking pool, beside a write) stores its result only if nothing changed
    /// the view since it began, so an older read never replaces a newer write.
    pub epoch: u64,
}

/// One profile's state. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Single flight; holds the file lock between operations while unsaved.
    flight: Arc<tokio::sync::Mutex<Option<ProfileLock>>>,
    /// std Mutex: short sections that never await.
    view: Mutex<View>,
    /// How many logouts this process ran on the profile: a pending login ends
    /// when it changes.
    logouts: Logouts,
    /// The last refresh attempt that failed at the provider (unreachable, 5xx...),
    /// for the callers that waited for it to join instead of asking again.
    failure: Mutex<Option<Failure>>,
}

/// A refresh attempt that failed at the provider.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The vault generation of the session it tried to refresh.
    pub generation: u64,
    pub at: std::time::Instant,
    pub error: crate::oauth::OAuthError,
}

#[derive(Debug)]
struct Logouts(tokio::sync::watch::Sender<u64>);

impl Default for Logouts {
    fn default() -> Self {
        Logouts(tokio::sync::watch::channel(0).0)
    }
}

impl Slot {
    pub fn view(&self) -> MutexGuard<'_, View> {
        lock(&self.view)
    }

    /// The unsaved session, if any.
    pub fn unsaved(&self) -> Option<Unsaved> {
        self.view().unsaved.clone()
    }

    /// The last failed attempt, if it was at `generation` and came after `since`:
    /// a caller that waited from `since` for the flight joins that outcome.
    pub fn failed_since(&self, generation: u64, since: std::time::Instant) -> Option<Failure> {
        lock(&self.failure)
            .as_ref()
            .filter(|f| f.generation == generation && f.at >= since)
            .cloned()
    }

    /// Records the outcome of an attempt at the provider (`None`: it succeeded).
    pub fn attempted(&self, failure: Option<Failure>) {
        *lock(&self.failure) = failure;
    }

    /// The count of logouts so far.
    pub fn logout_count(&self) -> u64 {
        *self.logouts.0.borrow()
    }

    /// The count of logouts, to watch.
    pub fn logouts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.logouts.0.subscribe()
    }

    /// Counts a logout (under the flight): pending logins of the profile end.
    pub fn logged_out(&self) {
        self.logouts.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits for the single flight. The returned guard may already hold the file
    /// lock (an unsaved session keeps it); [`Exclusive::ensure_lock`] takes it
    /// otherwise.
    pub async fn exclusive(self: &Arc<Self>) -> Exclusive {
        Exclusive {
            guard: self.flight.clone().lock_owned().await,
            slot: self.clone(),
        }
    }

    /// The flight without waiting: `None` when an operation is running.
    pub fn try_exclusive(self: &Arc<Self>) -> Option<Exclusive> {
        let guard = self.flight.clone().try_lock_owned().ok()?;
        Some(Exclusive {
            guard,
            slot: self.clone(),
        })
    }
}

/// The single flight of one profile, and with it (once [`Exclusive::ensure_lock`]
/// ran) the profile's file lock. Dropping it releases the file lock unless the
/// session is unsaved: then the lock stays held, so that no other process can send
/// the refresh token the unsaved session replaced.
#[derive(Debug)]
pub(crate) struct Exclusive {
    guard: tokio::sync::OwnedMutexGuard<Option<ProfileLock>>,
    slot: Arc<Slot>,
}

impl Exclusive {
    /// Whether the file lock is held (from an earlier unsaved session, or taken).
    pub fn has_lock(&self) -> bool {
        self.guard.is_some()
    }

    /// Keeps `lock` as the file lock of this operation.
    pub fn set_lock(&mut self, lock: ProfileLock) {
        *self.guard = Some(lock);
    }

    /// The file lock; an error if [`Exclusive::set_lock`] never ran (a bug).
    pub fn lock(&self) -> Result<&ProfileLock, EngineError> {
        self.guard
            .as_ref()
            .ok_or_else(|| EngineError::Internal("the profile lock is not held".into()))
    }

    /// The file lock, mutably (to mark it unsaved).
    pub fn lock_mut(&mut self) -> Result<&mut ProfileLock, EngineError> {
        self.guard
            .as_mut()
            .ok_or_else(|| EngineError::Internal("the profile lock is not held".into()))
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if self.slot.view().unsaved.is_none() {
            *self.guard = None;
        }
    }
}

/// Provider work that cannot be taken back once sent (a refresh token spent, a
/// revocation): how many are running, and whether a graceful stop has begun.
#[derive(Debug, Default, Clone, Copy)]
struct Irreversible {
    stopping: bool,
    running: usize,
}

/// One piece of irreversible work, from before it is sent until its result is on
/// disk (or kept unsaved). A graceful stop waits for every one of these and lets
/// no new one begin.
#[derive(Debug)]
pub(crate) struct Committing(Arc<tokio::sync::watch::Sender<Irreversible>>);

impl Drop for Committing {
    fn drop(&mut self) {
        self.0
            .send_modify(|i| i.running = i.running.saturating_sub(1));
    }
}

/// Every profile's slot, the refresh tasks, the change feed and the statistics.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// std Mutex: lookups only.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Refreshes in flight, each in a task of its own: a caller that gives up stops
    /// waiting but cannot cancel a refresh between the provider's answer and the
    /// write; a graceful stop waits for them.
    pub tasks: TaskTracker,
    changes: broadcast::Sender<SessionChange>,
    stats: Mutex<RefreshStats>,
    irreversible: Arc<tokio::sync::watch::Sender<Irreversible>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            slots: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            changes: broadcast::channel(256).0,
            stats: Mutex::new(RefreshStats::default()),
            irreversible: Arc::new(tokio::sync::watch::channel(Irreversible::default()).0),
        }
    }
}

impl Sessions {
    pub fn slot(&self, profile: &str) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        // A lookup first: the hot path should not allocate the key.
        if let Some(slot) = slots.get(profile) {
            return slot.clone();
        }
        slots.entry(profile.to_string()).or_default().clone()
    }

    /// Every slot that exists, by profile.
    pub fn all(&self) -> Vec<(String, Arc<Slot>)> {
        lock(&self.slots)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Drops every cached view, keeping unsaved sessions.
    pub fn forget_views(&self) {
        for (_, slot) in self.all() {
            let mut v = slot.view();
            v.seen = false;
            v.identity = None;
            v.loaded = None;
            v.epoch = v.epoch.wrapping_add(1);
        }
    }

    pub fn publish(&self, profile: &str, change: Change, generation: Option<u64>) {
        let event = SessionChange {
            profile: profile.to_string(),
            change,
            generation,
        };
        if self.changes.send(event).is_err() {
            tracing::trace!("no subscriber for session changes");
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SessionChange> {
        self.changes.subscribe()
    }

    pub fn record(&self, outcome: &Result<AccessToken, EngineError>) {
        let mut s = lock(&self.stats);
        let name = match outcome {
            Ok(_) => {
                s.ok += 1;
                "ok".to_string()
            }
            Err(e) => {
                s.failed += 1;
                e.category().as_str().to_string()
            }
        };
        s.last = Some((crate::vault::unix_now(), name));
    }

    pub fn stats(&self) -> RefreshStats {
        lock(&self.stats).clone()
    }

    /// Begins a piece of irreversible work; `None` once a graceful stop began (the
    /// caller must then send nothing). The check and the count are one step under
    /// the channel's lock, so a stop never misses work that is about to send.
    pub fn begin_irreversible(&self) -> Option<Committing> {
        let mut begun = false;
        self.irreversible.send_modify(|i| {
            if !i.stopping {
                i.running += 1;
                begun = true;
            }
        });
        begun.then(|| Committing(self.irreversible.clone()))
    }

    /// Lets no new irreversible work begin, from now on.
    pub fn begin_stop(&self) {
        self.irreversible.send_modify(|i| i.stopping = true);
    }

    /// Lets no new irreversible work begin, and waits for what is running to end.
    /// Unbounded here: each piece is bounded by the HTTP client's timeouts and the
    /// disk's writes.
    pub async fn stop_irreversible(&self) {
        self.begin_stop();
        let mut rx = self.irreversible.subscribe();
        if rx.borrow().running > 0 {
            tracing::info!("waiting for work sent to the provider to be saved");
        }
        if rx.wait_for(|i| i.running == 0).await.is_err() {
            // The sender lives in `self`: it cannot be gone while we borrow it.
            tracing::debug!("the irreversible-work channel closed");
        }
    }
}
