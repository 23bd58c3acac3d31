//! Runs the real `latchkey` binaries hermetically.
//!
//! Every [`Home`] is a fresh temporary `LATCHKEY_HOME`. Spawned processes get a
//! cleared environment: only `PATH`, `HOME` (pointing into the temporary folder),
//! `LATCHKEY_HOME` and what the test adds explicitly. So the caller's LATCHKEY_*,
//! XDG_* and BROWSER variables can never leak into a test, and nothing a test does
//! can touch the caller's real sessions.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The folder holding the workspace's built binaries (`target/debug`), found from
/// the running test executable (`target/debug/deps/NAME-HASH`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut dir = exe
        .parent()
        .expect("the test binary is in a folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of a workspace binary, which must have been built (`cargo build
/// --workspace --bins`; `scripts/test` does it first).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// A temporary Latchkey home, removed on drop.
#[derive(Debug)]
pub struct Home {
    dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::Builder::new()
                .prefix("latchkey-test-")
                .tempdir()
                .expect("a temporary folder can be made"),
        }
    }

    /// The `LATCHKEY_HOME` folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `config.toml` under this home.
    pub fn config_file(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    /// The state folder under this home.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// A `latchkey` command in this home with a cleared environment.
    pub fn latchkey<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(bin("latchkey"), args)
    }

    /// Any program in this home with a cleared environment.
    pub fn command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("user-home"))
            .env("LATCHKEY_HOME", self.path())
            .stdin(Stdio::null());
        Cmd { cmd }
    }
}

/// A command about to run.
#[derive(Debug)]
pub struct Cmd {
    cmd: Command,
}

impl Cmd {
    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Cmd {
        self.cmd.env(key, value);
        self
    }

    /// Runs to completion and captures everything.
    pub fn run(mut self) -> Run {
        let out = self.cmd.output().expect("the binary can be spawned");
        Run::from(out)
    }

    /// The underlying command, for tests that need to spawn and manage it.
    pub fn into_command(self) -> Command {
        self.cmd
    }
}

/// A finished process.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing the whole run when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(self.code, expected, "unexpected exit code in {self:#?}");
        self
    }

    /// Asserts success.
    #[track_caller]
    pub fn ok(&self) -> &Run {
        self.code(0)
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }

    /// Asserts a `--json` failure: exit code, category, and that the message and
    /// hint exist. Returns the `error` object.
    #[track_caller]
    pub fn json_error(&self, code: i32, category: &str) -> serde_json::Value {
        self.code(code);
        let doc = self.json();
        let err = doc["error"].clone();
        assert_eq!(err["category"], category, "{self:#?}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:#?}"
        );
        assert!(err["retryable"].is_boolean(), "{self:#?}");
        err
    }

    /// stdout and stderr together, for leak checks.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}
