//! The current session of a profile, from memory when the vault did not change.
//!
//! Architecture invariant: memory is a cache of the vault. Every read first compares
//! the vault's (device, inode, size, mtime) with what was loaded, and the loaded
//! file is kept open so that no other file can get its inode number (a logout and
//! a login by another process within one mtime tick would otherwise look like no
//! change); a change means a re-read (a decrypt with the cached key, never a new key derivation unless the
//! salt changed), so a login or logout by any process is seen on the next call.
//! The one exception is an unsaved change, which exists only here: a session that
//! is current until it is written or logged out, or a logout that holds until the
//! vault is deleted.

use std::sync::Arc;

use super::slot::{Change, Current, Slot};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::vault::Loaded;

/// What memory knows of a profile's current session.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once and matched at once, never stored; boxing would only add an allocation"
)]
pub(crate) enum Cached {
    /// The answer, without touching the vault (`None`: no session).
    Hit(Option<Current>),
    /// The vault changed (or was never read): it must be read, which may derive a key.
    Miss,
}

impl Engine {
    /// The session of `profile` to act on: the unsaved one, else the vault's (from
    /// memory when the file is unchanged). `Ok(None)` when there is none; a session
    /// made for another issuer or client counts as none. A read of the vault runs
    /// on the blocking pool.
    pub async fn current(self: &Arc<Self>, profile: &str) -> Result<Option<Current>, EngineError> {
        match self.cached(profile)? {
            Cached::Hit(current) => Ok(current),
            Cached::Miss => {
                let name = profile.to_string();
                self.blocking(move |e| e.current_blocking(&name)).await?
            }
        }
    }

    /// [`Engine::current`] on the calling thread, for callers without a runtime.
    pub fn current_blocking(&self, profile: &str) -> Result<Option<Current>, EngineError> {
        if let Cached::Hit(current) = self.cached(profile)? {
            return Ok(current);
        }
        let slot = self.sessions.slot(profile);
        let epoch = slot.view().epoch;
        let identity = self.vault().identity(profile)?;
        let loaded = match identity {
            None => None,
            Some(_) => match self.load(profile) {
                Ok(l) => l,
                Err(EngineError::NotLoggedIn { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        let current = loaded.as_ref().map(Current::from_loaded);
        self.remember_since(profile, &slot, loaded, Some(epoch));
        Ok(current)
    }

    /// The current session if memory can answer: the unsaved session, or the view
    /// when the vault's identity (one `lstat`) is unchanged.
    pub(crate) fn cached(&self, profile: &str) -> Result<Cached, EngineError> {
        self.profile(profile)?;
        let slot = self.sessions.slot(profile);
        if let Some(u) = slot.unsaved() {
            return Ok(Cached::Hit(u.session.map(|session| Current {
                session,
                generation: u.generation,
                unsaved: true,
            })));
        }
        let identity = self.vault().identity(profile)?;
        let v = slot.view();
        if v.seen && v.identity == identity {
            return Ok(Cached::Hit(v.loaded.as_ref().map(Current::from_loaded)));
        }
        Ok(Cached::Miss)
    }

    /// Session changes made or seen by this engine, as they happen.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<super::slot::SessionChange> {
        self.sessions.subscribe()
    }

    /// Refreshes run by this engine (the daemon's operator status).
    pub fn refresh_stats(&self) -> super::slot::RefreshStats {
        self.sessions.stats()
    }

    /// Records a read of the vault made under the profile's flight and file lock
    /// as the slot's view, and tells subscribers what changed against the previous
    /// view.
    pub(crate) fn remember(&self, profile: &str, slot: &Arc<Slot>, loaded: Option<Loaded>) {
        self.remember_since(profile, slot, loaded, None);
    }

    /// [`Engine::remember`] for a read that began at view `epoch` outside the
    /// flight: dropped when the view changed meanwhile (a write settled, another
    /// read was stored), since it may be older than what is there.
    fn remember_since(
        &self,
        profile: &str,
        slot: &Arc<Slot>,
        loaded: Option<Loaded>,
        epoch: Option<u64>,
    ) {
        let change = {
            let mut v = slot.view();
            if epoch.is_some_and(|e| e != v.epoch) {
                return;
            }
            v.epoch = v.epoch.wrapping_add(1);
            let change = if v.seen {
                change_between(v.loaded.as_ref(), loaded.as_ref())
            } else {
                None
            };
            v.seen = true;
            v.identity = loaded.as_ref().map(|l| l.identity);
            v.loaded = loaded;
            change.map(|c| (c, v.loaded.as_ref().map(|l| l.generation)))
        };
        if let Some((change, generation)) = change {
            self.sessions.publish(profile, change, generation);
        }
    }

    /// Records what an operation of this engine just wrote (or deleted) as the
    /// slot's view, and announces `change` if given.
    pub(crate) fn settle(
        &self,
        profile: &str,
        slot: &Arc<Slot>,
        loaded: Option<Loaded>,
        change: Option<Change>,
    ) {
        let generation = loaded.as_ref().map(|l| l.generation);
        {
            let mut v = slot.view();
            v.seen = true;
            v.identity = loaded.as_ref().map(|l| l.identity);
            v.loaded = loaded;
            v.epoch = v.epoch.wrapping_add(1);
        }
        if let Some(change) = change {
            self.sessions.publish(profile, change, generation);
        }
    }
}

/// What changed between two views of a vault.
fn change_between(before: Option<&Loaded>, after: Option<&Loaded>) -> Option<Change> {
    match (before, after) {
        (None, Some(a)) if !a.session.expired => Some(Change::Login),
        (Some(_), None) => Some(Change::Logout),
        (Some(b), Some(a)) if a.session.expired && !b.session.expired => Some(Change::Expired),
        (Some(b), Some(a)) if a.session.logged_in_at != b.session.logged_in_at => {
            Some(Change::Login)
        }
        (Some(b), Some(a)) if a.generation != b.generation && !a.session.expired => {
            Some(Change::Refresh)
        }
        _ => None,
    }
}
