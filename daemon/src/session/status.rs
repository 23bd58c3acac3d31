//! The offline status of a profile's session: who, until when, what is stored.
//! Never touches the network.

use std::path::PathBuf;
use std::sync::Arc;

use latchkey_proto::vault::UserInfo;

use super::slot::Current;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::vault::unix_now;

/// A profile's session as `latchkey status` shows it.
#[derive(Debug, Clone)]
pub struct SessionStatus {
    pub profile: String,
    /// A session is stored and the provider has not rejected it.
    pub logged_in: bool,
    /// A session is stored but cannot be used any more: log in again.
    pub session_expired: bool,
    pub user: Option<UserInfo>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// Access-token expiry, Unix seconds.
    pub expires_at: Option<i64>,
    pub has_refresh_token: bool,
    pub generation: Option<u64>,
    /// Rotated at the provider, not on disk yet (see `session::unsaved`).
    pub unsaved: bool,
    pub vault_path: PathBuf,
}

impl Engine {
    /// The status of `profile`'s current session (an unsaved one included). A read
    /// of the vault runs on the blocking pool.
    pub async fn status(self: &Arc<Self>, profile: &str) -> Result<SessionStatus, EngineError> {
        let current = self.current(profile).await?;
        self.status_of(profile, current)
    }

    /// [`Engine::status`] on the calling thread, for callers without a runtime
    /// (doctor).
    pub fn status_blocking(&self, profile: &str) -> Result<SessionStatus, EngineError> {
        let current = self.current_blocking(profile)?;
        self.status_of(profile, current)
    }

    fn status_of(
        &self,
        profile: &str,
        current: Option<Current>,
    ) -> Result<SessionStatus, EngineError> {
        let vault_path = self.vault().path(profile)?;
        let empty = SessionStatus {
            profile: profile.to_string(),
            logged_in: false,
            session_expired: false,
            user: None,
            groups: Vec::new(),
            scopes: Vec::new(),
            expires_at: None,
            has_refresh_token: false,
            generation: None,
            unsaved: false,
            vault_path,
        };
        let Some(current) = current else {
            return Ok(empty);
        };
        let s = current.session;
        let has_refresh_token = s.refresh_token.is_some();
        let access_expired = s.expires_at.is_some_and(|e| e <= unix_now());
        let session_expired = s.expired || (access_expired && !has_refresh_token);
        Ok(SessionStatus {
            logged_in: !session_expired,
            session_expired,
            user: s.user,
            groups: s.groups,
            scopes: s.scopes,
            expires_at: s.expires_at,
            has_refresh_token,
            generation: Some(current.generation),
            unsaved: current.unsaved,
            ..empty
        })
    }
}

impl Engine {
    /// Asks the provider's userinfo endpoint about `access_token`, a token of
    /// `profile`'s current session: the proof that the provider still accepts it
    /// (`doctor --server`, which gets the token through the daemon when one runs).
    pub async fn userinfo(
        self: &Arc<Self>,
        profile: &str,
        access_token: &latchkey_proto::secret::Secret,
    ) -> Result<(UserInfo, Vec<String>), EngineError> {
        use crate::oauth::{OAuthError, discovery, userinfo};
        let oauth = |error| EngineError::OAuth {
            profile: profile.to_string(),
            error,
        };
        let p = self.profile(profile)?;
        let http = self.http(profile)?;
        let stored = self
            .current(profile)
            .await?
            .and_then(|c| c.session.userinfo_endpoint);
        let url = match stored {
            Some(u) => crate::config::check_url(&u).map_err(|r| oauth(OAuthError::Setup(r)))?,
            None => discovery::endpoints(http, &p)
                .await
                .map_err(oauth)?
                .userinfo
                .ok_or_else(|| {
                    oauth(OAuthError::Setup(
                        "the provider has no userinfo endpoint".into(),
                    ))
                })?,
        };
        userinfo::fetch(http, &url, access_token, &p.groups_claim)
            .await
            .map_err(oauth)
    }
}
