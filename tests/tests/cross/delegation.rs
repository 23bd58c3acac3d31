//! Client tokens with the real binaries (docs/behaviour.md, "Client tokens"):
//! minting shows the secret once, scopes limit what a token reaches, the delegate
//! listeners demand a token, the TCP listener refuses web pages, the file is
//! written before anything is accepted, and the daemon sees changes made without
//! it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use latchkey_tests::harness::{Mount, World, raw_request};

/// Adds `[delegate]` to the config (before the daemon starts).
fn delegate(world: &World, toml: &str) {
    let path = world.home.config_file();
    let text = std::fs::read_to_string(&path).expect("a config");
    std::fs::write(&path, format!("{text}\n[delegate]\n{toml}\n")).expect("config written");
}

/// Mints through the CLI; returns (token, id).
fn mint(world: &World, args: &[&str]) -> (String, String) {
    let mut all = vec!["client-token", "mint", "--json"];
    all.extend_from_slice(args);
    let doc = world.latchkey(all).run().ok().json();
    (
        doc["token"].as_str().expect("a token").to_string(),
        doc["id"].as_str().expect("an id").to_string(),
    )
}

/// One request over a Unix socket: (status, head, body).
fn ask(
    socket: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, serde_json::Value) {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: latchkeyd\r\nLatchkey-Protocol: 1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_request(socket, &request).expect("an answer");
    split(&answer)
}

fn split(answer: &str) -> (u16, String, serde_json::Value) {
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let (head, payload) = answer.split_once("\r\n\r\n").expect("a head");
    let json = serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

/// One request over TCP with the given extra header lines: (status, head, body).
fn ask_tcp(addr: &str, path: &str, headers: &str) -> (u16, String, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("the TCP listener answers");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "GET {path} HTTP/1.1\r\n{headers}Latchkey-Protocol: 1\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).expect("sent");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out); // a reset after the answer still leaves it
    split(&String::from_utf8_lossy(&out))
}

fn delegate_socket(world: &World) -> PathBuf {
    world.home.path().join("run").join("delegate.sock")
}

#[test]
fn mint_prints_the_secret_once_and_nowhere_else() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let run = world
        .latchkey([
            "client-token",
            "mint",
            "--scope",
            "token:work",
            "--name",
            "ci",
        ])
        .run();
    run.ok();
    let token = run.stdout.trim().to_string();
    assert!(token.starts_with("lk_"), "{run:#?}");
    assert_eq!(
        run.stdout,
        format!("{token}\n"),
        "the token alone on stdout"
    );
    assert!(run.stderr.contains("shown this once"), "{run:#?}");
    let id = &token[3..15];
    assert!(
        run.stderr.contains(id),
        "the warning names the id: {run:#?}"
    );
    let secret = &token[16..];
    // Used once, so the audit has a line naming it.
    let (status, _, _) = ask(&world.socket(), "GET", "/v1/health", Some(&token), None);
    assert_eq!(status, 200);
    let list = world.latchkey(["client-token", "list"]).run();
    list.ok();
    let list_json = world.latchkey(["client-token", "list", "--json"]).run();
    let doc = list_json.ok().json();
    assert_eq!(doc["tokens"][0]["id"], id);
    assert_eq!(doc["tokens"][0]["name"], "ci");
    let keys: Vec<&str> = doc["tokens"][0]
        .as_object()
        .expect("a record")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "scopes"
        ],
        "the documented shape, and no secret or hash"
    );
    assert_eq!(
        doc["tokens"][0]["scopes"],
        serde_json::json!(["token:work"])
    );
    assert!(doc["tokens"][0]["last_used_at"].is_string(), "{doc}");
    world.stop_daemons();
    let logs = world.daemon_logs();
    assert!(
        logs.contains(&format!("client_token=\"{id}\" client_token_name=\"ci\"")),
        "the audit names the token: {logs}"
    );
    let state_file = std::fs::read_to_string(world.home.state_dir().join("client-tokens"))
        .expect("the token file");
    for (what, text) in [
        ("stderr of mint", run.stderr.as_str()),
        ("list", list.stdout.as_str()),
        ("list --json", list_json.stdout.as_str()),
        ("daemon logs", logs.as_str()),
        ("state/client-tokens", state_file.as_str()),
    ] {
        assert!(!text.contains(secret), "the secret appears in {what}");
    }
    assert_eq!(run.stdout.matches(secret).count(), 1);
}

