//! The background work of a long-lived process (the daemon): retrying the write of
//! unsaved sessions, and refreshing sessions before callers need it
//! ([`crate::policy::refresh_ahead`]), so token requests rarely wait.

use std::sync::Arc;

use super::refresh::Want;
use crate::engine::Engine;
use crate::vault::unix_now;

impl Engine {
    /// One maintenance pass over every configured profile. Errors are logged, not
    /// returned: each profile is tried again on the next pass.
    pub async fn maintain(self: &Arc<Self>) {
        for profile in self.unsaved_profiles() {
            if let Err(e) = self.save_unsaved(&profile).await {
                tracing::warn!(profile, error = %e, "still cannot save the change to the session");
            }
        }
        for profile in self.config().profile_names() {
            let Ok(Some(current)) = self.current(&profile).await else {
                continue;
            };
            let s = &current.session;
            if current.unsaved || s.expired || s.refresh_token.is_none() {
                continue;
            }
            let Some(expires_at) = s.expires_at else {
                continue;
            };
            let Some(min_ttl) = crate::policy::refresh_ahead(unix_now(), s.issued_at, expires_at)
            else {
                continue;
            };
            tracing::info!(profile, "refreshing ahead of expiry");
            if let Err(e) = self.refresh_as(&profile, Want::Fresh { min_ttl }).await {
                tracing::warn!(profile, error = %e, "refreshing ahead of expiry failed");
            }
        }
    }
}
