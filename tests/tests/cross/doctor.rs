//! `latchkey doctor [--server]` (docs/behaviour.md, "Commands"): offline by default,
//! which the provider's counters prove; every check has a name, a status, a detail and
//! (when not ok) a hint; a failing check exits with the first failure's category
//! (never 1, which is for bugs); `--server` adds discovery, clock
//! skew, refresh and userinfo, and fails clearly, pointing at `latchkey login`, once
//! the provider rejects the session.

use latchkey_tests::fake_idp::{FakeIdp, FakeIdpConfig};
use latchkey_tests::harness::{Run, World};
use latchkey_tests::leak::assert_no_leaks;
use serde_json::Value;

/// The offline checks, in the order doctor runs them.
const OFFLINE: [&str; 9] = [
    "config",
    "profile",
    "state_folder",
    "runtime_folder",
    "machine_key",
    "vault",
    "session",
    "lock",
    "daemon",
];

/// What `--server` adds after the offline checks.
const ONLINE: [&str; 4] = ["discovery", "clock_skew", "refresh", "userinfo"];

/// The checks of a `doctor --json` run, each checked for its shape.
#[track_caller]
fn checks(run: &Run) -> Vec<Value> {
    let doc = run.json();
    let checks = doc["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks array: {doc}"))
        .clone();
    for c in &checks {
        assert!(c["name"].is_string(), "{c}");
        assert!(c["detail"].is_string(), "{c}");
        assert!(
            matches!(c["status"].as_str(), Some("ok" | "warn" | "fail")),
            "{c}"
        );
        assert!(c["hint"].is_string() || c["hint"].is_null(), "{c}");
        if c["status"] != "ok" {
            assert!(
                c["hint"].as_str().is_some_and(|h| !h.is_empty()),
                "a {} check needs a hint: {c}",
                c["status"]
            );
        }
    }
    checks
}

fn names(checks: &[Value]) -> Vec<&str> {
    checks.iter().filter_map(|c| c["name"].as_str()).collect()
}

/// The check called `name`.
#[track_caller]
fn find<'c>(checks: &'c [Value], name: &str) -> &'c Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
}

#[test]
fn offline_doctor_sends_no_request_and_passes_after_login() {
    let world = World::default_provider();
    world.login();
    let before = world.idp.counters();
    let log_len = world.idp.request_log().len();

    let run = world.latchkey(["doctor", "--json"]).run();
    run.ok();
    let checks = checks(&run);
    assert_eq!(names(&checks), OFFLINE);
    for c in &checks {
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert!(
        find(&checks, "vault")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("decrypts")),
        "{checks:?}"
    );

    let plain = world.latchkey(["doctor"]).run();
    plain.ok();
    assert!(plain.stdout.ends_with("No check failed.\n"), "{plain:#?}");
    for name in OFFLINE {
        assert!(
            plain.stdout.contains(&format!("ok    {name}: ")),
            "{name}: {plain:#?}"
        );
    }
    assert_eq!(
        world.idp.counters(),
        before,
        "offline doctor used the network"
    );
    assert_eq!(world.idp.request_log().len(), log_len);
}

#[test]
fn offline_doctor_without_a_session_fails_with_not_logged_in_and_the_login_hint() {
    let world = World::default_provider();
    let run = world.latchkey(["doctor", "--json"]).run();
    run.code(3);
    let checks = checks(&run);
    let vault = find(&checks, "vault");
    assert_eq!(vault["status"], "fail", "{vault}");
    assert!(
        vault["hint"]
            .as_str()
            .is_some_and(|h| h.contains("latchkey login --profile work")),
        "{vault}"
    );
    assert_eq!(world.idp.counters(), Default::default());
}

#[test]
fn a_tampered_vault_fails_the_vault_check_and_stays_as_it_was() {
    let world = World::default_provider();
    world.login();
    let path = world.home.state_dir().join("profiles/work.vault");
    let mut bytes = world.vault_bytes().expect("logged in");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&path, &bytes).expect("the vault can be rewritten");
    let before = world.idp.counters();

    let run = world.latchkey(["doctor", "--json"]).run();
    run.code(8);
    let checks = checks(&run);
    let vault = find(&checks, "vault");
    assert_eq!(vault["status"], "fail", "{vault}");
    assert!(
        vault["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&path.display().to_string())),
        "{vault}"
    );
    assert!(
        vault["hint"]
            .as_str()
            .is_some_and(|h| h.contains("log in again")),
        "{vault}"
    );
    assert_eq!(find(&checks, "machine_key")["status"], "ok");

    let plain = world.latchkey(["doctor"]).run();
    plain.code(8);
    assert!(plain.stdout.contains("fail  vault: "), "{plain:#?}");
    assert!(plain.stdout.contains("      hint: "), "{plain:#?}");
    assert!(
        plain.stdout.ends_with("Some checks failed.\n"),
        "{plain:#?}"
    );

    assert_eq!(std::fs::read(&path).expect("still there"), bytes);
    assert_eq!(world.idp.counters(), before);
}

