//! latchkeyd through the real binaries (docs/behaviour.md, "Socket API",
//! "Performance targets" and "Reliability under faults"): the warm hot path, one
//! refresh for many processes, cache invalidation by other processes, events, shared
//! socket logins, the fallback table, single instance, autostart, the peer check and
//! bad input.

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use latchkey_tests::fake_idp::{DeviceApproval, Endpoint, FakeIdpConfig, Fault, TokenKind};
use latchkey_tests::harness::{Immutable, Run, World, api, raw_request};

fn status(world: &World) -> serde_json::Value {
    let run = world.latchkey(["daemon", "status", "--json"]).run();
    run.ok().json()
}

#[test]
fn hundred_sequential_tokens_cost_at_most_one_key_derivation() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..100 {
        let run = world.latchkey(["token"]).run();
        tokens.insert(run.ok().stdout.clone());
        assert!(run.stderr.is_empty(), "{run:#?}");
    }
    assert_eq!(tokens.len(), 1);
    let st = status(&world);
    assert!(
        st["counters"]["token_requests"].as_u64().unwrap() >= 100,
        "{st}"
    );
    assert!(
        st["counters"]["kdf_derivations"].as_u64().unwrap() <= 1,
        "{st}"
    );
    for key in [
        "pid",
        "version",
        "protocol",
        "uptime_seconds",
        "socket",
        "activation",
        "profiles",
        "counters",
        "last_refresh",
        "rss_bytes",
    ] {
        assert!(st.get(key).is_some(), "daemon status lacks {key}: {st}");
    }
    assert_eq!(st["activation"], "self");
}

#[test]
fn sixty_four_concurrent_processes_cause_one_refresh_through_the_daemon() {
    let world =
        crate::refresh::world_due_for_refresh(FakeIdpConfig::default(), Duration::from_secs(2));
    world.start_daemon();
    let before = world.idp.counters().token_requests.refresh_token;
    let children: Vec<_> = (0..64).map(|_| world.latchkey(["token"]).spawn()).collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect();
    for r in &runs {
        world.capture("token (64 concurrent)", r, true);
        r.ok();
    }
    assert_eq!(
        world.idp.counters().token_requests.refresh_token - before,
        1
    );
    assert!(
        runs.iter().all(|r| r.stdout == runs[0].stdout),
        "one token printed by all"
    );
    let newest = world.newest(TokenKind::AccessToken);
    assert_eq!(runs[0].stdout.trim_end(), newest);
    assert_eq!(world.idp.counters().grants_revoked, 0);
}

/// A client that gives up on the daemon mid-refresh (killed, here) must not cancel
/// the refresh: the provider has already been asked to rotate, so a refresh
/// dropped before its write would leave a spent refresh token in the vault, and the
/// next refresh would trip the provider's reuse detection and end the session.
#[test]
fn a_client_giving_up_mid_refresh_does_not_cancel_it() {
    let world =
        crate::refresh::world_due_for_refresh(FakeIdpConfig::default(), Duration::from_secs(2));
    world.start_daemon();
    let before = world.idp.counters();
    world
        .idp
        .push_faults(Endpoint::Token, Fault::Slow(Duration::from_millis(1500)), 1);
    let mut client = world.latchkey(["token"]).spawn();
    std::thread::sleep(Duration::from_millis(700));
    client.kill().expect("the client is killed mid-refresh");
    let _ = client.wait();
    // The next caller joins or follows the daemon's refresh and gets its token.
    let run = world.latchkey(["token"]).run();
    assert_eq!(
        run.ok().stdout.trim_end(),
        world.newest(TokenKind::AccessToken)
    );
    assert!(run.stderr.is_empty(), "{run:?}");
    let after = world.idp.counters();
    assert_eq!(
        after.token_requests.refresh_token - before.token_requests.refresh_token,
        1
    );
    assert_eq!(after.grants_revoked, 0, "reuse detection tripped");
    // The session goes on working, through the daemon and without it.
    world.latchkey(["refresh"]).run().ok();
    world
        .latchkey(["refresh"])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .ok();
    assert_eq!(world.idp.counters().grants_revoked, 0);
}

