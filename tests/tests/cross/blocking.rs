//! Blocking work never stalls the daemon's socket (docs/behaviour.md, "Security":
//! key derivation and fsync stay off the threads that answer it).
//!
//! Regression: latchkeyd ran key derivation on its only runtime thread, so a vault
//! whose header asks for an expensive scrypt made every other client wait past its
//! fallback deadline (and start a fallback storm).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use latchkey_tests::harness::World;

/// Sends `request` on a new connection from a thread and reports `label` on `done`
/// once the whole answer has arrived.
fn ask(world: &World, label: &'static str, path: &str, done: mpsc::Sender<&'static str>) {
    let mut s = UnixStream::connect(world.socket()).expect("the daemon listens");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: l\r\nLatchkey-Protocol: 1\r\nConnection: close\r\n\r\n"
    );
    std::thread::spawn(move || {
        s.write_all(request.as_bytes()).expect("sent");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("an answer");
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{label}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
        let _ = done.send(label);
    });
}

#[test]
fn an_expensive_key_derivation_does_not_stall_other_clients() {
    let world = World::default_provider();
    // Profile `quick`: a vault with the cheapest scrypt (log_n 10).
    world.add_profile("quick");
    let browser = world.auto_browser();
    world
        .latchkey(["login", "--profile", "quick", "--timeout", "30"])
        .env("LATCHKEY_BROWSER", &browser)
        .run()
        .ok();
    // Profile `work`: 256 MiB and a second or more per derivation (log_n 18).
    let config = world.home.config_file();
    let text = std::fs::read_to_string(&config).expect("a config");
    assert!(text.contains("scrypt_log_n = 10"), "{text}");
    std::fs::write(
        &config,
        text.replace("scrypt_log_n = 10", "scrypt_log_n = 18"),
    )
    .expect("the config can be written");
    world.login();
    world.start_daemon();

    // The daemon has read no vault yet: each request derives its profile's key.
    // With the derivation on the thread that answers the socket, `quick` could not
    // even start its own (cheap) one before `work`'s ended, so it would answer
    // after `work`.
    let (done, answers) = mpsc::channel();
    ask(&world, "work", "/v1/profiles/work/token", done.clone());
    std::thread::sleep(Duration::from_millis(150));
    ask(&world, "quick", "/v1/profiles/quick/token", done);
    let first = answers
        .recv_timeout(Duration::from_secs(60))
        .expect("an answer");
    let second = answers
        .recv_timeout(Duration::from_secs(60))
        .expect("both answers");
    assert_eq!(
        (first, second),
        ("quick", "work"),
        "a request waited for another profile's key derivation"
    );
    let status = world.latchkey(["daemon", "status", "--json"]).run();
    assert_eq!(status.ok().json()["counters"]["kdf_derivations"], 2);
    world.stop_daemons();
}
