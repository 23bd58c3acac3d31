//! `latchkey daemon status|start|stop|restart`, for operators.

use std::time::Duration;

use latchkey::Error;
use latchkey_proto::api::Activation;
use serde_json::json;

use super::Ctx;
use crate::cli::DaemonCommand;
use crate::render::{Output, in_words};

pub async fn run(ctx: &Ctx, cmd: DaemonCommand) -> Result<Output, Error> {
    let socket = ctx.paths.socket.display().to_string();
    match cmd {
        DaemonCommand::Status => match ctx.client.daemon_status().await? {
            Some(st) => {
                let mut text = format!(
                    "latchkeyd {} (protocol {}) is running, pid {}, up {}\n  socket: {} ({})\n",
                    st.version,
                    st.protocol,
                    st.pid,
                    in_words(i64::try_from(st.uptime_seconds).unwrap_or(i64::MAX))
                        .trim_start_matches("in "),
                    st.socket,
                    match st.activation {
                        Activation::Systemd => "socket-activated by systemd",
                        Activation::Launchd => "socket-activated by launchd",
                        Activation::SelfBound => "bound by itself",
                    }
                );
                for p in &st.profiles {
                    text.push_str(&format!(
                        "  profile {}: {}{}{}\n",
                        p.name,
                        if p.logged_in {
                            "logged in"
                        } else {
                            "not logged in"
                        },
                        match (&p.expires_at, p.generation) {
                            (Some(at), Some(g)) =>
                                format!(", generation {g}, token expires at {at}"),
                            _ => String::new(),
                        },
                        if p.unsaved {
                            "; a change to the session (a refresh or a logout) is NOT SAVED yet (the daemon retries the write)"
                        } else {
                            ""
                        }
                    ));
                }
                let c = &st.counters;
                text.push_str(&format!(
                    "  requests {}, token requests {}, refreshes {} ok / {} failed, key derivations {}, vault reads {}, event subscribers {}\n",
                    c.requests, c.token_requests, c.refreshes_ok, c.refreshes_failed, c.kdf_derivations, c.vault_reads, c.event_subscribers
                ));
                if c.proxy_requests > 0 {
                    text.push_str(&format!(
                        "  proxy: {} requests, {} retried after a 401, {} upstream errors\n",
                        c.proxy_requests, c.proxy_retries, c.proxy_upstream_errors
                    ));
                }
                if let Some(l) = &st.last_refresh {
                    text.push_str(&format!("  last refresh: {} ({})\n", l.at, l.outcome));
                }
                if let Some(rss) = st.rss_bytes {
                    text.push_str(&format!(
                        "  memory: {:.1} MiB resident\n",
                        rss as f64 / 1048576.0
                    ));
                }
                match (&st.log_file, st.activation) {
                    (Some(file), _) => text.push_str(&format!("  log: {file}\n")),
                    (None, Activation::Systemd) => {
                        text.push_str("  log: the journal (journalctl --user -u latchkeyd)\n")
                    }
                    (None, _) => {}
                }
                let mut json =
                    serde_json::to_value(&st).map_err(|e| Error::Internal(e.to_string()))?;
                if let Some(o) = json.as_object_mut() {
                    o.insert("running".into(), true.into());
                }
                Ok(Output {
                    exit: 0,
                    text,
                    json,
                })
            }
            // Not running is a state, not an error: status commands exit 3 for it
            // (LSB), with an answer rather than an error document.
            None => Ok(Output {
                exit: NOT_RUNNING,
                text: format!(
                    "latchkeyd is not running (socket {socket}); `latchkey daemon start` starts it.\n"
                ),
                json: json!({"running": false, "socket": socket}),
            }),
        },
        DaemonCommand::Start => {
            if ctx.client.daemon_start().await? {
                let pid = ctx.client.daemon_status().await?.map(|s| s.pid);
                Ok(Output {
                    exit: 0,
                    text: format!(
                        "latchkeyd is running{} on {socket}.\n",
                        pid.map(|p| format!(", pid {p}")).unwrap_or_default()
                    ),
                    json: json!({"running": true, "pid": pid, "socket": socket}),
                })
            } else {
                Err(Error::Internal(format!(
                    "latchkeyd did not start answering on {socket}; see the log beside it (latchkeyd.log)"
                )))
            }
        }
        DaemonCommand::Stop => {
            let activation = ctx.client.daemon_status().await?.map(|s| s.activation);
            let stopped = stop(ctx).await?;
            Ok(Output {
                exit: 0,
                text: if stopped {
                    format!("latchkeyd stopped.{}\n", activation_note(activation))
                } else {
                    "latchkeyd was not running.\n".into()
                },
                // "" when none answered before the stop.
                json: json!({
                    "stopped": stopped,
                    "activation": activation.map_or("", Activation::as_str),
                }),
            })
        }
        DaemonCommand::Restart => {
            stop(ctx).await?;
            if !ctx.client.daemon_start().await? {
                return Err(Error::Internal(format!(
                    "latchkeyd did not come back on {socket}"
                )));
            }
            let pid = ctx.client.daemon_status().await?.map(|s| s.pid);
            Ok(Output {
                exit: 0,
                text: format!(
                    "latchkeyd restarted{}.\n",
                    pid.map(|p| format!(", pid {p}")).unwrap_or_default()
                ),
                json: json!({"running": true, "pid": pid}),
            })
        }
    }
}

