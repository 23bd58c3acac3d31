//! How the fake provider behaves: [`FakeIdpConfig`] (in-process, with `Default`) and
//! [`ConfigPatch`], its JSON form for `GET|POST /_admin/config` and partial updates.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The person every login signs in as; `/userinfo` answers from the current value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// `sub` claim.
    pub sub: String,
    /// `email` claim.
    pub email: String,
    /// `name` claim.
    pub name: String,
    /// Group names, under the claim named by [`FakeIdpConfig::groups_claim`].
    pub groups: Vec<String>,
}

impl Default for UserInfo {
    fn default() -> Self {
        Self {
            sub: "fake-user-0001".into(),
            email: "dev@example.test".into(),
            name: "Dev Example".into(),
            groups: vec!["dev".into(), "ops".into()],
        }
    }
}

/// When a device authorization (RFC 8628) is decided, unless `approve_device` /
/// `deny_device` decided it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceApproval {
    /// The first N polls of a device code answer `authorization_pending`, poll N+1 gets the
    /// tokens (0: the first poll succeeds).
    AfterPolls(u32),
    /// The first N polls answer `authorization_pending`, then `access_denied` for good.
    DenyAfterPolls(u32),
    /// Pending until `approve_device` / `deny_device` (or the admin endpoints) decide.
    Manual,
}

/// What the authorization response (the redirect of `/authorize`) says in `iss`
/// (RFC 9207).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssParameter {
    /// No `iss`, as providers without RFC 9207 answer.
    Absent,
    /// The provider's own issuer, exactly as discovery publishes it.
    Issuer,
    /// Another value: a mix-up, or a provider that spells its issuer differently.
    Other(String),
}

/// Provider behaviour. Build with struct update syntax:
/// `FakeIdpConfig { device_interval: Some(1), ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeIdpConfig {
    /// The only client accepted; others get `invalid_client` (401). Default `latchkey-cli`.
    pub client_id: String,
    /// Access token lifetime; `expires_in` is its whole seconds. Default 3600 s.
    pub access_token_ttl: Duration,
    /// Refresh token lifetime, `None` for no expiry (the default).
    pub refresh_token_ttl: Option<Duration>,
    /// Whether token responses carry a refresh token at all. Default true.
    pub issue_refresh_token: bool,
    /// Refresh answers carry a NEW refresh token and the presented one is spent. When false,
    /// the presented one stays valid and is returned again. Default true.
    pub rotate_refresh_tokens: bool,
    /// Whether refresh answers carry a `refresh_token` field at all. When false the presented
    /// token stays valid (no rotation happens whatever `rotate_refresh_tokens` says) and the
    /// client must keep it. Default true.
    pub return_refresh_token_on_refresh: bool,
    /// Presenting a spent (rotated) refresh token, or reusing an authorization code, revokes
    /// the whole grant: every access and refresh token of it. Default true.
    pub reuse_detection: bool,
    /// With reuse detection off, answer a spent refresh token with HTTP 409 (as some
    /// providers do for a concurrent rotation) instead of 400 `invalid_grant`. Default false.
    pub spent_refresh_conflict: bool,
    /// Whether token responses carry an `id_token`. Default true.
    pub id_token: bool,
    /// Scope granted when the request names none. Default `openid profile email offline_access`.
    pub scope: String,
    /// Authorization code lifetime. Default 60 s.
    pub auth_code_ttl: Duration,
    /// `/authorize` redirects with `error=access_denied` instead of a code. Default false.
    pub authorize_deny: bool,
    /// Device authorization decision. Default `AfterPolls(1)`: one pending poll, then tokens.
    pub device_approval: DeviceApproval,
    /// Device code lifetime (`expires_in`). Default 600 s.
    pub device_code_ttl: Duration,
    /// Device poll `interval` in seconds; `None` omits the field. Default `Some(5)`.
    pub device_interval: Option<u64>,
    /// The next N device polls (over all device codes) answer `slow_down`; counts down as
    /// they are served. A `slow_down` poll does not count toward approval. Default 0.
    pub device_slow_down_polls: u32,
    /// Serve the discovery document (false: 404, for "no discovery" configurations).
    pub discovery: bool,
    /// Support RFC 7009 revocation (false: no `revocation_endpoint`, `/revoke` is 404).
    pub revocation: bool,
    /// The signed-in person.
    pub user: UserInfo,
    /// Claim name of the groups at `/userinfo` and in the ID token. Default `groups`.
    pub groups_claim: String,
    /// Characters appended to every access and refresh token minted from now on (a
    /// provider whose tokens grew: more claims, a longer signature). Default 0.
    pub token_padding: usize,
    /// Whether a poll with an expired device code is answered `expired_token`. When
    /// false the provider keeps answering `authorization_pending` forever, as some
    /// do, and the client must stop by its own clock. Default true.
    pub device_expiry_answered: bool,
    /// The `expires_in` that token responses state, as raw JSON (`0`, `-5`, `1e18`,
    /// `"3600"`), whatever the tokens' real lifetime (`access_token_ttl`). `None`
    /// states the real lifetime in seconds. Default `None`.
    pub expires_in_raw: Option<String>,
    /// When set, the client must authenticate with this secret (an "installed
    /// app" client, as Google's desktop ones).
    pub client_secret: Option<String>,
    /// With `client_secret`: the one method the provider takes it by
    /// (`client_secret_basic` or `client_secret_post`), announced in discovery
    /// for the token and revocation endpoints; any other way is `invalid_client`.
    /// `None` takes both and announces `none`. Default `None`.
    pub client_secret_method: Option<&'static str>,
    /// The `iss` of authorization responses, success and error alike. Default
    /// `Absent`.
    pub iss_parameter: IssParameter,
    /// Whether discovery announces `authorization_response_iss_parameter_supported:
    /// true` (whatever `iss_parameter` says). Default false.
    pub announce_iss_parameter: bool,
}

