//! `fake-idp`: the fake identity provider of `latchkey_tests::fake_idp` as a process, for
//! tests (and manual runs) that need the provider outside the test's own process.
//!
//! It binds `127.0.0.1`, prints exactly one line, `{"issuer":"http://127.0.0.1:PORT"}`, to
//! stdout once it accepts connections, and serves until SIGINT or SIGTERM. Everything the
//! in-process handle can do is reachable through the `/_admin/*` JSON endpoints.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use latchkey_tests::fake_idp::{DeviceApproval, FakeIdp, FakeIdpConfig, UserInfo};

/// A fake OAuth 2.0 / OIDC provider for Latchkey's tests. Loopback only.
#[derive(Debug, Parser)]
#[command(name = "fake-idp", version)]
struct Args {
    /// Port on 127.0.0.1 (0: ephemeral; the ready line tells which).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The only client_id accepted.
    #[arg(long, default_value = "latchkey-cli")]
    client_id: String,
    /// Access token lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    access_ttl: u64,
    /// Refresh token lifetime in seconds (default: no expiry).
    #[arg(long, value_name = "SECS")]
    refresh_ttl: Option<u64>,
    /// Issue no refresh tokens at all.
    #[arg(long)]
    no_refresh_token: bool,
    /// Keep refresh tokens valid across refreshes (the same one is returned).
    #[arg(long)]
    no_rotation: bool,
    /// Omit refresh_token from refresh responses (the presented one stays valid).
    #[arg(long)]
    no_new_refresh_token: bool,
    /// Do not revoke the grant when a rotated refresh token is presented again.
    #[arg(long)]
    no_reuse_detection: bool,
    /// Omit id_token from token responses.
    #[arg(long)]
    no_id_token: bool,
    /// Redirect /authorize with error=access_denied.
    #[arg(long)]
    deny_authorize: bool,
    /// Device polls answered authorization_pending before approval.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with_all = ["device_deny_after", "device_manual"])]
    device_approve_after: u32,
    /// Deny device authorizations after N pending polls.
    #[arg(long, value_name = "N", conflicts_with = "device_manual")]
    device_deny_after: Option<u32>,
    /// Leave device authorizations pending until POST /_admin/device/approve or /deny.
    #[arg(long)]
    device_manual: bool,
    /// Device poll interval in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
        conflicts_with = "no_device_interval"
    )]
    device_interval: u64,
    /// Omit the interval field from device authorization responses.
    #[arg(long)]
    no_device_interval: bool,
    /// Device code lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    device_ttl: u64,
    /// Answer slow_down to the first N device polls.
    #[arg(long, value_name = "N", default_value_t = 0)]
    device_slow_down: u32,
    /// Serve no discovery document (404).
    #[arg(long)]
    no_discovery: bool,
    /// No revocation endpoint.
    #[arg(long)]
    no_revocation: bool,
    /// Scope granted when the client asks for none.
    #[arg(long, default_value = "openid profile email offline_access")]
    scope: String,
    /// The user's `sub`.
    #[arg(long, default_value = "fake-user-0001")]
    sub: String,
    /// The user's email.
    #[arg(long, default_value = "dev@example.test")]
    email: String,
    /// The user's display name.
    #[arg(long, default_value = "Dev Example")]
    name: String,
    /// The user's groups, comma-separated (empty: none).
    #[arg(long, default_value = "dev,ops")]
    groups: String,
    /// Claim name of the groups.
    #[arg(long, default_value = "groups")]
    groups_claim: String,
}

impl Args {
    fn config(self) -> FakeIdpConfig {
        let device_approval = if self.device_manual {
            DeviceApproval::Manual
        } else if let Some(n) = self.device_deny_after {
            DeviceApproval::DenyAfterPolls(n)
        } else {
            DeviceApproval::AfterPolls(self.device_approve_after)
        };
        FakeIdpConfig {
            client_id: self.client_id,
            access_token_ttl: Duration::from_secs(self.access_ttl),
            refresh_token_ttl: self.refresh_ttl.map(Duration::from_secs),
            issue_refresh_token: !self.no_refresh_token,
            rotate_refresh_tokens: !self.no_rotation,
            return_refresh_token_on_refresh: !self.no_new_refresh_token,
            reuse_detection: !self.no_reuse_detection,
            id_token: !self.no_id_token,
            scope: self.scope,
            authorize_deny: self.deny_authorize,
            device_approval,
            device_code_ttl: Duration::from_secs(self.device_ttl),
            device_interval: (!self.no_device_interval).then_some(self.device_interval),
            device_slow_down_polls: self.device_slow_down,
            discovery: !self.no_discovery,
            revocation: !self.no_revocation,
            user: UserInfo {
                sub: self.sub,
                email: self.email,
                name: self.name,
                groups: self
                    .groups
                    .split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            groups_claim: self.groups_claim,
            ..FakeIdpConfig::default()
        }
    }
}

/// Registers for SIGINT and SIGTERM (Unix; Ctrl-C elsewhere) now, and resolves when one
/// arrives: how tests and people stop the fake. Registration is eager so that a signal sent
/// right after the ready line is caught rather than killing the process by default action.
fn stop_signals() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            // Unverified on Windows (no target here); an error just means "stop now".
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let port = args.port;
    let idp = match FakeIdp::start_on(args.config(), port).await {
        Ok(idp) => idp,
        Err(e) => {
            eprintln!("fake-idp: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = match stop_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("fake-idp: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = serde_json::json!({ "issuer": idp.issuer() });
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{ready}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!("fake-idp: cannot write the ready line to stdout");
        return ExitCode::FAILURE;
    }
    drop(stdout);
    stop.await;
    idp.stop().await;
    ExitCode::SUCCESS
}
