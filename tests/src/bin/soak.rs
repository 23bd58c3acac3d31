//! The fault soak (docs/behaviour.md, "Reliability under faults"; tier 4 of
//! "Test tiers"): kill -9 at random moments during repeated forced refreshes against a
//! provider that rotates refresh tokens and detects reuse, with provider faults mixed
//! in. Prints a report; nothing here asserts a time.
//!
//! `scripts/soak [--short] [--duration SECS] [--seed N] [--kinds embedded,daemon,client]`
//! builds the binaries and runs this. Each kill iteration:
//! 1. reads the vault (generation G, refresh token R) and clears the provider's log;
//! 2. starts a forced refresh and, after a delay drawn uniformly from [0, 1.5x the
//!    median refresh duration measured first], kills with SIGKILL one of:
//!    - `embedded`: a `latchkey refresh` run with LATCHKEY_NO_DAEMON=1;
//!    - `daemon`: `latchkeyd` while it serves `POST /v1/profiles/work/refresh` (sent
//!      from here: the `latchkey` client would fall back and refresh again by itself,
//!      which would hide whose kill lost what);
//!    - `client`: a `latchkey refresh` run talking to a live daemon (the daemon is not
//!      killed, so it must finish the refresh: a session lost here was dropped by a
//!      live process, which is never allowed);
//! 3. waits on the profile's file lock (any refresh still running in a daemon ends
//!    first), then decrypts the vault in-process with the engine's vault code and with
//!    `latchkey status --json`: it must always decrypt;
//! 4. classifies the kill from the provider's request log and the vault: `completed`
//!    (the generation advanced), `not answered` (the provider never accepted R), or `in
//!    window` (the provider accepted R, so R is spent, but the new session never reached
//!    the disk);
//! 5. checks the session with a daemon-less `latchkey refresh`: only an `in window` kill
//!    may lose it (reuse detection then revokes it: session_expired). A session lost
//!    otherwise, or kept after the provider spent R, is a failure of the promise.
//!
//! A lost session is logged in again (the browser flow with a scripted browser) and
//! the soak goes on. Every few iterations a provider fault (503, 429, reset, 500,
//! malformed JSON, slow) hits one refresh instead: its category is checked and the
//! session must survive it.
//!
//! The window itself is read from the engine's log line "refreshed; the new session is
//! on disk" (`window_us`: from the parsed token response to the fsync of the new
//! vault), from every daemon log and every embedded run with LATCHKEY_LOG=info.
//!
//! Exits 1 when a vault ever failed to decrypt, a session was lost outside the window,
//! or a check met an unexpected answer. The World's leak check runs at the end.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use latchkey_tests::fake_idp::{Endpoint, FakeIdpConfig, Fault, LoggedRequest, fingerprint};
use latchkey_tests::harness::{Run, World, api, bin, refresh_windows};

#[derive(Parser, Debug)]
#[command(about = "kill -9 soak of Latchkey's refresh path")]
struct Args {
    /// The CI version: 40 s of kills instead of 10 minutes.
    #[arg(long)]
    short: bool,
    /// How long to kill for, in seconds (overrides --short's 40 and the default 600).
    #[arg(long)]
    duration: Option<u64>,
    /// Seed of the random delays and choices (printed; default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Which processes to kill: any of embedded, daemon, client.
    #[arg(long, value_delimiter = ',', default_value = "embedded,daemon,client")]
    kinds: Vec<String>,
}

/// splitmix64: enough randomness for delays and choices, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max].
    fn upto(&mut self, max: Duration) -> Duration {
        let us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.next() % (us + 1))
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Wall-clock milliseconds (fractional): the provider's log uses the same clock.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// When the provider handed its answer to the connection, in wall-clock ms. The log
/// has arrival in wall-clock ms and arrival and answer on a monotonic clock, both in
/// whole ms, so this is good to about a millisecond.
fn answered_ms(e: &LoggedRequest) -> f64 {
    let took = e.done_ms.unwrap_or(e.at_ms).saturating_sub(e.at_ms);
    (e.unix_ms + took) as f64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embedded,
    Daemon,
    Client,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Embedded, Kind::Daemon, Kind::Client];

    fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded",
            Kind::Daemon => "daemon",
            Kind::Client => "client",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Completed,
    NotAnswered,
    /// The provider accepted the refresh token; the new session was never written.
    /// The kill's offset from the provider's answer, in ms (negative: the answer was
    /// still on its way), and from the request's arrival at the provider.
    InWindow {
        offset_ms: f64,
        since_arrival_ms: f64,
    },
}

