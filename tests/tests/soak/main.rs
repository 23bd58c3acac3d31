//! The deterministic fault tests (docs/behaviour.md, "Reliability under faults") that
//! the cross tests do not already cover (docs/soak.md lists which existing test proves
//! each other item). The random kill -9 soak is a separate binary, `scripts/soak`.
//!
//! - `storage`: a full disk (a small tmpfs) and a read-only state folder (a read-only
//!   bind mount) during refresh and login;
//! - `vault`: truncated, corrupt and wrong-key vaults;
//! - `folders`: state and runtime folders with the wrong owner or mode;
//! - `provider`: a provider slower than the HTTP timeout;
//! - `socket`: slow clients and a connection flood on the daemon's socket;
//! - `unsaved`: sessions the provider rotated and the disk refused: never lost while
//!   a daemon holds them, never back after a logout, their spent refresh token
//!   never sent by anyone.
//!
//! The machines run as root, where file modes stop nothing: mounts make writes fail.
//! Where mounting is not allowed the storage tests say so and pass, except under
//! CI=true, where they fail.

mod cancel;
mod folders;
mod provider;
mod socket;
mod storage;
mod unsaved;
mod vault;

use latchkey_tests::harness::{Run, World};
use serde_json::Value;

/// The `error` object of a `--json` failure with `code` and `category`, whose message
/// names `path`.
#[track_caller]
pub(crate) fn storage_error(run: &Run, path: &std::path::Path) -> Value {
    let err = run.json_error(8, "local_storage");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&path.display().to_string()),
        "the message names {}: {err}",
        path.display()
    );
    err
}

/// The `work` vault decrypts (engine code, this home's key) and is logged in.
#[track_caller]
pub(crate) fn assert_vault_decrypts(world: &World) -> latchkey_daemon::vault::Loaded {
    let loaded = world
        .try_load_vault()
        .unwrap_or_else(|e| panic!("the vault does not decrypt: {e}"))
        .expect("a vault is there");
    assert!(!loaded.session.expired, "the stored session is usable");
    loaded
}

/// A daemon-less `latchkey` command of `world`.
/// Waits up to `limit` for `done`.
pub(crate) fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    done()
}

pub(crate) fn embedded<'w>(
    world: &'w World,
    args: &[&str],
) -> latchkey_tests::harness::WorldCmd<'w> {
    world.latchkey(args).env("LATCHKEY_NO_DAEMON", "1")
}

/// The doctor check called `name` of a `doctor --json` run.
#[track_caller]
pub(crate) fn doctor_check(world: &World, name: &str) -> Value {
    let run = embedded(world, &["doctor", "--json"]).run();
    let doc = run.json();
    doc["checks"]
        .as_array()
        .expect("doctor lists checks")
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("doctor has a {name} check: {doc}"))
}
