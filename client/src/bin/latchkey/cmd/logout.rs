//! `latchkey logout [--local]`.

use latchkey::Error;
use serde_json::json;

use super::Ctx;
use crate::render::Output;

pub async fn run(ctx: &Ctx, local: bool) -> Result<Output, Error> {
    let profile = ctx.profile_name()?;
    let out = ctx.client.logout(&profile, !local).await?;
    let (name, detail) = (out.outcome.as_str(), out.detail.clone());
    let text = match name {
        "revoked" => {
            format!("Logged out of {profile}: revoked at the provider and deleted locally.\n")
        }
        "local_only" => {
            format!("Logged out of {profile} locally; the provider was not told: {detail}.\n")
        }
        _ => format!("Profile {profile} was not logged in.\n"),
    };
    Ok(Output {
        exit: 0,
        text,
        json: json!({"outcome": name, "detail": detail, "profile": profile}),
    })
}