impl Default for FakeIdpConfig {
    fn default() -> Self {
        Self {
            client_id: "latchkey-cli".into(),
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: None,
            issue_refresh_token: true,
            rotate_refresh_tokens: true,
            return_refresh_token_on_refresh: true,
            reuse_detection: true,
            spent_refresh_conflict: false,
            id_token: true,
            scope: "openid profile email offline_access".into(),
            auth_code_ttl: Duration::from_secs(60),
            authorize_deny: false,
            device_approval: DeviceApproval::AfterPolls(1),
            device_code_ttl: Duration::from_secs(600),
            device_interval: Some(5),
            device_slow_down_polls: 0,
            discovery: true,
            revocation: true,
            user: UserInfo::default(),
            groups_claim: "groups".into(),
            token_padding: 0,
            device_expiry_answered: true,
            expires_in_raw: None,
            client_secret: None,
            client_secret_method: None,
            iss_parameter: IssParameter::Absent,
            announce_iss_parameter: false,
        }
    }
}

/// A partial update of [`FakeIdpConfig`] in JSON-friendly units (seconds as numbers, which
/// may be fractional). Absent fields are left alone; for the two optional settings
/// (`refresh_token_ttl_secs`, `device_interval_secs`) an explicit `null` clears them.
/// `GET /_admin/config` answers a patch with every field set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_secs: Option<f64>,
    #[serde(
        default,
        deserialize_with = "explicit_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token_ttl_secs: Option<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_refresh_token: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_refresh_tokens: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_refresh_token_on_refresh: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_detection: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_code_ttl_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_deny: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_approval: Option<DeviceApproval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_code_ttl_secs: Option<f64>,
    #[serde(
        default,
        deserialize_with = "explicit_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_interval_secs: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_slow_down_polls: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_padding: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_expiry_answered: Option<bool>,
    /// `null` clears it.
    #[serde(
        default,
        deserialize_with = "explicit_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_in_raw: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss_parameter: Option<IssParameter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_iss_parameter: Option<bool>,
}

/// Distinguishes an explicit `null` (`Some(None)`: clear the setting) from an absent field
/// (`None` through `#[serde(default)]`: leave it alone).
fn explicit_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Overwrites `dst` when the patch sets the field.
fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
    if let Some(v) = src {
        *dst = v.clone();
    }
}

/// Seconds from JSON to a `Duration`, refusing what `Duration` cannot hold.
fn secs(field: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|e| format!("{field}: {e}"))
}

