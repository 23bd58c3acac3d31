//! `latchkeyd [--socket PATH] [--idle-exit SECS] [--log-format text|json]
//! [--log-max-bytes N]`: the
//! per-user Latchkey daemon, in the foreground. Wiring only: the server lives in
//! `latchkey_daemon::server`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use latchkey_daemon::Engine;
use latchkey_daemon::config::Config;
use latchkey_daemon::server::{self, Daemon, delegate, harden, listen, logfile};
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
    /// When stderr is a regular file, keep it under this many bytes (older lines
    /// are dropped). The client passes it to the daemons it autostarts.
    #[arg(long, value_name = "N")]
    log_max_bytes: Option<u64>,
}

fn init_logging(format: LogFormat, max_bytes: Option<u64>) {
    let filter = std::env::var("LATCHKEY_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(match max_bytes {
            Some(max) => logfile::LogWriter::capped_stderr(max),
            None => logfile::LogWriter::stderr(),
        })
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
    init_logging(args.log_format, args.log_max_bytes);
    harden::harden();
    // Before any socket is opened: connections the daemon did not ask for must not
    // run it out of descriptors for its vaults and locks (docs/behaviour.md,
    // "Security").
    harden::raise_open_file_limit();
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
    let bound = match listen::bind(&socket, &paths.runtime_dir) {
        Ok(b) => b,
        Err(e) => return fail("cannot listen", &e),
    };
    let (listener, lock, activation) = match bound {
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
    lock.hold_until_exit();
    // The delegate listeners, after the instance lock (a leftover delegate socket
    // is ours to replace) and before readiness. A configured one that cannot be
    // bound stops the daemon: the person asked for it.
    let delegates = match delegate::bind(&config.delegate, &paths.runtime_dir, &socket) {
        Ok(d) => d,
        Err(e) => return fail("cannot open the delegate listeners", &e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail("cannot start the runtime", &e),
    };
    let socket = listen::served_path(&listener, activation, &socket);
    let engine = Engine::new(paths, config);
    let daemon = Daemon::new(engine, socket.clone(), activation);
    let code = runtime.block_on(async {
        let incoming = match listen::incoming(listener) {
            Ok(l) => l,
            #[cfg(windows)]
            Err(e) if listen::is_already_running(&e) => {
                eprintln!("latchkeyd: already running on {}", socket.display());
                return ExitCode::SUCCESS;
            }
            Err(e) => return fail("cannot use the socket", &e),
        };
        let described = delegates.describe().join(", ");
        let delegates = match delegates.incoming() {
            Ok(d) => d,
            Err(e) => return fail("cannot use the delegate listeners", &e),
        };
        tracing::info!(
            pid = std::process::id(),
            socket = %socket.display(),
            activation = activation.as_str(),
            delegates = %described,
            "latchkeyd ready"
        );
        // Signals are watched before readiness is announced, so a SIGTERM sent right
        // after READY=1 is a graceful stop, not a kill.
        let stop = match stop_signals() {
            Ok(s) => s,
            Err(e) => return fail("cannot watch for signals", &e),
        };
        let signals = daemon.shutdown.clone();
        tokio::spawn(async move {
            stop.await;
            signals.cancel();
        });
        // Readiness only after the socket is bound and the engine is built.
        listen::notify_ready();
        let idle = args.idle_exit.filter(|s| *s > 0).map(Duration::from_secs);
        server::run(incoming, delegates, daemon, idle).await;
        listen::remove_socket(&socket, activation);
        tracing::info!("latchkeyd stopped");
        ExitCode::SUCCESS
    });
    // What is still on the blocking pool now sent nothing to the provider (a stop
    // waits for all work that did): a wait for another process's profile lock, a
    // read. Dropping the runtime would wait for them (up to the lock's 30 s); the
    // process exits instead, and the kernel releases whatever they held.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Resolves when the daemon is asked to stop: SIGTERM or SIGINT (Unix), Ctrl-C or
/// Ctrl-Break (Windows). Registered before readiness is announced.
#[cfg(unix)]
fn stop_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

#[cfg(windows)]
fn stop_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut c = tokio::signal::windows::ctrl_c()?;
    let mut brk = tokio::signal::windows::ctrl_break()?;
    Ok(async move {
        tokio::select! {
            _ = c.recv() => tracing::info!("Ctrl-C: shutting down"),
            _ = brk.recv() => tracing::info!("Ctrl-Break: shutting down"),
        }
    })
}
