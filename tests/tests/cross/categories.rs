//! Every error category (docs/behaviour.md, "Exit codes and error categories"), each
//! produced by injecting its fault at the fake provider (or on disk) and checked
//! through the real binary: the exit code, the JSON `category`, `retryable` and hint,
//! the plain `error:`/`hint:` lines on stderr, and the side effects that matter
//! (provider counters, the vault file's bytes).
//!
//! Statuses the fake provider cannot script (502, 504, a bare 403 without an OAuth
//! body) come from a one-answer loopback server that a planted session points at.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use latchkey_daemon::vault::Vault;
use latchkey_proto::secret::Secret;
use latchkey_proto::vault::{KdfParams, SessionRecord};
use latchkey_tests::fake_idp::{
    Counters, Endpoint, FakeIdp, FakeIdpConfig, Fault, TokenKind, fingerprint,
};
use latchkey_tests::harness::{CLIENT_ID, Home, Run, World};
use latchkey_tests::leak::assert_no_leaks;
use serde_json::Value;

/// The login hint every session_expired and not_logged_in error must carry.
const LOGIN_HINT: &str = "latchkey login --profile work";

/// Asserts a plain-mode failure: exit `code`, nothing on stdout, `error: ...` first on
/// stderr, and a `hint: ...` line containing `hint`.
#[track_caller]
fn plain_error(run: &Run, code: i32, hint: &str) {
    run.code(code);
    assert!(run.stdout.is_empty(), "stdout must stay empty: {run:#?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    // Warnings (logs are on at warn by default) may come first; the error comes last.
    let error = lines
        .iter()
        .position(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {run:#?}"));
    assert_eq!(
        lines
            .get(error + 1)
            .filter(|l| l.starts_with("hint: "))
            .map(|l| l.contains(hint)),
        Some(true),
        "the error line is followed by a hint naming {hint:?}: {run:#?}"
    );
    assert_eq!(lines.len(), error + 2, "nothing after the hint: {run:#?}");
}

/// The `hint` of a JSON error, which must be there.
#[track_caller]
fn hint(err: &Value) -> &str {
    err["hint"]
        .as_str()
        .unwrap_or_else(|| panic!("the error has no hint: {err}"))
}

/// The `message` of a JSON error.
fn message(err: &Value) -> &str {
    err["message"].as_str().unwrap_or_default()
}

/// Stops the world's provider for good (its port is closed when this returns) and puts
/// an unrelated one in its place, so the profile's issuer and the session's endpoints
/// point at a closed loopback port. Returns what the stopped provider issued, for the
/// caller's own leak checks (the world's check only sees the new provider).
fn take_provider_down(world: &mut World) -> Vec<String> {
    let old = std::mem::replace(
        &mut world.idp,
        FakeIdp::start_blocking(FakeIdpConfig::default()),
    );
    let issued = old.issued_tokens();
    old.shutdown();
    issued
}

#[test]
fn usage_when_the_provider_does_not_know_the_client() {
    let world = World::default_provider();
    world.login();
    let vault = world.vault_bytes().expect("logged in");
    // The provider forgets the client: the token endpoint answers 401 invalid_client.
    world
        .idp
        .set_config(|c| c.client_id = "someone-else".into());

    let err = world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(2, "usage");
    assert!(message(&err).contains("invalid_client"), "{err}");
    assert!(
        hint(&err).contains("config.toml") && hint(&err).contains("client_id"),
        "{err}"
    );
    assert_eq!(err["retryable"], false, "{err}");
    plain_error(&world.latchkey(["refresh"]).run(), 2, "config.toml");

    let log = world.idp.request_log();
    let last = log.last().expect("the refresh reached the provider");
    assert_eq!(last.status, Some(401));
    assert_eq!(last.error.as_deref(), Some("invalid_client"));
    let c = world.idp.counters();
    assert_eq!(c.token_requests.refresh_token, 2);
    assert_eq!(c.refresh_successes, 0);
    assert_eq!(
        world.vault_bytes().expect("still there"),
        vault,
        "a usage error changed the session"
    );
}

#[test]
fn usage_when_a_login_names_a_client_the_provider_does_not_know() {
    let world = World::default_provider();
    world
        .latchkey([
            "profile",
            "add",
            "bad",
            "--issuer",
            &world.idp.issuer(),
            "--client-id",
            "not-registered",
        ])
        .run()
        .ok();
    let err = world
        .latchkey(["login", "--device", "--json", "--profile", "bad"])
        .run()
        .json_error(2, "usage");
    assert!(hint(&err).contains("profile bad"), "{err}");
    assert!(hint(&err).contains("config.toml"), "{err}");
    let plain = world
        .latchkey(["login", "--device", "--profile", "bad"])
        .run();
    plain.code(2);
    assert!(plain.stderr.starts_with("error: "), "{plain:#?}");
    assert!(
        plain.stderr.contains("\nhint: check the settings"),
        "{plain:#?}"
    );
    assert_eq!(world.idp.counters().device_authorizations, 0);
    assert!(
        !world.home.state_dir().join("profiles/bad.vault").exists(),
        "a refused login stored a session"
    );
}

#[test]
fn usage_when_the_config_is_not_valid() {
    let home = Home::new();
    let path = home.config_file().display().to_string();
    for text in [
        "[profiles.work\nissuer = \"http://127.0.0.1:9\"\n",
        "[profiles.work]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"x\"\ncolour = \"red\"\n",
    ] {
        std::fs::write(home.config_file(), text).expect("the config can be written");
        let err = home
            .latchkey(["token", "--json"])
            .run()
            .json_error(2, "usage");
        assert!(message(&err).contains(&path), "names the file: {err}");
        assert_eq!(err["retryable"], false);
        let plain = home.latchkey(["token"]).run();
        plain.code(2);
        assert!(plain.stdout.is_empty(), "{plain:#?}");
        assert!(plain.stderr.starts_with("error: "), "{plain:#?}");
        assert!(plain.stderr.contains(&path), "{plain:#?}");
        assert_eq!(
            std::fs::read_to_string(home.config_file()).expect("still there"),
            text,
            "a failed read rewrote the config"
        );
    }
}

#[test]
fn not_logged_in_carries_the_login_hint_and_asks_nobody() {
    let world = World::default_provider();
    for args in [["token", "--json"], ["refresh", "--json"]] {
        let err = world.latchkey(args).run().json_error(3, "not_logged_in");
        assert!(hint(&err).contains(LOGIN_HINT), "{err}");
        assert_eq!(err["retryable"], false);
    }
    plain_error(&world.latchkey(["token"]).run(), 3, LOGIN_HINT);
    plain_error(&world.latchkey(["refresh"]).run(), 3, LOGIN_HINT);
    assert_eq!(
        world.idp.counters(),
        Counters::default(),
        "no session, so no reason to contact the provider"
    );
}

#[test]
fn session_expired_when_the_refresh_is_rejected_and_the_token_is_never_sent_again() {
    let world = World::default_provider();
    world.login();
    let refresh_token = world.idp.issued(TokenKind::RefreshToken);
    assert_eq!(refresh_token.len(), 1);
    world
        .idp
        .push_faults(Endpoint::Token, Fault::InvalidGrant, 1);

    let err = world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(4, "session_expired");
    assert!(hint(&err).contains(LOGIN_HINT), "{err}");
    assert!(
        message(&err).contains("dev@example.test"),
        "names who must log in: {err}"
    );
    assert_eq!(err["retryable"], false);
    let after_reject = world.idp.counters();
    assert_eq!(after_reject.token_requests.refresh_token, 1);
    assert_eq!(after_reject.faults_served, 1);

    // Status keeps who it was and says the session is over, offline.
    let status = world.latchkey(["status", "--json"]).run();
    let doc = status.ok().json();
    assert_eq!(doc["session_expired"], true, "{doc}");
    assert_eq!(doc["logged_in"], false, "{doc}");
    assert_eq!(doc["user"]["email"], "dev@example.test", "{doc}");
    assert_eq!(doc["user"]["sub"], "fake-user-0001", "{doc}");
    assert_eq!(doc["has_refresh_token"], false, "{doc}");
    let plain_status = world.latchkey(["status"]).run();
    plain_status.ok();
    assert!(
        plain_status.stdout.contains("has expired") && plain_status.stdout.contains(LOGIN_HINT),
        "{plain_status:#?}"
    );

    // From now on every command answers session_expired without asking the provider.
    let err = world
        .latchkey(["token", "--json"])
        .run()
        .json_error(4, "session_expired");
    assert!(hint(&err).contains(LOGIN_HINT), "{err}");
    plain_error(&world.latchkey(["token"]).run(), 4, LOGIN_HINT);
    world
        .latchkey(["token", "--min-ttl", "999999", "--json"])
        .run()
        .json_error(4, "session_expired");
    world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(4, "session_expired");
    assert_eq!(
        world.idp.counters(),
        after_reject,
        "an expired session contacted the provider again"
    );
    // The rejected refresh token was presented exactly once, ever.
    let print = fingerprint(&refresh_token[0]);
    let presented = world
        .idp
        .request_log()
        .iter()
        .filter(|r| r.refresh_token_sha256.as_deref() == Some(print.as_str()))
        .count();
    assert_eq!(presented, 1, "a rejected refresh token was sent again");
}

#[test]
fn forbidden_is_never_reported_as_a_server_error() {
    let world = World::default_provider();
    world.login();
    let vault = world.vault_bytes().expect("logged in");
    world
        .idp
        .push_faults(Endpoint::Token, Fault::Forbidden403, 2);
    let err = world
        .latchkey(["refresh", "--json"])
        .run()
        .json_error(5, "forbidden");
    assert!(hint(&err).contains("administrator"), "{err}");
    assert_eq!(err["retryable"], false);
    plain_error(&world.latchkey(["refresh"]).run(), 5, "administrator");
    let c = world.idp.counters();
    assert_eq!((c.faults_served, c.refresh_successes), (2, 0));
    // Not a rejected grant: the session is neither expired nor rewritten.
    assert_eq!(world.vault_bytes().expect("still there"), vault);
    let status = world.latchkey(["status", "--json"]).run();
    assert_eq!(status.ok().json()["logged_in"], true);
    world.latchkey(["refresh", "--json"]).run().ok();
}

#[test]
fn transport_failures_are_retryable_and_leave_the_session_alone() {
    let world = World::default_provider();
    world.login();
    let vault = world.vault_bytes().expect("logged in");
    for (fault, says) in [
        (Fault::Status503, "503"),
        (Fault::Status429, "429"),
        (Fault::ConnectionReset, "cannot reach"),
    ] {
        world.idp.push_faults(Endpoint::Token, fault, 1);
        let err = world
            .latchkey(["refresh", "--json"])
            .run()
            .json_error(6, "transport");
        assert_eq!(err["retryable"], true, "{fault:?}: {err}");
        assert!(message(&err).contains(says), "{fault:?}: {err}");
        assert!(hint(&err).contains("try again"), "{fault:?}: {err}");
    }
    world.idp.push_faults(Endpoint::Token, Fault::Status503, 1);
    plain_error(&world.latchkey(["refresh"]).run(), 6, "try again");
    let c = world.idp.counters();
    assert_eq!((c.faults_served, c.refresh_successes), (4, 0));
    assert_eq!(
        world.vault_bytes().expect("still there"),
        vault,
        "a transport failure changed the session"
    );
    world.latchkey(["refresh", "--json"]).run().ok();
}

#[test]
fn provider_down_is_transport_and_never_not_logged_in() {
    let mut world = World::default_provider();
    let login = world.login();
    let access = world.idp.issued(TokenKind::AccessToken);
    let issued = take_provider_down(&mut world);

    let refresh = world.latchkey(["refresh", "--json"]).run();
    let err = refresh.json_error(6, "transport");
    assert_eq!(err["retryable"], true, "{err}");
    assert!(message(&err).contains("cannot reach"), "{err}");
    let plain = world.latchkey(["refresh"]).run();
    plain_error(&plain, 6, "try again");
    // A login against the dead provider is a transport failure too, not "not logged in".
    let relogin = world.latchkey(["login", "--device", "--json"]).run();
    let err = relogin.json_error(6, "transport");
    assert_eq!(err["retryable"], true, "{err}");
    // The fresh token in the vault is still served: `token` needs no provider.
    let token = world.latchkey(["token"]).run();
    token.ok();
    assert_eq!(token.stdout, format!("{}\n", access[0]));
    assert_no_leaks(
        &issued,
        &[
            ("login", &login.all_output()),
            ("refresh --json", &refresh.all_output()),
            ("refresh", &plain.all_output()),
            ("login --device --json", &relogin.all_output()),
            ("token stderr", &token.stderr),
        ],
    );
}

#[test]
fn server_errors_for_500_and_malformed_json() {
    let world = World::default_provider();
    world.login();
    let vault = world.vault_bytes().expect("logged in");
    for (fault, says) in [
        (Fault::Status500, "HTTP 500"),
        (Fault::MalformedJson, "malformed"),
    ] {
        world.idp.push_faults(Endpoint::Token, fault, 1);
        let err = world
            .latchkey(["refresh", "--json"])
            .run()
            .json_error(7, "server");
        assert_eq!(err["retryable"], false, "{fault:?}: {err}");
        assert!(message(&err).contains(says), "{fault:?}: {err}");
        assert!(hint(&err).contains("misbehaved"), "{fault:?}: {err}");
    }
    world
        .idp
        .push_faults(Endpoint::Token, Fault::MalformedJson, 1);
    plain_error(&world.latchkey(["refresh"]).run(), 7, "misbehaved");
    assert_eq!(world.vault_bytes().expect("still there"), vault);
}

#[test]
fn tampered_vault_is_local_storage_and_left_byte_identical() {
    let world = World::default_provider();
    world.login();
    let path = world.home.state_dir().join("profiles/work.vault");
    let mut bytes = world.vault_bytes().expect("logged in");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).expect("the vault can be rewritten");
    let before = world.idp.counters();

    for args in [
        ["token", "--json"],
        ["refresh", "--json"],
        ["status", "--json"],
    ] {
        let err = world.latchkey(args).run().json_error(8, "local_storage");
        assert!(
            message(&err).contains(&path.display().to_string()),
            "{args:?} names the file: {err}"
        );
        assert!(hint(&err).contains("log in again"), "{args:?}: {err}");
        assert_eq!(err["retryable"], false);
    }
    let plain = world.latchkey(["token"]).run();
    plain_error(&plain, 8, "log in again");
    assert!(plain.stderr.contains(&path.display().to_string()));

    assert_eq!(
        std::fs::read(&path).expect("still there"),
        bytes,
        "the tampered vault was touched"
    );
    assert_eq!(
        world.idp.counters(),
        before,
        "an unreadable vault was sent to the provider"
    );
}

#[test]
fn a_still_valid_token_is_served_while_the_provider_fails() {
    let world = World::new(FakeIdpConfig {
        access_token_ttl: Duration::from_secs(4),
        ..FakeIdpConfig::default()
    });
    world.login();
    let access = world.idp.issued(TokenKind::AccessToken);
    assert_eq!(access.len(), 1);
    let vault = world.vault_bytes().expect("logged in");
    // Past half of the 4 s lifetime: a refresh is due, but the token is still valid.
    std::thread::sleep(Duration::from_millis(2200));
    world.idp.push_faults(Endpoint::Token, Fault::Status503, 1);
    world.idp.push_faults(Endpoint::Token, Fault::Status500, 1);
    for _ in 0..2 {
        let run = world.latchkey(["token"]).run();
        run.ok();
        assert_eq!(run.stdout, format!("{}\n", access[0]), "the old token");
    }
    let c = world.idp.counters();
    assert_eq!(
        c.token_requests.refresh_token, 2,
        "each call tried the due refresh"
    );
    assert_eq!((c.faults_served, c.refresh_successes), (2, 0));
    assert_eq!(world.vault_bytes().expect("still there"), vault);
    // Once the provider answers again, the due refresh happens.
    let run = world.latchkey(["token"]).run();
    run.ok();
    assert_ne!(run.stdout, format!("{}\n", access[0]));
    assert_eq!(world.idp.counters().refresh_successes, 1);
}

/// An HTTP server on loopback that answers every request with one fixed status line
/// and an HTML body (no OAuth error document), counting what it served.
struct Canned {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Canned {
    fn start(status_line: &'static str) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("bound");
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                read_request(&mut conn);
                let body = format!("<html><body>{status_line}</body></html>");
                let answer = format!(
                    "HTTP/1.1 {status_line}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                // A client that hung up early is that test's failure to report, not ours.
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        Canned { addr, hits, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag; failing means it is gone already.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request (headers, then a Content-Length body) so the answer does not
/// race the client's write.
fn read_request(conn: &mut TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

const PLANTED_ACCESS: &str = "fk_at_categoriesPlantedAccess01";
const PLANTED_REFRESH: &str = "fk_rt_categoriesPlantedRefresh1";

/// A home whose `work` profile and stored session both point at `issuer`, with the
/// token endpoint at `{issuer}/token`.
fn planted_home(issuer: &str) -> Home {
    let home = Home::new();
    home.latchkey([
        "profile",
        "add",
        "work",
        "--issuer",
        issuer,
        "--client-id",
        CLIENT_ID,
    ])
    .run()
    .ok();
    let config = std::fs::read_to_string(home.config_file()).expect("the config exists");
    std::fs::write(
        home.config_file(),
        config + "\n[vault]\nscrypt_log_n = 10\n",
    )
    .expect("the config is writable");
    let vault = Vault::new(
        home.state_dir(),
        KdfParams::Scrypt {
            log_n: 10,
            r: 8,
            p: 1,
        },
    );
    let lock = vault
        .lock("work", Duration::from_secs(5))
        .expect("the lock is free");
    let now = latchkey_daemon::vault::unix_now();
    let session = SessionRecord {
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        access_token: Secret::new(PLANTED_ACCESS),
        token_type: "Bearer".into(),
        expires_at: Some(now + 3600),
        issued_at: now,
        refresh_token: Some(Secret::new(PLANTED_REFRESH)),
        id_token: None,
        scopes: vec!["openid".into()],
        user: None,
        groups: vec![],
        expired: false,
        logged_in_at: Some(now),
        token_endpoint: Some(format!("{issuer}/token")),
        revocation_endpoint: None,
        userinfo_endpoint: None,
        token_auth: None,
        revocation_auth: None,
    };
    vault.store(&lock, &session).expect("the session is stored");
    home
}

#[test]
fn gateway_and_bare_statuses_map_to_their_categories() {
    for (status_line, code, category, retryable) in [
        ("502 Bad Gateway", 6, "transport", true),
        ("504 Gateway Timeout", 6, "transport", true),
        ("403 Forbidden", 5, "forbidden", false),
        ("500 Internal Server Error", 7, "server", false),
        ("418 I'm a teapot", 7, "server", false),
    ] {
        let server = Canned::start(status_line);
        let home = planted_home(&server.url());
        let vault = home.state_dir().join("profiles/work.vault");
        let before = std::fs::read(&vault).expect("planted");
        let run = home.latchkey(["refresh", "--json"]).run();
        let err = run.json_error(code, category);
        assert_eq!(err["retryable"], retryable, "{status_line}: {err}");
        let status = &status_line[..3];
        assert!(message(&err).contains(status), "{status_line}: {err}");
        assert!(err["hint"].is_string(), "{status_line}: {err}");
        assert_eq!(server.hits(), 1, "{status_line}: one request, no retry");
        assert_eq!(std::fs::read(&vault).expect("still there"), before);
        assert_no_leaks(
            &[PLANTED_ACCESS, PLANTED_REFRESH],
            &[(status_line, &run.all_output())],
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn internal_when_the_answer_cannot_be_written() {
    use std::process::Stdio;
    let home = Home::new();
    home.latchkey([
        "profile",
        "add",
        "work",
        "--issuer",
        "http://127.0.0.1:9",
        "--client-id",
        "x",
    ])
    .run()
    .ok();
    for json in [false, true] {
        let mut args = vec!["profile", "list"];
        if json {
            args.push("--json");
        }
        let mut cmd = home.latchkey(args).into_command();
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux");
        cmd.stdout(full).stderr(Stdio::piped());
        let run = Run::from(cmd.output().expect("the binary runs"));
        run.code(1);
        if !json {
            assert!(
                run.stderr.starts_with("error: cannot write the output"),
                "{run:#?}"
            );
        }
    }
}
