//! `latchkey token` against sessions in the encrypted vault.

use std::time::Duration;

use latchkey_daemon::vault::Vault;
use latchkey_proto::secret::Secret;
use latchkey_proto::vault::{KdfParams, SessionRecord};
use latchkey_tests::harness::Home;
use latchkey_tests::leak::assert_no_leaks;

const ACCESS: &str = "fk_at_crossTestAccessToken0001";
const REFRESH: &str = "fk_rt_crossTestRefreshToken001";

fn home_with_profile() -> Home {
    let home = Home::new();
    home.latchkey([
        "profile",
        "add",
        "work",
        "--issuer",
        "http://127.0.0.1:9",
        "--client-id",
        "x",
    ])
    .run()
    .ok();
    // The fast KDF keeps tests quick; the file format records it, so the CLI (which
    // would write with the default) reads it all the same.
    std::fs::write(
        home.config_file(),
        std::fs::read_to_string(home.config_file()).unwrap() + "\n[vault]\nscrypt_log_n = 10\n",
    )
    .unwrap();
    home
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn plant(home: &Home, expires_in: i64) {
    let vault = Vault::new(
        home.state_dir(),
        KdfParams::Scrypt {
            log_n: 10,
            r: 8,
            p: 1,
        },
    );
    let lock = vault.lock("work", Duration::from_secs(5)).unwrap();
    let session = SessionRecord {
        issuer: "http://127.0.0.1:9".into(),
        client_id: "x".into(),
        access_token: Secret::new(ACCESS),
        token_type: "Bearer".into(),
        expires_at: Some(now() + expires_in),
        issued_at: now(),
        refresh_token: Some(Secret::new(REFRESH)),
        id_token: None,
        scopes: vec!["openid".into()],
        user: None,
        groups: vec![],
        expired: false,
        logged_in_at: None,
        token_endpoint: None,
        revocation_endpoint: None,
        userinfo_endpoint: None,
        token_auth: None,
        revocation_auth: None,
    };
    vault.store(&lock, &session).unwrap();
}

#[test]
fn not_logged_in_exits_3_with_the_login_hint() {
    let home = home_with_profile();
    let run = home.latchkey(["token"]).run();
    run.code(3);
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert!(run.stderr.contains("error: not logged in"), "{run:#?}");
    assert!(
        run.stderr
            .contains("hint: run `latchkey login --profile work`"),
        "{run:#?}"
    );
    let err = home
        .latchkey(["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
    assert!(
        err["hint"].as_str().unwrap().contains("latchkey login"),
        "{err}"
    );
    assert_eq!(err["retryable"], false);
}

#[test]
fn prints_a_fresh_token_and_nothing_else() {
    let home = home_with_profile();
    plant(&home, 3600);
    let run = home.latchkey(["token"]).run();
    run.ok();
    assert_eq!(run.stdout, format!("{ACCESS}\n"));
    assert!(run.stderr.is_empty(), "{run:#?}");
    let doc = home.latchkey(["token", "--json"]).run();
    let doc = doc.ok().json();
    assert_eq!(doc["access_token"], ACCESS);
    assert_eq!(doc["token_type"], "Bearer");
    assert_eq!(doc["profile"], "work");
    assert!(doc["expires_at"].as_str().unwrap().ends_with('Z'), "{doc}");
    // The refresh token never leaves the engine.
    assert_no_leaks(
        &[REFRESH],
        &[
            ("token stdout", &run.stdout),
            ("token --json", &doc.to_string()),
        ],
    );
}

#[test]
fn tampered_vault_exits_8_naming_the_file_and_stays_as_it_was() {
    let home = home_with_profile();
    plant(&home, 3600);
    let path = home.state_dir().join("profiles/work.vault");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let run = home.latchkey(["token"]).run();
    run.code(8);
    assert!(run.stderr.contains(&path.display().to_string()), "{run:#?}");
    let json = home.latchkey(["token", "--json"]).run();
    json.json_error(8, "local_storage");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the vault was touched"
    );
    assert_no_leaks(
        &[ACCESS, REFRESH],
        &[("plain", &run.all_output()), ("json", &json.all_output())],
    );
}

#[test]
fn newer_vault_version_exits_8_and_is_left_alone() {
    let home = home_with_profile();
    plant(&home, 3600);
    let path = home.state_dir().join("profiles/work.vault");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&7u16.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = home
        .latchkey(["token", "--json"])
        .run()
        .json_error(8, "local_storage");
    assert!(
        err["message"].as_str().unwrap().contains("version 7"),
        "{err}"
    );
    assert!(err["hint"].as_str().unwrap().contains("upgrade"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn missing_machine_key_is_local_storage_not_a_new_key() {
    let home = home_with_profile();
    plant(&home, 3600);
    std::fs::remove_file(home.state_dir().join("key")).unwrap();
    home.latchkey(["token", "--json"])
        .run()
        .json_error(8, "local_storage");
    assert!(
        !home.state_dir().join("key").exists(),
        "a read made a new key"
    );
}

#[test]
fn removing_the_profile_deletes_its_session() {
    let home = home_with_profile();
    plant(&home, 3600);
    let run = home.latchkey(["profile", "remove", "work"]).run();
    run.ok();
    assert!(run.stdout.contains("deleted its local session"), "{run:#?}");
    assert!(!home.state_dir().join("profiles/work.vault").exists());
}
