//! The docker credential helper driven as docker drives it (the protocol of
//! docker-credential-helpers: the operation as the argument, the request on stdin,
//! the answer on stdout, exit 1 with docker's own words for "not found"), under
//! both of its names.

use latchkey_tests::fake_idp::TokenKind;
use latchkey_tests::harness::{Run, World, bin};

/// Runs the helper as `program` (a path) with `operation` and `input` on stdin.
fn helper(world: &World, program: &std::path::Path, operation: &str, input: &str) -> Run {
    let run = world
        .home
        .command(program, [operation])
        .run_with_input(input.as_bytes());
    world.capture_text(
        &format!("docker-credential {operation} stderr"),
        &run.stderr,
    );
    if operation != "get" {
        world.capture_text(
            &format!("docker-credential {operation} stdout"),
            &run.stdout,
        );
    }
    run
}

/// `docker-credential-latchkey`, installed by packaging's script as a link to the
/// latchkey binary.
fn linked(world: &World) -> std::path::PathBuf {
    let script = latchkey_tests::oidc_provider::workspace_root()
        .join("packaging")
        .join("install-helper-links");
    let dir = world.home.path().join("bin");
    std::fs::create_dir_all(&dir).expect("a bin folder");
    let out = std::process::Command::new(script)
        .arg(&dir)
        .arg(bin("latchkey"))
        .output()
        .expect("the script runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("git-credential-latchkey").exists());
    dir.join("docker-credential-latchkey")
}

fn with_registries(world: &World) {
    world.set_work_keys("docker_registries = [\"registry.example.com\", \"127.0.0.1:5000\"]");
}

#[test]
fn get_answers_the_token_for_a_listed_registry_and_not_found_otherwise() {
    let world = World::default_provider();
    with_registries(&world);
    world.login();
    world.start_daemon();
    let program = linked(&world);
    let access = world.newest(TokenKind::AccessToken);

    let run = helper(
        &world,
        &program,
        "get",
        "https://registry.example.com/v1/\n",
    );
    run.ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["ServerURL"], "https://registry.example.com/v1/");
    assert_eq!(doc["Username"], "oauth2accesstoken");
    assert_eq!(doc["Secret"], access.as_str());
    // A port, and the plain `latchkey docker-credential` form.
    let run = helper(&world, &bin("latchkey"), "get", "127.0.0.1:5000");
    assert_eq!(run.code, 2, "the plain binary needs the subcommand");
    let run = world
        .home
        .latchkey(["docker-credential", "get"])
        .run_with_input(b"127.0.0.1:5000");
    run.ok();

    // Not ours: docker's not-found answer, exactly.
    let run = helper(&world, &program, "get", "https://index.docker.io/v1/\n");
    run.code(1);
    assert_eq!(run.stdout, "credentials not found in native keychain\n");

    // list and version.
    let run = helper(&world, &program, "list", "");
    run.ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["registry.example.com"], "oauth2accesstoken");
    assert_eq!(doc["127.0.0.1:5000"], "oauth2accesstoken");
    let run = helper(&world, &program, "version", "");
    run.ok();
    assert!(
        run.stdout.starts_with("docker-credential-latchkey"),
        "{}",
        run.stdout
    );
}

#[test]
fn store_keeps_nothing_erase_refreshes_and_no_session_is_not_found() {
    let world = World::default_provider();
    with_registries(&world);
    world.login();
    let program = linked(&world);
    let before = world.stored_session();
    let run = helper(
        &world,
        &program,
        "store",
        r#"{"ServerURL":"registry.example.com","Username":"x","Secret":"not-kept"}"#,
    );
    run.ok();
    assert_eq!(run.stdout, "");
    let after = world.stored_session();
    assert_eq!(before.access_token.expose(), after.access_token.expose());

    let run = helper(&world, &program, "erase", "registry.example.com");
    run.ok();
    assert_eq!(world.idp.counters().refresh_successes, 1, "erase renews");
    assert_ne!(
        world.stored_session().access_token.expose(),
        before.access_token.expose()
    );

    world.latchkey(["logout", "--local"]).run().ok();
    let run = helper(&world, &program, "get", "registry.example.com");
    run.code(1);
    assert_eq!(run.stdout, "credentials not found in native keychain\n");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("latchkey login --profile work"),
        "{}",
        run.stderr
    );
}
