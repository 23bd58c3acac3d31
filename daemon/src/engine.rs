//! The engine facade: what the daemon, the client's embedded path and doctor call.
//!
//! It ties the resolved paths, the configuration, the vault and the provider client
//! together, and owns the session service ([`crate::session`]): the per-profile
//! state (single flight, the cache checked by file identity, the unsaved session),
//! the refresh tasks nobody can cancel, and the change feed. Every operation takes
//! a profile name already resolved by the caller.
//!
//! Operations that may refresh take `self: &Arc<Engine>`: a refresh runs in a task
//! of its own, which must own the engine.
//!
//! Architecture invariant: blocking work (a key derivation, which a vault header can
//! make take seconds, and every fsync'd write) never runs on an async thread. The
//! engine's rules are written as plain functions (`*_blocking`), and the async
//! operations run them through [`Engine::blocking`] on tokio's blocking pool, so
//! the daemon's one runtime thread keeps answering its socket meanwhile. Callers
//! without a runtime (doctor, the CLI's last write) call the `*_blocking` functions
//! directly. A read that memory can answer (one `lstat`) stays inline: it is the
//! token hot path.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use latchkey_proto::paths::{EnvInputs, Paths};
use latchkey_proto::secret::Secret;

use latchkey_proto::delegation::Scope;

use crate::config::{Config, ProfileConfig};
use crate::delegation::{ClientTokens, Minted};
use crate::error::{ConfigError, EngineError};
use crate::oauth::http::Http;
use crate::session::slot::{Exclusive, Sessions, Slot};
use crate::vault::{self, Loaded, ProfileLock, Vault};

/// The default `--min-ttl` of `latchkey token`.
pub const DEFAULT_MIN_TTL: u64 = 60;

/// How a token was answered, for the daemon's audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The session in hand was fresh enough (or still valid while a refresh could
    /// not happen).
    AsHeld,
    /// A refresh ran for this request (or joined one in flight).
    Refreshed,
}

/// An access token as handed to a caller. The token stays in its [`Secret`].
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub access_token: Secret,
    pub token_type: String,
    /// Unix seconds, when known.
    pub expires_at: Option<i64>,
    /// The generation of the vault this session is (or, unsaved, will be) in.
    pub generation: u64,
    pub served: Served,
}

/// Reads the environment variables the path rules use. This is the one place that
/// turns the process environment into [`EnvInputs`].
pub fn process_env() -> EnvInputs {
    let var = |k: &str| std::env::var_os(k).map(std::path::PathBuf::from);
    EnvInputs {
        latchkey_home: var("LATCHKEY_HOME"),
        latchkey_socket: var("LATCHKEY_SOCKET"),
        xdg_config_home: var("XDG_CONFIG_HOME"),
        xdg_state_home: var("XDG_STATE_HOME"),
        xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
        home: var("HOME").or_else(|| var("USERPROFILE")),
        temp_dir: std::env::temp_dir(),
        uid: vault::fs::current_uid().unwrap_or(0),
    }
}

/// The engine over one Latchkey home and its configuration.
#[derive(Debug)]
pub struct Engine {
    paths: Paths,
    /// Swappable, so a long-lived daemon picks up profiles added after it started.
    /// A std RwLock: read for a clone of the `Arc`, never held across an await.
    config: RwLock<Arc<Config>>,
    vault: Arc<Vault>,
    lock_timeout: Duration,
    http: OnceLock<Http>,
    upstreams: OnceLock<crate::proxy::Upstreams>,
    /// Per profile, the generation the last renewal after a rejection produced,
    /// and when (`Engine::renew_rejected`).
    pub(crate) renewals:
        std::sync::Mutex<std::collections::HashMap<String, (u64, std::time::Instant)>>,
    pub(crate) sessions: Sessions,
    client_tokens: ClientTokens,
}

impl Engine {
    /// An engine over `paths` with `config`.
    pub fn new(paths: Paths, config: Config) -> Engine {
        let vault = Arc::new(Vault::new(paths.state_dir.clone(), config.vault.kdf()));
        Engine {
            client_tokens: ClientTokens::new(&paths.state_dir),
            paths,
            config: RwLock::new(Arc::new(config)),
            vault,
            lock_timeout: vault::DEFAULT_LOCK_TIMEOUT,
            http: OnceLock::new(),
            upstreams: OnceLock::new(),
            renewals: std::sync::Mutex::default(),
            sessions: Sessions::default(),
        }
    }

