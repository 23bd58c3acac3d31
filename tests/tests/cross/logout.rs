//! `latchkey logout [--local]` (docs/behaviour.md, "Commands"): each of the three
//! outcomes (`revoked`, `local_only`, `not_logged_in`) in JSON and plain sentences,
//! what the provider recorded (revocations, the refresh token dead or alive
//! afterwards), that `--local` sends nothing at all, that the vault file is gone in
//! every case, and that a local deletion failure exits 8.

use std::future::Future;
use std::path::PathBuf;

use latchkey_tests::fake_idp::http;
use latchkey_tests::fake_idp::{FakeIdp, FakeIdpConfig, TokenKind, fingerprint};
use latchkey_tests::harness::{CLIENT_ID, Immutable, World};
use latchkey_tests::leak::assert_no_leaks;

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime can be built")
        .block_on(f)
}

/// Presents `refresh_token` to the provider's token endpoint directly; returns the
/// HTTP status and the OAuth error code, if any.
fn try_refresh(idp: &FakeIdp, refresh_token: &str) -> (u16, Option<String>) {
    let resp = block_on(http::post_form(
        &idp.url("/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ],
    ))
    .expect("the provider answers");
    let error = resp
        .json()
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string));
    (resp.status, error)
}

/// The status `/userinfo` answers for `access_token`.
fn userinfo_status(idp: &FakeIdp, access_token: &str) -> u16 {
    block_on(http::get_bearer(&idp.url("/userinfo"), access_token))
        .expect("the provider answers")
        .status
}

fn vault_path(world: &World) -> PathBuf {
    world.home.state_dir().join("profiles/work.vault")
}

/// The parsed `logout --json` answer, checked for its shape.
#[track_caller]
fn outcome(world: &World, args: &[&str]) -> serde_json::Value {
    let run = world.latchkey(args).run();
    let doc = run.ok().json();
    assert!(
        doc["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{doc}"
    );
    doc
}

#[test]
fn revoked_at_the_provider_and_deleted_locally() {
    let world = World::default_provider();
    world.login();
    let refresh_token = world.idp.issued(TokenKind::RefreshToken);
    let access_token = world.idp.issued(TokenKind::AccessToken);
    assert_eq!((refresh_token.len(), access_token.len()), (1, 1));

    let doc = outcome(&world, &["logout", "--json"]);
    assert_eq!(doc["outcome"], "revoked", "{doc}");
    assert!(!vault_path(&world).exists(), "the vault is still there");

    let c = world.idp.counters();
    assert_eq!(c.requests.revocation, 2, "{c:?}");
    assert_eq!(c.revocations, 2, "both tokens were known and revoked");
    assert_eq!(c.grants_revoked, 1);
    // The refresh token first (it ends the grant), then the access token.
    let revoked: Vec<_> = world
        .idp
        .request_log()
        .into_iter()
        .filter(|r| r.path == "/revoke")
        .map(|r| (r.token_type_hint, r.token_sha256, r.status))
        .collect();
    assert_eq!(
        revoked,
        vec![
            (
                Some("refresh_token".to_string()),
                Some(fingerprint(&refresh_token[0])),
                Some(200)
            ),
            (
                Some("access_token".to_string()),
                Some(fingerprint(&access_token[0])),
                Some(200)
            ),
        ]
    );
    // The provider no longer honours either token.
    assert_eq!(
        try_refresh(&world.idp, &refresh_token[0]),
        (400, Some("invalid_grant".into()))
    );
    assert_eq!(userinfo_status(&world.idp, &access_token[0]), 401);

    let status = world.latchkey(["status", "--json"]).run();
    assert_eq!(status.ok().json()["logged_in"], false);

    // The plain sentence says the same.
    world.login();
    let plain = world.latchkey(["logout"]).run();
    plain.ok();
    assert_eq!(
        plain.stdout,
        "Logged out of work: revoked at the provider and deleted locally.\n"
    );
    assert!(plain.stderr.is_empty(), "{plain:#?}");
    assert!(!vault_path(&world).exists());
    assert_eq!(world.idp.counters().revocations, 4);
}

#[test]
fn local_only_when_the_provider_is_down() {
    let mut world = World::default_provider();
    let login = world.login();
    let old = std::mem::replace(
        &mut world.idp,
        FakeIdp::start_blocking(FakeIdpConfig::default()),
    );
    let issued = old.issued_tokens();
    old.shutdown();

    let run = world.latchkey(["logout", "--json"]).run();
    let doc = run.ok().json();
    assert_eq!(doc["outcome"], "local_only", "{doc}");
    let detail = doc["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("cannot reach"), "says why: {doc}");
    assert!(!vault_path(&world).exists(), "the vault is still there");
    let status = world.latchkey(["status", "--json"]).run();
    assert_eq!(status.ok().json()["logged_in"], false);
    assert_no_leaks(
        &issued,
        &[
            ("login", &login.all_output()),
            ("logout", &run.all_output()),
        ],
    );
}

#[test]
fn local_only_when_the_provider_does_not_support_revocation() {
    let world = World::new(FakeIdpConfig {
        revocation: false,
        ..FakeIdpConfig::default()
    });
    world.login();
    let plain = world.latchkey(["logout"]).run();
    plain.ok();
    assert_eq!(
        plain.stdout,
        "Logged out of work locally; the provider was not told: \
         the provider does not support revocation.\n"
    );
    assert!(!vault_path(&world).exists());

    world.login();
    let doc = outcome(&world, &["logout", "--json"]);
    assert_eq!(doc["outcome"], "local_only", "{doc}");
    assert!(
        doc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("does not support revocation")),
        "{doc}"
    );
    assert!(!vault_path(&world).exists());
    assert_eq!(world.idp.counters().requests.revocation, 0);
}

#[test]
fn local_flag_sends_nothing_and_leaves_the_grant_alive() {
    let world = World::default_provider();
    world.login();
    let refresh_token = world.idp.issued(TokenKind::RefreshToken);
    let before = world.idp.counters();
    let log_len = world.idp.request_log().len();

    let doc = outcome(&world, &["logout", "--local", "--json"]);
    assert_eq!(doc["outcome"], "local_only", "{doc}");
    assert!(
        doc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not requested")),
        "{doc}"
    );
    assert!(!vault_path(&world).exists(), "the vault is still there");
    assert_eq!(
        world.idp.counters(),
        before,
        "--local contacted the provider"
    );
    assert_eq!(world.idp.request_log().len(), log_len);

    world.login();
    let plain = world.latchkey(["logout", "--local"]).run();
    plain.ok();
    assert_eq!(
        plain.stdout,
        "Logged out of work locally; the provider was not told: \
         revocation was not requested.\n"
    );
    assert!(!vault_path(&world).exists());
    let c = world.idp.counters();
    assert_eq!((c.requests.revocation, c.grants_revoked), (0, 0));
    // Nothing was revoked: the first session's refresh token still works.
    assert_eq!(try_refresh(&world.idp, &refresh_token[0]).0, 200);
}

#[test]
fn not_logged_in_is_an_outcome_not_an_error() {
    let world = World::default_provider();
    let doc = outcome(&world, &["logout", "--json"]);
    assert_eq!(doc["outcome"], "not_logged_in", "{doc}");
    let plain = world.latchkey(["logout"]).run();
    plain.ok();
    assert_eq!(plain.stdout, "Profile work was not logged in.\n");
    assert_eq!(
        world.idp.counters(),
        Default::default(),
        "nothing to revoke, nothing to ask"
    );
    // A second logout after a real one says the same.
    world.login();
    world.latchkey(["logout", "--json"]).run().ok();
    let again = outcome(&world, &["logout", "--json"]);
    assert_eq!(again["outcome"], "not_logged_in", "{again}");
    assert!(!vault_path(&world).exists());
}

#[test]
fn a_vault_that_cannot_be_deleted_exits_8() {
    let world = World::default_provider();
    world.login();
    let path = vault_path(&world);
    // As root no mode bit stops an unlink; a non-empty folder in the vault's place does.
    std::fs::remove_file(&path).expect("the vault can be removed");
    std::fs::create_dir(&path).expect("a folder can take its place");
    std::fs::write(path.join("keep"), b"x").expect("the folder can be filled");

    let err = world
        .latchkey(["logout", "--json"])
        .run()
        .json_error(8, "local_storage");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains(&path.display().to_string())),
        "names the file: {err}"
    );
    let plain = world.latchkey(["logout"]).run();
    plain.code(8);
    assert!(plain.stdout.is_empty(), "{plain:#?}");
    // A warning about the unreadable vault may come first (logs are on at warn).
    assert!(
        plain
            .stderr
            .lines()
            .any(|l| l.starts_with("error: cannot delete ")),
        "{plain:#?}"
    );
    assert!(path.join("keep").exists(), "the folder was emptied");
}