/// The daemon this soak runs (its own child, so it can be killed at once with
/// `Child::kill`, without spawning `kill`).
struct Daemon {
    child: Child,
}

fn start_daemon(world: &World, n: usize) -> Daemon {
    let log_path = world.home.path().join(format!("latchkeyd-soak-{n:04}.log"));
    let log = std::fs::File::create(&log_path).expect("the daemon log can be created");
    let mut cmd = world
        .home
        .command(bin("latchkeyd"), Vec::<&str>::new())
        .into_command();
    cmd.stdout(Stdio::null()).stderr(log);
    let child = cmd.spawn().expect("latchkeyd can be spawned");
    world.wait_for_daemon();
    Daemon { child }
}

impl Daemon {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the soak counts.
#[derive(Default)]
struct Tally {
    kills: [usize; 3],
    completed: [usize; 3],
    not_answered: [usize; 3],
    in_window: [usize; 3],
    lost: [usize; 3],
    decrypt_checks: usize,
    decrypted: usize,
    /// (kind, when the kill landed, its offset from the provider's answer and from
    /// the request's arrival there) of each lost session.
    losses: Vec<(Kind, Duration, f64, f64)>,
    /// In-window kills whose session still worked afterwards (not a failure; it would
    /// mean the provider's reuse detection did not fire).
    kept_in_window: usize,
    /// Sessions lost where none may be: anywhere but a crash inside the window.
    lost_outside: usize,
    faults: usize,
    fault_failures: Vec<String>,
    failures: Vec<String>,
    embedded_windows_us: Vec<u64>,
    relogins: usize,
}

struct Soak {
    world: World,
    daemon: Daemon,
    daemons_started: usize,
    rng: Rng,
    tally: Tally,
}

impl Soak {
    fn embedded(&self, args: &[&str]) -> Run {
        self.world
            .latchkey(args)
            .env("LATCHKEY_NO_DAEMON", "1")
            .env("LATCHKEY_LOG", "info")
            .run()
    }

    fn restart_daemon(&mut self) {
        self.daemon.kill();
        self.daemons_started += 1;
        self.daemon = start_daemon(&self.world, self.daemons_started);
    }

    fn relogin(&mut self) {
        let browser = self.world.auto_browser();
        let run = self
            .world
            .latchkey(["login", "--json", "--timeout", "30"])
            .env("LATCHKEY_BROWSER", &browser)
            .env("LATCHKEY_NO_DAEMON", "1")
            .run();
        if run.code != 0 {
            self.tally
                .failures
                .push(format!("a new login failed: {run:?}"));
        }
        self.tally.relogins += 1;
    }

    /// The typical duration of a forced refresh of `kind`, from the median of `n` runs.
    fn calibrate(&mut self, kind: Kind, n: usize) -> Duration {
        let mut took = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            let ok = match kind {
                Kind::Embedded => self.embedded(&["refresh", "--json"]).code == 0,
                Kind::Daemon => api(
                    &self.world.socket(),
                    "POST",
                    "/v1/profiles/work/refresh",
                    None,
                )
                .is_some_and(|(s, _)| s == 200),
                Kind::Client => self.world.latchkey(["refresh", "--json"]).run().code == 0,
            };
            took.push(t0.elapsed());
            assert!(ok, "a calibration refresh ({}) failed", kind.name());
        }
        took.sort();
        took[took.len() / 2]
    }

    /// One forced refresh killed after `delay`; returns the kill's wall-clock time and
    /// how long after the start it really landed (a loaded machine oversleeps).
    fn kill_during_refresh(&mut self, kind: Kind, delay: Duration) -> (f64, Duration) {
        let started = Instant::now();
        match kind {
            Kind::Embedded | Kind::Client => {
                let mut cmd = self.world.latchkey(["refresh", "--json"]);
                if kind == Kind::Embedded {
                    cmd = cmd
                        .env("LATCHKEY_NO_DAEMON", "1")
                        .env("LATCHKEY_LOG", "info");
                }
                let mut child = cmd.spawn();
                std::thread::sleep(delay);
                let at = (now_ms(), started.elapsed());
                let _ = child.kill();
                let run = Run::from(child.wait_with_output().expect("the child can be reaped"));
                self.world.capture("refresh --json (killed)", &run, false);
                self.tally
                    .embedded_windows_us
                    .extend(refresh_windows(&run.stderr).iter().map(|w| w.window_us));
                if kind == Kind::Client {
                    // The daemon goes on with a refresh whose caller died; the file
                    // lock (taken next) waits for it once it has started. Give the
                    // request time to reach the daemon first.
                    std::thread::sleep(Duration::from_millis(150));
                }
                at
            }
            Kind::Daemon => {
                let socket = self.world.socket();
                let request = std::thread::spawn(move || {
                    api(&socket, "POST", "/v1/profiles/work/refresh", None)
                });
                std::thread::sleep(delay);
                let at = (now_ms(), started.elapsed());
                self.daemon.kill();
                let _ = request.join();
                at
            }
        }
    }

