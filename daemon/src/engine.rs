//! The engine facade: what the CLI's embedded path (and later the daemon) calls.
//!
//! It ties the resolved paths, the configuration, the vault and the provider client
//! together. Every operation takes a profile name already resolved by the caller.
//! The session operations themselves live in `session/`; this module owns the
//! shared state they need: the vault, the lazily built HTTP client (commands that
//! stay offline never build one) and the in-process single-flight slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use latchkey_proto::paths::{EnvInputs, Paths};
use latchkey_proto::secret::Secret;

use crate::config::{Config, ProfileConfig};
use crate::error::{ConfigError, EngineError};
use crate::oauth::http::Http;
use crate::vault::{self, Loaded, ProfileLock, Vault};

/// The default `--min-ttl` of `latchkey token` (SPEC §4).
pub const DEFAULT_MIN_TTL: u64 = 60;

/// An access token as handed to a caller. The token stays in its [`Secret`].
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub access_token: Secret,
    pub token_type: String,
    /// Unix seconds, when known.
    pub expires_at: Option<i64>,
    pub generation: u64,
}

impl AccessToken {
    pub(crate) fn from_loaded(l: &Loaded) -> AccessToken {
        AccessToken {
            access_token: l.session.access_token.clone(),
            token_type: l.session.token_type.clone(),
            expires_at: l.session.expires_at,
            generation: l.generation,
        }
    }
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
    /// One async mutex per profile: callers in this process queue behind the refresh
    /// in flight instead of all taking the file lock. The outer std Mutex only
    /// guards the map and is never held across an await.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Engine {
    /// An engine over `paths` with `config`.
    pub fn new(paths: Paths, config: Config) -> Engine {
        let vault = Arc::new(Vault::new(paths.state_dir.clone(), config.vault.kdf()));
        Engine {
            paths,
            config: RwLock::new(Arc::new(config)),
            vault,
            lock_timeout: vault::DEFAULT_LOCK_TIMEOUT,
            http: OnceLock::new(),
            flights: Mutex::new(HashMap::new()),
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
    /// The vault's KDF parameters stay those the engine started with.
    pub fn set_config(&self, config: Config) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
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

    /// The in-process single-flight slot of `profile`.
    pub(crate) fn flight(&self, profile: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(profile.to_string())
            .or_default()
            .clone()
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
