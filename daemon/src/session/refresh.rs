//! The refresh transaction (SPEC §6), and the token request that uses it.
//!
//! 1. In-process single flight: wait for this profile's slot.
//! 2. Take the profile's file lock (machine-wide single flight).
//! 3. Re-read the vault. If another process already refreshed (the token is now
//!    fresh enough, or a forced refresh finds a newer generation), use that.
//! 4. Call the token endpoint with the stored refresh token.
//! 5. Persist the new session (keeping the old refresh token when none came back),
//!    then release the lock.
//!
//! On `invalid_grant` or HTTP 409 the vault is re-read: if it holds a different
//! refresh token than the one just sent (a writer we could not exclude), the refresh
//! is retried once with it; otherwise the session is marked expired, keeping the
//! user so status can say who must log in again. A refresh token that was rejected
//! is never sent again. On a transport or 5xx failure a still-valid access token is
//! served.

use std::time::Instant;

use latchkey_proto::error::Category;
use latchkey_proto::vault::SessionRecord;

use crate::engine::{AccessToken, Engine};
use crate::error::EngineError;
use crate::oauth::token::{self, Grant, TokenSet};
use crate::oauth::{OAuthError, discovery};
use crate::policy;
use crate::vault::{Loaded, ProfileLock, unix_now};

/// Why a refresh is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A token valid for `min_ttl` seconds (or fresh enough by the half-life rule).
    Fresh { min_ttl: u64 },
    /// A new token, unless a refresh newer than `seen_generation` already happened.
    Forced { seen_generation: u64 },
}

impl Engine {
    /// An access token for `profile` that is fresh enough for `min_ttl` seconds,
    /// refreshed first when it is not.
    pub async fn token(&self, profile: &str, min_ttl: u64) -> Result<AccessToken, EngineError> {
        let loaded = self.load_usable(profile)?;
        let s = &loaded.session;
        if policy::is_fresh_enough(unix_now(), s.issued_at, s.expires_at, min_ttl) {
            return Ok(AccessToken::from_loaded(&loaded));
        }
        self.refresh_as(profile, Want::Fresh { min_ttl }).await
    }

    /// Refreshes now, joining a refresh that completed while this call waited.
    pub async fn refresh(&self, profile: &str) -> Result<AccessToken, EngineError> {
        let seen = self.load_usable(profile)?.generation;
        self.refresh_as(
            profile,
            Want::Forced {
                seen_generation: seen,
            },
        )
        .await
    }

    /// The stored session, or the error that says why there is none to use.
    fn load_usable(&self, profile: &str) -> Result<Loaded, EngineError> {
        let loaded = self
            .load(profile)?
            .ok_or_else(|| EngineError::NotLoggedIn {
                profile: profile.to_string(),
            })?;
        if loaded.session.expired {
            return Err(super::expired(profile, &loaded.session));
        }
        Ok(loaded)
    }

