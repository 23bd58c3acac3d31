//! The provider's memory and its OAuth rules: grants, tokens, codes, device codes, counters,
//! the request log and the fault queue, behind one `std::sync::Mutex`.
//!
//! Every rule here is synchronous on purpose: handlers lock, decide, unlock, and only then
//! await anything, so the lock is never held across an `.await` (a blocking mutex held
//! across a suspension point could stall the runtime and deadlock the fake).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::config::{DeviceApproval, FakeIdpConfig, IssParameter};
use super::model::{
    Counters, DEVICE_CODE_GRANT, Endpoint, Fault, FaultScript, IssuedToken, LoggedRequest,
    TokenKind,
};

/// What the server tasks and the handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub(crate) issuer: String,
    /// Origin of [`LoggedRequest::at_ms`].
    pub(crate) started: Instant,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(issuer: String, cfg: FakeIdpConfig) -> Self {
        Self {
            state: Mutex::new(State::new(issuer.clone(), cfg)),
            issuer,
            started: Instant::now(),
        }
    }

    /// Locks the state. A panic while locked (a bug in a rule) must not turn every later
    /// request into a second panic, so poisoning is ignored: the state is plain data.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An RFC 6749 §5.2 error (or one of RFC 8628 §3.5's), ready to be answered as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::bad("invalid_request", description)
    }
    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::bad("invalid_grant", description)
    }
    fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown or missing client_id",
        )
    }
}

/// Form or query parameters, refusing repeats as RFC 6749 §3.1 requires.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} repeated"
                )));
            }
        }
        Ok(Self(map))
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing {key}")))
    }
}

/// What `/authorize` answers.
#[derive(Debug)]
pub(crate) enum AuthorizeOutcome {
    /// 302 to this URL; the `error` it carries, if any, for the log.
    Redirect {
        location: String,
        error: Option<&'static str>,
    },
    /// 400 without redirecting: the client or the redirect URI cannot be trusted.
    Refuse(OAuthError),
}

/// Why `/userinfo` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerError {
    /// No bearer token at all (RFC 6750 §3.1: no error code then).
    Missing,
    /// Unknown, expired or revoked.
    Invalid(&'static str),
}

#[derive(Debug)]
struct Grant {
    client_id: String,
    scope: String,
    nonce: Option<String>,
    revoked: bool,
}

#[derive(Debug)]
struct AccessRec {
    grant: u64,
    expires_at: Instant,
    revoked: bool,
}

#[derive(Debug)]
struct RefreshRec {
    grant: u64,
    expires_at: Option<Instant>,
    /// Rotated away: presenting it again is reuse.
    spent: bool,
}

#[derive(Debug)]
struct CodeRec {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    nonce: Option<String>,
    expires_at: Instant,
    /// The grant it was exchanged for, once used.
    grant: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Approved,
    Denied,
}

#[derive(Debug)]
struct DeviceRec {
    client_id: String,
    scope: String,
    user_code: String,
    expires_at: Instant,
    polls: u32,
    decision: Option<Decision>,
    exchanged: bool,
}

/// Everything the provider remembers.
#[derive(Debug)]
pub(crate) struct State {
    issuer: String,
    pub(crate) cfg: FakeIdpConfig,
    pub(crate) counters: Counters,
    pub(crate) log: Vec<LoggedRequest>,
    /// Sequence number of the next logged request; survives `clear_log`.
    pub(crate) next_seq: u64,
    pub(crate) issued: Vec<IssuedToken>,
    pub(crate) faults: Vec<FaultScript>,
    grants: HashMap<u64, Grant>,
    next_grant: u64,
    access: HashMap<String, AccessRec>,
    refresh: HashMap<String, RefreshRec>,
    codes: HashMap<String, CodeRec>,
    devices: HashMap<String, DeviceRec>,
}

/// 32 bytes from the OS CSPRNG as base64url: 256 bits, like real opaque tokens.
fn random_b64() -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("invariant: the OS CSPRNG is available");
    URL_SAFE_NO_PAD.encode(buf)
}

/// RFC 8628 §6.1's suggestion: consonants only, so codes are unambiguous and spell no words.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

