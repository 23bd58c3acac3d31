//! The fake provider's observable vocabulary: endpoints, scripted faults, counters, the
//! request log, issued-token records and the fingerprint used instead of raw tokens.
//!
//! Everything here is plain data with serde support, so the same types describe the
//! in-process handle and the JSON of the `/_admin/*` endpoints of the `fake-idp` binary.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The grant type URN of the device authorization grant (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A provider endpoint, for fault scripting and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /.well-known/openid-configuration` (and `/.well-known/oauth-authorization-server`).
    Discovery,
    /// `GET /authorize`.
    Authorize,
    /// `POST /token`, every grant type.
    Token,
    /// `POST /device/authorize`.
    DeviceAuthorization,
    /// `GET|POST /userinfo`.
    Userinfo,
    /// `POST /revoke`.
    Revocation,
    /// Only for [`Fault`] scripting: matches every endpoint above (never the admin ones).
    Any,
}

impl Endpoint {
    /// The endpoint a request path belongs to; `None` for admin and unknown paths.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
                Some(Self::Discovery)
            }
            "/authorize" => Some(Self::Authorize),
            "/token" => Some(Self::Token),
            "/device/authorize" => Some(Self::DeviceAuthorization),
            "/userinfo" => Some(Self::Userinfo),
            "/revoke" => Some(Self::Revocation),
            _ => None,
        }
    }

    /// Whether a fault scripted for `self` applies to a request to `target`.
    pub(crate) fn matches(self, target: Self) -> bool {
        self == Self::Any || self == target
    }
}

/// A misbehaviour served instead of (or, for [`Fault::Slow`], before) the normal answer.
///
/// JSON form (admin endpoint): `"status500"`, `"status503"`, `"status429"`, `"status409"`,
/// `"invalid_grant"`, `"forbidden403"`, `"malformed_json"`, `"connection_reset"`,
/// `{"slow": MILLISECONDS}`, or `{"redirect": PORT}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// 500 with a plain-text body, as a crashed upstream would answer.
    Status500,
    /// 503 with a plain-text body and `Retry-After: 1`.
    Status503,
    /// 429 with a plain-text body and `Retry-After: 1`.
    Status429,
    /// 409 with `{"error":"conflict"}`: what some providers answer to a concurrent refresh.
    Status409,
    /// 400 with `{"error":"invalid_grant"}`; the presented grant is NOT consumed or revoked.
    InvalidGrant,
    /// 403 with `{"error":"forbidden"}`.
    Forbidden403,
    /// Sleep this long, then answer normally (the request is processed after the sleep).
    Slow(#[serde(with = "millis")] Duration),
    /// 200, `content-type: application/json`, and a truncated JSON document.
    MalformedJson,
    /// 302 to `http://127.0.0.1:PORT/elsewhere`: another host, for the API proxy's
    /// "redirects are passed back, never followed" rule.
    Redirect(u16),
    /// No HTTP response at all: the connection is closed with SO_LINGER 0, so the client
    /// sees a TCP reset (or EOF) after sending its request.
    ConnectionReset,
}

/// Serde for [`Fault::Slow`]: a duration as whole milliseconds, which reads well in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// One pending fault script: the next `remaining` requests to `endpoint` get `fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultScript {
    /// Which endpoint it targets ([`Endpoint::Any`] for all).
    pub endpoint: Endpoint,
    /// What those requests get.
    pub fault: Fault,
    /// How many more requests get it (the JSON of `POST /_admin/faults` calls it `count`).
    #[serde(alias = "count")]
    pub remaining: usize,
}

/// Requests received, per endpoint (faulted ones included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounters {
    /// Discovery document requests.
    pub discovery: u64,
    /// `/authorize` requests.
    pub authorize: u64,
    /// `/token` requests, every grant type.
    pub token: u64,
    /// `/device/authorize` requests.
    pub device_authorization: u64,
    /// `/userinfo` requests (the "userinfo calls").
    pub userinfo: u64,
    /// `/revoke` requests.
    pub revocation: u64,
    /// Requests to unknown paths (404), admin endpoints excluded.
    pub other: u64,
}

