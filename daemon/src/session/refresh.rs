//! The refresh transaction, and the token request that uses it.
//!
//! 1. In-process single flight: wait for this profile's slot.
//! 2. Take the profile's file lock (machine-wide single flight), unless this
//!    process already holds it for an unsaved session.
//! 3. Write an unsaved session first. While the disk still refuses it, nothing is
//!    sent to the provider: its refresh token is the only one left, and a refresh
//!    would only make another session that cannot be saved.
//! 4. Re-read the vault. If another process already refreshed (the token is now
//!    fresh enough, or a forced refresh finds a newer generation), use that.
//! 5. Reserve the space the new vault needs ([`crate::vault::fs::Reservation`]): a
//!    full or read-only disk fails here, before the refresh token is spent. When
//!    the configured KDF changed, derive its key now ([`crate::vault::Vault::prepare_rekey`]),
//!    so that step 7 derives nothing.
//! 6. Call the token endpoint with the stored refresh token.
//! 7. Write the new session into the reserved space (keeping the old refresh token
//!    when none came back). If even that fails, the session is kept unsaved
//!    ([`super::unsaved`]) and the file lock stays held until it is written.
//!
//! A caller that waited for the flight while an attempt for the same session failed
//! at the provider takes that failure as its outcome instead of asking again
//! ([`super::slot::Slot::failed_since`]): single flight for failures as for
//! successes.
//!
//! On `invalid_grant` or HTTP 409 the vault is re-read: if it holds a different
//! refresh token than the one just sent (a writer we could not exclude), the refresh
//! is retried once with it; otherwise the session is marked expired, keeping the
//! user so status can say who must log in again. A refresh token that was rejected
//! is never sent again. When a refresh cannot happen (the provider is down, the
//! disk refuses the reservation, another process holds an unsaved session) a token
//! request is still answered with an access token that has not expired.
//!
//! Steps 2 to 5 and step 7 touch the disk (a read may derive a key, writes fsync),
//! so they run on the blocking pool ([`Engine::blocking_exclusive`]); only the
//! provider call runs on the async thread.
//!
//! The transaction runs in a task of its own: a caller that gives up (the client's
//! fallback deadline, a closed connection, a library caller's timeout) stops
//! waiting but cannot cancel it between the provider's answer and the write.

use std::sync::Arc;
use std::time::Instant;

use latchkey_proto::error::Category;
use latchkey_proto::vault::SessionRecord;

use latchkey_proto::secret::Secret;

use super::slot::{Change, Current, Exclusive, Failure};
use crate::engine::{AccessToken, Engine, Served};
use crate::error::EngineError;
use crate::oauth::OAuthError;
use crate::oauth::token::{self, Grant, TokenSet};
use crate::policy;
use crate::vault::fs::Reservation;
use crate::vault::{Loaded, Rekeyed, unix_now};

/// Why a refresh is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A token valid for `min_ttl` seconds (or fresh enough by the half-life rule).
    Fresh { min_ttl: u64 },
    /// A new token, unless a refresh newer than `seen_generation` already happened.
    Forced { seen_generation: u64 },
}

/// A refresh token spent at the provider: what step 7 needs to save the answer.
struct Spent {
    /// The vault as read under the lock.
    current: Loaded,
    /// The session the answer applies to.
    base: SessionRecord,
    reservation: Reservation,
    rekey: Option<Rekeyed>,
    /// When the provider answered: the start of the window a crash can lose.
    answered: Instant,
}

fn fresh_enough(s: &SessionRecord, min_ttl: u64) -> bool {
    policy::is_fresh_enough(unix_now(), s.issued_at, s.expires_at, min_ttl)
}

fn still_valid(s: &SessionRecord) -> bool {
    s.expires_at.is_none_or(|e| e > unix_now())
}

/// What steps 1 to 5 of the transaction found, under the lock.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once and matched at once, never stored; boxing would only add an allocation"
)]
enum Prepared {
    /// No call to the provider is needed: this is the answer.
    Done(AccessToken),
    /// A refresh cannot start now ([`Engine::fall_short`] decides what to serve).
    Short(EngineError),
    /// An attempt at the provider for this very session failed while this call
    /// waited for the flight: its outcome is this call's too, without asking again
    /// (single flight for failures as for successes).
    Joined { current: Loaded, error: OAuthError },
    /// Spend `sent` at the provider; the new vault's space is reserved.
    Spend {
        current: Loaded,
        sent: Secret,
        reservation: Reservation,
        /// The configured KDF to move the vault to in the same write.
        rekey: Option<Rekeyed>,
    },
}

