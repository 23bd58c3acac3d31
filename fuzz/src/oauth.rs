//! Target `oauth_answer`: how the engine reads a provider's answers: the token
//! endpoint (`oauth::token`, with RFC 6749 §5.2 error bodies), device authorization
//! (`oauth::device::start`), discovery (`oauth::discovery::endpoints`), userinfo
//! and revocation.
//!
//! The parsers are private to their modules and the public entry points speak HTTP,
//! so the target drives those entry points, over the engine's real HTTP client,
//! against a loopback server (started once per process) that answers every request
//! with the status and body taken from the input. Each answer closes its connection,
//! so no input leaves state behind for the next.
//!
//! Input: `[endpoint][status hi][status lo][body...]`; the status is mapped into
//! 200..=599 (1xx would be an interim answer, not an answer). `$ISSUER` in the body
//! becomes the server's URL, since the issuer a discovery document must name
//! includes a port that changes from run to run.
//!
//! Checked: no panic, no hang; success only on a 2xx status and with what the
//! protocol requires (a non-empty access token of type Bearer, non-empty device and
//! user codes, a usable token endpoint, a `sub`); errors of a 2xx are `Malformed`
//! and of any other status `Rejected` or `Status` with that status; a provider's
//! error code is cleaned before it is shown; no error text carries a control
//! character or a token value taken from the body; whatever `expires_in` says
//! (zero, negative, 1e18, a string), the engine's lifetime bound holds and the
//! expiry can be written as a date.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use latchkey_daemon::config::ProfileConfig;
use latchkey_daemon::oauth::http::Http;
use latchkey_daemon::oauth::{OAuthError, device, discovery, revoke, token, userinfo};
use latchkey_proto::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

/// Longer than this (the HTTP client's own bound is 30 s) is a hang.
const HANG: Duration = Duration::from_secs(40);

/// Stands for the loopback server's URL in a body (see [`with_issuer`]).
const ISSUER: &[u8] = b"$ISSUER";

type Reply = Arc<Mutex<(u16, Vec<u8>)>>;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    http: Http,
    base: String,
    reply: Reply,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| Mutex::new(Fixture::new()))
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let reply: Reply = Arc::new(Mutex::new((200, Vec::new())));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback listener");
        let base = format!("http://{}", listener.local_addr().expect("a bound address"));
        let served = reply.clone();
        let issuer = base.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(answer(stream, served.clone(), issuer.clone()));
            }
        });
        let http = Http::new().expect("the HTTP client starts");
        Fixture {
            runtime,
            http,
            base,
            reply,
        }
    }
}

