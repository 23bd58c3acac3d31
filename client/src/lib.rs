//! The Latchkey client: `latchkey::Client`, used by the `latchkey` CLI and by tools
//! that embed Latchkey.
//!
//! Every call goes to the daemon first and falls back to the embedded engine (the
//! same code the daemon runs) by an explicit table:
//!
//! | daemon                                   | client does                                  |
//! |------------------------------------------|----------------------------------------------|
//! | no socket / nobody listening             | autostart it (unless disabled), else embedded at once |
//! | connected, no answer within 500 ms       | embedded, with a notice                      |
//! | answers with another protocol version    | embedded, notice: `latchkey daemon restart`  |
//! | socket, folder or listener not ours      | embedded, notice saying why; nothing sent    |
//! | answers (success or typed error)         | that answer is final: no fallback            |
//!
//! A daemon found hung, stale or foreign is not asked again by the same `Client`.
//! Autostart is serialised by a lock in the runtime folder, so many processes
//! starting at once spawn one daemon. `LATCHKEY_NO_DAEMON=1` never contacts or starts
//! a daemon; `LATCHKEY_NO_AUTOSTART=1` falls back instead of starting one. The table
//! is a promise (docs/behaviour.md, "Daemon and fallback").
//!
//! Architecture invariant: this crate never links the daemon's server stack (no
//! axum); `scripts/test` checks `cargo tree -p latchkey`.

pub mod error;
mod transport;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use latchkey_daemon::Engine;
use latchkey_daemon::config::Config;
use latchkey_proto::api;
use latchkey_proto::error::ErrorDocument;
use latchkey_proto::paths::Paths;
use latchkey_proto::secret::Secret;
use serde::de::DeserializeOwned;

pub use error::Error;
use transport::{Reach, Transport};

/// How long the daemon may take to answer before the client falls back.
pub const DAEMON_DEADLINE: Duration = Duration::from_millis(500);
/// How long an autostarted daemon may take to answer its first health check.
const AUTOSTART_WAIT: Duration = Duration::from_secs(5);

/// Whether and how the daemon is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ask the daemon first; start it when missing if `autostart`.
    DaemonFirst { autostart: bool },
    /// Never contact a daemon (LATCHKEY_NO_DAEMON=1).
    EmbeddedOnly,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Daemon,
    Embedded,
}

/// An access token for a caller.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: Secret,
    pub token_type: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub generation: u64,
    pub via: Via,
}