/// SIGTERM while a refresh is in flight and its caller is gone: the daemon finishes
/// and writes it before it exits, so a graceful stop never behaves like a kill inside
/// the window.
#[test]
fn a_graceful_stop_waits_for_the_refresh_in_flight() {
    let world = World::default_provider();
    world.login();
    let pid = world.start_daemon();
    let before = world.try_load_vault().unwrap().unwrap().generation;
    world
        .idp
        .push_faults(Endpoint::Token, Fault::Slow(Duration::from_millis(1500)), 1);
    let refresh = world.latchkey(["refresh"]).spawn();
    // Wait until the daemon's request is at the provider, then stop the daemon.
    let t0 = Instant::now();
    while world.idp.counters().token_requests.refresh_token == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no refresh reached the provider"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The caller is gone too, so nothing but the daemon's own books keeps it alive.
    let mut refresh = refresh;
    refresh.kill().unwrap();
    refresh.wait().unwrap();
    World::signal(pid, "TERM");
    let t1 = Instant::now();
    while !daemons_of(&world).is_empty() {
        assert!(
            t1.elapsed() < Duration::from_secs(40),
            "the daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = world.try_load_vault().unwrap().unwrap();
    assert_eq!(
        after.generation,
        before + 1,
        "the rotated session was written"
    );
    assert_eq!(
        after
            .session
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        Some(world.newest(TokenKind::RefreshToken))
    );
    world
        .latchkey(["refresh"])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .ok();
    assert_eq!(world.idp.counters().grants_revoked, 0);
}

/// Reads `session` events from the daemon's SSE stream on a thread.
fn subscribe(world: &World) -> std::sync::mpsc::Receiver<String> {
    let mut s = UnixStream::connect(world.socket()).unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: l\r\nLatchkey-Protocol: 1\r\n\r\n")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(s);
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_change(world: &World, rx: &std::sync::mpsc::Receiver<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        world.capture_text("event stream", &line);
        if let Some(data) = line.strip_prefix("data:") {
            let ev: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
            assert_eq!(ev["profile"], "work");
            return ev["change"].as_str().unwrap().to_string();
        }
    }
    panic!("no event within 10 s");
}

/// docs/behaviour.md, "Cache invalidation by file identity": another process logs
/// out and writes a new session of the same size, with the old modification time
/// put back, into a file system that reuses inode numbers at once (ext4 here): the
/// daemon still sees the change and never serves the logged-out session.
#[test]
fn a_replaced_vault_that_looks_like_the_old_one_is_still_read_again() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let first = world.latchkey(["token"]).run();
    let first = first.ok().stdout.trim_end().to_string();

    let vault_path = world.home.state_dir().join("profiles/work.vault");
    let old = std::fs::metadata(&vault_path).expect("the vault");
    let mut planted = world.stored_session();
    let other = "Z".repeat(first.len());
    planted.access_token = latchkey_proto::secret::Secret::new(other.clone());
    std::fs::remove_file(&vault_path).expect("logged out by another process");
    world.store_session(&planted);
    let file = std::fs::File::options()
        .write(true)
        .open(&vault_path)
        .expect("the new vault");
    file.set_modified(old.modified().expect("an mtime"))
        .expect("the old mtime put back");
    drop(file);
    let new = std::fs::metadata(&vault_path).expect("the new vault");
    assert_eq!(
        (new.len(), new.modified().ok()),
        (old.len(), old.modified().ok()),
        "the new vault looks like the old one"
    );

    let served = world.latchkey(["token"]).run();
    assert_eq!(
        served.ok().stdout.trim_end(),
        other,
        "the daemon served the session that was logged out"
    );
    world.stop_daemons();
}

/// The state folder is reset while the daemon runs (its machine key with it),
/// and a process without the daemon logs in, making a new key: the daemon reads
/// the new vault with the new key instead of failing until it is restarted.
#[test]
fn a_state_folder_reset_under_the_daemon_is_read_with_its_new_key() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    world.latchkey(["token"]).run().ok();
    std::fs::remove_dir_all(world.home.state_dir()).expect("the state folder is reset");
    let browser = world.auto_browser();
    world
        .latchkey(["login", "--json", "--timeout", "30"])
        .env("LATCHKEY_BROWSER", &browser)
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .ok();
    let token = world.latchkey(["token"]).run();
    assert_eq!(
        token.ok().stdout.trim_end(),
        world.newest(TokenKind::AccessToken),
        "the daemon serves the new session"
    );
    world.stop_daemons();
}