/// Stops the daemon and waits until that process is gone: asked over the socket,
/// or, when it does not answer (stopped, wedged, busy past the deadline), sent
/// SIGTERM by the pid its instance lock names. Under socket activation the service
/// manager may start a new one at once, so another pid holding the lock also means
/// the old one stopped. `Ok(false)`: none was running.
async fn stop(ctx: &Ctx) -> Result<bool, Error> {
    let answering = ctx.client.daemon_status().await?;
    let Some(old) = answering
        .as_ref()
        .map(|s| s.pid)
        .or_else(|| ctx.client.daemon_pid())
    else {
        return Ok(false);
    };
    let asked = answering.is_some() && ctx.client.daemon_shutdown().await?;
    if !asked && !ctx.client.terminate_daemon()? {
        return Ok(false);
    }
    let start = std::time::Instant::now();
    while start.elapsed() < STOP_WAIT {
        match ctx.client.daemon_pid() {
            Some(pid) if pid == old => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => return Ok(true),
        }
    }
    Err(Error::Daemon {
        category: latchkey_proto::error::Category::Transport,
        message: format!(
            "latchkeyd (pid {old}) did not stop within {} s",
            STOP_WAIT.as_secs()
        ),
        hint: Some(format!(
            "see its log (`latchkey daemon status` names it); `kill -9 {old}` stops it at once, losing a refresh it may have sent"
        )),
    })
}

/// How long `latchkey daemon stop` waits for the daemon to be gone: a graceful
/// stop waits for the work it already sent to a provider (a discovery and two
/// calls of 30 s at most), as the service files allow.
const STOP_WAIT: Duration = Duration::from_secs(150);

/// What to say after stopping a daemon that a service manager may restart.
fn activation_note(activation: Option<Activation>) -> &'static str {
    match activation {
        Some(Activation::Systemd) => {
            " It is socket-activated: the next request starts it again; `systemctl --user stop latchkeyd.socket latchkeyd.service` stops it for good."
        }
        Some(Activation::Launchd) => {
            " launchd may start it again; `launchctl bootout` stops it for good."
        }
        Some(Activation::SelfBound) | None => "",
    }
}

/// The exit code of `daemon status` when no daemon answers: 3, as status commands
/// say "not running" (LSB), the same number as `not_logged_in`.
const NOT_RUNNING: u8 = 3;
