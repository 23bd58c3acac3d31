//! The socket API's bodies (docs/behaviour.md, "Socket API"). Documented for other
//! languages in `docs/openapi.yaml`; the field names here are the contract.
//!
//! Every response carries the `Latchkey-Protocol` header ([`crate::PROTOCOL_VERSION`]);
//! errors are [`crate::error::ErrorDocument`]s with a fitting HTTP status, and the
//! category is authoritative.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::vault::UserInfo;

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    /// RFC 3339.
    pub started_at: String,
}

/// One row of `GET /v1/profiles` and of the operator status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileState {
    pub name: String,
    pub logged_in: bool,
    pub generation: Option<u64>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// The daemon holds a refreshed session it could not write yet (it retries).
    #[serde(default)]
    pub unsaved: bool,
}

/// `GET /v1/profiles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    pub profiles: Vec<ProfileState>,
}

/// `GET /v1/profiles/{p}/token`: the only answer that carries token material.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub access_token: Secret,
    pub token_type: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub generation: u64,
}

/// `GET /v1/profiles/{p}/session`: everything about a session but its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub profile: String,
    pub logged_in: bool,
    pub session_expired: bool,
    pub user: Option<UserInfo>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub expires_in_seconds: Option<i64>,
    pub has_refresh_token: bool,
    pub generation: Option<u64>,
    pub storage: Storage,
    /// The session was refreshed but the disk refused it: it lives only in the
    /// daemon's memory until the write succeeds (the daemon retries).
    #[serde(default)]
    pub unsaved: bool,
}

/// Where a session is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    /// `encrypted_file`.
    pub kind: String,
    pub path: String,
}

/// `POST /v1/profiles/{p}/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refreshed {
    pub profile: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub generation: u64,
}

/// `POST /v1/profiles/{p}/logout` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutRequest {
    #[serde(default = "yes")]
    pub revoke: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/profiles/{p}/logout` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOut {
    /// `revoked`, `local_only` or `not_logged_in`.
    pub outcome: String,
    pub detail: String,
}

/// `POST /v1/profiles/{p}/login` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub flow: LoginFlow,
}

/// Which interactive flow a socket login runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginFlow {
    Device,
    Browser,
}

/// A pending login, as `POST .../login` and `GET /v1/logins/{id}` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub id: String,
    pub profile: String,
    pub flow: LoginFlow,
    /// `pending`, `logged_in` or `failed`.
    pub state: String,
    /// Browser flow: the URL to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// Device flow: what the person types and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorBody>,
}

/// A `session` event on `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub profile: String,
    /// `login`, `refresh`, `logout` or `expired`.
    pub change: String,
    pub generation: Option<u64>,
}

/// The operator counters of `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub token_requests: u64,
    pub refreshes_ok: u64,
    pub refreshes_failed: u64,
    pub kdf_derivations: u64,
    pub vault_reads: u64,
    pub event_subscribers: u64,
}

/// The last refresh the daemon did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRefresh {
    /// RFC 3339.
    pub at: String,
    /// `ok` or the error category.
    pub outcome: String,
}

/// `GET /v1/status` and `latchkey daemon status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    pub uptime_seconds: u64,
    pub socket: String,
    /// `self`, `systemd` or `launchd`.
    pub activation: String,
    pub profiles: Vec<ProfileState>,
    pub counters: Counters,
    pub last_refresh: Option<LastRefresh>,
    pub rss_bytes: Option<u64>,
}
