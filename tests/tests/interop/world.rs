//! A temporary Latchkey home with a `work` profile on a running `oidc-provider`,
//! daemons started on request, and the leak check on drop: no token the provider
//! issued may appear in any captured output (stderr of every run, stdout of every
//! command but `latchkey token`, daemon logs, the provider's own stderr and the
//! browser driver's output).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use latchkey_tests::harness::{Cmd, Home, Run, api, bin, raw_request};
use latchkey_tests::oidc_provider::{self, CLIENT_ID, OidcProvider, ProviderOptions};

#[derive(Debug)]
pub struct Interop {
    pub home: Home,
    pub idp: OidcProvider,
    captured: Mutex<Vec<(String, String)>>,
    daemons: Mutex<Vec<Child>>,
    /// Every `latchkey` command gets LATCHKEY_NO_DAEMON=1 (the embedded engine).
    no_daemon: std::sync::atomic::AtomicBool,
    /// Extra environment for every `latchkey` and `latchkeyd` this world runs.
    extra_env: Mutex<Vec<(String, String)>>,
    /// Secrets of a test's own (a client token) the leak check looks for too.
    secrets: Mutex<Vec<String>>,
}

impl Interop {
    /// The provider with `opts` and a default `work` profile with the fast test KDF;
    /// `None` (after a notice) when the tier's dependencies are missing outside CI.
    pub fn new(opts: ProviderOptions, need_browser: bool) -> Option<Interop> {
        if !oidc_provider::available(need_browser) {
            return None;
        }
        let world = Interop {
            home: Home::new(),
            idp: OidcProvider::start(opts),
            captured: Mutex::new(Vec::new()),
            daemons: Mutex::new(Vec::new()),
            no_daemon: std::sync::atomic::AtomicBool::new(false),
            extra_env: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
        };
        world
            .latchkey([
                "profile",
                "add",
                "work",
                "--issuer",
                world.idp.issuer(),
                "--client-id",
                CLIENT_ID,
                "--default",
            ])
            .run()
            .ok();
        // scrypt log_n 10, the minimum, as the harness's World does.
        let path = world.home.config_file();
        let text = std::fs::read_to_string(&path).expect("the config exists");
        std::fs::write(&path, text + "\n[vault]\nscrypt_log_n = 10\n").expect("config writable");
        Some(world)
    }

    /// From now on every `latchkey` command runs the embedded engine only.
    pub fn without_daemon(&self) {
        self.no_daemon
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Adds `key=value` to the environment of every later `latchkey` and `latchkeyd`.
    pub fn set_env(&self, key: &str, value: &str) {
        self.extra_env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((key.to_string(), value.to_string()));
    }

    fn extra_env(&self) -> Vec<(String, String)> {
        self.extra_env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A `latchkey` command whose output joins the leak check.
    pub fn latchkey<I, S>(&self, args: I) -> ICmd<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let label = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let is_token = args.first().is_some_and(|a| a == "token");
        let mut cmd = self.home.latchkey(args);
        if self.no_daemon.load(std::sync::atomic::Ordering::Relaxed) {
            cmd = cmd.env("LATCHKEY_NO_DAEMON", "1");
        }
        for (k, v) in self.extra_env() {
            cmd = cmd.env(&k, v);
        }
        ICmd {
            cmd,
            world: self,
            label,
            stdout_may_hold_token: is_token,
        }
    }

    /// Makes the leak check look for `secret` in everything this world captured.
    pub fn also_secret(&self, secret: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(secret.to_string());
    }

    /// Adds text to the leak check.
    pub fn capture_text(&self, label: &str, text: &str) {
        self.captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((label.to_string(), text.to_string()));
    }

    /// Adds a run's output to the leak check.
    pub fn capture(&self, label: &str, run: &Run, stdout_may_hold_token: bool) {
        self.capture_text(&format!("stderr of `latchkey {label}`"), &run.stderr);
        if !stdout_may_hold_token {
            self.capture_text(&format!("stdout of `latchkey {label}`"), &run.stdout);
        }
    }

    /// `latchkey login --device --json`, approved through the provider's pages with
    /// form posts once the first JSON line names the code. Returns the finished run
    /// and the page titles the approval went through.
    pub fn device_login(&self) -> (Run, Vec<String>) {
        let mut child = self
            .latchkey(["login", "--device", "--json", "--timeout", "120"])
            .spawn();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
        let stderr = child.stderr.take().expect("stderr piped");
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("the login's stdout reads");
        let approval = serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .filter(|ev| ev["event"] == "device_code")
            .map(|ev| {
                let uri = ev["verification_uri_complete"]
                    .as_str()
                    .expect("verification_uri_complete");
                assert!(uri.starts_with(self.idp.issuer()), "{uri}");
                self.idp.approve_device(uri)
            });
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let status = child.wait().expect("the login ends");
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: first + &rest,
            stderr: err_reader.join().expect("stderr reader"),
        };
        self.capture("login --device --json", &run, false);
        let titles = match approval {
            Some(Ok(titles)) => titles,
            Some(Err(e)) => panic!("approving the device code failed: {e}\n{run:#?}"),
            None => panic!("the login did not start with a device_code event: {run:#?}"),
        };
        (run, titles)
    }

