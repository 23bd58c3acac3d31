//! The kubectl credential plugin with the machine's kubectl (docs/behaviour.md,
//! "Credential helpers"): `kubectl get --raw /api` against a loopback https
//! server that takes only a current ID token of the provider, through the
//! kubeconfig `exec` stanza; ten kubectl processes at expiry cause one refresh;
//! without a session and `interactiveMode: Never`, kubectl fails with Latchkey's
//! one line and no browser is opened.

use std::path::{Path, PathBuf};
use std::time::Duration;

use latchkey_tests::fake_idp::{FakeIdpConfig, TokenKind};
use latchkey_tests::harness::{Run, World, bin};
use latchkey_tests::kube_server::{self, KubeServer};

/// A kube API server checking ID tokens against the world's provider; `None`
/// (after a notice) without kubectl, which fails the run under CI.
fn kube_world(world: &World) -> Option<KubeServer> {
    if !kube_server::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is missing under CI"
        );
        eprintln!("skipped: kubectl is missing");
        return None;
    }
    Some(KubeServer::start(world.idp.id_token_check()))
}

fn kubeconfig(world: &World, server: &KubeServer, mode: &str) -> PathBuf {
    server.kubeconfig(
        world.home.path(),
        &bin("latchkey"),
        &["kube-credential"],
        mode,
    )
}

