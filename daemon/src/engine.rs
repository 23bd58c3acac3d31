//! The engine facade: what the CLI's embedded path (and later the daemon) calls.
//!
//! It ties the resolved paths, the configuration and the vault together. Every
//! operation takes the profile name already resolved by the caller, so the facade
//! never guesses. The OAuth flows and the refresh transaction arrive with the next
//! issue; today the facade serves a stored token when it is fresh enough.

use std::time::Duration;

use latchkey_proto::paths::{EnvInputs, Paths};
use latchkey_proto::secret::Secret;
use latchkey_proto::vault::KdfParams;

use crate::config::Config;
use crate::error::EngineError;
use crate::policy;
use crate::vault::{self, Vault};

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

/// The engine over one Latchkey home.
#[derive(Debug)]
pub struct Engine {
    paths: Paths,
    vault: Vault,
    lock_timeout: Duration,
}

impl Engine {
    /// An engine over `paths` that writes new vaults with `kdf`.
    pub fn new(paths: Paths, kdf: KdfParams) -> Engine {
        let vault = Vault::new(paths.state_dir.clone(), kdf);
        Engine {
            paths,
            vault,
            lock_timeout: vault::DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// An engine configured from `config`.
    pub fn with_config(paths: Paths, config: &Config) -> Engine {
        Engine::new(paths, config.vault.kdf())
    }

    /// Changes the bounded wait for profile locks (tests, tools).
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// An access token for `profile` that stays valid for `min_ttl` seconds or is
    /// fresh enough by the rules of [`policy::is_fresh_enough`].
    pub fn token(&self, profile: &str, min_ttl: u64) -> Result<AccessToken, EngineError> {
        let loaded = self
            .vault
            .load(profile)?
            .ok_or_else(|| EngineError::NotLoggedIn {
                profile: profile.to_string(),
            })?;
        let s = &loaded.session;
        let expired = || EngineError::SessionExpired {
            profile: profile.to_string(),
            user: s
                .user
                .as_ref()
                .map(|u| u.email.clone().unwrap_or_else(|| u.sub.clone())),
        };
        if s.expired {
            return Err(expired());
        }
        if !policy::is_fresh_enough(vault::unix_now(), s.issued_at, s.expires_at, min_ttl) {
            // Refreshing is the next issue's refresh transaction; until then a stale
            // token means the person has to log in again.
            return Err(expired());
        }
        Ok(AccessToken {
            access_token: s.access_token.clone(),
            token_type: s.token_type.clone(),
            expires_at: s.expires_at,
            generation: loaded.generation,
        })
    }

    /// Deletes the local session of `profile` under its lock; `Ok(false)` when
    /// there was none.
    pub fn delete_session(&self, profile: &str) -> Result<bool, EngineError> {
        let lock = self.vault.lock(profile, self.lock_timeout)?;
        Ok(self.vault.delete(&lock)?)
    }
}
