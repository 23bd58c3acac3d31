//! The API proxy with the real binaries (docs/behaviour.md, "The API proxy"): the
//! fake provider's userinfo endpoint is the upstream (it checks bearer tokens and
//! takes scripted faults), and a recording server stands for hosts that must never
//! see a token.

use std::sync::Arc;
use std::time::Duration;

use latchkey_tests::fake_idp::{Endpoint, Fault, TokenKind};
use latchkey_tests::harness::{World, free_loopback_port, raw_request};
use latchkey_tests::upstream::{Answer, Recorder, proxy_request, set_work_proxy};

/// Sets `[profiles.work.proxy]` (config.toml is re-read on the next request).
fn upstream(world: &World, table: &str) {
    set_work_proxy(&world.home.config_file(), table);
}

fn proxied_world() -> World {
    let world = World::default_provider();
    upstream(&world, &format!("upstream = \"{}\"", world.idp.issuer()));
    world.login();
    world.start_daemon();
    world
}

/// One request through `socket`, with extra header lines and a body; the answer
/// joins the leak check.
fn send(
    world: &World,
    socket: &std::path::Path,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Answer {
    let answer = proxy_request(socket, method, path, headers, body);
    world.capture_text(&format!("proxy answer to {method} {path}"), &answer.raw);
    answer
}

fn get(world: &World, path: &str) -> Answer {
    send(world, &world.socket(), "GET", path, "", b"")
}

fn status_counters(world: &World) -> serde_json::Value {
    world
        .latchkey(["daemon", "status", "--json"])
        .run()
        .ok()
        .json()["counters"]
        .clone()
}

#[test]
fn a_proxied_request_carries_the_token_and_answers_with_the_upstreams_response() {
    let world = proxied_world();
    let before = world.idp.counters().userinfo_ok; // the login's own call
    let a = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["sub"].is_string(), "{}", a.body);
    assert!(a.has("latchkey-proxied: 1"), "{}", a.head);
    assert!(!a.head.contains("latchkey-retried"), "{}", a.head);
    assert_eq!(world.idp.counters().userinfo_ok, before + 1);
    assert_eq!(world.idp.counters().refresh_successes, 0);
    let c = status_counters(&world);
    assert_eq!(c["proxy_requests"], 1);
    assert_eq!(c["proxy_retries"], 0);
    // The audit line names the upstream and the path, never the query.
    let b = get(&world, "/v1/proxy/work/userinfo?secret-query=1");
    assert_eq!(b.status, 200);
    world.stop_daemons();
    let logs = world.daemon_logs();
    assert!(
        logs.contains("upstream=\"127.0.0.1\"") && logs.contains("path=\"userinfo\""),
        "{logs}"
    );
    assert!(!logs.contains("secret-query"), "{logs}");
}

#[test]
fn what_reaches_the_upstream_is_the_consumers_request_with_latchkeys_token_only() {
    let world = World::default_provider();
    let recorder = Recorder::start();
    upstream(
        &world,
        &format!("upstream = \"http://127.0.0.1:{}/api/v2/\"", recorder.port),
    );
    world.login();
    world.start_daemon();
    let a = send(
        &world,
        &world.socket(),
        "PATCH",
        "/v1/proxy/work/issues/7?state=open&q=a%20b",
        "Connection: x-hop\r\nX-Hop: 1\r\nX-Custom: kept\r\nAuthorization: Bearer nope\r\nProxy-Authorization: Basic eA==\r\nLatchkey-Anything: 1\r\nContent-Type: application/json\r\n",
        br#"{"title":"x"}"#,
    );
    // The owner with an Authorization header is a client-token caller: refused.
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(recorder.seen().is_empty());

    let a = send(
        &world,
        &world.socket(),
        "PATCH",
        "/v1/proxy/work/issues/7?state=open&q=a%20b",
        "Connection: x-hop\r\nX-Hop: 1\r\nX-Custom: kept\r\nProxy-Authorization: Basic eA==\r\nLatchkey-Anything: 1\r\nContent-Type: application/json\r\n",
        br#"{"title":"x"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = recorder.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = seen[0].to_ascii_lowercase();
    assert!(
        seen[0].starts_with("PATCH /api/v2/issues/7?state=open&q=a%20b HTTP/1.1\r\n"),
        "{}",
        seen[0]
    );
    let access = world.newest(TokenKind::AccessToken);
    assert!(
        seen[0].contains(&format!("authorization: Bearer {access}\r\n"))
            || seen[0].contains(&format!("Authorization: Bearer {access}\r\n")),
        "the upstream gets the session's access token"
    );
    assert!(head.contains(&format!("host: 127.0.0.1:{}\r\n", recorder.port)));
    assert!(head.contains("x-custom: kept\r\n"));
    assert!(head.contains("content-type: application/json\r\n"));
    for gone in ["x-hop:", "proxy-authorization:", "latchkey-", "bearer nope"] {
        assert!(!head.contains(gone), "{gone} reached the upstream");
    }
}

#[test]
fn a_rejected_token_is_renewed_once_and_the_request_retried() {
    let world = proxied_world();
    assert_eq!(get(&world, "/v1/proxy/work/userinfo").status, 200);
    // The provider stops accepting the access token Latchkey still thinks valid.
    world.idp.expire_access_tokens();
    let a = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.has("latchkey-retried: 1"), "{}", a.head);
    assert_eq!(world.idp.counters().refresh_successes, 1);
    assert_eq!(status_counters(&world)["proxy_retries"], 1);
    // The next request uses the new token without a retry.
    let b = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(b.status, 200);
    assert!(!b.head.contains("latchkey-retried"));
    assert_eq!(world.idp.counters().refresh_successes, 1);
}

