//! The Latchkey client: `latchkey::Client`, used by the `latchkey` CLI and by tools
//! that embed Latchkey.
//!
//! Every call goes to the daemon first and falls back to the embedded engine (the
//! same code the daemon runs) by an explicit table, applied in one place
//! (`Client::settle`) to the outcome (`wire::Reach`) of either way of asking:
//!
//! | daemon                                      | outcome   | client does                                  |
//! |---------------------------------------------|-----------|----------------------------------------------|
//! | no socket / nobody listening / went away    | `Dead`    | autostart it (unless disabled), else embedded at once |
//! | connected, no answer within 500 ms, nor to a health check | `Hung` | embedded, with a notice        |
//! | answers with another protocol version       | `Stale`   | embedded, notice: `latchkey daemon restart`  |
//! | same protocol, "no such endpoint" (older)   | `Outdated`| embedded, notice: `latchkey daemon restart`  |
//! | socket, folder or listener not this user's  | `Refused` | embedded, notice saying why; nothing sent    |
//! | answers, but not in the protocol            | `Broken`  | error `internal` (exit 1): no autostart, no fallback |
//! | answers (success or typed error)            | `Answer`  | that answer is final: no fallback            |
//!
//! A malformed answer (not HTTP, no Content-Length, a body that is not the
//! endpoint's JSON) is `Broken`, not `Dead`: something that speaks our socket
//! answered, so starting a second daemon or quietly answering from the file would
//! hide a bug (or an impostor of the same user). The error says so and hints at
//! `latchkey daemon restart` and `LATCHKEY_NO_DAEMON=1`.
//!
//! Requests are the proto's closed set ([`latchkey_proto::request`]); profiles are
//! [`ProfileName`]s, so no unchecked name reaches a URL or a file name.
//! [`Client::token_blocking`] is the entry point for callers without a runtime
//! (`latchkey token`): it asks with one blocking exchange and builds a runtime only
//! when it must fall back.
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
mod events;
#[doc(hidden)]
pub mod front;
mod instance;
mod proxy;
mod transport;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use latchkey_daemon::Engine;
use latchkey_daemon::config::Config;
use latchkey_proto::request::{self as rq, Request};

pub use error::Error;
pub use events::Events;
pub use proxy::{ApiRequest, ApiResponse, PROXY_DEADLINE};
// What a caller needs to name in its calls, so embedding the crate needs no other.
pub use latchkey_proto::api;
pub use latchkey_proto::delegation::{Scope, TokenId};
pub use latchkey_proto::error::Category;
pub use latchkey_proto::paths::Paths;
pub use latchkey_proto::profile::ProfileName;
pub use latchkey_proto::secret::Secret;
use transport::Transport;
use wire::Reach;

/// What the client says of a daemon older than the request it was sent.
const OUTDATED: &str =
    "the running latchkeyd is older than this client and does not know this request";

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

/// The client: the daemon first, the embedded engine when it cannot answer (see
/// the crate documentation for the table), one instance per program.
///
/// A program run by a person builds it with [`Client::from_env`], which finds
/// the person's files, socket and settings exactly as the `latchkey` command
/// does. One that keeps a Latchkey of its own names the folder with
/// [`Paths::in_home`], as the examples here do with a temporary one (whose
/// `work` profile is not logged in).
///
/// # Examples
///
/// A token for an API call, from a program without an async runtime:
///
/// ```
/// use latchkey::{Category, Client, Mode, Paths, ProfileName};
///
/// # let home = tempfile::tempdir()?;
/// # std::fs::write(home.path().join("config.toml"), "[profiles.work]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"cli\"\n\n[profiles.work.proxy]\nupstream = \"http://127.0.0.1:9/v2\"\n")?;
/// let client = Client::new(Paths::in_home(home.path()), Mode::DaemonFirst { autostart: false });
/// let work = ProfileName::new("work")?;
/// match client.token_blocking(&work, 60) {
///     Ok(token) => {
///         // Into the request's header, and nowhere else: never log it.
///         let header = format!("Bearer {}", token.access_token.expose());
///         # drop(header);
///     }
///     Err(e) if e.category() == Category::NotLoggedIn => {
///         // The hint is the command a person runs: `latchkey login --profile work`.
///         eprintln!("{e}; {}", e.hint().unwrap_or_default());
///         # assert!(e.hint().is_some_and(|h| h.contains("latchkey login --profile work")));
///     }
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// Whether this client presents a client token (see [`Client::with_client_token`]).
    delegated: bool,
    /// Whether the socket was named explicitly (LATCHKEY_SOCKET), not derived.
    socket_named: bool,
    /// The front found the daemon hung just before handing this process over
    /// ([`front::HANDOVER_VAR`]): the first blocking ask takes that as its outcome.
    found_hung: std::sync::atomic::AtomicBool,
}

