//! State and runtime folders with the wrong owner or mode (docs/behaviour.md,
//! "Reliability under faults"): refused with a clear error naming the folder, and
//! `latchkey doctor` explains it. Root can chown and chmod freely, so these need no
//! mount.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use latchkey_tests::harness::{World, bin};

use crate::{doctor_check, embedded};

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown (the tests run as root)");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

/// The state folder made unsafe by `spoil` is refused by token, refresh and login,
/// naming the folder and `reason`; doctor fails its check with a hint; once `mend`
/// repairs it the session works again.
fn assert_state_folder_refused(spoil: impl FnOnce(&Path), reason: &str, mend: impl FnOnce(&Path)) {
    let world = World::default_provider();
    world.login();
    let state = world.home.state_dir();
    let before = world.vault_bytes().expect("logged in");
    let counters = world.idp.counters();
    spoil(&state);

    for args in [["token", "--json"], ["refresh", "--json"]] {
        let run = embedded(&world, &args).run();
        let err = run.json_error(8, "local_storage");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&state.display().to_string()) && message.contains(reason),
            "{args:?}: {err}"
        );
        assert!(
            err["hint"].as_str().is_some_and(|h| h.contains("doctor")),
            "{args:?}: {err}"
        );
    }
    let plain = embedded(&world, &["token"]).run();
    assert_eq!(plain.code, 8, "{plain:#?}");
    assert!(plain.stdout.is_empty(), "no token printed: {plain:#?}");
    assert!(
        plain.stderr.contains(&state.display().to_string()),
        "{plain:#?}"
    );

    let check = doctor_check(&world, "state_folder");
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&state.display().to_string())),
        "{check}"
    );
    assert!(
        check["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{check}"
    );
    assert_eq!(
        world.idp.counters(),
        counters,
        "nothing is sent from an unsafe state folder"
    );

    mend(&state);
    assert_eq!(world.vault_bytes().expect("still there"), before);
    embedded(&world, &["refresh", "--json"]).run().ok();
}

#[test]
fn a_state_folder_writable_by_others_is_refused_and_doctor_explains() {
    assert_state_folder_refused(
        |s| chmod(s, 0o777),
        "lets other users write",
        |s| chmod(s, 0o700),
    );
}

#[test]
fn a_state_folder_of_another_user_is_refused_and_doctor_explains() {
    assert_state_folder_refused(|s| chown(s, NOBODY), "owned by uid 65534", |s| chown(s, 0));
}

#[test]
fn a_runtime_folder_of_another_user_stops_the_daemon_and_doctor_explains() {
    let world = World::default_provider();
    world.login();
    let run_dir = world.socket().parent().expect("a folder").to_path_buf();
    std::fs::create_dir(&run_dir).expect("the runtime folder can be made");
    chmod(&run_dir, 0o700);
    chown(&run_dir, NOBODY);

    let out = world
        .home
        .command(bin("latchkeyd"), Vec::<&str>::new())
        .run();
    assert_ne!(
        out.code, 0,
        "latchkeyd ran in another user's folder: {out:#?}"
    );
    assert!(
        out.stderr.contains(&run_dir.display().to_string())
            && out.stderr.contains("owned by uid 65534"),
        "the refusal names the folder and why: {out:#?}"
    );
    world.capture_text("latchkeyd stderr", &out.stderr);
    assert!(!world.socket().exists(), "no socket was bound there");

    let check = doctor_check(&world, "runtime_folder");
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&run_dir.display().to_string())),
        "{check}"
    );
    // Tokens keep coming from the encrypted file meanwhile.
    world.latchkey(["token"]).run().ok();
    chown(&run_dir, 0);
}

/// A runtime folder of ours that others may write: doctor fails it before the daemon
/// runs; the daemon, which owns that folder, makes it private (0700) before binding
/// rather than refusing, so a socket is never served from a folder others can write.
#[test]
fn a_runtime_folder_writable_by_others_is_flagged_by_doctor_and_made_private_by_the_daemon() {
    let world = World::default_provider();
    world.login();
    let run_dir = world.socket().parent().expect("a folder").to_path_buf();
    std::fs::create_dir(&run_dir).expect("the runtime folder can be made");
    chmod(&run_dir, 0o777);

    let check = doctor_check(&world, "runtime_folder");
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&run_dir.display().to_string())
                && d.contains("lets other users write")),
        "{check}"
    );

    world.start_daemon();
    assert_eq!(
        mode(&run_dir),
        0o700,
        "the daemon serves from a private folder"
    );
    assert_eq!(mode(&world.socket()) & 0o077, 0, "the socket is private");
    assert_eq!(doctor_check(&world, "runtime_folder")["status"], "ok");
    world.stop_daemons();
}

/// A socket in a runtime folder another user owns is not ours to trust: the client
/// must not take a token (or start a login) from whoever listens there. Here a
/// listener of "another user" answers every request as a daemon would.
#[test]
fn a_socket_in_another_users_runtime_folder_is_not_trusted() {
    use std::io::{Read, Write};
    let world = World::default_provider();
    world.login();
    let real = embedded(&world, &["token"]).run().ok().stdout.clone();
    let run_dir = world.socket().parent().expect("a folder").to_path_buf();
    std::fs::create_dir(&run_dir).expect("the runtime folder can be made");
    let listener =
        std::os::unix::net::UnixListener::bind(world.socket()).expect("the impostor binds");
    chown(&run_dir, NOBODY);
    chown(&world.socket(), NOBODY);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = r#"{"access_token":"impostor-token-0123456789","token_type":"Bearer","expires_at":null,"generation":1}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nLatchkey-Protocol: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let run = world.latchkey(["token"]).run();
    chown(&run_dir, 0);
    assert!(
        !run.stdout.contains("impostor-token"),
        "the client took a token from a socket in another user's folder: {run:#?}"
    );
    assert_eq!(run.stdout, real, "{run:#?}");
}