/// The client.
#[derive(Debug)]
pub struct Client {
    paths: Paths,
    mode: Mode,
    deadline: Duration,
    engine: OnceLock<std::sync::Arc<Engine>>,
    notices: Mutex<Vec<String>>,
    transport: Transport,
    /// Set when the daemon was found hung, stale or not ours: later calls of this
    /// client go to the embedded engine at once instead of waiting on it again.
    bypass_daemon: std::sync::atomic::AtomicBool,
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Client {
    /// A client configured from the environment (paths, LATCHKEY_NO_DAEMON,
    /// LATCHKEY_NO_AUTOSTART).
    pub fn from_env() -> Result<Client, Error> {
        let env = latchkey_daemon::engine::process_env();
        let paths = Paths::resolve(&env).map_err(latchkey_daemon::EngineError::from)?;
        let mode = if flag("LATCHKEY_NO_DAEMON") {
            Mode::EmbeddedOnly
        } else {
            Mode::DaemonFirst {
                autostart: !flag("LATCHKEY_NO_AUTOSTART"),
            }
        };
        Ok(Client::new(paths, mode))
    }

    /// A client over explicit paths.
    pub fn new(paths: Paths, mode: Mode) -> Client {
        Client {
            mode,
            deadline: DAEMON_DEADLINE,
            engine: OnceLock::new(),
            notices: Mutex::new(Vec::new()),
            transport: Transport::new(paths.socket.clone()),
            paths,
            bypass_daemon: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sentences about fallbacks that happened (a hung or stale daemon), for the
    /// CLI to show on stderr.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .notices
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn notice(&self, s: String) {
        tracing::debug!("{s}");
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(s);
    }

    /// The embedded engine, built on first use (config read once).
    pub fn engine(&self) -> Result<&Engine, Error> {
        Ok(self.shared_engine()?)
    }

    fn shared_engine(&self) -> Result<&std::sync::Arc<Engine>, Error> {
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        let config = Config::load(&self.paths.config_file)?;
        Ok(self
            .engine
            .get_or_init(|| std::sync::Arc::new(Engine::new(self.paths.clone(), config))))
    }

    /// The last write of a process about to exit: when the embedded engine holds a
    /// session the provider rotated but the disk refused, one more attempt to save
    /// it. `Err` (local_storage) when it is still unsaved: it dies with this process,
    /// and the person must log in again. A long-lived program can keep calling
    /// the client instead; the engine serves the unsaved session and writes it
    /// before its next refresh.
    pub fn close(&self) -> Result<(), Error> {
        let Some(engine) = self.engine.get() else {
            return Ok(());
        };
        match engine.save_all_unsaved().into_iter().next() {
            None => Ok(()),
            Some((_, e)) => Err(e.into()),
        }
    }

    /// An access token fresh enough for `min_ttl` seconds.
    pub async fn token(&self, profile: &str, min_ttl: u64) -> Result<Token, Error> {
        let path = format!("/v1/profiles/{profile}/token?min_ttl={min_ttl}");
        if let Some(answer) = self.daemon::<api::Token>("GET", &path, None).await {
            let t = answer?;
            return Ok(Token {
                access_token: t.access_token,
                token_type: t.token_type,
                expires_at: t.expires_at,
                generation: t.generation,
                via: Via::Daemon,
            });
        }
        let t = self.shared_engine()?.token(profile, min_ttl).await?;
        Ok(Token {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_at: t.expires_at.map(latchkey_daemon::convert::rfc3339),
            generation: t.generation,
            via: Via::Embedded,
        })
    }

    /// Refreshes now (joining one in flight).
    pub async fn refresh(&self, profile: &str) -> Result<api::Refreshed, Error> {
        let path = format!("/v1/profiles/{profile}/refresh");
        if let Some(answer) = self.daemon("POST", &path, None).await {
            return answer;
        }
        let t = self.shared_engine()?.refresh(profile).await?;
        Ok(api::Refreshed {
            profile: profile.to_string(),
            expires_at: t.expires_at.map(latchkey_daemon::convert::rfc3339),
            generation: t.generation,
        })
    }

    /// Logs out, revoking at the provider unless `revoke` is false.
    pub async fn logout(&self, profile: &str, revoke: bool) -> Result<api::LoggedOut, Error> {
        let path = format!("/v1/profiles/{profile}/logout");
        let body = serde_json::to_vec(&api::LogoutRequest { revoke }).ok();
        if let Some(answer) = self.daemon("POST", &path, body).await {
            return answer;
        }
        let outcome = self.engine()?.logout(profile, revoke).await?;
        Ok(latchkey_daemon::convert::logged_out(outcome))
    }

    /// A session's state (no tokens), from the daemon when one answers.
    pub async fn session(&self, profile: &str) -> Result<(api::Session, Via), Error> {
        let path = format!("/v1/profiles/{profile}/session");
        if let Some(answer) = self.daemon("GET", &path, None).await {
            return answer.map(|s| (s, Via::Daemon));
        }
        let st = self.engine()?.status(profile)?;
        Ok((latchkey_daemon::convert::session(st), Via::Embedded))
    }

    /// The operator status of a running daemon; `Ok(None)` when none answers.
    /// Never starts one.
    pub async fn daemon_status(&self) -> Result<Option<api::DaemonStatus>, Error> {
        if self.mode == Mode::EmbeddedOnly {
            return Ok(None);
        }
        match self
            .transport
            .call("GET", "/v1/status", None, self.deadline)
            .await
        {
            Reach::Answer(r) => decode(&r).map(Some),
            Reach::Stale { theirs } => Err(Error::usage(
                format!(
                    "the daemon speaks protocol {theirs}, this client {}",
                    latchkey_proto::PROTOCOL_VERSION
                ),
                Some("run `latchkey daemon restart`".into()),
            )),
            Reach::Refused(why) => Err(refused(why)),
            Reach::Dead(_) | Reach::Hung => Ok(None),
        }
    }

    /// Asks a running daemon to stop; `Ok(false)` when none answered.
    pub async fn daemon_shutdown(&self) -> Result<bool, Error> {
        match self
            .transport
            .call("POST", "/v1/shutdown", None, self.deadline)
            .await
        {
            Reach::Answer(_) | Reach::Stale { .. } => Ok(true),
            Reach::Refused(why) => Err(refused(why)),
            Reach::Dead(_) | Reach::Hung => Ok(false),
        }
    }

    /// The pid of the running daemon by its instance lock (`latchkeyd.lock` beside
    /// the socket): the kernel releases the lock only when that process exits, so a
    /// held lock names a live daemon even when it does not answer (stopped, wedged).
    /// `None` when no process holds it, or where there is no lock file (Windows).
    pub fn daemon_pid(&self) -> Option<u32> {
        let path = self.paths.socket.with_file_name("latchkeyd.lock");
        let file = std::fs::File::open(&path).ok()?;
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = std::fs::read_to_string(&path).ok()?;
                text.trim().parse().ok()
            }
            Ok(()) => None,
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::debug!(error = %e, "cannot test the daemon's instance lock");
                None
            }
        }
    }

