//! Tests of the fake identity provider itself (`latchkey_tests::fake_idp` and the `fake-idp`
//! binary): every scripted fault, PKCE, the authorize redirect, refresh rotation and reuse
//! detection, the device flow, userinfo, revocation, counters, the request log, the admin
//! endpoints and the binary's ready line. Loopback only; no test sleeps more than ~1 s.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream as StdTcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_tests::fake_idp::http::{self, HttpError, HttpResponse};
use latchkey_tests::fake_idp::{
    ConfigPatch, Counters, DEVICE_CODE_GRANT, DeviceApproval, Endpoint, FakeIdp, FakeIdpConfig,
    Fault, FaultScript, IssParameter, IssuedToken, LoggedRequest, TokenKind, fingerprint,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CLIENT: &str = "latchkey-cli";
/// Never listened on: the tests read the redirect's Location instead of following it.
const REDIRECT: &str = "http://127.0.0.1:45678/callback";
const VERIFIER: &str = "test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn start() -> FakeIdp {
    FakeIdp::start(FakeIdpConfig::default()).await
}

fn field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing or not a string in {v}"))
        .to_owned()
}

fn query_pairs(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .expect("Location is a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

/// `GET /authorize` with these parameters (no redirect followed).
async fn authorize_with(idp: &FakeIdp, params: &[(&str, &str)]) -> HttpResponse {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    http::get(&idp.url(&format!("/authorize?{query}")))
        .await
        .unwrap()
}

/// A well-formed authorization request's parameters.
fn authorize_params(challenge: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", CLIENT.into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", "openid email offline_access".into()),
        ("state", "st4te-xyz".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
        ("nonce", "n0nce".into()),
    ]
}

async fn authorize(idp: &FakeIdp, params: &[(&'static str, String)]) -> HttpResponse {
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    authorize_with(idp, &borrowed).await
}

/// Runs /authorize for [`VERIFIER`] and returns the code from the redirect.
async fn code_for(idp: &FakeIdp, verifier: &str) -> String {
    let resp = authorize(idp, &authorize_params(&challenge(verifier))).await;
    assert_eq!(resp.status, 302, "{}", resp.text());
    query_pairs(resp.header("location").unwrap())["code"].clone()
}

async fn exchange(idp: &FakeIdp, code: &str, verifier: &str) -> HttpResponse {
    http::post_form(
        &idp.url("/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", verifier),
        ],
    )
    .await
    .unwrap()
}

/// A full browser-flow login; returns the token response.
async fn login(idp: &FakeIdp) -> Value {
    let code = code_for(idp, VERIFIER).await;
    let resp = exchange(idp, &code, VERIFIER).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json().unwrap()
}

async fn refresh(idp: &FakeIdp, rt: &str) -> HttpResponse {
    http::post_form(
        &idp.url("/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", CLIENT),
        ],
    )
    .await
    .unwrap()
}

async fn userinfo(idp: &FakeIdp, at: &str) -> HttpResponse {
    http::get_bearer(&idp.url("/userinfo"), at).await.unwrap()
}

async fn device_authorize(idp: &FakeIdp) -> Value {
    let resp = http::post_form(
        &idp.url("/device/authorize"),
        &[("client_id", CLIENT), ("scope", "openid offline_access")],
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json().unwrap()
}

async fn poll(idp: &FakeIdp, device_code: &str) -> HttpResponse {
    http::post_form(
        &idp.url("/token"),
        &[
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", device_code),
            ("client_id", CLIENT),
        ],
    )
    .await
    .unwrap()
}

fn oauth_error(resp: &HttpResponse) -> String {
    let body = resp
        .json()
        .unwrap_or_else(|e| panic!("{e}: {}", resp.text()));
    field(&body, "error")
}

async fn discovery(idp: &FakeIdp) -> HttpResponse {
    http::get(&idp.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_document_names_every_endpoint() {
    let idp = start().await;
    let iss = idp.issuer();
    assert!(iss.starts_with("http://127.0.0.1:"), "{iss}");
    let doc = discovery(&idp).await.json().unwrap();
    assert_eq!(doc["issuer"], iss);
    assert_eq!(doc["authorization_endpoint"], format!("{iss}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{iss}/token"));
    assert_eq!(
        doc["device_authorization_endpoint"],
        format!("{iss}/device/authorize")
    );
    assert_eq!(doc["userinfo_endpoint"], format!("{iss}/userinfo"));
    assert_eq!(doc["revocation_endpoint"], format!("{iss}/revoke"));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    let grants = doc["grant_types_supported"].as_array().unwrap();
    for g in ["authorization_code", "refresh_token", DEVICE_CODE_GRANT] {
        assert!(grants.contains(&json!(g)), "{g} missing from {grants:?}");
    }
    let jwks = http::get(&idp.url("/jwks")).await.unwrap();
    assert_eq!(jwks.json().unwrap(), json!({ "keys": [] }));
}

#[tokio::test]
async fn discovery_and_revocation_can_be_switched_off() {
    let idp = FakeIdp::start(FakeIdpConfig {
        revocation: false,
        ..FakeIdpConfig::default()
    })
    .await;
    let doc = discovery(&idp).await.json().unwrap();
    assert!(doc.get("revocation_endpoint").is_none(), "{doc}");
    let tokens = login(&idp).await;
    let resp = http::post_form(
        &idp.url("/revoke"),
        &[
            ("token", &field(&tokens, "access_token")),
            ("client_id", CLIENT),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 404);

    idp.set_config(|c| c.discovery = false);
    assert_eq!(discovery(&idp).await.status, 404);
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn fault_500_applies_to_exactly_the_next_n_requests_and_consumes_nothing() {
    let idp = start().await;
    let rt = field(&login(&idp).await, "refresh_token");
    idp.push_faults(Endpoint::Token, Fault::Status500, 2);

    for _ in 0..2 {
        let resp = refresh(&idp, &rt).await;
        assert_eq!(resp.status, 500);
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/plain")
        );
    }
    // The faulted requests never reached the grant: the same refresh token still works.
    let resp = refresh(&idp, &rt).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(idp.pending_faults().is_empty());

    let c = idp.counters();
    assert_eq!(c.faults_served, 2);
    assert_eq!(c.token_requests.refresh_token, 3);
    assert_eq!(c.refresh_successes, 1);
    let refreshes: Vec<LoggedRequest> = idp
        .request_log()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .collect();
    let faults: Vec<_> = refreshes.iter().map(|r| (r.status, r.fault)).collect();
    assert_eq!(
        faults,
        [
            (Some(500), Some(Fault::Status500)),
            (Some(500), Some(Fault::Status500)),
            (Some(200), None)
        ]
    );
}

#[tokio::test]
async fn fault_503_carries_retry_after_then_stops() {
    let idp = start().await;
    idp.push_faults(Endpoint::Discovery, Fault::Status503, 1);
    let resp = discovery(&idp).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(discovery(&idp).await.status, 200);
}

#[tokio::test]
async fn fault_429_carries_retry_after_then_stops() {
    let idp = start().await;
    let at = field(&login(&idp).await, "access_token");
    idp.push_faults(Endpoint::Userinfo, Fault::Status429, 1);
    let resp = userinfo(&idp, &at).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(userinfo(&idp, &at).await.status, 200);
}

#[tokio::test]
async fn fault_409_answers_conflict_json_and_keeps_the_refresh_token() {
    let idp = start().await;
    let rt = field(&login(&idp).await, "refresh_token");
    idp.push_faults(Endpoint::Token, Fault::Status409, 1);
    let resp = refresh(&idp, &rt).await;
    assert_eq!(resp.status, 409);
    assert_eq!(oauth_error(&resp), "conflict");
    assert_eq!(refresh(&idp, &rt).await.status, 200);
    let log = idp.request_log();
    let last_two: Vec<_> = log[log.len() - 2..]
        .iter()
        .map(|r| (r.status, r.error.clone()))
        .collect();
    assert_eq!(
        last_two,
        [(Some(409), Some("conflict".into())), (Some(200), None)]
    );
}

#[tokio::test]
async fn fault_invalid_grant_is_counted_and_does_not_revoke() {
    let idp = start().await;
    let tokens = login(&idp).await;
    let rt = field(&tokens, "refresh_token");
    idp.push_faults(Endpoint::Token, Fault::InvalidGrant, 1);
    let resp = refresh(&idp, &rt).await;
    assert_eq!(resp.status, 400);
    assert_eq!(oauth_error(&resp), "invalid_grant");
    assert_eq!(idp.counters().invalid_grant, 1);
    assert_eq!(idp.counters().grants_revoked, 0);
    assert_eq!(
        userinfo(&idp, &field(&tokens, "access_token")).await.status,
        200
    );
    assert_eq!(refresh(&idp, &rt).await.status, 200);
}

#[tokio::test]
async fn fault_403_then_normal() {
    let idp = start().await;
    let at = field(&login(&idp).await, "access_token");
    idp.push_faults(Endpoint::Userinfo, Fault::Forbidden403, 1);
    let resp = userinfo(&idp, &at).await;
    assert_eq!(resp.status, 403);
    assert_eq!(oauth_error(&resp), "forbidden");
    assert_eq!(userinfo(&idp, &at).await.status, 200);
}

#[tokio::test]
async fn fault_slow_delays_then_answers_normally() {
    let idp = start().await;
    let delay = Duration::from_millis(600);
    idp.push_faults(Endpoint::Discovery, Fault::Slow(delay), 1);

    let started = Instant::now();
    let resp = discovery(&idp).await;
    let slow = started.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json().unwrap()["issuer"], idp.issuer());
    assert!(
        slow >= delay,
        "answered after {slow:?}, before the {delay:?} delay"
    );

    let started = Instant::now();
    assert_eq!(discovery(&idp).await.status, 200);
    assert!(started.elapsed() < delay, "second request was slow too");
    let log = idp.request_log();
    assert_eq!(log[0].fault, Some(Fault::Slow(delay)));
    let answered_after = log[0].done_ms.unwrap() - log[0].at_ms;
    assert!(
        answered_after >= 600,
        "logged as answered after {answered_after} ms"
    );
}

#[tokio::test]
async fn fault_malformed_json_is_a_200_that_does_not_parse() {
    let idp = start().await;
    let rt = field(&login(&idp).await, "refresh_token");
    idp.push_faults(Endpoint::Token, Fault::MalformedJson, 1);
    let resp = refresh(&idp, &rt).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(resp.json().is_err(), "parsed: {}", resp.text());
    let next = refresh(&idp, &rt).await;
    assert_eq!(next.status, 200);
    assert!(field(&next.json().unwrap(), "access_token").starts_with("fk_at_"));
}

#[tokio::test]
async fn fault_connection_reset_gives_no_http_response() {
    let idp = start().await;
    idp.push_faults(Endpoint::Discovery, Fault::ConnectionReset, 2);

    // Through an HTTP client: an error, no status.
    match http::get(&idp.url("/.well-known/openid-configuration")).await {
        Err(HttpError::Http(e)) => {
            assert!(!e.is_timeout(), "{e}");
        }
        other => panic!("expected a failed exchange, got {other:?}"),
    }

    // On the raw socket: not one byte of response, and a TCP reset rather than a FIN.
    let addr = idp.addr();
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = StdTcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let result = s.read_to_end(&mut got);
        (result.map_err(|e| e.kind()), got)
    })
    .await
    .unwrap();
    assert_eq!(raw, (Err(std::io::ErrorKind::ConnectionReset), Vec::new()));

    // Exactly two: the third request is served.
    assert_eq!(discovery(&idp).await.status, 200);
    let answers: Vec<_> = idp
        .request_log()
        .iter()
        .map(|r| (r.status, r.done_ms.is_some()))
        .collect();
    assert_eq!(answers, [(None, false), (None, false), (Some(200), true)]);
    assert_eq!(idp.counters().faults_served, 2);
}

#[tokio::test]
async fn faults_target_their_endpoint_or_any_and_queue_in_order() {
    let idp = start().await;
    idp.push_faults(Endpoint::Userinfo, Fault::Status500, 1);
    idp.push_faults(Endpoint::Any, Fault::Status503, 2);
    idp.push_faults(Endpoint::Token, Fault::Status429, 0); // a no-op
    assert_eq!(
        idp.pending_faults(),
        [
            FaultScript {
                endpoint: Endpoint::Userinfo,
                fault: Fault::Status500,
                remaining: 1
            },
            FaultScript {
                endpoint: Endpoint::Any,
                fault: Fault::Status503,
                remaining: 2
            },
        ]
    );
    // Discovery skips the userinfo script and takes the oldest matching one (Any).
    assert_eq!(discovery(&idp).await.status, 503);
    assert_eq!(userinfo(&idp, "x").await.status, 500);
    assert_eq!(userinfo(&idp, "x").await.status, 503);
    // Both scripts used up: back to normal answers everywhere.
    assert_eq!(userinfo(&idp, "x").await.status, 401);
    assert_eq!(discovery(&idp).await.status, 200);
    assert!(idp.pending_faults().is_empty());

    idp.push_faults(Endpoint::Token, Fault::Status500, 5);
    idp.clear_faults();
    assert_eq!(discovery(&idp).await.status, 200);
    assert_eq!(idp.counters().faults_served, 3);
}

// ---------------------------------------------------------------------------------------
// Authorization code + PKCE
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn authorize_redirects_with_code_and_echoed_state() {
    let idp = start().await;
    let resp = authorize(&idp, &authorize_params(&challenge(VERIFIER))).await;
    assert_eq!(resp.status, 302);
    let location = resp.header("location").unwrap();
    assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
    let q = query_pairs(location);
    assert_eq!(q["state"], "st4te-xyz");
    assert!(q["code"].starts_with("fk_ac_"));
    assert!(!q.contains_key("error"));
    assert_eq!(
        idp.issued(TokenKind::AuthorizationCode),
        [q["code"].clone()]
    );
    assert_eq!(idp.counters().authorizations, 1);

    // localhost works too, and an existing query is kept.
    let mut params = authorize_params(&challenge(VERIFIER));
    params[2].1 = "http://localhost:5000/cb?keep=1".into();
    let resp = authorize(&idp, &params).await;
    let q = query_pairs(resp.header("location").unwrap());
    assert_eq!(
        (q["keep"].as_str(), q["state"].as_str()),
        ("1", "st4te-xyz")
    );
}

#[tokio::test]
async fn authorize_refuses_bad_clients_and_non_loopback_redirects_without_redirecting() {
    let idp = start().await;
    let good = authorize_params(&challenge(VERIFIER));
    let cases = [
        (
            "redirect_uri",
            "https://127.0.0.1:5000/cb",
            "invalid_request",
        ),
        (
            "redirect_uri",
            "http://evil.example:5000/cb",
            "invalid_request",
        ),
        ("redirect_uri", "http://127.0.0.1/cb", "invalid_request"),
        ("client_id", "someone-else", "invalid_client"),
    ];
    for (key, value, error) in cases {
        let params: Vec<_> = good
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == key {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        let resp = authorize(&idp, &params).await;
        assert_eq!(resp.status, 400, "{key}={value}");
        assert!(resp.header("location").is_none(), "{key}={value}");
        assert_eq!(oauth_error(&resp), error, "{key}={value}");
    }
    assert_eq!(idp.counters().authorizations, 0);
}

#[tokio::test]
async fn authorize_reports_pkce_and_response_type_errors_by_redirect() {
    let idp = start().await;
    let good = authorize_params(&challenge(VERIFIER));
    let without = |drop_key: &str| -> Vec<(&'static str, String)> {
        good.iter()
            .filter(|(k, _)| *k != drop_key)
            .cloned()
            .collect()
    };
    let with = |key: &str, value: &str| -> Vec<(&'static str, String)> {
        good.iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == key {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    let cases = [
        (without("code_challenge"), "invalid_request"),
        (without("code_challenge_method"), "invalid_request"),
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("code_challenge", "too-short"), "invalid_request"),
        (with("response_type", "token"), "unsupported_response_type"),
    ];
    for (params, error) in cases {
        let resp = authorize(&idp, &params).await;
        assert_eq!(resp.status, 302);
        let q = query_pairs(resp.header("location").unwrap());
        assert_eq!(q["error"], error, "{params:?}");
        assert_eq!(q["state"], "st4te-xyz");
        assert!(!q.contains_key("code"));
    }
    assert_eq!(idp.counters().authorizations, 0);
    let errors: Vec<_> = idp.request_log().into_iter().map(|r| r.error).collect();
    assert_eq!(errors[0].as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn authorize_can_be_configured_to_deny() {
    let idp = FakeIdp::start(FakeIdpConfig {
        authorize_deny: true,
        ..FakeIdpConfig::default()
    })
    .await;
    let resp = authorize(&idp, &authorize_params(&challenge(VERIFIER))).await;
    assert_eq!(resp.status, 302);
    let q = query_pairs(resp.header("location").unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st4te-xyz");
    assert!(!q.contains_key("code"));
}

/// RFC 9207: `iss` in the authorization response, right, wrong or absent, on success
/// and error alike; the discovery flag independently; both reachable by patch.
#[tokio::test]
async fn authorize_sends_iss_as_configured_and_discovery_can_announce_it() {
    let idp = start().await;
    let iss_of = |resp: &HttpResponse| {
        query_pairs(resp.header("location").unwrap())
            .get("iss")
            .cloned()
    };
    let params = authorize_params(&challenge(VERIFIER));
    assert_eq!(
        iss_of(&authorize(&idp, &params).await),
        None,
        "absent by default"
    );
    let doc = discovery(&idp).await.json().unwrap();
    assert!(
        doc.get("authorization_response_iss_parameter_supported")
            .is_none()
    );

    idp.update_config(&ConfigPatch {
        iss_parameter: Some(IssParameter::Issuer),
        announce_iss_parameter: Some(true),
        ..ConfigPatch::default()
    })
    .unwrap();
    assert_eq!(iss_of(&authorize(&idp, &params).await), Some(idp.issuer()));
    let doc = discovery(&idp).await.json().unwrap();
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);

    let patch: ConfigPatch = serde_json::from_value(json!({
        "iss_parameter": {"other": "https://evil.example.test"},
        "authorize_deny": true,
    }))
    .unwrap();
    idp.update_config(&patch).unwrap();
    let denied = authorize(&idp, &params).await;
    let q = query_pairs(denied.header("location").unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["iss"], "https://evil.example.test");
    let full = ConfigPatch::from(&idp.config());
    assert_eq!(
        full.iss_parameter,
        Some(IssParameter::Other("https://evil.example.test".into()))
    );
}

#[tokio::test]
async fn pkce_right_verifier_gets_tokens_with_an_id_token() {
    let idp = start().await;
    let code = code_for(&idp, VERIFIER).await;
    let resp = exchange(&idp, &code, VERIFIER).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let t = resp.json().unwrap();
    assert!(field(&t, "access_token").starts_with("fk_at_"));
    assert!(field(&t, "refresh_token").starts_with("fk_rt_"));
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    assert_eq!(t["scope"], "openid email offline_access");

    let id_token = field(&t, "id_token");
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3, "{id_token}");
    assert!(parts[2].starts_with("fk_it_"));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["sub"], "fake-user-0001");
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["groups"], json!(["dev", "ops"]));
}

#[tokio::test]
async fn pkce_wrong_or_malformed_verifier_is_invalid_grant() {
    let idp = start().await;
    let code = code_for(&idp, VERIFIER).await;
    let wrong = "another-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let too_short = "short-verifier";
    let bad_chars = format!("{VERIFIER}+/=");
    for verifier in [wrong, too_short, bad_chars.as_str()] {
        let resp = exchange(&idp, &code, verifier).await;
        assert_eq!(resp.status, 400, "{verifier}");
        assert_eq!(oauth_error(&resp), "invalid_grant", "{verifier}");
    }
    // A redirect_uri other than the authorization request's is refused too.
    let resp = http::post_form(
        &idp.url("/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:45678/other"),
            ("client_id", CLIENT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
    .unwrap();
    assert_eq!(oauth_error(&resp), "invalid_grant");
    assert_eq!(idp.counters().invalid_grant, 4);
    assert!(idp.issued(TokenKind::AccessToken).is_empty());
    // Failed attempts do not consume the code.
    assert_eq!(exchange(&idp, &code, VERIFIER).await.status, 200);
}

#[tokio::test]
async fn code_reuse_is_invalid_grant_and_revokes_what_it_gave() {
    let idp = start().await;
    let code = code_for(&idp, VERIFIER).await;
    let first = exchange(&idp, &code, VERIFIER).await.json().unwrap();
    let at = field(&first, "access_token");
    assert_eq!(userinfo(&idp, &at).await.status, 200);

    let again = exchange(&idp, &code, VERIFIER).await;
    assert_eq!(again.status, 400);
    assert_eq!(oauth_error(&again), "invalid_grant");
    assert_eq!(userinfo(&idp, &at).await.status, 401);
    assert_eq!(
        oauth_error(&refresh(&idp, &field(&first, "refresh_token")).await),
        "invalid_grant"
    );
    let c = idp.counters();
    assert_eq!((c.reuse_detections, c.grants_revoked), (1, 1));
}

#[tokio::test]
async fn wrong_client_and_bad_requests_at_the_token_endpoint() {
    let idp = start().await;
    let code = code_for(&idp, VERIFIER).await;
    let resp = http::post_form(
        &idp.url("/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "intruder"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(oauth_error(&resp), "invalid_client");
    assert!(resp.header("www-authenticate").is_some());

    let unsupported = http::post_form(
        &idp.url("/token"),
        &[("grant_type", "password"), ("client_id", CLIENT)],
    )
    .await
    .unwrap();
    assert_eq!(
        (unsupported.status, oauth_error(&unsupported).as_str()),
        (400, "unsupported_grant_type")
    );

    // JSON instead of a form, and repeated parameters, are invalid requests (RFC 6749 §3).
    let json_body = http::post_json(
        &idp.url("/token"),
        &json!({ "grant_type": "refresh_token", "client_id": CLIENT }),
    )
    .await
    .unwrap();
    assert_eq!(oauth_error(&json_body), "invalid_request");
    let repeated = http::post_form(
        &idp.url("/token"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_id", CLIENT),
        ],
    )
    .await
    .unwrap();
    assert_eq!(oauth_error(&repeated), "invalid_request");

    // HTTP Basic client authentication is accepted as well as client_id in the form.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:"))
    );
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .finish();
    let resp = http::send(
        axum::http::Method::POST,
        &idp.url("/token"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &basic),
        ],
        form.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
}

// ---------------------------------------------------------------------------------------
// Refresh: rotation, reuse detection, non-rotating modes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_spends_the_old_token() {
    let idp = FakeIdp::start(FakeIdpConfig {
        reuse_detection: false,
        ..FakeIdpConfig::default()
    })
    .await;
    let first = login(&idp).await;
    let mut rts = vec![field(&first, "refresh_token")];
    let mut ats = vec![field(&first, "access_token")];
    for _ in 0..3 {
        let resp = refresh(&idp, rts.last().unwrap()).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let t = resp.json().unwrap();
        rts.push(field(&t, "refresh_token"));
        ats.push(field(&t, "access_token"));
    }
    let distinct = |v: &[String]| v.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(distinct(&rts), 4, "refresh tokens must all differ");
    assert_eq!(distinct(&ats), 4, "access tokens must all differ");

    // A spent token is refused; without reuse detection nothing else is touched.
    let resp = refresh(&idp, &rts[1]).await;
    assert_eq!(oauth_error(&resp), "invalid_grant");
    assert_eq!(idp.counters().grants_revoked, 0);
    assert_eq!(userinfo(&idp, ats.last().unwrap()).await.status, 200);
    assert_eq!(refresh(&idp, rts.last().unwrap()).await.status, 200);
    assert_eq!(idp.counters().refresh_successes, 4);
}

#[tokio::test]
async fn reuse_of_a_rotated_refresh_token_revokes_the_whole_grant() {
    let idp = start().await;
    let first = login(&idp).await;
    let rt1 = field(&first, "refresh_token");
    let second = refresh(&idp, &rt1).await.json().unwrap();
    let (rt2, at2) = (
        field(&second, "refresh_token"),
        field(&second, "access_token"),
    );
    assert_eq!(userinfo(&idp, &at2).await.status, 200);

    let reuse = refresh(&idp, &rt1).await;
    assert_eq!(reuse.status, 400);
    assert_eq!(oauth_error(&reuse), "invalid_grant");

    // The rotated token and every access token of the grant stop working.
    assert_eq!(oauth_error(&refresh(&idp, &rt2).await), "invalid_grant");
    assert_eq!(userinfo(&idp, &at2).await.status, 401);
    assert_eq!(
        userinfo(&idp, &field(&first, "access_token")).await.status,
        401
    );
    let c = idp.counters();
    assert_eq!(c.reuse_detections, 1);
    assert_eq!(c.grants_revoked, 1);
    assert_eq!(c.invalid_grant, 2);

    // Another grant (a new login) is unaffected.
    let other = login(&idp).await;
    assert_eq!(
        refresh(&idp, &field(&other, "refresh_token")).await.status,
        200
    );
}

#[tokio::test]
async fn non_rotating_mode_returns_the_same_refresh_token() {
    let idp = FakeIdp::start(FakeIdpConfig {
        rotate_refresh_tokens: false,
        ..FakeIdpConfig::default()
    })
    .await;
    let rt = field(&login(&idp).await, "refresh_token");
    for _ in 0..3 {
        let t = refresh(&idp, &rt).await.json().unwrap();
        assert_eq!(field(&t, "refresh_token"), rt);
    }
    assert_eq!(idp.issued(TokenKind::RefreshToken).len(), 1);

    // Omitting refresh_token from refresh answers keeps the presented one valid.
    idp.set_config(|c| {
        c.rotate_refresh_tokens = true;
        c.return_refresh_token_on_refresh = false;
    });
    for _ in 0..2 {
        let t = refresh(&idp, &rt).await.json().unwrap();
        assert!(t.get("refresh_token").is_none(), "{t}");
        assert!(t.get("access_token").is_some());
    }
    assert_eq!(idp.counters().refresh_successes, 5);
}

#[tokio::test]
async fn refresh_tokens_can_be_left_out_and_can_expire() {
    let idp = FakeIdp::start(FakeIdpConfig {
        issue_refresh_token: false,
        id_token: false,
        ..FakeIdpConfig::default()
    })
    .await;
    let t = login(&idp).await;
    assert!(t.get("refresh_token").is_none(), "{t}");
    assert!(t.get("id_token").is_none(), "{t}");

    idp.set_config(|c| {
        c.issue_refresh_token = true;
        c.refresh_token_ttl = Some(Duration::ZERO);
    });
    let rt = field(&login(&idp).await, "refresh_token");
    assert_eq!(oauth_error(&refresh(&idp, &rt).await), "invalid_grant");
    assert_eq!(
        oauth_error(&refresh(&idp, "fk_rt_unknown").await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn access_token_ttl_is_reported_and_enforced() {
    let idp = FakeIdp::start(FakeIdpConfig {
        access_token_ttl: Duration::from_millis(1500),
        ..FakeIdpConfig::default()
    })
    .await;
    let t = login(&idp).await;
    assert_eq!(t["expires_in"], 1);
    let at = field(&t, "access_token");
    assert_eq!(userinfo(&idp, &at).await.status, 200);
    idp.expire_access_tokens();
    let resp = userinfo(&idp, &at).await;
    assert_eq!(resp.status, 401);
    assert!(resp.header("www-authenticate").unwrap().contains("expired"));
    // The refresh token is not affected by access-token expiry.
    let rt = field(&t, "refresh_token");
    let fresh = field(&refresh(&idp, &rt).await.json().unwrap(), "access_token");
    assert_eq!(userinfo(&idp, &fresh).await.status, 200);
}

// ---------------------------------------------------------------------------------------
// Device flow
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn device_flow_is_pending_then_approved_after_n_polls() {
    let idp = FakeIdp::start(FakeIdpConfig {
        device_approval: DeviceApproval::AfterPolls(2),
        device_interval: Some(1),
        ..FakeIdpConfig::default()
    })
    .await;
    let d = device_authorize(&idp).await;
    let (dc, uc) = (field(&d, "device_code"), field(&d, "user_code"));
    assert!(dc.starts_with("fk_dc_"));
    assert_eq!(uc.len(), 8);
    assert!(
        uc.bytes()
            .all(|b| b.is_ascii_uppercase() && !b"AEIOUY".contains(&b)),
        "{uc}"
    );
    assert_eq!(d["interval"], 1);
    assert_eq!(d["expires_in"], 600);
    assert_eq!(d["verification_uri"], idp.url("/device"));
    assert_eq!(
        d["verification_uri_complete"],
        idp.url(&format!("/device?user_code={uc}"))
    );

    for _ in 0..2 {
        let resp = poll(&idp, &dc).await;
        assert_eq!(
            (resp.status, oauth_error(&resp).as_str()),
            (400, "authorization_pending")
        );
    }
    let resp = poll(&idp, &dc).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let t = resp.json().unwrap();
    assert_eq!(userinfo(&idp, &field(&t, "access_token")).await.status, 200);
    assert_eq!(t["scope"], "openid offline_access");
    // A device code is good for one set of tokens.
    assert_eq!(oauth_error(&poll(&idp, &dc).await), "invalid_grant");

    let c = idp.counters();
    assert_eq!(c.device_authorizations, 1);
    assert_eq!(c.token_requests.device_code, 4);
    assert!(
        !idp.issued_tokens().contains(&uc),
        "user codes are not secrets"
    );
}

#[tokio::test]
async fn device_polls_get_slow_down_when_scripted() {
    let idp = FakeIdp::start(FakeIdpConfig {
        device_approval: DeviceApproval::AfterPolls(1),
        device_slow_down_polls: 2,
        ..FakeIdpConfig::default()
    })
    .await;
    let dc = field(&device_authorize(&idp).await, "device_code");
    let mut answers = Vec::new();
    for _ in 0..4 {
        let resp = poll(&idp, &dc).await;
        answers.push(if resp.status == 200 {
            "tokens".to_owned()
        } else {
            oauth_error(&resp)
        });
    }
    // slow_down polls do not count toward approval: one pending poll is still owed.
    assert_eq!(
        answers,
        ["slow_down", "slow_down", "authorization_pending", "tokens"]
    );
    assert_eq!(idp.config().device_slow_down_polls, 0);
}

#[tokio::test]
async fn device_code_expiry_gives_expired_token() {
    let idp = FakeIdp::start(FakeIdpConfig {
        device_code_ttl: Duration::from_millis(300),
        ..FakeIdpConfig::default()
    })
    .await;
    let dc = field(&device_authorize(&idp).await, "device_code");
    assert_eq!(oauth_error(&poll(&idp, &dc).await), "authorization_pending");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = poll(&idp, &dc).await;
    assert_eq!(
        (resp.status, oauth_error(&resp).as_str()),
        (400, "expired_token")
    );

    // expire_device_codes() does the same without waiting.
    let dc = field(&device_authorize(&idp).await, "device_code");
    idp.expire_device_codes();
    assert_eq!(oauth_error(&poll(&idp, &dc).await), "expired_token");
}

#[tokio::test]
async fn device_denial_and_manual_decisions() {
    let idp = FakeIdp::start(FakeIdpConfig {
        device_approval: DeviceApproval::DenyAfterPolls(1),
        ..FakeIdpConfig::default()
    })
    .await;
    let dc = field(&device_authorize(&idp).await, "device_code");
    assert_eq!(oauth_error(&poll(&idp, &dc).await), "authorization_pending");
    assert_eq!(oauth_error(&poll(&idp, &dc).await), "access_denied");
    assert_eq!(oauth_error(&poll(&idp, &dc).await), "access_denied");

    idp.set_config(|c| c.device_approval = DeviceApproval::Manual);
    let a = device_authorize(&idp).await;
    let b = device_authorize(&idp).await;
    for _ in 0..3 {
        assert_eq!(
            oauth_error(&poll(&idp, &field(&a, "device_code")).await),
            "authorization_pending"
        );
    }
    assert!(idp.approve_device(&field(&a, "user_code")));
    assert!(idp.deny_device(&field(&b, "user_code")));
    assert!(!idp.approve_device("BCDFGHJK-not-issued"));
    assert_eq!(poll(&idp, &field(&a, "device_code")).await.status, 200);
    assert_eq!(
        oauth_error(&poll(&idp, &field(&b, "device_code")).await),
        "access_denied"
    );
}

#[tokio::test]
async fn device_interval_can_be_omitted_and_polls_are_timestamped() {
    let idp = FakeIdp::start(FakeIdpConfig {
        device_interval: None,
        device_approval: DeviceApproval::Manual,
        ..FakeIdpConfig::default()
    })
    .await;
    let d = device_authorize(&idp).await;
    assert!(d.get("interval").is_none(), "{d}");
    let dc = field(&d, "device_code");
    poll(&idp, &dc).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    poll(&idp, &dc).await;

    let polls: Vec<LoggedRequest> = idp
        .request_log()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some(DEVICE_CODE_GRANT))
        .collect();
    assert_eq!(polls.len(), 2);
    let fp = fingerprint(&dc);
    assert!(
        polls
            .iter()
            .all(|p| p.device_code_sha256.as_deref() == Some(fp.as_str()))
    );
    let gap = polls[1].at_ms - polls[0].at_ms;
    assert!((290..2000).contains(&gap), "gap {gap} ms");
    assert!(polls[1].unix_ms >= polls[0].unix_ms + 290);
}

#[tokio::test]
async fn device_authorization_rejects_unknown_clients() {
    let idp = start().await;
    let resp = http::post_form(&idp.url("/device/authorize"), &[("client_id", "nope")])
        .await
        .unwrap();
    assert_eq!(
        (resp.status, oauth_error(&resp).as_str()),
        (401, "invalid_client")
    );
    assert_eq!(idp.counters().device_authorizations, 0);
}

// ---------------------------------------------------------------------------------------
// Userinfo and revocation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn userinfo_answers_claims_with_groups_and_401_otherwise() {
    let idp = start().await;
    let at = field(&login(&idp).await, "access_token");
    let resp = userinfo(&idp, &at).await;
    assert_eq!(resp.status, 200);
    let claims = resp.json().unwrap();
    assert_eq!(claims["sub"], "fake-user-0001");
    assert_eq!(claims["email"], "dev@example.test");
    assert_eq!(claims["name"], "Dev Example");
    assert_eq!(claims["groups"], json!(["dev", "ops"]));

    // Runtime changes show up at once, under the configured claim name.
    idp.set_config(|c| {
        c.user.groups = vec!["admins".into()];
        c.groups_claim = "roles".into();
    });
    let claims = userinfo(&idp, &at).await.json().unwrap();
    assert_eq!(claims["roles"], json!(["admins"]));
    assert!(claims.get("groups").is_none());

    let missing = http::get(&idp.url("/userinfo")).await.unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="fake-idp""#)
    );
    let unknown = userinfo(&idp, "fk_at_forged").await;
    assert_eq!(unknown.status, 401);
    assert!(
        unknown
            .header("www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    assert_eq!(oauth_error(&unknown), "invalid_token");
    let c = idp.counters();
    assert_eq!(
        (c.userinfo_ok, c.userinfo_rejected, c.requests.userinfo),
        (2, 2, 4)
    );
}

#[tokio::test]
async fn revocation_of_access_and_refresh_tokens() {
    let idp = start().await;
    let t = login(&idp).await;
    let (at, rt) = (field(&t, "access_token"), field(&t, "refresh_token"));
    let revoke = |token: String, hint: &'static str| {
        let url = idp.url("/revoke");
        async move {
            http::post_form(
                &url,
                &[
                    ("token", &token),
                    ("token_type_hint", hint),
                    ("client_id", CLIENT),
                ],
            )
            .await
            .unwrap()
        }
    };

    // Revoking the access token ends only that token.
    assert_eq!(revoke(at.clone(), "access_token").await.status, 200);
    assert_eq!(userinfo(&idp, &at).await.status, 401);
    let t2 = refresh(&idp, &rt).await.json().unwrap();
    let (at2, rt2) = (field(&t2, "access_token"), field(&t2, "refresh_token"));
    assert_eq!(userinfo(&idp, &at2).await.status, 200);

    // Revoking the refresh token ends the grant, access tokens included, even with a
    // misleading hint.
    assert_eq!(revoke(rt2.clone(), "access_token").await.status, 200);
    assert_eq!(oauth_error(&refresh(&idp, &rt2).await), "invalid_grant");
    assert_eq!(userinfo(&idp, &at2).await.status, 401);

    // Unknown tokens: 200, as RFC 7009 §2.2 says; not counted as revocations.
    assert_eq!(
        revoke("fk_rt_never-issued".into(), "refresh_token")
            .await
            .status,
        200
    );
    let c = idp.counters();
    assert_eq!(
        (c.revocations, c.grants_revoked, c.requests.revocation),
        (2, 1, 3)
    );

    // The client must identify itself.
    let anonymous = http::post_form(&idp.url("/revoke"), &[("token", &at2)])
        .await
        .unwrap();
    assert_eq!(
        (anonymous.status, oauth_error(&anonymous).as_str()),
        (401, "invalid_client")
    );
    let log = idp.request_log();
    let revokes: Vec<_> = log
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Revocation))
        .collect();
    assert_eq!(
        revokes[0].token_sha256.as_deref(),
        Some(fingerprint(&at).as_str())
    );
    assert_eq!(revokes[0].token_type_hint.as_deref(), Some("access_token"));
}

#[tokio::test]
async fn revoke_all_ends_every_grant() {
    let idp = start().await;
    let a = login(&idp).await;
    let b = login(&idp).await;
    idp.revoke_all();
    for t in [&a, &b] {
        assert_eq!(userinfo(&idp, &field(t, "access_token")).await.status, 401);
        assert_eq!(
            oauth_error(&refresh(&idp, &field(t, "refresh_token")).await),
            "invalid_grant"
        );
    }
    assert_eq!(idp.counters().grants_revoked, 2);
}

// ---------------------------------------------------------------------------------------
// Counters, log, issued tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn counters_and_log_record_everything_but_raw_tokens() {
    let idp = start().await;
    discovery(&idp).await;
    let t = login(&idp).await; // authorize + token
    let rt = field(&t, "refresh_token");
    let t2 = refresh(&idp, &rt).await.json().unwrap();
    refresh(&idp, &rt).await; // reuse: revokes the grant
    userinfo(&idp, &field(&t2, "access_token")).await;
    http::get(&idp.url("/nowhere")).await.unwrap();

    let c = idp.counters();
    let expected = Counters {
        requests: latchkey_tests::fake_idp::EndpointCounters {
            discovery: 1,
            authorize: 1,
            token: 3,
            userinfo: 1,
            other: 1,
            ..Default::default()
        },
        token_requests: latchkey_tests::fake_idp::GrantCounters {
            authorization_code: 1,
            refresh_token: 2,
            ..Default::default()
        },
        authorizations: 1,
        token_successes: 2,
        refresh_successes: 1,
        invalid_grant: 1,
        reuse_detections: 1,
        grants_revoked: 1,
        userinfo_rejected: 1,
        ..Default::default()
    };
    assert_eq!(c, expected);

    let log = idp.request_log();
    let summary: Vec<_> = log
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.endpoint,
                r.status,
                r.error.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "GET",
                "/.well-known/openid-configuration",
                Some(Endpoint::Discovery),
                Some(200),
                None
            ),
            (
                "GET",
                "/authorize",
                Some(Endpoint::Authorize),
                Some(302),
                None
            ),
            ("POST", "/token", Some(Endpoint::Token), Some(200), None),
            ("POST", "/token", Some(Endpoint::Token), Some(200), None),
            (
                "POST",
                "/token",
                Some(Endpoint::Token),
                Some(400),
                Some("invalid_grant")
            ),
            (
                "GET",
                "/userinfo",
                Some(Endpoint::Userinfo),
                Some(401),
                Some("invalid_token")
            ),
            ("GET", "/nowhere", None, Some(404), None),
        ]
    );
    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..7).collect::<Vec<_>>());
    assert!(log.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(
        log.iter()
            .all(|r| r.done_ms.is_some_and(|done| done >= r.at_ms))
    );
    assert_eq!(log[1].client_id.as_deref(), Some(CLIENT));
    assert_eq!(log[2].grant_type.as_deref(), Some("authorization_code"));
    // The same refresh token presented twice is visible by fingerprint only.
    let fp = fingerprint(&rt);
    assert_eq!(log[3].refresh_token_sha256.as_deref(), Some(fp.as_str()));
    assert_eq!(log[4].refresh_token_sha256.as_deref(), Some(fp.as_str()));
    assert_eq!(fp.len(), 64);

    let issued = idp.issued_tokens();
    let serialized = serde_json::to_string(&log).unwrap();
    for secret in &issued {
        assert!(!serialized.contains(secret.as_str()), "log leaks {secret}");
    }
    assert!(
        !serialized.contains("fk_"),
        "log carries a token prefix: {serialized}"
    );

    idp.clear_log();
    discovery(&idp).await;
    assert_eq!(
        idp.request_log()[0].seq,
        7,
        "sequence numbers survive clear_log"
    );
    assert_eq!(idp.reset_counters().requests.discovery, 2);
    assert_eq!(idp.counters(), Counters::default());
}

