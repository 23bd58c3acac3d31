//! [`Client::send`]: one request to a profile's API with the session's token
//! injected (docs/behaviour.md, "The API proxy"), through the daemon's proxy or,
//! without a daemon, through the embedded engine's [`Engine::forward`] (the same
//! rules: the token never leaves Latchkey, a refused token is renewed once and a
//! replayable request retried).
//!
//! The fallback table of the crate documentation applies with one difference:
//! once a proxied request may have left this process, its outcome is final. A
//! daemon that goes away mid-request, or does not answer within
//! [`PROXY_DEADLINE`], is an error (category `transport`), never a fallback that
//! would send the request a second time.
//!
//! [`Engine::forward`]: latchkey_daemon::Engine::forward

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use latchkey_daemon::proxy::{Body, Outgoing};
use latchkey_proto::error::{Category, ErrorDocument};
use latchkey_proto::profile::ProfileName;
use latchkey_proto::proxy::{self as rules, PROXIED_HEADER, RETRIED_HEADER};

use crate::transport::{MAX_PROXIED_BODY, ProxyReach, ProxyRequest};
use crate::wire::Reach;
use crate::{Client, Error, Via};

/// How long the daemon may take to start answering a proxied request: longer
/// than its own bounds (two attempts of at most 600 s each, and a refresh), which
/// come first. The body then takes as long as it takes.
pub const PROXY_DEADLINE: Duration = Duration::from_secs(2 * 600 + 60);

/// One request for a profile's API.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    /// `GET`, `POST`, … (case as given).
    pub method: String,
    /// The path on the upstream, with an optional query: `/me`, `v2/issues?state=open`.
    pub path: String,
    /// Header fields to send. `Authorization`, `Host`, hop-by-hop and
    /// `Latchkey-*` fields are refused: Latchkey sets those itself.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The upstream's answer, its body read whole (at most 64 MiB; a larger one is
/// an error: stream it from the socket API instead).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    /// The upstream's header fields (hop-by-hop ones dropped).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Sent a second time with a renewed token after a 401.
    pub retried: bool,
    pub via: Via,
}

impl ApiResponse {
    /// The category of a non-2xx status, for an exit code
    /// ([`latchkey_proto::proxy::upstream_category`]).
    pub fn category(&self) -> Option<Category> {
        rules::upstream_category(self.status)
    }
}