#[test]
fn scopes_limit_what_a_token_reaches_and_administration_is_the_owners() {
    let world = World::default_provider();
    world.add_profile("home");
    world.login();
    world.start_daemon();
    let socket = world.socket();
    let (token_work, _) = mint(&world, &["--scope", "token:work"]);
    let (session_work, _) = mint(&world, &["--scope", "session:work"]);

    let (status, _, body) = ask(
        &socket,
        "GET",
        "/v1/profiles/work/token",
        Some(&token_work),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    for (method, path, body) in [
        ("GET", "/v1/profiles/home/token", None),
        ("GET", "/v1/profiles/work/session", None),
        ("GET", "/v1/status", None),
        ("POST", "/v1/shutdown", None),
        (
            "POST",
            "/v1/profiles/work/logout",
            Some("{\"revoke\": false}"),
        ),
        ("GET", "/v1/client-tokens", None),
        (
            "POST",
            "/v1/client-tokens",
            Some("{\"scopes\": [\"token:work\"]}"),
        ),
        ("DELETE", "/v1/client-tokens/abcdefabcdef", None),
        ("GET", "/v1/events", None),
        ("GET", "/v1/profiles", None),
        (
            "POST",
            "/v1/profiles/work/login",
            Some("{\"flow\": \"device\"}"),
        ),
    ] {
        let (status, head, doc) = ask(&socket, method, path, Some(&token_work), body);
        assert_eq!(status, 403, "{method} {path}: {doc}");
        assert_eq!(doc["error"]["category"], "forbidden", "{method} {path}");
        assert!(
            !head.contains("www-authenticate"),
            "{method} {path}: {head}"
        );
    }
    // HEAD is served by the GET handlers: it is checked as GET. A method no
    // endpoint takes is refused to a token before the router's 405.
    for (method, path) in [
        ("HEAD", "/v1/status"),
        ("HEAD", "/v1/client-tokens"),
        ("HEAD", "/v1/profiles/home/token"),
        ("HEAD", "/v1/profiles/work/session"),
        ("PUT", "/v1/profiles/work/token"),
        ("PATCH", "/v1/client-tokens"),
    ] {
        let (status, _, _) = ask(&socket, method, path, Some(&token_work), None);
        assert_eq!(status, 403, "{method} {path}");
    }
    let (status, _, _) = ask(
        &socket,
        "HEAD",
        "/v1/profiles/work/token",
        Some(&token_work),
        None,
    );
    assert_eq!(status, 200, "HEAD of what the token may GET");
    // The daemon is still running: the shutdown was refused.
    assert_eq!(ask(&socket, "GET", "/v1/health", None, None).0, 200);

    let (status, _, doc) = ask(
        &socket,
        "GET",
        "/v1/profiles/work/session",
        Some(&session_work),
        None,
    );
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["logged_in"], true);
    assert!(doc.get("access_token").is_none());
    let (status, _, _) = ask(
        &socket,
        "GET",
        "/v1/profiles/work/token",
        Some(&session_work),
        None,
    );
    assert_eq!(status, 403);
    let (status, _, doc) = ask(&socket, "GET", "/v1/profiles", Some(&session_work), None);
    assert_eq!(status, 200);
    let names: Vec<&str> = doc["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["work"], "only the token's profiles are listed");

    // The same through the CLI, with LATCHKEY_CLIENT_TOKEN.
    let run = world
        .latchkey(["token", "--profile", "work"])
        .env("LATCHKEY_CLIENT_TOKEN", &token_work)
        .run();
    run.ok();
    let run = world
        .latchkey(["token", "--profile", "home", "--json"])
        .env("LATCHKEY_CLIENT_TOKEN", &token_work)
        .run();
    run.json_error(5, "forbidden");
    let run = world
        .latchkey(["client-token", "list", "--json"])
        .env("LATCHKEY_CLIENT_TOKEN", &token_work)
        .run();
    run.json_error(5, "forbidden");
}

#[test]
fn unknown_revoked_and_expired_tokens_are_401_invalid_token() {
    let world = World::default_provider();
    world.login();
    let (revoked, revoked_id) = mint(&world, &["--scope", "token:work"]);
    let (short, _) = mint(&world, &["--scope", "token:work", "--ttl", "1s"]);
    delegate(&world, "socket = true");
    world.start_daemon();
    let socket = delegate_socket(&world);
    world
        .latchkey(["client-token", "revoke", &revoked_id])
        .run()
        .ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let unknown = format!("lk_{}_{}", "a".repeat(12), "A".repeat(43));
    for (what, token) in [
        ("unknown", unknown.as_str()),
        ("revoked", revoked.as_str()),
        ("expired", short.as_str()),
        ("not a client token", "eyJhbGciOi.x.y"),
    ] {
        let (status, head, doc) = ask(&socket, "GET", "/v1/profiles/work/token", Some(token), None);
        assert_eq!(status, 401, "{what}: {doc}");
        assert!(
            head.contains("www-authenticate: bearer realm=\"latchkey\", error=\"invalid_token\""),
            "{what}: {head}"
        );
        assert!(doc["error"]["category"].is_string(), "{what}: {doc}");
    }
    // No token on the delegate socket: 401 without error=.
    let (status, head, doc) = ask(&socket, "GET", "/v1/health", None, None);
    assert_eq!(status, 401, "{doc}");
    assert!(
        head.contains("www-authenticate: bearer realm=\"latchkey\"\r\n")
            || head.ends_with("www-authenticate: bearer realm=\"latchkey\""),
        "{head}"
    );
    assert!(!head.contains("invalid_token"), "{head}");
    assert_eq!(doc["error"]["category"], "forbidden");
    // The audit names the refused token by its id (public), never its secret.
    world.stop_daemons();
    let logs = world.daemon_logs();
    assert!(
        logs.contains(&format!("client_token=\"{revoked_id}\"")),
        "{logs}"
    );
    assert!(
        !logs.contains(&revoked[16..]),
        "the secret stays out of the log"
    );
    // Revoking again: a usage error.
    world
        .latchkey(["client-token", "revoke", &revoked_id, "--json"])
        .run()
        .json_error(2, "usage");
}

#[test]
fn the_tcp_listener_needs_a_token_the_right_host_and_no_origin() {
    let world = World::default_provider();
    world.login();
    let port = latchkey_tests::harness::free_loopback_port();
    let addr = format!("127.0.0.1:{port}");
    delegate(&world, &format!("listen = \"{addr}\""));
    world.start_daemon();
    let (token, _) = mint(&world, &["--scope", "token:work"]);
    let host = format!("Host: {addr}\r\n");
    let auth = format!("Authorization: Bearer {token}\r\n");
    let path = "/v1/profiles/work/token";

    let (status, head, _) = ask_tcp(&addr, path, &host);
    assert_eq!(status, 401);
    assert!(
        head.contains("www-authenticate: bearer realm=\"latchkey\""),
        "{head}"
    );
    let (status, _, doc) = ask_tcp(&addr, path, &format!("{host}{auth}"));
    assert_eq!(status, 200, "{doc}");
    assert!(doc["access_token"].is_string());
    let (status, _, _) = ask_tcp(&addr, path, &format!("Host: localhost:{port}\r\n{auth}"));
    assert_eq!(status, 200);
    for headers in [
        format!("Host: evil.example:{port}\r\n{auth}"),
        format!("Host: 127.0.0.1\r\n{auth}"),
        auth.clone(),
        format!("{host}{auth}Origin: http://127.0.0.1:{port}\r\n"),
        format!("{host}{auth}Origin: null\r\n"),
    ] {
        let (status, _, doc) = ask_tcp(&addr, path, &headers);
        assert_eq!(status, 403, "{headers:?}: {doc}");
        assert!(doc.get("access_token").is_none());
    }
}

#[test]
fn wildcards_unknown_scopes_and_unknown_profiles_are_refused_at_mint() {
    let world = World::default_provider();
    for scope in ["token:*", "admin:work", "*:work", "token", "token:wo*k"] {
        world
            .latchkey(["client-token", "mint", "--scope", scope, "--json"])
            .run()
            .json_error(2, "usage");
    }
    world
        .latchkey(["client-token", "mint", "--scope", "token:nope", "--json"])
        .run()
        .json_error(2, "usage");
    world
        .latchkey(["client-token", "mint", "--json"])
        .run()
        .json_error(2, "usage");
    assert!(!world.home.state_dir().join("client-tokens").exists());
    // And over the API.
    world.start_daemon();
    for body in [
        r#"{"scopes": ["token:*"]}"#,
        r#"{"scopes": ["root:work"]}"#,
        r#"{"scopes": []}"#,
        r#"{"scopes": ["token:work"], "admin": true}"#,
    ] {
        let (status, _, doc) = ask(
            &world.socket(),
            "POST",
            "/v1/client-tokens",
            None,
            Some(body),
        );
        assert_eq!(status, 400, "{body}: {doc}");
        assert_eq!(doc["error"]["category"], "usage", "{body}");
    }
}

#[test]
fn twenty_parallel_mints_from_separate_processes_all_survive() {
    let world = World::default_provider();
    let children: Vec<_> = (0..20)
        .map(|i| {
            world
                .latchkey([
                    "client-token",
                    "mint",
                    "--scope",
                    "token:work",
                    "--name",
                    &format!("p{i}"),
                    "--json",
                ])
                .env("LATCHKEY_NO_DAEMON", "1")
                .spawn()
        })
        .collect();
    let mut tokens = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("mint ran");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        tokens.push(doc["token"].as_str().expect("token").to_string());
    }
    let list = world
        .latchkey(["client-token", "list", "--json"])
        .run()
        .ok()
        .json();
    assert_eq!(list["tokens"].as_array().map(Vec::len), Some(20), "{list}");
    world.login();
    world.start_daemon();
    for t in &tokens {
        let (status, _, _) = ask(
            &world.socket(),
            "GET",
            "/v1/profiles/work/token",
            Some(t),
            None,
        );
        assert_eq!(status, 200);
    }
}

