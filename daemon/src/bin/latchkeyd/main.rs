//! `latchkeyd [--socket PATH] [--idle-exit SECS] [--log-format text|json]`: the
//! per-user Latchkey daemon, in the foreground. Wiring only: the server lives in
//! `latchkey_daemon::server`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use latchkey_daemon::Engine;
use latchkey_daemon::config::Config;
use latchkey_daemon::server::{self, Daemon, harden, listen};
use latchkey_proto::paths::Paths;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The Latchkey daemon: keeps sessions in memory and answers on a local socket.
#[derive(Debug, Parser)]
#[command(name = "latchkeyd", version)]
struct Args {
    /// Socket path (default: LATCHKEY_SOCKET, then the runtime folder).
    #[arg(long, value_name = "PATH")]
    socket: Option<std::path::PathBuf>,
    /// Exit after this many seconds without requests (0 or absent: never).
    #[arg(long, value_name = "SECS")]
    idle_exit: Option<u64>,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = std::env::var("LATCHKEY_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_err() {
        // Only possible when a subscriber already exists; logs go there.
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the daemon's start-up messages before logging matters"
)]
fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    harden::harden();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("latchkeyd: {what}: {e}");
        ExitCode::from(1)
    };
    let mut env = latchkey_daemon::engine::process_env();
    if let Some(s) = &args.socket {
        env.latchkey_socket = Some(s.clone());
    }
    let paths = match Paths::resolve(&env) {
        Ok(p) => p,
        Err(e) => return fail("cannot resolve folders", &e),
    };
    let config = match Config::load(&paths.config_file) {
        Ok(c) => c,
        Err(e) => return fail("cannot read the configuration", &e),
    };
    let socket = paths.socket.clone();
    let bound = match listen::bind(&socket) {
        Ok(b) => b,
        Err(e) => return fail("cannot listen", &e),
    };
    let (listener, _lock, activation) = match bound {
        listen::Bound::AlreadyRunning { pid } => {
            let who = pid.map_or_else(
                || " (another listener holds the socket)".to_string(),
                |p| format!(" (pid {p})"),
            );
            eprintln!("latchkeyd: already running{who} on {}", socket.display());
            return ExitCode::SUCCESS;
        }
        listen::Bound::Serving {
            listener,
            lock,
            activation,
        } => (listener, lock, activation),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail("cannot start the runtime", &e),
    };
    // An activated socket may live elsewhere than the computed path: report the real one.
    let socket = match listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
    {
        Some(actual) if activation == listen::Activation::Systemd => actual,
        _ => socket,
    };
    let engine = Engine::new(paths, config);
    let daemon = Daemon::new(engine, socket.clone(), activation.as_str());
    runtime.block_on(async {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => return fail("cannot use the socket", &e),
        };
        tracing::info!(
            pid = std::process::id(),
            socket = %socket.display(),
            activation = activation.as_str(),
            "latchkeyd ready"
        );
        // Signals are watched before readiness is announced, so a SIGTERM sent right
        // after READY=1 is a graceful stop, not a kill.
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => return fail("cannot watch SIGTERM", &e),
        };
        let mut int = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
            Ok(s) => s,
            Err(e) => return fail("cannot watch SIGINT", &e),
        };
        let signals = daemon.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            signals.cancel();
        });
        // Readiness only after the socket is bound and the engine is built.
        listen::notify_ready();
        let idle = args.idle_exit.filter(|s| *s > 0).map(Duration::from_secs);
        server::run(listener, daemon, idle).await;
        // Remove our socket so clients see "not running" at once, not a refusal.
        if activation == listen::Activation::SelfBound
            && let Err(e) = std::fs::remove_file(&socket)
        {
            tracing::debug!(error = %e, "the socket was already gone");
        }
        tracing::info!("latchkeyd stopped");
        ExitCode::SUCCESS
    })
}