#[test]
fn logins_and_logouts_by_other_processes_are_seen_and_announced() {
    let world = World::default_provider();
    world.start_daemon();
    let events = subscribe(&world);
    // Give the subscription a moment to be registered before anything happens.
    while status(&world)["counters"]["event_subscribers"].as_u64() != Some(1) {
        std::thread::sleep(Duration::from_millis(20));
    }
    world.latchkey(["token"]).run().code(3);
    // A login by the CLI's embedded engine: the daemon sees it on its next request.
    world.login();
    let st = world.latchkey(["status", "--json"]).run().json();
    assert_eq!(st["logged_in"], true, "{st}");
    assert_eq!(st["daemon"]["running"], true, "{st}");
    assert_eq!(next_change(&world, &events), "login");
    world.latchkey(["refresh"]).run().ok();
    assert_eq!(next_change(&world, &events), "refresh");
    world
        .latchkey(["logout"])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .ok();
    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
    assert_eq!(next_change(&world, &events), "logout");
}

#[test]
fn the_rust_client_follows_session_events() {
    use latchkey::api::SessionChange;
    use latchkey::{Client, Mode, Paths, ProfileName};

    let world = World::default_provider();
    world.login();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let paths = Paths::in_home(world.home.path());
    runtime.block_on(async {
        // No daemon, and this client may not start one: an error naming the socket.
        let client = Client::new(paths.clone(), Mode::DaemonFirst { autostart: false });
        let err = client
            .events()
            .await
            .expect_err("no daemon to subscribe to");
        assert_eq!(err.category(), latchkey::Category::Transport, "{err}");
        assert!(err.to_string().contains("latchkeyd.sock"), "{err}");
        let embedded = Client::new(paths.clone(), Mode::EmbeddedOnly);
        let err = embedded.events().await.expect_err("never a daemon");
        assert_eq!(err.category(), latchkey::Category::Usage, "{err}");

        world.start_daemon();
        let mut events = client.events().await.expect("subscribed");
        // A refresh by another process (the CLI through the daemon), then a
        // refresh of this client's own: both reach the subscriber, in order.
        world.latchkey(["refresh"]).run().ok();
        let first = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .expect("a session event");
        assert_eq!(first.profile, "work");
        assert_eq!(first.change, SessionChange::Refresh);
        let work = ProfileName::new("work").expect("a name");
        let refreshed = client.refresh(&work).await.expect("refreshed");
        let second = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .expect("a session event");
        assert_eq!(second.change, SessionChange::Refresh);
        assert_eq!(second.generation, Some(refreshed.generation));
        assert!(second.generation > first.generation);
        // The daemon stops: the stream ends.
        world.stop_daemons();
        let end = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the end within 10 s");
        assert!(end.is_none(), "{end:?}");
    });
}