/// `kubectl get --raw /api` with `config`, its output in the leak check.
fn kubectl(world: &World, config: &Path, extra_env: &[(&str, &str)]) -> std::process::Command {
    let cache = world.home.path().join("kube-cache");
    let mut cmd = world
        .home
        .command(
            "kubectl",
            [
                "--kubeconfig",
                &config.display().to_string(),
                "--cache-dir",
                &cache.display().to_string(),
                "--request-timeout",
                "30s",
                "get",
                "--raw",
                "/api",
            ],
        )
        .into_command();
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

fn run(world: &World, label: &str, mut cmd: std::process::Command) -> Run {
    let run = Run::from(cmd.output().expect("kubectl can be spawned"));
    world.capture(label, &run, false);
    run
}

#[test]
fn kubectl_reaches_the_api_with_the_id_token() {
    let world = World::default_provider();
    let Some(server) = kube_world(&world) else {
        return;
    };
    world.login();
    world.start_daemon();
    let config = kubeconfig(&world, &server, "Never");
    let got = run(
        &world,
        "kubectl get --raw /api",
        kubectl(&world, &config, &[]),
    );
    got.ok();
    assert!(got.stdout.contains("APIVersions"), "{}", got.stdout);
    let (requests, refused) = server.counts();
    assert!(requests >= 1);
    assert_eq!(refused, 0, "the first token was accepted");
    let kubeconfig_text = std::fs::read_to_string(&config).expect("kubeconfig");
    assert!(!kubeconfig_text.contains(&world.newest(TokenKind::IdToken)));

    // The plugin itself, as kubectl runs it: the version asked for, the ID token
    // (or the access token), told to expire a minute before the token does.
    let exec_info = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;
    let plugin = |args: &[&str]| {
        let mut all = vec!["kube-credential"];
        all.extend_from_slice(args);
        let run = world
            .home
            .latchkey(all)
            .env("KUBERNETES_EXEC_INFO", exec_info)
            .run();
        world.capture_text("kube-credential stderr", &run.stderr);
        run.ok();
        serde_json::from_str::<serde_json::Value>(&run.stdout).expect("an ExecCredential")
    };
    let id = plugin(&[]);
    assert_eq!(id["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(id["kind"], "ExecCredential");
    assert_eq!(id["status"]["token"], world.newest(TokenKind::IdToken));
    let access = plugin(&["--access-token"]);
    assert_eq!(
        access["status"]["token"],
        world.newest(TokenKind::AccessToken)
    );
    let expiry = |doc: &serde_json::Value| {
        humantime::parse_rfc3339(doc["status"]["expirationTimestamp"].as_str().expect("one"))
            .expect("RFC 3339")
    };
    let session = world
        .latchkey(["status", "--json"])
        .run()
        .json()
        .get("expires_at")
        .and_then(|v| v.as_str())
        .map(|s| humantime::parse_rfc3339(s).expect("RFC 3339"))
        .expect("an expiry");
    assert_eq!(
        session.duration_since(expiry(&access)).ok(),
        Some(Duration::from_secs(60)),
        "a minute early"
    );
    // Without KUBERNETES_EXEC_INFO (older kubectl): v1beta1.
    let old = world.home.latchkey(["kube-credential"]).run();
    world.capture_text("kube-credential stderr", &old.stderr);
    old.ok();
    assert!(old.stdout.contains("client.authentication.k8s.io/v1beta1"));
}

#[test]
fn ten_kubectl_processes_at_expiry_cause_one_refresh() {
    // ID tokens living 2 s: at once within the plugin's two minutes, so the
    // first kubectl must renew; later ones live an hour.
    let world = World::new(FakeIdpConfig {
        access_token_ttl: Duration::from_secs(2),
        ..FakeIdpConfig::default()
    });
    let Some(server) = kube_world(&world) else {
        return;
    };
    world.login();
    world
        .idp
        .set_config(|c| c.access_token_ttl = Duration::from_secs(3600));
    let before = world.idp.counters();
    let config = kubeconfig(&world, &server, "Never");
    // No daemon: ten embedded engines meet at the profile's lock.
    let children: Vec<_> = (0..10)
        .map(|_| {
            kubectl(&world, &config, &[("LATCHKEY_NO_DAEMON", "1")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kubectl can be spawned")
        })
        .collect();
    for child in children {
        let got = Run::from(child.wait_with_output().expect("kubectl ends"));
        world.capture("kubectl (parallel)", &got, false);
        got.ok();
        assert!(got.stdout.contains("APIVersions"), "{}", got.stdout);
    }
    let after = world.idp.counters();
    assert_eq!(
        after.token_requests.refresh_token - before.token_requests.refresh_token,
        1,
        "exactly one refresh at the provider"
    );
    assert_eq!(after.reuse_detections, 0);
    assert_eq!(server.counts().1, 0, "no request was refused");
}

#[test]
fn never_interactive_without_a_session_fails_in_one_line() {
    let world = World::default_provider();
    let Some(server) = kube_world(&world) else {
        return;
    };
    let opened = world.home.path().join("browser-opened");
    let browser = world.browser_script(
        "marker-browser.sh",
        &format!("touch '{}'", opened.display()),
    );
    let config = kubeconfig(&world, &server, "Never");
    let browser = browser.display().to_string();
    let got = run(
        &world,
        "kubectl without a session",
        kubectl(&world, &config, &[("LATCHKEY_BROWSER", &browser)]),
    );
    assert_ne!(got.code, 0, "kubectl fails");
    assert!(
        got.stderr.contains("latchkey login --profile work"),
        "{}",
        got.stderr
    );
    assert!(!opened.exists(), "no browser was opened");

    // The plugin alone: exit 1, nothing on stdout, one line on stderr.
    let plugin = world
        .home
        .latchkey(["kube-credential"])
        .env(
            "KUBERNETES_EXEC_INFO",
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
        )
        .env("LATCHKEY_BROWSER", &browser)
        .run();
    world.capture_text("kube-credential stderr", &plugin.stderr);
    plugin.code(1);
    assert_eq!(plugin.stdout, "");
    assert_eq!(plugin.stderr.lines().count(), 1, "{}", plugin.stderr);
    assert!(!opened.exists(), "no browser was opened");
}

#[test]
fn a_session_without_an_id_token_says_so_and_the_access_token_still_serves() {
    let world = World::new(FakeIdpConfig {
        id_token: false,
        ..FakeIdpConfig::default()
    });
    world.login();
    let plugin = |args: &[&str], no_daemon: bool| {
        let mut all = vec!["kube-credential"];
        all.extend_from_slice(args);
        let mut cmd = world.home.latchkey(all);
        if no_daemon {
            cmd = cmd.env("LATCHKEY_NO_DAEMON", "1");
        }
        let run = cmd.run();
        world.capture_text("kube-credential stderr", &run.stderr);
        run
    };
    world.start_daemon();
    for no_daemon in [false, true] {
        let run = plugin(&[], no_daemon);
        run.code(1);
        assert_eq!(run.stdout, "");
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(run.stderr.contains("no ID token"), "{}", run.stderr);
        assert!(run.stderr.contains("--access-token"), "{}", run.stderr);
        let run = plugin(&["--access-token"], no_daemon);
        run.ok();
        assert!(run.stdout.contains(&world.newest(TokenKind::AccessToken)));
    }
}
