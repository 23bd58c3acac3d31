//! The README's "When something goes wrong" runs as written: every `sh` block of the
//! section, in order, with bash (`-euo pipefail`) and this build's binaries first on
//! PATH, against a logged-in `work` profile whose daemon the CLI started itself (so
//! it logs to `latchkeyd.log`, as it does for a person). Each step must succeed and
//! show what the README says it shows; everything printed, and the daemon's log,
//! joins the leak check.

use std::path::Path;

use latchkey_tests::fake_idp::TokenKind;
use latchkey_tests::harness::{World, bin_dir};
use latchkey_tests::readme;

const SECTION: &str = "## When something goes wrong";

/// The section's `sh` blocks, in order.
fn steps() -> Vec<String> {
    readme::blocks(&readme::section(SECTION))
        .into_iter()
        .filter(|b| b.lang == "sh")
        .map(|b| b.text)
        .collect()
}

/// Stops the daemon the CLI started, however the test ends.
struct StopDaemon<'w>(&'w World);

impl Drop for StopDaemon<'_> {
    fn drop(&mut self) {
        self.0.latchkey(["daemon", "stop"]).run();
    }
}

#[test]
fn every_step_runs_as_written_and_shows_what_it_says() {
    let steps = steps();
    assert_eq!(steps.len(), 7, "the README's steps: {steps:#?}");
    let world = World::default_provider();
    world.login();
    let _stop = StopDaemon(&world);
    world
        .latchkey(["daemon", "start"])
        .env_remove("LATCHKEY_NO_AUTOSTART")
        .run()
        .ok();
    let first_token = world.newest(TokenKind::AccessToken);
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut runs = Vec::new();
    for step in &steps {
        let run = world
            .home
            .command("bash", ["-euo", "pipefail", "-c", step])
            .env("PATH", &path)
            .env_remove("LATCHKEY_NO_AUTOSTART")
            .run();
        world.capture(step.trim(), &run, false);
        assert_eq!(run.code, 0, "{step}: {run:#?}");
        runs.push(run);
    }

    let status = &runs[0];
    assert!(
        status.stdout.contains("Profile work: logged in"),
        "{status:#?}"
    );
    assert!(status.stdout.contains("running, pid"), "{status:#?}");

    let doctor = &runs[1];
    assert!(doctor.stdout.contains("ok    vault"), "{doctor:#?}");
    assert!(!doctor.stdout.contains("\nfail "), "{doctor:#?}");

    let server = &runs[2];
    assert!(server.stdout.contains("ok    userinfo"), "{server:#?}");

    let debug = &runs[3];
    assert!(
        debug.stderr.contains("DEBUG latchkeyd answered"),
        "LATCHKEY_LOG=debug says the daemon answered: {debug:#?}"
    );

    let daemon = &runs[4];
    let log = daemon
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("log: "))
        .unwrap_or_else(|| panic!("daemon status says where it logs: {daemon:#?}"));
    assert_eq!(
        Path::new(log),
        world.home.path().join("run/latchkeyd.log"),
        "{daemon:#?}"
    );
    let text = std::fs::read_to_string(log).expect("the daemon's log");
    world.capture_text("latchkeyd.log", &text);
    assert!(
        text.lines()
            .any(|l| l.contains("token") && l.contains("served")),
        "the log has the audit line of step 4's token request: {text}"
    );

    let bypass = &runs[5];
    assert!(
        bypass
            .stdout
            .contains("the session works without the daemon"),
        "{bypass:#?}"
    );
    assert!(bypass.stdout.contains("restarted"), "{bypass:#?}");

    let over = &runs[6];
    assert!(
        over.stdout.contains("Logged out of work"),
        "the old session ended: {over:#?}"
    );
    assert!(world.idp.counters().revocations >= 1, "it was revoked");
    let now = world.latchkey(["status", "--json"]).run();
    assert_eq!(now.json()["logged_in"], true, "logged in again: {now:#?}");
    assert_ne!(
        world.newest(TokenKind::AccessToken),
        first_token,
        "a new session"
    );
}
