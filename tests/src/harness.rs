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
            // Tests opt in to a daemon explicitly (and stop it): a daemon started by
            // autostart would outlive the test.
            .env("LATCHKEY_NO_AUTOSTART", "1")
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

    /// Removes an environment variable the harness set (e.g. LATCHKEY_NO_AUTOSTART).
    pub fn env_remove(mut self, key: &str) -> Cmd {
        self.cmd.env_remove(key);
        self
    }

    /// Runs to completion and captures everything.
    pub fn run(mut self) -> Run {
        let out = self.cmd.output().expect("the binary can be spawned");
        Run::from(out)
    }

    /// Runs to completion with `input` on stdin (then closed), and captures
    /// everything: how tools drive credential helpers.
    pub fn run_with_input(self, input: &[u8]) -> Run {
        use std::io::Write;
        let mut cmd = self.cmd;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the binary can be spawned");
        if let Some(mut stdin) = child.stdin.take() {
            // A program that exits without reading its input is the test's business.
            stdin.write_all(input).ok();
        }
        Run::from(
            child
                .wait_with_output()
                .expect("the process can be waited for"),
        )
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

/// A home with a running fake provider and a `work` profile pointing at it, that
/// checks on drop that no token the provider issued appeared in anything captured
/// (docs/behaviour.md, "Security"): every run's stderr, and stdout of every command
/// but `latchkey token`. This is the one shared leak check of the cross-process tests.
pub struct World {
    pub home: Home,
    pub idp: crate::fake_idp::FakeIdp,
    captured: std::sync::Mutex<Vec<(String, String)>>,
    /// Daemons this world started; stopped (and their logs captured) on drop.
    daemons: std::sync::Mutex<Vec<std::process::Child>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("home", &self.home.path())
            .field("issuer", &self.idp.issuer())
            .finish()
    }
}

/// The client id the fake provider accepts by default.
pub const CLIENT_ID: &str = "latchkey-cli";

impl World {
    /// A fake provider with `cfg` (device polls every second unless `cfg` says
    /// otherwise) and a default `work` profile with the fast test KDF.
    pub fn new(mut cfg: crate::fake_idp::FakeIdpConfig) -> World {
        if cfg.device_interval == Some(5) {
            cfg.device_interval = Some(1);
        }
        let idp = crate::fake_idp::FakeIdp::start_blocking(cfg);
        let home = Home::new();
        let world = World {
            home,
            idp,
            captured: std::sync::Mutex::new(Vec::new()),
            daemons: std::sync::Mutex::new(Vec::new()),
        };
        world
            .latchkey([
                "profile",
                "add",
                "work",
                "--issuer",
                &world.idp.issuer(),
                "--client-id",
                CLIENT_ID,
                "--default",
            ])
            .run()
            .ok();
        world.fast_kdf();
        world
    }

    /// A world with the fake provider's defaults.
    pub fn default_provider() -> World {
        World::new(crate::fake_idp::FakeIdpConfig::default())
    }

    /// Makes new vaults use scrypt log_n 10 (the minimum) so tests stay quick.
    fn fast_kdf(&self) {
        let path = self.home.config_file();
        let text = std::fs::read_to_string(&path).expect("the config exists");
        std::fs::write(&path, text + "\n[vault]\nscrypt_log_n = 10\n")
            .expect("the config is writable");
    }

