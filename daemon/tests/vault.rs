//! Vault acceptance tests: round trip, tamper and truncation resistance, version
//! refusal, multi-process consistency, and a property test of the decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use latchkey_daemon::error::{EngineError, StorageError};
use latchkey_daemon::vault::{Vault, codec};
use latchkey_proto::error::Category;
use latchkey_proto::secret::Secret;
use latchkey_proto::vault::{KdfParams, SessionRecord, UserInfo};
use proptest::prelude::*;

const FAST: KdfParams = KdfParams::Scrypt {
    log_n: 10,
    r: 8,
    p: 1,
};

fn session(token: &str) -> SessionRecord {
    SessionRecord {
        issuer: "https://id.example.com".into(),
        client_id: "cli".into(),
        access_token: Secret::new(token),
        token_type: "Bearer".into(),
        expires_at: Some(2_000_000_000),
        issued_at: 1_700_000_000,
        refresh_token: Some(Secret::new("rt-secret")),
        id_token: None,
        scopes: vec!["openid".into()],
        user: Some(UserInfo {
            sub: "u1".into(),
            email: Some("ada@example.com".into()),
            name: None,
        }),
        groups: vec!["dev".into()],
        expired: false,
        logged_in_at: None,
        token_endpoint: None,
        revocation_endpoint: None,
        userinfo_endpoint: None,
        token_auth: None,
        revocation_auth: None,
    }
}

fn store(vault: &Vault, profile: &str, s: &SessionRecord) -> u64 {
    let lock = vault.lock(profile, Duration::from_secs(30)).unwrap();
    vault.store(&lock, s).unwrap().generation
}

fn category(e: StorageError) -> Category {
    EngineError::from(e).category()
}

#[test]
fn round_trip_and_generation_increments() {
    let d = tempfile::tempdir().unwrap();
    let vault = Vault::new(d.path().join("state"), FAST);
    assert!(vault.load("work").unwrap().is_none());
    assert_eq!(store(&vault, "work", &session("at-1")), 1);
    assert_eq!(store(&vault, "work", &session("at-2")), 2);
    let loaded = vault.load("work").unwrap().unwrap();
    assert_eq!(loaded.session, session("at-2"));
    assert_eq!(loaded.generation, 2);
    // The salt is kept across rewrites: one derivation for everything above.
    assert_eq!(vault.kdf_derivations(), 1);
    // Another process (a fresh Vault) opens it with its own single derivation.
    let other = Vault::new(d.path().join("state"), FAST);
    assert_eq!(
        other.load("work").unwrap().unwrap().session,
        session("at-2")
    );
    assert_eq!(other.kdf_derivations(), 1);
    // The plaintext tokens are not in the file.
    let bytes = std::fs::read(vault.path("work").unwrap()).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("at-2") && !text.contains("rt-secret") && !text.contains("ada@"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&vault.path("work").unwrap()), 0o600);
        assert_eq!(mode(&d.path().join("state/profiles")), 0o700);
        assert_eq!(mode(&d.path().join("state/key")), 0o600);
    }
}

/// A refresh's write (into reserved space) derives no key between the
/// provider's answer and the fsync: it keeps the file's KDF and salt, or moves to
/// the configured ones prepared (and derived for) before anything was sent.
#[test]
fn a_reserved_write_never_derives_a_key() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    store(&Vault::new(state.clone(), FAST), "work", &session("at-1"));
    let stronger = KdfParams::Scrypt {
        log_n: 11,
        r: 8,
        p: 1,
    };
    let vault = Vault::new(state, stronger);
    let header = |v: &Vault| {
        let bytes = std::fs::read(v.path("work").unwrap()).unwrap();
        codec::parse(&bytes).unwrap().header
    };
    let before = header(&vault);
    vault.load("work").unwrap().unwrap();
    assert_eq!(
        vault.kdf_derivations(),
        1,
        "the load derives the file's key"
    );

    let lock = vault.lock("work", Duration::from_secs(30)).unwrap();
    let reservation = vault.reserve(&lock).unwrap();
    let stored = vault
        .store_reserved(&lock, reservation, &session("at-2"), None)
        .unwrap();
    assert_eq!(stored.generation, 2);
    let after = header(&vault);
    assert_eq!((after.kdf, after.salt), (before.kdf, before.salt));
    assert_eq!(vault.kdf_derivations(), 1, "no derivation in the window");

    // A refresh prepares the move before it sends anything: the derivation
    // happens then, and the write after the provider's answer derives nothing.
    let loaded = vault.load("work").unwrap().unwrap();
    let rekey = vault.prepare_rekey(&loaded).expect("the KDF changed");
    assert_eq!(vault.kdf_derivations(), 2, "derived while preparing");
    let reservation = vault.reserve(&lock).unwrap();
    let stored = vault
        .store_reserved(&lock, reservation, &session("at-3"), Some(rekey))
        .unwrap();
    assert_eq!(stored.generation, 3, "one write, one generation");
    let moved = header(&vault);
    assert_eq!(moved.kdf, stronger);
    assert_ne!(moved.salt, before.salt);
    assert_eq!(vault.kdf_derivations(), 2, "no derivation in the window");
    let reloaded = vault.load("work").unwrap().unwrap();
    assert_eq!(reloaded.session, session("at-3"));
    assert!(
        vault.prepare_rekey(&reloaded).is_none(),
        "nothing left to move"
    );
}

