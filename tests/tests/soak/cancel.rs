//! A refresh in the daemon whose caller goes away (docs/behaviour.md,
//! "The refresh transaction" and "Reliability under faults"). The soak found that
//! killing a `latchkey refresh` that talks to a live daemon could lose the session: the
//! daemon ran the refresh inside the request's future, which the HTTP server drops when
//! the caller's connection closes, so a refresh dropped after the provider rotated the
//! token but before the new vault was written left the vault holding a spent refresh
//! token, without any process having crashed. The daemon now runs the refresh in a task
//! of its own (docs/soak.md, finding 1).
//!
//! This reproduces the situation deterministically: the token endpoint sits behind a proxy that
//! forwards the request (the provider rotates), holds the answer until the caller has
//! hung up, then delivers it. The daemon must still write the rotated session.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use latchkey_tests::fake_idp::{Endpoint, Fault, TokenKind};
use latchkey_tests::harness::{Mount, World};

/// Reads one HTTP message (head, then a Content-Length body) from `s`.
fn read_message(s: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).expect("the message head") == 0 {
            return buf;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("the message body");
    buf.extend(body);
    buf
}

/// A one-shot proxy to `upstream`: forwards one request, tells `answered` once the
/// upstream's answer is in hand, and delivers it only when `release` says so.
fn holding_proxy(upstream: std::net::SocketAddr) -> (String, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}/token", listener.local_addr().expect("bound"));
    let (answered_tx, answered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().expect("the daemon connects");
        let request = read_message(&mut client);
        let mut up = TcpStream::connect(upstream).expect("the provider listens");
        up.write_all(&request).expect("forwarded");
        let answer = read_message(&mut up);
        let _ = answered_tx.send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        // The daemon may have gone: a failed write is part of the experiment.
        let _ = client.write_all(&answer);
        std::thread::sleep(Duration::from_millis(500));
    });
    (url, answered, release)
}

const REFRESH: &[u8] = b"POST /v1/profiles/work/refresh HTTP/1.1\r\nHost: latchkeyd\r\nLatchkey-Protocol: 1\r\nContent-Length: 0\r\n\r\n";

/// A logged-in world whose daemon (its pid) is refreshing through
/// [`holding_proxy`]: the provider has answered (rotated, or whatever `before`
/// set up for it), and the answer waits for `release`. `caller` asked for the
/// refresh and waits too.
struct Holding {
    world: World,
    pid: u32,
    caller: UnixStream,
    release: mpsc::Sender<()>,
}

fn daemon_refresh_held(before: impl FnOnce(&World)) -> Holding {
    let world = World::default_provider();
    world.login();
    let (url, answered, release) = holding_proxy(world.idp.addr());
    world.point_token_endpoint_at(&url);
    before(&world);
    let pid = world.start_daemon();
    let mut caller = UnixStream::connect(world.socket()).expect("the daemon listens");
    caller.write_all(REFRESH).expect("the request is sent");
    answered
        .recv_timeout(Duration::from_secs(20))
        .expect("the provider answered the daemon's refresh");
    Holding {
        world,
        pid,
        caller,
        release,
    }
}

