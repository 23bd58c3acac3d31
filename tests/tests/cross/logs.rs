//! Logs and bugs: LATCHKEY_LOG output never carries token material, and a panic is
//! reported as the `internal` category (exit 1).

use latchkey_tests::fake_idp::FakeIdpConfig;
use latchkey_tests::harness::World;

/// The whole lifecycle with every log on: the World's leak check on drop reads every
/// stderr (the logs), and this test also checks the logs are really there.
#[test]
fn trace_logs_of_the_whole_lifecycle_hold_no_token() {
    let world = World::new(FakeIdpConfig::default());
    let browser = world.auto_browser();
    let login = world
        .latchkey(["login", "--json"])
        .env("LATCHKEY_BROWSER", &browser)
        .env("LATCHKEY_LOG", "trace")
        .run();
    login.ok();
    assert!(
        login.stderr.lines().count() > 5,
        "trace logs are on: {}",
        login.stderr
    );
    for args in [
        vec!["token"],
        vec!["refresh"],
        vec!["status"],
        vec!["doctor", "--server"],
        vec!["logout"],
    ] {
        world.latchkey(args).env("LATCHKEY_LOG", "trace").run().ok();
    }
}

#[test]
fn a_panic_is_reported_as_internal_with_exit_1() {
    let world = World::default_provider();
    let json = world
        .latchkey(["status", "--json"])
        .env("LATCHKEY_TEST_PANIC", "1")
        .run();
    let err = json.json_error(1, "internal");
    assert!(err["message"].as_str().unwrap().contains("bug"), "{err}");
    let plain = world
        .latchkey(["status"])
        .env("LATCHKEY_TEST_PANIC", "1")
        .run();
    plain.code(1);
    assert!(
        plain.stderr.contains("error: internal error"),
        "{}",
        plain.stderr
    );
    assert!(!plain.stderr.contains("RUST_BACKTRACE"), "{}", plain.stderr);
}
