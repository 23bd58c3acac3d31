//! The MCP server's three tools and what they answer.
//!
//! - `http_request`: one request through the daemon's API proxy for a profile;
//!   the answer's status, a few headers and the body (text, or base64 when it is
//!   not UTF-8), cut at [`MAX_BODY`] bytes with `truncated` set.
//! - `list_profiles`: the profiles the client token may see (its `session:`
//!   scopes), each with its API and whether it is logged in.
//! - `session_status`: who is logged in to a profile and until when; no token.
//!
//! Every answer is one JSON text block. An upstream's answer is a result whatever
//! its status (it is the API's answer to read); Latchkey's own failures (not
//! logged in, a scope the token lacks, a request outside the allow list, the
//! upstream unreachable) are results with `isError` and the error document
//! (category, message, hint), never protocol errors. Request headers that would
//! carry a credential (`Authorization`, `Cookie`, `Proxy-Authorization`) are
//! refused before anything is sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use latchkey::{ApiRequest, ApiResponse, Client, Error, ProfileName};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, JsonObject, ServerCapabilities, ServerConfig,
};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// The most body bytes an answer carries; an agent's context is not the place
/// for more.
pub const MAX_BODY: usize = 100_000;

/// Request headers an agent may not set: credentials are Latchkey's to add, and
/// cookies are a credential too.
const REFUSED_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Response headers an answer shows; the rest (cookies among them) stay out of
/// the agent's context.
const SHOWN_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "retry-after",
    "link",
    "www-authenticate",
];

/// The HTTP methods `http_request` sends.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// `http_request`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// The Latchkey profile whose API to call (see list_profiles).
    pub profile: String,
    /// The HTTP method.
    pub method: Method,
    /// The path on the profile's API, e.g. /me or /v2/issues?state=open.
    pub path: String,
    /// Request headers. Authorization, Cookie and Proxy-Authorization are refused:
    /// Latchkey adds the credentials itself.
    pub headers: Option<BTreeMap<String, String>>,
    /// Query parameters, added to those of the path.
    pub query: Option<BTreeMap<String, String>>,
    /// The request body, as text (JSON, a form, plain text).
    pub body: Option<String>,
}

/// `session_status`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStatus {
    /// The Latchkey profile.
    pub profile: String,
}

/// `list_profiles`'s input: nothing.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// The server: the client (with its client token) and the tool table.
#[derive(Clone)]
pub struct Tools {
    client: Arc<Client>,
    tool_router: ToolRouter<Self>,
}

impl Tools {
    pub fn new(client: Arc<Client>) -> Tools {
        Tools {
            client,
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router(router = tool_router)]
impl Tools {
    #[tool(
        input_schema = input_schema::<HttpRequest>(),
        description = "Send one HTTP request to the API of a Latchkey profile. Latchkey adds the user's credentials itself; you never see or send a token. Answers the status, selected headers and the body (text, or base64 when binary; cut at 100000 bytes with truncated set)."
    )]
    async fn http_request(&self, Parameters(args): Parameters<JsonObject>) -> CallToolResult {
        let input = match arguments::<HttpRequest>(args) {
            Ok(i) => i,
            Err(e) => return failure(&e),
        };
        match self.send(input).await {
            Ok(answer) => result(&answer),
            Err(e) => failure(&e),
        }
    }

    #[tool(
        input_schema = input_schema::<NoInput>(),
        description = "List the Latchkey profiles this server may use, with the API each one serves and whether it is logged in."
    )]
    async fn list_profiles(&self, Parameters(args): Parameters<JsonObject>) -> CallToolResult {
        if let Err(e) = arguments::<NoInput>(args) {
            return failure(&e);
        }
        match self.client.profiles().await {
            Ok(profiles) => text(&json!({
                "profiles": profiles
                    .iter()
                    .map(|p| json!({
                        "name": p.name,
                        "logged_in": p.logged_in,
                        "expires_at": p.expires_at,
                        "upstream": p.upstream,
                    }))
                    .collect::<Vec<_>>(),
            })),
            Err(e) => failure(&e),
        }
    }

    #[tool(
        input_schema = input_schema::<SessionStatus>(),
        description = "Who is logged in to a Latchkey profile and until when. Shows no token."
    )]
    async fn session_status(&self, Parameters(args): Parameters<JsonObject>) -> CallToolResult {
        let input = match arguments::<SessionStatus>(args) {
            Ok(i) => i,
            Err(e) => return failure(&e),
        };
        let profile = match profile_name(&input.profile) {
            Ok(p) => p,
            Err(e) => return failure(&e),
        };
        match self.client.session(&profile).await {
            Ok((s, _via)) => {
                let expires = s.expires_in_seconds.map(latchkey::front::render::in_words);
                let mut doc = json!({
                    "profile": s.profile,
                    "logged_in": s.logged_in,
                    "session_expired": s.session_expired,
                    "user": s.user.map(|u| json!({"name": u.name, "email": u.email})),
                    "expires": expires,
                    "expires_at": s.expires_at,
                });
                if !s.logged_in
                    && let Some(o) = doc.as_object_mut()
                {
                    o.insert(
                        "hint".into(),
                        format!("a person runs `latchkey login --profile {}`", s.profile).into(),
                    );
                }
                text(&doc)
            }
            Err(e) => failure(&e),
        }
    }
}