#[test]
fn socket_logins_are_shared_and_token_requests_never_wait() {
    let world = World::new(FakeIdpConfig {
        device_approval: DeviceApproval::AfterPolls(2),
        ..FakeIdpConfig::default()
    });
    world.start_daemon();
    let sock = world.socket();
    let body = r#"{"flow":"device"}"#;
    let (s1, a) = api(&sock, "POST", "/v1/profiles/work/login", Some(body)).unwrap();
    let (s2, b) = api(&sock, "POST", "/v1/profiles/work/login", Some(body)).unwrap();
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    assert_eq!(
        a["id"], b["id"],
        "the second request joins the pending login"
    );
    assert_eq!(a["user_code"], b["user_code"]);
    assert_eq!(a["state"], "pending");
    assert_eq!(world.idp.counters().device_authorizations, 1);
    let t0 = Instant::now();
    let (st, err) = api(&sock, "GET", "/v1/profiles/work/token", None).unwrap();
    assert_eq!(st, 401, "{err}");
    assert_eq!(err["error"]["category"], "not_logged_in");
    let hint = err["error"]["hint"].as_str().unwrap();
    assert!(
        hint.contains(a["user_code"].as_str().unwrap()),
        "the hint shows the pending login: {hint}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "a token request waited on the login"
    );
    let id = a["id"].as_str().unwrap();
    let (_, done) = api(&sock, "GET", &format!("/v1/logins/{id}?wait=30"), None).unwrap();
    assert_eq!(done["state"], "logged_in", "{done}");
    assert_eq!(done["user"]["email"], "dev@example.test");
    world.latchkey(["token"]).run().ok();
}