fn random_user_code() -> String {
    let mut code = String::with_capacity(8);
    while code.len() < 8 {
        let mut buf = [0u8; 16];
        getrandom::fill(&mut buf).expect("invariant: the OS CSPRNG is available");
        // Rejection sampling keeps the letters uniform: 240 is the largest multiple of 20.
        for b in buf.into_iter().filter(|&b| b < 240) {
            if code.len() < 8 {
                code.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
            }
        }
    }
    code
}

/// `now + ttl`, saturating far in the future instead of panicking on absurd TTLs.
fn deadline(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn verifier_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6, S256.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A redirect URI the fake accepts: `http://127.0.0.1:PORT/...` or `http://localhost:PORT/...`
/// (RFC 8252 §7.3), with an explicit port, no credentials and no fragment.
fn loopback_redirect(uri: &str) -> Option<Url> {
    let url = Url::parse(uri).ok()?;
    let ok = url.scheme() == "http"
        && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        && url.port().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none();
    ok.then_some(url)
}

impl State {
    fn new(issuer: String, cfg: FakeIdpConfig) -> Self {
        Self {
            issuer,
            cfg,
            counters: Counters::default(),
            log: Vec::new(),
            next_seq: 0,
            issued: Vec::new(),
            faults: Vec::new(),
            grants: HashMap::new(),
            next_grant: 0,
            access: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            devices: HashMap::new(),
        }
    }

    /// Scripts `fault` for the next `count` requests to `endpoint` (0: nothing happens).
    pub(crate) fn push_faults(&mut self, endpoint: Endpoint, fault: Fault, count: usize) {
        if count > 0 {
            self.faults.push(FaultScript {
                endpoint,
                fault,
                remaining: count,
            });
        }
    }

    /// Takes one use of the first pending script matching `endpoint` (scripts are served in
    /// the order they were pushed).
    pub(crate) fn take_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let pos = self
            .faults
            .iter()
            .position(|s| s.remaining > 0 && s.endpoint.matches(endpoint))?;
        let script = &mut self.faults[pos];
        let fault = script.fault;
        script.remaining -= 1;
        if script.remaining == 0 {
            self.faults.remove(pos);
        }
        Some(fault)
    }

    /// A new secret of `kind`, remembered for leak checks.
    fn mint(&mut self, kind: TokenKind) -> String {
        let prefix = match kind {
            TokenKind::AccessToken => "fk_at_",
            TokenKind::RefreshToken => "fk_rt_",
            // ID tokens are JWTs built by `mint_id_token`; this prefix marks their signature.
            TokenKind::IdToken => "fk_it_",
            TokenKind::AuthorizationCode => "fk_ac_",
            TokenKind::DeviceCode => "fk_dc_",
        };
        let mut value = format!("{prefix}{}", random_b64());
        if matches!(kind, TokenKind::AccessToken | TokenKind::RefreshToken) {
            value.extend(std::iter::repeat_n('p', self.cfg.token_padding));
        }
        self.issued.push(IssuedToken {
            kind,
            value: value.clone(),
        });
        value
    }

    /// The client named by the form or by HTTP Basic authentication, if it is ours;
    /// with a configured secret, only with that secret (Basic or `client_secret`
    /// in the form, never both: RFC 6749 §2.3.1 allows one method per request).
    fn authenticate(
        &mut self,
        params: &Params,
        basic: Option<(&str, &str)>,
    ) -> Result<String, OAuthError> {
        let id = match params.get("client_id").or(basic.map(|(i, _)| i)) {
            Some(id) if id == self.cfg.client_id => id.to_owned(),
            _ => return Err(OAuthError::invalid_client()),
        };
        if let Some(want) = self.cfg.client_secret.clone() {
            let posted = params.get("client_secret");
            let only = self.cfg.client_secret_method;
            match (basic, posted) {
                (Some((_, s)), None) if s == want && only != Some("client_secret_post") => {
                    self.counters.client_secret_basic += 1
                }
                (None, Some(s)) if s == want && only != Some("client_secret_basic") => {
                    self.counters.client_secret_post += 1
                }
                _ => return Err(OAuthError::invalid_client()),
            }
        }
        Ok(id)
    }

    fn new_grant(&mut self, client_id: String, scope: String, nonce: Option<String>) -> u64 {
        let id = self.next_grant;
        self.next_grant += 1;
        self.grants.insert(
            id,
            Grant {
                client_id,
                scope,
                nonce,
                revoked: false,
            },
        );
        id
    }

    fn mint_refresh(&mut self, grant: u64) -> String {
        let rt = self.mint(TokenKind::RefreshToken);
        let expires_at = self
            .cfg
            .refresh_token_ttl
            .map(|ttl| deadline(Instant::now(), ttl));
        self.refresh.insert(
            rt.clone(),
            RefreshRec {
                grant,
                expires_at,
                spent: false,
            },
        );
        rt
    }

    /// An unsigned JWT (`alg: none`); its third part carries the `fk_it_` marker so leak
    /// checks can find it like the other tokens.
    fn mint_id_token(&mut self, grant: u64) -> String {
        // Not `mint`: only the whole JWT is recorded, the marker is a part of it.
        let marker = format!("fk_it_{}", random_b64());
        let (client_id, nonce) = self
            .grants
            .get(&grant)
            .map(|g| (g.client_id.clone(), g.nonce.clone()))
            .unwrap_or_default();
        let now = unix_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": self.cfg.user.sub,
            "aud": client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + self.cfg.access_token_ttl.as_secs(),
            "email": self.cfg.user.email,
            "name": self.cfg.user.name,
        });
        claims[self.cfg.groups_claim.as_str()] = json!(self.cfg.user.groups);
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = format!("{header}.{payload}.{marker}");
        self.issued.push(IssuedToken {
            kind: TokenKind::IdToken,
            value: token.clone(),
        });
        token
    }

    /// A successful token response for `grant`, minting a new access (and ID) token.
    fn token_response(&mut self, grant: u64, refresh_token: Option<String>) -> Value {
        let ttl = self.cfg.access_token_ttl;
        let at = self.mint(TokenKind::AccessToken);
        self.access.insert(
            at.clone(),
            AccessRec {
                grant,
                expires_at: deadline(Instant::now(), ttl),
                revoked: false,
            },
        );
        let scope = self
            .grants
            .get(&grant)
            .map(|g| g.scope.clone())
            .unwrap_or_default();
        let mut body = json!({
            "access_token": at,
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "scope": scope,
        });
        if let Some(rt) = refresh_token {
            body["refresh_token"] = json!(rt);
        }
        if let Some(raw) = &self.cfg.expires_in_raw {
            // Checked to be JSON when set through the admin patch; a bad value set
            // in process states nothing.
            body["expires_in"] = serde_json::from_str(raw).unwrap_or(Value::Null);
        }
        if self.cfg.id_token {
            body["id_token"] = json!(self.mint_id_token(grant));
        }
        self.counters.token_successes += 1;
        body
    }

    /// A refresh token for a new grant, when the configuration issues them.
    fn initial_refresh(&mut self, grant: u64) -> Option<String> {
        self.cfg
            .issue_refresh_token
            .then(|| self.mint_refresh(grant))
    }

    /// Revokes every token of `grant` at once (tokens check their grant on use).
    fn revoke_grant(&mut self, grant: u64) {
        if let Some(g) = self.grants.get_mut(&grant)
            && !g.revoked
        {
            g.revoked = true;
            self.counters.grants_revoked += 1;
        }
    }

    fn grant_revoked(&self, grant: u64) -> bool {
        self.grants.get(&grant).is_none_or(|g| g.revoked)
    }

    /// `POST /token`.
    pub(crate) fn token(
        &mut self,
        params: &Params,
        basic: Option<(&str, &str)>,
    ) -> Result<Value, OAuthError> {
        let grant_type = params.require("grant_type")?;
        let client_id = self.authenticate(params, basic)?;
        match grant_type {
            "authorization_code" => self.exchange_code(params, client_id),
            "refresh_token" => self.refresh(params, &client_id),
            DEVICE_CODE_GRANT => self.poll_device(params, &client_id),
            other => Err(OAuthError::bad(
                "unsupported_grant_type",
                format!("grant_type {other} is not supported"),
            )),
        }
    }

    fn exchange_code(&mut self, params: &Params, client_id: String) -> Result<Value, OAuthError> {
        let code = params.require("code")?;
        let redirect_uri = params.require("redirect_uri")?;
        let verifier = params.require("code_verifier")?;
        let now = Instant::now();
        let Some(rec) = self.codes.get(code) else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        if let Some(grant) = rec.grant {
            // RFC 6749 §4.1.2: a code used twice SHOULD revoke what it was exchanged for.
            if self.cfg.reuse_detection {
                self.counters.reuse_detections += 1;
                self.revoke_grant(grant);
            }
            return Err(OAuthError::invalid_grant("authorization code already used"));
        }
        if now >= rec.expires_at {
            return Err(OAuthError::invalid_grant("authorization code expired"));
        }
        if rec.client_id != client_id {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client",
            ));
        }
        if rec.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant("redirect_uri does not match"));
        }
        if !verifier_well_formed(verifier) {
            return Err(OAuthError::invalid_grant(
                "code_verifier must be 43-128 unreserved characters",
            ));
        }
        if s256(verifier) != rec.challenge {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        // Failures above leave the code usable; only a successful exchange consumes it.
        let (scope, nonce) = (rec.scope.clone(), rec.nonce.clone());
        let grant = self.new_grant(client_id, scope, nonce);
        if let Some(rec) = self.codes.get_mut(code) {
            rec.grant = Some(grant);
        }
        let rt = self.initial_refresh(grant);
        Ok(self.token_response(grant, rt))
    }

    fn refresh(&mut self, params: &Params, client_id: &str) -> Result<Value, OAuthError> {
        let presented = params.require("refresh_token")?;
        let Some(rec) = self.refresh.get(presented) else {
            return Err(OAuthError::invalid_grant("unknown refresh token"));
        };
        let (grant, spent, expires_at) = (rec.grant, rec.spent, rec.expires_at);
        if self.grant_revoked(grant) {
            return Err(OAuthError::invalid_grant("refresh token revoked"));
        }
        if self
            .grants
            .get(&grant)
            .is_some_and(|g| g.client_id != client_id)
        {
            return Err(OAuthError::invalid_grant("refresh token of another client"));
        }
        if spent {
            if self.cfg.reuse_detection {
                self.counters.reuse_detections += 1;
                self.revoke_grant(grant);
                return Err(OAuthError::invalid_grant(
                    "refresh token reuse detected: grant revoked",
                ));
            }
            if self.cfg.spent_refresh_conflict {
                return Err(OAuthError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "refresh token already rotated",
                ));
            }
            return Err(OAuthError::invalid_grant("refresh token already rotated"));
        }
        if expires_at.is_some_and(|at| Instant::now() >= at) {
            return Err(OAuthError::invalid_grant("refresh token expired"));
        }
        let returned = if !self.cfg.return_refresh_token_on_refresh {
            None
        } else if self.cfg.rotate_refresh_tokens {
            if let Some(rec) = self.refresh.get_mut(presented) {
                rec.spent = true;
            }
            Some(self.mint_refresh(grant))
        } else {
            Some(presented.to_owned())
        };
        self.counters.refresh_successes += 1;
        Ok(self.token_response(grant, returned))
    }

    fn poll_device(&mut self, params: &Params, client_id: &str) -> Result<Value, OAuthError> {
        let device_code = params.require("device_code")?;
        let approval = self.cfg.device_approval;
        let Some(rec) = self.devices.get_mut(device_code) else {
            return Err(OAuthError::invalid_grant("unknown device code"));
        };
        if rec.client_id != client_id {
            return Err(OAuthError::invalid_grant("device code of another client"));
        }
        if rec.exchanged {
            return Err(OAuthError::invalid_grant("device code already used"));
        }
        if Instant::now() >= rec.expires_at && self.cfg.device_expiry_answered {
            return Err(OAuthError::bad("expired_token", "device code expired"));
        }
        if self.cfg.device_slow_down_polls > 0 {
            self.cfg.device_slow_down_polls -= 1;
            return Err(OAuthError::bad("slow_down", "polling too fast"));
        }
        rec.polls += 1;
        let decision = rec.decision.or(match approval {
            DeviceApproval::AfterPolls(n) if rec.polls > n => Some(Decision::Approved),
            DeviceApproval::DenyAfterPolls(n) if rec.polls > n => Some(Decision::Denied),
            _ => None,
        });
        match decision {
            None => Err(OAuthError::bad(
                "authorization_pending",
                "the user has not approved yet",
            )),
            Some(Decision::Denied) => {
                rec.decision = Some(Decision::Denied);
                Err(OAuthError::bad(
                    "access_denied",
                    "the user denied the request",
                ))
            }
            Some(Decision::Approved) => {
                rec.exchanged = true;
                let scope = rec.scope.clone();
                let grant = self.new_grant(client_id.to_owned(), scope, None);
                let rt = self.initial_refresh(grant);
                Ok(self.token_response(grant, rt))
            }
        }
    }

    /// `POST /device/authorize` (RFC 8628 §3.2).
    pub(crate) fn device_authorize(
        &mut self,
        params: &Params,
        basic: Option<(&str, &str)>,
    ) -> Result<Value, OAuthError> {
        let client_id = self.authenticate(params, basic)?;
        let scope = params.get("scope").unwrap_or(&self.cfg.scope).to_owned();
        let device_code = self.mint(TokenKind::DeviceCode);
        let user_code = loop {
            let candidate = random_user_code();
            if !self.devices.values().any(|d| d.user_code == candidate) {
                break candidate;
            }
        };
        let ttl = self.cfg.device_code_ttl;
        self.devices.insert(
            device_code.clone(),
            DeviceRec {
                client_id,
                scope,
                user_code: user_code.clone(),
                expires_at: deadline(Instant::now(), ttl),
                polls: 0,
                decision: None,
                exchanged: false,
            },
        );
        self.counters.device_authorizations += 1;
        let verification_uri = format!("{}/device", self.issuer);
        let mut body = json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
            "verification_uri": verification_uri,
            "expires_in": ttl.as_secs(),
        });
        if let Some(interval) = self.cfg.device_interval {
            body["interval"] = json!(interval);
        }
        Ok(body)
    }

    /// Decides a device authorization by its user code; false when no such code.
    pub(crate) fn decide_device(&mut self, user_code: &str, approve: bool) -> bool {
        let decision = if approve {
            Decision::Approved
        } else {
            Decision::Denied
        };
        self.devices
            .values_mut()
            .find(|d| d.user_code == user_code)
            .map(|d| d.decision = Some(decision))
            .is_some()
    }

    /// `GET /authorize`: signs the configured user in at once (no login page).
    pub(crate) fn authorize(&mut self, params: &Params) -> AuthorizeOutcome {
        // RFC 6749 §4.1.2.1: with a bad client or redirect URI, never redirect.
        if params.get("client_id") != Some(self.cfg.client_id.as_str()) {
            return AuthorizeOutcome::Refuse(OAuthError::bad(
                "invalid_client",
                "unknown or missing client_id",
            ));
        }
        let Some(raw_redirect) = params.get("redirect_uri") else {
            return AuthorizeOutcome::Refuse(OAuthError::invalid_request("missing redirect_uri"));
        };
        let Some(mut target) = loopback_redirect(raw_redirect) else {
            return AuthorizeOutcome::Refuse(OAuthError::invalid_request(
                "redirect_uri must be http://127.0.0.1:PORT/... or http://localhost:PORT/...",
            ));
        };
        let outcome = self.authorize_checked(params, raw_redirect);
        {
            let mut query = target.query_pairs_mut();
            match &outcome {
                Ok(code) => {
                    query.append_pair("code", code);
                }
                Err(e) => {
                    query
                        .append_pair("error", e.error)
                        .append_pair("error_description", &e.description);
                }
            }
            if let Some(state) = params.get("state") {
                query.append_pair("state", state);
            }
            // RFC 9207 §2: on success and error responses alike.
            match &self.cfg.iss_parameter {
                IssParameter::Absent => {}
                IssParameter::Issuer => {
                    query.append_pair("iss", &self.issuer);
                }
                IssParameter::Other(other) => {
                    query.append_pair("iss", other);
                }
            }
        }
        AuthorizeOutcome::Redirect {
            location: target.into(),
            error: outcome.err().map(|e| e.error),
        }
    }

    /// The checks whose failures are reported to the client by redirect; a code on success.
    fn authorize_checked(
        &mut self,
        params: &Params,
        redirect_uri: &str,
    ) -> Result<String, OAuthError> {
        if params.get("response_type") != Some("code") {
            return Err(OAuthError::bad(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let Some(challenge) = params.get("code_challenge") else {
            return Err(OAuthError::invalid_request(
                "PKCE code_challenge is required",
            ));
        };
        if params.get("code_challenge_method") != Some("S256") {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ));
        }
        // A SHA-256 digest in unpadded base64url is exactly 43 characters.
        if challenge.len() != 43 || URL_SAFE_NO_PAD.decode(challenge).is_err() {
            return Err(OAuthError::invalid_request(
                "code_challenge is not a base64url SHA-256 digest",
            ));
        }
        if self.cfg.authorize_deny {
            return Err(OAuthError::bad(
                "access_denied",
                "the user denied the request",
            ));
        }
        let code = self.mint(TokenKind::AuthorizationCode);
        let rec = CodeRec {
            client_id: self.cfg.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: challenge.to_owned(),
            scope: params.get("scope").unwrap_or(&self.cfg.scope).to_owned(),
            nonce: params.get("nonce").map(str::to_owned),
            expires_at: deadline(Instant::now(), self.cfg.auth_code_ttl),
            grant: None,
        };
        self.codes.insert(code.clone(), rec);
        self.counters.authorizations += 1;
        Ok(code)
    }

    /// `GET /userinfo`: the current user's claims for a live access token.
    pub(crate) fn userinfo(&mut self, bearer: Option<&str>) -> Result<Value, BearerError> {
        let result = self.check_bearer(bearer).map(|()| {
            let user = &self.cfg.user;
            let mut body = json!({
                "sub": user.sub,
                "email": user.email,
                "email_verified": true,
                "name": user.name,
            });
            body[self.cfg.groups_claim.as_str()] = json!(user.groups);
            body
        });
        match result {
            Ok(_) => self.counters.userinfo_ok += 1,
            Err(_) => self.counters.userinfo_rejected += 1,
        }
        result
    }

    fn check_bearer(&self, bearer: Option<&str>) -> Result<(), BearerError> {
        let token = bearer.ok_or(BearerError::Missing)?;
        let rec = self
            .access
            .get(token)
            .ok_or(BearerError::Invalid("unknown access token"))?;
        if rec.revoked || self.grant_revoked(rec.grant) {
            return Err(BearerError::Invalid("access token revoked"));
        }
        if Instant::now() >= rec.expires_at {
            return Err(BearerError::Invalid("access token expired"));
        }
        Ok(())
    }

    /// Whether the provider would accept `token` now: a live access token (not
    /// revoked, not expired), or a refresh token that is neither spent nor revoked
    /// nor expired. What an introspection endpoint would answer as `active`.
    pub(crate) fn is_active(&self, token: &str) -> bool {
        if self.check_bearer(Some(token)).is_ok() {
            return true;
        }
        self.refresh.get(token).is_some_and(|r| {
            !r.spent
                && !self.grant_revoked(r.grant)
                && r.expires_at.is_none_or(|e| Instant::now() < e)
        })
    }

    /// `POST /revoke` (RFC 7009). Unknown tokens succeed, as §2.2 requires.
    pub(crate) fn revoke(
        &mut self,
        params: &Params,
        basic: Option<(&str, &str)>,
    ) -> Result<(), OAuthError> {
        self.authenticate(params, basic)?;
        let token = params.require("token")?;
        // The hint is only an optimisation for real servers: look everywhere (§2.1).
        if let Some(grant) = self.refresh.get(token).map(|r| r.grant) {
            // Revoking a refresh token ends its grant, access tokens included (§2.1).
            self.revoke_grant(grant);
            self.counters.revocations += 1;
        } else if let Some(rec) = self.access.get_mut(token) {
            rec.revoked = true;
            self.counters.revocations += 1;
        }
        Ok(())
    }

    /// The discovery document, or `None` when discovery is switched off.
    pub(crate) fn discovery(&self) -> Option<Value> {
        if !self.cfg.discovery {
            return None;
        }
        let iss = &self.issuer;
        let mut doc = json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "device_authorization_endpoint": format!("{iss}/device/authorize"),
            "userinfo_endpoint": format!("{iss}/userinfo"),
            "jwks_uri": format!("{iss}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [self.cfg.client_secret_method.unwrap_or("none")],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["none"],
            "claims_supported": ["sub", "email", "email_verified", "name", self.cfg.groups_claim],
        });
        if self.cfg.announce_iss_parameter {
            doc["authorization_response_iss_parameter_supported"] = json!(true);
        }
        if self.cfg.revocation {
            doc["revocation_endpoint"] = json!(format!("{iss}/revoke"));
            doc["revocation_endpoint_auth_methods_supported"] =
                json!([self.cfg.client_secret_method.unwrap_or("none")]);
        }
        Some(doc)
    }

    /// Revokes every grant issued so far.
    pub(crate) fn revoke_all(&mut self) {
        let ids: Vec<u64> = self.grants.keys().copied().collect();
        for id in ids {
            self.revoke_grant(id);
        }
    }

    /// Makes every access token issued so far expired, to force refreshes without waiting.
    pub(crate) fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for rec in self.access.values_mut() {
            rec.expires_at = rec.expires_at.min(now);
        }
    }

    /// Makes every device code issued so far expired.
    pub(crate) fn expire_device_codes(&mut self) {
        let now = Instant::now();
        for rec in self.devices.values_mut() {
            rec.expires_at = rec.expires_at.min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifier_rules() {
        assert!(verifier_well_formed(&"a".repeat(43)));
        assert!(verifier_well_formed(&"~._-".repeat(32)));
        assert!(!verifier_well_formed(&"a".repeat(42)));
        assert!(!verifier_well_formed(&"a".repeat(129)));
        assert!(!verifier_well_formed(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn user_codes_are_eight_unambiguous_letters() {
        for _ in 0..100 {
            let code = random_user_code();
            assert_eq!(code.len(), 8);
            assert!(
                code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)),
                "{code}"
            );
        }
    }

    #[test]
    fn loopback_redirects_only() {
        assert!(loopback_redirect("http://127.0.0.1:4711/callback").is_some());
        assert!(loopback_redirect("http://localhost:4711/cb?x=1").is_some());
        assert!(loopback_redirect("http://127.0.0.1/callback").is_none());
        assert!(loopback_redirect("https://127.0.0.1:4711/callback").is_none());
        assert!(loopback_redirect("http://example.com:4711/callback").is_none());
        assert!(loopback_redirect("http://127.0.0.1:4711/cb#frag").is_none());
        assert!(loopback_redirect("http://u:p@127.0.0.1:4711/cb").is_none());
    }

    #[test]
    fn faults_are_served_in_push_order_and_count_down() {
        let mut st = State::new("http://x".into(), FakeIdpConfig::default());
        st.faults.push(FaultScript {
            endpoint: Endpoint::Token,
            fault: Fault::Status500,
            remaining: 1,
        });
        st.faults.push(FaultScript {
            endpoint: Endpoint::Any,
            fault: Fault::Status503,
            remaining: 2,
        });
        assert_eq!(st.take_fault(Endpoint::Userinfo), Some(Fault::Status503));
        assert_eq!(st.take_fault(Endpoint::Token), Some(Fault::Status500));
        assert_eq!(st.take_fault(Endpoint::Token), Some(Fault::Status503));
        assert_eq!(st.take_fault(Endpoint::Token), None);
        assert!(st.faults.is_empty());
    }
}
