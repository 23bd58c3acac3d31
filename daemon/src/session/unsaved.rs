//! Unsaved sessions: rotated at the provider, refused by the disk.
//!
//! Once the provider has answered a refresh, the refresh token in the vault is
//! spent and the new session exists only in this process. Until it is written:
//! - it is the current session for every operation (token, refresh, logout,
//!   status): [`Engine::current`] answers it;
//! - this process keeps the profile's file lock, marked `unsaved` in the lock file,
//!   so no other process sends the spent refresh token (they fail at once with
//!   `HeldUnsaved`, or serve an access token that has not expired);
//! - every refresh writes it before anything else, the daemon retries the write on
//!   its maintenance tick, and a graceful stop tries one last write;
//! - a logout revokes its tokens and forgets it, so it never comes back;
//! - a login replaces it.
//!
//! Reserving space before the refresh (step 5 of the transaction) makes this state
//! rare: it takes a write that fails after the reservation succeeded (a session
//! larger than the space claimed, a folder turned read-only meanwhile).

use std::sync::Arc;
use std::time::Duration;

use latchkey_proto::vault::SessionRecord;

use super::slot::{Change, Current, Exclusive, Slot, Unsaved};
use crate::engine::{AccessToken, Engine, Served};
use crate::error::{EngineError, StorageError};

impl Engine {
    /// Enters the unsaved state with `session` after its write failed with `error`,
    /// and answers its token: the session works, it is only not durable yet.
    pub(crate) fn keep_unsaved(
        &self,
        profile: &str,
        ex: &mut Exclusive,
        session: SessionRecord,
        generation: u64,
        error: StorageError,
    ) -> Result<AccessToken, EngineError> {
        let current = Current {
            session: session.clone(),
            generation,
            unsaved: true,
        };
        self.hold_unsaved(
            profile,
            ex,
            Some(session),
            generation,
            Change::Refresh,
            &error,
        )?;
        Ok(current.token(Served::Refreshed))
    }

    /// Makes `session` the unsaved change of `profile` after the disk refused it
    /// with `error` (`None`: a logout whose deletion failed): it is logged, kept as
    /// the current state of this process, the file lock stays held and marked until
    /// it is written, and subscribers hear of `change`.
    pub(crate) fn hold_unsaved(
        &self,
        profile: &str,
        ex: &mut Exclusive,
        session: Option<SessionRecord>,
        generation: u64,
        change: Change,
        error: &StorageError,
    ) -> Result<(), EngineError> {
        let what = match change {
            Change::Logout => {
                "the logged-out session's vault could not be deleted; the profile stays logged out here"
            }
            Change::Expired => "the expired session could not be saved; it is kept in memory",
            Change::Refresh | Change::Login => {
                "the refreshed session could not be saved; it is kept in memory"
            }
        };
        tracing::error!(profile, %error, "{what}, and the profile locked, until it is");
        self.sessions.slot(profile).view().unsaved = Some(Unsaved {
            session,
            generation,
        });
        if let Err(e) = ex.lock_mut()?.mark_unsaved(true) {
            // Other processes then wait out the lock timeout instead of failing at
            // once; they still cannot take the lock.
            tracing::warn!(profile, error = %e, "cannot mark the profile lock as held for an unsaved change");
        }
        self.sessions.publish(profile, change, None);
        Ok(())
    }

    /// Writes the unsaved session of `profile`, if there is one, under the flight
    /// and file lock held by `ex`. `Err` (local_storage) when the disk still refuses.
    pub(crate) fn save_unsaved_locked(
        &self,
        profile: &str,
        slot: &Arc<Slot>,
        ex: &mut Exclusive,
    ) -> Result<(), EngineError> {
        let Some(unsaved) = slot.unsaved() else {
            return Ok(());
        };
        let unsaved_error = |source| EngineError::Unsaved {
            profile: profile.to_string(),
            source,
        };
        let loaded = match unsaved.session {
            Some(session) => {
                let stored = self
                    .vault()
                    .store(ex.lock()?, &session)
                    .map_err(unsaved_error)?;
                tracing::info!(
                    profile,
                    generation = stored.generation,
                    "the refreshed session is saved now"
                );
                Some(stored.loaded(session))
            }
            None => {
                self.vault().delete(ex.lock()?).map_err(unsaved_error)?;
                tracing::info!(profile, "the logged-out session's vault is deleted now");
                None
            }
        };
        slot.view().unsaved = None;
        if let Err(e) = ex.lock_mut()?.mark_unsaved(false) {
            // Harmless: the lock is released when `ex` drops, which clears it.
            tracing::debug!(profile, error = %e, "cannot clear the unsaved mark");
        }
        self.settle(profile, slot, loaded, None);
        Ok(())
    }