#[test]
fn concurrent_rejections_cause_one_refresh() {
    let world = proxied_world();
    world.idp.expire_access_tokens();
    let world = Arc::new(world);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let w = Arc::clone(&world);
            std::thread::spawn(move || get(&w, "/v1/proxy/work/userinfo").status)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("a request"), 200);
    }
    assert_eq!(world.idp.counters().refresh_successes, 1);
}

#[test]
fn a_large_body_streams_through_and_is_not_replayed() {
    let world = proxied_world();
    world.idp.expire_access_tokens();
    let big = vec![b'x'; 2 * 1024 * 1024];
    let a = send(
        &world,
        &world.socket(),
        "POST",
        "/v1/proxy/work/userinfo",
        "Content-Type: application/octet-stream\r\n",
        &big,
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.has("latchkey-proxied: 1"), "the upstream's own 401");
    assert!(!a.head.contains("latchkey-retried"));
    // The token was renewed all the same: the next request succeeds at once.
    assert_eq!(world.idp.counters().refresh_successes, 1);
    let b = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(b.status, 200, "{}", b.body);
    assert!(!b.head.contains("latchkey-retried"));
    // A body under the replay bound is retried.
    world.idp.expire_access_tokens();
    let small = vec![b'y'; 512 * 1024];
    let c = send(
        &world,
        &world.socket(),
        "POST",
        "/v1/proxy/work/userinfo",
        "Content-Type: application/octet-stream\r\n",
        &small,
    );
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(c.has("latchkey-retried: 1"));
}

#[test]
fn a_403_passes_through_without_a_refresh() {
    let world = proxied_world();
    world
        .idp
        .push_faults(Endpoint::Userinfo, Fault::Forbidden403, 1);
    let a = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(a.status, 403);
    assert!(a.has("latchkey-proxied: 1"));
    assert_eq!(
        a.json()["error"],
        "forbidden",
        "the upstream's body: {}",
        a.body
    );
    assert_eq!(world.idp.counters().refresh_successes, 0);
}

