//! `latchkey login`: the browser flow (PKCE, state, loopback listener), the device
//! flow (interval rules asserted on the provider's timestamps), and that a failed or
//! abandoned login leaves the previous session byte-identical.

use std::time::Duration;

use latchkey_tests::fake_idp::{DeviceApproval, Endpoint, FakeIdpConfig, IssParameter, TokenKind};
use latchkey_tests::harness::World;

/// stdout of a `--json` login parsed as JSON Lines.
fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[test]
fn device_login_reports_json_lines_and_the_session_works() {
    let world = World::default_provider();
    let run = world.latchkey(["login", "--device", "--json"]).run();
    run.ok();
    let ev = events(&run.stdout);
    assert_eq!(ev.first().unwrap()["event"], "device_code", "{ev:?}");
    let code = ev[0]["user_code"].as_str().unwrap();
    assert!(
        code.len() == 8 && code.bytes().all(|b| b.is_ascii_uppercase()),
        "exactly as issued (eight letters, no dash added): {code}"
    );
    assert!(
        ev[0]["verification_uri"]
            .as_str()
            .unwrap()
            .starts_with(&world.idp.issuer())
    );
    assert!(ev[0]["verification_uri_complete"].is_string());
    assert!(ev[0]["expires_in"].as_u64().unwrap() > 0);
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "logged_in");
    assert_eq!(last["profile"], "work");
    assert_eq!(last["user"]["email"], "dev@example.test");
    assert_eq!(last["groups"], serde_json::json!(["dev", "ops"]));

    let token = world.latchkey(["token"]).run();
    token.ok();
    let issued = world.idp.issued(TokenKind::AccessToken);
    assert_eq!(token.stdout.trim_end(), issued.last().unwrap());

    let st = world.latchkey(["status", "--json"]).run();
    let st = st.ok().json();
    for key in [
        "profile",
        "logged_in",
        "session_expired",
        "user",
        "groups",
        "expires_at",
        "expires_in_seconds",
        "has_refresh_token",
        "storage",
        "daemon",
    ] {
        assert!(st.get(key).is_some(), "status --json lacks {key}: {st}");
    }
    assert_eq!(st["logged_in"], true);
    assert_eq!(st["has_refresh_token"], true);
    assert_eq!(st["user"]["sub"], "fake-user-0001");
    assert_eq!(st["storage"]["kind"], "encrypted_file");
    assert!(st["expires_in_seconds"].as_i64().unwrap() > 3000);
    let plain = world.latchkey(["status"]).run();
    plain.ok();
    assert!(
        plain.stdout.contains("expires in 59 min") || plain.stdout.contains("expires in 1 h"),
        "{}",
        plain.stdout
    );
    assert!(
        plain
            .stdout
            .contains("encrypted file (scrypt, XChaCha20-Poly1305) at "),
        "{}",
        plain.stdout
    );
}

