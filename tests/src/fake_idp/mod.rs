//! A fake OAuth 2.0 / OIDC identity provider for cross-process tests (tier 2 of
//! docs/behaviour.md, "Test tiers"): loopback only, with counters, a request log,
//! every issued secret on record, and faults scripted per endpoint for the next N
//! requests.
//!
//! Start it in-process with [`FakeIdp::start`] (on the caller's tokio runtime) or
//! [`FakeIdp::start_blocking`] (on its own thread, for synchronous tests), or run the
//! `fake-idp` binary and drive it through the `/_admin/*` endpoints (listed in `admin.rs`).
//!
//! Pitfall: [`FakeIdp::start`] serves on the caller's runtime, so a test on tokio's default
//! current-thread runtime that then blocks its thread (`std::process::Command::output`, a
//! blocking read, `std::thread::sleep`) also stops the provider, and the process under test
//! hangs until its timeout. Use [`FakeIdp::start_blocking`] (its own thread) for such tests,
//! or run the blocking part in `tokio::task::spawn_blocking`.
//!
//! Endpoints, relative to [`FakeIdp::issuer`]:
//! `GET /.well-known/openid-configuration`, `GET /authorize` (signs in at once and
//! redirects), `POST /token` (authorization_code with PKCE S256, refresh_token with
//! rotation and reuse detection, device_code), `POST /device/authorize`, `GET /userinfo`,
//! `POST /revoke`, `GET /jwks` (empty: ID tokens are unsigned).
//!
//! Secrets carry recognisable prefixes so leak checks can grep for them: `fk_at_` access,
//! `fk_rt_` refresh, `fk_ac_` authorization code, `fk_dc_` device code; ID tokens are
//! unsigned JWTs whose third part starts with `fk_it_`.

mod admin;
mod config;
pub mod http;
mod model;
mod routes;
mod server;
mod state;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use config::{ConfigPatch, DeviceApproval, FakeIdpConfig, IssParameter, UserInfo};
pub use model::{
    Counters, DEVICE_CODE_GRANT, Endpoint, EndpointCounters, Fault, FaultScript, GrantCounters,
    IssuedToken, LoggedRequest, TokenKind, fingerprint,
};

use state::Shared;

/// A running fake provider. Dropping it (or [`FakeIdp::shutdown`]) stops it: the listener
/// closes and open connections are cut.
pub struct FakeIdp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Dropping the sender tells the accept loop to stop.
    shutdown: Option<oneshot::Sender<()>>,
    runner: Runner,
}

enum Runner {
    /// A task on the caller's runtime.
    Task(tokio::task::JoinHandle<()>),
    /// A thread with its own runtime, joined on shutdown.
    Thread(Option<thread::JoinHandle<()>>),
}

impl std::fmt::Debug for FakeIdp {
    // Only the address: the state holds live tokens, which must not reach test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIdp")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl FakeIdp {
    /// Starts on `127.0.0.1` with an ephemeral port, on the current tokio runtime.
    ///
    /// # Panics
    /// If no loopback port can be bound, which only a broken test machine causes.
    pub async fn start(cfg: FakeIdpConfig) -> Self {
        Self::start_on(cfg, 0)
            .await
            .expect("invariant: 127.0.0.1 with an ephemeral port can be bound")
    }

    /// Starts on `127.0.0.1:port` (0: ephemeral) on the current tokio runtime.
    pub async fn start_on(cfg: FakeIdpConfig, port: u16) -> io::Result<Self> {
        let listener = TcpListener::bind(loopback(port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(format!("http://{addr}"), cfg));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server::serve(
            listener,
            routes::router(Arc::clone(&shared)),
            rx,
        ));
        Ok(Self {
            shared,
            addr,
            shutdown: Some(tx),
            runner: Runner::Task(task),
        })
    }

    /// Starts on `127.0.0.1` with an ephemeral port, on a thread of its own with its own
    /// runtime: for synchronous tests, or to keep the fake off the runtime under test.
    ///
    /// # Panics
    /// If no loopback port can be bound or no runtime can be built.
    pub fn start_blocking(cfg: FakeIdpConfig) -> Self {
        Self::start_blocking_on(cfg, 0)
            .expect("invariant: 127.0.0.1 with an ephemeral port can be bound")
    }