/// Reads one request (head, then a `Content-Length` body) and answers the reply.
async fn answer(mut stream: tokio::net::TcpStream, reply: Reply, base: String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let (status, body) = reply.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let body = with_issuer(&body, &base);
    let mut out = format!(
        "HTTP/1.1 {status} Fuzz\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    // The client may hang up first (a 204 or 304 has no body); that is fine.
    if stream.write_all(&out).await.is_ok() && stream.shutdown().await.is_ok() {}
}

/// The body with each `$ISSUER` replaced by the server's own URL, so a discovery
/// document can name the issuer it was asked for although the port changes.
fn with_issuer(body: &[u8], base: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.windows(ISSUER.len()).position(|w| w == ISSUER) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(base.as_bytes());
        rest = &rest[i + ISSUER.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// What the body claims as tokens, when a value occurs nowhere else in it (a value
/// repeated elsewhere, say as the token type, may rightly appear in a message).
fn body_secrets(body: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(body);
    ["access_token", "refresh_token", "id_token", "device_code"]
        .iter()
        .filter_map(|k| map.get(*k)?.as_str())
        .filter(|v| v.len() >= 8 && text.matches(*v).count() == 1)
        .map(str::to_string)
        .collect()
}

fn check_error(e: &OAuthError, status: u16, body: &[u8]) {
    let shown = e.to_string();
    assert!(
        !shown.chars().any(char::is_control),
        "a control character in {shown:?}"
    );
    for secret in body_secrets(body) {
        assert!(!shown.contains(&secret), "{shown:?} shows a token");
    }
    let success = (200..300).contains(&status);
    // A 2xx whose body is an OAuth error is that error, from the token and device
    // endpoints only (GitHub answers them so); never when it carries a token.
    // (A body the engine reads as an error but `Value` refuses, for serde's
    // lenience with skipped fields, is given the benefit of the doubt.)
    let error_in_2xx = |endpoint: &str| {
        matches!(endpoint, "token" | "device authorization")
            && std::str::from_utf8(body).is_ok()
            && serde_json::from_slice::<serde_json::Value>(body).map_or(true, |v| {
                v.get("access_token").is_none_or(serde_json::Value::is_null)
                    && v.get("error")
                        .and_then(|e| e.as_str())
                        .is_some_and(|e| !e.is_empty())
            })
    };
    match e {
        OAuthError::Malformed { .. } => {}
        OAuthError::Rejected {
            status: s,
            code,
            endpoint,
            ..
        } => {
            assert!(
                (!success || error_in_2xx(endpoint)) && *s == status,
                "{e:?} for HTTP {status}"
            );
            assert!(!code.is_empty(), "{e:?}");
            assert!(
                code.chars()
                    .all(|c| c.is_ascii_graphic() || c == ' ' || c == '…'),
                "{code:?} is not cleaned"
            );
        }
        OAuthError::Status { status: s, .. } => assert!(!success && *s == status, "{e:?}"),
        // Discovery refuses a published endpoint it cannot use as a setup error.
        OAuthError::Setup(_) => {}
        other => panic!("unexpected {other:?} for HTTP {status}"),
    }
    if success && !matches!(e, OAuthError::Setup(_)) {
        assert!(
            matches!(
                e,
                OAuthError::Malformed { .. } | OAuthError::Rejected { .. }
            ),
            "{e:?} for a 2xx"
        );
    }
}

pub fn run(data: &[u8]) {
    let Some((&[which, hi, lo], body)) = data.split_first_chunk::<3>() else {
        return;
    };
    let status = 200 + u16::from_be_bytes([hi, lo]) % 400;
    let fx = fixture().lock().unwrap_or_else(|p| p.into_inner());
    *fx.reply.lock().unwrap_or_else(|p| p.into_inner()) = (status, body.to_vec());
    let success = (200..300).contains(&status);
    let url = |path: &str| Url::parse(&format!("{}{path}", fx.base)).expect("a loopback URL");
    let http = &fx.http;
    let outcome = fx.runtime.block_on(async {
        tokio::time::timeout(HANG, async {
            match which % 5 {
                0 => {
                    let code = Secret::new("fuzz-code");
                    let verifier = Secret::new("fuzz-verifier");
                    let grant = token::Grant::AuthorizationCode {
                        code: &code,
                        verifier: &verifier,
                        redirect_uri: "http://127.0.0.1:9/callback",
                    };
                    token::request(
                        http,
                        &url("/token"),
                        &latchkey_daemon::oauth::client::ClientAuth::public("fuzz"),
                        grant,
                        &[],
                    )
                    .await
                    .map(|t| {
                        assert!(success, "tokens from HTTP {status}");
                        assert!(!t.access_token.is_empty());
                        assert_eq!(t.token_type, "Bearer");
                        assert!(t.refresh_token.as_ref().is_none_or(|r| !r.is_empty()));
                        // Whatever `expires_in` said, the engine's bound holds and
                        // the expiry can be written as a date.
                        let now = 1_800_000_000;
                        if let Some(at) = latchkey_daemon::policy::expires_at(now, t.expires_in) {
                            let lifetime = at - now;
                            assert!(
                                (1..=latchkey_daemon::policy::MAX_LIFETIME).contains(&lifetime),
                                "lifetime {lifetime} out of bounds"
                            );
                            assert!(!latchkey_daemon::convert::rfc3339(at).is_empty());
                        }
                    })
                }
                1 => device::start(
                    http,
                    &url("/device"),
                    &latchkey_daemon::oauth::client::ClientAuth::public("fuzz"),
                    "openid",
                    &[],
                )
                .await
                .map(|a| {
                    assert!(success, "a device code from HTTP {status}");
                    assert!(!a.user_code.is_empty() && !a.device_code.is_empty());
                }),
                2 => {
                    let profile = ProfileConfig {
                        issuer: fx.base.clone(),
                        client_id: "fuzz".into(),
                        scopes: vec!["openid".into()],
                        authorization_endpoint: None,
                        token_endpoint: None,
                        device_authorization_endpoint: None,
                        userinfo_endpoint: None,
                        revocation_endpoint: None,
                        audience: None,
                        resource: None,
                        extra_auth_params: BTreeMap::new(),
                        client_secret: None,
                        client_auth: None,
                        groups_claim: "groups".into(),
                        proxy: None,
                        git_hosts: Vec::new(),
                        git_username: None,
                        git_auth: None,
                        docker_registries: Vec::new(),
                        docker_username: None,
                    };
                    let announced = serde_json::from_slice::<serde_json::Value>(body)
                        .is_ok_and(|d| d["authorization_response_iss_parameter_supported"] == true);
                    discovery::endpoints(http, &profile).await.map(|e| {
                        assert!(success, "endpoints from HTTP {status}");
                        assert!(latchkey_daemon::config::check_url(e.token.as_str()).is_ok());
                        // The iss a login expects is the issuer discovery checked,
                        // and only JSON `true` makes it required.
                        assert_eq!(
                            e.issuer.issuer.trim_end_matches('/'),
                            profile.issuer.trim_end_matches('/')
                        );
                        assert_eq!(e.issuer.required, announced, "{e:?}");
                    })
                }
                3 => {
                    let token = Secret::new("fuzz-access-token");
                    userinfo::fetch(http, &url("/userinfo"), &token, "groups")
                        .await
                        .map(|(user, _groups)| {
                            assert!(success, "a user from HTTP {status}");
                            assert!(!user.sub.is_empty());
                        })
                }
                _ => {
                    let token = Secret::new("fuzz-refresh-token");
                    revoke::revoke(
                        http,
                        &url("/revoke"),
                        &latchkey_daemon::oauth::client::ClientAuth::public("fuzz"),
                        &token,
                        "refresh_token",
                    )
                    .await
                    .map(|()| assert!(success, "revoked on HTTP {status}"))
                }
            }
        })
        .await
    });
    if std::env::var_os("LATCHKEY_FUZZ_TRACE").is_some() {
        eprintln!("endpoint {} HTTP {status} -> {outcome:?}", which % 5);
    }
    match outcome {
        Err(_) => panic!("endpoint {} with HTTP {status} hung", which % 5),
        Ok(Ok(())) => {}
        Ok(Err(e)) => check_error(&e, status, body),
    }
}
