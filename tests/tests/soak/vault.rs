//! Truncated, corrupt and wrong-key vaults (docs/behaviour.md,
//! "Reliability under faults"): local_storage naming the file, the file left byte for
//! byte as it was, nothing sent to the provider, doctor's vault check failing; with and
//! without a daemon. (A flipped bit, a newer format version and a missing key are
//! proven in tests/tests/cross: categories.rs, token.rs, doctor.rs.)

use latchkey_tests::harness::World;

use crate::{doctor_check, embedded, storage_error};

/// Damages the vault with `damage`, then checks every command on every route.
fn assert_refused(what: &str, damage: impl FnOnce(&World)) {
    let world = World::default_provider();
    world.login();
    damage(&world);
    let path = world.vault_path();
    let bytes = std::fs::read(&path).expect("the damaged vault is there");
    let counters = world.idp.counters();

    for args in [
        ["token", "--json"],
        ["refresh", "--json"],
        ["status", "--json"],
    ] {
        let run = embedded(&world, &args).run();
        let err = storage_error(&run, &path);
        assert_eq!(err["retryable"], false, "{what}: {err}");
    }
    world.start_daemon();
    for args in [["token", "--json"], ["refresh", "--json"]] {
        let run = world.latchkey(args).run();
        storage_error(&run, &path);
        assert!(
            !run.stderr.contains("answered from the encrypted file"),
            "{what}: the daemon answered itself: {run:#?}"
        );
    }
    world.stop_daemons();
    let check = doctor_check(&world, "vault");
    assert_eq!(check["status"], "fail", "{what}: {check}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&path.display().to_string())),
        "{what}: {check}"
    );

    assert_eq!(
        std::fs::read(&path).expect("still there"),
        bytes,
        "{what}: the vault was touched"
    );
    assert_eq!(
        world.idp.counters(),
        counters,
        "{what}: an unreadable vault led to a provider request"
    );
}

fn truncate_to(world: &World, len: usize) {
    let path = world.vault_path();
    let bytes = std::fs::read(&path).expect("logged in");
    std::fs::write(&path, &bytes[..len.min(bytes.len())]).expect("rewritten");
}

#[test]
fn an_empty_vault_is_refused() {
    assert_refused("empty", |w| truncate_to(w, 0));
}

#[test]
fn a_vault_cut_inside_its_header_is_refused() {
    assert_refused("cut at 10 bytes", |w| truncate_to(w, 10));
}

#[test]
fn a_vault_cut_inside_its_ciphertext_is_refused() {
    assert_refused("cut in half", |w| {
        let len = w.vault_bytes().expect("logged in").len();
        truncate_to(w, len / 2);
    });
    assert_refused("one byte short", |w| {
        let len = w.vault_bytes().expect("logged in").len();
        truncate_to(w, len - 1);
    });
}

#[test]
fn a_vault_of_random_bytes_is_refused() {
    assert_refused("random bytes", |w| {
        let len = w.vault_bytes().expect("logged in").len();
        let mut junk = vec![0u8; len];
        getrandom::fill(&mut junk).expect("randomness");
        std::fs::write(w.vault_path(), junk).expect("rewritten");
    });
}

#[test]
fn a_vault_with_its_tag_overwritten_is_refused() {
    assert_refused("last 16 bytes zeroed", |w| {
        let mut bytes = w.vault_bytes().expect("logged in");
        let n = bytes.len();
        bytes[n - 16..].fill(0);
        std::fs::write(w.vault_path(), bytes).expect("rewritten");
    });
}

#[test]
fn a_vault_under_another_machine_key_is_refused() {
    assert_refused("another machine key", |w| {
        let key = w.home.state_dir().join("key");
        let mut other = [0u8; 32];
        getrandom::fill(&mut other).expect("randomness");
        std::fs::write(&key, other).expect("the key can be replaced");
    });
}
