//! Exit 1 means a bug (docs/behaviour.md, "Exit codes and error categories"): every
//! command's failure paths are driven here through the real binaries, and each must
//! end with its category's code, and with `--json` an error document of that same
//! category. The situations: no config at all, a profile never logged in (with and
//! without a daemon), an unreadable vault, the provider gone, a refresh the
//! provider rejects or answers wrongly, an API that forbids, and bad arguments for
//! every command `latchkey --help` lists.
//!
//! Two exits of 1 are not bugs but the tools' own protocols, and are held here as
//! such: `docker-credential get` for a registry it has no credential for
//! (docker-credential-helpers' "credentials not found" answer), and
//! `kube-credential` without a session when kubectl says the session is not
//! interactive (client-go treats any failure alike; one line on stderr says why).

use latchkey_tests::fake_idp::{Endpoint, FakeIdp, FakeIdpConfig, Fault};
use latchkey_tests::harness::{Home, Run, World};
use latchkey_tests::upstream::{Recorder, set_work_proxy};

/// The category every exit code stands for.
fn category(code: i32) -> &'static str {
    match code {
        2 => "usage",
        3 => "not_logged_in",
        4 => "session_expired",
        5 => "forbidden",
        6 => "transport",
        7 => "server",
        8 => "local_storage",
        other => panic!("{other} is not a failure category's code"),
    }
}

/// Asserts that `plain` (run without `--json`) and `json` (the same with `--json`)
/// both failed with `code`, `plain` with an `error:` line on stderr and `json` with
/// an error document of the code's category. `doctor` is a report, not an error:
/// its failing checks are on stdout, and its JSON is the checks document.
#[track_caller]
fn failed(args: &[&str], code: i32, plain: &Run, json: &Run) {
    assert_eq!(plain.code, code, "latchkey {args:?}: {plain:#?}");
    if args.first() == Some(&"doctor") && !plain.stderr.contains("error: ") {
        assert!(plain.stdout.contains("\nfail "), "{plain:#?}");
        json.code(code);
        let checks = json.json()["checks"].clone();
        assert!(
            checks
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["status"] == "fail")),
            "{json:#?}"
        );
        return;
    }
    assert!(
        plain.stderr.lines().any(|l| l.starts_with("error: ")),
        "latchkey {args:?} says what failed: {plain:#?}"
    );
    json.json_error(code, category(code));
}

/// Runs `args` plainly and with `--json` (first, so it never lands after a `--`)
/// in `home` and checks both.
#[track_caller]
fn in_home(home: &Home, args: &[&str], code: i32) {
    let plain = home.latchkey(args).run();
    let json = home.latchkey(["--json"].iter().chain(args)).run();
    failed(args, code, &plain, &json);
}

/// The same in a world (whose outputs join its leak check).
#[track_caller]
fn in_world(world: &World, args: &[&str], code: i32) {
    let plain = world.latchkey(args).run();
    let json = world.latchkey(["--json"].iter().chain(args)).run();
    failed(args, code, &plain, &json);
}