#[tokio::test]
async fn issued_tokens_list_every_secret_by_kind() {
    let idp = start().await;
    let t = login(&idp).await;
    let t2 = refresh(&idp, &field(&t, "refresh_token"))
        .await
        .json()
        .unwrap();
    let d = device_authorize(&idp).await;

    let kinds = [
        (TokenKind::AuthorizationCode, 1),
        (TokenKind::AccessToken, 2),
        (TokenKind::RefreshToken, 2),
        (TokenKind::IdToken, 2),
        (TokenKind::DeviceCode, 1),
    ];
    for (kind, n) in kinds {
        assert_eq!(idp.issued(kind).len(), n, "{kind:?}");
    }
    let all = idp.issued_tokens();
    assert_eq!(all.len(), 8);
    for token in [&t, &t2] {
        for key in ["access_token", "refresh_token", "id_token"] {
            assert!(all.contains(&field(token, key)), "{key} not recorded");
        }
    }
    assert!(all.contains(&field(&d, "device_code")));
    assert!(all.iter().all(|s| s.contains("fk_")), "{all:?}");
}

// ---------------------------------------------------------------------------------------
// Admin endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_endpoints_drive_and_observe_the_fake_without_being_logged() {
    let idp = start().await;
    let admin = |path: &str| idp.url(&format!("/_admin/{path}"));

    let pushed = http::post_json(
        &admin("faults"),
        &json!({ "endpoint": "token", "fault": "status503", "count": 1 }),
    )
    .await
    .unwrap();
    assert_eq!(pushed.status, 200, "{}", pushed.text());
    let slow = http::post_json(
        &admin("faults"),
        &json!({ "endpoint": "discovery", "fault": { "slow": 50 }, "count": 1 }),
    )
    .await
    .unwrap();
    assert_eq!(slow.status, 200, "{}", slow.text());
    let pending: Vec<FaultScript> = http::get(&admin("faults"))
        .await
        .unwrap()
        .json_as()
        .unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[1].fault, Fault::Slow(Duration::from_millis(50)));

    let code = code_for(&idp, VERIFIER).await;
    assert_eq!(exchange(&idp, &code, VERIFIER).await.status, 503);
    assert_eq!(discovery(&idp).await.status, 200);

    let counters: Counters = http::get(&admin("counters"))
        .await
        .unwrap()
        .json_as()
        .unwrap();
    assert_eq!(counters, idp.counters());
    assert_eq!(counters.faults_served, 2);
    let log: Vec<LoggedRequest> = http::get(&admin("log")).await.unwrap().json_as().unwrap();
    assert_eq!(log, idp.request_log());
    assert_eq!(log.len(), 3, "admin requests must not be logged: {log:?}");

    // Config: read, patch, and see the effect.
    let cfg = http::get(&admin("config")).await.unwrap().json().unwrap();
    assert_eq!(cfg["client_id"], CLIENT);
    assert_eq!(cfg["device_interval_secs"], 5);
    let patched = http::post_json(
        &admin("config"),
        &json!({ "access_token_ttl_secs": 7, "device_interval_secs": null,
                 "device_approval": { "after_polls": 0 },
                 "user": { "sub": "s2", "email": "e2@x.test", "name": "N2", "groups": ["g"] } }),
    )
    .await
    .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json().unwrap()["device_interval_secs"], Value::Null);
    let c = idp.config();
    assert_eq!(c.access_token_ttl, Duration::from_secs(7));
    assert_eq!(c.device_interval, None);
    assert_eq!(c.user.sub, "s2");
    let d = device_authorize(&idp).await;
    assert!(d.get("interval").is_none());
    let t = poll(&idp, &field(&d, "device_code")).await.json().unwrap();
    assert_eq!(t["expires_in"], 7);
    let at = field(&t, "access_token");
    assert_eq!(
        userinfo(&idp, &at).await.json().unwrap()["groups"],
        json!(["g"])
    );

    let bad = http::post_json(&admin("config"), &json!({ "access_token_ttl_secs": -1 }))
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(idp.config().access_token_ttl, Duration::from_secs(7));
    let unknown = http::post_json(&admin("config"), &json!({ "no_such_setting": true }))
        .await
        .unwrap();
    assert!((400..500).contains(&unknown.status), "{}", unknown.status);

    // Issued tokens, device decisions, revoke_all.
    let issued: Vec<IssuedToken> = http::get(&admin("issued"))
        .await
        .unwrap()
        .json_as()
        .unwrap();
    assert_eq!(
        issued.iter().map(|t| t.value.clone()).collect::<Vec<_>>(),
        idp.issued_tokens()
    );
    idp.set_config(|c| c.device_approval = DeviceApproval::Manual);
    let d = device_authorize(&idp).await;
    let approve_url = admin("device/approve");
    for (user_code, status) in [(field(&d, "user_code"), 200), ("ZZZZZZZZ".into(), 404)] {
        let resp = http::post_json(&approve_url, &json!({ "user_code": user_code }))
            .await
            .unwrap();
        assert_eq!(resp.status, status, "{user_code}");
    }
    assert_eq!(poll(&idp, &field(&d, "device_code")).await.status, 200);

    assert_eq!(
        http::post_json(&admin("revoke_all"), &json!({}))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(userinfo(&idp, &at).await.status, 401);

    let old: Counters = http::delete(&admin("counters"))
        .await
        .unwrap()
        .json_as()
        .unwrap();
    assert!(old.requests.token > 0);
    assert_eq!(idp.counters(), Counters::default());
    assert_eq!(http::delete(&admin("faults")).await.unwrap().status, 200);
}

