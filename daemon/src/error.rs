//! The engine's typed errors and their one mapping to error categories
//! (docs/behaviour.md, "Exit codes and error categories").
//!
//! Messages are written for people and name the file or profile concerned; they
//! never contain token material, keys or raw server bodies. Detail that only helps
//! debugging stays in `source()` chains and logs, not in the message.

use std::path::PathBuf;

use latchkey_proto::error::Category;

use crate::delegation::DelegationError;
use crate::proxy::ProxyError;

/// Why a vault, key, lock or config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Decryption failed: the file was changed, truncated or encrypted with another
    /// key. Deliberately one coarse variant, so the error is no oracle.
    #[error("the vault {} cannot be decrypted: it is corrupt, was tampered with, or was written with another key", path.display())]
    Undecryptable { path: PathBuf },
    #[error("the vault {} is not a valid Latchkey vault ({reason})", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("the vault {} has format version {found}, newer than this Latchkey understands ({supported}); upgrade Latchkey, the file is left untouched", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    #[error("refusing {}: {reason}", path.display())]
    Insecure { path: PathBuf, reason: String },
    #[error("timed out after {waited_secs} s waiting for the lock {}{}", path.display(), holder.map(|p| format!(" held by pid {p}")).unwrap_or_default())]
    LockTimeout {
        path: PathBuf,
        waited_secs: u64,
        holder: Option<u32>,
    },
    /// Another process holds the profile's lock for a change the disk refused: a
    /// session it refreshed (the vault's refresh token is spent, so nobody else may
    /// use it) or a logout (the vault's tokens are revoked or spent).
    #[error("the session of this profile was refreshed or logged out by {}, and the disk refused the change; its lock {} stays held until the change is saved", holder.map_or_else(|| "another process".to_string(), |p| format!("process {p}")), path.display())]
    HeldUnsaved { path: PathBuf, holder: Option<u32> },
    #[error("the machine key {} is invalid ({reason})", path.display())]
    BadKey { path: PathBuf, reason: String },
    /// The machine key is gone while vaults encrypted with it remain: making a new
    /// key would leave them undecryptable for good.
    #[error("the machine key {} is missing, and the vaults of {} were encrypted with it; a new key would orphan them", path.display(), vaults.join(", "))]
    KeyMissing { path: PathBuf, vaults: Vec<String> },
    #[error("could not get random bytes from the operating system")]
    Random,
}

/// Why the configuration is unusable or a profile command was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{} is not valid: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("invalid issuer {issuer:?}: {reason}")]
    Issuer { issuer: String, reason: String },
    #[error("invalid profile name {name:?}: {reason}")]
    ProfileName { name: String, reason: String },
    #[error("profile {0:?} already exists")]
    ProfileExists(String),
    #[error("no profile named {name:?}{}", known_list(known))]
    UnknownProfile { name: String, known: Vec<String> },
    #[error("no profile is configured")]
    NoProfiles,
    #[error(
        "several profiles are configured and none is chosen{}",
        known_list(known)
    )]
    AmbiguousProfile { known: Vec<String> },
    #[error("invalid value for {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (profiles: {})", known.join(", "))
    }
}

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("not logged in to profile {profile:?}")]
    NotLoggedIn { profile: String },
    /// The session holds no ID token (the provider issued none: a login without
    /// the `openid` scope, or a plain OAuth provider).
    #[error("the session of profile {profile:?} has no ID token")]
    NoIdToken { profile: String },
    /// The ID token expired and a refresh brought no new one (a provider that
    /// issues ID tokens at login only).
    #[error(
        "the ID token of profile {profile:?} has expired and the provider's refresh did not renew it"
    )]
    IdTokenNotRenewed { profile: String },
    #[error("the session of profile {profile:?}{} has expired and cannot be refreshed", user.as_ref().map(|u| format!(" ({u})")).unwrap_or_default())]
    SessionExpired {
        profile: String,
        user: Option<String>,
    },
    #[error("cannot resolve Latchkey's folders: {0}")]
    Paths(#[from] latchkey_proto::paths::PathError),
    /// A provider exchange failed for `profile`.
    #[error("{error}")]
    OAuth {
        profile: String,
        #[source]
        error: crate::oauth::OAuthError,
    },
    /// The provider rotated the session but writing it failed: the session lives
    /// only in this process's memory until a write succeeds (the engine keeps it as
    /// the current session; see `session::unsaved`).
    #[error(
        "the change to the session of profile {profile:?} (a refresh or a logout) could not be saved: {source}"
    )]
    Unsaved {
        profile: String,
        #[source]
        source: StorageError,
    },
    /// A bug: an invariant did not hold. The message says which.
    #[error(transparent)]
    Delegation(#[from] crate::delegation::DelegationError),
    /// The API proxy could not forward a request.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The profile was logged out while this login was pending, which ends it.
    #[error(
        "the login of profile {profile:?} ended: the profile was logged out while it was pending"
    )]
    LoginAbandoned { profile: String },
    /// A graceful stop began before this work sent anything to the provider, so
    /// it was not started (work already sent is always finished and saved).
    #[error("latchkeyd is stopping; nothing was sent to the provider")]
    Stopping,
    #[error("internal error: {0}")]
    Internal(String),
}

