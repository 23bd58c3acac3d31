//! Interactive login: the browser flow (authorization code + PKCE through a
//! loopback listener) or the device flow, then userinfo, then one write of the new
//! session under the profile lock.
//!
//! Nothing is written until the very end, so a failed or abandoned login leaves the
//! previous session exactly as it was.

use std::sync::Arc;
use std::time::Duration;

use latchkey_proto::vault::{SessionRecord, UserInfo};

use super::slot::{Change, Exclusive};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::oauth::authcode::{self, AuthorizeParams};
use crate::oauth::client::ClientAuth;
use crate::oauth::device::{self, PollObserver};
use crate::oauth::token::{self, Grant};
use crate::oauth::{OAuthError, discovery, userinfo};
use crate::vault::unix_now;

/// The default time a person has to finish a login: 5 minutes.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Which interactive flow to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Authorization code + PKCE through the browser.
    Browser,
    /// RFC 8628 device flow.
    Device,
}

/// What the device flow shows the person.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    /// Exactly as the provider issued it: some providers compare it byte for byte,
    /// so a dash added for readability would send the person to a dead end.
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
}

/// How a login talks to the person. The CLI prints and opens a browser; the daemon's
/// socket login (`server::login`) records what to show, for the login request and its
/// long-poll.
pub trait LoginUi: Send + Sync {
    /// The browser flow's URL is ready: show it (always) and open it (if wanted).
    fn authorize_url(&self, url: &str);
    /// The device flow's code is ready.
    fn device_code(&self, code: &DeviceCode);
    /// Called before each device poll with the time left.
    fn waiting(&self, time_left: Duration);
}

/// The result of a login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub user: Option<UserInfo>,
    pub groups: Vec<String>,
    pub expires_at: Option<i64>,
    pub generation: u64,
    /// Where the previous vault went when it could not be read (corrupt, or made
    /// with another key): moved aside, never overwritten.
    pub set_aside: Option<std::path::PathBuf>,
}

struct Observer<'a>(&'a dyn LoginUi);

impl PollObserver for Observer<'_> {
    fn waiting(&self, time_left: Duration) {
        self.0.waiting(time_left);
    }
}

impl Engine {
    /// Runs an interactive login for `profile` and saves the session.
    ///
    /// A logout of the profile in this process while the login is pending ends it
    /// (`LoginAbandoned`): the person asked for the profile to be logged out, and a
    /// device code approved later or a browser tab finished afterwards must not
    /// log it back in. The check that decides it runs under the profile's flight,
    /// as the logout does, so exactly one of them comes last.
    pub async fn login(
        self: &Arc<Self>,
        profile: &str,
        flow: Flow,
        timeout: Duration,
        ui: &dyn LoginUi,
    ) -> Result<LoggedIn, EngineError> {
        self.profile(profile)?;
        let mut logouts = self.sessions.slot(profile).logouts();
        let started = *logouts.borrow_and_update();
        let abandoned = || EngineError::LoginAbandoned {
            profile: profile.to_string(),
        };
        tokio::select! {
            done = self.login_unless(profile, flow, timeout, ui, started) => done,
            changed = logouts.changed() => match changed {
                Ok(()) => Err(abandoned()),
                // The slot, and the sender with it, lives as long as the engine.
                Err(_) => Err(EngineError::Internal("the logout feed closed".into())),
            },
        }
    }

