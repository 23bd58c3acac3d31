//! `latchkey logout [--local]`.

use latchkey::Error;
use latchkey_proto::api::LogoutOutcome;
use serde_json::json;

use super::Ctx;
use crate::render::Output;

pub async fn run(ctx: &Ctx, local: bool) -> Result<Output, Error> {
    let profile = ctx.profile_name()?;
    let out = ctx.client.logout(&profile, !local).await?;
    let detail = &out.detail;
    let text = match out.outcome {
        LogoutOutcome::Revoked => {
            format!("Logged out of {profile}: revoked at the provider and deleted locally.\n")
        }
        LogoutOutcome::LocalOnly => {
            format!("Logged out of {profile} locally; the provider was not told: {detail}.\n")
        }
        LogoutOutcome::NotLoggedIn => format!("Profile {profile} was not logged in.\n"),
    };
    Ok(Output {
        exit: 0,
        text,
        json: json!({"outcome": out.outcome, "detail": detail, "profile": profile}),
    })
}
