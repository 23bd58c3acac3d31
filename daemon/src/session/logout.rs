//! Logout: revoke at the provider (RFC 7009: the refresh token, then the access
//! token) unless asked not to, then delete the local session whatever the provider
//! said. The outcome says which of the three things happened.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::oauth::{OAuthError, discovery, revoke};

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
    pub async fn logout(
        &self,
        profile: &str,
        revoke_at_server: bool,
    ) -> Result<LogoutOutcome, EngineError> {
        let lock = self.lock(profile).await?;
        let loaded = match self.vault().load(profile) {
            Ok(Some(l)) => Some(l),
            Ok(None) => return Ok(LogoutOutcome::NotLoggedIn),
            Err(e) => {
                // An unreadable vault cannot be revoked, but logging out must still
                // forget it: that is what the person asked for.
                tracing::warn!(profile, error = %e, "logging out of an unreadable vault");
                None
            }
        };
        let outcome = match (&loaded, revoke_at_server) {
            (None, _) => LogoutOutcome::LocalOnly {
                reason: "the local vault could not be read, so nothing could be revoked".into(),
            },
            (Some(_), false) => LogoutOutcome::LocalOnly {
                reason: "revocation was not requested".into(),
            },
            (Some(l), true) => match self.revoke_session(profile, &l.session).await {
                Ok(()) => LogoutOutcome::Revoked,
                Err(e) => LogoutOutcome::LocalOnly {
                    reason: e.to_string(),
                },
            },
        };
        self.vault().delete(&lock)?;
        Ok(outcome)
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
        let url = match &s.revocation_endpoint {
            Some(u) => crate::config::check_url(u).map_err(OAuthError::Setup)?,
            None => {
                let p = self
                    .profile(profile)
                    .map_err(|e| OAuthError::Setup(e.to_string()))?;
                discovery::endpoints(http, &p)
                    .await?
                    .revocation
                    .ok_or_else(|| {
                        OAuthError::Setup("the provider does not support revocation".into())
                    })?
            }
        };
        // The refresh token first: revoking it ends the grant at most providers, and
        // if only one call gets through, it is the one that matters.
        if let Some(rt) = &s.refresh_token {
            revoke::revoke(http, &url, &s.client_id, rt, "refresh_token").await?;
        }
        revoke::revoke(http, &url, &s.client_id, &s.access_token, "access_token").await
    }
}
