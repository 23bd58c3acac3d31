//! The only outbound HTTP of the engine: one reqwest client (rustls), with connect
//! and total timeouts, no redirects (a token endpoint must answer itself),
//! and bodies bounded in size.
//!
//! An answer's body can hold tokens, so it is collected into a buffer that is wiped
//! when dropped (after parsing), grown without leaving copies behind. The chunks
//! reqwest hands over live in its own buffers, which this code does not own.

use std::time::Duration;

use latchkey_proto::secret::Secret;
use serde::de::DeserializeOwned;
use url::Url;
use zeroize::Zeroizing;

use super::error::{OAuthError, clean_description};

/// How long a TCP + TLS connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from a provider.
const MAX_BODY: usize = 1024 * 1024;

/// A provider's HTTP answer. Its body can hold tokens, so `Debug` shows only its size.
pub struct Answer {
    pub status: u16,
    /// Wiped on drop: a token response's body holds the tokens in clear.
    pub body: Zeroizing<Vec<u8>>,
    /// The `Date` header, for the clock-skew check of `doctor --server`.
    pub date: Option<String>,
    endpoint: &'static str,
    host: String,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("endpoint", &self.endpoint)
            .field("host", &self.host)
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The RFC 6749 §5.2 error body.
#[derive(Debug, serde::Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parses a 2xx body as JSON; any other status becomes the matching error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, OAuthError> {
        if !self.is_success() || self.is_error_in_disguise() {
            return Err(self.error());
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            self.malformed(format!(
                "{} at line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Data => "unexpected content",
                    serde_json::error::Category::Eof => "truncated JSON",
                    _ => "invalid JSON",
                },
                e.line(),
                e.column()
            ))
        })
    }

    /// A 2xx answer of the token or device authorization endpoint whose body is an
    /// RFC 6749 error (`error` and no `access_token`): GitHub answers its token
    /// endpoint's errors, device-flow `authorization_pending` included, with 200.
    /// Other endpoints' documents (userinfo claims) may hold an `error` of their own.
    fn is_error_in_disguise(&self) -> bool {
        #[derive(serde::Deserialize)]
        struct Probe {
            /// Only whether it is there: the token is not copied.
            #[serde(default)]
            access_token: Option<serde::de::IgnoredAny>,
        }
        // JSON is UTF-8 (RFC 8259 §8.1); skipped fields are not checked by serde.
        if !matches!(self.endpoint, "token" | "device authorization")
            || std::str::from_utf8(&self.body).is_err()
        {
            return false;
        }
        // Exactly what `error` will read, so the answer becomes `Rejected`.
        let is_error =
            serde_json::from_slice::<ErrorBody>(&self.body).is_ok_and(|b| !b.error.is_empty());
        is_error
            && serde_json::from_slice::<Probe>(&self.body).is_ok_and(|p| p.access_token.is_none())
    }

    /// The error for a non-2xx answer: an OAuth error when the body is one, else the
    /// bare status.
    pub fn error(&self) -> OAuthError {
        match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(b) if !b.error.is_empty() => OAuthError::Rejected {
                endpoint: self.endpoint,
                host: self.host.clone(),
                status: self.status,
                code: clean_description(&b.error),
                description: b.error_description.as_deref().map(clean_description),
            },
            _ => OAuthError::Status {
                endpoint: self.endpoint,
                host: self.host.clone(),
                status: self.status,
            },
        }
    }

    /// A malformed-answer error for this answer.
    pub fn malformed(&self, reason: impl Into<String>) -> OAuthError {
        OAuthError::Malformed {
            endpoint: self.endpoint,
            host: self.host.clone(),
            reason: reason.into(),
        }
    }
}

/// The engine's HTTP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// `host[:port]` of a URL, for messages.
pub fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.as_str().chars().take(64).collect(),
    }
}

