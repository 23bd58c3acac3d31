//! `latchkey client-token mint|list|revoke`: client tokens for tools that should
//! get less than the session (docs/behaviour.md, "Client tokens"). With or without
//! a daemon; the owner only.

use latchkey::Error;
use latchkey_proto::api;
use latchkey_proto::delegation::TokenId;
use serde_json::json;

use super::Ctx;
use crate::cli::ClientTokenCommand;
use crate::render::{self, Output};

pub async fn run(ctx: &Ctx, command: ClientTokenCommand) -> Result<Output, Error> {
    match command {
        ClientTokenCommand::Mint { scopes, name, ttl } => mint(ctx, scopes, name, ttl).await,
        ClientTokenCommand::List => list(ctx).await,
        ClientTokenCommand::Revoke { id } => revoke(ctx, &id).await,
    }
}

async fn mint(
    ctx: &Ctx,
    scopes: Vec<latchkey_proto::delegation::Scope>,
    name: Option<String>,
    ttl_seconds: Option<u64>,
) -> Result<Output, Error> {
    let m = ctx
        .client
        .mint_client_token(api::MintRequest {
            name,
            scopes,
            ttl_seconds,
        })
        .await?;
    let scopes = latchkey_proto::delegation::scopes_text(&m.scopes);
    let until = m
        .expires_at
        .as_deref()
        .map_or_else(|| "until revoked".to_string(), |e| format!("until {e}"));
    // The secret goes to stdout alone; the rest is for the person, on stderr.
    render::notice(&format!(
        "client token {} ({}) for {scopes}, valid {until}. It is shown this once: store it now. Revoke it with `latchkey client-token revoke {}`.",
        m.id, m.name, m.id
    ));
    // Declassification: minting exists to hand the token to the person who asked.
    let secret = m.token.expose();
    Ok(Output {
        exit: 0,
        text: format!("{secret}\n"),
        json: json!({
            "token": secret,
            "id": m.id,
            "name": m.name,
            "scopes": m.scopes,
            "created_at": m.created_at,
            "expires_at": m.expires_at,
        }),
    })
}

async fn list(ctx: &Ctx) -> Result<Output, Error> {
    let all = ctx.client.client_tokens().await?;
    let mut text = String::new();
    if all.tokens.is_empty() {
        text.push_str("No client tokens.\n");
    } else {
        text.push_str(&format!(
            "{:<12}  {:<16}  {:<20}  {:<20}  {}\n",
            "ID", "NAME", "EXPIRES", "LAST USED", "SCOPES"
        ));
        for t in &all.tokens {
            text.push_str(&format!(
                "{:<12}  {:<16}  {:<20}  {:<20}  {}\n",
                t.id,
                t.name,
                t.expires_at.as_deref().unwrap_or("never"),
                t.last_used_at.as_deref().unwrap_or("never"),
                latchkey_proto::delegation::scopes_text(&t.scopes)
            ));
        }
    }
    let json = serde_json::to_value(&all)
        .map_err(|e| Error::Internal(format!("cannot encode the list: {e}")))?;
    Ok(Output {
        exit: 0,
        text,
        json,
    })
}

async fn revoke(ctx: &Ctx, id: &str) -> Result<Output, Error> {
    let id = TokenId::new(id)
        .map_err(|reason| Error::usage(reason, Some("see `latchkey client-token list`".into())))?;
    ctx.client.revoke_client_token(&id).await?;
    Ok(Output {
        exit: 0,
        text: format!("Revoked client token {id}: it is refused from now on.\n"),
        json: json!({"id": id, "revoked": true}),
    })
}
