//! The authorization code flow for native apps: PKCE (RFC 7636, S256), a random
//! `state`, and a one-shot loopback listener (RFC 8252 §7.3).
//!
//! The listener binds 127.0.0.1 on an ephemeral port and accepts exactly one valid
//! callback: `GET /callback` whose `state` matches. Everything else (other paths,
//! methods, a wrong or missing state, anything after the valid callback) gets a 400
//! and changes nothing. It stops when the valid callback arrived or the timeout ran out.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use latchkey_proto::secret::Secret;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

use super::error::OAuthError;
use crate::vault::crypto;

/// A PKCE pair.
#[derive(Debug)]
pub struct Pkce {
    /// 64 characters of base64url from 48 random bytes (RFC 7636: 43 to 128).
    pub verifier: Secret,
    /// BASE64URL(SHA-256(verifier)).
    pub challenge: String,
}

/// Makes a PKCE pair from the OS CSPRNG.
pub fn pkce() -> Result<Pkce, OAuthError> {
    let bytes = zeroize::Zeroizing::new(crypto::random::<48>().map_err(|_| no_random())?);
    let verifier = Secret::new(URL_SAFE_NO_PAD.encode(*bytes));
    let challenge = challenge_of(&verifier);
    Ok(Pkce {
        verifier,
        challenge,
    })
}

/// The S256 challenge of a verifier.
pub fn challenge_of(verifier: &Secret) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
}

/// A `state` value of 256 random bits; the login rules ask for at least 128.
pub fn random_state() -> Result<String, OAuthError> {
    Ok(URL_SAFE_NO_PAD.encode(crypto::random::<32>().map_err(|_| no_random())?))
}

fn no_random() -> OAuthError {
    OAuthError::Setup("the operating system gave no random bytes".into())
}

/// What goes into the authorization request besides the PKCE challenge.
#[derive(Debug)]
pub struct AuthorizeParams<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub state: &'a str,
    pub extra: &'a [(&'a str, &'a str)],
}

/// Builds the URL the person opens.
///
/// With `offline_access` among the scopes it asks for `prompt=consent` unless the
/// profile sets a prompt itself: OpenID Connect Core §11 lets a provider ignore
/// `offline_access` otherwise, and a certified one (oidc-provider) does, which
/// would leave the session without a refresh token.
pub fn authorize_url(endpoint: &Url, p: &AuthorizeParams<'_>, challenge: &str) -> Url {
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", p.client_id)
            .append_pair("redirect_uri", p.redirect_uri)
            .append_pair("scope", p.scope)
            .append_pair("state", p.state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in p.extra {
            q.append_pair(k, v);
        }
        let offline = p.scope.split_whitespace().any(|s| s == "offline_access");
        if offline && !p.extra.iter().any(|(k, _)| *k == "prompt") {
            q.append_pair("prompt", "consent");
        }
    }
    url
}

/// Compares without an early exit, so the time taken says nothing about how much of
/// a forged state matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What the valid callback carried.
type Outcome = Result<Secret, OAuthError>;

/// The bound loopback listener, before anyone was sent to the provider.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    port: u16,
}

impl Listener {
    /// Binds 127.0.0.1 on an ephemeral port.
    pub async fn bind() -> Result<Listener, OAuthError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| OAuthError::Setup(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OAuthError::Setup(format!("cannot read the listener's port: {e}")))?
            .port();
        Ok(Listener { listener, port })
    }

    /// `http://127.0.0.1:PORT/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Serves until one valid callback arrives or `timeout` passes, and returns the
    /// authorization code.
    pub async fn wait_for_code(self, state: &str, timeout: Duration) -> Result<Secret, OAuthError> {
        let (tx, rx) = oneshot::channel::<Outcome>();
        let shared = Arc::new(Callback {
            state: state.to_string(),
            // A std Mutex: taken briefly, never across an await.
            tx: Mutex::new(Some(tx)),
        });
        let mut connections = tokio::task::JoinSet::new();
        let accept = async {
            loop {
                let Ok((stream, _peer)) = self.listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(&req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .keep_alive(false)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    // A broken browser connection only ends that connection; the
                    // listener keeps waiting for the real callback.
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "a callback connection failed");
                    }
                });
            }
        };
        let outcome = tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err(OAuthError::Setup("the callback listener stopped".into()))),
            () = tokio::time::sleep(timeout) => Err(OAuthError::LoginTimeout(timeout.as_secs())),
            () = accept => Err(OAuthError::Setup("the callback listener stopped".into())),
        };
        // Let the browser receive its page before the connections are dropped.
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_millis(500), drain)
            .await
            .is_err()
        {
            // Slow browsers are cut off: the login's outcome is already known.
        }
        outcome
    }
}

#[derive(Debug)]
struct Callback {
    state: String,
    tx: Mutex<Option<oneshot::Sender<Outcome>>>,
}