/// A logout ends a pending socket login: a device code approved afterwards does
/// not log the profile back in.
#[test]
fn a_logout_ends_a_pending_socket_login() {
    let world = World::new(FakeIdpConfig {
        device_approval: DeviceApproval::Manual,
        device_interval: Some(1),
        ..FakeIdpConfig::default()
    });
    world.start_daemon();
    let sock = world.socket();
    let (status, pending) = api(
        &sock,
        "POST",
        "/v1/profiles/work/login",
        Some(r#"{"flow":"device"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["state"], "pending");

    let out = world.latchkey(["logout", "--json"]).run();
    assert_eq!(out.ok().json()["outcome"], "not_logged_in");
    let id = pending["id"].as_str().unwrap();
    let (_, ended) = api(&sock, "GET", &format!("/v1/logins/{id}?wait=10"), None).unwrap();
    assert_eq!(ended["state"], "failed", "{ended}");
    assert_eq!(ended["error"]["category"], "not_logged_in", "{ended}");
    assert!(
        ended["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("logged out while it was pending")),
        "{ended}"
    );
    // The person approves the code after all: nothing comes of it.
    assert!(
        world
            .idp
            .approve_device(pending["user_code"].as_str().unwrap())
    );
    let polls = world.idp.counters().token_requests.device_code;
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        world.idp.counters().token_requests.device_code,
        polls,
        "the ended login still polls"
    );
    assert!(world.vault_bytes().is_none());
    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
    // A new login works as ever.
    world.login();
}

#[test]
fn kill_9_falls_back_at_once_and_a_new_daemon_replaces_the_stale_socket() {
    let world = World::default_provider();
    world.login();
    let first = world.start_daemon();
    world.latchkey(["token"]).run().ok();
    World::signal(first, "KILL");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        world.socket().exists(),
        "kill -9 leaves the socket file behind"
    );
    let run = world.latchkey(["token"]).run();
    run.ok();
    assert!(
        run.stderr.is_empty(),
        "a dead daemon is not worth a warning: {run:#?}"
    );
    let second = world.start_daemon();
    assert_ne!(first, second);
    assert_eq!(status(&world)["pid"], second);
    world.latchkey(["token"]).run().ok();
}

#[test]
fn a_stopped_daemon_is_bypassed_within_a_second() {
    let world = World::default_provider();
    world.login();
    let pid = world.start_daemon();
    World::signal(pid, "STOP");
    let t0 = Instant::now();
    let run = world.latchkey(["token"]).run();
    let took = t0.elapsed();
    World::signal(pid, "CONT");
    run.ok();
    assert!(
        run.stderr.contains("did not answer within 500 ms"),
        "{run:#?}"
    );
    // A hung daemon is bypassed within its 500 ms deadline plus process start; the
    // bound is loose because shared machines are noisy.
    println!("answered past a stopped daemon in {} ms", took.as_millis());
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// `daemon stop` stops a daemon that does not answer (here: SIGSTOP) through the
/// pid its instance lock names, and returns once that process is gone.
#[test]
fn daemon_stop_ends_a_daemon_that_does_not_answer() {
    let world = World::default_provider();
    let pid = world.start_daemon();
    World::signal(pid, "STOP");
    let run = world.latchkey(["daemon", "stop", "--json"]).run();
    assert_eq!(run.json()["stopped"], true, "{run:#?}");
    assert!(daemons_of(&world).is_empty(), "still running: {run:#?}");
    let again = world.latchkey(["daemon", "stop", "--json"]).run();
    assert_eq!(again.json()["stopped"], false, "{again:#?}");
}

#[test]
fn a_second_daemon_exits_0_saying_already_running() {
    let world = World::default_provider();
    let pid = world.start_daemon();
    let run: Run = world
        .home
        .command(
            latchkey_tests::harness::bin("latchkeyd"),
            Vec::<&str>::new(),
        )
        .run();
    run.ok();
    assert!(
        run.stderr.contains(&format!("already running (pid {pid})")),
        "{run:#?}"
    );
    assert_eq!(status(&world)["pid"], pid);
}

/// latchkeyd processes whose environment names this world's home.
fn daemons_of(world: &World) -> Vec<u32> {
    let home = world.home.path().to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        if !exe.to_string_lossy().ends_with("/latchkeyd") {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if String::from_utf8_lossy(&env).contains(&home) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn thirty_two_processes_autostarting_at_once_leave_one_daemon() {
    let world = World::default_provider();
    world.login();
    let children: Vec<_> = (0..32)
        .map(|_| {
            world
                .latchkey(["token"])
                .env_remove("LATCHKEY_NO_AUTOSTART")
                .spawn()
        })
        .collect();
    for c in children {
        let r = Run::from(c.wait_with_output().unwrap());
        world.capture("token (autostart)", &r, true);
        r.ok();
    }
    std::thread::sleep(Duration::from_millis(300));
    let found = daemons_of(&world);
    let stop = world.latchkey(["daemon", "stop"]).run();
    assert_eq!(found.len(), 1, "daemons: {found:?}");
    stop.ok();
    assert!(
        daemons_of(&world).is_empty(),
        "daemon stop left it running: {stop:?}"
    );
    // Not running is a state: exit 3 (LSB) and an answer, not an error document.
    let st = world.latchkey(["daemon", "status", "--json"]).run();
    st.code(3);
    let doc = st.json();
    assert_eq!(doc["running"], false, "{doc}");
    assert_eq!(
        doc["socket"].as_str(),
        world.socket().to_str(),
        "the socket it looked at"
    );
    assert!(doc.get("error").is_none(), "{doc}");
    let plain = world.latchkey(["daemon", "status"]).run();
    plain.code(3);
    assert!(
        plain.stdout.contains("latchkeyd is not running"),
        "{plain:#?}"
    );
}

#[test]
fn another_uid_gets_no_answer() {
    let world = World::default_provider();
    world.start_daemon();
    if latchkey_daemon::vault::fs::current_uid() != Some(0) {
        println!(
            "not root: cannot connect as another uid here; the peer check is exercised only as root"
        );
        return;
    }
    // Open the way through the file modes so only the peer check stands between.
    use std::os::unix::fs::PermissionsExt;
    let run_dir = world.socket().parent().unwrap().to_path_buf();
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(world.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(world.socket())
        .arg("http://l/v1/health")
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code, "000", "another uid got an HTTP answer: {code}");
    assert!(!out.status.success(), "curl should fail to get an answer");
    // The owner is still served, and the daemon says why the other was not.
    assert_eq!(
        api(&world.socket(), "GET", "/v1/health", None).unwrap().0,
        200
    );
    let log = std::fs::read_to_string(world.home.path().join("latchkeyd-0.log")).unwrap();
    assert!(
        log.contains("refused a connection from another user") && log.contains("peer_uid=65534"),
        "{log}"
    );
}

#[test]
fn garbage_floods_and_huge_requests_do_not_stop_the_daemon() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let sock = world.socket();
    let served = |world: &World| world.latchkey(["token"]).run().ok().stdout.clone();
    let token = served(&world);

    // 200 idle connections held open.
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    assert_eq!(served(&world), token);

    // Garbage bytes get a 400 (or a close), nothing more.
    let garbage = raw_request(&sock, "\u{1}\u{2}GARBAGE \u{7f}\r\n\r\n");
    assert!(
        garbage
            .as_deref()
            .is_none_or(|g| g.starts_with("HTTP/1.1 400")),
        "{garbage:?}"
    );

    // A 200 KB header is refused.
    let big_header = format!(
        "GET /v1/health HTTP/1.1\r\nHost: l\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let answer = raw_request(&sock, &big_header);
    assert!(
        answer
            .as_deref()
            .is_none_or(|a| !a.starts_with("HTTP/1.1 200")),
        "{answer:?}"
    );

    // A 50 MB body is refused without being read whole.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/profiles/work/logout HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        50 * 1024 * 1024
    );
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..50 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 413"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    assert!(
        world.vault_bytes().is_some(),
        "the oversized logout must not have run"
    );

    assert_eq!(served(&world), token);
    drop(idle);
    assert_eq!(api(&sock, "GET", "/v1/health", None).unwrap().0, 200);
}

/// A state folder that refuses writes (docs/behaviour.md, "Reserve before
/// spending"): the daemon's refresh fails before the refresh token is sent, a token
/// request is answered with the still-valid access token, and the refresh happens
/// once the folder takes writes again. (Sessions that the disk refuses after the
/// provider rotated them are the soak tier's `unsaved` tests.)
#[test]
fn a_folder_refusing_writes_fails_the_daemon_refresh_before_the_refresh_token_is_spent() {
    let world =
        crate::refresh::world_due_for_refresh(FakeIdpConfig::default(), Duration::from_secs(6));
    world.start_daemon();
    let before = world.vault_bytes().unwrap();
    let issued = world.newest(TokenKind::AccessToken);
    let refreshes = world.idp.counters().token_requests.refresh_token;
    let profiles = world.home.state_dir().join("profiles");
    let Some(guard) = Immutable::set(&profiles) else {
        println!("chattr +i is not available here; this test needs it to make the write fail");
        return;
    };
    // Past half its lifetime, not yet expired: served as it is.
    let run = world.latchkey(["token"]).run();
    assert_eq!(run.ok().stdout.trim_end(), issued, "the still-valid token");
    world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(8, "local_storage");
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "the refresh token was sent although its successor could not be saved"
    );
    assert_eq!(world.vault_bytes().unwrap(), before);
    assert_eq!(status(&world)["profiles"][0]["unsaved"], false);

    drop(guard);
    world.latchkey(["refresh", "--json"]).run().ok();
    let stored = world.stored_session();
    assert_eq!(
        stored.refresh_token.unwrap().expose(),
        world.newest(TokenKind::RefreshToken),
        "the rotated refresh token is on disk"
    );
    assert_eq!(world.idp.counters().reuse_detections, 0);
}

/// Without a daemon too: the refresh fails before the refresh token is sent, so the
/// session survives the folder's refusal whole.
#[test]
fn a_folder_refusing_writes_fails_the_embedded_refresh_before_the_refresh_token_is_spent() {
    let world =
        crate::refresh::world_due_for_refresh(FakeIdpConfig::default(), Duration::from_secs(2));
    let before = world.vault_bytes().unwrap();
    let refreshes = world.idp.counters().token_requests.refresh_token;
    let guard = Immutable::set(&world.home.state_dir().join("profiles"));
    if guard.is_none() {
        println!("chattr +i is not available here");
        return;
    }
    let err = world
        .latchkey(["refresh", "--json"])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .json_error(8, "local_storage");
    assert!(
        err["hint"].as_str().unwrap().contains("free space"),
        "{err}"
    );
    assert_eq!(world.idp.counters().token_requests.refresh_token, refreshes);
    assert_eq!(world.vault_bytes().unwrap(), before);
    drop(guard);
    world
        .latchkey(["refresh", "--json"])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .ok();
    assert_eq!(world.idp.counters().reuse_detections, 0);
}

/// systemd `Type=notify`: READY=1 arrives only once the socket answers, and a
/// SIGTERM right after it is a graceful stop (exit 0).
#[test]
fn readiness_is_announced_after_the_socket_is_bound() {
    let world = World::default_provider();
    let notify = world.home.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut cmd = world
        .home
        .command(
            latchkey_tests::harness::bin("latchkeyd"),
            Vec::<&str>::new(),
        )
        .into_command();
    cmd.env("NOTIFY_SOCKET", &notify)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut buf = [0u8; 128];
    let n = sock.recv(&mut buf).expect("READY=1 within 10 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", child.id())), "{msg}");
    assert_eq!(
        api(&world.socket(), "GET", "/v1/health", None).unwrap().0,
        200,
        "ready means serving"
    );
    World::signal(child.id(), "TERM");
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM is a graceful stop"
    );
    assert!(
        !world.socket().exists(),
        "a stopped daemon removes its socket"
    );
}

