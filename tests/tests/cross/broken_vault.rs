//! A vault that cannot be read, and a machine key that went missing, at the next
//! login (docs/behaviour.md, "Atomic writes" and "Key derivation").
//!
//! Regressions: a login wrote its new session over a corrupt or undecryptable vault
//! (a session a restored key could still have opened was destroyed), and a login
//! with the machine key missing made a new key, orphaning every other profile's
//! vault.

use latchkey_tests::harness::World;

/// The files in the profiles folder whose names start with `prefix`.
fn files_starting(world: &World, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(world.home.state_dir().join("profiles"))
        .expect("the profiles folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn a_login_moves_an_unreadable_vault_aside_instead_of_overwriting_it() {
    let world = World::default_provider();
    world.login();
    let mut bytes = world.vault_bytes().expect("logged in");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(world.vault_path(), &bytes).expect("the vault can be damaged");

    let run = world.login();
    let last_line = run.stdout.lines().last().expect("a logged_in event");
    let event: serde_json::Value = serde_json::from_str(last_line).expect("JSON");
    let moved = event["previous_vault_moved_to"]
        .as_str()
        .unwrap_or_else(|| panic!("says where the old vault went: {event}"));
    assert_eq!(
        std::fs::read(moved).expect("the old vault is kept"),
        bytes,
        "byte for byte"
    );
    assert_eq!(files_starting(&world, "work.vault.broken-").len(), 1);
    world.latchkey(["token"]).run().ok();
}

#[test]
fn a_login_never_makes_a_new_machine_key_while_other_vaults_need_the_old_one() {
    let world = World::default_provider();
    world.login();
    let vault = world.vault_bytes().expect("logged in");
    // A second profile's vault, made with the same machine key.
    let other = world.home.state_dir().join("profiles/other.vault");
    std::fs::write(&other, &vault).expect("a second vault");
    let key = world.home.state_dir().join("key");
    std::fs::remove_file(&key).expect("the key can be removed");

    let run = world
        .latchkey(["login", "--json", "--timeout", "30"])
        .env("LATCHKEY_BROWSER", world.auto_browser())
        .run();
    assert_eq!(run.code, 8, "{run:#?}");
    let last: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap_or_default()).expect("JSON");
    assert_eq!(last["error"]["category"], "local_storage", "{last}");
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("other"), "names the orphans: {last}");
    let hint = last["error"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("restore"), "{last}");
    assert!(!key.exists(), "no new machine key");
    assert_eq!(world.vault_bytes().expect("untouched"), vault);
    assert_eq!(std::fs::read(&other).expect("untouched"), vault);
    assert!(files_starting(&world, "work.vault.broken-").is_empty());

    // Once those sessions are given up, a login starts over with a new key.
    std::fs::remove_file(&other).expect("given up");
    let again = world.login();
    again.ok();
    assert!(key.exists(), "a new machine key");
    assert_eq!(
        files_starting(&world, "work.vault.broken-").len(),
        1,
        "the vault of the lost key is kept aside"
    );
}