    /// Steps 1 to 5 of the transaction.
    pub async fn refresh_as(&self, profile: &str, want: Want) -> Result<AccessToken, EngineError> {
        let flight = self.flight(profile);
        let _in_flight = flight.lock().await;
        let lock = self.lock(profile).await?;
        let current = self.load_usable(profile)?;
        let s = &current.session;
        let done_by_another = match want {
            Want::Fresh { min_ttl } => {
                policy::is_fresh_enough(unix_now(), s.issued_at, s.expires_at, min_ttl)
            }
            Want::Forced { seen_generation } => current.generation > seen_generation,
        };
        if done_by_another {
            return Ok(AccessToken::from_loaded(&current));
        }
        let still_valid = s.expires_at.is_none_or(|e| e > unix_now());
        let Some(sent) = s.refresh_token.clone() else {
            // Nothing to refresh with: serve what is left, or the person must log in.
            return match want {
                Want::Fresh { .. } if still_valid => Ok(AccessToken::from_loaded(&current)),
                _ => Err(super::expired(profile, s)),
            };
        };
        // The session the answer applies to: the one read under the lock (or, after a
        // retry, the one re-read), so nothing between the provider's answer and the
        // write can fail but the write itself.
        let mut base = current.session.clone();
        let mut attempt = self.call_token_endpoint(profile, s, &sent).await;
        if matches!(&attempt, Err(e) if e.is_invalid_grant()) {
            // Re-read: was the token rotated by a writer that did not hold our lock?
            let reread = self.load_usable(profile)?;
            match reread.session.refresh_token.clone() {
                Some(other) if other != sent => {
                    attempt = self
                        .call_token_endpoint(profile, &reread.session, &other)
                        .await;
                    base = reread.session;
                }
                _ => {}
            }
        }
        // From here until the fsync inside `persist`, the provider has spent the old
        // refresh token and only this process holds the new one: the one window in
        // which a crash loses the session (SPEC §9). It is logged so that it can be
        // measured.
        let answered = Instant::now();
        match attempt {
            Ok(tokens) => {
                let updated = apply(base, tokens);
                let written = self.persist(&lock, &updated)?;
                let window_us = u64::try_from(answered.elapsed().as_micros()).unwrap_or(u64::MAX);
                tracing::info!(
                    profile,
                    generation = written.generation,
                    window_us,
                    "refreshed; the new session is on disk (window_us: provider answer to fsync)"
                );
                Ok(written)
            }
            Err(e) if e.is_invalid_grant() => {
                let mut dead = self.load_usable(profile)?.session;
                dead.expired = true;
                // The rejected refresh token is spent: drop it so it is never sent again.
                dead.refresh_token = None;
                self.vault().store(&lock, &dead)?;
                tracing::info!(
                    profile,
                    "the provider rejected the refresh token; the session is expired"
                );
                Err(super::expired(profile, &dead))
            }
            Err(error) => {
                // SPEC §6: when the provider is unreachable or failing, a token that
                // has not expired yet is still worth serving.
                let outage = matches!(error.category(), Category::Transport | Category::Server);
                if matches!(want, Want::Fresh { .. }) && still_valid && outage {
                    tracing::warn!(profile, %error, "refresh failed; serving the still-valid access token");
                    return Ok(AccessToken::from_loaded(&current));
                }
                Err(EngineError::OAuth {
                    profile: profile.to_string(),
                    error,
                })
            }
        }
    }

    /// One token-endpoint call with `refresh_token`.
    async fn call_token_endpoint(
        &self,
        profile: &str,
        s: &SessionRecord,
        refresh_token: &latchkey_proto::secret::Secret,
    ) -> Result<TokenSet, OAuthError> {
        let http = self
            .http(profile)
            .map_err(|e| OAuthError::Setup(e.to_string()))?;
        let url = match &s.token_endpoint {
            Some(u) => crate::config::check_url(u).map_err(OAuthError::Setup)?,
            None => {
                let p = self
                    .profile(profile)
                    .map_err(|e| OAuthError::Setup(e.to_string()))?;
                discovery::endpoints(http, &p).await?.token
            }
        };
        let resource = self.profile(profile).ok().and_then(|p| p.resource.clone());
        let extra: Vec<(&str, &str)> = resource.iter().map(|r| ("resource", r.as_str())).collect();
        token::request(
            http,
            &url,
            &s.client_id,
            Grant::RefreshToken { refresh_token },
            &extra,
        )
        .await
    }

    /// Writes the refreshed session under the lock and answers from what was written.
    /// A failed write hands the rotated session back in [`EngineError::Unsaved`]:
    /// the provider has already spent the old refresh token, so this session is the
    /// only one that still works.
    fn persist(
        &self,
        lock: &ProfileLock,
        session: &SessionRecord,
    ) -> Result<AccessToken, EngineError> {
        let stored = self
            .vault()
            .store(lock, session)
            .map_err(|source| EngineError::Unsaved {
                profile: lock.profile().to_string(),
                session: Box::new(session.clone()),
                source,
            })?;
        Ok(AccessToken {
            access_token: session.access_token.clone(),
            token_type: session.token_type.clone(),
            expires_at: session.expires_at,
            generation: stored.generation,
        })
    }
}

/// Applies a token response to a session. The old refresh token is kept when the
/// provider sent none (providers that do not rotate).
pub(crate) fn apply(mut s: SessionRecord, t: TokenSet) -> SessionRecord {
    let now = unix_now();
    s.access_token = t.access_token;
    s.token_type = t.token_type;
    s.issued_at = now;
    s.expires_at = t
        .expires_in
        .map(|e| now.saturating_add(i64::try_from(e).unwrap_or(i64::MAX)));
    if let Some(rt) = t.refresh_token {
        s.refresh_token = Some(rt);
    }
    if t.id_token.is_some() {
        s.id_token = t.id_token;
    }
    if let Some(scope) = t.scope {
        s.scopes = scope.split_whitespace().map(str::to_string).collect();
    }
    s.expired = false;
    s
}