// ---------------------------------------------------------------------------------------
// Lifecycle and the binary
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stop_closes_the_port() {
    let idp = start().await;
    let addr = idp.addr();
    assert_eq!(discovery(&idp).await.status, 200);
    idp.stop().await;
    let url = format!("http://{addr}/.well-known/openid-configuration");
    match http::get(&url).await {
        Err(HttpError::Connect(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected connection refused, got {other:?}"),
    }
}

#[test]
fn start_blocking_serves_synchronous_callers_until_shutdown() {
    // The handle must be shareable with server threads and tasks of the harness.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FakeIdp>();
    let idp = FakeIdp::start_blocking(FakeIdpConfig::default());
    let addr = idp.addr();
    let mut s = StdTcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(&format!(r#""issuer":"{}""#, idp.issuer())),
        "{text}"
    );
    assert_eq!(idp.counters().requests.discovery, 1);

    idp.shutdown();
    let err = StdTcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// Kills the child if the test fails before stopping it.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The rest of the binary's stdout, once it closes.
type Rest = std::sync::mpsc::Receiver<std::io::Result<String>>;

/// Reads the binary's ready line, waiting at most 10 s; the receiver then yields whatever
/// else it printed before exiting.
fn ready_line(child: &mut std::process::Child) -> (String, Rest) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let result = reader.read_line(&mut line).map(|_| line.clone());
        let _ = tx.send(result);
        // Nothing else may be printed: a second line would break callers that read one.
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        let _ = tx.send(Ok(rest));
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("fake-idp printed its ready line within 10 s")
        .unwrap();
    (line, rx)
}

#[cfg(unix)]
#[tokio::test]
async fn binary_prints_ready_line_serves_flags_and_stops_on_sigterm() {
    let child = Command::new(env!("CARGO_BIN_EXE_fake-idp"))
        .args([
            "--no-rotation",
            "--access-ttl",
            "7",
            "--device-interval",
            "1",
        ])
        .args(["--device-approve-after", "0", "--groups", "a,b"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaper(child);
    let (line, rest) = ready_line(&mut child.0);
    assert!(line.ends_with('\n'), "{line:?}");
    let ready: Value = serde_json::from_str(&line).unwrap();
    let issuer = field(&ready, "issuer");
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert_eq!(ready.as_object().unwrap().len(), 1, "{ready}");

    let doc = http::get(&format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(doc["issuer"], issuer);

    // The flags took effect: interval, approval at once, TTL, no rotation, groups.
    let d = http::post_form(
        &format!("{issuer}/device/authorize"),
        &[("client_id", CLIENT)],
    )
    .await
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(d["interval"], 1);
    let poll = http::post_form(
        &format!("{issuer}/token"),
        &[
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", &field(&d, "device_code")),
            ("client_id", CLIENT),
        ],
    )
    .await
    .unwrap();
    let t = poll.json().unwrap();
    assert_eq!(t["expires_in"], 7, "{t}");
    let rt = field(&t, "refresh_token");
    let again = http::post_form(
        &format!("{issuer}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", CLIENT),
        ],
    )
    .await
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(field(&again, "refresh_token"), rt);
    let claims = http::get_bearer(
        &format!("{issuer}/userinfo"),
        &field(&again, "access_token"),
    )
    .await
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(claims["groups"], json!(["a", "b"]));
    let counters: Counters = http::get(&format!("{issuer}/_admin/counters"))
        .await
        .unwrap()
        .json_as()
        .unwrap();
    assert_eq!(counters.token_requests.device_code, 1);
    assert_eq!(counters.refresh_successes, 1);

    // SIGTERM: a clean exit, and nothing more on stdout.
    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "fake-idp did not exit on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    let rest = rest.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(rest, "", "fake-idp printed more than the ready line");
}

#[test]
fn binary_refuses_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_fake-idp"))
        .args(["--port", &port])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no ready line when not listening");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port));
}