#[test]
fn browser_login_through_latchkey_browser() {
    let world = World::default_provider();
    let run = world.login();
    let ev = events(&run.stdout);
    assert_eq!(ev[0]["event"], "authorize_url");
    let url = url::Url::parse(ev[0]["url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(q["state"].len() >= 22, "state has at least 128 bits");
    assert!(
        q["redirect_uri"].starts_with("http://127.0.0.1:")
            && q["redirect_uri"].ends_with("/callback")
    );
    assert_eq!(ev.last().unwrap()["event"], "logged_in");
    let c = world.idp.counters();
    assert_eq!(c.token_requests.authorization_code, 1);
    assert_eq!(c.userinfo_ok, 1);
    world.latchkey(["token"]).run().ok();
}

#[test]
fn no_browser_here_means_the_device_flow_with_a_reason() {
    // The harness clears DISPLAY, BROWSER and LATCHKEY_BROWSER: no browser can open.
    let world = World::default_provider();
    let run = world.latchkey(["login"]).run();
    run.ok();
    assert!(
        run.stdout.contains("No browser can be opened here"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("device flow"), "{}", run.stdout);
    assert!(run.stdout.contains("enter the code"), "{}", run.stdout);
    assert!(run.stdout.contains("Logged in to work"), "{}", run.stdout);
    assert_eq!(world.idp.counters().device_authorizations, 1);
}

/// Logs in once, then runs a login that must fail, and checks the first session
/// survived byte for byte and still works.
fn assert_failed_login_keeps_session(
    world: &World,
    browser_body: &str,
    timeout: &str,
    code: i32,
) -> serde_json::Value {
    world.login();
    let before = world.vault_bytes().unwrap();
    let script = world.browser_script("bad-browser.sh", browser_body);
    let run = world
        .latchkey(["login", "--json", "--timeout", timeout])
        .env("LATCHKEY_BROWSER", &script)
        .run();
    run.code(code);
    let last: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{last}"
    );
    assert!(last["error"]["hint"].is_string(), "{last}");
    assert_eq!(
        world.vault_bytes().unwrap(),
        before,
        "a failed login touched the vault"
    );
    world.latchkey(["token"]).run().ok();
    last
}

#[test]
fn forged_state_gets_400_and_the_login_times_out_cleanly() {
    let world = World::default_provider();
    let body = r#"dir=$(dirname "$0")
loc=$(curl -sS -o /dev/null -w '%{redirect_url}' "$1")
forged=$(printf '%s' "$loc" | sed 's/state=[^&]*/state=forgedforgedforgedforged/')
curl -sS -o /dev/null -w '%{http_code}' "$forged" > "$dir/forged-status""#;
    let err = assert_failed_login_keeps_session(&world, body, "3", 3);
    assert_eq!(err["error"]["category"], "not_logged_in");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 3 s"),
        "{err}"
    );
    let status = std::fs::read_to_string(world.home.path().join("forged-status")).unwrap();
    assert_eq!(
        status.trim(),
        "400",
        "the listener must refuse a forged state"
    );
    // The code in the forged callback was never exchanged.
    assert_eq!(world.idp.counters().token_requests.authorization_code, 1);
}

#[test]
fn wrong_pkce_verifier_fails_the_login_clearly() {
    let world = World::default_provider();
    // The "browser" swaps the challenge, so Latchkey's verifier no longer matches.
    let body = r#"url=$(printf '%s' "$1" | sed 's/code_challenge=[^&]*/code_challenge=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/')
exec curl -sS -L -o /dev/null "$url""#;
    let err = assert_failed_login_keeps_session(&world, body, "20", 5);
    assert_eq!(err["error"]["category"], "forbidden");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused the authorization code"),
        "{err}"
    );
    let log = world.idp.request_log();
    let refused = log
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("authorization_code") && r.status == Some(400))
        .count();
    assert_eq!(refused, 1, "exactly one exchange, refused by the provider");
}

#[test]
fn missing_pkce_challenge_fails_the_login_clearly() {
    let world = World::default_provider();
    let body = r#"url=$(printf '%s' "$1" | sed -e 's/&code_challenge=[^&]*//' -e 's/&code_challenge_method=S256//')
exec curl -sS -L -o /dev/null "$url""#;
    let err = assert_failed_login_keeps_session(&world, body, "20", 5);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid_request"),
        "{err}"
    );
}

#[test]
fn abandoned_login_times_out_and_changes_nothing() {
    let world = World::default_provider();
    let err = assert_failed_login_keeps_session(&world, "exit 0", "1", 3);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not completed within 1 s"),
        "{err}"
    );
    assert!(
        err["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("latchkey login"),
        "{err}"
    );
}

