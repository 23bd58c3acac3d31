//! `latchkey token` (the only command that prints token material) and
//! `latchkey refresh`. Both ask the daemon first.

use latchkey::Error;

use super::Ctx;
use crate::cli::TokenFormat;
use crate::render::Output;

/// `latchkey token`, synchronous: [`latchkey::Client::token_blocking`] decides
/// how to ask (the hot path builds no runtime when the daemon answers).
pub fn token(ctx: &Ctx, min_ttl: u64, format: TokenFormat) -> Result<Output, Error> {
    let profile = ctx.profile_name()?;
    let token = ctx.client.token_blocking(&profile, min_ttl)?;
    Ok(latchkey::front::token_output(
        &profile,
        &token,
        format.into(),
    ))
}

pub async fn refresh(ctx: &Ctx) -> Result<Output, Error> {
    let profile = ctx.profile_name()?;
    let r = ctx.client.refresh(&profile).await?;
    Ok(latchkey::front::refresh_output(&profile, &r))
}
