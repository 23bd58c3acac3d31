//! A full disk and a read-only state folder during refresh and login
//! (docs/behaviour.md, "Reliability under faults"): a clear local_storage error naming
//! the place, and the previous vault intact (same bytes, still decrypting). The state
//! folder is a small tmpfs that a filler file fills up, or a read-only bind mount of
//! itself; both are undone on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use latchkey_tests::fake_idp::{FakeIdpConfig, TokenKind};
use latchkey_tests::harness::{Mount, Run, World};

use crate::{assert_vault_decrypts, embedded, storage_error};

/// Fills the file system of `dir` with a filler file until it refuses another byte;
/// returns the filler so the test can make room again.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("the filler can be created");
    for chunk in [64 * 1024, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).and_then(|()| f.sync_all()).is_ok() {}
    }
    path
}

/// A world whose state folder is a 256 KiB tmpfs, logged in. `None` where mounting
/// is not allowed (and not CI).
fn on_tmpfs(cfg: FakeIdpConfig) -> Option<(World, Mount)> {
    let world = World::new(cfg);
    let state = world.home.state_dir();
    std::fs::create_dir(&state).expect("the state folder can be made");
    let mount = Mount::tmpfs(&state, 256 * 1024)?;
    world.login();
    Some((world, mount))
}

/// No temporary file of an interrupted write is left in the profiles folder.
#[track_caller]
fn no_temp_files(world: &World) {
    let left: Vec<String> = std::fs::read_dir(world.home.state_dir().join("profiles"))
        .expect("the profiles folder exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

/// The last JSON line of a `login --json` run.
fn last_event(run: &Run) -> serde_json::Value {
    let line = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"))
}

/// A login through the scripted browser without a daemon.
fn login_again(world: &World) -> Run {
    let browser = world.auto_browser();
    embedded(world, &["login", "--json", "--timeout", "30"])
        .env("LATCHKEY_BROWSER", &browser)
        .run()
}

#[test]
fn a_full_disk_during_a_refresh_without_a_daemon_is_local_storage_and_keeps_the_vault() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig::default()) else {
        return;
    };
    let state = world.home.state_dir();
    let before = world.vault_bytes().expect("logged in");
    let filler = fill(&state);

    let run = embedded(&world, &["refresh", "--json"]).run();
    let err = storage_error(&run, &state);
    assert!(
        err["hint"]
            .as_str()
            .is_some_and(|h| h.contains("free space")),
        "{err}"
    );
    let plain = embedded(&world, &["refresh"]).run();
    assert_eq!(plain.code, 8, "{plain:#?}");
    assert!(plain.stderr.starts_with("error: "), "{plain:#?}");
    assert_eq!(world.vault_bytes().expect("still there"), before);
    assert_vault_decrypts(&world);
    no_temp_files(&world);

    // The refresh failed before the provider was asked (its successor could not have
    // been saved), so the stored refresh token is still good.
    std::fs::remove_file(&filler).expect("room again");
    embedded(&world, &["refresh", "--json"]).run().ok();
    assert_eq!(world.idp.counters().reuse_detections, 0);
}

#[test]
fn a_full_disk_during_a_daemon_refresh_serves_the_still_valid_token_and_spends_nothing() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig {
        access_token_ttl: Duration::from_secs(4),
        ..FakeIdpConfig::default()
    }) else {
        return;
    };
    world
        .idp
        .set_config(|c| c.access_token_ttl = Duration::from_secs(3600));
    // Past half of the 4 s lifetime: the next token request wants a refresh.
    std::thread::sleep(Duration::from_millis(2100));
    world.start_daemon();
    let state = world.home.state_dir();
    let before = world.vault_bytes().expect("logged in");
    let issued = world.newest(TokenKind::AccessToken);
    let refreshes = world.idp.counters().token_requests.refresh_token;
    let filler = fill(&state);

    let run = world.latchkey(["token"]).run();
    assert_eq!(
        run.ok().stdout.trim_end(),
        issued,
        "the still-valid token is served"
    );
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "the refresh token was sent although its successor could not be saved"
    );
    assert_eq!(world.vault_bytes().expect("still there"), before);
    no_temp_files(&world);

    std::fs::remove_file(&filler).expect("room again");
    let t0 = Instant::now();
    while world.newest(TokenKind::AccessToken) == issued {
        world.latchkey(["token"]).run().ok();
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the session was never refreshed once there was room"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stored = assert_vault_decrypts(&world).session;
    assert_eq!(
        stored.refresh_token.expect("a refresh token").expose(),
        world.newest(TokenKind::RefreshToken),
        "the rotated refresh token is on disk"
    );
    assert_eq!(world.idp.counters().reuse_detections, 0);
    no_temp_files(&world);
    world.stop_daemons();
}

#[test]
fn a_full_disk_during_a_login_is_local_storage_and_keeps_the_previous_session() {
    let Some((world, _mount)) = on_tmpfs(FakeIdpConfig::default()) else {
        return;
    };
    let state = world.home.state_dir();
    let before = world.vault_bytes().expect("logged in");
    let filler = fill(&state);

    let run = login_again(&world);
    assert_eq!(run.code, 8, "{run:#?}");
    let doc = last_event(&run);
    assert_eq!(doc["error"]["category"], "local_storage", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&state.display().to_string())),
        "names the place: {doc}"
    );
    assert_eq!(world.vault_bytes().expect("still there"), before);
    assert_vault_decrypts(&world);
    no_temp_files(&world);

    // The previous session is a grant of its own: it still works once there is room.
    std::fs::remove_file(&filler).expect("room again");
    embedded(&world, &["refresh", "--json"]).run().ok();
}

#[test]
fn a_read_only_state_folder_during_a_refresh_is_local_storage_and_spends_nothing() {
    let world = World::default_provider();
    world.login();
    let state = world.home.state_dir();
    let before = world.vault_bytes().expect("logged in");
    let counters = world.idp.counters();
    let Some(mount) = Mount::read_only(&state) else {
        return;
    };
    let run = embedded(&world, &["refresh", "--json"]).run();
    storage_error(&run, &state);
    let token = embedded(&world, &["token", "--json"]).run();
    println!(
        "latchkey token (fresh token, read-only state folder) exited {}",
        token.code
    );
    assert_eq!(world.vault_bytes().expect("still there"), before);
    assert_vault_decrypts(&world);
    assert_eq!(
        world.idp.counters().refresh_successes,
        counters.refresh_successes,
        "the refresh token was spent although the new session could not be written"
    );
    drop(mount);
    embedded(&world, &["refresh", "--json"]).run().ok();
}

#[test]
fn a_read_only_state_folder_during_a_login_is_local_storage_and_keeps_the_previous_session() {
    let world = World::default_provider();
    world.login();
    let state = world.home.state_dir();
    let before = world.vault_bytes().expect("logged in");
    let Some(mount) = Mount::read_only(&state) else {
        return;
    };
    let run = login_again(&world);
    assert_eq!(run.code, 8, "{run:#?}");
    let doc = last_event(&run);
    assert_eq!(doc["error"]["category"], "local_storage", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&state.display().to_string())),
        "names the place: {doc}"
    );
    assert_eq!(world.vault_bytes().expect("still there"), before);
    assert_vault_decrypts(&world);
    drop(mount);
    embedded(&world, &["refresh", "--json"]).run().ok();
}
