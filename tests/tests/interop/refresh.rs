//! Refresh against oidc-provider, which rotates refresh tokens for public clients and
//! revokes the whole grant when a spent one comes back: 64 concurrent `latchkey token`
//! processes at expiry cause exactly one refresh per round and never a revocation,
//! with and without the daemon; and a replayed refresh token really does end the
//! session, so "never revoked" above means something.

use std::time::{Duration, Instant};

use latchkey_tests::harness::Run;
use latchkey_tests::oidc_provider::ProviderOptions;

use crate::world::Interop;

/// Access tokens from a login or forced refresh live this long; half of it must pass
/// before a refresh is due (docs/behaviour.md, "Fresh enough").
const SHORT: Duration = Duration::from_secs(4);
/// Tokens issued by the refresh under test live an hour, so a slow machine cannot
/// make a second refresh due within a round.
const LONG: Duration = Duration::from_secs(3600);

/// Waits until more than half of the stored access token's lifetime has passed.
fn wait_until_due(world: &Interop) {
    let s = world.stored_session();
    let expires_at = s.expires_at.expect("the provider sent expires_in");
    assert!(
        expires_at - s.issued_at <= SHORT.as_secs() as i64 + 1,
        "the stored token is not the short-lived one: a refresh came before the round started"
    );
    let half = s.issued_at + (expires_at - s.issued_at) / 2;
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        if now > half {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sixty_four_processes_one_refresh(with_daemon: bool) {
    let Some(world) = Interop::new(
        ProviderOptions {
            access_token_ttl: SHORT,
            ..ProviderOptions::default()
        },
        false,
    ) else {
        return;
    };
    if with_daemon {
        world.start_daemon();
    } else {
        world.without_daemon();
    }
    world.device_login().0.ok();
    for round in 0..2 {
        if round > 0 {
            // A short-lived token again, from a forced refresh.
            world.idp.set_access_token_ttl(SHORT);
            world.latchkey(["refresh"]).run().ok();
        }
        // Counted from here: with a daemon, its proactive refresh (due after half
        // the short lifetime) may be the one refresh of the round.
        let before = world.idp.grants("refresh_token");
        world.idp.set_access_token_ttl(LONG);
        let old_token = world.stored_session().access_token.expose().to_string();
        wait_until_due(&world);
        let started = Instant::now();
        let children: Vec<_> = (0..64).map(|_| world.latchkey(["token"]).spawn()).collect();
        let runs: Vec<Run> = children
            .into_iter()
            .map(|c| Run::from(c.wait_with_output().unwrap()))
            .collect();
        let elapsed = started.elapsed();
        for r in &runs {
            world.capture("token (64 concurrent)", r, true);
            r.ok();
        }
        let refreshes = world.idp.grants("refresh_token") - before;
        eprintln!(
            "figures: round {round} {} daemon: 64 concurrent `latchkey token` in {:.0} ms, {refreshes} refresh(es) at oidc-provider",
            if with_daemon { "with" } else { "without" },
            elapsed.as_secs_f64() * 1000.0
        );
        assert_eq!(
            refreshes, 1,
            "exactly one refresh at the provider in round {round}"
        );
        let token = runs[0].stdout.trim_end();
        assert!(
            runs.iter().all(|r| r.stdout == runs[0].stdout),
            "all 64 print the same token"
        );
        assert_ne!(token, old_token, "the token is the refreshed one");
        let stored = world.stored_session();
        assert_eq!(token, stored.access_token.expose());

        let c = world.idp.counters();
        assert_eq!(
            c["grants_revoked"]["reuse"], 0,
            "the grant was never revoked: {c}"
        );
        assert_eq!(c["grant_errors"], serde_json::json!({}), "{c}");
        assert!(world.idp.is_active(token), "the new access token is active");
        let rt = stored.refresh_token.expect("a refresh token");
        assert!(
            world.idp.is_active(rt.expose()),
            "the rotated refresh token is active"
        );
        let (status, me) = world.idp.userinfo(token);
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["sub"], "interop-user");
    }
    if with_daemon {
        let st = world.latchkey(["daemon", "status", "--json"]).run();
        let st = st.ok().json();
        assert_eq!(st["counters"]["refreshes_failed"], 0, "{st}");
    }
}

#[test]
fn sixty_four_concurrent_processes_one_refresh_per_round_embedded() {
    sixty_four_processes_one_refresh(false);
}

#[test]
fn sixty_four_concurrent_processes_one_refresh_per_round_through_the_daemon() {
    sixty_four_processes_one_refresh(true);
}

#[test]
fn a_replayed_refresh_token_revokes_the_grant_and_latchkey_says_session_expired() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    world.without_daemon();
    world.device_login().0.ok();
    let first = world
        .stored_session()
        .refresh_token
        .expect("a refresh token");
    world.latchkey(["refresh"]).run().ok();
    let second = world
        .stored_session()
        .refresh_token
        .expect("a refresh token");
    assert_ne!(first.expose(), second.expose(), "the provider rotated it");
    assert!(
        !world.idp.is_active(first.expose()),
        "the first one is spent"
    );
    assert!(world.idp.is_active(second.expose()));

    // Someone replays the spent token: the provider refuses it and revokes the grant.
    let replay = world.idp.redeem_refresh_token(first.expose());
    assert_eq!(replay.status, 400);
    assert_eq!(replay.json()["error"], "invalid_grant");
    assert_eq!(world.idp.reuse_revocations(), 1);
    assert!(
        !world.idp.is_active(second.expose()),
        "the whole grant is gone"
    );

    let run = world.latchkey(["refresh", "--json"]).run();
    let err = run.json_error(4, "session_expired");
    assert!(
        err["hint"].as_str().unwrap().contains("latchkey login"),
        "{err}"
    );
    let st = world.latchkey(["status", "--json"]).run();
    let st = st.json();
    assert_eq!(
        st["user"]["sub"], "interop-user",
        "status still says who: {st}"
    );
}