/// Temporary files a killed process left for a profile's vault are removed by
/// that profile's next reservation (under its lock, so none is live, whatever its
/// age); another profile's and foreign files stay.
#[test]
fn a_reservation_sweeps_its_own_profiles_temporary_files_only() {
    let d = tempfile::tempdir().unwrap();
    let vault = Vault::new(d.path().join("state"), FAST);
    store(&vault, "work", &session("at-1"));
    let profiles = d.path().join("state/profiles");
    let left = profiles.join(".latchkey-work@left.tmp");
    let other_profile = profiles.join(".latchkey-work2@live.tmp");
    let foreign = profiles.join("notes.tmp");
    for f in [&left, &other_profile, &foreign] {
        std::fs::write(f, vec![0u8; 8192]).unwrap();
    }
    let lock = vault.lock("work", Duration::from_secs(30)).unwrap();
    let reservation = vault.reserve(&lock).unwrap();
    assert!(!left.exists(), "the left-behind file is removed");
    assert!(other_profile.exists() && foreign.exists());
    vault
        .store_reserved(&lock, reservation, &session("at-2"), None)
        .unwrap();
    let names: Vec<String> = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".latchkey-work@"))
        .collect();
    assert!(
        names.is_empty(),
        "the reservation itself was committed: {names:?}"
    );
}

/// A vault whose folder refuses its deletion but whose file takes a write is
/// emptied in place, so it can never be read back as the logged-out session.
#[cfg(target_os = "linux")]
#[test]
fn a_vault_that_cannot_be_deleted_is_erased_in_place() {
    let d = tempfile::tempdir().unwrap();
    let vault = Vault::new(d.path().join("state"), FAST);
    store(&vault, "work", &session("at-1"));
    let profiles = d.path().join("state/profiles");
    // The append-only attribute lets files in a folder be written but not removed
    // (root included); not every file system has it.
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&profiles)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+a") {
        eprintln!("skipped: chattr +a is not available here");
        return;
    }
    let lock = vault.lock("work", Duration::from_secs(30)).unwrap();
    let deleted = vault.delete(&lock);
    let len = std::fs::metadata(vault.path("work").unwrap()).map(|m| m.len());
    assert!(chattr("-a"), "the attribute is taken back");
    assert!(deleted.is_err(), "the folder refused the deletion");
    assert_eq!(len.unwrap(), 0, "the vault was emptied in place");
    let err = vault.load("work").unwrap_err();
    assert_eq!(
        category(err),
        Category::LocalStorage,
        "empty reads as corrupt"
    );
}

fn valid_vault_bytes() -> (tempfile::TempDir, Vault, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let vault = Vault::new(d.path().join("state"), FAST);
    store(&vault, "work", &session("at-flip"));
    let bytes = std::fs::read(vault.path("work").unwrap()).unwrap();
    (d, vault, bytes)
}

fn assert_refused(vault: &Vault, bytes: &[u8], what: &str) {
    let path = vault.path("work").unwrap();
    std::fs::write(&path, bytes).unwrap();
    match vault.load("work") {
        Ok(_) => panic!("{what}: a damaged vault opened"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
            assert_eq!(category(e), Category::LocalStorage, "{what}");
        }
    }
    // Loading never rewrites the file.
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: file changed");
}

