//! Latchkey's benchmarks (SPEC §8): figures printed side by side from one run, as
//! ratios against baselines measured in the same run. Nothing here asserts a time.
//!
//! `cargo build --release --workspace --bins && target/release/bench [--short]`
//! (or `scripts/bench`). It starts an in-process fake provider, a temporary home, a
//! real `latchkeyd`, and measures:
//! - `latchkey token` through the warm daemon against `floor get` (one HTTP request
//!   over a Unix socket to a trivial server) and against the daemon-less path;
//! - key derivations for 100 sequential token calls with and without the daemon;
//! - `latchkey refresh` through the daemon against a provider that rotates;
//! - in-process `latchkey::Client` throughput and p99 with 8 tasks;
//! - daemon start-up time and idle resident memory.

use std::time::{Duration, Instant};

use latchkey::{Client, Mode};
use latchkey_proto::paths::{EnvInputs, Paths};
use latchkey_tests::fake_idp::FakeIdpConfig;
use latchkey_tests::harness::{World, bin, raw_request};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a command to completion and returns its wall time; panics on failure, since a
/// failed run would make the figure meaningless.
fn timed(mut cmd: std::process::Command) -> Duration {
    let t0 = Instant::now();
    let out = cmd.output().expect("the command runs");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let short = std::env::args().any(|a| a == "--short");
    let n = if short { 30 } else { 300 };
    let kdf_runs = if short { 10 } else { 100 };
    println!(
        "Latchkey benchmarks ({} run; release binaries from {})",
        if short { "short" } else { "full" },
        bin("latchkey").display()
    );

    let world = World::new(FakeIdpConfig::default());
    // Measure with the default key-derivation cost, not the tests' fast one.
    let config = std::fs::read_to_string(world.home.config_file()).expect("config");
    std::fs::write(
        world.home.config_file(),
        config.replace("scrypt_log_n = 10", "scrypt_log_n = 15"),
    )
    .expect("config");
    world.login();

    // Daemon start-up: spawn to first answered health request.
    let mut startups = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        world.start_daemon();
        startups.push(t0.elapsed());
        world.stop_daemons();
    }
    let daemon_pid = world.start_daemon();
    for _ in 0..20 {
        world.latchkey(["token"]).run().ok();
    }

    // The floor: a trivial server and a minimal client.
    let floor_sock = world.home.path().join("floor.sock");
    let mut floor_server = std::process::Command::new(bin("floor"))
        .arg("serve")
        .arg(&floor_sock)
        .spawn()
        .expect("floor server");
    while raw_request(&floor_sock, "GET / HTTP/1.1\r\nHost: l\r\n\r\n").is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let floor_cmd = || {
        let mut c = std::process::Command::new(bin("floor"));
        c.arg("get").arg(&floor_sock);
        c
    };
    let lk_cmd = |extra: &[(&str, &str)]| {
        let mut c = world
            .home
            .command(bin("latchkey"), ["token"])
            .into_command();
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    };
    let mut floor_t = Vec::new();
    let mut token_t = Vec::new();
    for _ in 0..n {
        floor_t.push(timed(floor_cmd()));
        token_t.push(timed(lk_cmd(&[])));
    }
    let mut embedded_t = Vec::new();
    for _ in 0..(n / 10).max(5) {
        embedded_t.push(timed(lk_cmd(&[("LATCHKEY_NO_DAEMON", "1")])));
    }
    // The floor server has served its purpose; it may already be gone.
    drop(floor_server.kill());
    drop(floor_server.wait());
    let floor_med = median(&mut floor_t);
    let token_med = median(&mut token_t);
    let embedded_med = median(&mut embedded_t);

    // Key derivations over sequential token calls.
    let kdf = |w: &World| -> u64 {
        let st = w.latchkey(["daemon", "status", "--json"]).run().json();
        st["counters"]["kdf_derivations"].as_u64().unwrap_or(0)
    };
    let before = kdf(&world);
    for _ in 0..kdf_runs {
        world.latchkey(["token"]).run().ok();
    }
    let with_daemon = kdf(&world) - before;
    let mut without_daemon = 0;
    for _ in 0..kdf_runs {
        let run = world
            .latchkey(["token"])
            .env("LATCHKEY_NO_DAEMON", "1")
            .env("LATCHKEY_LOG", "latchkey::kdf=debug")
            .run();
        run.ok();
        without_daemon += run.stderr.matches("derived a vault key").count();
    }

    // Forced refresh through the daemon, with a rotating provider.
    let mut refresh_t = Vec::new();
    for _ in 0..(n / 6).max(10) {
        let mut c = world
            .home
            .command(bin("latchkey"), ["refresh"])
            .into_command();
        c.stdout(std::process::Stdio::null());
        refresh_t.push(timed(c));
    }
    let refresh_med = median(&mut refresh_t);
    let mut refresh_floor = Vec::new();
    for _ in 0..(n / 6).max(10) {
        refresh_floor.push(timed(floor_cmd_noop()));
    }

    // In-process Client: 8 tasks on a 2-worker runtime.
    let env = EnvInputs {
        latchkey_home: Some(world.home.path().to_path_buf()),
        temp_dir: std::env::temp_dir(),
        ..EnvInputs::default()
    };
    let paths = Paths::resolve(&env).expect("paths");
    let client = std::sync::Arc::new(Client::new(paths, Mode::DaemonFirst { autostart: false }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let window = Duration::from_secs(if short { 1 } else { 3 });
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let stop = Instant::now() + window;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < stop {
                    let t0 = Instant::now();
                    client.token("work", 60).await.expect("token");
                    lat.push(t0.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let calls = latencies.len();
    let per_sec = calls as f64 / window.as_secs_f64();
    let p99 = percentile(&mut latencies, 0.99);
    let p50 = percentile(&mut latencies, 0.50);

    let rss = std::fs::read_to_string(format!("/proc/{daemon_pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0);
    let startup = median(&mut startups);

    println!();
    println!("| measure | figure | against | target (SPEC §8) |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| `latchkey token`, warm daemon, median | {:.2} ms | floor {:.2} ms: **{:.2}x** | at most 1.3x the floor |",
        ms(token_med),
        ms(floor_med),
        ms(token_med) / ms(floor_med)
    );
    println!(
        "| `latchkey token`, LATCHKEY_NO_DAEMON=1, median | {:.2} ms | {:.1}x the floor | (the cost the daemon removes) |",
        ms(embedded_med),
        ms(embedded_med) / ms(floor_med)
    );
    println!(
        "| key derivations over {kdf_runs} sequential token calls | {with_daemon} with the daemon | {without_daemon} without | at most 1 with the daemon |"
    );
    println!(
        "| `latchkey refresh` through the daemon (rotating provider, fsync'd write), median | {:.2} ms | process floor {:.2} ms | at most 10 ms |",
        ms(refresh_med),
        ms(median(&mut refresh_floor))
    );
    println!(
        "| in-process `Client::token`, 8 tasks, 2 workers | {per_sec:.0} calls/s | p50 {:.3} ms, p99 {:.3} ms | at least 20,000/s, p99 at most 2 ms |",
        ms(p50),
        ms(p99)
    );
    println!("| daemon idle RSS (one profile) | {rss:.1} MiB | | at most 8 MiB |");
    println!(
        "| daemon start-up to first answer, median of 5 | {:.1} ms | | within 50 ms |",
        ms(startup)
    );
    println!();
    println!("{n} interleaved runs for the token medians; {calls} in-process calls.");
}

/// A process that does nothing, for the process-start cost under the refresh figure.
fn floor_cmd_noop() -> std::process::Command {
    std::process::Command::new("true")
}
