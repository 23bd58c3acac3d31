//! The current session of a profile, from memory when the vault did not change.
//!
//! Architecture invariant: memory is a cache of the vault. Every read first compares
//! the vault's (device, inode, size, mtime) with what was loaded; a change means a
//! re-read (a decrypt with the cached key, never a new key derivation unless the
//! salt changed), so a login or logout by any process is seen on the next call.
//! The one exception is an unsaved session, which exists only here and is current
//! until it is written or logged out.

use std::sync::Arc;

use super::slot::{Change, Current, Slot};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::vault::Loaded;

impl Engine {
    /// The session of `profile` to act on: the unsaved one, else the vault's (from
    /// memory when the file is unchanged). `Ok(None)` when there is none; a session
    /// made for another issuer or client counts as none.
    pub fn current(&self, profile: &str) -> Result<Option<Current>, EngineError> {
        self.profile(profile)?;
        let slot = self.sessions.slot(profile);
        if let Some(u) = slot.unsaved() {
            return Ok(Some(Current {
                session: u.session,
                generation: u.generation,
                unsaved: true,
            }));
        }
        let identity = self.vault().identity(profile)?;
        {
            let v = slot.view();
            if v.seen && v.identity == identity {
                return Ok(v.loaded.as_ref().map(Current::from_loaded));
            }
        }
        let loaded = match identity {
            None => None,
            Some(_) => match self.load(profile) {
                Ok(l) => l,
                Err(EngineError::NotLoggedIn { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        let current = loaded.as_ref().map(Current::from_loaded);
        self.remember(profile, &slot, loaded);
        Ok(current)
    }

    /// Session changes made or seen by this engine, as they happen.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<super::slot::SessionChange> {
        self.sessions.subscribe()
    }

    /// Refreshes run by this engine (the daemon's operator status).
    pub fn refresh_stats(&self) -> super::slot::RefreshStats {
        self.sessions.stats()
    }

    /// Records a fresh read (or write) of the vault as the slot's view, and tells
    /// subscribers what changed against the previous view.
    pub(crate) fn remember(&self, profile: &str, slot: &Arc<Slot>, loaded: Option<Loaded>) {
        let change = {
            let mut v = slot.view();
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