/// The rule for a session a token can be served from.
fn usable(profile: &str, current: Option<Current>) -> Result<Current, EngineError> {
    let current = current.ok_or_else(|| EngineError::NotLoggedIn {
        profile: profile.to_string(),
    })?;
    if current.session.expired {
        return Err(super::expired(profile, &current.session));
    }
    Ok(current)
}

impl Engine {
    /// An access token for `profile` that is fresh enough for `min_ttl` seconds,
    /// refreshed first when it is not.
    pub async fn token(
        self: &Arc<Self>,
        profile: &str,
        min_ttl: u64,
    ) -> Result<AccessToken, EngineError> {
        let current = self.usable(profile).await?;
        if fresh_enough(&current.session, min_ttl) {
            return Ok(current.token(Served::AsHeld));
        }
        self.refresh_as(profile, Want::Fresh { min_ttl }).await
    }

    /// Refreshes now, joining a refresh that completed while this call waited.
    pub async fn refresh(self: &Arc<Self>, profile: &str) -> Result<AccessToken, EngineError> {
        let seen = self.usable(profile).await?.generation;
        self.refresh_as(
            profile,
            Want::Forced {
                seen_generation: seen,
            },
        )
        .await
    }

    /// The current session, or the error that says why there is none to use.
    pub(crate) async fn usable(self: &Arc<Self>, profile: &str) -> Result<Current, EngineError> {
        usable(profile, self.current(profile).await?)
    }

    /// Runs the transaction in a task of its own (see the module documentation) and
    /// counts its outcome.
    pub(crate) async fn refresh_as(
        self: &Arc<Self>,
        profile: &str,
        want: Want,
    ) -> Result<AccessToken, EngineError> {
        let this = Arc::clone(self);
        let name = profile.to_string();
        let task = self.sessions.tasks.spawn(async move {
            let result = this.transact(&name, want).await;
            this.sessions.record(&result);
            result
        });
        task.await
            .map_err(|e| EngineError::Internal(format!("the refresh task failed: {e}")))?
    }

    /// The transaction: the disk work of each step on the blocking pool, the
    /// provider call in between.
    async fn transact(
        self: &Arc<Self>,
        profile: &str,
        want: Want,
    ) -> Result<AccessToken, EngineError> {
        let slot = self.sessions.slot(profile);
        let began = Instant::now();
        let ex = match self.exclusive(&slot, profile).await {
            Ok(ex) => ex,
            Err(e) => return self.fall_short(profile, want, e).await,
        };
        let name = profile.to_string();
        let (ex, prepared) = self
            .blocking_exclusive(ex, move |e, ex| e.prepare(&name, ex, want, began))
            .await?;
        let (current, sent, reservation, rekey) = match prepared? {
            Prepared::Done(token) => return Ok(token),
            Prepared::Short(e) => return self.fall_short(profile, want, e).await,
            Prepared::Joined { current, error } => {
                drop(ex);
                return self.failed(profile, want, &current, error);
            }
            Prepared::Spend {
                current,
                sent,
                reservation,
                rekey,
            } => (current, sent, reservation, rekey),
        };
        // Held until the answer is on disk: a graceful stop waits for it, and once
        // a stop has begun, nothing is sent.
        let Some(_committing) = self.sessions.begin_irreversible() else {
            drop((ex, reservation));
            return self.fall_short(profile, want, EngineError::Stopping).await;
        };
        // The session the answer applies to: the one read under the lock (or, after a
        // retry, the one re-read), so nothing between the provider's answer and the
        // write can fail but the write itself.
        let mut base = current.session.clone();
        let mut attempt = self.call_token_endpoint(profile, &base, &sent).await;
        if matches!(&attempt, Err(e) if e.is_invalid_grant()) {
            // Re-read: was the token rotated by a writer that did not hold our lock?
            let name = profile.to_string();
            if let Some(reread) = self.blocking(move |e| e.load(&name)).await??
                && let Some(other) = reread.session.refresh_token.clone()
                && other != sent
                && !reread.session.expired
            {
                attempt = self
                    .call_token_endpoint(profile, &reread.session, &other)
                    .await;
                base = reread.session;
            }
        }
        // From here until the fsync of the new vault, the provider has spent the old
        // refresh token and only this process holds the new one: the one window in
        // which a crash loses the session. It is logged so that it can be measured.
        let answered = Instant::now();
        let name = profile.to_string();
        let (_ex, finished) = self
            .blocking_exclusive(ex, move |e, ex| {
                e.finish(
                    &name,
                    ex,
                    want,
                    Spent {
                        current,
                        base,
                        reservation,
                        rekey,
                        answered,
                    },
                    attempt,
                )
            })
            .await?;
        finished
    }

