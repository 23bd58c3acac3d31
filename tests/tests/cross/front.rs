//! The `latchkey` command is two binaries: a small front that answers `latchkey
//! token` and `latchkey refresh` through a warm daemon, and `latchkey-full`, which it hands everything
//! else to (ARCHITECTURE.md, "The front"). These tests show the front really
//! answers alone, hands over the rest with the same arguments, and never makes a
//! caller wait for a hung daemon twice.

use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use latchkey_tests::harness::{Run, World, bin};

/// The front copied into a folder of its own, without `latchkey-full` beside it.
fn lone_front(world: &World) -> std::path::PathBuf {
    let dir = world.home.path().join("lone");
    std::fs::create_dir_all(&dir).unwrap();
    let front = dir.join("latchkey");
    std::fs::copy(bin("latchkey"), &front).unwrap();
    front
}

#[test]
fn the_front_answers_token_and_refresh_through_the_daemon_without_the_full_program() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let front = lone_front(&world);
    let run = |args: &[&str]| {
        let run = world.home.command(&front, args).run();
        world.capture(&args.join(" "), &run, args.contains(&"token"));
        run
    };
    let token = run(&["token"]);
    token.ok();
    assert!(
        world.idp.is_active(token.stdout.trim()),
        "the front printed a token the provider issued: {token:#?}"
    );
    // The forms it knows, printed as the full program prints them.
    let full = world
        .latchkey(["token", "--format", "header", "--profile", "work"])
        .run();
    full.ok();
    assert_eq!(
        run(&["token", "--format", "header", "--profile", "work"]).stdout,
        full.stdout
    );
    let json = run(&["--json", "token", "--min-ttl=60"]);
    assert_eq!(json.json()["profile"], "work", "{json:#?}");
    // A typed error from the daemon is printed by the front too, with its exit code.
    let missing = run(&["token", "--profile", "nosuch"]);
    missing.code(2);
    assert!(missing.stderr.starts_with("error: "), "{missing:#?}");
    assert_eq!(
        missing.stderr,
        world
            .latchkey(["token", "--profile", "nosuch"])
            .env("LATCHKEY_LOG", "off")
            .run()
            .stderr,
        "the front and the full program print the same error"
    );
    // `latchkey refresh` too: one refresh at the provider, the full program's words.
    let before = world.idp.counters().refresh_successes;
    let refreshed = run(&["refresh"]);
    refreshed.ok();
    assert!(
        refreshed
            .stdout
            .starts_with("Refreshed profile work: the new access token expires in "),
        "{refreshed:#?}"
    );
    assert_eq!(world.idp.counters().refresh_successes, before + 1);
    let json = run(&["refresh", "--json"]).json();
    assert_eq!(json["profile"], "work", "{json}");
    assert!(json["generation"].as_u64().is_some(), "{json}");
    // Everything else needs the full program: a usage error that says so.
    let status = run(&["status"]);
    status.code(2);
    assert!(
        status.stderr.contains("cannot find latchkey-full"),
        "{status:#?}"
    );
    assert!(status.stderr.contains("hint: "), "{status:#?}");
    // --help is the full program's as well.
    run(&["token", "--help"]).code(2);
}

#[test]
fn the_version_line_is_the_same_from_both_binaries() {
    let world = World::default_provider();
    let front: Run = world.home.command(bin("latchkey"), ["--version"]).run();
    let full: Run = world
        .home
        .command(bin("latchkey-full"), ["--version"])
        .run();
    front.ok();
    full.ok();
    assert_eq!(front.stdout, full.stdout);
    assert!(front.stdout.starts_with("latchkey "), "{front:#?}");
}

#[test]
fn helper_names_and_every_other_command_reach_the_full_program() {
    let world = World::default_provider();
    world.login();
    // Through the front: clap's own usage error names `latchkey`, not latchkey-full.
    let bad = world.latchkey(["frobnicate"]).run();
    bad.code(2);
    assert!(bad.stderr.contains("latchkey"), "{bad:#?}");
    assert!(!bad.stderr.contains("latchkey-full"), "{bad:#?}");
    // No daemon: the front hands `token` over and the full program falls back.
    world.latchkey(["token"]).run().ok();
    // A helper name dispatches through the front (argv[0] is handed over as is).
    let link = world.home.path().join("docker-credential-latchkey");
    std::os::unix::fs::symlink(bin("latchkey"), &link).unwrap();
    let version = world.home.command(&link, ["version"]).run();
    version.ok();
    assert!(!version.stdout.trim().is_empty(), "{version:#?}");
}

/// A listener that accepts connections, counts them and never answers: a daemon
/// that hangs after accepting.
fn hung_daemon(world: &World) -> Arc<AtomicUsize> {
    let socket = world.socket();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    accepted
}