impl Tools {
    async fn send(&self, input: HttpRequest) -> Result<ApiResponse, Error> {
        let profile = profile_name(&input.profile)?;
        let headers: Vec<(String, String)> =
            input.headers.unwrap_or_default().into_iter().collect();
        if let Some((name, _)) = headers
            .iter()
            .find(|(n, _)| REFUSED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(n)))
        {
            return Err(Error::usage(
                format!(
                    "the request header {name} is refused: Latchkey adds the credentials itself"
                ),
                Some("send the request without it".into()),
            ));
        }
        let path = with_query(&input.path, input.query.as_ref());
        self.client
            .send(
                &profile,
                ApiRequest {
                    method: input.method.as_str().to_string(),
                    path,
                    headers,
                    body: input.body.unwrap_or_default().into(),
                },
            )
            .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("latchkey", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Call the user's APIs through Latchkey: list_profiles shows which, http_request sends one request with the user's credentials added by Latchkey (you never handle a token), session_status says who is logged in. A not_logged_in error names the command the user runs to log in.",
            )
    }
}

/// A tool's input schema: `T`'s, as JSON Schema 2020-12 (rmcp's rules). Every
/// input here is a struct, which makes an object schema; were one ever not, the
/// tool would still be listed, with the schema rmcp makes of the type as it is.
fn input_schema<T: JsonSchema + std::any::Any>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_input::<T>()
        .unwrap_or_else(|_| rmcp::handler::server::common::schema_for_type::<T>())
}

/// A tool's arguments as `T`: what does not match its schema (a missing or
/// unknown field, a method not in the list) is a usage error, answered as any
/// other tool error.
fn arguments<T: serde::de::DeserializeOwned>(args: JsonObject) -> Result<T, Error> {
    serde_json::from_value(Value::Object(args)).map_err(|e| {
        Error::usage(
            format!("the arguments do not match the tool's input schema: {e}"),
            Some("see the tool's inputSchema".into()),
        )
    })
}

fn profile_name(name: &str) -> Result<ProfileName, Error> {
    ProfileName::new(name).map_err(|e| Error::usage(e.to_string(), None))
}

/// `path` with `query` appended (form-encoded) after the path's own query.
fn with_query(path: &str, query: Option<&BTreeMap<String, String>>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return path.to_string();
    };
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter())
        .finish();
    let joiner = if path.contains('?') { '&' } else { '?' };
    format!("{path}{joiner}{encoded}")
}

/// An upstream's answer as the tool's result.
fn result(answer: &ApiResponse) -> CallToolResult {
    let headers: serde_json::Map<String, Value> = answer
        .headers
        .iter()
        .filter(|(n, _)| SHOWN_HEADERS.iter().any(|s| s.eq_ignore_ascii_case(n)))
        .map(|(n, v)| (n.to_ascii_lowercase(), Value::from(v.as_str())))
        .collect();
    let (body, encoding, truncated) = body(&answer.body);
    text(&json!({
        "status": answer.status,
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
        "truncated": truncated,
        "retried": answer.retried,
    }))
}

/// A body as text when it is UTF-8 (cut at a character boundary), else base64;
/// at most [`MAX_BODY`] bytes of it either way.
fn body(bytes: &[u8]) -> (String, &'static str, bool) {
    let truncated = bytes.len() > MAX_BODY;
    let kept = &bytes[..bytes.len().min(MAX_BODY)];
    match std::str::from_utf8(kept) {
        Ok(s) => (s.to_string(), "text", truncated),
        // A cut through a character is still text: keep what is whole.
        Err(e) if truncated && e.error_len().is_none() => (
            String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned(),
            "text",
            true,
        ),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(kept),
            "base64",
            truncated,
        ),
    }
}

/// Latchkey's own failure as a tool error: the error document.
fn failure(e: &Error) -> CallToolResult {
    let doc = serde_json::to_string(&e.to_document())
        .unwrap_or_else(|_| format!("{{\"error\": {{\"message\": {:?}}}}}", e.to_string()));
    CallToolResult::error(vec![ContentBlock::text(doc)])
}

fn text(doc: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(doc.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_text_or_base64_and_bounded() {
        assert_eq!(body(b"{\"a\":1}"), ("{\"a\":1}".into(), "text", false));
        let (b, enc, cut) = body(&[0xff, 0x00, 0x01]);
        assert_eq!((b.as_str(), enc, cut), ("/wAB", "base64", false));
        let long = format!("a{}", "é".repeat(MAX_BODY));
        let (b, enc, cut) = body(long.as_bytes());
        assert_eq!((enc, cut), ("text", true));
        assert_eq!(
            b.len(),
            MAX_BODY - 1,
            "the cut fell inside a character, which is dropped whole"
        );
        let (b, enc, cut) = body(&vec![0xffu8; MAX_BODY + 1]);
        assert_eq!((enc, cut), ("base64", true));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap()
                .len(),
            MAX_BODY
        );
    }

    #[test]
    fn queries_join_the_paths_own() {
        let q: BTreeMap<String, String> = [("state".to_string(), "open closed".to_string())].into();
        assert_eq!(with_query("/issues", Some(&q)), "/issues?state=open+closed");
        assert_eq!(with_query("/i?a=1", Some(&q)), "/i?a=1&state=open+closed");
        assert_eq!(with_query("/i", Some(&BTreeMap::new())), "/i");
        assert_eq!(with_query("/i", None), "/i");
    }
}