#[test]
fn a_refresh_whose_caller_hangs_up_is_still_written() {
    let Holding {
        world,
        caller,
        release,
        ..
    } = daemon_refresh_held(|_| {});
    // The provider has rotated the refresh token. The caller hangs up, as a killed
    // `latchkey refresh` would; then the answer reaches the daemon.
    drop(caller);
    std::thread::sleep(Duration::from_millis(300));
    let _ = release.send(());

    let newest = world.newest(TokenKind::RefreshToken);
    let t0 = Instant::now();
    loop {
        let stored = world.stored_session();
        if stored.refresh_token.as_ref().map(|t| t.expose()) == Some(newest.as_str()) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the rotated session never reached the vault: the session is lost"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    world.stop_daemons();
}

/// Whether process `pid` (a child of this test) has exited: gone, or a zombie.
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

/// docs/behaviour.md, "The refresh transaction": a graceful stop waits for a
/// refresh the provider has answered, longer than it waits for anything else,
/// until the rotated session is on disk.
#[test]
fn a_graceful_stop_waits_for_a_refresh_the_provider_answered() {
    let Holding {
        world,
        pid,
        caller,
        release,
    } = daemon_refresh_held(|_| {});
    drop(caller);
    World::signal(pid, "TERM");
    // Past the daemon's wait for work that sent nothing (5 s).
    std::thread::sleep(Duration::from_secs(7));
    assert!(!exited(pid), "the daemon left before the refresh was saved");
    let _ = release.send(());
    assert!(
        crate::eventually(Duration::from_secs(10), || exited(pid)),
        "the daemon stops once the refresh is saved"
    );
    let stored = world.stored_session();
    assert_eq!(
        stored.refresh_token.as_ref().map(|t| t.expose()),
        Some(world.newest(TokenKind::RefreshToken).as_str()),
        "the rotated session reached the vault"
    );
    world.stop_daemons();
    assert!(
        world
            .daemon_logs()
            .contains("waiting for work sent to the provider")
    );
}

/// A refresh still waiting for the profile's lock when a graceful stop begins
/// never sends anything, whether the lock comes free while the daemon still drains
/// the connection that asked (`free_after`) or not at all (the daemon then does not
/// wait for it to stop).
fn stop_with_a_refresh_waiting_for_the_lock(free_after: Option<Duration>) {
    let world = World::default_provider();
    world.login();
    let pid = world.start_daemon();
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(world.home.state_dir().join("profiles/work.lock"))
        .expect("the profile's lock file");
    lock.lock().expect("this test holds the profile's lock");
    let refreshes = world.idp.counters().token_requests.refresh_token;

    let mut caller = UnixStream::connect(world.socket()).expect("the daemon listens");
    caller.write_all(REFRESH).expect("the request is sent");
    std::thread::sleep(Duration::from_millis(500));
    World::signal(pid, "TERM");
    let lock = match free_after {
        Some(after) => {
            std::thread::sleep(after);
            drop(lock);
            None
        }
        None => Some(lock),
    };
    assert!(
        crate::eventually(Duration::from_secs(20), || exited(pid)),
        "the daemon stops without waiting for the lock"
    );
    drop((caller, lock));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        world.idp.counters().token_requests.refresh_token,
        refreshes,
        "a refresh was sent after the stop began"
    );
    world.stop_daemons();
    crate::embedded(&world, &["refresh", "--json"]).run().ok();
    assert_eq!(world.idp.counters().reuse_detections, 0);
}

#[test]
fn a_graceful_stop_sends_nothing_it_had_not_sent_yet() {
    stop_with_a_refresh_waiting_for_the_lock(None);
}

#[test]
fn a_graceful_stop_sends_nothing_even_when_the_lock_frees_during_the_drain() {
    stop_with_a_refresh_waiting_for_the_lock(Some(Duration::from_secs(1)));
}

/// The provider rejects the refresh token while the disk refuses the write that
/// records it (expired, no refresh token): the daemon holds the expired session
/// unsaved, so neither it nor another process ever sends the rejected token again
/// or serves the session's access token, and it writes the record once it can.
#[test]
fn a_rejected_refresh_token_the_disk_will_not_forget_is_never_sent_again() {
    let Holding {
        world,
        mut caller,
        release,
        ..
    } = daemon_refresh_held(|world| {
        world
            .idp
            .push_faults(Endpoint::Token, Fault::InvalidGrant, 1)
    });
    let Some(read_only) = Mount::read_only(&world.home.state_dir().join("profiles")) else {
        let _ = release.send(());
        world.stop_daemons();
        return;
    };
    let _ = release.send(());
    let answer = String::from_utf8_lossy(&read_message(&mut caller)).into_owned();
    assert!(answer.contains("session_expired"), "{answer}");

    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(4, "session_expired");
    world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(4, "session_expired");
    crate::embedded(&world, &["refresh", "--json"])
        .run()
        .json_error(8, "local_storage");
    let status = world.latchkey(["daemon", "status", "--json"]).run();
    assert_eq!(status.ok().json()["profiles"][0]["unsaved"], true);

    drop(read_only);
    assert!(
        crate::eventually(Duration::from_secs(20), || {
            let s = world.stored_session();
            s.expired && s.refresh_token.is_none()
        }),
        "the daemon writes the expired session once it can"
    );
    world.stop_daemons();
    crate::embedded(&world, &["token", "--json"])
        .run()
        .json_error(4, "session_expired");
}
