//! The refresh transaction across processes (docs/behaviour.md,
//! "The refresh transaction"): one refresh for many concurrent processes, recovery from
//! a rotation by a writer outside the lock, and providers that do not rotate.

use std::collections::HashMap;
use std::time::Duration;

use latchkey_daemon::vault::Vault;
use latchkey_proto::secret::Secret;
use latchkey_proto::vault::KdfParams;
use latchkey_tests::fake_idp::{self, Endpoint, FakeIdpConfig, Fault, TokenKind};
use latchkey_tests::harness::{Run, World};

const FAST: KdfParams = KdfParams::Scrypt {
    log_n: 10,
    r: 8,
    p: 1,
};

/// Logs in with access tokens living `ttl`, then waits until more than half of the
/// lifetime has passed, so the next token request must refresh; later tokens live an
/// hour so a slow machine cannot make a second refresh due.
pub(crate) fn world_due_for_refresh(cfg: FakeIdpConfig, ttl: Duration) -> World {
    let world = World::new(FakeIdpConfig {
        access_token_ttl: ttl,
        ..cfg
    });
    world.login();
    world
        .idp
        .set_config(|c| c.access_token_ttl = Duration::from_secs(3600));
    std::thread::sleep(ttl / 2 + Duration::from_millis(300));
    world
}