#[test]
fn a_read_only_state_folder_changes_nothing_with_and_without_the_daemon() {
    let world = World::default_provider();
    world.login();
    let (kept, kept_id) = mint(&world, &["--scope", "token:work"]);
    world.start_daemon();
    let file = world.home.state_dir().join("client-tokens");
    let before = std::fs::read(&file).expect("the token file");
    let Some(_ro) = Mount::read_only(&world.home.state_dir()) else {
        return;
    };
    for no_daemon in ["0", "1"] {
        let run = world
            .latchkey(["client-token", "mint", "--scope", "token:work", "--json"])
            .env("LATCHKEY_NO_DAEMON", no_daemon)
            .run();
        run.json_error(8, "local_storage");
        let run = world
            .latchkey(["client-token", "revoke", &kept_id, "--json"])
            .env("LATCHKEY_NO_DAEMON", no_daemon)
            .run();
        run.json_error(8, "local_storage");
        assert_eq!(
            std::fs::read(&file).expect("still there"),
            before,
            "byte-identical"
        );
    }
    let (status, _, _) = ask(
        &world.socket(),
        "GET",
        "/v1/profiles/work/token",
        Some(&kept),
        None,
    );
    assert_eq!(status, 200, "the old set is still accepted");
    let list = world
        .latchkey(["client-token", "list", "--json"])
        .run()
        .ok()
        .json();
    assert_eq!(
        list["tokens"].as_array().map(Vec::len),
        Some(1),
        "nothing new: {list}"
    );
}

