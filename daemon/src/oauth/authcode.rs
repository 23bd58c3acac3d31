//! The authorization code flow for native apps: PKCE (RFC 7636, S256), a random
//! `state`, and a one-shot loopback listener (RFC 8252 §7.3).
//!
//! The listener binds 127.0.0.1 on an ephemeral port and accepts exactly one valid
//! callback: `GET /callback` whose `state` matches. Everything else (other paths,
//! methods, a wrong or missing state, anything after the valid callback) gets a 400
//! and changes nothing. It stops when the valid callback arrived or the timeout ran out.
//!
//! Any local user can connect to that port, so the listener is bounded
//! (docs/behaviour.md, "Security"): at most [`MAX_CONNECTIONS`] at once, each for at
//! most [`CONNECTION_DEADLINE`]; at the cap the oldest connection that has not sent a
//! request yet is closed, so idle connections held open by someone else cannot keep
//! the browser's callback waiting or starve the process of file descriptors; and a
//! failing `accept` (EMFILE, ENFILE) is retried after a growing pause, not in a loop.
//!
//! The callback's `iss` (RFC 9207) is checked against the provider's issuer before
//! the code leaves the listener, so a response from another provider (a mix-up) never
//! reaches the token endpoint.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use latchkey_proto::secret::Secret;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
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
    pub async fn wait_for_code(
        self,
        state: &str,
        issuer: &ExpectedIssuer,
        timeout: Duration,
    ) -> Result<Secret, OAuthError> {
        let (tx, rx) = oneshot::channel::<Outcome>();
        let shared = Arc::new(Callback {
            state: state.to_string(),
            issuer: issuer.clone(),
            // A std Mutex: taken briefly, never across an await.
            tx: Mutex::new(Some(tx)),
        });
        let mut connections = Connections::default();
        let outcome = tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err(OAuthError::Setup("the callback listener stopped".into()))),
            () = tokio::time::sleep(timeout) => Err(OAuthError::LoginTimeout(timeout.as_secs())),
            () = serve(&self.listener, &shared, &mut connections) => Err(OAuthError::Setup("the callback listener stopped".into())),
        };
        // Let the browser receive its page before the connections are dropped.
        let drain = async { while connections.set.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_millis(500), drain)
            .await
            .is_err()
        {
            // Slow browsers are cut off: the login's outcome is already known.
        }
        outcome
    }
}

/// At most this many callback connections are open at once. A browser needs one or
/// two (some preconnect); the cap bounds the file descriptors another local user can
/// make the process spend.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest a callback connection may stay open, request and answer included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// The first pause after a failed `accept`; it doubles up to [`BACKOFF_MAX`] and
/// starts over after a success.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where connections come from: the loopback listener, or a test's fake.
trait Accept {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        TcpListener::accept(self)
            .await
            .map(|(stream, _peer)| stream)
    }
}

/// The open callback connections, oldest first.
#[derive(Default)]
struct Connections {
    set: JoinSet<()>,
    open: VecDeque<Open>,
}

struct Open {
    task: AbortHandle,
    /// Set once a request head arrived: the connection is being answered, not idle.
    answering: Arc<AtomicBool>,
}

impl Connections {
    /// Forgets the connections that ended.
    fn reap(&mut self) {
        while self.set.try_join_next().is_some() {}
        self.open.retain(|c| !c.task.is_finished());
    }

    /// Makes room for one more connection: closes the oldest idle one when at the
    /// cap, or waits for one being answered to end (each ends by its deadline).
    async fn make_room(&mut self) {
        self.reap();
        while self.open.len() >= MAX_CONNECTIONS {
            let idle = self
                .open
                .iter()
                .position(|c| !c.answering.load(Ordering::Acquire));
            match idle.and_then(|i| self.open.remove(i)) {
                Some(oldest) => {
                    tracing::debug!("too many callback connections: closing the oldest idle one");
                    oldest.task.abort();
                }
                None => {
                    if self.set.join_next().await.is_none() {
                        self.open.clear();
                    }
                }
            }
            self.reap();
        }
    }
}

