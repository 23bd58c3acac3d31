//! Unsaved sessions (docs/behaviour.md, "Unsaved sessions" and "Reserve before
//! spending"): a session the provider rotated and the disk refused is never lost
//! while a daemon holds it, never comes back after a logout, and no process sends
//! the refresh token it replaced.
//!
//! How the daemon gets an unsaved session here: the state folder is a 1 MiB tmpfs
//! filled up but for 32 KiB, enough for the refresh's reservation; then the provider
//! issues tokens 40,000 characters longer than before, so the new vault no longer
//! fits and its write fails after the provider spent the old refresh token. A disk
//! that is simply full fails the reservation, before the provider is asked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use latchkey_tests::fake_idp::{FakeIdpConfig, TokenKind};
use latchkey_tests::harness::{Mount, World};

use crate::{assert_vault_decrypts, embedded};

/// The size of the state folder's file system.
const DISK: u64 = 1024 * 1024;
/// What the provider appends to each token once the disk is nearly full.
const GROWTH: usize = 40_000;

/// Fills the file system of `dir` until `spare` bytes (rounded to pages) are left;
/// returns the filler, whose removal makes room again.
fn fill_leaving(dir: &Path, spare: usize) -> PathBuf {
    use std::io::Write;
    let spacer = dir.join("spacer");
    std::fs::write(&spacer, vec![0u8; spare]).expect("the spacer fits");
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("the filler can be created");
    for chunk in [64 * 1024, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).and_then(|()| f.sync_all()).is_ok() {}
    }
    std::fs::remove_file(&spacer).expect("the spacer can be removed");
    path
}

/// A logged-in world whose state folder is a small tmpfs. `None` where mounting is
/// not allowed (and not CI).
fn on_tmpfs(cfg: FakeIdpConfig) -> Option<(World, Mount)> {
    let world = World::new(cfg);
    let state = world.home.state_dir();
    std::fs::create_dir(&state).expect("the state folder can be made");
    let mount = Mount::tmpfs(&state, DISK)?;
    world.login();
    Some((world, mount))
}

/// `latchkey daemon status --json`'s `unsaved` flag of the only profile.
fn daemon_unsaved(world: &World) -> bool {
    let run = world.latchkey(["daemon", "status", "--json"]).run();
    run.ok().json()["profiles"][0]["unsaved"] == true
}

/// Starts a daemon and brings it to hold an unsaved session: returns the filler
/// (remove it for room again) and the daemon's pid. The provider has rotated once,
/// and the tokens it issued then are `world.newest(..)`.
fn daemon_with_unsaved_session(world: &World) -> (PathBuf, u32) {
    let pid = world.start_daemon();
    let filler = fill_leaving(&world.home.state_dir(), 32 * 1024);
    world.idp.set_config(|c| c.token_padding = GROWTH);
    let before = world.idp.counters().refresh_successes;
    let run = world.latchkey(["refresh", "--json"]).run();
    run.ok();
    assert_eq!(world.idp.counters().refresh_successes, before + 1);
    world.idp.set_config(|c| c.token_padding = 0);
    assert!(
        daemon_unsaved(world),
        "the daemon holds the session unsaved"
    );
    (filler, pid)
}

#[test]
fn a_logout_ends_an_unsaved_session_for_good() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig::default()) else {
        return;
    };
    let (filler, _pid) = daemon_with_unsaved_session(&world);
    let access = world.newest(TokenKind::AccessToken);
    let refresh = world.newest(TokenKind::RefreshToken);
    assert!(world.idp.is_active(&access) && world.idp.is_active(&refresh));

    let out = world.latchkey(["logout", "--json"]).run();
    assert_eq!(out.ok().json()["outcome"], "revoked", "{out:#?}");
    std::fs::remove_file(&filler).expect("room again");
    // The daemon's retries had time to write the session back, had it kept it.
    std::thread::sleep(Duration::from_secs(10));
    assert!(world.vault_bytes().is_none(), "the vault stays deleted");
    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
    assert!(
        !world.idp.is_active(&access) && !world.idp.is_active(&refresh),
        "the provider still accepts a token of the logged-out session"
    );
    assert!(!daemon_unsaved(&world));
    world.stop_daemons();
}