#[test]
fn the_daemon_honours_mints_and_revocations_made_without_it() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let socket = world.socket();
    let (token, id) = {
        let doc = world
            .latchkey(["client-token", "mint", "--scope", "token:work", "--json"])
            .env("LATCHKEY_NO_DAEMON", "1")
            .run()
            .ok()
            .json();
        (
            doc["token"].as_str().expect("token").to_string(),
            doc["id"].as_str().expect("id").to_string(),
        )
    };
    let (status, _, _) = ask(
        &socket,
        "GET",
        "/v1/profiles/work/token",
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "minted without the daemon, accepted at once");
    world
        .latchkey(["client-token", "revoke", &id])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .ok();
    let (status, _, _) = ask(
        &socket,
        "GET",
        "/v1/profiles/work/token",
        Some(&token),
        None,
    );
    assert_eq!(
        status, 401,
        "revoked without the daemon, refused on the next request"
    );
}

/// Another uid (setpriv): nothing from the main socket; exactly its token's scopes
/// through the delegate socket.
#[test]
fn another_uid_gets_exactly_its_scopes_through_the_delegate_socket() {
    let world = World::default_provider();
    world.add_profile("home");
    world.login();
    // A folder others can traverse but not write, for the delegate socket.
    let dir = tempfile::Builder::new()
        .prefix("latchkey-delegate-")
        .tempdir()
        .expect("a folder");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("mode");
    }
    let shared = dir.path().join("delegate.sock");
    delegate(&world, &format!("socket = \"{}\"", shared.display()));
    world.start_daemon();
    let (token, _) = mint(&world, &["--scope", "token:work"]);
    let as_nobody = |socket: &Path, args: &[&str], token: Option<&str>| {
        let mut cmd = world.home.command(
            "setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "--"]
                .into_iter()
                .chain([latchkey_tests::harness::bin("latchkey")
                    .to_str()
                    .expect("utf-8")])
                .chain(args.iter().copied()),
        );
        cmd = cmd
            .env("LATCHKEY_SOCKET", socket)
            .env("HOME", "/nonexistent");
        if let Some(t) = token {
            cmd = cmd.env("LATCHKEY_CLIENT_TOKEN", t);
        }
        cmd.run()
    };
    let issued = world.newest(latchkey_tests::fake_idp::TokenKind::AccessToken);
    // The main socket, even with the token: the folder and the peer check keep
    // another uid out.
    let run = as_nobody(
        &world.socket(),
        &["token", "--profile", "work"],
        Some(&token),
    );
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!run.stdout.contains(&issued));
    let run = as_nobody(&world.socket(), &["token", "--profile", "work"], None);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!run.all_output().contains(&issued));
    // The delegate socket: exactly token:work.
    let run = as_nobody(&shared, &["token", "--profile", "work"], Some(&token));
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout.trim(), issued);
    assert!(!run.stderr.contains(&issued));
    for args in [
        &["token", "--profile", "home", "--json"][..],
        &["status", "--profile", "work", "--json"][..],
        &["client-token", "list", "--json"][..],
        &["daemon", "status", "--json"][..],
    ] {
        let run = as_nobody(&shared, args, Some(&token));
        assert_eq!(run.code, 5, "{args:?}: {run:#?}");
        assert!(!run.all_output().contains(&issued));
    }
    let run = as_nobody(&shared, &["token", "--profile", "work"], None);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(!run.all_output().contains(&issued));
}