    fn kill_iteration(&mut self, kind: Kind, delay: Duration) {
        let k = kind as usize;
        let before = match self.world.try_load_vault() {
            Ok(Some(l)) if !l.session.expired => l,
            other => {
                self.tally.failures.push(format!(
                    "no usable session before a kill: {:?}",
                    other.map(|o| o.map(|l| l.generation))
                ));
                self.relogin();
                return;
            }
        };
        let Some(sent) = before.session.refresh_token.as_ref() else {
            self.tally
                .failures
                .push("the stored session has no refresh token".into());
            return;
        };
        let sent = fingerprint(sent.expose());
        self.world.idp.clear_log();

        let (kill_at, delay) = self.kill_during_refresh(kind, delay);
        self.tally.kills[k] += 1;

        // Barrier: a refresh still running (in the daemon, for `client`) holds the
        // profile's lock until its write is done; a killed process's lock died with it.
        let vault = latchkey_daemon::vault::Vault::new(
            self.world.home.state_dir(),
            latchkey_proto::vault::KdfParams::Scrypt {
                log_n: 10,
                r: 8,
                p: 1,
            },
        );
        let after = match vault.lock("work", Duration::from_secs(60)) {
            Ok(guard) => {
                let loaded = vault.load("work").map_err(|e| e.to_string());
                drop(guard);
                loaded
            }
            Err(e) => Err(format!("the profile lock: {e}")),
        };
        let status = self
            .world
            .latchkey(["status", "--json"])
            .env("LATCHKEY_NO_DAEMON", "1")
            .run();
        self.tally.decrypt_checks += 1;
        let after = match (after, status.code) {
            (Ok(Some(l)), 0) => {
                self.tally.decrypted += 1;
                l
            }
            (after, _) => {
                self.tally.failures.push(format!(
                    "after a {} kill at +{delay:?} the vault did not decrypt: {:?} / status {status:?}",
                    kind.name(),
                    after.map(|o| o.map(|l| l.generation))
                ));
                if kind == Kind::Daemon {
                    self.restart_daemon();
                }
                self.relogin();
                return;
            }
        };

        let answer = self.world.idp.request_log().into_iter().find(|e| {
            e.grant_type.as_deref() == Some("refresh_token")
                && e.refresh_token_sha256.as_deref() == Some(sent.as_str())
                && e.status == Some(200)
        });
        let class = if after.generation > before.generation {
            Class::Completed
        } else if let Some(a) = &answer {
            Class::InWindow {
                offset_ms: kill_at - answered_ms(a),
                since_arrival_ms: kill_at - a.unix_ms as f64,
            }
        } else {
            Class::NotAnswered
        };
        match class {
            Class::Completed => self.tally.completed[k] += 1,
            Class::NotAnswered => self.tally.not_answered[k] += 1,
            Class::InWindow { .. } => self.tally.in_window[k] += 1,
        }

        let check = self.embedded(&["refresh", "--json"]);
        self.tally
            .embedded_windows_us
            .extend(refresh_windows(&check.stderr).iter().map(|w| w.window_us));
        let lost = match check.code {
            0 => false,
            4 => true,
            _ => {
                self.tally.failures.push(format!(
                    "after a {} kill at +{delay:?} the session check answered {}: {}",
                    kind.name(),
                    check.code,
                    check.stdout.trim()
                ));
                true
            }
        };
        if lost {
            self.tally.lost[k] += 1;
            match class {
                // A kill in the daemon's caller is not a crash of the refresher: a
                // session lost there was dropped by a live process.
                Class::InWindow {
                    offset_ms,
                    since_arrival_ms,
                } if kind != Kind::Client => {
                    self.tally
                        .losses
                        .push((kind, delay, offset_ms, since_arrival_ms));
                }
                Class::InWindow { .. } => {
                    self.tally.lost_outside += 1;
                    self.tally.failures.push(format!(
                        "a live daemon dropped a refresh the provider had answered when its caller was killed at +{delay:?}: the session was lost without a crash (docs/soak.md)"
                    ));
                }
                _ => {
                    self.tally.lost_outside += 1;
                    self.tally.failures.push(format!(
                        "a session was lost outside the window: {} kill at +{delay:?}, {class:?}, generation {} -> {}",
                        kind.name(),
                        before.generation,
                        after.generation
                    ));
                }
            }
        } else if matches!(class, Class::InWindow { .. }) {
            self.tally.kept_in_window += 1;
        }

        if kind == Kind::Daemon {
            self.restart_daemon();
        }
        if lost {
            self.relogin();
        }
    }