/// A logout of an unsaved session whose deletion the disk refuses: the older
/// session still in the vault (its refresh token spent by the unsaved one) never
/// comes back, is never refreshed by anyone, and the daemon deletes it once it can.
#[test]
fn a_logout_the_disk_cannot_delete_holds_until_the_vault_is_gone() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig::default()) else {
        return;
    };
    let (filler, _pid) = daemon_with_unsaved_session(&world);
    let Some(read_only) = Mount::read_only(&world.home.state_dir().join("profiles")) else {
        world.stop_daemons();
        return;
    };
    let refreshes = world.idp.counters().token_requests.refresh_token;

    world
        .latchkey(["logout", "--json"])
        .run()
        .json_error(8, "local_storage");
    assert!(world.vault_bytes().is_some(), "the disk kept the vault");
    // Logged out for the daemon, whatever the vault still holds.
    let status = world.latchkey(["status", "--json"]).run();
    assert_eq!(status.json()["logged_in"], false, "{status:#?}");
    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
    world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(3, "not_logged_in");
    assert!(
        daemon_unsaved(&world),
        "status shows the logout as not saved"
    );
    // Nobody refreshes from the old vault: not another process either.
    world.idp.expire_access_tokens();
    embedded(&world, &["refresh", "--json"])
        .run()
        .json_error(8, "local_storage");
    // A second logout is told there is nothing left but the deletion.
    world
        .latchkey(["logout", "--json"])
        .run()
        .json_error(8, "local_storage");

    drop(read_only);
    std::fs::remove_file(&filler).expect("room again");
    assert!(
        crate::eventually(Duration::from_secs(20), || world.vault_bytes().is_none()),
        "the daemon deletes the vault once it can"
    );
    assert!(!daemon_unsaved(&world));
    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "a refresh token of the logged-out session was sent"
    );
    assert_eq!(world.idp.counters().reuse_detections, 0);
    world.stop_daemons();
    embedded(&world, &["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
}

#[test]
fn refreshes_of_an_unsaved_session_never_send_the_spent_refresh_token() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig::default()) else {
        return;
    };
    let (filler, _pid) = daemon_with_unsaved_session(&world);
    let refreshes = world.idp.counters().token_requests.refresh_token;
    // The disk still refuses the unsaved session: nothing is sent to the provider.
    let second = world.latchkey(["refresh", "--json"]).run();
    second.json_error(8, "local_storage");
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "a refresh was sent while the session could not be saved"
    );
    // Operators see it: daemon status and doctor.
    let plain = world.latchkey(["daemon", "status"]).run();
    assert!(plain.ok().stdout.contains("NOT SAVED"), "{}", plain.stdout);
    let doctor = world.latchkey(["doctor", "--json"]).run().json();
    let daemon_check = doctor["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "daemon")
        .cloned()
        .expect("a daemon check");
    assert_eq!(daemon_check["status"], "warn", "{doctor}");
    let status = world.latchkey(["status", "--json"]).run();
    assert_eq!(status.ok().json()["unsaved"], true, "{status:#?}");
    let plain = world.latchkey(["status"]).run();
    assert!(plain.ok().stdout.contains("NOT SAVED"), "{}", plain.stdout);
    // A token request is still answered, from the unsaved session.
    let token = world.latchkey(["token"]).run();
    assert_eq!(
        token.ok().stdout.trim_end(),
        world.newest(TokenKind::AccessToken)
    );

    std::fs::remove_file(&filler).expect("room again");
    let token = world.latchkey(["token"]).run();
    token.ok();
    assert!(
        crate::eventually(Duration::from_secs(15), || !daemon_unsaved(&world)),
        "the daemon saves the session once there is room"
    );
    world.latchkey(["refresh", "--json"]).run().ok();
    let stored = assert_vault_decrypts(&world).session;
    assert_eq!(
        stored.refresh_token.expect("a refresh token").expose(),
        world.newest(TokenKind::RefreshToken)
    );
    assert_eq!(world.idp.counters().reuse_detections, 0);
    // The file alone carries the session: no daemon, no login.
    world.stop_daemons();
    embedded(&world, &["refresh", "--json"]).run().ok();
    assert_eq!(world.idp.counters().reuse_detections, 0);
}

#[test]
fn a_full_disk_fails_a_daemon_refresh_before_the_provider_is_asked() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig::default()) else {
        return;
    };
    world.start_daemon();
    let filler = fill_leaving(&world.home.state_dir(), 0);
    let refreshes = world.idp.counters().token_requests.refresh_token;
    for _ in 0..2 {
        world
            .latchkey(["refresh", "--json"])
            .run()
            .json_error(8, "local_storage");
    }
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "the refresh token was sent although its successor could not be saved"
    );
    assert!(!daemon_unsaved(&world));
    std::fs::remove_file(&filler).expect("room again");
    world.latchkey(["refresh", "--json"]).run().ok();
    world.latchkey(["token"]).run().ok();
    assert_eq!(world.idp.counters().reuse_detections, 0);
    assert_vault_decrypts(&world);
    world.stop_daemons();
}

