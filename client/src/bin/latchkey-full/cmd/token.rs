//! `latchkey token` (the only command that prints token material) and
//! `latchkey refresh`. Both ask the daemon first.

use latchkey::Error;
use serde_json::json;

use super::Ctx;
use crate::cli::TokenFormat;
use crate::render::{Output, in_words};

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
    let when = match r.expires_at.as_deref().and_then(seconds_until) {
        Some(left) => format!("expires {}", in_words(left)),
        None => "has no stated expiry".to_string(),
    };
    Ok(Output {
        exit: 0,
        text: format!("Refreshed profile {profile}: the new access token {when}.\n"),
        json: json!({
            "profile": profile,
            "expires_at": r.expires_at,
            "generation": r.generation,
        }),
    })
}

/// Seconds from now until an RFC 3339 time.
pub fn seconds_until(at: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    let now = std::time::SystemTime::now();
    Some(match t.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    })
}