#[test]
fn a_hung_daemon_is_waited_for_once_not_by_both_binaries() {
    let world = World::default_provider();
    world.login();
    let accepted = hung_daemon(&world);
    let run = world.latchkey(["token"]).run();
    run.ok();
    assert!(
        run.stderr.contains("did not answer within 500 ms"),
        "{run:#?}"
    );
    // The front's request and its question whether the daemon is alive.
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the full program asked the hung daemon again after the front's handover"
    );
    // The handover names the front's pid: a child that inherits it asks as usual.
    let child = world
        .latchkey(["token"])
        .env("LATCHKEY_FRONT_HANDOVER", "1 hung")
        .run();
    child.ok();
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

/// A daemon that takes longer than the client's deadline because it is working
/// (a refresh at a slow provider) is not hung: it proves alive on a second
/// connection and is waited for, with no fallback, no key derivation in the
/// client and no warning; through the front, the full program and the library.
#[test]
fn a_daemon_busy_with_a_slow_refresh_is_waited_for() {
    use latchkey_tests::fake_idp::{Endpoint, Fault};
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    for (label, extra) in [
        ("front", None),
        ("full program", Some(("LATCHKEY_LOG", "warn"))),
    ] {
        world
            .idp
            .push_faults(Endpoint::Token, Fault::Slow(Duration::from_millis(1500)), 1);
        let before = world.idp.counters().refresh_successes;
        let mut cmd = world.latchkey(["refresh", "--json"]);
        if let Some((k, v)) = extra {
            cmd = cmd.env(k, v);
        }
        let run = cmd.run();
        run.ok();
        assert!(run.stderr.is_empty(), "{label}: {run:#?}");
        assert_eq!(
            world.idp.counters().refresh_successes,
            before + 1,
            "{label}: one refresh, the daemon's"
        );
    }
    let status = world.latchkey(["daemon", "status", "--json"]).run();
    let status = status.ok().json();
    assert_eq!(status["counters"]["refreshes_ok"], 2, "{status}");
    world.stop_daemons();
}

/// ELF `e_type` of a binary: 3 is `ET_DYN`, a position-independent executable
/// (ASLR applies to it), 2 is `ET_EXEC`.
fn elf_type(path: &std::path::Path) -> u16 {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is an ELF file", path.display());
    u16::from_le_bytes([bytes[16], bytes[17]])
}

#[test]
fn both_binaries_stay_position_independent() {
    for name in ["latchkey", "latchkey-full"] {
        assert_eq!(elf_type(&bin(name)), 3, "{name} is a PIE (ET_DYN)");
    }
    // The check itself can tell: readelf agrees when it is installed.
    if let Ok(out) = std::process::Command::new("readelf")
        .arg("-h")
        .arg(bin("latchkey"))
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("DYN"), "{text}");
    }
}

/// A listener that speaks this protocol but knows no endpoint at all: the way an
/// older latchkeyd answers a request that came after it.
fn outdated_daemon(world: &World) {
    use std::io::{Read, Write};
    let socket = world.socket();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = r#"{"error":{"category":"usage","message":"no such endpoint","hint":"see docs/openapi.yaml","retryable":false}}"#;
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nLatchkey-Protocol: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// A daemon of this protocol that predates a request ("no such endpoint") is not
/// the final word: the client answers from the file and says to restart it.
#[test]
fn an_older_daemon_without_the_endpoint_is_answered_around_with_a_restart_hint() {
    let world = World::default_provider();
    world.login();
    outdated_daemon(&world);
    let run = world.latchkey(["token"]).run();
    assert_eq!(
        run.ok().stdout.trim_end(),
        world.newest(latchkey_tests::fake_idp::TokenKind::AccessToken)
    );
    assert!(
        run.stderr.contains("older than this client")
            && run.stderr.contains("latchkey daemon restart"),
        "{run:#?}"
    );
    let status = world.latchkey(["daemon", "status", "--json"]).run();
    let error = status.json_error(2, "usage");
    assert!(
        error["hint"]
            .as_str()
            .is_some_and(|h| h.contains("latchkey daemon restart")),
        "{error}"
    );
    // A daemon from before the API proxy: its 404 is its own, not an upstream's,
    // and nothing was forwarded, so the request goes through the embedded engine.
    latchkey_tests::upstream::set_work_proxy(
        &world.home.config_file(),
        &format!("upstream = \"{}\"", world.idp.issuer()),
    );
    let api = world.latchkey(["api", "/userinfo"]).run();
    let body: serde_json::Value =
        serde_json::from_str(&api.ok().stdout).expect("the upstream's JSON");
    assert!(body["sub"].is_string(), "{body}");
    assert!(api.stderr.contains("latchkey daemon restart"), "{api:#?}");
}