/// Accepts and serves callback connections until the caller stops polling. Never
/// returns: accept errors are retried after a pause.
async fn serve<A: Accept>(listener: &A, callback: &Arc<Callback>, connections: &mut Connections) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        connections.make_room().await;
        let stream = match listener.accept().await {
            Ok(stream) => {
                backoff = BACKOFF_FIRST;
                stream
            }
            Err(e) => {
                // Out of file descriptors (EMFILE, ENFILE) or a connection that died
                // in the queue. The pending connection stays queued, so retrying at
                // once would spin on the same error.
                tracing::debug!(error = %e, pause_ms = backoff.as_millis(), "cannot accept a callback connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let answering = Arc::new(AtomicBool::new(false));
        let task = connections.set.spawn(serve_connection(
            stream,
            callback.clone(),
            answering.clone(),
        ));
        connections.open.push_back(Open { task, answering });
        // Let the new connection read what it was sent before more are accepted: a
        // browser's request is usually already waiting, and a connection that has
        // sent one is not closed to make room for a flood of idle ones.
        tokio::task::yield_now().await;
    }
}

async fn serve_connection<S>(stream: S, callback: Arc<Callback>, answering: Arc<AtomicBool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        answering.store(true, Ordering::Release);
        let callback = callback.clone();
        async move { Ok::<_, Infallible>(callback.handle(&req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(CONNECTION_DEADLINE)
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    // A broken browser connection only ends that connection; the listener keeps
    // waiting for the real callback.
    match tokio::time::timeout(CONNECTION_DEADLINE, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "a callback connection failed"),
        Err(_) => tracing::debug!("a callback connection ran out of time"),
    }
}

/// What the authorization response's `iss` (RFC 9207) must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedIssuer {
    /// The issuer identifier: discovery's `issuer` exactly as published (RFC 9207
    /// §2.4 compares strings, trailing slash included), else the profile's.
    pub issuer: String,
    /// Discovery announced `authorization_response_iss_parameter_supported`: a
    /// response without `iss` is then refused.
    pub required: bool,
}

impl ExpectedIssuer {
    /// Checks the `iss` of an authorization response, success or error.
    fn check(&self, iss: Option<&str>) -> Result<(), OAuthError> {
        match iss {
            Some(iss) if iss == self.issuer => Ok(()),
            Some(iss) => Err(OAuthError::WrongIssuer(format!(
                "the authorization response came from issuer \"{}\", not \"{}\"",
                super::error::clean_description(iss),
                self.issuer
            ))),
            None if self.required => Err(OAuthError::WrongIssuer(format!(
                "the authorization response carried no iss, which {} announces it sends",
                self.issuer
            ))),
            None => Ok(()),
        }
    }
}

#[derive(Debug)]
struct Callback {
    state: String,
    issuer: ExpectedIssuer,
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
        let mut iss = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "error_description" => &mut description,
                "iss" => &mut iss,
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
        // A response from another issuer (RFC 9207) ends the login before its code
        // or error is believed: the code is never sent anywhere.
        let checked = self.issuer.check(iss.as_deref());
        let (outcome, response) = match (checked, code, error) {
            (Err(e), _, _) => (Err(e), page(StatusCode::OK, PAGE_FAILED)),
            (Ok(()), Some(code), None) if !code.is_empty() => {
                (Ok(Secret::new(code)), page(StatusCode::OK, PAGE_OK))
            }
            (Ok(()), _, Some(error)) => {
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

    const ISSUER: &str = "https://id.example.test/";

    fn callback(state: &str, iss_required: bool) -> (Callback, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let cb = Callback {
            state: state.into(),
            issuer: ExpectedIssuer {
                issuer: ISSUER.into(),
                required: iss_required,
            },
            tx: Mutex::new(Some(tx)),
        };
        (cb, rx)
    }

    fn outcome(required: bool, query: &str) -> Outcome {
        let (cb, mut rx) = callback("s", required);
        cb.handle(&get(&format!("/callback?state=s&{query}")));
        rx.try_recv().unwrap()
    }

    #[test]
    fn iss_must_be_the_issuer_exactly() {
        let iss = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        // Right, with or without the announcement.
        for required in [false, true] {
            let code = outcome(required, &format!("code=c&iss={}", iss(ISSUER))).unwrap();
            assert_eq!(code.expose(), "c");
        }
        // Absent: fine unless announced.
        assert!(outcome(false, "code=c").is_ok());
        let err = outcome(true, "code=c").unwrap_err();
        assert!(matches!(err, OAuthError::WrongIssuer(_)), "{err}");
        assert!(err.to_string().contains("carried no iss"), "{err}");
        // Another issuer, or the same one written differently (RFC 9207 §2.4 is a
        // simple string comparison): refused, and the code is not handed on.
        for other in [
            "https://evil.example.test/",
            "https://id.example.test",
            "https://ID.example.test/",
        ] {
            let err = outcome(false, &format!("code=c&iss={}", iss(other))).unwrap_err();
            assert!(matches!(err, OAuthError::WrongIssuer(_)), "{other}: {err}");
            assert_eq!(err.category(), latchkey_proto::error::Category::Server);
            assert!(err.to_string().contains(other), "{err}");
        }
        // An error response from another issuer is reported as the mix-up.
        let err = outcome(
            false,
            "error=access_denied&iss=https%3A%2F%2Fevil.example.test%2F",
        )
        .unwrap_err();
        assert!(matches!(err, OAuthError::WrongIssuer(_)), "{err}");
        // A repeated iss is not a response a provider sends.
        let (cb, _rx) = callback("s", false);
        let twice = format!("/callback?state=s&code=c&iss={0}&iss={0}", iss(ISSUER));
        assert_eq!(cb.handle(&get(&twice)).status(), 400);
    }

    /// Connections from a channel, or a failing `accept` that counts its calls.
    struct Fake {
        streams: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<tokio::io::DuplexStream>>,
        failures: std::sync::atomic::AtomicUsize,
    }

    impl Accept for Fake {
        type Stream = tokio::io::DuplexStream;
        async fn accept(&self) -> std::io::Result<Self::Stream> {
            match self.streams.lock().await.recv().await {
                Some(s) => Ok(s),
                None => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    Err(std::io::Error::from_raw_os_error(24)) // EMFILE
                }
            }
        }
    }

    fn fake() -> (
        Fake,
        tokio::sync::mpsc::UnboundedSender<tokio::io::DuplexStream>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let fake = Fake {
            streams: tokio::sync::Mutex::new(rx),
            failures: std::sync::atomic::AtomicUsize::new(0),
        };
        (fake, tx)
    }

    #[tokio::test]
    async fn accept_errors_are_retried_with_a_growing_pause() {
        let (failing, tx) = fake();
        drop(tx); // every accept fails
        let (cb, _rx) = callback("s", false);
        let (cb, mut conns) = (Arc::new(cb), Connections::default());
        let window = Duration::from_millis(600);
        let r = tokio::time::timeout(window, serve(&failing, &cb, &mut conns)).await;
        assert!(r.is_err(), "the loop keeps going");
        // Pauses of 10, 20, 40, 80, 160, 320 ms fit about 6 attempts in 600 ms; a
        // loop without them makes millions.
        let attempts = failing.failures.load(Ordering::Relaxed);
        assert!(
            (2..=10).contains(&attempts),
            "{attempts} accept attempts in {window:?}"
        );
    }

    #[tokio::test]
    async fn idle_connections_beyond_the_cap_cannot_keep_the_callback_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (listener, tx) = fake();
        let (cb, rx) = callback("s", false);
        let (cb, mut conns) = (Arc::new(cb), Connections::default());
        // Ten times the cap of connections that never send a byte, held open.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS * 10 {
            let (client, server) = tokio::io::duplex(1024);
            tx.send(server).unwrap();
            idle.push(client);
        }
        let (mut browser, server) = tokio::io::duplex(4096);
        tx.send(server).unwrap();
        browser
            .write_all(b"GET /callback?code=c&state=s HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let serving = serve(&listener, &cb, &mut conns);
        let code = tokio::select! {
            r = rx => r.unwrap().unwrap(),
            () = serving => unreachable!(),
            () = tokio::time::sleep(Duration::from_secs(5)) => panic!("the callback was not served"),
        };
        assert_eq!(code.expose(), "c");
        assert!(
            conns.open.len() <= MAX_CONNECTIONS,
            "{} open",
            conns.open.len()
        );
        let mut page = Vec::new();
        browser.read_to_end(&mut page).await.unwrap();
        assert!(
            page.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&page)
        );
        drop(idle);
    }

    #[test]
    fn callback_accepts_one_valid_request_only() {
        let (cb, mut rx) = callback("s1", false);
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
        let (cb, mut rx) = callback("s", false);
        cb.handle(&get("/callback?error=access_denied&state=s"));
        let err = rx.try_recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("access_denied"), "{err}");
    }
}