/// Why [`Client::ask_if_final`] has no final answer.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstAsk {
    /// The daemon did not answer within the deadline.
    Hung,
    /// Anything else the fallback table goes on from (no daemon, a stale or
    /// foreign one, the daemon not to be asked).
    Other,
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
        let mut client = Client::new(paths, mode);
        client.socket_named = env.latchkey_socket.is_some();
        if std::env::var(front::HANDOVER_VAR)
            .is_ok_and(|v| v == front::hung_handover(std::process::id()))
        {
            client.found_hung = std::sync::atomic::AtomicBool::new(true);
        }
        Ok(match std::env::var("LATCHKEY_CLIENT_TOKEN") {
            Ok(t) if !t.trim().is_empty() => client.with_client_token(Secret::new(t.trim())),
            _ => client,
        })
    }

    /// A client over explicit paths.
    pub fn new(paths: Paths, mode: Mode) -> Client {
        Client {
            mode,
            deadline: DAEMON_DEADLINE,
            engine: OnceLock::new(),
            notices: Mutex::new(Vec::new()),
            transport: Transport::new(paths.socket.clone(), None, true),
            paths,
            bypass_daemon: std::sync::atomic::AtomicBool::new(false),
            delegated: false,
            socket_named: false,
            found_hung: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Presents `token`, a client token the owner minted, on every request
    /// (`LATCHKEY_CLIENT_TOKEN` for [`Client::from_env`]). Such a client can do
    /// what the token's scopes allow and nothing else: it talks to the daemon
    /// only, never starts one and never falls back to the encrypted file (it is
    /// not the owner; the file is not for it). With a socket named explicitly
    /// (`LATCHKEY_SOCKET`, or [`Client::with_named_socket`]) it does not check who
    /// owns that socket, since a delegate socket belongs to another user by design;
    /// the default socket must still be this user's, so a token is never handed to
    /// a listener another user planted where the default one would be.
    pub fn with_client_token(mut self, token: Secret) -> Client {
        self.transport = Transport::new(self.paths.socket.clone(), Some(token), !self.socket_named);
        self.delegated = true;
        self
    }

    /// Marks `paths.socket` as named by the caller (a delegate socket), not derived:
    /// see [`Client::with_client_token`]. Call it before that.
    pub fn with_named_socket(mut self) -> Client {
        self.socket_named = true;
        self
    }

    /// Whether this client presents a client token.
    pub fn is_delegated(&self) -> bool {
        self.delegated
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
    pub fn engine(&self) -> Result<&std::sync::Arc<Engine>, Error> {
        if self.delegated {
            // The one gate: no path of a client-token client reaches the file.
            return Err(Error::Usage {
                message: "this command needs the owner's session; a client token (LATCHKEY_CLIENT_TOKEN) works through the daemon only".into(),
                hint: Some("run it as the owner, without LATCHKEY_CLIENT_TOKEN".into()),
            });
        }
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        tracing::debug!(
            config = %self.paths.config_file.display(),
            "using the embedded engine: the session is read from the encrypted file"
        );
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

    /// An access token fresh enough for `min_ttl` seconds, for async callers: the
    /// daemon over the connection pool, then the fallback table.
    ///
    /// # Examples
    ///
    /// ```
    /// # let home = tempfile::tempdir()?;
    /// # std::fs::write(home.path().join("config.toml"), "[profiles.work]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"cli\"\n\n[profiles.work.proxy]\nupstream = \"http://127.0.0.1:9/v2\"\n")?;
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # runtime.block_on(async {
    /// # let client = latchkey::Client::new(latchkey::Paths::in_home(home.path()), latchkey::Mode::DaemonFirst { autostart: false });
    /// # let work = latchkey::ProfileName::new("work")?;
    /// // A token that lives at least five more minutes (refreshed first if not).
    /// match client.token(&work, 300).await {
    ///     Ok(token) => println!("expires at {:?}", token.expires_at),
    ///     Err(e) => eprintln!("no token: {e} (exit code {})", e.category().exit_code()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn token(&self, profile: &ProfileName, min_ttl: u64) -> Result<Token, Error> {
        let request = rq::Token {
            profile: profile.clone(),
            min_ttl,
        };
        self.token_after(request, None).await
    }

    /// An access token fresh enough for `min_ttl` seconds, for callers without an
    /// async runtime (`latchkey token`). The daemon is asked first with one
    /// blocking exchange: no runtime, no config, no engine; when it answers (a
    /// token or a typed error), or answers outside the protocol (`Broken`), that
    /// is the result. Only otherwise is a current-thread runtime built, to go on
    /// by the fallback table as [`Client::token`] does (start a missing daemon,
    /// else the embedded engine). Inside an async runtime, call [`Client::token`]:
    /// this one then refuses with an `internal` error rather than block it.
    pub fn token_blocking(&self, profile: &ProfileName, min_ttl: u64) -> Result<Token, Error> {
        let request = rq::Token {
            profile: profile.clone(),
            min_ttl,
        };
        let first = match self.first_ask(&request) {
            Ok(done) => return done.map(Token::from),
            Err(first) => first,
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Internal(
                "Client::token_blocking was called inside an async runtime; call Client::token"
                    .into(),
            ));
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?
            .block_on(self.token_after(request, first))
    }

    /// The front's one ask (see [`front`]): the daemon's answer to `request` when
    /// it is final by the fallback table (a success, a typed error, or an answer
    /// outside the protocol), else why not, and the fallback is the full program's
    /// to run. After a hung daemon the front hands that over (see
    /// [`front::HANDOVER_VAR`]) so the daemon is not waited for twice.
    #[doc(hidden)]
    pub fn ask_if_final<R: Request>(
        &self,
        request: &R,
    ) -> Result<Result<R::Answer, Error>, FirstAsk> {
        self.first_ask(request).map_err(|first| match first {
            Some(Reach::Hung) => FirstAsk::Hung,
            _ => FirstAsk::Other,
        })
    }

    /// The first, blocking ask of [`Client::token_blocking`] and of the front:
    /// `Ok` with the result when the daemon's answer is final, else the outcome
    /// for the fallback table.
    #[allow(
        clippy::type_complexity,
        reason = "a result of a result, named where used"
    )]
    fn first_ask<R: Request>(
        &self,
        request: &R,
    ) -> Result<Result<R::Answer, Error>, Option<Reach<R::Answer>>> {
        match self.ask_blocking(request) {
            Some(Reach::Answer(answer)) => {
                self.answered_by_daemon();
                Ok(answer.map_err(Error::Remote))
            }
            Some(Reach::Broken(why)) => Ok(Err(self.broken(why))),
            other => Err(other),
        }
    }

    /// Whether the front found the daemon hung just before handing this process
    /// over; true once, for the first ask.
    fn take_found_hung(&self) -> bool {
        self.found_hung
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// The blocking exchange of [`Client::token_blocking`]; `None` when the daemon
    /// is not to be asked (or cannot be without a runtime: Windows).
    fn ask_blocking<R: Request>(&self, request: &R) -> Option<Reach<R::Answer>> {
        if !self.daemon_allowed() {
            return None;
        }
        if self.take_found_hung() {
            return Some(Reach::Hung);
        }
        #[cfg(unix)]
        {
            Some(self.transport.call_blocking(request, self.deadline))
        }
        #[cfg(not(unix))]
        {
            let _unused = request;
            None
        }
    }

    /// The token path after a first outcome, if there was one.
    async fn token_after(
        &self,
        request: rq::Token,
        first: Option<Reach<api::Token>>,
    ) -> Result<Token, Error> {
        if let Some(answer) = self.daemon(&request, first).await {
            return answer.map(Token::from);
        }
        let t = self
            .engine()?
            .token(request.profile.as_str(), request.min_ttl)
            .await?;
        Ok(Token {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_at: t.expires_at.map(latchkey_daemon::convert::rfc3339),
            generation: t.generation,
            via: Via::Embedded,
        })
    }

    /// The session's ID token, renewed first when its own `exp` is within
    /// `min_ttl` seconds (`latchkey kube-credential`): the daemon, then the
    /// fallback table.
    pub async fn id_token(
        &self,
        profile: &ProfileName,
        min_ttl: u64,
    ) -> Result<api::IdToken, Error> {
        let request = rq::IdToken {
            profile: profile.clone(),
            min_ttl,
        };
        if let Some(answer) = self.daemon(&request, None).await {
            return answer;
        }
        let t = self.engine()?.id_token(profile, min_ttl).await?;
        Ok(latchkey_daemon::convert::id_token(t))
    }

    /// Refreshes now (joining one in flight).
    pub async fn refresh(&self, profile: &ProfileName) -> Result<api::Refreshed, Error> {
        let request = rq::Refresh {
            profile: profile.clone(),
        };
        if let Some(answer) = self.daemon(&request, None).await {
            return answer;
        }
        let t = self.engine()?.refresh(profile).await?;
        Ok(api::Refreshed {
            profile: profile.to_string(),
            expires_at: t.expires_at.map(latchkey_daemon::convert::rfc3339),
            generation: t.generation,
        })
    }

    /// Logs out, revoking at the provider unless `revoke` is false.
    pub async fn logout(
        &self,
        profile: &ProfileName,
        revoke: bool,
    ) -> Result<api::LoggedOut, Error> {
        let request = rq::Logout {
            profile: profile.clone(),
            body: api::LogoutRequest { revoke },
        };
        if let Some(answer) = self.daemon(&request, None).await {
            return answer;
        }
        let outcome = self.engine()?.logout(profile, revoke).await?;
        Ok(latchkey_daemon::convert::logged_out(outcome))
    }

    /// Every configured profile's state (no tokens), from the daemon when one
    /// answers. A client token sees the profiles of its `session:` scopes.
    pub async fn profiles(&self) -> Result<Vec<api::ProfileState>, Error> {
        if let Some(answer) = self.daemon(&rq::Profiles, None).await {
            return answer.map(|p| p.profiles);
        }
        Ok(latchkey_daemon::convert::profiles(self.engine()?).await)
    }

    /// A session's state (no tokens), from the daemon when one answers.
    ///
    /// # Examples
    ///
    /// ```
    /// # let home = tempfile::tempdir()?;
    /// # std::fs::write(home.path().join("config.toml"), "[profiles.work]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"cli\"\n\n[profiles.work.proxy]\nupstream = \"http://127.0.0.1:9/v2\"\n")?;
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # runtime.block_on(async {
    /// # let client = latchkey::Client::new(latchkey::Paths::in_home(home.path()), latchkey::Mode::DaemonFirst { autostart: false });
    /// # let work = latchkey::ProfileName::new("work")?;
    /// let (session, _via) = client.session(&work).await?;
    /// if session.logged_in {
    ///     let who = session.user.and_then(|u| u.email).unwrap_or_default();
    ///     println!("{who}, until {:?}", session.expires_at);
    /// } else {
    ///     println!("not logged in: run `latchkey login --profile {}`", session.profile);
    /// }
    /// # assert!(!session.logged_in);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn session(&self, profile: &ProfileName) -> Result<(api::Session, Via), Error> {
        let request = rq::Session {
            profile: profile.clone(),
        };
        if let Some(answer) = self.daemon(&request, None).await {
            return answer.map(|s| (s, Via::Daemon));
        }
        let st = self.engine()?.status(profile).await?;
        Ok((latchkey_daemon::convert::session(st), Via::Embedded))
    }

    /// Mints a client token (the owner only): through the daemon when one answers,
    /// else into `state/client-tokens` directly, where a running daemon sees it on
    /// its next request. The answer is the only place its secret ever appears.
    ///
    /// # Examples
    ///
    /// ```
    /// # let home = tempfile::tempdir()?;
    /// # std::fs::write(home.path().join("config.toml"), "[profiles.work]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"cli\"\n\n[profiles.work.proxy]\nupstream = \"http://127.0.0.1:9/v2\"\n")?;
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # runtime.block_on(async {
    /// # let client = latchkey::Client::new(latchkey::Paths::in_home(home.path()), latchkey::Mode::DaemonFirst { autostart: false });
    /// # let work = latchkey::ProfileName::new("work")?;
    /// use latchkey::{Scope, api::MintRequest};
    ///
    /// // An editor plugin may see who is logged in, never a token, for a day.
    /// let minted = client
    ///     .mint_client_token(MintRequest {
    ///         name: Some("editor".into()),
    ///         scopes: vec![Scope::parse("session:work")?],
    ///         ttl_seconds: Some(24 * 3600),
    ///     })
    ///     .await?;
    /// // `minted.token` (lk_...) goes to the plugin once: it is never shown again.
    /// let listed = client.client_tokens().await?;
    /// assert_eq!(listed.tokens.len(), 1);
    /// client.revoke_client_token(&minted.id).await?;
    /// assert!(client.client_tokens().await?.tokens.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn mint_client_token(
        &self,
        request: api::MintRequest,
    ) -> Result<api::MintedToken, Error> {
        let call = rq::MintClientToken {
            body: request.clone(),
        };
        if let Some(answer) = self.daemon(&call, None).await {
            return answer;
        }
        let engine = self.engine()?.clone();
        let minted = tokio::task::spawn_blocking(move || {
            engine.mint_client_token(request.name, request.scopes, request.ttl_seconds)
        })
        .await
        .map_err(|e| Error::Internal(format!("the mint task failed: {e}")))??;
        Ok(latchkey_daemon::convert::minted(minted))
    }

    /// Every client token, without secrets (the owner only).
    pub async fn client_tokens(&self) -> Result<api::ClientTokens, Error> {
        if let Some(answer) = self.daemon(&rq::ListClientTokens, None).await {
            return answer;
        }
        let records = self
            .engine()?
            .client_tokens()
            .list()
            .map_err(latchkey_daemon::EngineError::from)?;
        Ok(api::ClientTokens {
            tokens: records
                .into_iter()
                .map(latchkey_daemon::convert::client_token)
                .collect(),
        })
    }

    /// Revokes client token `id` (the owner only); a usage error when there is none.
    pub async fn revoke_client_token(&self, id: &TokenId) -> Result<(), Error> {
        let call = rq::RevokeClientToken { id: id.clone() };
        if let Some(answer) = self.daemon(&call, None).await {
            return answer.map(drop);
        }
        let engine = self.engine()?.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || engine.client_tokens().revoke(&id))
            .await
            .map_err(|e| Error::Internal(format!("the revoke task failed: {e}")))?
            .map_err(latchkey_daemon::EngineError::from)?;
        Ok(())
    }

    /// The operator status of a running daemon; `Ok(None)` when none answers.
    /// Never starts one.
    pub async fn daemon_status(&self) -> Result<Option<api::DaemonStatus>, Error> {
        if self.mode == Mode::EmbeddedOnly {
            return Ok(None);
        }
        match self.transport.call(&rq::Status, self.deadline).await {
            Reach::Answer(answer) => answer.map(Some).map_err(Error::Remote),
            Reach::Broken(why) => Err(self.broken(why)),
            Reach::Stale { theirs } => Err(Error::usage(
                format!(
                    "the daemon speaks protocol {theirs}, this client {}",
                    latchkey_proto::PROTOCOL_VERSION
                ),
                Some("run `latchkey daemon restart`".into()),
            )),
            Reach::Outdated => Err(Error::usage(
                OUTDATED.to_string(),
                Some("run `latchkey daemon restart`".into()),
            )),
            Reach::Refused(why) => Err(refused(why)),
            Reach::Dead(_) | Reach::Hung => Ok(None),
        }
    }

    /// Asks a running daemon to stop; `Ok(false)` when none answered.
    pub async fn daemon_shutdown(&self) -> Result<bool, Error> {
        match self.transport.call(&rq::Shutdown, self.deadline).await {
            Reach::Answer(Ok(_)) | Reach::Stale { .. } | Reach::Outdated => Ok(true),
            Reach::Answer(Err(e)) => Err(Error::Remote(e)),
            Reach::Broken(why) => Err(self.broken(why)),
            Reach::Refused(why) => Err(refused(why)),
            Reach::Dead(_) | Reach::Hung => Ok(false),
        }
    }

    /// The pid of the running daemon by its instance lock (`latchkeyd.lock` beside
    /// the socket): the kernel releases the lock only when that process exits, so a
    /// held lock names a live daemon even when it does not answer (stopped, wedged).
    /// `None` when no process holds it, or where there is no lock file (Windows).
    /// Unverified: good for waiting until it is gone; `terminate_daemon` proves who
    /// it is before any signal.
    pub fn daemon_pid(&self) -> Option<u32> {
        instance::held_pid(&self.lock_path())
    }

    fn lock_path(&self) -> PathBuf {
        self.paths.socket.with_file_name("latchkeyd.lock")
    }

    /// Stops a daemon that does not answer: SIGTERM (and SIGCONT, so a stopped one
    /// wakes up to handle it) to the pid that holds the instance lock, once it is
    /// proven to be this user's own latchkeyd (`instance::verify`); anything else is
    /// refused with a `local_storage` error saying why, and nothing is signalled.
    /// `Ok(false)` when no daemon holds the lock.
    pub fn terminate_daemon(&self) -> Result<bool, Error> {
        let daemon = match instance::verify(&self.lock_path()) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(false),
            Err(refusal) => return Err(not_signalled(refusal)),
        };
        #[cfg(unix)]
        {
            use rustix::process::{Pid, Signal, kill_process};
            let raw = daemon.pid();
            let pid = i32::try_from(raw)
                .ok()
                .and_then(Pid::from_raw)
                .ok_or_else(|| Error::Internal(format!("the daemon's lock names pid {raw}")))?;
            kill_process(pid, Signal::TERM)
                .and_then(|()| kill_process(pid, Signal::CONT))
                .map_err(|e| {
                    Error::Internal(format!("cannot signal latchkeyd (pid {raw}): {e}"))
                })?;
            Ok(true)
        }
        #[cfg(not(unix))]
        {
            Err(Error::Internal(format!(
                "latchkeyd (pid {}) does not answer; end it with the Task Manager",
                daemon.pid()
            )))
        }
    }

    /// Starts the daemon if none answers; `Ok(true)` when one answers afterwards.
    pub async fn daemon_start(&self) -> Result<bool, Error> {
        match self.transport.call(&rq::Health, self.deadline).await {
            Reach::Answer(_) => Ok(true),
            Reach::Broken(why) => Err(self.broken(why)),
            _ => self.autostart().await,
        }
    }

    /// Whether this client asks a daemon at all: not with LATCHKEY_NO_DAEMON, and
    /// not after it found the daemon hung, stale or not ours.
    fn daemon_allowed(&self) -> bool {
        if self.delegated {
            return true;
        }
        matches!(self.mode, Mode::DaemonFirst { .. })
            && !self
                .bypass_daemon
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One request to the daemon by the fallback table, over the pool unless a
    /// `first` outcome is already known (the blocking path's). `None` means: fall
    /// back.
    async fn daemon<R: Request>(
        &self,
        request: &R,
        first: Option<Reach<R::Answer>>,
    ) -> Option<Result<R::Answer, Error>> {
        if !self.daemon_allowed() {
            tracing::debug!("not asking a daemon (LATCHKEY_NO_DAEMON, or it was found unusable)");
            return None;
        }
        let reach = match first {
            Some(reach) => reach,
            None if self.take_found_hung() => Reach::Hung,
            None => self.transport.call(request, self.deadline).await,
        };
        self.settle(request, reach).await
    }

    /// The fallback table applied to one outcome; a dead daemon is started (when
    /// allowed) and asked again. `None` means: fall back.
    async fn settle<R: Request>(
        &self,
        request: &R,
        mut reach: Reach<R::Answer>,
    ) -> Option<Result<R::Answer, Error>> {
        if self.delegated {
            return Some(self.daemon_only(reach));
        }
        if let Reach::Dead(reason) = &reach
            && self.started_for(reason).await
        {
            reach = self.transport.call(request, self.deadline).await;
        }
        self.fall_back(reach, "answered from the encrypted file")
    }

    /// The autostart row of the fallback table, for every caller that found no
    /// daemon (`reason`): starts one when this client may (the owner's, with
    /// autostart on) and says whether one answers now, so the caller asks again.
    /// A failed start is no error here: the caller goes on by its table.
    async fn started_for(&self, reason: &str) -> bool {
        if self.delegated || !matches!(self.mode, Mode::DaemonFirst { autostart: true }) {
            return false;
        }
        tracing::debug!(%reason, socket = %self.paths.socket.display(), "no daemon answered; starting latchkeyd");
        match self.autostart().await {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!("latchkeyd did not start answering");
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "the daemon could not be started");
                false
            }
        }
    }

    /// The last rows of the fallback table, after autostart: an answer is final,
    /// so is one outside the protocol; otherwise `None` (go on without the
    /// daemon), with a notice that ends in `instead` when the daemon is unusable,
    /// and such a daemon is not asked again by this client.
    fn fall_back<T>(&self, reach: Reach<T>, instead: &str) -> Option<Result<T, Error>> {
        let unusable = |notice: String| {
            self.bypass_daemon
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.notice(notice);
        };
        match reach {
            Reach::Answer(answer) => {
                self.answered_by_daemon();
                Some(answer.map_err(Error::Remote))
            }
            Reach::Broken(why) => Some(Err(self.broken(why))),
            Reach::Dead(reason) => {
                tracing::debug!(%reason, "no daemon; using the embedded engine");
                None
            }
            Reach::Hung => {
                unusable(format!(
                    "the daemon at {} did not answer within {} ms; {instead}",
                    self.paths.socket.display(),
                    self.deadline.as_millis()
                ));
                None
            }
            Reach::Refused(why) => {
                unusable(format!("{why}; {instead}"));
                None
            }
            Reach::Stale { theirs } => {
                unusable(format!(
                    "the daemon speaks protocol {theirs}, this client {}; {instead} (run `latchkey daemon restart`)",
                    latchkey_proto::PROTOCOL_VERSION
                ));
                None
            }
            Reach::Outdated => {
                // Not marked unusable: it answers what it knows.
                self.notice(format!(
                    "{OUTDATED}; {instead} (run `latchkey daemon restart`)"
                ));
                None
            }
        }
    }

    /// Says (at debug level) that the daemon gave the answer, and where it is.
    fn answered_by_daemon(&self) {
        tracing::debug!(socket = %self.paths.socket.display(), "latchkeyd answered");
    }

    /// An outcome for what only the daemon can answer (every call of a
    /// client-token client, a subscription to events): its answer, or why there
    /// is none. There is no fallback.
    fn daemon_only<T>(&self, reach: Reach<T>) -> Result<T, Error> {
        let socket = self.paths.socket.display();
        let unreachable = |message: String, hint: &str| Error::Daemon {
            category: latchkey_proto::error::Category::Transport,
            message,
            hint: Some(hint.into()),
        };
        let for_token = "a client token works through a running latchkeyd only: check LATCHKEY_SOCKET and that the owner's daemon runs";
        match reach {
            Reach::Answer(answer) => answer.map_err(Error::Remote),
            Reach::Broken(why) => Err(self.broken(why)),
            Reach::Dead(reason) => Err(unreachable(
                format!("no daemon answers on {socket}: {reason}"),
                if self.delegated {
                    for_token
                } else {
                    "start it with `latchkey daemon start`"
                },
            )),
            Reach::Hung => Err(unreachable(
                format!(
                    "the daemon at {socket} did not answer within {} ms",
                    self.deadline.as_millis()
                ),
                if self.delegated {
                    for_token
                } else {
                    "run `latchkey daemon restart`"
                },
            )),
            // The owner hears what the token path says of the same socket.
            Reach::Refused(why) if !self.delegated => Err(refused(why)),
            Reach::Refused(why) => Err(unreachable(why, for_token)),
            Reach::Stale { theirs } => Err(Error::usage(
                format!(
                    "the daemon at {socket} speaks protocol {theirs}, this client {}",
                    latchkey_proto::PROTOCOL_VERSION
                ),
                Some(if self.delegated {
                    "use a latchkey of the daemon's version".into()
                } else {
                    "run `latchkey daemon restart`".into()
                }),
            )),
            Reach::Outdated => Err(Error::usage(
                format!("{OUTDATED} (at {socket})"),
                Some(if self.delegated {
                    "ask the owner to restart it: `latchkey daemon restart`".into()
                } else {
                    "run `latchkey daemon restart`".into()
                }),
            )),
        }
    }

    /// The error for an answer outside the protocol: final, never a fallback.
    fn broken(&self, why: String) -> Error {
        Error::Broken {
            socket: self.paths.socket.display().to_string(),
            why,
        }
    }

    /// Starts `latchkeyd` in the background, serialised by a lock so that many
    /// processes starting at once spawn one daemon. `Ok(true)` once it answers.
    async fn autostart(&self) -> Result<bool, Error> {
        if self.delegated {
            // The daemon is the owner's to start.
            return Ok(false);
        }
        let run = self
            .paths
            .socket
            .parent()
            .map_or_else(|| self.paths.runtime_dir.clone(), Path::to_path_buf);
        // Only Latchkey's own runtime folder is created; a folder named by
        // LATCHKEY_SOCKET must exist already (the daemon refuses it unless private).
        if run == self.paths.runtime_dir {
            latchkey_daemon::vault::fs::ensure_private_dir(&run)
        } else {
            latchkey_daemon::vault::fs::check_dir(&run).map(drop)
        }
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
            self.transport.call(&rq::Health, self.deadline).await,
            Reach::Answer(_)
        ) {
            return Ok(true);
        }
        let exe = daemon_exe();
        let log_path = run.join(DAEMON_LOG);
        rotate_log(&log_path, DAEMON_LOG_MAX);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path);
        let mut cmd = std::process::Command::new(&exe);
        cmd.env("LATCHKEY_SOCKET", &self.paths.socket)
            // What rotation before the start cannot bound: a daemon that runs for
            // weeks keeps its own log under the same size.
            .arg("--log-max-bytes")
            .arg(DAEMON_LOG_MAX.to_string())
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
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                // Installed without the daemon: a setup to fix, not a bug.
                Error::usage(
                    format!(
                        "latchkeyd is not installed: it is neither beside {} nor on PATH",
                        std::env::current_exe()
                            .ok()
                            .and_then(|p| p.parent().map(|d| d.display().to_string()))
                            .unwrap_or_else(|| "latchkey".into())
                    ),
                    Some(
                        "install it with latchkey (`cargo install --locked --path daemon` from a source checkout); without it every command still works from the encrypted file".into(),
                    ),
                )
            } else {
                Error::Internal(format!("cannot start {}: {e}", exe.display()))
            }
        })?;
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
                self.transport.call(&rq::Health, self.deadline).await,
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