#[test]
fn every_single_byte_flip_is_refused() {
    let (_d, vault, bytes) = valid_vault_bytes();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            assert_refused(&vault, &b, &format!("byte {i} ^ {mask:#04x}"));
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let (_d, vault, bytes) = valid_vault_bytes();
    for len in 0..bytes.len() {
        assert_refused(&vault, &bytes[..len], &format!("truncated to {len}"));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_refused(&vault, &longer, "one byte appended");
}

#[test]
fn wrong_key_is_refused() {
    let (d, vault, bytes) = valid_vault_bytes();
    std::fs::write(d.path().join("state/key"), [7u8; 32]).unwrap();
    let fresh = Vault::new(d.path().join("state"), FAST);
    assert_refused(&fresh, &bytes, "other machine key");
    drop(vault);
}

#[test]
fn unknown_version_is_refused_and_never_overwritten() {
    let (_d, vault, mut bytes) = valid_vault_bytes();
    bytes[8..10].copy_from_slice(&2u16.to_be_bytes());
    let path = vault.path("work").unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let err = vault.load("work").unwrap_err();
    assert!(
        matches!(err, StorageError::UnsupportedVersion { found: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    let lock = vault.lock("work", Duration::from_secs(1)).unwrap();
    let err = vault.store(&lock, &session("at-new")).unwrap_err();
    assert_eq!(category(err), Category::LocalStorage);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the newer file was touched"
    );
}

#[test]
fn corrupt_vault_can_be_replaced_by_a_new_session() {
    let (_d, vault, mut bytes) = valid_vault_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(vault.path("work").unwrap(), &bytes).unwrap();
    assert!(vault.load("work").is_err());
    store(&vault, "work", &session("at-after"));
    assert_eq!(
        vault.load("work").unwrap().unwrap().session,
        session("at-after")
    );
}

#[cfg(unix)]
#[test]
fn symlinked_vault_and_loose_folder_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (d, vault, _bytes) = valid_vault_bytes();
    let path = vault.path("work").unwrap();
    let elsewhere = d.path().join("elsewhere.vault");
    std::fs::rename(&path, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    let err = vault.load("work").unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    std::fs::remove_file(&path).unwrap();
    std::fs::rename(&elsewhere, &path).unwrap();
    let profiles = d.path().join("state/profiles");
    std::fs::set_permissions(&profiles, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = vault.load("work").unwrap_err();
    assert!(err.to_string().contains("other users write"), "{err}");
    assert_eq!(category(err), Category::LocalStorage);
}

#[test]
fn profile_names_cannot_escape_the_profiles_folder() {
    let d = tempfile::tempdir().unwrap();
    let vault = Vault::new(d.path().join("state"), FAST);
    for bad in ["../key", "a/b", ".hidden", ""] {
        assert!(vault.load(bad).is_err(), "{bad}");
        assert!(vault.lock(bad, Duration::from_millis(10)).is_err(), "{bad}");
    }
}

const CHILD_ENV: &str = "LATCHKEY_TEST_VAULT_CHILD";
const WRITERS: u64 = 4;
const WRITES_EACH: u64 = 25;

/// Several processes write (under the lock, read-modify-write) and read one vault
/// at once: no reader ever sees a torn or undecryptable file, and no update is lost.
#[test]
fn concurrent_processes_never_see_a_torn_vault() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let vault = Vault::new(state.clone(), FAST);
    store(&vault, "work", &session("0"));
    let exe = std::env::current_exe().unwrap();
    let spawn = |role: &str| {
        Command::new(&exe)
            .args(["--exact", "vault_child_process", "--ignored", "--nocapture"])
            .env(CHILD_ENV, role)
            .env("LATCHKEY_TEST_VAULT_STATE", &state)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut children: Vec<_> = (0..WRITERS).map(|_| spawn("writer")).collect();
    children.extend((0..2).map(|_| spawn("reader")));
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child process failed");
    }
    let loaded = vault.load("work").unwrap().unwrap();
    assert_eq!(
        loaded.session.access_token.expose(),
        (WRITERS * WRITES_EACH).to_string()
    );
    assert_eq!(loaded.generation, 1 + WRITERS * WRITES_EACH);
}

/// The body of the child processes above; does nothing when run on its own.
#[test]
#[ignore = "child process of concurrent_processes_never_see_a_torn_vault"]
fn vault_child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let state = std::env::var_os("LATCHKEY_TEST_VAULT_STATE").unwrap();
    let vault = Vault::new(state.into(), FAST);
    if role == "writer" {
        for _ in 0..WRITES_EACH {
            let lock = vault.lock("work", Duration::from_secs(30)).unwrap();
            let current = vault.load("work").unwrap().unwrap();
            let n: u64 = current.session.access_token.expose().parse().unwrap();
            vault.store(&lock, &session(&(n + 1).to_string())).unwrap();
        }
    } else {
        let mut last = 0;
        for _ in 0..300 {
            let loaded = vault.load("work").unwrap().expect("the vault vanished");
            assert!(loaded.generation >= last, "generation went backwards");
            last = loaded.generation;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // The result does not matter, only that it is a result.
        let parsed = codec::parse(&bytes);
        prop_assert!(parsed.is_err() || bytes.len() >= latchkey_proto::vault::PREFIX_LEN);
    }

    #[test]
    fn decoder_never_panics_behind_a_valid_prefix(
        header_len in 0u32..100_000,
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = latchkey_proto::vault::MAGIC.to_vec();
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&header_len.to_be_bytes());
        bytes.extend_from_slice(&tail);
        prop_assert!(codec::parse(&bytes).is_err());
    }
}