impl Http {
    /// Builds the client. Fails only when the TLS stack cannot start.
    pub fn new() -> Result<Http, OAuthError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Setup(format!("cannot start the HTTP client: {e}")))?;
        Ok(Http { client })
    }

    /// POSTs a form as `client` (its id or secret in the form, or HTTP Basic).
    pub async fn post_form_as(
        &self,
        endpoint: &'static str,
        url: &Url,
        form: &[(&str, &str)],
        client: &super::client::ClientAuth,
    ) -> Result<Answer, OAuthError> {
        let mut all = form.to_vec();
        let basic = client.apply(&mut all);
        self.post_form_with(endpoint, url, &all, basic.as_ref())
            .await
    }

    async fn post_form_with(
        &self,
        endpoint: &'static str,
        url: &Url,
        form: &[(&str, &str)],
        authorization: Option<&Secret>,
    ) -> Result<Answer, OAuthError> {
        let mut req = self
            .client
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form);
        if let Some(value) = authorization {
            // Declassification: the client's secret goes to its provider.
            let mut v = reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                OAuthError::Setup("the client secret cannot be sent in a header".into())
            })?;
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        self.send(endpoint, url, req).await
    }

    /// GETs a URL, with a bearer token when given.
    pub async fn get(
        &self,
        endpoint: &'static str,
        url: &Url,
        bearer: Option<&Secret>,
    ) -> Result<Answer, OAuthError> {
        let mut req = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            // Declassification: the token goes to the provider that issued it.
            req = req.bearer_auth(token.expose());
        }
        self.send(endpoint, url, req).await
    }

    async fn send(
        &self,
        endpoint: &'static str,
        url: &Url,
        req: reqwest::RequestBuilder,
    ) -> Result<Answer, OAuthError> {
        let host = host_of(url);
        let transport = |e: reqwest::Error| OAuthError::Transport {
            endpoint,
            host: host.clone(),
            reason: describe(&e),
        };
        let mut resp = req.send().await.map_err(|e| {
            let err = transport(e);
            tracing::debug!(endpoint, %host, error = %err, "the provider could not be reached");
            err
        })?;
        let status = resp.status().as_u16();
        // Which endpoint and what it said, never the body: it may hold tokens.
        tracing::debug!(endpoint, %host, status, "the provider answered");
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(OAuthError::Malformed {
                endpoint,
                host,
                reason: "the answer is too large".into(),
            });
        }
        // The announced length (already bounded) sizes the buffer, so a well-behaved
        // answer is read without growing it.
        let expected = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(INITIAL_BODY);
        let mut body = Zeroizing::new(Vec::with_capacity(expected));
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(OAuthError::Malformed {
                    endpoint,
                    host,
                    reason: "the answer is too large".into(),
                });
            }
            append(&mut body, &chunk);
        }
        Ok(Answer {
            status,
            body,
            date,
            endpoint,
            host,
        })
    }
}

/// The buffer first reserved for an answer of unknown length; token answers fit.
const INITIAL_BODY: usize = 8 * 1024;

/// Appends to a body that may hold tokens. Growing a `Vec` in place would leave the
/// old allocation's bytes in freed memory, so a full buffer is replaced by a larger
/// one and the old one is wiped as it drops.
fn append(body: &mut Zeroizing<Vec<u8>>, chunk: &[u8]) {
    let needed = body.len() + chunk.len();
    if needed > body.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(
            needed.max(body.capacity().saturating_mul(2).min(MAX_BODY)),
        ));
        bigger.extend_from_slice(body);
        *body = bigger;
    }
    body.extend_from_slice(chunk);
}

/// A short, secret-free description of a transport failure. reqwest's own message
/// repeats the URL; the error chain's innermost cause is what a person needs.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the request timed out".into();
    }
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    match innermost {
        Some(cause) => format!("{what} ({})", clean_description(&cause)),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: Zeroizing::new(body.as_bytes().to_vec()),
            date: None,
            endpoint: "token",
            host: "h".into(),
        }
    }

    #[test]
    fn a_200_carrying_an_oauth_error_is_that_error() {
        // GitHub's token endpoint, polled during its device flow.
        let pending = answer(
            200,
            r#"{"error":"authorization_pending","error_description":"wait"}"#,
        );
        match pending.json::<serde_json::Value>() {
            Err(OAuthError::Rejected { code, status, .. }) => {
                assert_eq!(code, "authorization_pending");
                assert_eq!(status, 200);
            }
            other => panic!("{other:?}"),
        }
        // A token answer that also says `error` is still a token answer, and
        // documents with other shapes pass.
        let odd = answer(
            200,
            r#"{"access_token":"x","token_type":"bearer","error":""}"#,
        );
        assert!(odd.json::<serde_json::Value>().is_ok());
        assert!(
            answer(200, r#"{"sub":"1"}"#)
                .json::<serde_json::Value>()
                .is_ok()
        );
        assert!(answer(200, "[1]").json::<serde_json::Value>().is_ok());
    }

    /// The wiping itself happens in memory that is freed, which safe code cannot
    /// look at (nor tell our replacement from `Vec`'s own reallocation); this checks
    /// what can go wrong in `append`: bytes kept in order across growths, few
    /// copies, and a reservation that never passes the body limit.
    #[test]
    fn a_growing_body_keeps_its_bytes_in_few_bounded_buffers() {
        let mut body = Zeroizing::new(Vec::with_capacity(4));
        let mut expected = Vec::new();
        let mut buffers = 1;
        for i in 0..200u8 {
            let chunk = vec![i; usize::from(i % 7) + 1];
            let before = (body.as_ptr(), body.capacity());
            append(&mut body, &chunk);
            if (body.as_ptr(), body.capacity()) != before {
                buffers += 1;
                // Our replacement reserves at least double: few copies are made.
                assert!(body.capacity() >= 2 * before.1 || body.capacity() == body.len());
            }
            expected.extend_from_slice(&chunk);
        }
        assert_eq!(*body, expected);
        assert!(buffers < 12, "{buffers} buffers for {} bytes", body.len());
        assert!(body.capacity() <= MAX_BODY);
    }
}