impl Client {
    /// Sends one request to `profile`'s upstream with its access token; see the
    /// module documentation. `Ok` carries whatever the upstream answered, any
    /// status; `Err` is Latchkey's own failure (not logged in, no upstream
    /// configured, the upstream unreachable…).
    ///
    /// # Examples
    ///
    /// ```
    /// # let home = tempfile::tempdir()?;
    /// # std::fs::write(home.path().join("config.toml"), "[profiles.work]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"cli\"\n\n[profiles.work.proxy]\nupstream = \"http://127.0.0.1:9/v2\"\n")?;
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # runtime.block_on(async {
    /// # let client = latchkey::Client::new(latchkey::Paths::in_home(home.path()), latchkey::Mode::DaemonFirst { autostart: false });
    /// # let work = latchkey::ProfileName::new("work")?;
    /// use latchkey::{ApiRequest, Category};
    ///
    /// // POST to the profile's upstream (`[profiles.work.proxy]`); Latchkey adds
    /// // the token, and renews it once if the API rejects it.
    /// let request = ApiRequest {
    ///     method: "POST".into(),
    ///     path: "/issues".into(),
    ///     headers: vec![("Content-Type".into(), "application/json".into())],
    ///     body: r#"{"title":"x"}"#.into(),
    /// };
    /// match client.send(&work, request).await {
    ///     Ok(answer) if answer.category().is_none() => println!("{}", String::from_utf8_lossy(&answer.body)),
    ///     Ok(answer) => eprintln!("the API answered {}", answer.status),
    ///     Err(e) if e.category() == Category::NotLoggedIn => eprintln!("{e}"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn send(
        &self,
        profile: &ProfileName,
        request: ApiRequest,
    ) -> Result<ApiResponse, Error> {
        for (name, _) in &request.headers {
            if !rules::forwards_request_header(name, &[]) {
                return Err(Error::usage(
                    format!("the header {name} cannot be sent through Latchkey"),
                    Some("Latchkey sets Authorization and Host itself; hop-by-hop and Latchkey-* headers never pass".into()),
                ));
            }
        }
        let target =
            rules::target(profile, &request.path).map_err(|e| Error::usage(e.to_string(), None))?;
        if self.daemon_allowed() {
            let ask = || {
                self.transport.proxy(
                    ProxyRequest {
                        method: &request.method,
                        target: &target,
                        headers: &request.headers,
                        body: request.body.clone(),
                    },
                    PROXY_DEADLINE,
                )
            };
            let mut reach = ask().await;
            if let ProxyReach::Unsent(Reach::Dead(reason)) = &reach
                && self.started_for(reason).await
            {
                reach = ask().await;
            }
            match reach {
                ProxyReach::Answer(response) => return self.proxied_answer(response),
                ProxyReach::Lost(why) => {
                    return Err(Error::Daemon {
                        category: Category::Transport,
                        message: format!("the proxied request's answer was lost: {why}"),
                        hint: Some("the request may have reached the upstream; check before sending it again".into()),
                    });
                }
                ProxyReach::Unsent(reach) => {
                    // Nothing left this process: the fallback table decides.
                    if let Some(Err(e)) = self.settle_unsent(reach) {
                        return Err(e);
                    }
                }
            }
        }
        self.send_embedded(profile, request).await
    }

    /// The fallback table for an outcome whose request was never sent:
    /// `Some(Err)` when it is final, `None` to go on with the embedded engine.
    fn settle_unsent(&self, reach: Reach<()>) -> Option<Result<(), Error>> {
        if self.delegated {
            return Some(Err(self.daemon_only(reach).err()?));
        }
        self.fall_back(reach, "sent without the daemon")
    }

    /// The daemon's answer: the upstream's response when marked as proxied, else
    /// Latchkey's own error document.
    fn proxied_answer(&self, response: hyper::Response<Bytes>) -> Result<ApiResponse, Error> {
        let (parts, body) = response.into_parts();
        if !parts.headers.contains_key(PROXIED_HEADER) {
            return match serde_json::from_slice::<ErrorDocument>(&body) {
                Ok(doc) => Err(Error::Remote(doc.error)),
                Err(_) => Err(self.broken(format!(
                    "the daemon answered HTTP {} to a proxied request without an error document",
                    parts.status.as_u16()
                ))),
            };
        }
        Ok(ApiResponse {
            status: parts.status.as_u16(),
            retried: parts.headers.contains_key(RETRIED_HEADER),
            headers: listed(&parts.headers),
            body,
            via: Via::Daemon,
        })
    }

    async fn send_embedded(
        &self,
        profile: &ProfileName,
        request: ApiRequest,
    ) -> Result<ApiResponse, Error> {
        let method = hyper::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            Error::usage(format!("{:?} is not an HTTP method", request.method), None)
        })?;
        // Read as `proxy::target` reads it for the daemon.
        let (path, query) = rules::split(&request.path);
        let (path, query) = (path.to_string(), query.map(str::to_string));
        let mut headers = hyper::header::HeaderMap::new();
        for (name, value) in &request.headers {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::usage(format!("{name:?} is not a header name"), None))?;
            let value = hyper::header::HeaderValue::from_str(value).map_err(|_| {
                Error::usage(
                    format!("the value of {name} is not a valid header value"),
                    None,
                )
            })?;
            headers.append(name, value);
        }
        let out = Outgoing {
            method,
            path,
            query,
            headers,
            body: Body::from_bytes(request.body),
        };
        let forwarded = self.engine()?.forward(profile.as_str(), out).await?;
        let (parts, body) = forwarded.response.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_PROXIED_BODY);
        let body = limited
            .collect()
            .await
            .map_err(|e| Error::Daemon {
                category: Category::Transport,
                message: format!("the upstream's answer broke off: {e}"),
                hint: None,
            })?
            .to_bytes();
        Ok(ApiResponse {
            status: parts.status.as_u16(),
            headers: listed(&parts.headers),
            body,
            retried: forwarded.retried,
            via: Via::Embedded,
        })
    }
}

/// The upstream's header fields as (name, value) pairs: by the proxy's response
/// rule, so none of Latchkey's own.
fn listed(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| rules::forwards_response_header(n.as_str(), &[]))
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