/// A client token's event stream shows its profiles' events, and ends at the first
/// event after the token was revoked: a revocation reaches open streams too.
#[test]
fn an_event_stream_ends_when_its_token_is_revoked() {
    use std::io::BufRead;
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let (token, id) = mint(&world, &["--scope", "session:work"]);
    let mut stream =
        std::os::unix::net::UnixStream::connect(world.socket()).expect("the daemon listens");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .expect("timeout");
    write!(
        stream,
        "GET /v1/events HTTP/1.1\r\nHost: latchkeyd\r\nLatchkey-Protocol: 1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut reader = std::io::BufReader::new(stream);
    let mut seen = String::new();
    let read_until = |reader: &mut std::io::BufReader<std::os::unix::net::UnixStream>,
                      seen: &mut String,
                      needle: &str| {
        while !seen.contains(needle) {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return false,
                Ok(_) => seen.push_str(&line),
            }
        }
        true
    };
    assert!(read_until(&mut reader, &mut seen, "subscribed"), "{seen}");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    world.latchkey(["refresh"]).run().ok();
    assert!(
        read_until(&mut reader, &mut seen, "\"change\":\"refresh\""),
        "the token's profile's event arrives: {seen}"
    );
    world.latchkey(["client-token", "revoke", &id]).run().ok();
    world.latchkey(["refresh"]).run().ok();
    let before = seen.matches("\"change\":\"refresh\"").count();
    // The end of the stream, within 10 s (reads time out every 2 s to check).
    reader
        .get_ref()
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .expect("timeout");
    let start = std::time::Instant::now();
    let mut rest = String::new();
    let mut ended = false;
    while start.elapsed() < std::time::Duration::from_secs(10) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(_) => rest.push_str(&line),
            Err(_) => {}
        }
    }
    assert!(
        ended,
        "the stream is still open after the revocation: {rest}"
    );
    assert_eq!(before, 1);
    assert!(
        !rest.contains("\"change\""),
        "no event after the revocation: {rest}"
    );
}
