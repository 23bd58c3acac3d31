//! Logout: revoke at the provider (RFC 7009: the refresh token, then the access
//! token) unless asked not to, then delete the local session whatever the provider
//! said. The outcome says which of the three things happened.

use std::sync::Arc;

use super::slot::{Change, Exclusive};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::oauth::{OAuthError, revoke};

/// What a logout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// The provider revoked the tokens and the local session is gone.
    Revoked,
    /// The local session is gone; the provider was not (successfully) asked.
    LocalOnly { reason: String },
    /// There was no session.
    NotLoggedIn,
}

impl LogoutOutcome {
    /// The wire name (`outcome` in the API and in `logout --json`).
    pub fn name(&self) -> &'static str {
        match self {
            LogoutOutcome::Revoked => "revoked",
            LogoutOutcome::LocalOnly { .. } => "local_only",
            LogoutOutcome::NotLoggedIn => "not_logged_in",
        }
    }
}

impl Engine {
    /// Logs `profile` out. A failure to delete the local session is the only error
    /// (local_storage); provider trouble only changes the outcome.
    ///
    /// An unsaved session is the one revoked (its refresh token is the live one; the
    /// vault's is spent) and is forgotten whatever happens next, so a logged-out
    /// session never comes back.
    ///
    /// Like a refresh, it runs in a task of its own: a caller that hangs up between
    /// the revocation and the deletion would otherwise leave revoked tokens in the
    /// vault (and an unsaved session in memory).
    pub async fn logout(
        self: &Arc<Self>,
        profile: &str,
        revoke_at_server: bool,
    ) -> Result<LogoutOutcome, EngineError> {
        let this = Arc::clone(self);
        let name = profile.to_string();
        self.sessions
            .tasks
            .spawn(async move { this.logout_to_the_end(&name, revoke_at_server).await })
            .await
            .map_err(|e| EngineError::Internal(format!("the logout task failed: {e}")))?
    }

    async fn logout_to_the_end(
        self: &Arc<Self>,
        profile: &str,
        revoke_at_server: bool,
    ) -> Result<LogoutOutcome, EngineError> {
        self.profile(profile)?;
        let slot = self.sessions.slot(profile);
        let ex = self.exclusive(&slot, profile).await?;
        let name = profile.to_string();
        let session = match slot.unsaved().map(|u| u.session) {
            Some(Some(s)) => Some(s),
            Some(None) => {
                // Logged out already; only the vault's deletion is left to do.
                let (_ex, deleted) = self
                    .blocking_exclusive(ex, move |e, ex| e.forget(&name, ex))
                    .await?;
                deleted?;
                return Ok(LogoutOutcome::NotLoggedIn);
            }
            None => match self.blocking(move |e| e.vault().load(&name)).await? {
                Ok(Some(l)) => Some(l.session),
                Ok(None) => {
                    // Nothing to delete, but a pending login ends all the same.
                    slot.logged_out();
                    return Ok(LogoutOutcome::NotLoggedIn);
                }
                Err(e) => {
                    // An unreadable vault cannot be revoked, but logging out must
                    // still forget it: that is what the person asked for.
                    tracing::warn!(profile, error = %e, "logging out of an unreadable vault");
                    None
                }
            },
        };
        // Held until the vault is deleted: revoked tokens must not stay behind
        // because a graceful stop cut the logout short.
        let Some(_committing) = self.sessions.begin_irreversible() else {
            return Err(EngineError::Stopping);
        };
        let outcome = match (&session, revoke_at_server) {
            (None, _) => LogoutOutcome::LocalOnly {
                reason: "the local vault could not be read, so nothing could be revoked".into(),
            },
            (Some(_), false) => LogoutOutcome::LocalOnly {
                reason: "revocation was not requested".into(),
            },
            (Some(s), true) => match self.revoke_session(profile, s).await {
                Ok(()) => LogoutOutcome::Revoked,
                Err(e) => LogoutOutcome::LocalOnly {
                    reason: e.to_string(),
                },
            },
        };
        let name = profile.to_string();
        let (_ex, deleted) = self
            .blocking_exclusive(ex, move |e, ex| e.forget(&name, ex))
            .await?;
        deleted?;
        Ok(outcome)
    }

    /// The local half of a logout, under the flight and file lock held by `ex`:
    /// forget an unsaved session, delete the vault, tell subscribers.
    ///
    /// When the deletion fails, the logout is kept as an unsaved change: this
    /// process answers "not logged in" from then on and retries the deletion, and
    /// the vault it could not delete (an older session whose refresh token may be
    /// spent, or revoked tokens) is never read back into memory or refreshed.
    fn forget(&self, profile: &str, ex: &mut Exclusive) -> Result<bool, EngineError> {
        let slot = self.sessions.slot(profile);
        slot.logged_out();
        // Logged out in memory before the deletion, so that no reader between the
        // two is answered from the vault (an unsaved session's predecessor).
        let had_unsaved = slot
            .view()
            .unsaved
            .replace(super::slot::Unsaved {
                session: None,
                generation: 0,
            })
            .is_some();
        match self.vault().delete(ex.lock()?) {
            Ok(deleted) => {
                slot.view().unsaved = None;
                if had_unsaved && let Err(e) = ex.lock_mut()?.mark_unsaved(false) {
                    tracing::debug!(profile, error = %e, "cannot clear the unsaved mark");
                }
                self.settle(profile, &slot, None, Some(Change::Logout));
                Ok(deleted)
            }
            Err(e) => {
                self.hold_unsaved(profile, ex, None, 0, Change::Logout, &e)?;
                Err(e.into())
            }
        }
    }

    /// Deletes the local session of `profile` under its lock without contacting the
    /// provider; `Ok(false)` when there was none (`latchkey profile remove`).
    pub fn delete_session(&self, profile: &str) -> Result<bool, EngineError> {
        let lock = self
            .vault()
            .lock(profile, crate::vault::DEFAULT_LOCK_TIMEOUT)?;
        Ok(self.vault().delete(&lock)?)
    }

    async fn revoke_session(
        &self,
        profile: &str,
        s: &latchkey_proto::vault::SessionRecord,
    ) -> Result<(), OAuthError> {
        let http = self
            .http(profile)
            .map_err(|e| OAuthError::Setup(e.to_string()))?;
        let (url, announced) = self
            .session_endpoint(profile, s, super::SessionEndpoint::Revocation)
            .await?;
        // The refresh token first: revoking it ends the grant at most providers, and
        // if only one call gets through, it is the one that matters.
        let client = crate::oauth::client::ClientAuth::for_session(
            &s.client_id,
            self.profile(profile).ok().as_ref(),
            announced,
        );
        if let Some(rt) = &s.refresh_token {
            revoke::revoke(http, &url, &client, rt, "refresh_token").await?;
        }
        revoke::revoke(http, &url, &client, &s.access_token, "access_token").await
    }
}
