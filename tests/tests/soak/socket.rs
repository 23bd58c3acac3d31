//! Slow clients and a connection flood on the daemon's socket (docs/behaviour.md,
//! "Reliability under faults"): other clients are still served by the daemon, the slow
//! ones are cut, and memory stays bounded. (Garbage, a 200 KB header, a 50 MB body and
//! 200 idle connections are proven in tests/tests/cross/daemon.rs; another uid there
//! too.)

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use latchkey_tests::harness::{World, api};

/// The daemon's resident memory, from its status.
fn rss(world: &World) -> u64 {
    api(&world.socket(), "GET", "/v1/status", None)
        .expect("the daemon answers")
        .1["rss_bytes"]
        .as_u64()
        .expect("rss_bytes")
}

/// A token served by the daemon itself (no fallback notice), the same as `token`.
#[track_caller]
fn served_by_daemon(world: &World, token: &str) {
    let run = world.latchkey(["token"]).run();
    run.ok();
    assert_eq!(run.stdout, token);
    assert!(run.stderr.is_empty(), "the daemon did not answer: {run:#?}");
}

/// Memory after the abuse stays within a loose, fixed bound.
const RSS_BOUND: u64 = 64 * 1024 * 1024;

#[test]
fn slow_clients_are_cut_and_others_are_served_meanwhile() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let token = world.latchkey(["token"]).run().ok().stdout.clone();
    let rss_before = rss(&world);

    // 64 clients send a request head one byte every 100 ms and never finish it.
    let socket = world.socket();
    let slow: Vec<_> = (0..64)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&socket).expect("connects");
                let head = b"GET /v1/health HTTP/1.1\r\nHost: latchkeyd\r\nX-Slow: ";
                let t0 = Instant::now();
                let mut i = 0usize;
                loop {
                    let byte = head.get(i).copied().unwrap_or(b'a');
                    if s.write_all(&[byte]).is_err() {
                        return Some(t0.elapsed());
                    }
                    i += 1;
                    if t0.elapsed() > Duration::from_secs(90) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..20 {
        served_by_daemon(&world, &token);
    }
    let cut: Vec<Option<Duration>> = slow
        .into_iter()
        .map(|h| h.join().expect("the slow client thread"))
        .collect();
    assert!(
        cut.iter().all(Option::is_some),
        "the daemon kept a slow client for 90 s: {cut:?}"
    );
    let longest = cut.iter().flatten().max().copied().unwrap_or_default();
    let rss_after = rss(&world);
    println!(
        "64 slow clients cut after at most {longest:?}; rss {rss_before} -> {rss_after} bytes"
    );
    assert!(rss_after < RSS_BOUND, "rss {rss_after}");
    served_by_daemon(&world, &token);
    world.stop_daemons();
}

#[test]
fn a_flood_beyond_the_connection_limit_leaves_the_daemon_serving() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let token = world.latchkey(["token"]).run().ok().stdout.clone();
    let rss_before = rss(&world);
    let socket = world.socket();

    // 600 clients (the daemon admits 512 at once), each 20 requests back to back.
    let flood: Vec<_> = (0..600)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut ok = 0u32;
                for _ in 0..20 {
                    let Ok(mut s) = UnixStream::connect(&socket) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    let req = "GET /v1/health HTTP/1.1\r\nHost: l\r\nLatchkey-Protocol: 1\r\nConnection: close\r\n\r\n";
                    if s.write_all(req.as_bytes()).is_err() {
                        continue;
                    }
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer);
                    if answer.starts_with("HTTP/1.1 200") {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    for _ in 0..10 {
        let run = world.latchkey(["token"]).run();
        run.ok();
        assert_eq!(run.stdout, token, "a token, from the daemon or the file");
    }
    let answered: u32 = flood
        .into_iter()
        .map(|h| h.join().expect("flood thread"))
        .sum();
    let rss_after = rss(&world);
    println!(
        "flood: {answered} of 12000 requests answered 200; rss {rss_before} -> {rss_after} bytes"
    );
    assert!(answered > 0, "the daemon answered nothing during the flood");
    assert!(rss_after < RSS_BOUND, "rss {rss_after}");
    served_by_daemon(&world, &token);
    world.stop_daemons();
}