    /// Steps 3 to 5 under the flight and the file lock held by `ex`.
    fn prepare(
        &self,
        profile: &str,
        ex: &mut Exclusive,
        want: Want,
        began: Instant,
    ) -> Result<Prepared, EngineError> {
        let slot = self.sessions.slot(profile);
        if let Err(e) = self.save_unsaved_locked(profile, &slot, ex) {
            return Ok(Prepared::Short(e));
        }
        let Some(current) = self.load(profile)? else {
            self.remember(profile, &slot, None);
            return Err(EngineError::NotLoggedIn {
                profile: profile.to_string(),
            });
        };
        self.remember(profile, &slot, Some(current.clone()));
        let s = &current.session;
        if s.expired {
            return Err(super::expired(profile, s));
        }
        let served = Current::from_loaded(&current);
        let done_by_another = match want {
            Want::Fresh { min_ttl } => fresh_enough(s, min_ttl),
            Want::Forced { seen_generation } => current.generation > seen_generation,
        };
        if done_by_another {
            return Ok(Prepared::Done(served.token(Served::Refreshed)));
        }
        let Some(sent) = s.refresh_token.clone() else {
            // Nothing to refresh with: serve what is left, or the person must log in.
            return match want {
                Want::Fresh { .. } if still_valid(s) => {
                    Ok(Prepared::Done(served.token(Served::AsHeld)))
                }
                _ => Err(super::expired(profile, s)),
            };
        };
        if let Some(failure) = slot.failed_since(current.generation, began) {
            return Ok(Prepared::Joined {
                current,
                error: failure.error,
            });
        }
        // The configured KDF changed: the new key is derived now, before anything
        // is sent, and the refresh's one write moves the vault to it.
        let rekey = self.vault().prepare_rekey(&current);
        match self.vault().reserve(ex.lock()?) {
            Ok(reservation) => Ok(Prepared::Spend {
                current,
                sent,
                reservation,
                rekey,
            }),
            Err(e) => Ok(Prepared::Short(e.into())),
        }
    }