    /// A `latchkey` command whose output joins the leak check.
    pub fn latchkey<I, S>(&self, args: I) -> WorldCmd<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let is_token = args.first().is_some_and(|a| a == "token");
        let label = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        WorldCmd {
            cmd: self.home.latchkey(args),
            world: self,
            label,
            stdout_may_hold_token: is_token,
        }
    }

    /// Adds profile `name` at this world's provider (not logged in).
    pub fn add_profile(&self, name: &str) {
        self.latchkey([
            "profile",
            "add",
            name,
            "--issuer",
            &self.idp.issuer(),
            "--client-id",
            CLIENT_ID,
        ])
        .run()
        .ok();
    }

    /// Adds `lines` (TOML keys) at the top of the `work` profile's table.
    pub fn set_work_keys(&self, lines: &str) {
        let path = self.home.config_file();
        let text = std::fs::read_to_string(&path).expect("a config");
        let text = text.replacen(
            "[profiles.work]\n",
            &format!("[profiles.work]\n{lines}\n"),
            1,
        );
        std::fs::write(&path, text).expect("config written");
    }

    /// Writes an executable browser script under the home and returns its path.
    /// The script gets the URL as `$1`.
    pub fn browser_script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("the script can be written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("the script can be made executable");
        }
        path
    }

    /// A browser that follows the authorize URL like a person who is already signed
    /// in: the fake provider redirects straight to Latchkey's loopback listener.
    pub fn auto_browser(&self) -> PathBuf {
        self.browser_script(
            "browser.sh",
            "exec curl -fsS -L --max-time 20 -o /dev/null \"$1\"",
        )
    }

    /// Logs `work` in through the browser flow with [`World::auto_browser`].
    pub fn login(&self) -> Run {
        let browser = self.auto_browser();
        let run = self
            .latchkey(["login", "--json", "--timeout", "30"])
            .env("LATCHKEY_BROWSER", &browser)
            .run();
        run.ok();
        run
    }

    /// The `work` session as stored, decrypted with the machine key of this home.
    pub fn stored_session(&self) -> latchkey_proto::vault::SessionRecord {
        load_vault(&self.home.state_dir())
            .expect("the vault opens")
            .expect("a session is stored")
            .session
    }

    /// The newest token of `kind` the provider issued.
    pub fn newest(&self, kind: crate::fake_idp::TokenKind) -> String {
        self.idp
            .issued(kind)
            .last()
            .cloned()
            .expect("the provider issued one")
    }

    /// Rewrites the stored `work` session so that its refreshes go to `url` (a
    /// stand-in token endpoint: one that holds, drops or counts requests).
    pub fn point_token_endpoint_at(&self, url: &str) {
        let mut session = self.stored_session();
        session.token_endpoint = Some(url.to_string());
        self.store_session(&session);
    }

    /// Writes `session` as the `work` vault, as another process would (the
    /// engine's own vault code, under the profile's lock, with the machine key).
    pub fn store_session(&self, session: &latchkey_proto::vault::SessionRecord) {
        let vault = latchkey_daemon::vault::Vault::new(
            self.home.state_dir(),
            latchkey_proto::vault::KdfParams::Scrypt {
                log_n: 10,
                r: 8,
                p: 1,
            },
        );
        let lock = vault
            .lock("work", std::time::Duration::from_secs(5))
            .expect("the lock");
        vault.store(&lock, session).expect("the session is stored");
    }

    /// The `work` vault's bytes.
    pub fn vault_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.home.state_dir().join("profiles/work.vault")).ok()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_daemons();
        if std::thread::panicking() {
            return;
        }
        let issued = self.idp.issued_tokens();
        let captured = self
            .captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let texts: Vec<(&str, &str)> = captured
            .iter()
            .map(|(w, t)| (w.as_str(), t.as_str()))
            .collect();
        crate::leak::assert_no_leaks(&issued, &texts);
    }
}

/// A command of a [`World`].
#[derive(Debug)]
pub struct WorldCmd<'w> {
    cmd: Cmd,
    world: &'w World,
    label: String,
    stdout_may_hold_token: bool,
}

impl WorldCmd<'_> {
    /// Removes an environment variable the harness set.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd = self.cmd.env_remove(key);
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd = self.cmd.env(key, value);
        self
    }

    /// Runs to completion; the output joins the leak check.
    pub fn run(self) -> Run {
        let run = self.cmd.run();
        self.world
            .capture(&self.label, &run, self.stdout_may_hold_token);
        run
    }

    /// Spawns without waiting (for concurrency tests); pass the output to
    /// [`World::capture`] once collected.
    pub fn spawn(self) -> std::process::Child {
        let mut cmd = self.cmd.into_command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("the binary can be spawned")
    }
}

impl World {
    /// The daemon's socket in this home.
    pub fn socket(&self) -> PathBuf {
        self.home.path().join("run").join("latchkeyd.sock")
    }