/// The autostarted daemon's log (its stderr), in the runtime folder.
const DAEMON_LOG: &str = "latchkeyd.log";
/// Past this size the log is rotated before the next autostart. The runtime folder
/// is often a tmpfs (memory), and one audit line per request adds up: a tool asking
/// every second writes ~20 MB a day.
const DAEMON_LOG_MAX: u64 = 1024 * 1024;

/// Keeps the autostarted daemon's log bounded (docs/behaviour.md, "Security"): a
/// log past `max` bytes becomes `<log>.1`, replacing the previous generation, and
/// the daemon about to start writes a fresh one. So at most two generations exist,
/// and the one before the current is never lost. Checked under the autostart lock,
/// so concurrent clients rotate once. A failure only costs the bound, never the
/// start: it is logged.
fn rotate_log(log: &Path, max: u64) {
    match std::fs::symlink_metadata(log) {
        Ok(m) if m.is_file() && m.len() > max => {
            let mut old = log.as_os_str().to_owned();
            old.push(".1");
            if let Err(e) = std::fs::rename(log, &old) {
                tracing::debug!(error = %e, log = %log.display(), "cannot rotate the daemon's log");
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::debug!(error = %e, log = %log.display(), "cannot inspect the daemon's log")
        }
    }
}

/// The `latchkeyd` autostart runs: the one installed with this program
/// ([`front::sibling`]), else the first one on PATH; `None` when there is
/// none (the client was installed without the daemon). `latchkey doctor` warns
/// then, and `latchkey daemon start` is a usage error with the install hint.
pub fn daemon_program() -> Option<PathBuf> {
    front::sibling("latchkeyd").or_else(|| {
        let name = format!("latchkeyd{}", std::env::consts::EXE_SUFFIX);
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    })
}

/// [`daemon_program`], or the bare name (spawning it then says it is missing).
fn daemon_exe() -> PathBuf {
    daemon_program()
        .unwrap_or_else(|| PathBuf::from(format!("latchkeyd{}", std::env::consts::EXE_SUFFIX)))
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

/// The error for a pid in the instance lock that was not proven to be this user's
/// latchkeyd: nothing was signalled.
fn not_signalled(r: instance::Refusal) -> Error {
    let pid = r.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    Error::Daemon {
        category: latchkey_proto::error::Category::LocalStorage,
        message: format!(
            "not signalling the process{pid} named by {}: {}",
            r.lock.display(),
            r.why
        ),
        hint: Some(format!(
            "if no latchkeyd of yours runs, remove {}; if one does but does not answer, stop it yourself (kill PID); `latchkey doctor` checks the runtime folder",
            r.lock.display()
        )),
    }
}

/// A token the daemon answered.
/// A token the daemon answered with.
impl From<api::Token> for Token {
    fn from(t: api::Token) -> Token {
        Token {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_at: t.expires_at,
            generation: t.generation,
            via: Via::Daemon,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let paths = Paths::resolve(&latchkey_proto::paths::EnvInputs {
            latchkey_home: Some("/nonexistent/home".into()),
            temp_dir: std::env::temp_dir(),
            ..latchkey_proto::paths::EnvInputs::default()
        })
        .unwrap();
        Client::new(paths, Mode::DaemonFirst { autostart: true })
    }

    /// A client token goes to a socket of another user only when the caller named
    /// that socket; the derived default socket must still be this user's.
    #[test]
    fn a_client_token_skips_the_owner_check_only_for_a_named_socket() {
        let token = || Secret::new(format!("lk_{}_{}", "a".repeat(12), "A".repeat(43)));
        let default = client().with_client_token(token());
        assert!(default.is_delegated());
        assert!(default.transport.checks_owner());
        let named = client().with_named_socket().with_client_token(token());
        assert!(!named.transport.checks_owner());
        assert!(client().transport.checks_owner());
    }

    /// A client-token client never reaches the encrypted file.
    #[test]
    fn a_client_token_client_has_no_embedded_engine() {
        let c = client().with_client_token(Secret::new("lk_x"));
        let e = c.engine().unwrap_err();
        assert_eq!(e.category(), latchkey_proto::error::Category::Usage);
    }
}
