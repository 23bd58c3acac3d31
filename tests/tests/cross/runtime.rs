//! The runtime folder through the real binaries (docs/behaviour.md, "Security"):
//! latchkeyd changes the mode of no folder but its own, `latchkey daemon stop`
//! signals only a proven latchkeyd of the user's, and the autostarted daemon's log
//! is rotated.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_tests::harness::{Home, World, bin, raw_request};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn folder(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn answers(socket: &Path) -> bool {
    raw_request(
        socket,
        "GET /v1/health HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
    )
    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// A child process that is killed and reaped when the test ends, pass or fail.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // It may have exited already; either way it is gone and reaped after this.
        let _ = self.0.kill();
        // Reaping a killed child cannot fail in a way the test could act on.
        let _ = self.0.wait();
    }
}

/// Runs latchkeyd with `--socket socket`, expecting it to give up: its exit code
/// and stderr. A latchkeyd that serves instead is killed and the test fails, rather
/// than hanging.
fn refused_start(home: &Home, socket: &Path) -> (i32, String) {
    let err = home.path().join("refused.err");
    let mut cmd = home
        .command(bin("latchkeyd"), ["--socket".as_ref(), socket.as_os_str()])
        .into_command();
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = Reaped(cmd.spawn().unwrap());
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return (
                status.code().unwrap_or(-1),
                std::fs::read_to_string(&err).unwrap(),
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "latchkeyd serves on {} instead of refusing its folder",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn latchkeyd_refuses_a_socket_folder_that_is_not_private_and_leaves_its_mode_alone() {
    let home = Home::new();
    let shared = home.path().join("shared");
    folder(&shared, 0o755);
    let socket = shared.join("latchkeyd.sock");
    let (code, stderr) = refused_start(&home, &socket);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&shared.display().to_string()) && stderr.contains("0755"),
        "the error names the folder and its mode: {stderr}"
    );
    assert_eq!(
        mode(&shared),
        0o755,
        "latchkeyd changed the mode of a folder not its own"
    );
    assert!(!socket.exists(), "it bound a socket there all the same");

    // A missing folder named by the user is not created either.
    let missing = home.path().join("missing");
    let (code, stderr) = refused_start(&home, &missing.join("latchkeyd.sock"));
    assert_ne!(code, 0, "{stderr}");
    assert!(!missing.exists(), "latchkeyd created a folder not its own");

    // A private folder of the user's choosing works, and keeps its mode.
    let private = home.path().join("private");
    folder(&private, 0o700);
    let socket = private.join("latchkeyd.sock");
    let mut cmd = home
        .command(bin("latchkeyd"), ["--socket".as_ref(), socket.as_os_str()])
        .into_command();
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let _daemon = Reaped(cmd.spawn().unwrap());
    let start = Instant::now();
    while !answers(&socket) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "latchkeyd did not answer in {}",
            private.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mode(&private), 0o700);
}

#[test]
fn latchkeyd_still_makes_its_own_runtime_folder_private() {
    // docs/soak.md, finding 4: its own folder (here LATCHKEY_HOME/run) is repaired.
    let home = Home::new();
    let run_dir = home.path().join("run");
    folder(&run_dir, 0o755);
    let mut cmd = home
        .command(bin("latchkeyd"), Vec::<&str>::new())
        .into_command();
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let _daemon = Reaped(cmd.spawn().unwrap());
    let socket = run_dir.join("latchkeyd.sock");
    let start = Instant::now();
    while !answers(&socket) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "latchkeyd did not answer"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mode(&run_dir), 0o700);
}

#[test]
fn daemon_stop_does_not_signal_a_process_that_a_planted_lock_names() {
    let world = World::default_provider();
    let run_dir = world.home.path().join("run");
    folder(&run_dir, 0o700);
    // A process of the user's that is not latchkeyd...
    let mut sleep = Reaped(
        Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // ...named by a lock file that is held, but by another process (this one), so
    // the client's `try_lock` says WouldBlock just as for a live daemon.
    let lock = run_dir.join("latchkeyd.lock");
    std::fs::write(&lock, sleep.0.id().to_string()).unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let holder = std::fs::File::open(&lock).unwrap();
    holder.lock().unwrap();

    for args in [["daemon", "stop"], ["daemon", "restart"]] {
        let run = world.latchkey(args).run();
        assert_eq!(run.code, 8, "local_storage: {run:#?}");
        assert!(
            run.stderr.contains("not signalling")
                && run.stderr.contains(&sleep.0.id().to_string())
                && run.stderr.contains("hint:"),
            "it says why and what to do: {run:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            sleep.0.try_wait().unwrap().is_none(),
            "{args:?} signalled the process the planted lock named"
        );
    }
    let run = world.latchkey(["daemon", "stop", "--json"]).run();
    let error = run.json_error(8, "local_storage");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("held by pid {}", std::process::id()))),
        "the reason says who holds the lock: {error}"
    );
    drop(holder);
    drop(sleep);

    // The lock held by the very process it names, which is not latchkeyd: a
    // process that takes the lock and then becomes `sleep` (exec keeps the pid and
    // the lock).
    std::fs::remove_file(&lock).unwrap();
    let script = format!(
        "import fcntl, os\n\
         f = os.open({lock:?}, os.O_RDWR | os.O_CREAT, 0o600)\n\
         fcntl.flock(f, fcntl.LOCK_EX)\n\
         os.write(f, str(os.getpid()).encode())\n\
         os.set_inheritable(f, True)\n\
         os.execvp('sleep', ['sleep', '60'])\n"
    );
    let mut sleep = Reaped(
        Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::fs::read_to_string(format!("/proc/{}/comm", sleep.0.id())).unwrap_or_default()
        != "sleep\n"
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "python3 did not become sleep"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let run = world.latchkey(["daemon", "stop", "--json"]).run();
    let error = run.json_error(8, "local_storage");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"sleep\", not latchkeyd")),
        "the reason names what the process is: {error}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        sleep.0.try_wait().unwrap().is_none(),
        "daemon stop signalled the process holding the lock"
    );
}