/// RFC 9207: the `iss` of the authorization response must be the issuer discovery
/// names, and is required once discovery announces it. A wrong or missing one fails
/// the login as a server error before the code reaches the token endpoint, and the
/// previous session stays as it was.
#[test]
fn iss_in_the_authorization_response_is_checked() {
    let world = World::new(FakeIdpConfig {
        iss_parameter: IssParameter::Issuer,
        announce_iss_parameter: true,
        ..FakeIdpConfig::default()
    });
    // Right iss: the login works (and so the vault below holds a session).
    world.login();
    let exchanges = || world.idp.counters().token_requests.authorization_code;
    assert_eq!(exchanges(), 1);
    let before = world.vault_bytes().unwrap();
    let refused = |why: &str| {
        let run = world
            .latchkey(["login", "--json", "--timeout", "20"])
            .env("LATCHKEY_BROWSER", world.auto_browser())
            .run();
        run.code(7);
        let last: serde_json::Value =
            serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
        assert_eq!(last["error"]["category"], "server", "{why}: {last}");
        let message = last["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("before its code was used"),
            "{why}: {message}"
        );
        assert_eq!(exchanges(), 1, "{why}: the code went to the token endpoint");
        assert_eq!(
            world.vault_bytes().unwrap(),
            before,
            "{why}: the vault changed"
        );
        message.to_string()
    };

    // Another issuer's response (a mix-up), and the same issuer spelled with a
    // trailing slash (RFC 9207 compares strings exactly).
    world
        .idp
        .set_config(|c| c.iss_parameter = IssParameter::Other("http://127.0.0.1:9/".into()));
    let message = refused("another issuer");
    assert!(message.contains("http://127.0.0.1:9/"), "{message}");
    let slash = format!("{}/", world.idp.issuer());
    world
        .idp
        .set_config(|c| c.iss_parameter = IssParameter::Other(slash.clone()));
    refused("a trailing slash");

    // Absent although announced.
    world
        .idp
        .set_config(|c| c.iss_parameter = IssParameter::Absent);
    let message = refused("absent but announced");
    assert!(message.contains("no iss"), "{message}");

    // Absent and not announced: a provider without RFC 9207, as before.
    world.idp.set_config(|c| c.announce_iss_parameter = false);
    world.login();
    assert_eq!(exchanges(), 2);
    world.latchkey(["token"]).run().ok();
}

/// Regression: the callback listener accepted every connection, so another local
/// user holding a few hundred open during a login spent the login's file
/// descriptors (here a limit of 128 stands for the usual 1024), its `accept` spun on
/// EMFILE, and the browser's callback waited behind them until the login timed out.
/// Now the listener keeps at most a few dozen, closing the oldest idle one.
#[test]
fn a_login_completes_while_a_local_flood_holds_the_callback_port() {
    use std::io::BufRead;
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let world = World::default_provider();
    let go = world.home.path().join("go");
    let browser = world.browser_script(
        "held-browser.sh",
        r#"dir=$(dirname "$0")
while [ ! -e "$dir/go" ]; do sleep 0.05; done
exec curl -fsS -L --max-time 20 -o /dev/null "$1""#,
    );
    let mut child = world
        .latchkey(["login", "--json", "--timeout", "20"])
        .env("LATCHKEY_BROWSER", &browser)
        .spawn();
    let pid = child.id().to_string();
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=128:"])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(limited.success(), "prlimit failed");

    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let url = url::Url::parse(first["url"].as_str().unwrap()).unwrap();
    let redirect = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    let port = url::Url::parse(&redirect).unwrap().port().unwrap();
    let callback = SocketAddr::from(([127, 0, 0, 1], port));

    // Another local user: opens connections as fast as it can and keeps the
    // newest 400 open, sending nothing, for the whole login.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (stop, opened) = (stop.clone(), opened.clone());
        std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(c) = TcpStream::connect_timeout(&callback, Duration::from_millis(200)) {
                    held.push_back(c);
                    opened.fetch_add(1, Ordering::Relaxed);
                    if held.len() > 400 {
                        held.pop_front();
                    }
                }
            }
        })
    };
    let start = std::time::Instant::now();
    while opened.load(Ordering::Relaxed) < 400 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(&go, "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    world.capture_text("login under a flood (stdout)", &rest.join("\n"));
    world.capture_text("login under a flood (stderr)", &stderr);
    assert!(status.success(), "{rest:?} {stderr}");
    let opened = opened.load(Ordering::Relaxed);
    assert!(
        opened >= 400,
        "only {opened} flood connections: not a flood"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(rest.last().unwrap()).unwrap()["event"],
        "logged_in"
    );
    world.latchkey(["token"]).run().ok();
}

