//! Logins through the socket (editor plugins): one pending login per profile,
//! shared by everyone who asks, with a long-poll for its outcome.
//!
//! `POST /v1/profiles/{p}/login` starts the engine's login in a task and answers as
//! soon as there is something to show (the authorize URL or the device code). A
//! second request for the same profile while one is pending joins it: the same URL
//! or user code, no second browser tab. Token requests never wait on a login.

use std::sync::Arc;
use std::time::Duration;

use latchkey_proto::api::{self, LoginFlow, LoginState};
use tokio::sync::watch;

use super::state::{Daemon, lock};
use crate::error::EngineError;
use crate::session::login::{DeviceCode, Flow, LoginUi};

/// How long a finished login's outcome stays readable at `GET /v1/logins/{id}`.
const KEEP_FINISHED: Duration = Duration::from_secs(600);
/// The longest a `?wait=` long-poll may block.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A login started through the socket.
#[derive(Debug)]
pub struct PendingLogin {
    pub id: String,
    pub profile: String,
    state: watch::Sender<api::Login>,
    finished_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl PendingLogin {
    /// The login as it stands.
    pub fn snapshot(&self) -> api::Login {
        self.state.borrow().clone()
    }

    fn is_pending(&self) -> bool {
        self.state.borrow().state == LoginState::Pending
    }

    /// Waits up to `wait` for the login to finish, then answers its state.
    pub async fn wait(&self, wait: Duration) -> api::Login {
        let mut rx = self.state.subscribe();
        let done = rx.wait_for(|l| l.state != LoginState::Pending);
        if tokio::time::timeout(wait.min(MAX_WAIT), done)
            .await
            .is_err()
        {
            tracing::trace!(id = %self.id, "long-poll ended with the login still pending");
        }
        self.snapshot()
    }
}

/// The engine's view of a socket login: it records what to show.
struct SocketUi(Arc<PendingLogin>);

impl LoginUi for SocketUi {
    fn authorize_url(&self, url: &str) {
        self.0
            .state
            .send_modify(|l| l.authorize_url = Some(url.to_string()));
    }

    fn device_code(&self, c: &DeviceCode) {
        self.0.state.send_modify(|l| {
            l.user_code = Some(c.user_code.clone());
            l.verification_uri = Some(c.verification_uri.clone());
            l.verification_uri_complete = c.verification_uri_complete.clone();
        });
    }

    fn waiting(&self, _time_left: Duration) {}
}

fn login_id() -> Result<String, EngineError> {
    let bytes = crate::vault::crypto::random::<12>()
        .map_err(|_| EngineError::Internal("no random bytes for a login id".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Daemon {
    /// Starts a login for `profile`, or joins the one pending.
    pub async fn start_login(
        self: &Arc<Self>,
        profile: &str,
        flow: LoginFlow,
    ) -> Result<api::Login, EngineError> {
        self.engine.profile(profile)?;
        let pending = {
            let mut logins = lock(&self.logins);
            logins.retain(|_, l| lock(&l.finished_at).is_none_or(|t| t.elapsed() < KEEP_FINISHED));
            if let Some(joined) = logins
                .values()
                .find(|l| l.profile == profile && l.is_pending())
            {
                return Ok(joined.snapshot());
            }
            let id = login_id()?;
            let (state, _) = watch::channel(api::Login {
                id: id.clone(),
                profile: profile.to_string(),
                flow,
                state: LoginState::Pending,
                authorize_url: None,
                user_code: None,
                verification_uri: None,
                verification_uri_complete: None,
                user: None,
                error: None,
            });
            let pending = Arc::new(PendingLogin {
                id: id.clone(),
                profile: profile.to_string(),
                state,
                finished_at: std::sync::Mutex::new(None),
            });
            logins.insert(id, pending.clone());
            pending
        };
        let daemon = self.clone();
        let task_login = pending.clone();
        let engine_flow = match flow {
            LoginFlow::Device => Flow::Device,
            LoginFlow::Browser => Flow::Browser,
        };
        let profile_name = profile.to_string();
        tokio::spawn(async move {
            let ui = SocketUi(task_login.clone());
            let result = daemon
                .engine
                .login(
                    &profile_name,
                    engine_flow,
                    crate::session::login::DEFAULT_LOGIN_TIMEOUT,
                    &ui,
                )
                .await;
            task_login.state.send_modify(|l| match &result {
                Ok(done) => {
                    l.state = LoginState::LoggedIn;
                    l.user = done.user.clone();
                }
                Err(e) => {
                    l.state = LoginState::Failed;
                    l.error = Some(super::routes::error_body(e, &profile_name, None));
                }
            });
            *lock(&task_login.finished_at) = Some(std::time::Instant::now());
        });
        // Answer once there is something to show, or the login already ended.
        let mut rx = pending.state.subscribe();
        let ready = rx.wait_for(|l| {
            l.state != LoginState::Pending || l.authorize_url.is_some() || l.user_code.is_some()
        });
        if tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .is_err()
        {
            tracing::warn!(profile, "the provider took over 30 s to start the login");
        }
        Ok(pending.snapshot())
    }

    /// A login by id.
    pub fn find_login(&self, id: &str) -> Option<Arc<PendingLogin>> {
        lock(&self.logins).get(id).cloned()
    }

    /// The URL or code of a pending login of `profile`, for the hint of a token
    /// request that found no session.
    pub fn pending_login_hint(&self, profile: &str) -> Option<String> {
        let logins = lock(&self.logins);
        let l = logins
            .values()
            .find(|l| l.profile == profile && l.is_pending())?
            .snapshot();
        match (l.authorize_url, l.verification_uri, l.user_code) {
            (Some(url), _, _) => Some(format!("a login is in progress: open {url}")),
            (None, Some(uri), Some(code)) => Some(format!(
                "a login is in progress: visit {uri} and enter {code}"
            )),
            _ => Some("a login is in progress".into()),
        }
    }
}