/// The daemon refreshes a session ahead of expiry by itself (less than
/// max(60 s, 20%) left and more than half the lifetime gone), so token requests
/// rarely wait; and a short-lived token never makes it refresh in a loop.
#[test]
fn the_daemon_refreshes_ahead_of_expiry_without_being_asked() {
    let world = World::new(FakeIdpConfig {
        access_token_ttl: Duration::from_secs(3),
        ..FakeIdpConfig::default()
    });
    world.login();
    world.start_daemon();
    let first = world.latchkey(["token"]).run().ok().stdout.clone();
    let asked = status(&world)["counters"]["token_requests"]
        .as_u64()
        .unwrap();
    let t0 = Instant::now();
    while world.idp.counters().refresh_successes == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no proactive refresh within 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The provider answered; the daemon records the refresh once it is written.
    let mut st = status(&world);
    while st["last_refresh"].is_null() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
        st = status(&world);
    }
    assert_eq!(
        st["counters"]["token_requests"].as_u64().unwrap(),
        asked,
        "nobody asked for a token"
    );
    assert_eq!(st["last_refresh"]["outcome"], "ok", "{st}");
    // The refresh was not earlier than half the 3 s lifetime.
    let log = world.idp.request_log();
    let refresh_at = log
        .iter()
        .find(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .unwrap()
        .at_ms;
    let login_at = log
        .iter()
        .find(|r| r.grant_type.as_deref() == Some("authorization_code"))
        .unwrap()
        .at_ms;
    assert!(
        refresh_at - login_at >= 1500,
        "refreshed after {} ms",
        refresh_at - login_at
    );
    // At most one refresh per lifetime: no loop.
    std::thread::sleep(Duration::from_secs(3));
    let n = world.idp.counters().refresh_successes;
    assert!(n <= 3, "{n} refreshes in about 6 s of 3 s tokens");
    assert_ne!(
        world.latchkey(["token"]).run().ok().stdout,
        first,
        "a newer token is served"
    );
}