#[test]
fn first_login_failure_leaves_no_vault() {
    let world = World::default_provider();
    let script = world.browser_script("nothing.sh", "exit 0");
    world
        .latchkey(["login", "--timeout", "1"])
        .env("LATCHKEY_BROWSER", &script)
        .run()
        .code(3);
    assert!(world.vault_bytes().is_none());
}

#[test]
fn device_flow_denied_and_expired_end_clearly() {
    let world = World::new(FakeIdpConfig {
        device_approval: DeviceApproval::DenyAfterPolls(1),
        ..FakeIdpConfig::default()
    });
    let denied = world.latchkey(["login", "--device", "--json"]).run();
    denied.code(5);
    assert!(denied.stdout.contains("denied"), "{}", denied.stdout);
    assert!(world.vault_bytes().is_none());

    let world = World::new(FakeIdpConfig {
        device_approval: DeviceApproval::Manual,
        device_code_ttl: Duration::from_secs(2),
        ..FakeIdpConfig::default()
    });
    let expired = world.latchkey(["login", "--device"]).run();
    expired.code(3);
    assert!(
        expired.stderr.contains("not completed"),
        "{}",
        expired.stderr
    );
    assert!(
        expired.stderr.contains("hint: run `latchkey login"),
        "{}",
        expired.stderr
    );
}

/// Device polls keep the server's interval, add 5 s on slow_down and never go
/// faster. Asserted on the provider's own arrival times.
#[test]
fn device_polls_keep_the_interval_and_slow_down() {
    let world = World::new(FakeIdpConfig {
        device_interval: Some(1),
        device_slow_down_polls: 1,
        // The first counted poll (after the slow_down) gets the tokens.
        device_approval: DeviceApproval::AfterPolls(0),
        ..FakeIdpConfig::default()
    });
    world.latchkey(["login", "--device"]).run().ok();
    let log = world.idp.request_log();
    let start = log
        .iter()
        .find(|r| r.endpoint == Some(Endpoint::DeviceAuthorization))
        .unwrap()
        .at_ms;
    let polls: Vec<u64> = log
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some(latchkey_tests::fake_idp::DEVICE_CODE_GRANT))
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(polls.len(), 2, "one slow_down, then approval: {polls:?}");
    assert!(
        polls[0] - start >= 1000,
        "first poll after the 1 s interval: {}",
        polls[0] - start
    );
    let gap = polls[1] - polls[0];
    assert!(
        gap >= 6000,
        "slow_down adds 5 s to the 1 s interval, got {gap} ms"
    );
    assert!(
        gap <= 10_500,
        "never more than 10 s between polls, got {gap} ms"
    );
}

/// Reads `child`'s stdout line by line until `pick` finds the user code in one.
fn user_code_from(
    child: &mut std::process::Child,
    pick: impl Fn(&str) -> Option<String>,
) -> (String, Vec<String>) {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("stdout is text");
        seen.push(line.clone());
        if let Some(code) = pick(&line) {
            return (code, seen);
        }
    }
    panic!("no user code in {seen:?}");
}

/// Regression: the code was shown as `ABCD-EFGH` for an issued `ABCDEFGH`, and a
/// provider that compares user codes byte for byte (as this fake does) answered
/// "incorrect code": the person could not sign in.
#[test]
fn a_device_login_works_with_the_user_code_exactly_as_printed() {
    for json in [false, true] {
        let world = World::new(FakeIdpConfig {
            device_approval: DeviceApproval::Manual,
            device_interval: Some(1),
            ..FakeIdpConfig::default()
        });
        let mut args = vec!["login", "--device"];
        if json {
            args.push("--json");
        }
        let mut child = world.latchkey(args).spawn();
        let (code, seen) = user_code_from(&mut child, |line| {
            if json {
                let ev: serde_json::Value = serde_json::from_str(line).ok()?;
                ev["user_code"].as_str().map(str::to_string)
            } else {
                line.split("enter the code: ")
                    .nth(1)
                    .map(|c| c.trim().to_string())
            }
        });
        assert!(
            world.idp.approve_device(&code),
            "the provider does not know the code as printed: {code:?} ({seen:?})"
        );
        let status = child.wait().expect("latchkey login ran");
        assert!(status.success(), "login after approval (json: {json})");
        world.latchkey(["token"]).run().ok();
    }
}