#[test]
fn a_missing_machine_key_fails_and_is_not_recreated() {
    let world = World::default_provider();
    world.login();
    let key = world.home.state_dir().join("key");
    std::fs::remove_file(&key).expect("the key exists after a login");
    let run = world.latchkey(["doctor", "--json"]).run();
    run.code(8);
    let checks = checks(&run);
    let check = find(&checks, "machine_key");
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["hint"]
            .as_str()
            .is_some_and(|h| h.contains("restore the key file")),
        "{check}"
    );
    assert_eq!(find(&checks, "vault")["status"], "fail");
    assert!(!key.exists(), "doctor made a new machine key");
}

#[test]
fn a_broken_config_fails_the_config_check() {
    let world = World::default_provider();
    std::fs::write(world.home.config_file(), "[profiles.work\n").expect("writable");
    let run = world.latchkey(["doctor", "--json"]).run();
    run.code(2);
    let checks = checks(&run);
    let config = find(&checks, "config");
    assert_eq!(config["status"], "fail", "{config}");
    assert!(
        config["detail"]
            .as_str()
            .is_some_and(|d| d.contains("config.toml")),
        "{config}"
    );
}

#[test]
fn server_doctor_on_a_healthy_session_passes() {
    let world = World::default_provider();
    world.login();
    let before = world.idp.counters();
    let run = world.latchkey(["doctor", "--server", "--json"]).run();
    run.ok();
    let checks = checks(&run);
    let expected: Vec<&str> = OFFLINE.iter().chain(ONLINE.iter()).copied().collect();
    assert_eq!(names(&checks), expected);
    for c in &checks {
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert!(
        find(&checks, "userinfo")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("dev@example.test")),
        "{checks:?}"
    );
    let after = world.idp.counters();
    assert_eq!(after.requests.discovery, before.requests.discovery + 1);
    assert_eq!(after.userinfo_ok, before.userinfo_ok + 1);
    assert_eq!(
        after.requests.token, before.requests.token,
        "a fresh token needs no refresh"
    );
}

#[test]
fn server_doctor_fails_when_the_provider_revoked_the_session() {
    let world = World::default_provider();
    world.login();
    world.idp.revoke_all();
    // Offline, nothing can tell: the vault is fine.
    world.latchkey(["doctor", "--json"]).run().ok();

    let run = world.latchkey(["doctor", "--server", "--json"]).run();
    run.code(4);
    let checks = checks(&run);
    let userinfo = find(&checks, "userinfo");
    assert_eq!(userinfo["status"], "fail", "{userinfo}");
    assert!(
        userinfo["hint"]
            .as_str()
            .is_some_and(|h| h.contains("latchkey login --profile work")),
        "{userinfo}"
    );
    assert_eq!(find(&checks, "discovery")["status"], "ok");
    assert_eq!(world.idp.counters().userinfo_rejected, 1);

    let plain = world.latchkey(["doctor", "--server"]).run();
    plain.code(4);
    assert!(plain.stdout.contains("fail  userinfo: "), "{plain:#?}");
    assert!(
        plain
            .stdout
            .contains("      hint: run `latchkey login --profile work`"),
        "{plain:#?}"
    );
    assert!(
        plain.stdout.ends_with("Some checks failed.\n"),
        "{plain:#?}"
    );
}

#[test]
fn server_doctor_fails_on_a_session_whose_refresh_was_rejected() {
    let world = World::default_provider();
    world.login();
    world.idp.revoke_all();
    world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(4, "session_expired");
    let before = world.idp.counters();

    // Offline doctor now knows, from the vault alone.
    let run = world.latchkey(["doctor", "--json"]).run();
    run.code(4);
    let offline = checks(&run);
    let session = find(&offline, "session");
    assert_eq!(session["status"], "fail", "{session}");
    assert!(
        session["hint"]
            .as_str()
            .is_some_and(|h| h.contains("latchkey login --profile work")),
        "{session}"
    );
    assert_eq!(
        world.idp.counters(),
        before,
        "offline doctor used the network"
    );

    let run = world.latchkey(["doctor", "--server", "--json"]).run();
    run.code(4);
    let online = checks(&run);
    let refresh = find(&online, "refresh");
    assert_eq!(refresh["status"], "fail", "{refresh}");
    assert!(
        refresh["hint"]
            .as_str()
            .is_some_and(|h| h.contains("latchkey login --profile work")),
        "{refresh}"
    );
    let after = world.idp.counters();
    assert_eq!(
        after.requests.token, before.requests.token,
        "the rejected refresh token was sent again"
    );
}

#[test]
fn server_doctor_fails_clearly_when_the_provider_is_down() {
    let mut world = World::default_provider();
    let login = world.login();
    let old = std::mem::replace(
        &mut world.idp,
        FakeIdp::start_blocking(FakeIdpConfig::default()),
    );
    let issued = old.issued_tokens();
    old.shutdown();

    // Offline doctor does not care.
    let offline = world.latchkey(["doctor", "--json"]).run();
    offline.ok();
    let run = world.latchkey(["doctor", "--server", "--json"]).run();
    run.code(6);
    let checks = checks(&run);
    let discovery = find(&checks, "discovery");
    assert_eq!(discovery["status"], "fail", "{discovery}");
    assert!(
        discovery["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot reach")),
        "{discovery}"
    );
    assert!(
        discovery["hint"]
            .as_str()
            .is_some_and(|h| h.contains("network")),
        "{discovery}"
    );
    assert_no_leaks(
        &issued,
        &[
            ("login", &login.all_output()),
            ("doctor", &offline.all_output()),
            ("doctor --server", &run.all_output()),
        ],
    );
}
