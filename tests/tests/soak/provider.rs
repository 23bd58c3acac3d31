//! A provider slower than the engine's HTTP timeout (docs/behaviour.md,
//! "Reliability under faults": no hang beyond the timeouts): the refresh ends as a
//! retryable transport failure, and meanwhile a daemon keeps serving everyone else.
//! (Down, 5xx, 429, reset and malformed answers are proven in
//! tests/tests/cross/categories.rs; a slow but timely answer in refresh.rs and in the
//! soak.)

use std::time::{Duration, Instant};

use latchkey_tests::fake_idp::{Endpoint, Fault};
use latchkey_tests::harness::{Run, World};

use crate::{assert_vault_decrypts, embedded};

/// Longer than the engine's 30 s total timeout.
const TOO_SLOW: Duration = Duration::from_secs(45);

/// Waits for `child` at most `cap` (far past every timeout), killing it and failing
/// when it is still running: that would be a hang.
fn wait_bounded(world: &World, mut child: std::process::Child, cap: Duration) -> (Run, Duration) {
    let t0 = Instant::now();
    while child.try_wait().expect("the child can be polled").is_none() {
        if t0.elapsed() > cap {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the refresh still hung after {cap:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    let run = Run::from(child.wait_with_output().expect("reaped"));
    world.capture("refresh --json (slow provider)", &run, false);
    (run, took)
}

#[track_caller]
fn assert_timed_out(run: &Run) {
    let err = run.json_error(6, "transport");
    assert_eq!(err["retryable"], true, "{err}");
}

#[test]
fn a_provider_slower_than_the_timeout_is_a_transport_failure_without_a_daemon() {
    let world = World::default_provider();
    world.login();
    let before = world.vault_bytes().expect("logged in");
    world
        .idp
        .push_faults(Endpoint::Token, Fault::Slow(TOO_SLOW), 1);
    let child = embedded(&world, &["refresh", "--json"]).spawn();
    let (run, took) = wait_bounded(&world, child, Duration::from_secs(120));
    println!("a daemon-less refresh gave up on a silent provider after {took:?}");
    assert_timed_out(&run);
    assert_eq!(world.vault_bytes().expect("still there"), before);
    assert_vault_decrypts(&world);
}

/// One forced refresh sent to the daemon's socket, read to the end (up to `cap`):
/// (status, body). Sent from here rather than by `latchkey refresh`, whose client
/// stops waiting for a daemon after 500 ms and refreshes by itself.
fn refresh_on_socket(socket: &std::path::Path, cap: Duration) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("the daemon listens");
    s.set_read_timeout(Some(cap)).expect("a read timeout");
    s.write_all(
        b"POST /v1/profiles/work/refresh HTTP/1.1\r\nHost: latchkeyd\r\nLatchkey-Protocol: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .expect("the request is sent");
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("no answer within {cap:?}: {e}"));
    let status = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[test]
fn a_provider_slower_than_the_timeout_stalls_no_other_client_of_the_daemon() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let before = world.vault_bytes().expect("logged in");
    let token = world.latchkey(["token"]).run().ok().stdout.clone();
    world
        .idp
        .push_faults(Endpoint::Token, Fault::Slow(TOO_SLOW), 1);
    let socket = world.socket();
    let t0 = Instant::now();
    let slow = std::thread::spawn(move || refresh_on_socket(&socket, Duration::from_secs(120)));

    // While the daemon waits on the provider, others are served by the daemon itself
    // (no fallback notice on stderr), and its status answers.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..10 {
        let run = world.latchkey(["token"]).run();
        run.ok();
        assert_eq!(run.stdout, token);
        assert!(run.stderr.is_empty(), "the daemon did not answer: {run:#?}");
    }
    let status = world.latchkey(["daemon", "status", "--json"]).run();
    assert!(status.ok().json()["pid"].is_u64());

    let (code, body) = slow.join().expect("the slow refresh thread");
    println!(
        "a refresh in the daemon gave up on a silent provider after {:?}",
        t0.elapsed()
    );
    assert!(code >= 500, "{code} {body}");
    assert_eq!(body["error"]["category"], "transport", "{body}");
    assert_eq!(body["error"]["retryable"], true, "{body}");
    assert_eq!(world.vault_bytes().expect("still there"), before);
    assert_vault_decrypts(&world);
    world.stop_daemons();
}