/// Some providers never answer `expired_token`: polling stops at the code's
/// `expires_in` by Latchkey's own clock, with the clear timeout error.
#[test]
fn device_polling_stops_at_expires_in_when_the_provider_never_says_expired() {
    let world = World::new(FakeIdpConfig {
        device_approval: DeviceApproval::Manual,
        device_code_ttl: Duration::from_secs(3),
        device_expiry_answered: false,
        device_interval: Some(1),
        ..FakeIdpConfig::default()
    });
    let start = std::time::Instant::now();
    let expired = world.latchkey(["login", "--device"]).run();
    expired.code(3);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "polling went on past the code's lifetime: {:?}",
        start.elapsed()
    );
    assert!(
        expired.stderr.contains("not completed"),
        "{}",
        expired.stderr
    );
    let polls = world.idp.counters().token_requests.device_code;
    assert!((1..=4).contains(&polls), "{polls} polls in a 3 s lifetime");
}

/// A line of `/proc/PID/limits` as (soft, hard), e.g. "Max open files".
#[cfg(target_os = "linux")]
fn proc_limit(pid: u32, name: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {limits}"));
    let mut fields = line[name.len()..].split_whitespace();
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}

/// Sets this test process's soft limit on open files (children inherit it). Each
/// test runs in a process of its own under nextest, so no other test sees it.
#[cfg(target_os = "linux")]
fn lower_own_open_file_limit(soft: u32) {
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={soft}:"),
        ])
        .status()
        .expect("prlimit (util-linux) runs")
        .success();
    assert!(ok, "prlimit failed");
}

/// `latchkeyd` raises its soft open-file limit to the hard one at start, so the
/// connections of a socket login's callback port (or of its socket) cannot run it
/// out of descriptors at a low default.
#[cfg(target_os = "linux")]
#[test]
fn latchkeyd_raises_its_open_file_limit_to_the_hard_one() {
    lower_own_open_file_limit(256);
    let (soft, hard) = proc_limit(std::process::id(), "Max open files");
    assert_eq!(soft, "256");
    assert_ne!(hard, "256", "the hard limit leaves no room to test a raise");
    let world = World::default_provider();
    let pid = world.start_daemon();
    let (soft, hard) = proc_limit(pid, "Max open files");
    assert_eq!(
        soft, hard,
        "latchkeyd kept a soft limit of {soft} under {hard}"
    );
}

/// The CLI hardens itself for a login as the daemon does (docs/behaviour.md,
/// "Security"): while it waits for the browser it is not dumpable, so another
/// process of the same user cannot attach to it or read its memory, and it may
/// write no core file. The kernel gives a non-dumpable process's /proc entries to
/// root; when the tests run as root the login runs as `nobody` so the owner tells.
#[cfg(target_os = "linux")]
#[test]
fn a_waiting_login_is_not_dumpable_and_writes_no_core() {
    use std::io::BufRead;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;

    let world = World::default_provider();
    let browser = world.browser_script("no-browser.sh", "exit 0");
    let me = std::fs::metadata("/proc/self").unwrap().uid();
    let mut cmd = world
        .home
        .latchkey(["login", "--json", "--timeout", "20"])
        .env("LATCHKEY_BROWSER", &browser)
        .into_command();
    if me == 0 {
        let chowned = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(world.home.path())
            .status()
            .unwrap()
            .success();
        assert!(chowned, "chown of the test home failed");
        cmd.uid(65534).gid(65534);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("authorize_url"), "{first}");

    // Waiting for the callback now, with the PKCE verifier in memory.
    // The files under /proc/PID (the folder's own inode may be cached).
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    let core = proc_limit(pid, "Max core file size");
    child.kill().unwrap();
    child.wait().unwrap();
    world.capture_text("waiting login (stdout)", &first);
    assert_eq!(
        owner, 0,
        "the waiting login is dumpable: its /proc entries belong to uid {owner}"
    );
    assert_eq!(
        core,
        ("0".to_string(), "0".to_string()),
        "core files allowed"
    );
}