fn oauth_hint(profile: &str, error: &crate::oauth::OAuthError) -> Option<String> {
    let login = || Some(format!("run `latchkey login --profile {profile}`"));
    match error.category() {
        Category::SessionExpired | Category::NotLoggedIn => login(),
        Category::Transport => {
            Some("check the network or the provider's status, then try again".into())
        }
        Category::Usage => Some(format!(
            "check the settings of profile {profile} in config.toml (issuer, client_id, scopes, endpoints)"
        )),
        Category::Forbidden => {
            Some("your account is not allowed this access; ask the provider's administrator".into())
        }
        Category::Server => {
            Some("the provider misbehaved; try again later or report it to its operators".into())
        }
        _ => None,
    }
}

impl StorageError {
    /// Shorthand for an I/O failure on a path.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StorageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl EngineError {
    /// The one mapping from engine errors to error categories.
    pub fn category(&self) -> Category {
        match self {
            EngineError::Config(ConfigError::Storage(_))
            | EngineError::Storage(_)
            | EngineError::Unsaved { .. } => Category::LocalStorage,
            EngineError::Config(_) | EngineError::Paths(_) => Category::Usage,
            EngineError::NotLoggedIn { .. }
            | EngineError::NoIdToken { .. }
            | EngineError::LoginAbandoned { .. } => Category::NotLoggedIn,
            EngineError::SessionExpired { .. } | EngineError::IdTokenNotRenewed { .. } => {
                Category::SessionExpired
            }
            EngineError::Stopping => Category::Transport,
            EngineError::OAuth { error, .. } => error.category(),
            EngineError::Delegation(e) => match e {
                DelegationError::Invalid(_) | DelegationError::NotFound(_) => Category::Usage,
                DelegationError::Malformed { .. } | DelegationError::Storage(_) => {
                    Category::LocalStorage
                }
                DelegationError::Internal(_) => Category::Internal,
            },
            EngineError::Proxy(e) => match e {
                ProxyError::NoUpstream { .. } | ProxyError::Path(_) | ProxyError::Body(_) => {
                    Category::Usage
                }
                ProxyError::Unreachable { .. } | ProxyError::TooSlow { .. } => Category::Transport,
                ProxyError::NotAllowed { .. } => Category::Forbidden,
            },
            EngineError::Internal(_) => Category::Internal,
        }
    }

    /// Whether trying again later may succeed without the person doing anything.
    pub fn retryable(&self) -> bool {
        match self {
            EngineError::Storage(StorageError::LockTimeout { .. }) | EngineError::Stopping => true,
            EngineError::OAuth { error, .. } => error.retryable(),
            EngineError::Proxy(ProxyError::Unreachable { .. } | ProxyError::TooSlow { .. }) => true,
            _ => false,
        }
    }

