//! `latchkey login [--device|--headless] [--no-browser] [--timeout SECS] [--qr]`.
//!
//! Flow choice (docs/behaviour.md, "Commands"): `--device` runs the device flow.
//! Otherwise the browser flow, opening LATCHKEY_BROWSER, then BROWSER, then the
//! platform opener; when no browser can be opened here (no display, an SSH session, a
//! container) and none was named explicitly, the device flow runs instead and the
//! person is told why. The URL is always printed too, and with `--json` every step is a
//! JSON line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use latchkey::Error;
use latchkey_daemon::session::login::{DeviceCode, Flow, LoginUi};
use serde_json::json;

use super::Ctx;
use crate::cli::LoginArgs;
use crate::render::{self, Output, rfc3339};
use crate::ui::{self, Browser};

/// The CLI's side of a login: prints each step and opens the browser.
struct CliUi {
    json: bool,
    /// `None` with `--no-browser`.
    browser: Option<Browser>,
    qr: bool,
    spinner: Mutex<Option<ui::SpinnerHandle>>,
}

impl LoginUi for CliUi {
    fn authorize_url(&self, url: &str) {
        let text = match &self.browser {
            None => format!("Open this URL in a browser on this machine to sign in:\n  {url}\n"),
            Some(b) => match ui::open_browser(b, url) {
                Ok(()) => format!(
                    "Opening your browser to sign in. If it does not open, visit:\n  {url}\n"
                ),
                Err(reason) => format!(
                    "Could not open a browser ({reason}). Open this URL to sign in:\n  {url}\n"
                ),
            },
        };
        render::progress(
            self.json,
            &text,
            &json!({"event": "authorize_url", "url": url}),
        );
    }

    fn device_code(&self, c: &DeviceCode) {
        let mut text = format!(
            "To sign in, visit {}\nand enter the code: {}\n",
            c.verification_uri, c.user_code
        );
        if let Some(complete) = &c.verification_uri_complete {
            text.push_str(&format!("(or open {complete}, which has the code in it)\n"));
            if self.qr {
                match ui::qr_text(complete) {
                    Ok(qr) => text.push_str(&qr),
                    Err(reason) => text.push_str(&format!("(no QR code: {reason})\n")),
                }
            }
        }
        render::progress(
            self.json,
            &text,
            &json!({
                "event": "device_code",
                "user_code": c.user_code,
                "verification_uri": c.verification_uri,
                "verification_uri_complete": c.verification_uri_complete,
                "expires_in": c.expires_in,
            }),
        );
        if !self.json {
            let deadline = Instant::now() + Duration::from_secs(c.expires_in);
            *self
                .spinner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                ui::Spinner::start("Waiting for approval", deadline);
        }
    }

    fn waiting(&self, _time_left: Duration) {
        // The spinner animates on its own thread from the deadline it was given.
    }
}

impl CliUi {
    fn stop_spinner(&self) {
        if let Some(s) = self
            .spinner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            s.stop();
        }
    }
}

pub async fn run(ctx: &Ctx, json: bool, args: &LoginArgs) -> Result<Output, Error> {
    // A login holds fresh tokens (and the PKCE verifier) in this process for
    // minutes: the same hardening as the daemon's, no core dumps and no ptrace
    // (docs/behaviour.md, "Security"). Done before anything secret exists.
    latchkey_daemon::harden::harden();
    let (engine, profile) = ctx.engine()?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (flow, browser) = if args.device {
        (Flow::Device, None)
    } else if args.no_browser {
        (Flow::Browser, None)
    } else {
        match ui::choose_browser(&env, ui::detect_container()) {
            Browser::Unavailable { reason } => {
                render::progress(
                    json,
                    &format!(
                        "No browser can be opened here ({reason}), so this login uses the device flow.\n"
                    ),
                    &serde_json::Value::Null,
                );
                (Flow::Device, None)
            }
            b => (Flow::Browser, Some(b)),
        }
    };
    let cli_ui = CliUi {
        json,
        browser,
        qr: args.qr,
        spinner: Mutex::new(None),
    };
    let result = engine
        .login(&profile, flow, Duration::from_secs(args.timeout), &cli_ui)
        .await;
    cli_ui.stop_spinner();
    let done = result?;
    let who = done.user.as_ref().map(|u| {
        u.email
            .clone()
            .or_else(|| u.name.clone())
            .unwrap_or_else(|| u.sub.clone())
    });
    let mut text = format!(
        "Logged in to {profile}{}.\n",
        who.map(|w| format!(" as {w}")).unwrap_or_default()
    );
    if let Some(to) = &done.set_aside {
        text.push_str(&format!(
            "The previous vault could not be read (corrupt, or made with another machine key); it was moved to {} instead of being overwritten.\n",
            to.display()
        ));
    }
    Ok(Output {
        exit: 0,
        text,
        json: json!({
            "event": "logged_in",
            "profile": profile,
            "user": done.user.as_ref().map(|u| json!({"sub": u.sub, "email": u.email, "name": u.name})),
            "groups": done.groups,
            "expires_at": done.expires_at.map(rfc3339),
            "previous_vault_moved_to": done.set_aside.as_ref().map(|p| p.display().to_string()),
        }),
    })
}
