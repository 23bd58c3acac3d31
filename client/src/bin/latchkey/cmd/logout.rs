//! `latchkey logout [--local]`.

use latchkey::Error;
use latchkey_daemon::session::logout::LogoutOutcome;
use serde_json::json;

use super::Ctx;
use crate::render::Output;

pub async fn run(ctx: &Ctx, local: bool) -> Result<Output, Error> {
    let (engine, profile) = ctx.engine()?;
    let outcome = engine.logout(&profile, !local).await?;
    let (name, detail, text) = match outcome {
        LogoutOutcome::Revoked => (
            "revoked",
            "the provider revoked the session and the local copy was deleted".to_string(),
            format!("Logged out of {profile}: revoked at the provider and deleted locally.\n"),
        ),
        LogoutOutcome::LocalOnly { reason } => (
            "local_only",
            reason.clone(),
            format!("Logged out of {profile} locally; the provider was not told: {reason}.\n"),
        ),
        LogoutOutcome::NotLoggedIn => (
            "not_logged_in",
            "there was no session to log out of".to_string(),
            format!("Profile {profile} was not logged in.\n"),
        ),
    };
    Ok(Output {
        exit: 0,
        text,
        json: json!({"outcome": name, "detail": detail, "profile": profile}),
    })
}