#[test]
fn sixteen_concurrent_processes_at_expiry_cause_one_refresh() {
    let world = world_due_for_refresh(FakeIdpConfig::default(), Duration::from_secs(2));
    let before = world.idp.counters();
    let children: Vec<_> = (0..16)
        .map(|_| {
            world
                .latchkey(["token"])
                .env("LATCHKEY_NO_DAEMON", "1")
                .spawn()
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect();
    for run in &runs {
        world.capture("token (concurrent)", run, true);
        run.ok();
    }
    let after = world.idp.counters();
    assert_eq!(
        after.token_requests.refresh_token - before.token_requests.refresh_token,
        1,
        "exactly one refresh at the provider"
    );
    assert_eq!(after.reuse_detections, 0);
    assert_eq!(after.grants_revoked, 0, "the grant was never revoked");
    let first = &runs[0].stdout;
    assert!(
        runs.iter().all(|r| &r.stdout == first),
        "all print the same token"
    );
    let newest = world.newest(TokenKind::AccessToken);
    assert_eq!(first.trim_end(), newest, "the token is the refreshed one");
}

/// A process sends refresh token RT1; while the provider is slow to answer, a writer
/// that does not hold the profile lock (another machine sharing the file, an older
/// build) rotates RT1 to RT2 and replaces the vault. The provider then refuses RT1
/// (invalid_grant or 409); the process re-reads the vault, finds RT2 and retries once.
fn rotated_by_a_foreign_writer(conflict: bool) {
    let world = World::new(FakeIdpConfig {
        reuse_detection: false,
        spent_refresh_conflict: conflict,
        ..FakeIdpConfig::default()
    });
    world.login();
    let state = world.home.state_dir();
    let rt1 = world.stored_session().refresh_token.unwrap();

    world
        .idp
        .push_faults(Endpoint::Token, Fault::Slow(Duration::from_millis(1500)), 1);
    let child = world.latchkey(["refresh", "--json"]).spawn();
    // The slow fault is taken when the process's request arrives: RT1 is in flight.
    let t0 = std::time::Instant::now();
    while !world.idp.pending_faults().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the refresh never reached the provider"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // The foreign writer: rotate RT1 at the provider, write RT2 into a copy of the
    // state, and rename the copy's vault over the real one without taking the lock.
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fake_idp::http::post_form(
            &world.idp.url("/token"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt1.expose()),
                ("client_id", latchkey_tests::harness::CLIENT_ID),
            ],
        ))
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json().unwrap();
    let rt2 = Secret::new(body["refresh_token"].as_str().unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("state");
    std::fs::create_dir_all(copy.join("profiles")).unwrap();
    std::fs::copy(state.join("key"), copy.join("key")).unwrap();
    std::fs::copy(
        state.join("profiles/work.vault"),
        copy.join("profiles/work.vault"),
    )
    .unwrap();
    let foreign = Vault::new(copy.clone(), FAST);
    let mut session = foreign.load("work").unwrap().unwrap().session;
    session.refresh_token = Some(rt2.clone());
    session.access_token = Secret::new(body["access_token"].as_str().unwrap());
    let lock = foreign.lock("work", Duration::from_secs(1)).unwrap();
    foreign.store(&lock, &session).unwrap();
    std::fs::rename(
        copy.join("profiles/work.vault"),
        state.join("profiles/work.vault"),
    )
    .unwrap();

    let run = Run::from(child.wait_with_output().unwrap());
    world.capture("refresh --json (raced)", &run, false);
    run.ok();

    // The provider's log: RT1 twice (the process and the foreign writer), then RT2
    // once (the retry); no token is sent again after the provider refused it.
    let fp = |s: &Secret| fake_idp::fingerprint(s.expose());
    let refreshes: Vec<_> = world
        .idp
        .request_log()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .collect();
    let mut sent: HashMap<String, usize> = HashMap::new();
    for r in &refreshes {
        *sent
            .entry(r.refresh_token_sha256.clone().unwrap())
            .or_default() += 1;
    }
    assert_eq!(sent.get(&fp(&rt1)), Some(&2), "{refreshes:#?}");
    assert_eq!(
        sent.get(&fp(&rt2)),
        Some(&1),
        "one retry with the rotated token"
    );
    let refused: Vec<_> = refreshes
        .iter()
        .filter(|r| r.status != Some(200))
        .map(|r| (r.done_ms.unwrap(), r.refresh_token_sha256.clone()))
        .collect();
    assert_eq!(refused.len(), 1, "{refreshes:#?}");
    let expected_status = if conflict { 409 } else { 400 };
    assert!(refreshes.iter().any(|r| r.status == Some(expected_status)));
    // Ordered by time: nothing may arrive with a token after the provider answered
    // that it refused that token.
    for (refused_at, token) in &refused {
        assert!(
            !refreshes
                .iter()
                .any(|r| r.at_ms > *refused_at && &r.refresh_token_sha256 == token),
            "a refused refresh token was sent again"
        );
    }
    // The session is healthy and holds the newest refresh token.
    let stored = world.stored_session();
    let newest = world.newest(TokenKind::RefreshToken);
    assert_eq!(stored.refresh_token.unwrap().expose(), newest);
    assert!(!stored.expired);
    world.latchkey(["token"]).run().ok();
}

#[test]
fn invalid_grant_after_a_foreign_rotation_is_recovered_with_one_retry() {
    rotated_by_a_foreign_writer(false);
}

#[test]
fn conflict_409_after_a_foreign_rotation_is_recovered_with_one_retry() {
    rotated_by_a_foreign_writer(true);
}

#[test]
fn a_provider_that_does_not_rotate_keeps_the_refresh_token() {
    let world = World::new(FakeIdpConfig {
        return_refresh_token_on_refresh: false,
        ..FakeIdpConfig::default()
    });
    world.login();
    for _ in 0..3 {
        world.latchkey(["refresh"]).run().ok();
    }
    let c = world.idp.counters();
    assert_eq!(c.refresh_successes, 3);
    assert_eq!(world.idp.issued(TokenKind::RefreshToken).len(), 1);
    world.latchkey(["token"]).run().ok();
}

#[test]
fn refresh_reports_expiry_and_generation() {
    let world = World::default_provider();
    world.login();
    let first = world.latchkey(["refresh", "--json"]).run();
    let first = first.ok().json();
    let second = world.latchkey(["refresh", "--json"]).run().json();
    assert_eq!(first["profile"], "work");
    assert!(first["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        second["generation"].as_u64().unwrap(),
        first["generation"].as_u64().unwrap() + 1
    );
    let plain = world.latchkey(["refresh"]).run();
    assert!(plain.ok().stdout.contains("expires in"), "{}", plain.stdout);
}

#[test]
fn a_fresh_token_is_served_without_contacting_the_provider() {
    let world = World::default_provider();
    world.login();
    let before = world.idp.counters();
    for _ in 0..3 {
        world.latchkey(["token"]).run().ok();
    }
    let after = world.idp.counters();
    assert_eq!(
        format!("{:?}", before.requests),
        format!("{:?}", after.requests),
        "no request at all for a fresh token"
    );
}

/// An embedding program that gives up on `Client::token` (a timeout around it) while
/// the refresh is at the provider must not cancel the refresh: the provider has
/// rotated, so a refresh dropped before its write would leave a spent refresh token
/// in the vault.
#[test]
fn a_library_caller_timing_out_mid_refresh_does_not_cancel_it() {
    use latchkey::{Client, Mode};
    use latchkey_proto::paths::{EnvInputs, Paths};
    let world = world_due_for_refresh(FakeIdpConfig::default(), Duration::from_secs(2));
    let before = world.try_load_vault().unwrap().unwrap().generation;
    world
        .idp
        .push_faults(Endpoint::Token, Fault::Slow(Duration::from_millis(1500)), 1);
    let env = EnvInputs {
        latchkey_home: Some(world.home.path().to_path_buf()),
        temp_dir: std::env::temp_dir(),
        ..EnvInputs::default()
    };
    let client = Client::new(Paths::resolve(&env).unwrap(), Mode::EmbeddedOnly);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let work = latchkey_proto::profile::ProfileName::new("work").unwrap();
    runtime.block_on(async {
        let gave_up =
            tokio::time::timeout(Duration::from_millis(300), client.token(&work, 60)).await;
        assert!(
            gave_up.is_err(),
            "the slow provider should outlast the timeout"
        );
        // The program goes on running; the refresh finishes on its own.
        let t0 = std::time::Instant::now();
        while world.try_load_vault().unwrap().unwrap().generation == before {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the refresh was dropped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The refresh task releases the profile's lock after its write: it needs the
        // runtime driven until then, so the next process runs while this one is still
        // awaiting (a runtime left idle would hold the lock until the test ends).
        let mut refresh = world
            .latchkey(["refresh"])
            .env("LATCHKEY_NO_DAEMON", "1")
            .spawn();
        while refresh.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let run = Run::from(refresh.wait_with_output().unwrap());
        world.capture("refresh", &run, false);
        run.ok();
    });
    assert_eq!(world.idp.counters().grants_revoked, 0);
}

/// A token endpoint that takes each request, holds it for `hold`, then closes the
/// connection without an answer (a provider failing slowly); counts the requests.
fn failing_slowly(hold: Duration) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}/token", listener.local_addr().expect("bound"));
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(hold);
            });
        }
    });
    (url, count)
}