impl ConfigPatch {
    /// Applies the set fields to `cfg`. On error (a negative or non-finite duration) `cfg`
    /// is left unchanged.
    pub fn apply(&self, cfg: &mut FakeIdpConfig) -> Result<(), String> {
        // Validate every duration before touching `cfg`, so a bad patch changes nothing.
        let access_ttl = self
            .access_token_ttl_secs
            .map(|v| secs("access_token_ttl_secs", v))
            .transpose()?;
        let refresh_ttl = match self.refresh_token_ttl_secs {
            Some(Some(v)) => Some(Some(secs("refresh_token_ttl_secs", v)?)),
            Some(None) => Some(None),
            None => None,
        };
        let code_ttl = self
            .auth_code_ttl_secs
            .map(|v| secs("auth_code_ttl_secs", v))
            .transpose()?;
        let device_ttl = self
            .device_code_ttl_secs
            .map(|v| secs("device_code_ttl_secs", v))
            .transpose()?;

        set(&mut cfg.client_id, &self.client_id);
        set(&mut cfg.access_token_ttl, &access_ttl);
        set(&mut cfg.refresh_token_ttl, &refresh_ttl);
        set(&mut cfg.issue_refresh_token, &self.issue_refresh_token);
        set(&mut cfg.rotate_refresh_tokens, &self.rotate_refresh_tokens);
        set(
            &mut cfg.return_refresh_token_on_refresh,
            &self.return_refresh_token_on_refresh,
        );
        set(&mut cfg.reuse_detection, &self.reuse_detection);
        set(&mut cfg.id_token, &self.id_token);
        set(&mut cfg.scope, &self.scope);
        set(&mut cfg.auth_code_ttl, &code_ttl);
        set(&mut cfg.authorize_deny, &self.authorize_deny);
        set(&mut cfg.device_approval, &self.device_approval);
        set(&mut cfg.device_code_ttl, &device_ttl);
        set(&mut cfg.device_interval, &self.device_interval_secs);
        set(
            &mut cfg.device_slow_down_polls,
            &self.device_slow_down_polls,
        );
        set(&mut cfg.discovery, &self.discovery);
        set(&mut cfg.revocation, &self.revocation);
        set(&mut cfg.user, &self.user);
        set(&mut cfg.groups_claim, &self.groups_claim);
        set(&mut cfg.token_padding, &self.token_padding);
        set(
            &mut cfg.device_expiry_answered,
            &self.device_expiry_answered,
        );
        if let Some(Some(raw)) = &self.expires_in_raw
            && serde_json::from_str::<serde_json::Value>(raw).is_err()
        {
            return Err(format!("expires_in_raw: {raw:?} is not JSON"));
        }
        set(&mut cfg.expires_in_raw, &self.expires_in_raw);
        set(&mut cfg.iss_parameter, &self.iss_parameter);
        set(
            &mut cfg.announce_iss_parameter,
            &self.announce_iss_parameter,
        );
        Ok(())
    }
}

impl From<&FakeIdpConfig> for ConfigPatch {
    /// The full configuration as a patch with every field set.
    fn from(cfg: &FakeIdpConfig) -> Self {
        Self {
            client_id: Some(cfg.client_id.clone()),
            access_token_ttl_secs: Some(cfg.access_token_ttl.as_secs_f64()),
            refresh_token_ttl_secs: Some(cfg.refresh_token_ttl.map(|d| d.as_secs_f64())),
            issue_refresh_token: Some(cfg.issue_refresh_token),
            rotate_refresh_tokens: Some(cfg.rotate_refresh_tokens),
            return_refresh_token_on_refresh: Some(cfg.return_refresh_token_on_refresh),
            reuse_detection: Some(cfg.reuse_detection),
            id_token: Some(cfg.id_token),
            scope: Some(cfg.scope.clone()),
            auth_code_ttl_secs: Some(cfg.auth_code_ttl.as_secs_f64()),
            authorize_deny: Some(cfg.authorize_deny),
            device_approval: Some(cfg.device_approval),
            device_code_ttl_secs: Some(cfg.device_code_ttl.as_secs_f64()),
            device_interval_secs: Some(cfg.device_interval),
            device_slow_down_polls: Some(cfg.device_slow_down_polls),
            discovery: Some(cfg.discovery),
            revocation: Some(cfg.revocation),
            user: Some(cfg.user.clone()),
            groups_claim: Some(cfg.groups_claim.clone()),
            token_padding: Some(cfg.token_padding),
            device_expiry_answered: Some(cfg.device_expiry_answered),
            expires_in_raw: Some(cfg.expires_in_raw.clone()),
            iss_parameter: Some(cfg.iss_parameter.clone()),
            announce_iss_parameter: Some(cfg.announce_iss_parameter),
        }
    }
}
