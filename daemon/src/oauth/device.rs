//! The device authorization grant (RFC 8628): start, then poll on a schedule.
//!
//! Poll timing (docs/behaviour.md, "Commands"): the server's interval, 5 s when it
//! gives none; +5 s on each `slow_down`; never faster than the server's interval; at
//! most 10 s between polls unless the server's own interval is longer (its interval
//! is a floor we must keep). Polling stops at the code's `expires_in` by our own
//! clock, since some providers never answer `expired_token`. The user code is
//! shown exactly as issued.

use std::time::Duration;

use latchkey_proto::secret::Secret;
use serde::Deserialize;
use url::Url;

use super::client::ClientAuth;
use super::error::OAuthError;
use super::http::Http;
use super::token::{self, Grant, TokenSet};

/// The interval when the server names none (RFC 8628 §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The most time between two polls (unless the server demands more).
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);
/// What each `slow_down` adds (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// A started device authorization.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// Asks the device authorization endpoint for a user code. The client
/// authenticates as at the token endpoint (RFC 8628 §3.1): a public client by its
/// `client_id`, one with a secret by that secret, the same way.
pub async fn start(
    http: &Http,
    url: &Url,
    client: &ClientAuth,
    scope: &str,
    extra: &[(&str, &str)],
) -> Result<DeviceAuthorization, OAuthError> {
    let mut form = vec![("scope", scope)];
    form.extend_from_slice(extra);
    let answer = http
        .post_form_as("device authorization", url, &form, client)
        .await?;
    let auth: DeviceAuthorization = answer.json()?;
    if auth.user_code.is_empty() || auth.device_code.is_empty() {
        return Err(answer.malformed("empty user or device code"));
    }
    Ok(auth)
}

/// The pure poll-interval rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    floor: Duration,
    current: Duration,
}

impl PollSchedule {
    /// Starts from the server's interval in seconds, if it gave one.
    pub fn new(server_interval: Option<u64>) -> Self {
        let floor = server_interval.map_or(DEFAULT_INTERVAL, Duration::from_secs);
        PollSchedule {
            floor,
            current: floor,
        }
    }

    /// The wait before the next poll.
    pub fn interval(&self) -> Duration {
        self.current
    }

    /// Applies a `slow_down` answer.
    pub fn slow_down(&mut self) {
        self.current = (self.current + SLOW_DOWN_STEP).min(MAX_INTERVAL.max(self.floor));
    }
}

/// How a poll loop ends early or reports progress.
pub trait PollObserver: Send + Sync {
    /// Called before each wait with the time left until the code expires.
    fn waiting(&self, time_left: Duration);
}

/// Polls the token endpoint until the person approves, declines, or time runs out.
/// `timeout` bounds the whole wait together with the code's own lifetime.
pub async fn poll(
    http: &Http,
    token_url: &Url,
    client: &super::client::ClientAuth,
    auth: &DeviceAuthorization,
    timeout: Duration,
    observer: &dyn PollObserver,
) -> Result<TokenSet, OAuthError> {
    let limit = timeout.min(Duration::from_secs(auth.expires_in));
    let deadline = tokio::time::Instant::now() + limit;
    let mut schedule = PollSchedule::new(auth.interval);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        observer.waiting(left);
        if left < schedule.interval() {
            // Sleep out the rest and stop: another poll would come after the deadline.
            tokio::time::sleep(left).await;
            return Err(OAuthError::LoginTimeout(limit.as_secs()));
        }
        tokio::time::sleep(schedule.interval()).await;
        let grant = Grant::DeviceCode {
            device_code: &auth.device_code,
        };
        match token::request(http, token_url, client, grant, &[]).await {
            Ok(tokens) => return Ok(tokens),
            Err(OAuthError::Rejected { code, .. }) if code == "authorization_pending" => {}
            Err(OAuthError::Rejected { code, .. }) if code == "slow_down" => schedule.slow_down(),
            // Entra says `authorization_declined` for RFC 8628's `access_denied`.
            Err(OAuthError::Rejected { code, .. })
                if code == "access_denied" || code == "authorization_declined" =>
            {
                return Err(OAuthError::LoginDenied(
                    "the request was denied at the provider".into(),
                ));
            }
            Err(OAuthError::Rejected { code, .. }) if code == "expired_token" => {
                return Err(OAuthError::LoginTimeout(limit.as_secs()));
            }
            // A network hiccup while the person is still typing the code should not
            // end the login: keep polling until the deadline.
            Err(e) if e.retryable() => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_rules() {
        let s = PollSchedule::new(None);
        assert_eq!(s.interval(), Duration::from_secs(5));
        let mut s = PollSchedule::new(Some(1));
        assert_eq!(s.interval(), Duration::from_secs(1));
        s.slow_down();
        assert_eq!(s.interval(), Duration::from_secs(6));
        s.slow_down();
        assert_eq!(s.interval(), Duration::from_secs(10), "capped at 10 s");
        s.slow_down();
        assert_eq!(s.interval(), Duration::from_secs(10));
        // A server asking for more than the cap is obeyed: never faster than it says.
        let mut s = PollSchedule::new(Some(15));
        assert_eq!(s.interval(), Duration::from_secs(15));
        s.slow_down();
        assert_eq!(s.interval(), Duration::from_secs(15));
    }
}