    /// Step 7: the provider's answer written into the reserved space, under the
    /// flight and the file lock held by `ex`.
    fn finish(
        &self,
        profile: &str,
        ex: &mut Exclusive,
        want: Want,
        spent: Spent,
        attempt: Result<TokenSet, OAuthError>,
    ) -> Result<AccessToken, EngineError> {
        let slot = self.sessions.slot(profile);
        let Spent {
            current,
            base,
            reservation,
            rekey,
            answered,
        } = spent;
        slot.attempted(match &attempt {
            Err(error) if !error.is_invalid_grant() => Some(Failure {
                generation: current.generation,
                at: Instant::now(),
                error: error.clone(),
            }),
            _ => None,
        });
        match attempt {
            Ok(tokens) => {
                let updated = apply(base, tokens);
                let generation = current.generation.saturating_add(1);
                match self
                    .vault()
                    .store_reserved(ex.lock()?, reservation, &updated, rekey)
                {
                    Ok(stored) => {
                        let window_us =
                            u64::try_from(answered.elapsed().as_micros()).unwrap_or(u64::MAX);
                        tracing::info!(
                            profile,
                            generation = stored.generation,
                            window_us,
                            "refreshed; the new session is on disk (window_us: provider answer to fsync)"
                        );
                        let loaded = stored.loaded(updated);
                        let token = Current::from_loaded(&loaded).token(Served::Refreshed);
                        self.settle(profile, &slot, Some(loaded), Some(Change::Refresh));
                        Ok(token)
                    }
                    Err(e) => self.keep_unsaved(profile, ex, updated, generation, e),
                }
            }
            Err(e) if e.is_invalid_grant() => {
                // The freshest record to mark, but never a reason to keep the
                // rejected token: any read failure marks the session sent.
                let mut dead = match self.load(profile) {
                    Ok(Some(l)) => l.session,
                    Ok(None) | Err(_) => base,
                };
                dead.expired = true;
                // The rejected refresh token is spent: drop it so it is never sent again.
                dead.refresh_token = None;
                tracing::info!(
                    profile,
                    "the provider rejected the refresh token; the session is expired"
                );
                let error = super::expired(profile, &dead);
                match self
                    .vault()
                    .store_reserved(ex.lock()?, reservation, &dead, rekey)
                {
                    Ok(stored) => self.settle(
                        profile,
                        &slot,
                        Some(stored.loaded(dead)),
                        Some(Change::Expired),
                    ),
                    // The vault still holds the rejected token: hold the expired
                    // session unsaved, so nobody sends it again.
                    Err(e) => {
                        let generation = current.generation.saturating_add(1);
                        self.hold_unsaved(
                            profile,
                            ex,
                            Some(dead),
                            generation,
                            Change::Expired,
                            &e,
                        )?;
                    }
                }
                Err(error)
            }
            Err(error) => {
                drop(reservation);
                self.failed(profile, want, &current, error)
            }
        }
    }

    /// The outcome of a failed attempt at the provider for the session `current`.
    /// When the provider is unreachable or failing, a token that has not expired
    /// yet is still worth serving to a token request.
    fn failed(
        &self,
        profile: &str,
        want: Want,
        current: &Loaded,
        error: OAuthError,
    ) -> Result<AccessToken, EngineError> {
        let outage = matches!(error.category(), Category::Transport | Category::Server);
        if matches!(want, Want::Fresh { .. }) && still_valid(&current.session) && outage {
            tracing::warn!(profile, %error, "refresh failed; serving the still-valid access token");
            return Ok(Current::from_loaded(current).token(Served::AsHeld));
        }
        Err(EngineError::OAuth {
            profile: profile.to_string(),
            error,
        })
    }

    /// A refresh that could not start: the lock is held for another process's
    /// unsaved session, the disk refuses the reservation, or this process's own
    /// unsaved session cannot be written. A token request is still answered from
    /// an access token that has not expired; anything else gets the error.
    async fn fall_short(
        self: &Arc<Self>,
        profile: &str,
        want: Want,
        error: EngineError,
    ) -> Result<AccessToken, EngineError> {
        if matches!(want, Want::Fresh { .. })
            && let Ok(current) = self.usable(profile).await
            && still_valid(&current.session)
        {
            tracing::warn!(profile, %error, "cannot refresh now; serving the still-valid access token");
            return Ok(current.token(Served::AsHeld));
        }
        Err(error)
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
        let (url, announced) = self
            .session_endpoint(profile, s, super::SessionEndpoint::Token)
            .await?;
        let config = self.profile(profile).ok();
        let resource = config.as_ref().and_then(|p| p.resource.clone());
        let client =
            crate::oauth::client::ClientAuth::for_session(&s.client_id, config.as_ref(), announced);
        let extra: Vec<(&str, &str)> = resource.iter().map(|r| ("resource", r.as_str())).collect();
        token::request(
            http,
            &url,
            &client,
            Grant::RefreshToken { refresh_token },
            &extra,
        )
        .await
    }
}

/// Applies a token response to a session. The old refresh token is kept when the
/// provider sent none (providers that do not rotate).
pub(crate) fn apply(mut s: SessionRecord, t: TokenSet) -> SessionRecord {
    let now = unix_now();
    s.access_token = t.access_token;
    s.token_type = t.token_type;
    s.issued_at = now;
    s.expires_at = policy::expires_at(now, t.expires_in);
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