    /// One refresh that meets a provider fault, through the daemon or not: the
    /// category must be the documented one, and the session must survive.
    fn fault_iteration(&mut self) {
        let faults = [
            (Fault::Status503, 6),
            (Fault::Status429, 6),
            (Fault::ConnectionReset, 6),
            (Fault::Status500, 7),
            (Fault::MalformedJson, 7),
            (Fault::Slow(Duration::from_millis(300)), 0),
        ];
        let (fault, want) = faults[self.rng.below(faults.len())];
        let through_daemon = self.rng.below(2) == 0;
        self.world.idp.push_faults(Endpoint::Token, fault, 1);
        let run = if through_daemon {
            self.world.latchkey(["refresh", "--json"]).run()
        } else {
            self.embedded(&["refresh", "--json"])
        };
        self.world.idp.clear_faults();
        self.tally.faults += 1;
        let route = if through_daemon { "daemon" } else { "embedded" };
        if run.code != want {
            self.tally.fault_failures.push(format!(
                "{fault:?} ({route}): exit {} instead of {want}: {}",
                run.code,
                run.stdout.trim()
            ));
        }
        let check = self.embedded(&["refresh", "--json"]);
        if check.code != 0 {
            self.tally.fault_failures.push(format!(
                "{fault:?} ({route}): the session did not survive: exit {} {}",
                check.code,
                check.stdout.trim()
            ));
            self.relogin();
        }
    }
}

/// The floor under the window: one atomic, durable write of a vault-sized file in
/// the state folder (temp file, write, fsync, rename, fsync the folder), as the
/// engine does it. `n` samples, in microseconds.
fn fsync_floor(dir: &std::path::Path, n: usize) -> Vec<u64> {
    use std::io::Write;
    let bytes = vec![0x5a_u8; 1200];
    let took: Vec<u64> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let mut tmp = tempfile::Builder::new()
                .prefix(".soak-floor-")
                .tempfile_in(dir)
                .expect("a temporary file in the state folder");
            tmp.write_all(&bytes).expect("written");
            tmp.as_file().sync_all().expect("fsynced");
            tmp.persist(dir.join("soak-floor"))
                .expect("renamed over the target");
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .expect("the folder fsynced");
            u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX)
        })
        .collect();
    let _ = std::fs::remove_file(dir.join("soak-floor"));
    took
}

fn stats(v: &mut [u64]) -> Option<(u64, u64, u64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Some((p(0.5), p(0.99), v[v.len() - 1]))
}