    /// Stops a daemon that does not answer: SIGTERM (and SIGCONT, so a stopped one
    /// wakes up to handle it) to the pid that holds the instance lock. `Ok(false)`
    /// when no daemon holds it.
    pub fn terminate_daemon(&self) -> Result<bool, Error> {
        let Some(pid) = self.daemon_pid() else {
            return Ok(false);
        };
        #[cfg(unix)]
        {
            use rustix::process::{Pid, Signal, kill_process};
            let pid = i32::try_from(pid)
                .ok()
                .and_then(Pid::from_raw)
                .ok_or_else(|| Error::Internal(format!("the daemon's lock names pid {pid}")))?;
            kill_process(pid, Signal::TERM)
                .and_then(|()| kill_process(pid, Signal::CONT))
                .map_err(|e| {
                    Error::Internal(format!("cannot signal latchkeyd (pid {pid:?}): {e}"))
                })?;
            Ok(true)
        }
        #[cfg(not(unix))]
        {
            Err(Error::Internal(format!(
                "latchkeyd (pid {pid}) does not answer; end it with the Task Manager"
            )))
        }
    }

    /// Starts the daemon if none answers; `Ok(true)` when one answers afterwards.
    pub async fn daemon_start(&self) -> Result<bool, Error> {
        if matches!(
            self.transport
                .call("GET", "/v1/health", None, self.deadline)
                .await,
            Reach::Answer(_)
        ) {
            return Ok(true);
        }
        self.autostart().await
    }