    /// Starts `latchkeyd` in this home and waits until it answers. Its stderr (the
    /// audit log) goes to a file that joins the leak check; it is stopped on drop.
    pub fn start_daemon(&self) -> u32 {
        let log_path = self
            .home
            .path()
            .join(format!("latchkeyd-{}.log", self.daemon_count()));
        let log = std::fs::File::create(&log_path).expect("the daemon log can be created");
        let mut cmd = self
            .home
            .command(bin("latchkeyd"), Vec::<&str>::new())
            .into_command();
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("latchkeyd can be spawned");
        let pid = child.id();
        self.daemons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(child);
        self.wait_for_daemon();
        pid
    }

    fn daemon_count(&self) -> usize {
        self.daemons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Waits (up to 10 s) until a daemon answers a health request on the socket.
    pub fn wait_for_daemon(&self) {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(10) {
            if raw_request(
                &self.socket(),
                "GET /v1/health HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
            )
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("latchkeyd did not answer within 10 s");
    }

    /// Sends a signal to a process with the `kill` command.
    pub fn signal(pid: u32, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill can run");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Stops every daemon this world started (SIGTERM, then SIGKILL after 5 s) and
    /// captures their logs for the leak check.
    pub fn stop_daemons(&self) {
        let mut daemons = std::mem::take(
            &mut *self
                .daemons
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for child in &mut daemons {
            if child.try_wait().ok().flatten().is_some() {
                continue;
            }
            // A stopped (SIGSTOP) daemon must be continued to see SIGTERM.
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(5) {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(entries) = std::fs::read_dir(self.home.path()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("latchkeyd-") && name.ends_with(".log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    self.captured
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((format!("daemon log {name}"), text));
                }
            }
        }
    }

    /// Adds any captured text (an event stream, a raw answer) to the leak check.
    pub fn capture_text(&self, label: &str, text: &str) {
        self.captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((label.to_string(), text.to_string()));
    }

    /// Adds a finished run's output to the leak check.
    pub fn capture(&self, label: &str, run: &Run, stdout_may_hold_token: bool) {
        let mut c = self
            .captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.push((format!("stderr of `latchkey {label}`"), run.stderr.clone()));
        if !stdout_may_hold_token {
            c.push((format!("stdout of `latchkey {label}`"), run.stdout.clone()));
        }
    }
}

/// A loopback TCP port that was free a moment ago (bound and released), for a
/// listener a test configures.
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// Sends raw bytes as one HTTP request over a Unix socket and reads the whole answer
/// (the request should say `Connection: close`). `None` when the socket refuses, or
/// the daemon closes without a byte. Times out after 10 s.
pub fn raw_request(socket: &Path, request: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    // A reset after a partial answer still returns what arrived.
    let _ = s.read_to_end(&mut out);
    if out.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

/// A JSON request over the socket with `Connection: close`: (status, body).
pub fn api(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, serde_json::Value)> {
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: latchkeyd\r\nLatchkey-Protocol: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_request(socket, &req)?;
    let status: u16 = answer.get(9..12)?.parse().ok()?;
    let (_, payload) = answer.split_once("\r\n\r\n")?;
    let json = serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
    Some((status, json))
}

/// Makes a folder immutable with `chattr +i` (root ignores file modes, so this is how
/// tests make a write fail) and clears it on drop, so the temporary home can be
/// removed. `None` where the file system or the tool does not allow it; under CI
/// that fails the run instead, since a skipped test proves nothing.
#[derive(Debug)]
pub struct Immutable(PathBuf);

impl Immutable {
    pub fn set(path: &Path) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok || std::env::var_os("CI").is_none(),
            "CI=true but chattr +i does not work here"
        );
        ok.then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        // Best effort: a failure shows up as a leftover temporary folder.
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .output();
    }
}

impl World {
    /// The `work` vault's path.
    pub fn vault_path(&self) -> PathBuf {
        self.home.state_dir().join("profiles/work.vault")
    }

    /// The `work` vault decrypted with this home's machine key, without panicking:
    /// `Err` with the engine's message when it does not decrypt, `Ok(None)` when there
    /// is no vault. For checks that must report, not abort (the soak).
    pub fn try_load_vault(&self) -> Result<Option<latchkey_daemon::vault::Loaded>, String> {
        load_vault(&self.home.state_dir())
    }

    /// Everything the daemons of this world wrote to their logs so far.
    pub fn daemon_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.home.path()) {
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            for p in names {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.is_some_and(|n| n.starts_with("latchkeyd-") && n.ends_with(".log")) {
                    out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
        out
    }
}

/// The `work` vault under `state_dir`, decrypted by the engine's own vault code with
/// the machine key stored there (the KDF parameters come from the file's header).
pub fn load_vault(state_dir: &Path) -> Result<Option<latchkey_daemon::vault::Loaded>, String> {
    let kdf = latchkey_proto::vault::KdfParams::Scrypt {
        log_n: 10,
        r: 8,
        p: 1,
    };
    latchkey_daemon::vault::Vault::new(state_dir.to_path_buf(), kdf)
        .load("work")
        .map_err(|e| e.to_string())
}

/// One "refreshed; the new session is on disk" line of the engine's log: the
/// generation written and the microseconds from the provider's answer to the fsync of
/// the new vault, the window that docs/behaviour.md, "Reliability under faults" asks
/// to keep to milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshWindow {
    pub generation: u64,
    pub window_us: u64,
}

/// Every refresh window logged in `log` (a daemon log, or the stderr of a process run
/// with `LATCHKEY_LOG=info`), in order. Reads the `generation=N` and `window_us=N`
/// fields of the text format, with or without ANSI colours.
pub fn refresh_windows(log: &str) -> Vec<RefreshWindow> {
    fn field(line: &str, name: &str) -> Option<u64> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        let digits: String = line[at..]
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }
    let plain = strip_ansi(log);
    plain
        .lines()
        .filter(|l| l.contains("the new session is on disk"))
        .filter_map(|l| {
            Some(RefreshWindow {
                generation: field(l, "generation")?,
                window_us: field(l, "window_us")?,
            })
        })
        .collect()
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A mount made for a test: a small tmpfs (a disk that fills up) or a read-only bind
/// mount (a state folder that cannot be written). The machines run as root, where
/// file modes stop nothing, so a mount is how a write is made to fail. Unmounted on
/// drop, also when the test panics.
///
/// `None` where mounting is not allowed (no root, a container without the
/// capability); under CI=true that fails instead, since a skipped test proves nothing.
#[derive(Debug)]
pub struct Mount(PathBuf);

impl Mount {
    fn sh(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{}: {e}", args[0]))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn unavailable(why: String) -> Option<Mount> {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI=true but mounting does not work here: {why}"
        );
        println!("notice: skipped, mounting is not available here ({why})");
        None
    }

    /// Mounts a tmpfs of `size_bytes` (rounded up to pages) with mode 0700 on `dir`,
    /// which must exist.
    pub fn tmpfs(dir: &Path, size_bytes: u64) -> Option<Mount> {
        let opts = format!("size={size_bytes},mode=0700");
        let target = dir.to_string_lossy().into_owned();
        match Self::sh(&["mount", "-t", "tmpfs", "-o", &opts, "tmpfs", &target]) {
            Ok(()) => Some(Mount(dir.to_path_buf())),
            Err(e) => Self::unavailable(e),
        }
    }

    /// Bind-mounts `dir` onto itself read-only.
    pub fn read_only(dir: &Path) -> Option<Mount> {
        let target = dir.to_string_lossy().into_owned();
        if let Err(e) = Self::sh(&["mount", "--bind", &target, &target]) {
            return Self::unavailable(e);
        }
        let guard = Mount(dir.to_path_buf());
        match Self::sh(&["mount", "-o", "remount,bind,ro", &target]) {
            Ok(()) => Some(guard),
            Err(e) => {
                drop(guard);
                Self::unavailable(e)
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = self.0.to_string_lossy().into_owned();
        // A process still using the mount (a daemon being stopped) makes a plain
        // umount fail; the lazy one detaches it anyway.
        if Self::sh(&["umount", &target]).is_err() {
            let _ = Self::sh(&["umount", "-l", &target]);
        }
    }
}
