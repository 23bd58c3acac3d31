//! `latchkey mcp`: a Model Context Protocol server on stdin/stdout for an agent
//! host (docs/behaviour.md, "The MCP server"). It acts with a client token
//! (`LATCHKEY_CLIENT_TOKEN`) and nothing else: without one it refuses to start,
//! so the owner's whole session is never handed to an agent by default. Its
//! tools ([`tools`]) go through the daemon with that token, so the daemon's scope
//! checks, the proxy's allow lists and its token renewal all apply, and no token
//! ever enters a message: the proxy adds the access token on its side.
//!
//! stdout carries the protocol alone; logs and notices go to stderr.

mod tools;

use std::sync::Arc;

use latchkey::Error;
use rmcp::ServiceExt;

use super::Ctx;

/// Serves until the host closes stdin; exit 0 then.
pub async fn run(ctx: Ctx) -> Result<(), Error> {
    if !ctx.client.is_delegated() {
        return Err(Error::usage(
            "latchkey mcp acts with a client token, never with your whole session, and LATCHKEY_CLIENT_TOKEN is not set",
            Some(
                "mint one for what the agent may do, e.g. `latchkey client-token mint --name agent --scope proxy:work --scope session:work`, and give it to the server as LATCHKEY_CLIENT_TOKEN in the agent host's config".into(),
            ),
        ));
    }
    let server = tools::Tools::new(Arc::new(ctx.client));
    let running = server
        .serve((tokio::io::stdin(), tokio::io::stdout()))
        .await
        .map_err(|e| Error::Internal(format!("the MCP session did not start: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::Internal(format!("the MCP session ended abnormally: {e}")))?;
    Ok(())
}
