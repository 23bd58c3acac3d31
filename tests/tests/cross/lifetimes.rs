//! Provider lifetimes out of bounds (docs/behaviour.md, "Bounded provider values"):
//! `expires_in` of 0, -5 and 1e18, through the embedded engine and through the
//! daemon for 30 s. Never a panic, never a refresh loop (at most one refresh per
//! half-life of the bounded lifetime), always a stated expiry.
//!
//! Regressions: 1e18 made every answer that shows a time panic (daemon and CLI);
//! 0 made the daemon refresh on every maintenance tick and each call refresh; -5
//! read as "never expires".

use std::time::{Duration, Instant};

use latchkey_tests::fake_idp::FakeIdpConfig;
use latchkey_tests::harness::World;

/// The stated expiry of `latchkey status --json`, in seconds from now.
#[track_caller]
fn stated_expiry(world: &World, embedded: bool) -> i64 {
    let mut cmd = world.latchkey(["status", "--json"]);
    if embedded {
        cmd = cmd.env("LATCHKEY_NO_DAEMON", "1");
    }
    let run = cmd.run();
    let doc = run.ok().json();
    assert!(doc["expires_at"].is_string(), "a stated expiry: {doc}");
    doc["expires_in_seconds"]
        .as_i64()
        .unwrap_or_else(|| panic!("seconds left: {doc}"))
}

/// Logs in with tokens stating `expires_in: raw`, uses them without a daemon, then
/// through a daemon for 30 s. Returns the seconds left at login as stated.
fn exercise(raw: &str) -> i64 {
    let world = World::new(FakeIdpConfig {
        expires_in_raw: Some(raw.to_string()),
        ..FakeIdpConfig::default()
    });
    world.login();
    let left = stated_expiry(&world, true);
    for _ in 0..3 {
        world
            .latchkey(["token"])
            .env("LATCHKEY_NO_DAEMON", "1")
            .run()
            .ok();
    }
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        0,
        "a fresh login's token was refreshed again and again"
    );

    world.start_daemon();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        world.latchkey(["token"]).run().ok();
        assert!(stated_expiry(&world, false) > 0);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let status = world.latchkey(["daemon", "status", "--json"]).run();
    assert!(
        status.ok().json()["profiles"][0]["expires_at"].is_string(),
        "{status:#?}"
    );
    let refreshes = world.idp.counters().token_requests.refresh_token;
    // 60 s at the least: one half-life (30 s) fits in these ~33 s at most once more.
    assert!(refreshes <= 2, "{refreshes} refreshes in about 33 s");
    world.stop_daemons();
    left
}

#[test]
fn an_expires_in_of_zero_counts_as_a_minute() {
    let left = exercise("0");
    assert!((50..=60).contains(&left), "{left}");
}

#[test]
fn a_negative_expires_in_counts_as_a_minute_not_forever() {
    let left = exercise("-5");
    assert!((50..=60).contains(&left), "{left}");
}

#[test]
fn an_absurd_expires_in_counts_as_ten_years_and_panics_nothing() {
    let left = exercise("1e18");
    let ten_years = 10 * 365 * 24 * 3600;
    assert!((ten_years - 60..=ten_years).contains(&left), "{left}");
}