/// Single flight holds for failures too: callers that waited for the flight
/// while an attempt was failing at the provider join its outcome instead of each
/// asking again (a proxy's burst of 401s, or token requests at expiry, against a
/// provider that is down would otherwise queue one timeout each). Asked on the
/// socket directly: a client would stop waiting after 500 ms and go on alone.
#[test]
fn callers_waiting_for_a_failing_refresh_join_its_outcome() {
    use std::sync::atomic::Ordering;
    let world = world_due_for_refresh(FakeIdpConfig::default(), Duration::from_secs(8));
    let (url, attempts) = failing_slowly(Duration::from_millis(1500));
    world.point_token_endpoint_at(&url);
    world.start_daemon();
    let held = world.stored_session().access_token.expose().to_string();
    let ask = |method: &'static str, path: &'static str| {
        let socket = world.socket();
        std::thread::spawn(move || latchkey_tests::harness::api(&socket, method, path, None))
    };

    // Token requests due for a refresh: one attempt; all get the token that is
    // still valid.
    let asks: Vec<_> = (0..8)
        .map(|_| ask("GET", "/v1/profiles/work/token"))
        .collect();
    for a in asks {
        let (status, body) = a.join().unwrap().expect("an answer");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["access_token"], held.as_str());
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "one attempt at the provider"
    );

    world.stop_daemons();

    // Forced refreshes of a session that is not due (so the daemon's own
    // refresh-ahead pass cannot add an attempt): one attempt; all fail with its
    // category.
    let world = World::default_provider();
    world.login();
    let (url, attempts) = failing_slowly(Duration::from_millis(1500));
    world.point_token_endpoint_at(&url);
    world.start_daemon();
    let socket = world.socket();
    let asks: Vec<_> = (0..8)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                latchkey_tests::harness::api(&socket, "POST", "/v1/profiles/work/refresh", None)
            })
        })
        .collect();
    for a in asks {
        let (_, body) = a.join().unwrap().expect("an answer");
        assert_eq!(body["error"]["category"], "transport", "{body}");
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "one attempt, not eight");
    world.stop_daemons();
}