#[test]
fn processes_falling_back_from_a_hung_daemon_leave_its_unsaved_session_alone() {
    // Access tokens that are expired by the time the daemon hangs, so every
    // falling-back process would need a refresh.
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig {
        access_token_ttl: Duration::from_secs(2),
        ..FakeIdpConfig::default()
    }) else {
        return;
    };
    world
        .idp
        .set_config(|c| c.access_token_ttl = Duration::from_secs(3600));
    std::thread::sleep(Duration::from_millis(2100));
    let (filler, pid) = daemon_with_unsaved_session(&world);
    let refreshes = world.idp.counters().token_requests.refresh_token;
    // Stopped: it accepts connections and never answers, so each client gives up
    // after its deadline and runs the embedded engine.
    World::signal(pid, "STOP");
    let children: Vec<_> = (0..16)
        .map(|_| world.latchkey(["token", "--json"]).spawn())
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("latchkey ran");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        world.capture_text("token stderr", &stderr);
        let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        // The vault's access token has expired, so there is nothing to serve: the
        // profile is locked for the daemon's unsaved session (local_storage). Only
        // if the daemon had refreshed ahead before its session became unsaved could
        // a still-valid token from the file be served.
        match out.status.code() {
            Some(8) => {
                assert_eq!(doc["error"]["category"], "local_storage", "{doc}");
                world.capture_text("token stdout", &stdout);
            }
            Some(0) => assert_ne!(
                doc["access_token"],
                world.newest(TokenKind::AccessToken),
                "a falling-back process cannot know the unsaved session"
            ),
            other => panic!("exit {other:?}: {stdout}\n{stderr}"),
        }
    }
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "a falling-back process sent a refresh token"
    );
    World::signal(pid, "CONT");
    std::fs::remove_file(&filler).expect("room again");
    let token = world.latchkey(["token"]).run();
    assert_eq!(
        token.ok().stdout.trim_end(),
        world.newest(TokenKind::AccessToken),
        "the unsaved session is served, without a login"
    );
    assert!(crate::eventually(Duration::from_secs(15), || {
        !daemon_unsaved(&world)
    }));
    assert_eq!(world.idp.counters().reuse_detections, 0);
    world.stop_daemons();
    embedded(&world, &["refresh", "--json"]).run().ok();
    assert_eq!(world.idp.counters().reuse_detections, 0);
}

#[test]
fn without_a_daemon_a_full_disk_fails_before_the_provider_is_asked_and_loses_nothing() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig {
        access_token_ttl: Duration::from_secs(2),
        ..FakeIdpConfig::default()
    }) else {
        return;
    };
    std::thread::sleep(Duration::from_millis(2100));
    let before = world.vault_bytes().expect("logged in");
    let filler = fill_leaving(&world.home.state_dir(), 0);
    let refreshes = world.idp.counters().token_requests.refresh_token;
    let run = embedded(&world, &["token", "--json"]).run();
    crate::storage_error(&run, &world.home.state_dir());
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "the provider was asked although the new session could not be saved"
    );
    assert_eq!(world.vault_bytes().expect("still there"), before);
    std::fs::remove_file(&filler).expect("room again");
    let token = embedded(&world, &["token"]).run();
    assert_eq!(
        token.ok().stdout.trim_end(),
        world.newest(TokenKind::AccessToken)
    );
    assert_eq!(world.idp.counters().reuse_detections, 0);
}

#[test]
fn a_graceful_stop_writes_the_unsaved_session() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig::default()) else {
        return;
    };
    let (filler, pid) = daemon_with_unsaved_session(&world);
    std::fs::remove_file(&filler).expect("room again");
    World::signal(pid, "TERM");
    // The daemon removes its socket last, after the final write.
    assert!(
        crate::eventually(Duration::from_secs(10), || !world.socket().exists()),
        "the daemon stops"
    );
    let log = world.daemon_logs();
    assert!(
        log.contains("the unsaved session was saved at the stop")
            || log.contains("the refreshed session is saved now"),
        "the log says the session was saved: {log}"
    );
    let stored = assert_vault_decrypts(&world).session;
    assert_eq!(
        stored.refresh_token.expect("a refresh token").expose(),
        world.newest(TokenKind::RefreshToken),
        "the rotated session is on disk after the stop"
    );
    world.stop_daemons();
    embedded(&world, &["refresh", "--json"]).run().ok();
    assert_eq!(world.idp.counters().reuse_detections, 0);
}
