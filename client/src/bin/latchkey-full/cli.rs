//! The command line as clap sees it. Parsing only: no I/O, no defaults that need
//! the environment (those are resolved in `main.rs`).

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

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
    #[arg(long, global = true, value_name = "P", add = profiles())]
    pub profile: Option<String>,
    /// Print JSON on stdout, errors included: one document (JSON Lines for login).
    #[arg(long, global = true)]
    pub json: bool,
}

/// Commands that name no profile, or name it another way (`profile remove NAME`,
/// a client token's scopes): they accept the global `--profile` like every
/// command, but their help does not offer it.
const NO_PROFILE: [&str; 5] = ["profile", "daemon", "client-token", "completions", "man"];

/// The command line as parsed, completed and documented: the derived definition,
/// with `--profile` hidden where it means nothing. Parsing, completions and man
/// pages all start here, so they agree.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    // clap gives a subcommand the global `--profile` only when it has no argument
    // of that id: a hidden copy of `Global`'s own (global too, so it reaches their
    // subcommands) takes its place, and its value lands in `Global` all the same.
    let Some(profile) = cmd
        .get_arguments()
        .find(|a| a.get_id() == "profile")
        .cloned()
    else {
        return cmd;
    };
    for name in NO_PROFILE {
        let hidden = profile.clone().hide(true);
        cmd = cmd.mut_subcommand(name, |c| c.arg(hidden));
    }
    cmd
}

/// Parses a command line with [`command`].
pub fn parse(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the access token (and a newline), refreshing it first when it expires soon.
    Token {
        /// Refresh first when the token expires within this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = latchkey_daemon::engine::DEFAULT_MIN_TTL)]
        min_ttl: u64,
        /// raw: the token alone; json: as --json; header: `Authorization: Bearer …`.
        #[arg(long, value_enum, default_value_t = TokenFormat::Raw)]
        format: TokenFormat,
    },
    /// Run a command with a fresh access token in its environment (never printed).
    Exec {
        /// The variable that carries the token.
        #[arg(
            long = "env",
            value_name = "NAME",
            default_value = "LATCHKEY_ACCESS_TOKEN"
        )]
        env: String,
        /// Refresh first when the token expires within this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = latchkey_daemon::engine::DEFAULT_MIN_TTL)]
        min_ttl: u64,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
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
    /// Give a tool less than your session: mint, list and revoke client tokens.
    #[command(subcommand, name = "client-token")]
    ClientToken(ClientTokenCommand),
    /// Call the profile's API with its token injected (the API proxy); print the body.
    Api(ApiArgs),
    /// git's credential helper (git-credential(1)): get, store, erase.
    #[command(name = "git-credential")]
    GitCredential {
        /// What git asks: get, store or erase (others are ignored).
        operation: String,
    },
    /// kubectl's credential plugin (kubeconfig `exec`): prints an ExecCredential.
    /// Serve the Model Context Protocol on stdin/stdout for an AI agent: its tools
    /// call your APIs through Latchkey, with LATCHKEY_CLIENT_TOKEN's scopes only.
    Mcp,
    #[command(name = "kube-credential")]
    KubeCredential {
        /// Give the access token instead of the ID token.
        #[arg(long)]
        access_token: bool,
    },
    /// docker's credential helper (docker-credential-helpers): get, store, erase, list, version.
    #[command(name = "docker-credential")]
    DockerCredential {
        /// What docker asks.
        operation: String,
    },
    /// Print the script that gives a shell Tab completion: source <(latchkey completions bash).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page, or write one page per command into a folder.
    Man {
        /// Write latchkey.1, latchkey-token.1, ... into this folder.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
}

/// The shells `latchkey completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Completes a profile name from config.toml (only ever run while completing).
fn profiles() -> clap_complete::ArgValueCandidates {
    clap_complete::ArgValueCandidates::new(crate::cmd::shell::profile_candidates)
}

/// `latchkey api`, like `gh api`: one request to `[profiles.NAME.proxy] upstream`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The path on the upstream, with an optional query: /me, v2/issues?state=open.
    pub path: String,
    /// The HTTP method (default: GET, or POST with a body).
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,
    /// A header to send, as 'Name: value'; repeat for several.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(
        short = 'd',
        long = "data",
        value_name = "BODY",
        conflicts_with = "input"
    )]
    pub data: Option<String>,
    /// Read the request body from a file (- for stdin).
    #[arg(long, value_name = "FILE")]
    pub input: Option<std::path::PathBuf>,
    /// Print the status line and the response headers before the body.
    #[arg(short = 'i', long)]
    pub include: bool,
}

/// How `latchkey token` prints the token (clap's names for
/// [`latchkey::front::TokenFormat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenFormat {
    Raw,
    Json,
    Header,
}