#[test]
fn a_deletion_refused_after_revocation_still_exits_8() {
    let world = World::default_provider();
    world.login();
    let path = vault_path(&world);
    let bytes = world.vault_bytes().expect("logged in");
    let profiles = world.home.state_dir().join("profiles");
    let Some(_guard) = Immutable::set(&profiles) else {
        eprintln!("skipped: chattr +i is not available here");
        return;
    };
    let err = world
        .latchkey(["logout", "--json"])
        .run()
        .json_error(8, "local_storage");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains(&path.display().to_string())),
        "names the file: {err}"
    );
    // The provider was told first. The folder kept the file, but its content is
    // erased in place: it reads as corrupt, never as the logged-out session.
    assert_eq!(world.idp.counters().revocations, 2);
    let left = std::fs::read(&path).expect("still there");
    assert!(left.is_empty() && !bytes.is_empty(), "emptied in place");
    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(8, "local_storage");
    drop(_guard);
    world.login();
    world.latchkey(["token"]).run().ok();
}

/// Regression: a logout through the daemon whose caller hung up mid-revocation was
/// dropped with the request, leaving the revoked session in the vault (and, had it
/// been unsaved, in memory). It now runs to its end like a refresh.
#[test]
fn a_logout_whose_caller_hangs_up_still_runs_to_its_end() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use latchkey_tests::fake_idp::{Endpoint, Fault};

    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let access = world.newest(TokenKind::AccessToken);
    let refresh = world.newest(TokenKind::RefreshToken);
    world.idp.push_faults(
        Endpoint::Revocation,
        Fault::Slow(Duration::from_millis(1500)),
        1,
    );
    let mut caller =
        std::os::unix::net::UnixStream::connect(world.socket()).expect("the daemon listens");
    let body = r#"{"revoke": true}"#;
    write!(
        caller,
        "POST /v1/profiles/work/logout HTTP/1.1\r\nHost: l\r\nLatchkey-Protocol: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    let t0 = Instant::now();
    while world.idp.counters().requests.revocation == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no revocation began"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The caller gives up while the provider is still revoking.
    drop(caller);
    let t0 = Instant::now();
    while world.vault_bytes().is_some() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the logout stopped with its caller: the revoked session is still in the vault"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!world.idp.is_active(&refresh) && !world.idp.is_active(&access));
    world.stop_daemons();
}