/// The subcommands `latchkey [GROUP] --help` lists, without `help`.
fn subcommands(home: &Home, group: &[&str]) -> Vec<String> {
    let run = home.latchkey(group.iter().chain(&["--help"])).run();
    run.code(0);
    run.stdout
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no command list in {run:#?}"))
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn bad_arguments_are_usage_errors_for_every_command() {
    let home = Home::new();
    let mut lines: Vec<Vec<String>> = vec![
        vec!["no-such-command".into()],
        vec!["--no-such-option".into()],
    ];
    let top = subcommands(&home, &[]);
    for name in [
        "token",
        "login",
        "profile",
        "daemon",
        "api",
        "docker-credential",
        "man",
    ] {
        assert!(
            top.iter().any(|c| c == name),
            "the command list was not read from --help: {top:?}"
        );
    }
    for name in &top {
        let nested = match name.as_str() {
            "profile" | "daemon" | "client-token" => subcommands(&home, &[name]),
            _ => Vec::new(),
        };
        if nested.is_empty() {
            lines.push(vec![name.clone(), "--no-such-option".into()]);
        } else {
            lines.push(vec![name.clone(), "no-such-subcommand".into()]);
            for sub in nested {
                lines.push(vec![name.clone(), sub, "--no-such-option".into()]);
            }
        }
    }
    for line in &lines {
        let args: Vec<&str> = line.iter().map(String::as_str).collect();
        in_home(&home, &args, 2);
    }
    // Values clap cannot check.
    for args in [
        &[
            "profile",
            "add",
            "bad name",
            "--issuer",
            "https://x",
            "--client-id",
            "c",
        ][..],
        &[
            "profile",
            "add",
            "w",
            "--issuer",
            "http://id.example.com",
            "--client-id",
            "c",
        ],
        &[
            "profile",
            "add",
            "w",
            "--preset",
            "keycloak",
            "--client-id",
            "c",
        ],
        &["client-token", "mint"],
        &["client-token", "mint", "--scope", "token:*"],
        &["client-token", "mint", "--scope", "everything"],
        &[
            "client-token",
            "mint",
            "--scope",
            "token:work",
            "--ttl",
            "forever",
        ],
        &["token", "--min-ttl", "-1"],
        &["token", "--format", "xml"],
        &["completions", "tcsh"],
        &["login", "--timeout", "0"],
    ] {
        in_home(&home, args, 2);
    }
    let file = home.path().join("a-file");
    std::fs::write(&file, "").expect("a file");
    let out_dir = file.join("man");
    in_home(
        &home,
        &["man", "--out-dir", out_dir.to_str().expect("utf-8")],
        2,
    );
}

#[test]
fn without_a_config_every_profile_command_is_a_usage_error() {
    let home = Home::new();
    for args in [
        &["token"][..],
        &["refresh"],
        &["status"],
        &["login"],
        &["logout"],
        &["doctor"],
        &["exec", "--", "true"],
        &["api", "/me"],
        &["kube-credential"],
        &["profile", "remove", "nope"],
        &["profile", "default", "nope"],
        &["client-token", "mint", "--scope", "token:nope"],
        &["client-token", "revoke", "abcdefghijkl"],
    ] {
        in_home(&home, args, 2);
    }
    // Status commands say "not running" and exit 3, as LSB status actions do.
    let run = home.latchkey(["daemon", "status", "--json"]).run();
    run.code(3);
    assert_eq!(run.json()["running"], false, "{run:#?}");
    // git asks the next helper; docker hears its own "not found" (exit 1, its protocol).
    let git = home
        .latchkey(["git-credential", "get"])
        .run_with_input(b"protocol=https\nhost=git.example.com\n\n");
    git.code(0);
    assert!(git.stdout.is_empty(), "{git:#?}");
    let docker = home
        .latchkey(["docker-credential", "get"])
        .run_with_input(b"registry.example.com\n");
    docker.code(1);
    assert_eq!(
        docker.stdout.trim(),
        "credentials not found in native keychain"
    );
}

#[test]
fn not_logged_in_is_3_with_and_without_a_daemon() {
    let world = World::default_provider();
    let upstream = Recorder::start();
    set_work_proxy(
        &world.home.config_file(),
        &format!("upstream = \"http://127.0.0.1:{}/v2\"", upstream.port),
    );
    let check = |world: &World| {
        for args in [
            &["token"][..],
            &["token", "--format", "header"],
            &["refresh"],
            &["exec", "--", "true"],
            &["api", "/me"],
            &["doctor"],
        ] {
            in_world(world, args, 3);
        }
        // Saying who is not logged in is not a failure.
        let status = world.latchkey(["status", "--json"]).run();
        status.code(0);
        assert_eq!(status.json()["logged_in"], false, "{status:#?}");
        let logout = world.latchkey(["logout", "--json"]).run();
        logout.code(0);
        assert_eq!(logout.json()["outcome"], "not_logged_in", "{logout:#?}");
        // kubectl's non-interactive plugin: exit 1 and one line, its protocol.
        let kube = world
            .latchkey(["kube-credential"])
            .env(
                "KUBERNETES_EXEC_INFO",
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
            )
            .run();
        kube.code(1);
        assert_eq!(kube.stderr.lines().count(), 1, "{kube:#?}");
        assert!(kube.stderr.contains("latchkey login"), "{kube:#?}");
    };
    check(&world);
    world.start_daemon();
    check(&world);
    assert!(
        upstream.seen().is_empty(),
        "a request without a session reached the API"
    );
}

#[test]
fn an_unreadable_vault_is_8_for_every_command_that_reads_it() {
    let world = World::default_provider();
    world.login();
    let path = world.vault_path();
    let mut bytes = world.vault_bytes().expect("logged in");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).expect("the vault can be rewritten");
    let check = |world: &World| {
        for args in [
            &["token"][..],
            &["refresh"],
            &["status"],
            &["exec", "--", "true"],
            &["doctor"],
        ] {
            in_world(world, args, 8);
        }
    };
    check(&world);
    world.start_daemon();
    check(&world);
    assert_eq!(
        std::fs::read(&path).expect("still there"),
        bytes,
        "a failed command touched the unreadable vault"
    );
    // Logging out is what a person does about it: nothing can be revoked, the
    // local session goes, and that is success.
    let logout = world.latchkey(["logout", "--json"]).run();
    logout.code(0);
    assert_eq!(logout.json()["outcome"], "local_only", "{logout:#?}");
    assert!(!path.exists(), "the unreadable vault is still there");
}

#[test]
fn the_provider_gone_is_6_and_never_1() {
    let mut world = World::new(FakeIdpConfig {
        access_token_ttl: std::time::Duration::from_secs(1),
        ..FakeIdpConfig::default()
    });
    world.login();
    // Expired, so no still-valid token can be served instead of a refresh.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let old = std::mem::replace(
        &mut world.idp,
        FakeIdp::start_blocking(FakeIdpConfig::default()),
    );
    old.shutdown();
    for args in [
        &["token"][..],
        &["refresh"],
        &["login", "--device"],
        &["doctor", "--server"],
    ] {
        in_world(&world, args, 6);
    }
    // A logout whose revocation cannot reach the provider still logs out locally.
    let logout = world.latchkey(["logout", "--json"]).run();
    logout.code(0);
    assert_eq!(logout.json()["outcome"], "local_only", "{logout:#?}");
}

#[test]
fn a_rejected_refresh_is_4_and_a_wrong_answer_7() {
    let world = World::default_provider();
    world.login();
    world.idp.push_faults(Endpoint::Token, Fault::Status500, 2);
    in_world(&world, &["refresh"], 7);
    world
        .idp
        .push_faults(Endpoint::Token, Fault::InvalidGrant, 1);
    let plain = world.latchkey(["refresh"]).run();
    // The session is now expired for good: every later ask says so, without
    // asking the provider again.
    let json = world
        .latchkey(["token", "--min-ttl", "99999", "--json"])
        .run();
    failed(&["refresh"], 4, &plain, &json);
    in_world(&world, &["token", "--min-ttl", "99999"], 4);
}

#[test]
fn an_api_that_forbids_is_5() {
    let world = World::default_provider();
    world.login();
    let upstream = Recorder::answering(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            .to_string(),
    );
    set_work_proxy(
        &world.home.config_file(),
        &format!("upstream = \"http://127.0.0.1:{}/v2\"", upstream.port),
    );
    let run = world.latchkey(["api", "/issues"]).run();
    run.code(5);
    world.start_daemon();
    let run = world.latchkey(["api", "/issues"]).run();
    run.code(5);
}
