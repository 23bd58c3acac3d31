//! `latchkey token`: the only command that prints token material.

use latchkey::Error;
use latchkey_daemon::Engine;
use serde_json::json;

use super::Ctx;
use crate::render::{Output, rfc3339};

pub fn run(ctx: &Ctx, min_ttl: u64) -> Result<Output, Error> {
    let config = ctx.config()?;
    let profile = ctx.profile(&config)?;
    let engine = Engine::with_config(ctx.paths.clone(), &config);
    let token = engine.token(&profile, min_ttl)?;
    // Declassification: this command exists to hand the token to its caller.
    let secret = token.access_token.expose();
    Ok(Output {
        text: format!("{secret}\n"),
        json: json!({
            "access_token": secret,
            "token_type": token.token_type,
            "expires_at": token.expires_at.map(rfc3339),
            "profile": profile,
        }),
    })
}