/// `/token` requests received, per grant type (faulted ones included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantCounters {
    /// `authorization_code`.
    pub authorization_code: u64,
    /// `refresh_token`.
    pub refresh_token: u64,
    /// `urn:ietf:params:oauth:grant-type:device_code` (each one is a device poll).
    pub device_code: u64,
    /// Anything else, including a missing grant_type.
    pub other: u64,
}

/// What the provider has seen and done since it started (or since `reset_counters`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests per endpoint.
    pub requests: EndpointCounters,
    /// Token requests per grant type.
    pub token_requests: GrantCounters,
    /// Authorization codes issued by `/authorize`.
    pub authorizations: u64,
    /// Successful token responses, every grant type.
    pub token_successes: u64,
    /// Successful refresh_token grants.
    pub refresh_successes: u64,
    /// Answers carrying `invalid_grant`, scripted faults included.
    pub invalid_grant: u64,
    /// Reuse of a rotated refresh token or a used authorization code (with reuse detection on).
    pub reuse_detections: u64,
    /// Grants revoked as a whole (reuse detection, refresh-token revocation, `revoke_all`).
    pub grants_revoked: u64,
    /// Known tokens revoked through `/revoke` (unknown ones are answered 200 but not counted).
    pub revocations: u64,
    /// Userinfo calls answered 200.
    pub userinfo_ok: u64,
    /// Userinfo calls answered 401.
    pub userinfo_rejected: u64,
    /// Device codes issued by `/device/authorize`.
    pub device_authorizations: u64,
    /// Requests that got a scripted fault.
    pub faults_served: u64,
    /// Client authentications with the configured secret, by HTTP Basic and in the form.
    pub client_secret_basic: u64,
    pub client_secret_post: u64,
}

/// One request as the provider saw it. Tokens appear only as [`fingerprint`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// Arrival order, from 0.
    pub seq: u64,
    /// Arrival time in milliseconds since the provider started (monotonic clock).
    pub at_ms: u64,
    /// When the response was handed to the connection, in milliseconds since the provider
    /// started; `None` when no response was sent.
    pub done_ms: Option<u64>,
    /// Arrival time in milliseconds since the Unix epoch (wall clock).
    pub unix_ms: u64,
    /// HTTP method.
    pub method: String,
    /// Request path, without the query (which may carry codes).
    pub path: String,
    /// The endpoint, `None` for unknown paths.
    pub endpoint: Option<Endpoint>,
    /// `grant_type` of a token request.
    pub grant_type: Option<String>,
    /// `client_id` from the form, the query or HTTP Basic authentication.
    pub client_id: Option<String>,
    /// SHA-256 hex of the `refresh_token` parameter presented.
    pub refresh_token_sha256: Option<String>,
    /// SHA-256 hex of the `device_code` parameter presented.
    pub device_code_sha256: Option<String>,
    /// SHA-256 hex of the `token` parameter of `/revoke`, or of the bearer token at `/userinfo`.
    pub token_sha256: Option<String>,
    /// `token_type_hint` of a revocation request.
    pub token_type_hint: Option<String>,
    /// Status answered; `None` when no response was sent (connection reset, client gone).
    pub status: Option<u16>,
    /// The OAuth `error` code answered (JSON body or redirect), if any.
    pub error: Option<String>,
    /// The scripted fault this request got, if any.
    pub fault: Option<Fault>,
}

/// What kind of secret an issued string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// `fk_at_...`
    AccessToken,
    /// `fk_rt_...`
    RefreshToken,
    /// An unsigned JWT whose signature part starts with `fk_it_`.
    IdToken,
    /// `fk_ac_...`
    AuthorizationCode,
    /// `fk_dc_...`
    DeviceCode,
}

/// One secret the provider handed out (user codes are not secrets and are not listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// Its kind.
    pub kind: TokenKind,
    /// The exact string issued.
    pub value: String,
}

/// SHA-256 of `token` as lowercase hex: how the request log names tokens without holding them.
pub fn fingerprint(token: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(token.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}