#[test]
fn an_oversized_daemon_log_is_rotated_at_autostart_keeping_one_generation() {
    let world = World::default_provider();
    world.login();
    let run_dir = world.home.path().join("run");
    folder(&run_dir, 0o700);
    let log = run_dir.join("latchkeyd.log");
    let old = run_dir.join("latchkeyd.log.1");
    std::fs::write(&old, "the generation before\n").unwrap();
    let big = "an audit line of an earlier daemon\n".repeat(40_000);
    assert!(big.len() > 1024 * 1024);
    std::fs::write(&log, &big).unwrap();

    let run = world
        .latchkey(["token"])
        .env_remove("LATCHKEY_NO_AUTOSTART")
        .run();
    run.ok();
    let stop = world.latchkey(["daemon", "stop"]).run();
    stop.ok();

    assert_eq!(
        std::fs::read_to_string(&old).unwrap(),
        big,
        "the previous log is kept whole as latchkeyd.log.1"
    );
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(
        fresh.len() < 64 * 1024 && fresh.contains("latchkeyd ready"),
        "the new daemon writes a fresh log: {} bytes",
        fresh.len()
    );
    world.capture_text("autostarted daemon log", &fresh);

    // A log under the cap is appended to, not rotated.
    let run = world
        .latchkey(["token"])
        .env_remove("LATCHKEY_NO_AUTOSTART")
        .run();
    run.ok();
    world.latchkey(["daemon", "stop"]).run().ok();
    let again = std::fs::read_to_string(&log).unwrap();
    assert!(
        again.starts_with(&fresh) && again.len() > fresh.len(),
        "appended"
    );
    assert_eq!(std::fs::read_to_string(&old).unwrap(), big);
    world.capture_text("autostarted daemon log", &again);
}

/// What rotation at autostart cannot bound: a daemon that runs for weeks. The client
/// starts it with `--log-max-bytes`, and latchkeyd keeps a log file under that
/// size, dropping older lines and saying so.
#[test]
fn a_long_running_daemon_keeps_its_log_under_the_cap() {
    let world = World::default_provider();
    world.login();
    let run_dir = world.home.path().join("run");
    folder(&run_dir, 0o700);
    let log = run_dir.join("latchkeyd.log");
    world
        .latchkey(["token"])
        .env_remove("LATCHKEY_NO_AUTOSTART")
        .run()
        .ok();
    let pid = world.latchkey(["daemon", "status", "--json"]).run().json()["pid"]
        .as_u64()
        .expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the daemon runs");
    assert!(
        String::from_utf8_lossy(&cmdline).contains("--log-max-bytes\u{0}1048576"),
        "autostarted with the cap"
    );
    world.latchkey(["daemon", "stop"]).run().ok();

    // The same binary with a small cap, one audit line per request.
    let own_log = world.home.path().join("capped.log");
    let file = std::fs::File::create(&own_log).expect("a log file");
    let mut cmd = world
        .home
        .command(
            latchkey_tests::harness::bin("latchkeyd"),
            ["--log-max-bytes", "4096"],
        )
        .into_command();
    cmd.stdout(std::process::Stdio::null()).stderr(file);
    let mut daemon = cmd.spawn().expect("latchkeyd starts");
    world.wait_for_daemon();
    for _ in 0..100 {
        latchkey_tests::harness::api(&world.socket(), "GET", "/v1/health", None)
            .expect("an answer");
        let len = std::fs::metadata(&own_log).expect("the log").len();
        assert!(len <= 4096, "the log grew to {len} bytes");
    }
    let text = std::fs::read_to_string(&own_log).expect("the log");
    assert!(text.contains("older lines were dropped"), "{text}");
    World::signal(daemon.id(), "TERM");
    daemon.wait().expect("it stops");
    world.capture_text("capped daemon log", &text);
    if let Ok(t) = std::fs::read_to_string(&log) {
        world.capture_text("autostart log", &t);
    }
}
