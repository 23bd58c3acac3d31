//! What can go wrong talking to a provider, typed so the engine can map it to one
//! error category (docs/behaviour.md, "Exit codes and error categories"). Messages
//! name the endpoint and host, never a token or a raw body; a provider's
//! `error_description` is shown only cleaned and shortened.

use latchkey_proto::error::Category;

/// A failed exchange with a provider.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// No usable answer: DNS, connect, reset, timeout.
    #[error("cannot reach the {endpoint} endpoint at {host}: {reason}")]
    Transport {
        endpoint: &'static str,
        host: String,
        reason: String,
    },
    /// An HTTP status without an OAuth error body.
    #[error("the {endpoint} endpoint at {host} answered HTTP {status}")]
    Status {
        endpoint: &'static str,
        host: String,
        status: u16,
    },
    /// An RFC 6749 §5.2 error answer.
    #[error("the {endpoint} endpoint at {host} refused the request: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        endpoint: &'static str,
        host: String,
        status: u16,
        code: String,
        description: Option<String>,
    },
    /// A 2xx answer that is not what the protocol says.
    #[error("the {endpoint} endpoint at {host} sent a malformed answer: {reason}")]
    Malformed {
        endpoint: &'static str,
        host: String,
        reason: String,
    },
    /// The profile or the provider's metadata make the request impossible.
    #[error("{0}")]
    Setup(String),
    /// The person did not finish the login in time.
    #[error("the login was not completed within {0} s")]
    LoginTimeout(u64),
    /// The person or the provider declined the login.
    #[error("the login was declined: {0}")]
    LoginDenied(String),
    /// The authorization response names another issuer, or none where the provider
    /// announced it would (RFC 9207): a possible mix-up, so its code was not used.
    #[error("{0}; the login was stopped before its code was used")]
    WrongIssuer(String),
}

impl OAuthError {
    /// The error category. Called only by `EngineError::category`, the crate's one
    /// mapping.
    pub(crate) fn category(&self) -> Category {
        match self {
            OAuthError::Transport { .. } => Category::Transport,
            OAuthError::Status { status, .. } => status_category(*status),
            OAuthError::Rejected { status, code, .. } => match code.as_str() {
                "invalid_grant" | "bad_refresh_token" => Category::SessionExpired,
                "access_denied" | "authorization_declined" | "insufficient_scope" => {
                    Category::Forbidden
                }
                "invalid_client"
                | "device_flow_disabled"
                | "incorrect_client_credentials"
                | "unauthorized_client"
                | "invalid_scope"
                | "unsupported_grant_type" => Category::Usage,
                "expired_token" => Category::NotLoggedIn,
                "temporarily_unavailable" => Category::Transport,
                "server_error" => Category::Server,
                _ => status_category(*status),
            },
            OAuthError::Malformed { .. } => Category::Server,
            OAuthError::Setup(_) => Category::Usage,
            OAuthError::LoginTimeout(_) => Category::NotLoggedIn,
            OAuthError::LoginDenied(_) => Category::Forbidden,
            // The provider's answer is not the one the protocol promises; nothing
            // the person can change by trying again or by asking for access.
            OAuthError::WrongIssuer(_) => Category::Server,
        }
    }

    /// Whether the same request may succeed later without anyone doing anything.
    pub fn retryable(&self) -> bool {
        match self {
            OAuthError::Transport { .. } => true,
            OAuthError::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            OAuthError::Rejected { status, code, .. } => {
                code == "temporarily_unavailable" || matches!(status, 429 | 502 | 503 | 504)
            }
            _ => false,
        }
    }

    /// The provider said the grant (refresh token, code) is no longer valid, or
    /// answered 409, which some providers use for a concurrent rotation.
    pub fn is_invalid_grant(&self) -> bool {
        match self {
            // GitHub says `bad_refresh_token` for RFC 6749's `invalid_grant`.
            OAuthError::Rejected { code, status, .. } => {
                code == "invalid_grant" || code == "bad_refresh_token" || *status == 409
            }
            OAuthError::Status { status, .. } => *status == 409,
            _ => false,
        }
    }
}

fn status_category(status: u16) -> Category {
    match status {
        401 => Category::SessionExpired,
        403 => Category::Forbidden,
        429 | 502 | 503 | 504 => Category::Transport,
        _ => Category::Server,
    }
}

/// Cleans a provider-supplied description for display: printable ASCII only, at
/// most 200 characters.
pub(crate) fn clean_description(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, code: &str) -> OAuthError {
        OAuthError::Rejected {
            endpoint: "token",
            host: "h".into(),
            status,
            code: code.into(),
            description: None,
        }
    }

    fn status(status: u16) -> OAuthError {
        OAuthError::Status {
            endpoint: "token",
            host: "h".into(),
            status,
        }
    }

    #[test]
    fn categories_follow_the_spec() {
        assert_eq!(status(403).category(), Category::Forbidden);
        assert_eq!(rejected(403, "whatever").category(), Category::Forbidden);
        for s in [429, 502, 503, 504] {
            assert_eq!(status(s).category(), Category::Transport);
            assert!(status(s).retryable());
        }
        assert_eq!(status(500).category(), Category::Server);
        assert!(!status(500).retryable());
        assert_eq!(
            rejected(400, "invalid_grant").category(),
            Category::SessionExpired
        );
        assert_eq!(rejected(400, "invalid_client").category(), Category::Usage);
        assert_eq!(
            rejected(503, "temporarily_unavailable").category(),
            Category::Transport
        );
        assert!(status(409).is_invalid_grant());
        assert!(rejected(400, "invalid_grant").is_invalid_grant());
        assert!(!status(500).is_invalid_grant());
    }

    #[test]
    fn descriptions_are_cleaned() {
        assert_eq!(clean_description("bad\u{1b}[31m"), "bad?[31m");
        assert_eq!(clean_description(&"x".repeat(300)).chars().count(), 201);
    }
}