#[test]
fn a_redirect_is_passed_back_and_never_followed() {
    let world = proxied_world();
    let elsewhere = Recorder::start();
    world
        .idp
        .push_faults(Endpoint::Userinfo, Fault::Redirect(elsewhere.port), 1);
    let a = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(a.status, 302, "{}", a.head);
    assert!(
        a.has(&format!(
            "location: http://127.0.0.1:{}/elsewhere",
            elsewhere.port
        )),
        "{}",
        a.head
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(elsewhere.seen().is_empty(), "the other host got a request");
}

#[test]
fn upstream_failures_are_transport_errors() {
    let world = proxied_world();
    // Down: nothing listens.
    upstream(
        &world,
        &format!("upstream = \"http://127.0.0.1:{}\"", free_loopback_port()),
    );
    let a = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(a.json()["error"]["category"], "transport", "{}", a.body);
    assert_eq!(a.json()["error"]["retryable"], true);
    assert!(!a.head.contains("latchkey-proxied"));
    // Too slow: no answer within the profile's timeout.
    upstream(
        &world,
        &format!("upstream = \"{}\"\ntimeout_seconds = 1", world.idp.issuer()),
    );
    world
        .idp
        .push_faults(Endpoint::Userinfo, Fault::Slow(Duration::from_secs(3)), 1);
    let b = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(b.status, 504, "{}", b.body);
    assert_eq!(b.json()["error"]["category"], "transport");
    assert_eq!(status_counters(&world)["proxy_upstream_errors"], 2);
}

#[test]
fn requests_latchkey_cannot_forward_are_refused_with_their_category() {
    let world = World::default_provider();
    world.start_daemon();
    // No upstream configured.
    let a = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["category"], "usage");
    assert!(
        a.json()["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("[profiles.work.proxy]")),
        "{}",
        a.body
    );
    // Not logged in: 401 with the login hint.
    upstream(&world, &format!("upstream = \"{}\"", world.idp.issuer()));
    let b = get(&world, "/v1/proxy/work/userinfo");
    assert_eq!(b.status, 401, "{}", b.body);
    assert_eq!(b.json()["error"]["category"], "not_logged_in");
    assert!(
        b.json()["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("latchkey login"))
    );
    // A path that climbs out of the upstream.
    let c = get(&world, "/v1/proxy/work/%2e%2e/admin");
    assert_eq!(c.status, 400, "{}", c.body);
    assert_eq!(c.json()["error"]["category"], "usage");
    assert_eq!(world.idp.counters().userinfo_ok, 0);
}

#[test]
fn client_tokens_need_the_proxy_scope() {
    let world = World::default_provider();
    upstream(&world, &format!("upstream = \"{}\"", world.idp.issuer()));
    let path = world.home.config_file();
    let text = std::fs::read_to_string(&path).expect("a config");
    std::fs::write(&path, format!("{text}\n[delegate]\nsocket = true\n")).expect("config");
    world.login();
    world.start_daemon();
    let before = world.idp.counters().userinfo_ok;
    let mint = |scope: &str| {
        world
            .latchkey(["client-token", "mint", "--json", "--scope", scope])
            .run()
            .ok()
            .json()["token"]
            .as_str()
            .expect("a token")
            .to_string()
    };
    let proxy = mint("proxy:work");
    let session = mint("session:work");
    let delegate = world.home.path().join("run").join("delegate.sock");
    let with = |token: &str| {
        send(
            &world,
            &delegate,
            "GET",
            "/v1/proxy/work/userinfo",
            &format!("Authorization: Bearer {token}\r\n"),
            b"",
        )
    };
    let a = with(&proxy);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["sub"].is_string());
    let b = with(&session);
    assert_eq!(b.status, 403, "{}", b.body);
    assert_eq!(b.json()["error"]["category"], "forbidden");
    assert_eq!(world.idp.counters().userinfo_ok, before + 1);
    // Without a token the delegate socket answers nothing at all.
    let c = raw_request(
        &delegate,
        "GET /v1/proxy/work/userinfo HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
    )
    .expect("an answer");
    assert!(c.starts_with("HTTP/1.1 401"), "{c}");
}

#[test]
fn latchkey_api_prints_the_body_through_the_daemon_and_without_one() {
    let world = proxied_world();
    let run = world.latchkey(["api", "/userinfo"]).run();
    run.ok();
    let body: serde_json::Value = serde_json::from_str(&run.stdout).expect("the upstream's JSON");
    assert!(body["sub"].is_string(), "{}", run.stdout);
    assert_eq!(
        status_counters(&world)["proxy_requests"],
        1,
        "through the daemon"
    );

    // With --include, the status and the upstream's headers come first.
    let run = world.latchkey(["api", "-i", "userinfo"]).run();
    run.ok();
    assert!(run.stdout.starts_with("HTTP 200\r\n"), "{}", run.stdout);
    assert!(run.stdout.contains("content-type: application/json"));

    // Without a daemon: the same rule, renewal and retry included.
    world.stop_daemons();
    world.idp.expire_access_tokens();
    let run = world
        .latchkey(["api", "--json", "/userinfo"])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run();
    run.ok();
    let doc = run.json();
    assert_eq!(doc["status"], 200, "{doc}");
    assert_eq!(doc["retried"], true, "{doc}");
    assert_eq!(world.idp.counters().refresh_successes, 1);
}

#[test]
fn latchkey_api_exits_with_the_category_of_what_went_wrong() {
    let world = proxied_world();
    world
        .idp
        .push_faults(Endpoint::Userinfo, Fault::Forbidden403, 1);
    let run = world.latchkey(["api", "/userinfo"]).run();
    run.code(5);
    assert!(
        run.stdout.contains("forbidden"),
        "the body still goes to stdout: {}",
        run.stdout
    );
    assert!(run.stderr.contains("HTTP 403"), "{}", run.stderr);
    // A header Latchkey sets itself is refused before anything is sent.
    let run = world
        .latchkey(["api", "-H", "Authorization: Bearer x", "/userinfo"])
        .run();
    run.code(2);
    // Not logged in: exit 3 with the login hint, with and without the daemon.
    world.latchkey(["logout", "--local"]).run().ok();
    for no_daemon in ["0", "1"] {
        let run = world
            .latchkey(["api", "--json", "/userinfo"])
            .env("LATCHKEY_NO_DAEMON", no_daemon)
            .run();
        run.json_error(3, "not_logged_in");
    }
}

#[test]
fn an_api_that_refuses_every_token_costs_one_refresh_not_one_per_request() {
    let world = World::default_provider();
    let refusing = Recorder::answering(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_string(),
    );
    upstream(
        &world,
        &format!("upstream = \"http://127.0.0.1:{}\"", refusing.port),
    );
    world.login();
    world.start_daemon();
    let a = get(&world, "/v1/proxy/work/x");
    assert_eq!(a.status, 401);
    assert!(
        a.has("latchkey-retried: 1"),
        "renewed once and retried: {}",
        a.head
    );
    for _ in 0..3 {
        let b = get(&world, "/v1/proxy/work/x");
        assert_eq!(b.status, 401);
        assert!(!b.head.contains("latchkey-retried"), "{}", b.head);
    }
    assert_eq!(world.idp.counters().refresh_successes, 1);
    assert_eq!(
        refusing.seen().len(),
        5,
        "2 for the first request, 1 for each other"
    );
}

#[test]
fn trace_and_encoded_climbs_never_reach_the_upstream() {
    let world = World::default_provider();
    let recorder = Recorder::start();
    upstream(
        &world,
        &format!("upstream = \"http://127.0.0.1:{}/api/\"", recorder.port),
    );
    world.login();
    world.start_daemon();
    // An upstream that echoes a TRACE would show the injected token.
    let a = send(
        &world,
        &world.socket(),
        "TRACE",
        "/v1/proxy/work/x",
        "",
        b"",
    );
    assert_eq!(a.status, 405, "{}", a.body);
    assert_eq!(a.json()["error"]["category"], "usage");
    for climb in [
        "/v1/proxy/work/%2e%2e%2fadmin",
        "/v1/proxy/work/%252e%252e/admin",
        "/v1/proxy/work/..;/admin",
    ] {
        let b = get(&world, climb);
        assert_eq!(b.status, 400, "{climb}: {}", b.body);
    }
    // An encoded slash inside a segment is an API's business (GitLab wants it).
    let c = get(&world, "/v1/proxy/work/projects/group%2Fproject");
    assert_eq!(c.status, 200, "{}", c.body);
    let seen = recorder.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /api/projects/group%2Fproject HTTP/1.1"),
        "{}",
        seen[0]
    );
}