    /// A `BROWSER` script running `interop/browser.mjs` (playwright-core driving
    /// Debian's Chromium): it signs in as the test account, consents, and ends on
    /// Latchkey's loopback callback. It reports to `browser-N.json` under the home.
    pub fn browser(&self, n: usize) -> (PathBuf, PathBuf) {
        let report = self.home.path().join(format!("browser-{n}.json"));
        let script = self.home.path().join(format!("browser-{n}.sh"));
        let driver = oidc_provider::interop_dir().join("browser.mjs");
        let body = format!(
            "#!/bin/sh\nexec node '{}' --login '{}' --password '{}' --report '{}' \"$1\" >>'{}.log' 2>&1\n",
            driver.display(),
            self.idp.login,
            self.idp.password,
            report.display(),
            report.display(),
        );
        std::fs::write(&script, body).expect("the script can be written");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("the script can be made executable");
        (script, report)
    }

    /// Waits (up to 120 s) for the browser driver's report and returns it. The
    /// driver writes it after the callback page loaded, which can be just after
    /// `latchkey login` returned.
    pub fn browser_report(&self, report: &std::path::Path) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(report)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                let log = std::fs::read_to_string(format!("{}.log", report.display()))
                    .unwrap_or_default();
                self.capture_text("browser driver log", &log);
                self.capture_text("browser driver report", &text);
                return v;
            }
            if start.elapsed() > Duration::from_secs(120) {
                let log = std::fs::read_to_string(format!("{}.log", report.display()))
                    .unwrap_or_default();
                panic!("the browser driver wrote no report; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `latchkey login --json` with [`Interop::browser`] as its browser: the finished
    /// run (not yet checked) and the browser driver's report.
    pub fn browser_login(&self) -> (Run, serde_json::Value) {
        let (browser, report) = self.browser(0);
        let run = self
            .latchkey(["login", "--json", "--timeout", "180"])
            .env("LATCHKEY_BROWSER", &browser)
            .run();
        (run, self.browser_report(&report))
    }

    /// The `work` session as stored (decrypted with this home's machine key).
    pub fn stored_session(&self) -> latchkey_proto::vault::SessionRecord {
        latchkey_tests::harness::load_vault(&self.home.state_dir())
            .expect("the vault opens")
            .expect("a session is stored")
            .session
    }

    /// The daemon's socket in this home.
    pub fn socket(&self) -> PathBuf {
        self.home.path().join("run").join("latchkeyd.sock")
    }

    /// Starts `latchkeyd` in this home and waits until it answers; its log joins the
    /// leak check and it is stopped on drop.
    pub fn start_daemon(&self) -> u32 {
        let mut daemons = self
            .daemons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let log_path = self
            .home
            .path()
            .join(format!("latchkeyd-{}.log", daemons.len()));
        let log = std::fs::File::create(&log_path).expect("the daemon log can be created");
        let mut cmd = self.home.command(bin("latchkeyd"), Vec::<&str>::new());
        for (k, v) in self.extra_env() {
            cmd = cmd.env(&k, v);
        }
        let mut cmd = cmd.into_command();
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("latchkeyd can be spawned");
        let pid = child.id();
        daemons.push(child);
        drop(daemons);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if raw_request(
                &self.socket(),
                "GET /v1/health HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
            )
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("latchkeyd did not answer within 30 s");
    }

    /// A login run by the daemon, as an editor plugin starts it: `POST
    /// /v1/profiles/work/login` with `flow`, then `approve` gets the answer (the
    /// device code or the authorize URL of the daemon's own loopback listener), then
    /// `GET /v1/logins/{id}?wait=5` until the login is no longer pending (at most 5
    /// minutes, the login's own limit). Returns (the first answer, the last).
    pub fn socket_login(
        &self,
        flow: &str,
        approve: impl FnOnce(&serde_json::Value),
    ) -> (serde_json::Value, serde_json::Value) {
        let body = serde_json::json!({ "flow": flow }).to_string();
        let (status, started) = api(
            &self.socket(),
            "POST",
            "/v1/profiles/work/login",
            Some(&body),
        )
        .expect("the daemon answers");
        self.capture_text("POST /v1/profiles/work/login", &started.to_string());
        assert!((200..300).contains(&status), "{status} {started}");
        assert_eq!(started["state"], "pending", "{started}");
        approve(&started);
        let id = started["id"].as_str().expect("a login id");
        let deadline = Instant::now() + Duration::from_secs(330);
        loop {
            let (status, now) = api(
                &self.socket(),
                "GET",
                &format!("/v1/logins/{id}?wait=5"),
                None,
            )
            .expect("the daemon answers");
            self.capture_text("GET /v1/logins/ID", &now.to_string());
            assert_eq!(status, 200, "{now}");
            if now["state"] != "pending" {
                return (started, now);
            }
            assert!(Instant::now() < deadline, "the login never ended: {now}");
        }
    }

    /// Runs the browser driver on `url` and waits for it, returning its report.
    pub fn run_browser(&self, n: usize, url: &str) -> serde_json::Value {
        let (script, report) = self.browser(n);
        let status = std::process::Command::new(&script)
            .arg(url)
            .stdin(Stdio::null())
            .status()
            .expect("the browser script runs");
        let r = self.browser_report(&report);
        assert!(status.success(), "the browser driver failed: {r}");
        r
    }

    /// Stops the daemons (SIGTERM, SIGKILL after 10 s) and captures their logs.
    pub fn stop_daemons(&self) {
        let daemons = std::mem::take(
            &mut *self
                .daemons
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for mut child in daemons {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for e in std::fs::read_dir(self.home.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("latchkeyd-") && name.ends_with(".log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                self.capture_text(&format!("daemon log {name}"), &text);
            }
        }
    }
}

impl Drop for Interop {
    fn drop(&mut self) {
        self.stop_daemons();
        if std::thread::panicking() {
            eprintln!("oidc-provider stderr:\n{}", self.idp.log());
            return;
        }
        let mut issued = self.idp.issued_tokens();
        issued.extend(self.idp.client_secrets());
        issued.extend(
            self.secrets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        let provider_log = self.idp.log();
        let captured = self
            .captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut texts: Vec<(&str, &str)> = captured
            .iter()
            .map(|(w, t)| (w.as_str(), t.as_str()))
            .collect();
        texts.push(("the provider's stderr", &provider_log));
        latchkey_tests::leak::assert_no_leaks(&issued, &texts);
    }
}

/// A command of an [`Interop`] world.
#[derive(Debug)]
pub struct ICmd<'w> {
    cmd: Cmd,
    world: &'w Interop,
    label: String,
    stdout_may_hold_token: bool,
}

impl ICmd<'_> {
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

    /// Spawns with piped stdout and stderr; the caller captures the output.
    pub fn spawn(self) -> Child {
        let mut cmd = self.cmd.into_command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("the binary can be spawned")
    }
}
