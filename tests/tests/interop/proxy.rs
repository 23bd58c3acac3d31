//! The API proxy against the real provider (docs/behaviour.md, "The API proxy"):
//! oidc-provider's userinfo endpoint is the upstream. A token the provider
//! deleted behind Latchkey's back heals with one refresh, however many requests
//! hit it; a streamed body is not replayed; a 403 and a redirect pass back
//! untouched, and the redirect's host never sees a request; an upstream that is
//! down is a 502. Every answer joins the leak check.

use std::sync::Arc;

use latchkey_tests::harness::free_loopback_port;
use latchkey_tests::oidc_provider::ProviderOptions;
use latchkey_tests::upstream::{Answer, Recorder, ResourceServer, proxy_request, set_work_proxy};

use crate::world::Interop;

/// Sets `[profiles.work.proxy] upstream` (the daemon re-reads config.toml on the
/// next request).
fn upstream(world: &Interop, url: &str) {
    set_work_proxy(&world.home.config_file(), &format!("upstream = \"{url}\""));
}

fn send(world: &Interop, method: &str, path: &str, headers: &str, body: &[u8]) -> Answer {
    let a = proxy_request(&world.socket(), method, path, headers, body);
    world.capture_text(&format!("proxy answer to {method} {path}"), &a.raw);
    a
}

fn me(world: &Interop) -> Answer {
    send(world, "GET", "/v1/proxy/work/me", "", b"")
}

/// Revokes the session's current access token at the provider, as an
/// administrator or another device would; Latchkey is not told. The grant and
/// its refresh token stay.
fn revoke_access_token(world: &Interop) {
    let token = world.latchkey(["token"]).run();
    token.ok();
    let access = token.stdout.trim_end().to_string();
    world.idp.destroy_access_token(&access);
    assert!(!world.idp.is_active(&access), "the access token is revoked");
}

#[test]
fn the_proxy_heals_a_revoked_token_with_one_refresh() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    upstream(&world, world.idp.issuer());
    world.start_daemon();
    world.device_login().0.ok();

    let a = me(&world);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["sub"].is_string(), "the user: {}", a.body);
    assert!(a.has("latchkey-proxied: 1"));
    let refreshes = world.idp.grants("refresh_token");

    // Revoked at the provider: the next request is answered all the same.
    revoke_access_token(&world);
    let b = me(&world);
    assert_eq!(b.status, 200, "{}", b.body);
    assert!(b.has("latchkey-retried: 1"), "{}", b.head);
    assert_eq!(world.idp.grants("refresh_token"), refreshes + 1);

    // 32 concurrent requests after a revocation: one refresh.
    revoke_access_token(&world);
    let world = Arc::new(world);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let w = Arc::clone(&world);
            std::thread::spawn(move || me(&w).status)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("a request"), 200);
    }
    assert_eq!(world.idp.grants("refresh_token"), refreshes + 2);

    // A 2 MiB body streams through and is not replayed: its 401 comes back, and
    // the next request succeeds with the token renewed meanwhile. The provider's
    // userinfo takes no such body (POST /me wants a small form), so the API is a
    // resource server that checks tokens by the provider's introspection.
    let api = ResourceServer::start({
        let introspector = world.idp.introspector();
        move |token| introspector.is_active(token)
    });
    upstream(&world, &format!("http://127.0.0.1:{}", api.port));
    assert_eq!(me(&world).status, 200, "the API takes the session's token");
    revoke_access_token(&world);
    let big = vec![b'x'; 2 * 1024 * 1024];
    let c = send(
        &world,
        "POST",
        "/v1/proxy/work/upload",
        "Content-Type: application/octet-stream\r\n",
        &big,
    );
    assert_eq!(c.status, 401, "{}", c.body);
    assert!(c.has("latchkey-proxied: 1"), "the API's own 401");
    assert!(!c.head.contains("latchkey-retried"));
    assert_eq!(world.idp.grants("refresh_token"), refreshes + 3);
    let d = send(&world, "POST", "/v1/proxy/work/upload", "", b"small");
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["bytes"], 5);
    assert!(!d.head.contains("latchkey-retried"));
    assert_eq!(world.idp.grants("refresh_token"), refreshes + 3);
    // A body under the replay bound is retried after a revocation.
    revoke_access_token(&world);
    let small = vec![b'y'; 512 * 1024];
    let e = send(&world, "POST", "/v1/proxy/work/upload", "", &small);
    assert_eq!(e.status, 200, "{}", e.body);
    assert_eq!(e.json()["bytes"], 512 * 1024);
    assert!(e.has("latchkey-retried: 1"));
    assert_eq!(world.idp.grants("refresh_token"), refreshes + 4);
}

#[test]
fn forbidden_redirected_and_unreachable_upstreams_pass_back_without_a_refresh() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    world.start_daemon();
    world.device_login().0.ok();
    let refreshes = world.idp.grants("refresh_token");

    let forbidding = Recorder::answering(
        "HTTP/1.1 403 Forbidden\r\nWWW-Authenticate: Bearer error=\"insufficient_scope\"\r\nContent-Length: 6\r\nConnection: close\r\n\r\nno way"
            .to_string(),
    );
    upstream(&world, &format!("http://127.0.0.1:{}", forbidding.port));
    let a = me(&world);
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.body, "no way");
    assert!(a.has("latchkey-proxied: 1"));
    assert_eq!(forbidding.seen().len(), 1, "not retried");

    // A redirect to another host is passed back; that host gets nothing.
    let elsewhere = Recorder::start();
    let redirecting = Recorder::answering(format!(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        elsewhere.port
    ));
    upstream(&world, &format!("http://127.0.0.1:{}", redirecting.port));
    let b = me(&world);
    assert_eq!(b.status, 302, "{}", b.head);
    assert!(b.has(&format!(
        "location: http://127.0.0.1:{}/steal",
        elsewhere.port
    )));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(elsewhere.seen().is_empty(), "the other host got a request");

    // Down: a 502 in the JSON error shape.
    upstream(
        &world,
        &format!("http://127.0.0.1:{}", free_loopback_port()),
    );
    let c = me(&world);
    assert_eq!(c.status, 502, "{}", c.body);
    assert_eq!(c.json()["error"]["category"], "transport");

    assert_eq!(world.idp.grants("refresh_token"), refreshes, "no refresh");
    // What the forbidding upstream got was the provider's token, as it should.
    assert!(
        forbidding.seen()[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer ")
    );
}

#[test]
fn latchkey_api_prints_the_users_claims_with_and_without_the_daemon() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    upstream(&world, world.idp.issuer());
    world.start_daemon();
    world.device_login().0.ok();
    let run = world.latchkey(["api", "/me"]).run();
    run.ok();
    let me: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON claims");
    assert_eq!(me["email"], "interop@example.test", "{}", run.stdout);

    // Without the daemon, after the provider dropped the token: the same renewal
    // and retry, in-process.
    world.stop_daemons();
    world.without_daemon();
    let refreshes = world.idp.grants("refresh_token");
    revoke_access_token(&world);
    let run = world.latchkey(["api", "--json", "/me"]).run();
    run.ok();
    let doc = run.json();
    assert_eq!(doc["status"], 200, "{doc}");
    assert_eq!(doc["retried"], true, "{doc}");
    assert_eq!(world.idp.grants("refresh_token"), refreshes + 1);
}