fn fmt_ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn main() {
    let args = Args::parse();
    let kinds: Vec<Kind> = args
        .kinds
        .iter()
        .map(|k| {
            Kind::parse(k).unwrap_or_else(|| {
                eprintln!("--kinds: {k:?} is not one of embedded, daemon, client");
                std::process::exit(2)
            })
        })
        .collect();
    let duration = Duration::from_secs(args.duration.unwrap_or(if args.short { 40 } else { 600 }));
    let seed = args.seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS has randomness");
        u64::from_le_bytes(b)
    });
    println!(
        "Latchkey fault soak: {} s of kills ({}), seed {seed}, binaries from {}",
        duration.as_secs(),
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        bin("latchkey")
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
            .display()
    );

    // Short access tokens so the daemon's own proactive refreshes join in; forced
    // refreshes happen regardless of the lifetime.
    let world = World::new(FakeIdpConfig {
        access_token_ttl: Duration::from_secs(20),
        ..FakeIdpConfig::default()
    });
    world.login();
    let daemon = start_daemon(&world, 0);
    let mut soak = Soak {
        world,
        daemon,
        daemons_started: 0,
        rng: Rng(seed),
        tally: Tally::default(),
    };

    let typical = Kind::ALL.map(|k| soak.calibrate(k, 15));
    println!(
        "typical forced refresh: embedded process {:.1} ms, daemon request {:.1} ms, client through the daemon {:.1} ms",
        typical[0].as_secs_f64() * 1000.0,
        typical[1].as_secs_f64() * 1000.0,
        typical[2].as_secs_f64() * 1000.0
    );

    // The floor is sampled before and after the kills: the disk's speed drifts.
    let mut floor = fsync_floor(&soak.world.home.state_dir(), 30);

    let t0 = Instant::now();
    let mut iterations = 0usize;
    while t0.elapsed() < duration {
        iterations += 1;
        if iterations.is_multiple_of(5) {
            soak.fault_iteration();
            continue;
        }
        let kind = kinds[soak.rng.below(kinds.len())];
        // Up to 1.5x the median, so that slower refreshes are covered to their end.
        let delay = soak.rng.upto(typical[kind as usize] * 3 / 2);
        soak.kill_iteration(kind, delay);
    }
    soak.daemon.kill();
    floor.extend(fsync_floor(&soak.world.home.state_dir(), 30));
    let floor_us = stats(&mut floor).map_or(0, |(p50, _, _)| p50);

    let t = &soak.tally;
    let mut daemon_windows: Vec<u64> = refresh_windows(&soak.world.daemon_logs())
        .iter()
        .map(|w| w.window_us)
        .collect();
    let mut embedded_windows = t.embedded_windows_us.clone();
    let mut all_windows: Vec<u64> = daemon_windows
        .iter()
        .chain(embedded_windows.iter())
        .copied()
        .collect();

    println!();
    println!(
        "iterations                     {iterations} in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    println!(
        "kill -9                        {:>8} {:>8} {:>8} {:>8}",
        "embedded", "daemon", "client", "total"
    );
    let row = |name: &str, v: &[usize; 3]| {
        println!(
            "  {name:<28} {:>8} {:>8} {:>8} {:>8}",
            v[0],
            v[1],
            v[2],
            v.iter().sum::<usize>()
        );
    };
    row("kills", &t.kills);
    row("refresh completed", &t.completed);
    row("provider never accepted", &t.not_answered);
    row("in the window", &t.in_window);
    row("sessions lost", &t.lost);
    println!(
        "vault decrypted after a kill   {}/{}",
        t.decrypted, t.decrypt_checks
    );
    println!(
        "sessions lost                  {}/{} kills, all in the window: {}",
        t.lost.iter().sum::<usize>(),
        t.kills.iter().sum::<usize>(),
        if t.lost_outside == 0 {
            "yes".to_string()
        } else {
            format!("NO ({} outside it)", t.lost_outside)
        }
    );
    for (kind, delay, offset, since_arrival) in &t.losses {
        println!(
            "  lost: {} kill at +{:.2} ms, {offset:+.1} ms from the provider's answer ({since_arrival:+.1} ms from the request's arrival there)",
            kind.name(),
            delay.as_secs_f64() * 1000.0
        );
    }
    if t.kept_in_window > 0 {
        println!(
            "  in-window kills whose session still worked: {}",
            t.kept_in_window
        );
    }
    println!("new logins after a loss        {}", t.relogins);
    println!(
        "fsync floor                    {} (median of 60 atomic fsync'd writes of a vault-sized file in the state folder)",
        fmt_ms(floor_us)
    );
    println!(
        "provider faults                {} refreshes, {} wrong",
        t.faults,
        t.fault_failures.len()
    );
    for (name, v) in [
        ("daemon", &mut daemon_windows),
        ("embedded", &mut embedded_windows),
        ("all", &mut all_windows),
    ] {
        let n = v.len();
        match stats(v) {
            Some((p50, p99, max)) => println!(
                "window ({name:<8}) n={n:<5}      median {}, p99 {}, max {}",
                fmt_ms(p50),
                fmt_ms(p99),
                fmt_ms(max)
            ),
            None => println!("window ({name:<8}) n=0"),
        }
    }
    if let Some((p50, p99, max)) = stats(&mut all_windows) {
        println!(
            "window kept to milliseconds    {} (p99 {}, max {}; yes means p99 under 10 ms)",
            if p99 < 10_000 { "yes" } else { "no" },
            fmt_ms(p99),
            fmt_ms(max),
        );
        println!(
            "window against the fsync floor median {:.1}x one atomic fsync'd write ({})",
            p50 as f64 / floor_us.max(1) as f64,
            fmt_ms(floor_us)
        );
    }
    for f in t.failures.iter().chain(t.fault_failures.iter()) {
        println!("FAILURE: {f}");
    }
    let failed =
        t.decrypted != t.decrypt_checks || !t.failures.is_empty() || !t.fault_failures.is_empty();
    println!("result: {}", if failed { "FAILED" } else { "ok" });
    // The World's leak check runs on drop; it panics (exit 101) on a leak.
    let Soak { world, .. } = soak;
    drop(world);
    std::process::exit(i32::from(failed));
}