    /// Changes the bounded wait for profile locks (tests, tools).
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the configuration (the daemon calls this when config.toml changed).
    /// The vault's KDF parameters stay those the engine started with. Cached views
    /// are dropped, since a profile may now point elsewhere; unsaved sessions are
    /// kept, since they exist nowhere else.
    pub fn set_config(&self, config: Config) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
        self.sessions.forget_views();
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The client tokens of this home (checking them; see [`Engine::mint_client_token`]).
    pub fn client_tokens(&self) -> &ClientTokens {
        &self.client_tokens
    }

    /// Mints a client token whose scopes all name configured profiles (a typo would
    /// otherwise make a token that can do nothing). Blocking: it writes the file.
    pub fn mint_client_token(
        &self,
        name: Option<String>,
        scopes: Vec<Scope>,
        ttl_seconds: Option<u64>,
    ) -> Result<Minted, EngineError> {
        for s in &scopes {
            self.profile(&s.profile)?;
        }
        Ok(self
            .client_tokens
            .mint(name, scopes, ttl_seconds, vault::unix_now())?)
    }

    /// The configuration of `profile`.
    pub fn profile(&self, profile: &str) -> Result<ProfileConfig, EngineError> {
        let config = self.config();
        config.profiles.get(profile).cloned().ok_or_else(|| {
            ConfigError::UnknownProfile {
                name: profile.to_string(),
                known: config.profile_names(),
            }
            .into()
        })
    }

    /// The provider HTTP client, built on first use.
    pub fn http(&self, profile: &str) -> Result<&Http, EngineError> {
        if let Some(h) = self.http.get() {
            return Ok(h);
        }
        let built = Http::new().map_err(|error| EngineError::OAuth {
            profile: profile.to_string(),
            error,
        })?;
        Ok(self.http.get_or_init(|| built))
    }

    /// The API proxy's HTTP client, made on first use.
    pub(crate) fn upstreams(&self) -> Result<&crate::proxy::Upstreams, EngineError> {
        if let Some(u) = self.upstreams.get() {
            return Ok(u);
        }
        let built = crate::proxy::Upstreams::new()?;
        Ok(self.upstreams.get_or_init(|| built))
    }

    /// Runs `work` on the blocking pool (see the module documentation) and waits for
    /// it. The work cannot be cancelled once started: a caller that gives up only
    /// stops waiting.
    pub(crate) async fn blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, EngineError>
    where
        F: FnOnce(&Engine) -> T + Send + 'static,
        T: Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|e| EngineError::Internal(format!("a blocking task failed: {e}")))
    }

    /// [`Engine::blocking`] for work under a profile's single flight and file lock:
    /// `ex` travels to the blocking thread and back.
    pub(crate) async fn blocking_exclusive<T, F>(
        self: &Arc<Self>,
        ex: Exclusive,
        work: F,
    ) -> Result<(Exclusive, T), EngineError>
    where
        F: FnOnce(&Engine, &mut Exclusive) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.blocking(move |engine| {
            let mut ex = ex;
            let out = work(engine, &mut ex);
            (ex, out)
        })
        .await
    }

    /// Takes the profile's file lock without blocking the async runtime.
    pub(crate) async fn lock(&self, profile: &str) -> Result<ProfileLock, EngineError> {
        let vault = self.vault.clone();
        let profile = profile.to_string();
        let timeout = self.lock_timeout;
        tokio::task::spawn_blocking(move || vault.lock(&profile, timeout))
            .await
            .map_err(|e| EngineError::Internal(format!("the lock task failed: {e}")))?
            .map_err(EngineError::from)
    }

    /// The profile's single flight together with its file lock: the lock an unsaved
    /// session keeps, or one taken now (bounded wait). Every read-modify-write of a
    /// session starts here.
    pub(crate) async fn exclusive(
        &self,
        slot: &Arc<Slot>,
        profile: &str,
    ) -> Result<Exclusive, EngineError> {
        let mut ex = slot.exclusive().await;
        if !ex.has_lock() {
            ex.set_lock(self.lock(profile).await?);
        }
        Ok(ex)
    }

    /// Loads the vault of `profile` and checks it belongs to the configured provider.
    pub(crate) fn load(&self, profile: &str) -> Result<Option<Loaded>, EngineError> {
        // An unknown profile is a usage error before it is anything else.
        let configured = self.profile(profile)?;
        let Some(loaded) = self.vault.load(profile)? else {
            return Ok(None);
        };
        if loaded.session.issuer != configured.issuer
            || loaded.session.client_id != configured.client_id
        {
            // The profile was re-pointed at another provider or client: this session
            // must not be sent there, so it counts as absent until the next login.
            return Err(EngineError::NotLoggedIn {
                profile: profile.to_string(),
            });
        }
        Ok(Some(loaded))
    }
}