/// Something on the daemon's socket that answers outside the protocol: serves
/// `answer` to every connection until the test ends.
fn impostor(world: &World, answer: &'static [u8]) {
    use std::os::unix::fs::DirBuilderExt;
    let socket = world.socket();
    let run = socket.parent().unwrap();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(run)
        .unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = [0u8; 4096];
            // A client that left early is no concern here; closing ends the answer.
            if conn.read(&mut head).is_ok() {
                conn.write_all(answer).ok();
            }
        }
    });
}

/// A malformed answer used to count as "no daemon": the client started a second
/// daemon beside it and answered silently from the file. Now it is an `internal`
/// error on both client paths (the blocking `token` and the pooled `status`), with
/// the restart hint, and nothing is started.
#[test]
fn a_malformed_answer_is_an_error_not_an_autostart_or_a_silent_fallback() {
    for (what, answer) in [
        ("not HTTP", &b"SSH-2.0-OpenSSH_9.6\r\n"[..]),
        (
            "no Content-Length",
            &b"HTTP/1.1 200 OK\r\nLatchkey-Protocol: 1\r\nConnection: close\r\n\r\n{}"[..],
        ),
        (
            "a 2xx that is not the answer",
            &b"HTTP/1.1 200 OK\r\nLatchkey-Protocol: 1\r\nContent-Length: 6\r\n\r\n<html>"[..],
        ),
    ] {
        let world = World::default_provider();
        world.login();
        impostor(&world, answer);
        for args in [["token", "--json"], ["status", "--json"]] {
            let run = world
                .latchkey(args)
                .env_remove("LATCHKEY_NO_AUTOSTART")
                .run();
            let error = run.json_error(1, "internal");
            let message = error["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("answered outside the protocol"),
                "{what}, {args:?}: {run:#?}"
            );
            assert!(
                error["hint"]
                    .as_str()
                    .is_some_and(|h| h.contains("latchkey daemon restart")),
                "{what}, {args:?}: {run:#?}"
            );
        }
        assert!(
            daemons_of(&world).is_empty(),
            "{what}: a daemon was started beside the impostor"
        );
        let run = world
            .latchkey(["token"])
            .env("LATCHKEY_NO_DAEMON", "1")
            .run();
        run.ok();
    }
}