const PAGE_OK: &str = "<!doctype html><meta charset=utf-8><title>Latchkey</title>\
<h1>Signed in</h1><p>You can close this tab and go back to the terminal.</p>";
const PAGE_FAILED: &str = "<!doctype html><meta charset=utf-8><title>Latchkey</title>\
<h1>Sign-in failed</h1><p>Go back to the terminal for details.</p>";
const PAGE_BAD: &str = "<!doctype html><meta charset=utf-8><title>Latchkey</title>\
<h1>Bad request</h1><p>This is not a valid sign-in callback.</p>";

impl Callback {
    fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let bad = || page(StatusCode::BAD_REQUEST, PAGE_BAD);
        if req.method() != hyper::Method::GET || req.uri().path() != "/callback" {
            return bad();
        }
        let query = req.uri().query().unwrap_or("");
        let mut state = None;
        let mut code = None;
        let mut error = None;
        let mut description = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "error_description" => &mut description,
                _ => continue,
            };
            if slot.is_some() {
                // A repeated parameter is not a callback a provider sends.
                return bad();
            }
            *slot = Some(v.into_owned());
        }
        // The state is checked before anything else is looked at, and so before any
        // token exchange (docs/behaviour.md, "Commands").
        if !state.is_some_and(|s| same(&s, &self.state)) {
            return bad();
        }
        let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return bad();
        };
        let (outcome, response) = match (code, error) {
            (Some(code), None) if !code.is_empty() => {
                (Ok(Secret::new(code)), page(StatusCode::OK, PAGE_OK))
            }
            (_, Some(error)) => {
                let detail = super::error::clean_description(&match description {
                    Some(d) => format!("{error}: {d}"),
                    None => error,
                });
                (
                    Err(OAuthError::LoginDenied(format!(
                        "the provider answered {detail}"
                    ))),
                    page(StatusCode::OK, PAGE_FAILED),
                )
            }
            _ => (
                Err(OAuthError::LoginDenied(
                    "the provider's callback carried no code".into(),
                )),
                page(StatusCode::BAD_REQUEST, PAGE_FAILED),
            ),
        };
        // The receiver only goes away when the wait already ended (timeout), in
        // which case this late callback changes nothing, as it should.
        if tx.send(outcome).is_err() {
            tracing::debug!("a callback arrived after the login ended");
        }
        response
    }
}

fn page(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(scope: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let endpoint = Url::parse("https://id.example.test/authorize").unwrap();
        let p = AuthorizeParams {
            client_id: "cli",
            redirect_uri: "http://127.0.0.1:1234/callback",
            scope,
            state: "s",
            extra,
        };
        authorize_url(&endpoint, &p, "c")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn offline_access_asks_for_consent_unless_the_profile_sets_a_prompt() {
        let prompts = |q: Vec<(String, String)>| -> Vec<String> {
            q.into_iter()
                .filter(|(k, _)| k == "prompt")
                .map(|(_, v)| v)
                .collect()
        };
        assert_eq!(prompts(query("openid offline_access", &[])), ["consent"]);
        assert!(prompts(query("openid profile", &[])).is_empty());
        assert_eq!(
            prompts(query("openid offline_access", &[("prompt", "login")])),
            ["login"]
        );
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        let v = Secret::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_string());
        assert_eq!(
            challenge_of(&v),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = pkce().unwrap();
        assert_eq!(p.verifier.len(), 64);
        assert!(
            p.verifier
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(pkce().unwrap().verifier, p.verifier);
        assert!(random_state().unwrap().len() >= 22, "at least 128 bits");
    }

    #[test]
    fn state_comparison() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn callback_accepts_one_valid_request_only() {
        let (tx, mut rx) = oneshot::channel();
        let cb = Callback {
            state: "s1".into(),
            tx: Mutex::new(Some(tx)),
        };
        assert_eq!(
            cb.handle(&get("/callback?code=c&state=wrong")).status(),
            400
        );
        assert_eq!(cb.handle(&get("/callback?code=c")).status(), 400);
        assert_eq!(cb.handle(&get("/other?code=c&state=s1")).status(), 400);
        assert_eq!(
            cb.handle(&get("/callback?code=c&state=s1&state=s1"))
                .status(),
            400
        );
        assert!(rx.try_recv().is_err(), "nothing delivered yet");
        assert_eq!(
            cb.handle(&get("/callback?code=the-code&state=s1")).status(),
            200
        );
        assert_eq!(rx.try_recv().unwrap().unwrap().expose(), "the-code");
        assert_eq!(
            cb.handle(&get("/callback?code=again&state=s1")).status(),
            400
        );
    }

    #[test]
    fn provider_errors_are_delivered() {
        let (tx, mut rx) = oneshot::channel();
        let cb = Callback {
            state: "s".into(),
            tx: Mutex::new(Some(tx)),
        };
        cb.handle(&get("/callback?error=access_denied&state=s"));
        let err = rx.try_recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("access_denied"), "{err}");
    }
}