    /// [`Engine::login`], saving only if no logout happened since `started`.
    async fn login_unless(
        self: &Arc<Self>,
        profile: &str,
        flow: Flow,
        timeout: Duration,
        ui: &dyn LoginUi,
        started: u64,
    ) -> Result<LoggedIn, EngineError> {
        let oauth = |error| EngineError::OAuth {
            profile: profile.to_string(),
            error,
        };
        let p = self.profile(profile)?;
        let http = self.http(profile)?;
        let ep = discovery::endpoints(http, &p).await.map_err(oauth)?;
        let scope = p.scopes.join(" ");
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &p.audience {
            extra.push(("audience", a));
        }
        if let Some(r) = &p.resource {
            extra.push(("resource", r));
        }
        let token_extra = extra.clone();
        extra.extend(
            p.extra_auth_params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );

        let tokens = match flow {
            Flow::Browser => {
                let endpoint = ep.authorization.as_ref().ok_or_else(|| {
                    oauth(OAuthError::Setup(
                        "the provider has no authorization endpoint; use `latchkey login --device`"
                            .into(),
                    ))
                })?;
                let listener = authcode::Listener::bind().await.map_err(oauth)?;
                let redirect_uri = listener.redirect_uri();
                let pkce = authcode::pkce().map_err(oauth)?;
                let state = authcode::random_state().map_err(oauth)?;
                let params = AuthorizeParams {
                    client_id: &p.client_id,
                    redirect_uri: &redirect_uri,
                    scope: &scope,
                    state: &state,
                    extra: &extra,
                };
                ui.authorize_url(
                    authcode::authorize_url(endpoint, &params, &pkce.challenge).as_str(),
                );
                let code = listener
                    .wait_for_code(&state, &ep.issuer, timeout)
                    .await
                    .map_err(oauth)?;
                let grant = Grant::AuthorizationCode {
                    code: &code,
                    verifier: &pkce.verifier,
                    redirect_uri: &redirect_uri,
                };
                token::request(
                    http,
                    &ep.token,
                    &ClientAuth::of(&p, ep.token_auth),
                    grant,
                    &token_extra,
                )
                .await
                .map_err(|e| {
                    // A refused code is a failed login (wrong PKCE verifier, a
                    // replayed or expired code), not an expired session.
                    if e.is_invalid_grant() {
                        oauth(OAuthError::LoginDenied(format!(
                            "the provider refused the authorization code ({e})"
                        )))
                    } else {
                        oauth(e)
                    }
                })?
            }
            Flow::Device => {
                let endpoint = ep.device_authorization.as_ref().ok_or_else(|| {
                    oauth(OAuthError::Setup(
                        "the provider has no device authorization endpoint; use the browser login"
                            .into(),
                    ))
                })?;
                let auth = device::start(
                    http,
                    endpoint,
                    &ClientAuth::of(&p, ep.token_auth),
                    &scope,
                    &extra,
                )
                .await
                .map_err(oauth)?;
                ui.device_code(&DeviceCode {
                    user_code: auth.user_code.clone(),
                    verification_uri: auth.verification_uri.clone(),
                    verification_uri_complete: auth.verification_uri_complete.clone(),
                    expires_in: auth.expires_in,
                });
                device::poll(
                    http,
                    &ep.token,
                    &ClientAuth::of(&p, ep.token_auth),
                    &auth,
                    timeout,
                    &Observer(ui),
                )
                .await
                .map_err(oauth)?
            }
        };

        let (user, groups) = match &ep.userinfo {
            Some(url) => {
                let (u, g) = userinfo::fetch(http, url, &tokens.access_token, &p.groups_claim)
                    .await
                    .map_err(oauth)?;
                (Some(u), g)
            }
            None => (None, Vec::new()),
        };
        let now = unix_now();
        let session = SessionRecord {
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
            access_token: tokens.access_token,
            token_type: tokens.token_type,
            expires_at: crate::policy::expires_at(now, tokens.expires_in),
            issued_at: now,
            refresh_token: tokens.refresh_token,
            id_token: tokens.id_token,
            scopes: tokens
                .scope
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_else(|| p.scopes.clone()),
            user: user.clone(),
            groups: groups.clone(),
            expired: false,
            logged_in_at: Some(now),
            token_endpoint: Some(ep.token.to_string()),
            revocation_endpoint: ep.revocation.as_ref().map(ToString::to_string),
            userinfo_endpoint: ep.userinfo.as_ref().map(ToString::to_string),
            token_auth: ep.token_auth,
            revocation_auth: ep.revocation_auth,
        };
        let slot = self.sessions.slot(profile);
        let ex = self.exclusive(&slot, profile).await?;
        let expires_at = session.expires_at;
        let name = profile.to_string();
        let (_ex, saved) = self
            .blocking_exclusive(ex, move |e, ex| e.save_login(&name, ex, session, started))
            .await?;
        let (generation, set_aside) = saved?;
        Ok(LoggedIn {
            user,
            groups,
            expires_at,
            generation,
            set_aside,
        })
    }

    /// The one write of a login, under the flight and file lock held by `ex`: an
    /// unreadable vault moved aside, the new session stored, an unsaved session of
    /// the old one (whose tokens nobody holds any more) forgotten. Returns the new
    /// generation and where the unreadable vault went.
    fn save_login(
        &self,
        profile: &str,
        ex: &mut Exclusive,
        session: SessionRecord,
        started: u64,
    ) -> Result<(u64, Option<std::path::PathBuf>), EngineError> {
        let slot = self.sessions.slot(profile);
        if slot.logout_count() != started {
            return Err(EngineError::LoginAbandoned {
                profile: profile.to_string(),
            });
        }
        let set_aside = self.set_aside_unreadable(profile, ex.lock()?)?;
        let stored = self.vault().store(ex.lock()?, &session)?;
        if slot.view().unsaved.take().is_some()
            && let Err(e) = ex.lock_mut()?.mark_unsaved(false)
        {
            tracing::debug!(profile, error = %e, "cannot clear the unsaved mark");
        }
        let generation = stored.generation;
        self.settle(
            profile,
            &slot,
            Some(stored.loaded(session)),
            Some(Change::Login),
        );
        Ok((generation, set_aside))
    }
}

impl Engine {
    /// Moves the profile's vault aside when it cannot be read, so the login's write
    /// does not destroy a session that a restored machine key could still open. A
    /// vault of a newer format is never touched: that is an error, as for any write.
    fn set_aside_unreadable(
        &self,
        profile: &str,
        lock: &crate::vault::ProfileLock,
    ) -> Result<Option<std::path::PathBuf>, EngineError> {
        use crate::error::StorageError;
        let error = match self.vault().load(profile) {
            Ok(_) => return Ok(None),
            Err(
                e @ (StorageError::Undecryptable { .. }
                | StorageError::Malformed { .. }
                | StorageError::BadKey { .. }),
            ) => e,
            Err(e) => return Err(e.into()),
        };
        self.vault().check_key_for(profile)?;
        let to = self.vault().set_aside(lock)?;
        if let Some(to) = &to {
            tracing::warn!(
                profile,
                %error,
                moved_to = %to.display(),
                "the previous vault could not be read; it was moved aside, not overwritten"
            );
        }
        Ok(to)
    }
}