    /// One request to the daemon by the fallback table. `None` means: fall back.
    async fn daemon<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Option<Result<T, Error>> {
        let Mode::DaemonFirst { autostart } = self.mode else {
            return None;
        };
        if self
            .bypass_daemon
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let mut reach = self
            .transport
            .call(method, path, body.clone(), self.deadline)
            .await;
        if matches!(reach, Reach::Dead(_)) && autostart {
            match self.autostart().await {
                Ok(true) => reach = self.transport.call(method, path, body, self.deadline).await,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "the daemon could not be started"),
            }
        }
        self.classify(reach)
    }

    /// The fallback table applied to one outcome. `None` means: fall back.
    fn classify<T: DeserializeOwned>(&self, reach: Reach) -> Option<Result<T, Error>> {
        let unusable = |notice: String| {
            self.bypass_daemon
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.notice(notice);
        };
        match reach {
            Reach::Answer(r) => Some(decode(&r)),
            Reach::Dead(reason) => {
                tracing::debug!(%reason, "no daemon; using the embedded engine");
                None
            }
            Reach::Hung => {
                unusable(format!(
                    "the daemon at {} did not answer within {} ms; answered from the encrypted file",
                    self.paths.socket.display(),
                    self.deadline.as_millis()
                ));
                None
            }
            Reach::Refused(why) => {
                unusable(format!("{why}; answered from the encrypted file"));
                None
            }
            Reach::Stale { theirs } => {
                unusable(format!(
                    "the daemon speaks protocol {theirs}, this client {}; answered from the encrypted file (run `latchkey daemon restart`)",
                    latchkey_proto::PROTOCOL_VERSION
                ));
                None
            }
        }
    }

    /// `latchkey token`'s hot path: one blocking request to the daemon, without an
    /// async runtime. `Some` is the daemon's final answer (a token or a typed
    /// error); `None` means: call [`Client::token`], which starts a missing daemon
    /// or uses the embedded engine (a hung, stale or foreign daemon is not asked
    /// again: the notice is already recorded).
    pub fn token_blocking(&self, profile: &str, min_ttl: u64) -> Option<Result<Token, Error>> {
        if self.mode == Mode::EmbeddedOnly {
            return None;
        }
        #[cfg(unix)]
        {
            let path = format!("/v1/profiles/{profile}/token?min_ttl={min_ttl}");
            let reach = transport::get_blocking(&self.paths.socket, &path, self.deadline);
            let answer = self.classify::<api::Token>(reach)?;
            Some(answer.map(|t| Token {
                access_token: t.access_token,
                token_type: t.token_type,
                expires_at: t.expires_at,
                generation: t.generation,
                via: Via::Daemon,
            }))
        }
        #[cfg(not(unix))]
        {
            let _unused = (profile, min_ttl);
            None
        }
    }

    /// Starts `latchkeyd` in the background, serialised by a lock so that many
    /// processes starting at once spawn one daemon. `Ok(true)` once it answers.
    async fn autostart(&self) -> Result<bool, Error> {
        let run = self
            .paths
            .socket
            .parent()
            .map_or_else(|| self.paths.runtime_dir.clone(), Path::to_path_buf);
        latchkey_daemon::vault::fs::ensure_private_dir(&run)
            .map_err(latchkey_daemon::EngineError::from)?;
        let lock_path = run.join("autostart.lock");
        let guard = tokio::task::spawn_blocking(move || {
            latchkey_daemon::vault::lock::acquire("autostart", &lock_path, AUTOSTART_WAIT)
        })
        .await
        .map_err(|e| Error::Internal(format!("the autostart task failed: {e}")))?
        .map_err(latchkey_daemon::EngineError::from)?;
        // Whoever held the lock before us may have started it already.
        if matches!(
            self.transport
                .call("GET", "/v1/health", None, self.deadline)
                .await,
            Reach::Answer(_)
        ) {
            return Ok(true);
        }
        let exe = daemon_exe();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.join("latchkeyd.log"));
        let mut cmd = std::process::Command::new(&exe);
        cmd.env("LATCHKEY_SOCKET", &self.paths.socket)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(match log {
                Ok(f) => std::process::Stdio::from(f),
                Err(_) => std::process::Stdio::null(),
            });
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group: a Ctrl-C meant for this command does not stop it.
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start {}: {e}", exe.display())))?;
        // Reap it if it exits while we still run (a second instance exits at once).
        std::thread::spawn(move || {
            let mut child = child;
            if let Err(e) = child.wait() {
                tracing::debug!(error = %e, "cannot wait for the daemon process");
            }
        });
        let start = tokio::time::Instant::now();
        while start.elapsed() < AUTOSTART_WAIT {
            if matches!(
                self.transport
                    .call("GET", "/v1/health", None, self.deadline)
                    .await,
                Reach::Answer(_)
            ) {
                drop(guard);
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(guard);
        Ok(false)
    }
}

/// `latchkeyd` beside this executable when it is there (an install or a build
/// folder), else from PATH.
fn daemon_exe() -> PathBuf {
    let name = format!("latchkeyd{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(&name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The error for a socket that is not this user's daemon: a runtime folder with the
/// wrong owner or mode is refused with a clear error.
fn refused(why: String) -> Error {
    Error::Daemon {
        category: latchkey_proto::error::Category::LocalStorage,
        message: why,
        hint: Some(
            "another user may have planted it: check the folder with `latchkey doctor`, remove it, or set LATCHKEY_SOCKET".into(),
        ),
    }
}

fn decode<T: DeserializeOwned>(r: &transport::Reply) -> Result<T, Error> {
    if (200..300).contains(&r.status) {
        return serde_json::from_slice(&r.body)
            .map_err(|e| Error::Internal(format!("the daemon's answer is malformed: {e}")));
    }
    match serde_json::from_slice::<ErrorDocument>(&r.body) {
        Ok(doc) => Err(Error::Remote(doc.error)),
        Err(_) => Err(Error::Internal(format!(
            "the daemon answered HTTP {} without an error document",
            r.status
        ))),
    }
}
