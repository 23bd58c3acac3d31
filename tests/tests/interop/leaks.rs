//! The leak check with the real provider's tokens (docs/behaviour.md, "Security"): a
//! whole lifecycle (device login, token, forced refresh, status, doctor, logout) with
//! trace-level logs in the client and the daemon, and no access, refresh or ID token
//! that oidc-provider issued shows up anywhere but `latchkey token`'s stdout. The check
//! itself runs when the world is dropped; this test makes sure it has something to
//! find.

use latchkey_tests::oidc_provider::ProviderOptions;

use crate::world::Interop;

#[test]
fn a_traced_lifecycle_through_the_daemon_leaks_no_issued_token() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    world.set_env("LATCHKEY_LOG", "trace");
    world.start_daemon();
    world.device_login().0.ok();
    let token = world.latchkey(["token"]).run();
    token.ok();
    world.latchkey(["refresh"]).run().ok();
    let refreshed = world.latchkey(["token", "--json"]).run();
    refreshed.ok();
    world.latchkey(["status"]).run().ok();
    world.latchkey(["doctor", "--server"]).run();
    world.latchkey(["daemon", "status"]).run().ok();
    let issued = world.idp.issued_tokens();
    // A login and a refresh: two access, two refresh and two ID tokens.
    assert_eq!(issued.len(), 6, "the provider reports what it issued");
    assert!(issued.iter().any(|t| t == token.stdout.trim_end()));
    let second = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(issued.contains(&second));
    world.latchkey(["logout"]).run().ok();
    world.stop_daemons();
    // The trace logs said something, so the check below is not vacuous.
    let daemon_log = std::fs::read_to_string(world.home.path().join("latchkeyd-0.log")).unwrap();
    assert!(daemon_log.lines().count() > 10, "{daemon_log}");
}