impl From<TokenFormat> for latchkey::front::TokenFormat {
    fn from(f: TokenFormat) -> Self {
        match f {
            TokenFormat::Raw => latchkey::front::TokenFormat::Raw,
            TokenFormat::Json => latchkey::front::TokenFormat::Json,
            TokenFormat::Header => latchkey::front::TokenFormat::Header,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientTokenCommand {
    /// Mint a client token and print it (once) on stdout.
    Mint {
        /// What it may do: token:P, session:P, login:P or proxy:P for profile P; repeat for several.
        #[arg(long = "scope", value_name = "KIND:PROFILE", required = true, value_parser = parse_scope)]
        scopes: Vec<latchkey_proto::delegation::Scope>,
        /// A label shown by `list` and in the daemon's audit lines.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Lifetime, such as 12h, 30d or 90days (default: until revoked).
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// List the client tokens (never their secrets).
    List,
    /// Revoke a client token by its id.
    Revoke {
        /// The id `list` shows (12 characters).
        id: String,
    },
}

fn parse_scope(s: &str) -> Result<latchkey_proto::delegation::Scope, String> {
    latchkey_proto::delegation::Scope::parse(s)
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 12h, 30d or 90days)"))?;
    match d.as_secs() {
        0 => Err("a lifetime of at least one second".into()),
        secs => Ok(secs),
    }
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
        /// OIDC issuer URL (https; plain http only on loopback hosts); with --preset, overrides it.
        #[arg(long, value_name = "URL", required_unless_present = "preset")]
        issuer: Option<String>,
        /// OAuth client id registered at the provider.
        #[arg(long, value_name = "ID")]
        client_id: String,
        /// Scope to request; repeat for several (default: openid profile email offline_access).
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// Make it the default profile.
        #[arg(long)]
        default: bool,
        /// Fill in a well-known provider: gitlab, google, entra, keycloak, okta, auth0, github.
        #[arg(long, value_name = "P")]
        preset: Option<String>,
        /// Entra ID tenant (default organizations).
        #[arg(long, value_name = "T", requires = "preset")]
        tenant: Option<String>,
        /// Server host: GitLab, GitHub (Enterprise), Keycloak, Okta, Auth0.
        #[arg(long, value_name = "HOST", requires = "preset")]
        domain: Option<String>,
        /// Keycloak realm.
        #[arg(long, value_name = "R", requires = "preset")]
        realm: Option<String>,
        /// Auth0 API identifier, sent as `audience`.
        #[arg(long, value_name = "A", requires = "preset")]
        audience: Option<String>,
    },
    /// List the profiles.
    List,
    /// Remove a profile and delete its local session (does not revoke; use `latchkey logout` first).
    Remove {
        #[arg(add = profiles())]
        name: String,
    },
    /// Show the default profile, or make NAME the default.
    Default {
        #[arg(add = profiles())]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Show pid, version, uptime, sessions and counters (exit 3 when not running).
    Status,
    /// Start the daemon in the background if it is not running.
    Start,
    /// Ask the daemon to stop.
    Stop,
    /// Stop, then start the daemon.
    Restart,
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey::front::{Invocation, RefreshArgs, TokenArgs, parse};

    fn argv(s: &str) -> Vec<std::ffi::OsString> {
        s.split_whitespace().map(Into::into).collect()
    }

    fn summary(cli: &Cli) -> Invocation {
        match cli.command {
            Command::Token { min_ttl, format } => Invocation::Token(TokenArgs {
                profile: cli.global.profile.clone(),
                json: cli.global.json,
                min_ttl,
                format: format.into(),
            }),
            Command::Refresh => Invocation::Refresh(RefreshArgs {
                profile: cli.global.profile.clone(),
                json: cli.global.json,
            }),
            _ => panic!("not a command the front answers"),
        }
    }

    #[test]
    fn the_fast_path_agrees_with_clap_on_everything_it_accepts() {
        for line in [
            "token",
            "token --json",
            "--json token",
            "token --min-ttl 120",
            "token --min-ttl=0",
            "--profile work token",
            "--profile=work token --min-ttl 5 --json",
            "token --profile work",
            "token --profile=dev-1",
            "token --format header",
            "token --format=json --json",
            "--json token --format raw --min-ttl=7",
            "refresh",
            "refresh --json",
            "--profile=dev-1 refresh",
            "refresh --profile work --json",
        ] {
            let args = argv(line);
            let fast = parse(&args).unwrap_or_else(|| panic!("fast path refused {line:?}"));
            let mut full = vec![std::ffi::OsString::from("latchkey")];
            full.extend(args);
            let clap = super::parse(&full).unwrap();
            assert_eq!(fast, summary(&clap), "{line}");
        }
    }

    #[test]
    fn profile_is_offered_only_where_it_means_something() {
        let help = |line: &str| {
            let mut full = vec![std::ffi::OsString::from("latchkey")];
            full.extend(argv(line));
            full.push("--help".into());
            super::parse(&full).unwrap_err().to_string()
        };
        for line in [
            "profile add",
            "profile",
            "daemon",
            "daemon status",
            "client-token mint",
            "completions",
            "man",
        ] {
            let text = help(line);
            assert!(!text.contains("--profile"), "{line}: {text}");
            assert!(text.contains("--json"), "{line}: {text}");
        }
        for line in ["token", "status", "login", "git-credential", "api"] {
            assert!(help(line).contains("--profile <P>"), "{line}");
        }
        // Hidden, not removed: every command still takes it.
        let cli = super::parse(&argv("latchkey daemon status --profile work")).unwrap();
        assert_eq!(cli.global.profile.as_deref(), Some("work"));
        let cli = super::parse(&argv("latchkey --profile work profile list")).unwrap();
        assert_eq!(cli.global.profile.as_deref(), Some("work"));
    }

    #[test]
    fn everything_else_goes_to_clap() {
        for line in [
            "",
            "status",
            "token --help",
            "token -h",
            "--version",
            "token token",
            "token --json --json",
            "token --min-ttl",
            "token --min-ttl -5",
            "token --min-ttl 1e3",
            "token --min-ttl 99999999999999999999999",
            "--min-ttl 5 token",
            "token --profile",
            "token --profile --json",
            "token --profile a --profile b",
            "token --json=1",
            "token=1",
            "token --unknown",
            "token -- x",
            "token --format",
            "token --format xml",
            "token --format raw --format raw",
            "--format raw token",
            "token -f raw",
            "refresh --min-ttl 5",
            "refresh --format raw",
            "refresh refresh",
            "token refresh",
            "refresh token",
            "refresh --help",
            "refresh --json --json",
        ] {
            assert!(parse(&argv(line)).is_none(), "fast path took {line:?}");
        }
    }
}
