//! The command line as clap sees it. Parsing only: no I/O, no defaults that need
//! the environment (those are resolved in `main.rs`).

use clap::{Args, Parser, Subcommand};

/// Latchkey: OAuth 2.0 / OpenID Connect sessions for command-line tools.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Profile to use (default: LATCHKEY_PROFILE, then default_profile, then the only one).
    #[arg(long, global = true, value_name = "P")]
    pub profile: Option<String>,
    /// Print one JSON document on stdout, errors included.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the access token (and a newline), refreshing it first when it expires soon.
    Token {
        /// Refresh first when the token expires within this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = latchkey_daemon::engine::DEFAULT_MIN_TTL)]
        min_ttl: u64,
    },
    /// Log in to the profile's provider (browser, or the device flow with --device).
    Login(LoginArgs),
    /// Refresh the session now and say when the new token expires.
    Refresh,
    /// Show who is logged in, until when, and where the session is stored.
    Status {
        /// Show every configured profile.
        #[arg(long)]
        all: bool,
    },
    /// Revoke the session at the provider and delete it locally.
    Logout {
        /// Only delete the local session; do not contact the provider.
        #[arg(long)]
        local: bool,
    },
    /// Check the configuration, files and session (offline unless --server).
    Doctor {
        /// Also check the provider: discovery, clock skew, refresh, userinfo.
        #[arg(long)]
        server: bool,
    },
    /// Manage provider profiles in config.toml.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Operate the latchkeyd daemon.
    #[command(subcommand)]
    Daemon(DaemonCommand),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Use the device flow (RFC 8628): never opens a browser here.
    #[arg(long, visible_alias = "headless")]
    pub device: bool,
    /// Do not open a browser; print the URL to open yourself.
    #[arg(long, conflicts_with = "device")]
    pub no_browser: bool,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Show a QR code of the verification URL (device flow).
    #[arg(long)]
    pub qr: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Add a profile.
    Add {
        /// Profile name: letters, digits, '-', '_' and '.'.
        name: String,
        /// OIDC issuer URL (https; plain http only on loopback hosts).
        #[arg(long, value_name = "URL")]
        issuer: String,
        /// OAuth client id registered at the provider.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// Scope to request; repeat for several (default: openid profile email offline_access).
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// Make it the default profile.
        #[arg(long)]
        default: bool,
    },
    /// List the profiles.
    List,
    /// Remove a profile and delete its local session (does not revoke; use `latchkey logout` first).
    Remove { name: String },
    /// Show the default profile, or make NAME the default.
    Default { name: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Show pid, version, uptime, sessions and counters (exit 1 when not running).
    Status,
    /// Start the daemon in the background if it is not running.
    Start,
    /// Ask the daemon to stop.
    Stop,
    /// Stop, then start the daemon.
    Restart,
}