    /// The next step for the person, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::NotLoggedIn { profile }
            | EngineError::SessionExpired { profile, .. }
            | EngineError::LoginAbandoned { profile } => {
                Some(format!("run `latchkey login --profile {profile}`"))
            }
            EngineError::IdTokenNotRenewed { profile } => Some(format!(
                "run `latchkey login --profile {profile}` for a new one, or use the access token (`--access-token`)"
            )),
            EngineError::NoIdToken { profile } => Some(format!(
                "log in with the `openid` scope (`latchkey login --profile {profile}`), or use the access token (`--access-token`)"
            )),
            EngineError::Config(ConfigError::NoProfiles) => Some(
                "add one with `latchkey profile add NAME --issuer URL --client-id ID`".into(),
            ),
            EngineError::Config(ConfigError::AmbiguousProfile { .. }) => Some(
                "pass --profile NAME, set LATCHKEY_PROFILE, or run `latchkey profile default NAME`"
                    .into(),
            ),
            EngineError::Config(ConfigError::UnknownProfile { .. }) => {
                Some("see `latchkey profile list`".into())
            }
            EngineError::Config(ConfigError::ProfileExists(name)) => Some(format!(
                "remove it first with `latchkey profile remove {name}`"
            )),
            EngineError::Storage(StorageError::UnsupportedVersion { .. }) => {
                Some("upgrade Latchkey to a version that knows this vault format".into())
            }
            EngineError::Storage(StorageError::BadKey { path, .. })
            | EngineError::Config(ConfigError::Storage(StorageError::BadKey { path, .. })) => Some(format!(
                "restore the machine key {}, or log in again to start a new session",
                path.display()
            )),
            EngineError::Config(ConfigError::Parse { path, .. }) => Some(format!(
                "fix {} (see the README for its format), or move it aside and add the profile again",
                path.display()
            )),
            EngineError::Storage(StorageError::Undecryptable { .. }) => Some(
                "if the machine key was replaced, restore it; otherwise log in again".into(),
            ),
            EngineError::Storage(StorageError::Insecure { .. }) => Some(
                "fix the owner and mode (folders 0700, files 0600, owned by you); `latchkey doctor` explains".into(),
            ),
            EngineError::Storage(StorageError::LockTimeout { .. }) => {
                Some("another latchkey process holds the lock; try again".into())
            }
            EngineError::Storage(StorageError::KeyMissing { path, vaults }) => Some(format!(
                "restore {} from a backup; or, to give those sessions up, run `latchkey logout --local --profile NAME` for each of {}, then log in again",
                path.display(),
                vaults.join(", ")
            )),
            EngineError::Storage(StorageError::Io { .. }) => Some(
                "check that the disk has free space and the state folder is writable; `latchkey doctor` explains".into(),
            ),
            EngineError::Storage(StorageError::HeldUnsaved { .. }) => Some(
                "free disk space or fix the state folder's permissions: the holder saves the session as soon as it can (`latchkey daemon status` shows it as unsaved); meanwhile ask through the daemon".into(),
            ),
            EngineError::OAuth { profile, error } => oauth_hint(profile, error),
            EngineError::Delegation(DelegationError::NotFound(_)) => {
                Some("see `latchkey client-token list`".into())
            }
            EngineError::Delegation(DelegationError::Malformed { path, .. }) => Some(format!(
                "move {} aside (every client token in it stops working) or restore it from a backup",
                path.display()
            )),
            EngineError::Delegation(DelegationError::Storage(StorageError::Io { .. })) => Some(
                "check that the disk has free space and the state folder is writable; `latchkey doctor` explains".into(),
            ),
            EngineError::Delegation(DelegationError::Storage(StorageError::Insecure { .. })) => Some(
                "fix the owner and mode (folders 0700, files 0600, owned by you); `latchkey doctor` explains".into(),
            ),
            EngineError::Proxy(ProxyError::NoUpstream { profile }) => Some(format!(
                "add `[profiles.{profile}.proxy]` with `upstream = \"https://api.example.com\"` to config.toml"
            )),
            EngineError::Proxy(ProxyError::Unreachable { .. } | ProxyError::TooSlow { .. }) => {
                Some("check the upstream's address in config.toml and that it is up, then try again".into())
            }
            EngineError::Proxy(ProxyError::NotAllowed { profile, .. }) => Some(format!(
                "the owner decides what may be called: `allow` in [profiles.{profile}.proxy] of config.toml"
            )),
            EngineError::Stopping => Some("try again: the next call starts a daemon or works without one".into()),
            EngineError::Unsaved { .. } => Some(
                "free disk space or fix the state folder's permissions; a running daemon keeps the change and retries".into(),
            ),
            _ => None,
        }
    }
}