#[test]
fn an_allow_list_refuses_other_requests_before_anything_leaves() {
    let world = World::default_provider();
    let api = Recorder::start();
    upstream(
        &world,
        &format!(
            "upstream = \"http://127.0.0.1:{}/v2\"\nallow = [\"GET /v2/me\", \"post /v2/issues\", \"GET /v2/repos/*/tags\"]",
            api.port
        ),
    );
    world.login();
    let token_requests = world.idp.counters().token_successes;
    let check = |world: &World, through: &str| {
        for args in [
            &["api", "/me"][..],
            &["api", "-X", "POST", "-d", "{}", "/issues"],
            &["api", "/repos/latchkey/tags"],
        ] {
            world.latchkey(args).run().ok();
        }
        for args in [
            &["api", "--json", "/users"][..],
            &["api", "--json", "-X", "DELETE", "/me"],
            &["api", "--json", "-X", "POST", "/issues/1"],
            &["api", "--json", "/repos/latchkey/tags/v1"],
            // Encoded climbs are refused by the path rule before the allow list.
            &["api", "--json", "/me/../users"],
        ] {
            let run = world.latchkey(args).run();
            let code = if args.contains(&"/me/../users") { 2 } else { 5 };
            let err = run.json_error(code, if code == 5 { "forbidden" } else { "usage" });
            if code == 5 {
                let message = err["message"].as_str().unwrap_or_default();
                assert!(message.contains("allow list"), "{through}: {err}");
                assert!(
                    err["hint"].as_str().unwrap_or_default().contains("allow"),
                    "{through}: {err}"
                );
            }
        }
    };
    check(&world, "without a daemon");
    world.start_daemon();
    check(&world, "through the daemon");
    let seen = api.seen();
    assert_eq!(
        seen.len(),
        6,
        "only the allowed requests arrived: {seen:#?}"
    );
    assert!(
        seen.iter().all(|head| head.starts_with("GET /v2/me ")
            || head.starts_with("POST /v2/issues ")
            || head.starts_with("GET /v2/repos/latchkey/tags ")),
        "{seen:#?}"
    );
    assert_eq!(
        world.idp.counters().token_successes,
        token_requests,
        "no refused request made Latchkey refresh"
    );

    // An entry that is not `METHOD /path` is a config error, named.
    upstream(
        &world,
        &format!(
            "upstream = \"http://127.0.0.1:{}/v2\"\nallow = [\"/v2/me\"]",
            api.port
        ),
    );
    let run = world.latchkey(["api", "--json", "/me"]).run();
    let err = run.json_error(2, "usage");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("allow"),
        "{err}"
    );
}
