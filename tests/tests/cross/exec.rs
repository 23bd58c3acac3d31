//! `latchkey exec` and `latchkey token --format` (docs/behaviour.md, "Commands"):
//! a command gets a fresh token in its environment and never sees it printed; its
//! exit code passes through.

use latchkey_tests::fake_idp::TokenKind;
use latchkey_tests::harness::World;

#[test]
fn exec_hands_the_token_to_the_command_only() {
    let world = World::default_provider();
    world.login();
    world.start_daemon();
    let run = world
        .latchkey([
            "exec",
            "--",
            "sh",
            "-c",
            "test -n \"$LATCHKEY_ACCESS_TOKEN\"",
        ])
        .run();
    run.ok();
    assert_eq!(run.stdout, "", "nothing printed");
    assert_eq!(run.stderr, "");
    // The value is the session's access token, under the name asked for.
    let access = world.newest(TokenKind::AccessToken);
    world
        .latchkey([
            "exec",
            "--env",
            "API_TOKEN",
            "--",
            "sh",
            "-c",
            "test \"$API_TOKEN\" = \"$EXPECTED\" && test -z \"$LATCHKEY_ACCESS_TOKEN\"",
        ])
        .env("EXPECTED", &access)
        .run()
        .ok();
    // The command's exit code, and its output, are its own.
    let run = world
        .latchkey(["exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7"])
        .run();
    run.code(7);
    assert_eq!(run.stdout, "out\n");
    assert_eq!(run.stderr, "err\n");
    // Without the daemon too.
    world
        .latchkey([
            "exec",
            "--",
            "sh",
            "-c",
            "test -n \"$LATCHKEY_ACCESS_TOKEN\"",
        ])
        .env("LATCHKEY_NO_DAEMON", "1")
        .run()
        .ok();
}

#[test]
fn exec_does_not_run_the_command_without_a_token() {
    let world = World::default_provider();
    let marker = world.home.path().join("ran");
    let run = world
        .latchkey([
            "exec",
            "--",
            "sh",
            "-c",
            &format!("touch {}", marker.display()),
        ])
        .run();
    run.code(3);
    assert!(run.stderr.contains("latchkey login"), "{}", run.stderr);
    assert!(!marker.exists(), "the command ran without a token");
    world.login();
    let run = world.latchkey(["exec", "--", "no-such-program-here"]).run();
    run.code(127);
    assert!(
        run.stderr.contains("cannot run no-such-program-here"),
        "{}",
        run.stderr
    );
    world
        .latchkey(["exec", "--env", "A=B", "--", "true"])
        .run()
        .code(2);
}

#[test]
fn token_formats() {
    let world = World::default_provider();
    world.login();
    let access = world.newest(TokenKind::AccessToken);
    let run = world.latchkey(["token", "--format", "header"]).run();
    run.ok();
    assert_eq!(run.stdout, format!("Authorization: Bearer {access}\n"));
    let run = world.latchkey(["token", "--format", "json"]).run();
    run.ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["access_token"], access.as_str());
    assert_eq!(doc["profile"], "work");
    let run = world.latchkey(["token", "--format", "raw"]).run();
    assert_eq!(run.stdout, format!("{access}\n"));
}