    /// Like [`FakeIdp::start_blocking`] on `127.0.0.1:port` (0: ephemeral).
    pub fn start_blocking_on(cfg: FakeIdpConfig, port: u16) -> io::Result<Self> {
        // Bind here so a taken port is this call's error, not a panic on another thread.
        let std_listener = std::net::TcpListener::bind(loopback(port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared::new(format!("http://{addr}"), cfg));
        let router = routes::router(Arc::clone(&shared));
        let (tx, rx) = oneshot::channel();
        let thread = thread::Builder::new()
            .name(format!("fake-idp-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    // `from_std` needs the runtime's reactor, hence inside `block_on`.
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => server::serve(listener, router, rx).await,
                        Err(e) => panic!("fake-idp: cannot register the listener: {e}"),
                    }
                });
            })?;
        Ok(Self {
            shared,
            addr,
            shutdown: Some(tx),
            runner: Runner::Thread(Some(thread)),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `issuer + path`, e.g. `idp.url("/token")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.shared.issuer)
    }

    /// Stops it now. With [`FakeIdp::start_blocking`] this returns once the port is closed;
    /// with [`FakeIdp::start`] the accept task stops on its next poll (use
    /// [`FakeIdp::stop`] to wait for it).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Stops it and waits until the listener is closed and every connection is cut.
    pub async fn stop(mut self) {
        self.shutdown.take();
        match &mut self.runner {
            Runner::Task(task) => {
                // A panic in the server would already have failed requests; nothing to add.
                let _ = task.await;
            }
            Runner::Thread(thread) => {
                if let Some(thread) = thread.take() {
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            }
        }
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> FakeIdpConfig {
        self.shared.lock().cfg.clone()
    }

    /// Changes the configuration; applies to every request from now on (tokens already
    /// issued keep the lifetime they were issued with).
    pub fn set_config(&self, change: impl FnOnce(&mut FakeIdpConfig)) {
        change(&mut self.shared.lock().cfg);
    }

    /// Applies a partial update, as `POST /_admin/config` does.
    pub fn update_config(&self, patch: &ConfigPatch) -> Result<(), String> {
        patch.apply(&mut self.shared.lock().cfg)
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Zeroes the counters, returning their previous values.
    pub fn reset_counters(&self) -> Counters {
        std::mem::take(&mut self.shared.lock().counters)
    }

    /// Every request so far (admin requests excluded), in arrival order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Empties the request log (sequence numbers keep counting).
    pub fn clear_log(&self) {
        self.shared.lock().log.clear();
    }

    /// Every access, refresh and ID token, authorization code and device code ever issued,
    /// in issue order (not user codes: those are meant to be shown).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared
            .lock()
            .issued
            .iter()
            .map(|t| t.value.clone())
            .collect()
    }

    /// The issued secrets of one kind, in issue order.
    pub fn issued(&self, kind: TokenKind) -> Vec<String> {
        self.shared
            .lock()
            .issued
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.value.clone())
            .collect()
    }

    /// The next `count` requests to `endpoint` (every endpoint for [`Endpoint::Any`]) get
    /// `fault`. Scripts queue up: a request takes the oldest script that matches it.
    pub fn push_faults(&self, endpoint: Endpoint, fault: Fault, count: usize) {
        self.shared.lock().push_faults(endpoint, fault, count);
    }

    /// Scripts still pending, oldest first.
    pub fn pending_faults(&self) -> Vec<FaultScript> {
        self.shared.lock().faults.clone()
    }

    /// Drops every pending script.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Revokes every grant: all tokens issued so far stop working.
    pub fn revoke_all(&self) {
        self.shared.lock().revoke_all();
    }

    /// Makes every access token issued so far expired (refresh tokens are untouched).
    pub fn expire_access_tokens(&self) {
        self.shared.lock().expire_access_tokens();
    }

    /// Makes every device code issued so far expired.
    pub fn expire_device_codes(&self) {
        self.shared.lock().expire_device_codes();
    }

    /// Whether the provider would accept `token` (access or refresh) now.
    pub fn is_active(&self, token: &str) -> bool {
        self.shared.lock().is_active(token)
    }

    /// The check a relying party makes of an ID token, as a function a test server
    /// can keep: this provider issued it (its signature, here) and its `exp` has
    /// not passed.
    pub fn id_token_check(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move |token: &str| {
            let issued = shared
                .lock()
                .issued
                .iter()
                .any(|t| t.kind == TokenKind::IdToken && t.value == token);
            let exp = latchkey_daemon::session::id_token::jwt_expiry(token);
            issued && exp.is_some_and(|e| e > latchkey_daemon::vault::unix_now())
        }
    }

    /// Approves the device authorization showing `user_code`; false when there is none.
    pub fn approve_device(&self, user_code: &str) -> bool {
        self.shared.lock().decide_device(user_code, true)
    }

    /// Denies the device authorization showing `user_code`; false when there is none.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.shared.lock().decide_device(user_code, false)
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.shutdown.take();
        match &mut self.runner {
            // The task sees the dropped sender and stops; aborting also covers a runtime
            // that is itself shutting down.
            Runner::Task(task) => task.abort(),
            Runner::Thread(thread) => {
                if let Some(thread) = thread.take() {
                    // A panicked server thread has nothing left to clean up.
                    let _ = thread.join();
                }
            }
        }
    }
}
