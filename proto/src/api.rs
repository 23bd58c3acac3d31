//! The socket API's bodies. Documented for other languages in `docs/openapi.yaml`
//! and `docs/api.md`; the field names and the enumerated strings here are the
//! contract. Which request answers which body is [`crate::request`]'s business.
//!
//! Every response carries the `Latchkey-Protocol` header ([`crate::PROTOCOL_VERSION`]);
//! errors are [`crate::error::ErrorDocument`]s with a fitting HTTP status, and the
//! category is authoritative.
//!
//! The enumerations (`outcome`, `state`, `change`, `activation`) are closed: a value
//! this crate does not know fails to decode, so adding one is a protocol change.

use serde::{Deserialize, Serialize};

use crate::delegation::{Scope, TokenId};
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
    /// The daemon holds a change it could not write yet (it retries): a refreshed
    /// session it serves, or a logout whose vault it could not delete.
    #[serde(default)]
    pub unsaved: bool,
    /// The API the proxy serves for this profile (`[profiles.NAME.proxy]
    /// upstream`); `None` without one.
    #[serde(default)]
    pub upstream: Option<String>,
}

/// `GET /v1/profiles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    pub profiles: Vec<ProfileState>,
}

/// `GET /v1/profiles/{p}/token`: with [`IdToken`], the only answers that carry
/// token material.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub access_token: Secret,
    pub token_type: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub generation: u64,
}

/// `GET /v1/profiles/{p}/id-token`: the session's ID token (a JWT, passed on as
/// the provider issued it; its signature is the relying party's to check).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdToken {
    pub id_token: Secret,
    /// RFC 3339, from the token's own `exp` claim; `None` when it has none.
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

/// `POST /v1/profiles/{p}/logout` answer (and `latchkey logout --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOut {
    pub outcome: LogoutOutcome,
    pub detail: String,
}

/// Which of the three ends a logout came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutOutcome {
    /// The provider revoked the tokens and the local session was deleted.
    Revoked,
    /// The local session was deleted; the provider was not told (`detail` says why).
    LocalOnly,
    /// There was no session.
    NotLoggedIn,
}

impl LogoutOutcome {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogoutOutcome::Revoked => "revoked",
            LogoutOutcome::LocalOnly => "local_only",
            LogoutOutcome::NotLoggedIn => "not_logged_in",
        }
    }
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
    pub state: LoginState,
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

/// Where a socket login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginState {
    Pending,
    LoggedIn,
    Failed,
}

/// A `session` event on `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub profile: String,
    pub change: SessionChange,
    pub generation: Option<u64>,
}

/// What happened to a session, as a `session` event says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionChange {
    Login,
    Refresh,
    Logout,
    Expired,
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
    /// Requests to the API proxy (`/v1/proxy/…`).
    #[serde(default)]
    pub proxy_requests: u64,
    /// Proxied requests sent a second time with a renewed token after a 401.
    #[serde(default)]
    pub proxy_retries: u64,
    /// Proxied requests whose upstream could not be reached or did not answer
    /// in time (502, 504).
    #[serde(default)]
    pub proxy_upstream_errors: u64,
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
    pub activation: Activation,
    pub profiles: Vec<ProfileState>,
    pub counters: Counters,
    pub last_refresh: Option<LastRefresh>,
    pub rss_bytes: Option<u64>,
    /// The file this daemon logs to (an autostarted daemon's `latchkeyd.log`);
    /// `None` for a terminal, a pipe or the journal, and where the platform cannot
    /// say. Absent from daemons older than this field.
    #[serde(default)]
    pub log_file: Option<String>,
}

/// How the daemon got its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// It bound the socket itself.
    #[serde(rename = "self")]
    SelfBound,
    /// systemd passed it (LISTEN_FDS).
    Systemd,
    /// launchd passed it.
    Launchd,
}

impl Activation {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Activation::SelfBound => "self",
            Activation::Systemd => "systemd",
            Activation::Launchd => "launchd",
        }
    }
}

/// `POST /v1/shutdown`'s answer (202).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: bool,
}

/// `POST /v1/client-tokens`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// A label for lists and audit lines (default: `client`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// At least one; each `kind:profile`.
    pub scopes: Vec<Scope>,
    /// Lifetime in seconds; absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/client-tokens`'s answer (201): the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintedToken {
    /// `lk_<id>_<secret>`.
    pub token: Secret,
    pub id: TokenId,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; `null`: until revoked.
    pub expires_at: Option<String>,
}

/// One row of `GET /v1/client-tokens`: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientToken {
    pub id: TokenId,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; `null`: until revoked.
    pub expires_at: Option<String>,
    /// RFC 3339; `null`: never used (as far as written down).
    pub last_used_at: Option<String>,
}

/// `GET /v1/client-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTokens {
    pub tokens: Vec<ClientToken>,
}

/// The answer of an endpoint that answers 204 with no body. JSON `null` in
/// memory, nothing on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoContent;

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings of docs/openapi.yaml, each through serde both ways.
    fn wire<T>(values: &[(T, &str)])
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        for (value, name) in values {
            let json = serde_json::to_string(value).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), value);
        }
        assert!(serde_json::from_str::<T>("\"something_else\"").is_err());
    }

    #[test]
    fn enumerated_strings_keep_their_wire_names() {
        wire(&[
            (LogoutOutcome::Revoked, "revoked"),
            (LogoutOutcome::LocalOnly, "local_only"),
            (LogoutOutcome::NotLoggedIn, "not_logged_in"),
        ]);
        for o in [
            LogoutOutcome::Revoked,
            LogoutOutcome::LocalOnly,
            LogoutOutcome::NotLoggedIn,
        ] {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
        wire(&[
            (LoginState::Pending, "pending"),
            (LoginState::LoggedIn, "logged_in"),
            (LoginState::Failed, "failed"),
        ]);
        wire(&[
            (SessionChange::Login, "login"),
            (SessionChange::Refresh, "refresh"),
            (SessionChange::Logout, "logout"),
            (SessionChange::Expired, "expired"),
        ]);
        wire(&[
            (Activation::SelfBound, "self"),
            (Activation::Systemd, "systemd"),
            (Activation::Launchd, "launchd"),
        ]);
        for a in [
            Activation::SelfBound,
            Activation::Systemd,
            Activation::Launchd,
        ] {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
    }

    #[test]
    fn bodies_are_byte_identical_to_the_documented_ones() {
        let event = SessionEvent {
            profile: "work".into(),
            change: SessionChange::Refresh,
            generation: Some(2),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"profile":"work","change":"refresh","generation":2}"#
        );
        let out = LoggedOut {
            outcome: LogoutOutcome::LocalOnly,
            detail: "down".into(),
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"outcome":"local_only","detail":"down"}"#
        );
        assert_eq!(
            serde_json::to_string(&Stopping { stopping: true }).unwrap(),
            r#"{"stopping":true}"#
        );
    }
}
