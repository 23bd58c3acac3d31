//! `latchkey token` (the only command that prints token material) and
//! `latchkey refresh`.

use latchkey::Error;
use serde_json::json;

use super::Ctx;
use crate::render::{Output, in_words, rfc3339};

pub async fn token(ctx: &Ctx, min_ttl: u64) -> Result<Output, Error> {
    let (engine, profile) = ctx.engine()?;
    let token = engine.token(&profile, min_ttl).await?;
    // Declassification: this command exists to hand the token to its caller.
    let secret = token.access_token.expose();
    Ok(Output {
        exit: 0,
        text: format!("{secret}\n"),
        json: json!({
            "access_token": secret,
            "token_type": token.token_type,
            "expires_at": token.expires_at.map(rfc3339),
            "profile": profile,
        }),
    })
}

pub async fn refresh(ctx: &Ctx) -> Result<Output, Error> {
    let (engine, profile) = ctx.engine()?;
    let token = engine.refresh(&profile).await?;
    let when = match token.expires_at {
        Some(at) => format!(
            "expires {}",
            in_words(at - latchkey_daemon::vault::unix_now())
        ),
        None => "has no stated expiry".to_string(),
    };
    Ok(Output {
        exit: 0,
        text: format!("Refreshed profile {profile}: the new access token {when}.\n"),
        json: json!({
            "profile": profile,
            "expires_at": token.expires_at.map(rfc3339),
            "generation": token.generation,
        }),
    })
}