/// Installed without `latchkeyd` (only the CLI copied somewhere, no daemon on
/// PATH): starting one is a setup problem the user can fix, not a bug.
#[test]
fn without_latchkeyd_daemon_start_is_a_usage_error_doctor_warns_and_tokens_still_come() {
    let world = World::default_provider();
    world.login();
    let dir = world.home.path().join("cli-only");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["latchkey", "latchkey-full"] {
        std::fs::copy(latchkey_tests::harness::bin(name), dir.join(name)).unwrap();
    }
    let path = "/usr/bin:/bin";
    assert!(
        !std::path::Path::new("/usr/bin/latchkeyd").exists()
            && !std::path::Path::new("/bin/latchkeyd").exists(),
        "this test needs a machine without a system-wide latchkeyd"
    );
    let run = |args: &[&str]| {
        let run = world
            .home
            .command(dir.join("latchkey"), args)
            .env("PATH", path)
            .env_remove("LATCHKEY_NO_AUTOSTART")
            .run();
        world.capture(&args.join(" "), &run, args.contains(&"token"));
        run
    };
    let start = run(&["daemon", "start"]);
    start.code(2);
    assert!(
        start.stderr.contains("error: latchkeyd is not installed"),
        "{start:#?}"
    );
    assert!(
        start.stderr.contains("hint: install it with latchkey"),
        "{start:#?}"
    );
    let json = run(&["daemon", "start", "--json"]);
    json.json_error(2, "usage");
    let doctor = run(&["doctor"]);
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.starts_with("warn  daemon") && l.contains("latchkeyd is not installed")),
        "{doctor:#?}"
    );
    // Autostart finds nothing to start: the token comes from the encrypted file.
    run(&["token"]).ok();
}