    /// Tries to write the unsaved session of `profile`; `Ok` when none is left.
    pub async fn save_unsaved(self: &Arc<Self>, profile: &str) -> Result<(), EngineError> {
        let slot = self.sessions.slot(profile);
        if slot.unsaved().is_none() {
            return Ok(());
        }
        let ex = slot.exclusive().await;
        let name = profile.to_string();
        let (_ex, saved) = self
            .blocking_exclusive(ex, move |e, ex| e.save_unsaved_locked(&name, &slot, ex))
            .await?;
        saved
    }

    /// Profiles whose session is unsaved.
    pub fn unsaved_profiles(&self) -> Vec<String> {
        self.sessions
            .all()
            .into_iter()
            .filter(|(_, slot)| slot.unsaved().is_some())
            .map(|(name, _)| name)
            .collect()
    }

    /// The first moment of a graceful stop: no refresh or logout sends anything to
    /// the provider from now on (requests still being answered get a still-valid
    /// token or a retryable error). [`Engine::shutdown`] does the rest.
    pub fn begin_stop(&self) {
        self.sessions.begin_stop();
    }

    /// A graceful stop: lets no refresh or logout send anything from now on, waits
    /// for every one that already did until its result is on disk (however long
    /// the provider's timeouts allow), waits up to `wait` for the others (which
    /// sent nothing, so dropping them loses nothing), then makes one last attempt
    /// to write every unsaved change. Says in the log whether each one survived;
    /// the `Err`s are the sessions that are lost.
    pub async fn shutdown(self: &Arc<Self>, wait: Duration) -> Vec<(String, EngineError)> {
        self.sessions.tasks.close();
        self.sessions.stop_irreversible().await;
        if tokio::time::timeout(wait, self.sessions.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "a refresh or logout that had sent nothing was still waiting after {} s; stopping without it",
                wait.as_secs()
            );
        }
        match self.blocking(Engine::save_all_unsaved).await {
            Ok(lost) => lost,
            Err(e) => self
                .unsaved_profiles()
                .into_iter()
                .map(|p| (p, EngineError::Internal(e.to_string())))
                .collect(),
        }
    }

    /// The last write of a process about to exit, without waiting: one attempt per
    /// unsaved session whose profile is not busy. The `Err`s are the sessions that
    /// are lost (the provider spent the refresh token on disk).
    pub fn save_all_unsaved(&self) -> Vec<(String, EngineError)> {
        let mut lost = Vec::new();
        for (profile, slot) in self.sessions.all() {
            let Some(unsaved) = slot.unsaved() else {
                continue;
            };
            let logout = unsaved.session.is_none();
            let result = match slot.try_exclusive() {
                Some(mut ex) => self.save_unsaved_locked(&profile, &slot, &mut ex),
                None => Err(EngineError::Internal(
                    "an operation was still running at the stop".into(),
                )),
            };
            match result {
                Ok(()) => tracing::info!(profile, "the unsaved session was saved at the stop"),
                Err(e) if logout => {
                    tracing::error!(profile, error = %e, "the logged-out session's vault could not be deleted at the stop; delete it by hand or run latchkey logout again");
                    lost.push((profile, e));
                }
                Err(e) => {
                    tracing::error!(profile, error = %e, "the unsaved session could not be saved at the stop and is lost; log in again");
                    lost.push((profile, e));
                }
            }
        }
        lost
    }
}
