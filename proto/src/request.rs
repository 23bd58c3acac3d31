//! The socket API as one closed set of requests: for each endpoint its method, its
//! path template and the body it answers.
//!
//! [`Endpoint`] lists every endpoint the daemon serves. The daemon's router
//! registers exactly [`Endpoint::ALL`], with the method and template given here; the
//! client builds its requests from the types below, each a [`Request`] whose
//! [`Request::Answer`] is the body it decodes; the API docs test checks
//! `docs/openapi.yaml` against the same list; the API fuzz target builds its typed
//! inputs from it. So the router, the client, the docs and the fuzzer cannot drift
//! apart.
//!
//! [`Request`] is sealed: the set is closed, and only this module adds to it.
//! Every variable part of a path is either a [`ProfileName`] (whose characters are
//! URL-safe by construction) or percent-encoded here, so no unchecked text reaches a
//! request line.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api;
use crate::delegation::{ScopeKind, TokenId};
use crate::profile::ProfileName;

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Delete,
    /// Every method: the API proxy passes the consumer's on.
    Any,
}

impl Method {
    /// As on the request line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Any => "ANY",
        }
    }

    /// What [`Method::Any`] takes: the methods of RFC 9110 but CONNECT and TRACE
    /// (an upstream that echoes a TRACE would hand the injected token to the
    /// consumer). The router registers exactly these; any other method is refused.
    pub const ANY: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    /// Whether a request with `method` (as on the request line) is for an endpoint
    /// of this method. HEAD counts as GET: the router serves it with the GET
    /// handler.
    pub fn admits(self, method: &str) -> bool {
        match self {
            Method::Any => Method::ANY.contains(&method),
            Method::Get => method == "GET" || method == "HEAD",
            m => m.as_str() == method,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every endpoint of the socket API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Health,
    Profiles,
    Token,
    IdToken,
    Session,
    Refresh,
    Logout,
    Login,
    LoginStatus,
    Events,
    Status,
    Shutdown,
    MintClientToken,
    ListClientTokens,
    RevokeClientToken,
    Proxy,
}

/// Who may call an endpoint: the route → scope table of client tokens
/// (docs/behaviour.md, "Client tokens"). The owner (a connection on the main
/// socket that passed the peer check and carries no `Authorization` header) may
/// call every endpoint; a request with a client token only what this allows, and
/// every endpoint must say ([`Endpoint::access`] is an exhaustive match), so a new
/// route cannot forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner alone, whatever a token's scopes: administration of client
    /// tokens, the operator status, shutdown, logout.
    Owner,
    /// Any valid client token: the answer says nothing about a profile.
    AnyToken,
    /// A client token holding this kind of scope on the profile in the path.
    Profile(ScopeKind),
    /// A client token holding this kind of scope on at least one profile; the
    /// answer covers only those profiles.
    Limited(ScopeKind),
}

impl Endpoint {
    /// The whole set, in the order `docs/api.md` presents it.
    pub const ALL: [Endpoint; 16] = [
        Endpoint::Health,
        Endpoint::Profiles,
        Endpoint::Token,
        Endpoint::IdToken,
        Endpoint::Session,
        Endpoint::Refresh,
        Endpoint::Logout,
        Endpoint::Login,
        Endpoint::LoginStatus,
        Endpoint::Events,
        Endpoint::Status,
        Endpoint::Shutdown,
        Endpoint::MintClientToken,
        Endpoint::ListClientTokens,
        Endpoint::RevokeClientToken,
        Endpoint::Proxy,
    ];

    /// Who may call it (see [`Access`]).
    pub const fn access(self) -> Access {
        match self {
            Endpoint::Health => Access::AnyToken,
            Endpoint::Profiles | Endpoint::Events => Access::Limited(ScopeKind::Session),
            Endpoint::Token | Endpoint::IdToken | Endpoint::Refresh => {
                Access::Profile(ScopeKind::Token)
            }
            Endpoint::Session => Access::Profile(ScopeKind::Session),
            Endpoint::Login => Access::Profile(ScopeKind::Login),
            Endpoint::Proxy => Access::Profile(ScopeKind::Proxy),
            // The login's profile is checked by the handler, which alone knows it.
            Endpoint::LoginStatus => Access::Limited(ScopeKind::Login),
            Endpoint::Logout
            | Endpoint::Status
            | Endpoint::Shutdown
            | Endpoint::MintClientToken
            | Endpoint::ListClientTokens
            | Endpoint::RevokeClientToken => Access::Owner,
        }
    }

    pub const fn method(self) -> Method {
        match self {
            Endpoint::Health
            | Endpoint::Profiles
            | Endpoint::Token
            | Endpoint::IdToken
            | Endpoint::Session
            | Endpoint::LoginStatus
            | Endpoint::Events
            | Endpoint::Status
            | Endpoint::ListClientTokens => Method::Get,
            Endpoint::Refresh
            | Endpoint::Logout
            | Endpoint::Login
            | Endpoint::Shutdown
            | Endpoint::MintClientToken => Method::Post,
            Endpoint::RevokeClientToken => Method::Delete,
            Endpoint::Proxy => Method::Any,
        }
    }

    /// The path template, with at most one variable segment in braces. The syntax
    /// is both OpenAPI's and the router's (axum 0.8), so the router registers these
    /// strings as they are and the docs test compares them with `docs/openapi.yaml`.
    pub const fn template(self) -> &'static str {
        match self {
            Endpoint::Health => "/v1/health",
            Endpoint::Profiles => "/v1/profiles",
            Endpoint::Token => "/v1/profiles/{profile}/token",
            Endpoint::IdToken => "/v1/profiles/{profile}/id-token",
            Endpoint::Session => "/v1/profiles/{profile}/session",
            Endpoint::Refresh => "/v1/profiles/{profile}/refresh",
            Endpoint::Logout => "/v1/profiles/{profile}/logout",
            Endpoint::Login => "/v1/profiles/{profile}/login",
            Endpoint::LoginStatus => "/v1/logins/{id}",
            Endpoint::Events => "/v1/events",
            Endpoint::Status => "/v1/status",
            Endpoint::Shutdown => "/v1/shutdown",
            Endpoint::MintClientToken | Endpoint::ListClientTokens => "/v1/client-tokens",
            Endpoint::RevokeClientToken => "/v1/client-tokens/{id}",
            // `{*path}`: the rest of the path, one or more segments, as sent.
            Endpoint::Proxy => "/v1/proxy/{profile}/{*path}",
        }
    }

    /// The endpoint a request for `method` and `path` (no query) goes to, if any.
    /// A variable segment matches any one non-empty segment.
    pub fn find(method: &str, path: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.method().admits(method) && e.matches(path))
    }

    /// Whether `path` (no query) fits this endpoint's template.
    pub fn matches(self, path: &str) -> bool {
        let mut want = self.template().split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                // A wildcard takes the rest: at least one more segment.
                (Some(w), Some(g)) if w.starts_with("{*") => {
                    return !g.is_empty() || got.next().is_some();
                }
                (Some(w), Some(g)) if w.starts_with('{') => {
                    if g.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    }

    /// The template with its variable segment replaced by `segment`, which the
    /// caller has made URL-safe (a [`ProfileName`], or [`percent_encode`]d).
    fn with(self, segment: &str) -> String {
        let template = self.template();
        match template
            .split_once('{')
            .and_then(|(head, rest)| rest.split_once('}').map(|(_, tail)| (head, tail)))
        {
            Some((head, tail)) => format!("{head}{segment}{tail}"),
            None => template.to_string(),
        }
    }
}

mod sealed {
    /// Keeps [`super::Request`] closed: only this module implements it.
    pub trait Sealed {}
}

/// One request of the API: where it goes ([`Request::ENDPOINT`], whose method and
/// template are fixed there), the exact request target, the JSON body if the
/// endpoint takes one, and the type of a successful answer's body. An error answer
/// is always the [`crate::error::ErrorDocument`].
pub trait Request: sealed::Sealed {
    const ENDPOINT: Endpoint;
    /// The body of a 2xx answer.
    type Answer: Serialize + DeserializeOwned;
    /// The request body's type; [`NoBody`] for endpoints that take none.
    type Body: Serialize;

    /// The request target: the path with its variable filled in, and the query.
    fn path(&self) -> String;

    /// The JSON body, if this request sends one.
    fn body(&self) -> Option<&Self::Body>;
}

/// The body of a request that sends none. It has no values, so such a request
/// cannot carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NoBody {}

/// `GET /v1/health`: the daemon's version, protocol, pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health;

/// `GET /v1/profiles`: every configured profile and its session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Profiles;

/// `GET /v1/profiles/{profile}/token?min_ttl=SECS`: an access token that stays
/// valid for at least `min_ttl` seconds, refreshed first if need be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub profile: ProfileName,
    pub min_ttl: u64,
}

/// `GET /v1/profiles/{profile}/id-token?min_ttl=SECS`: the session's ID token,
/// renewed first when its own `exp` is within `min_ttl` seconds (for tools that
/// present the ID token: kubectl's OIDC authenticator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdToken {
    pub profile: ProfileName,
    pub min_ttl: u64,
}

/// `GET /v1/profiles/{profile}/session`: a session's state, never its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub profile: ProfileName,
}

/// `POST /v1/profiles/{profile}/refresh`: refresh now, joining one in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub profile: ProfileName,
}

/// `POST /v1/profiles/{profile}/logout` with `{"revoke": bool}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    pub profile: ProfileName,
    pub body: api::LogoutRequest,
}

/// `POST /v1/profiles/{profile}/login` with `{"flow": "device"|"browser"}`: starts
/// a socket login or joins the pending one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub profile: ProfileName,
    pub body: api::LoginRequest,
}

/// `GET /v1/logins/{id}?wait=SECS`: a socket login's state, long-polled for up to
/// `wait` seconds (the daemon caps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStatus {
    /// The `id` of a `POST …/login` answer. Percent-encoded into the path.
    pub id: String,
    pub wait: Option<u64>,
}

/// `GET /v1/events`: a `text/event-stream` whose events' data are
/// [`api::SessionEvent`]s. Not a single answer: readers parse the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events;

/// `GET /v1/status`: the operator status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status;

/// `POST /v1/shutdown`: a graceful stop (202).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shutdown;

/// `POST /v1/client-tokens`: mints a client token (the owner only). The answer is
/// the only place its secret ever appears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintClientToken {
    pub body: api::MintRequest,
}

/// `GET /v1/client-tokens`: every client token, without secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListClientTokens;

/// `DELETE /v1/client-tokens/{id}`: 204, or 404 when no such token exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeClientToken {
    pub id: TokenId,
}

impl sealed::Sealed for Health {}
impl Request for Health {
    const ENDPOINT: Endpoint = Endpoint::Health;
    type Answer = api::Health;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.template().to_string()
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Profiles {}
impl Request for Profiles {
    const ENDPOINT: Endpoint = Endpoint::Profiles;
    type Answer = api::Profiles;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.template().to_string()
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Token {}
impl Request for Token {
    const ENDPOINT: Endpoint = Endpoint::Token;
    type Answer = api::Token;
    type Body = NoBody;
    fn path(&self) -> String {
        format!(
            "{}?min_ttl={}",
            Self::ENDPOINT.with(&self.profile),
            self.min_ttl
        )
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for IdToken {}
impl Request for IdToken {
    const ENDPOINT: Endpoint = Endpoint::IdToken;
    type Answer = api::IdToken;
    type Body = NoBody;
    fn path(&self) -> String {
        format!(
            "{}?min_ttl={}",
            Self::ENDPOINT.with(&self.profile),
            self.min_ttl
        )
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Session {}
impl Request for Session {
    const ENDPOINT: Endpoint = Endpoint::Session;
    type Answer = api::Session;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.with(&self.profile)
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Refresh {}
impl Request for Refresh {
    const ENDPOINT: Endpoint = Endpoint::Refresh;
    type Answer = api::Refreshed;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.with(&self.profile)
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Logout {}
impl Request for Logout {
    const ENDPOINT: Endpoint = Endpoint::Logout;
    type Answer = api::LoggedOut;
    type Body = api::LogoutRequest;
    fn path(&self) -> String {
        Self::ENDPOINT.with(&self.profile)
    }
    fn body(&self) -> Option<&api::LogoutRequest> {
        Some(&self.body)
    }
}

impl sealed::Sealed for Login {}
impl Request for Login {
    const ENDPOINT: Endpoint = Endpoint::Login;
    type Answer = api::Login;
    type Body = api::LoginRequest;
    fn path(&self) -> String {
        Self::ENDPOINT.with(&self.profile)
    }
    fn body(&self) -> Option<&api::LoginRequest> {
        Some(&self.body)
    }
}

impl sealed::Sealed for LoginStatus {}
impl Request for LoginStatus {
    const ENDPOINT: Endpoint = Endpoint::LoginStatus;
    type Answer = api::Login;
    type Body = NoBody;
    fn path(&self) -> String {
        let path = Self::ENDPOINT.with(&percent_encode(&self.id));
        match self.wait {
            Some(wait) => format!("{path}?wait={wait}"),
            None => path,
        }
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Events {}
impl Request for Events {
    const ENDPOINT: Endpoint = Endpoint::Events;
    type Answer = api::SessionEvent;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.template().to_string()
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Status {}
impl Request for Status {
    const ENDPOINT: Endpoint = Endpoint::Status;
    type Answer = api::DaemonStatus;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.template().to_string()
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for Shutdown {}
impl Request for Shutdown {
    const ENDPOINT: Endpoint = Endpoint::Shutdown;
    type Answer = api::Stopping;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.template().to_string()
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for MintClientToken {}
impl Request for MintClientToken {
    const ENDPOINT: Endpoint = Endpoint::MintClientToken;
    type Answer = api::MintedToken;
    type Body = api::MintRequest;
    fn path(&self) -> String {
        Self::ENDPOINT.template().to_string()
    }
    fn body(&self) -> Option<&api::MintRequest> {
        Some(&self.body)
    }
}

impl sealed::Sealed for ListClientTokens {}
impl Request for ListClientTokens {
    const ENDPOINT: Endpoint = Endpoint::ListClientTokens;
    type Answer = api::ClientTokens;
    type Body = NoBody;
    fn path(&self) -> String {
        Self::ENDPOINT.template().to_string()
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

impl sealed::Sealed for RevokeClientToken {}
impl Request for RevokeClientToken {
    const ENDPOINT: Endpoint = Endpoint::RevokeClientToken;
    type Answer = api::NoContent;
    type Body = NoBody;
    fn path(&self) -> String {
        // A token id is `[a-z0-9]` by construction: URL-safe as it is.
        Self::ENDPOINT.with(self.id.as_str())
    }
    fn body(&self) -> Option<&NoBody> {
        None
    }
}

/// `text` as one URL path segment: every byte but `A-Z a-z 0-9 - _ ~` as `%XX`. The
/// dot is encoded too (though RFC 3986 leaves it unreserved), so an id such as `..`
/// cannot become a dot-segment that something on the way resolves.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work() -> ProfileName {
        ProfileName::new("work").unwrap()
    }

    /// `(endpoint, method, path, body)` of one value of every request type: adding
    /// a type to the set means adding it here, and the test below then checks the
    /// set is still exactly [`Endpoint::ALL`].
    fn every_request() -> Vec<(Endpoint, Method, String, Option<String>)> {
        fn row<R: Request>(r: R) -> (Endpoint, Method, String, Option<String>) {
            let body = r.body().map(|b| serde_json::to_string(b).unwrap());
            (R::ENDPOINT, R::ENDPOINT.method(), r.path(), body)
        }
        vec![
            row(Health),
            row(Profiles),
            row(Token {
                profile: work(),
                min_ttl: 60,
            }),
            row(IdToken {
                profile: work(),
                min_ttl: 120,
            }),
            row(Session { profile: work() }),
            row(Refresh { profile: work() }),
            row(Logout {
                profile: work(),
                body: api::LogoutRequest { revoke: false },
            }),
            row(Login {
                profile: work(),
                body: api::LoginRequest {
                    flow: api::LoginFlow::Device,
                },
            }),
            row(LoginStatus {
                id: "0123abcd".into(),
                wait: Some(30),
            }),
            row(Events),
            row(Status),
            row(Shutdown),
            row(MintClientToken {
                body: api::MintRequest {
                    name: Some("ci".into()),
                    scopes: vec![crate::delegation::Scope::parse("token:work").unwrap()],
                    ttl_seconds: None,
                },
            }),
            row(ListClientTokens),
            row(RevokeClientToken {
                id: TokenId::new("abcdef012345").unwrap(),
            }),
        ]
    }

    #[test]
    fn every_endpoint_has_exactly_one_request_type() {
        // The proxy answers with the upstream's response, not a JSON type of its
        // own: `proxy::target` builds its paths.
        let endpoints: Vec<Endpoint> = every_request().iter().map(|r| r.0).collect();
        let typed: Vec<Endpoint> = Endpoint::ALL
            .into_iter()
            .filter(|e| *e != Endpoint::Proxy)
            .collect();
        assert_eq!(endpoints, typed);
    }

    #[test]
    fn paths_methods_and_bodies_are_the_documented_ones() {
        let expected = [
            ("GET", "/v1/health", None),
            ("GET", "/v1/profiles", None),
            ("GET", "/v1/profiles/work/token?min_ttl=60", None),
            ("GET", "/v1/profiles/work/id-token?min_ttl=120", None),
            ("GET", "/v1/profiles/work/session", None),
            ("POST", "/v1/profiles/work/refresh", None),
            (
                "POST",
                "/v1/profiles/work/logout",
                Some(r#"{"revoke":false}"#),
            ),
            (
                "POST",
                "/v1/profiles/work/login",
                Some(r#"{"flow":"device"}"#),
            ),
            ("GET", "/v1/logins/0123abcd?wait=30", None),
            ("GET", "/v1/events", None),
            ("GET", "/v1/status", None),
            ("POST", "/v1/shutdown", None),
            (
                "POST",
                "/v1/client-tokens",
                Some(r#"{"name":"ci","scopes":["token:work"]}"#),
            ),
            ("GET", "/v1/client-tokens", None),
            ("DELETE", "/v1/client-tokens/abcdef012345", None),
        ];
        for ((_, method, path, body), (m, p, b)) in every_request().into_iter().zip(expected) {
            assert_eq!((method.as_str(), path.as_str(), body.as_deref()), (m, p, b));
        }
    }

    #[test]
    fn every_path_matches_its_own_template_and_no_other() {
        for (endpoint, method, path, _) in every_request() {
            let bare = path.split('?').next().unwrap();
            assert!(endpoint.matches(bare), "{path} fits {endpoint:?}");
            assert_eq!(Endpoint::find(method.as_str(), bare), Some(endpoint));
            let others: Vec<Endpoint> = Endpoint::ALL
                .into_iter()
                .filter(|e| *e != endpoint && e.method() == method && e.matches(bare))
                .collect();
            assert!(others.is_empty(), "{method} {path} also fits {others:?}");
        }
        assert_eq!(Endpoint::find("GET", "/v1/profiles//token"), None);
        assert_eq!(Endpoint::find("POST", "/v1/profiles/work/token"), None);
        assert_eq!(Endpoint::find("GET", "/v1/profiles/work/token/x"), None);
        assert_eq!(Endpoint::find("GET", "/v2/health"), None);
        assert_eq!(Endpoint::find("HEAD", "/v1/health"), Some(Endpoint::Health));
        for method in ["GET", "PATCH", "OPTIONS"] {
            assert_eq!(
                Endpoint::find(method, "/v1/proxy/work/v2/issues"),
                Some(Endpoint::Proxy)
            );
        }
        assert_eq!(Endpoint::find("PROPFIND", "/v1/proxy/work/v2/issues"), None);
        assert_eq!(Endpoint::find("GET", "/v1/proxy/work/"), None);
        assert_eq!(Endpoint::find("GET", "/v1/proxy/work"), None);
    }

    #[test]
    fn templates_have_at_most_one_variable_segment() {
        for e in Endpoint::ALL {
            let t = e.template();
            assert!(t.starts_with("/v1/"), "{t}");
            // The proxy's second variable is the rest of the path, built by
            // `proxy::target`, never by `Endpoint::with`.
            assert!(t.matches('{').count() <= 1 || e == Endpoint::Proxy, "{t}");
            assert_eq!(t.matches('{').count(), t.matches('}').count(), "{t}");
        }
    }

    #[test]
    fn a_login_id_is_percent_encoded_into_one_segment() {
        let r = LoginStatus {
            id: "../x y/%?#é".into(),
            wait: None,
        };
        assert_eq!(r.path(), "/v1/logins/%2E%2E%2Fx%20y%2F%25%3F%23%C3%A9");
        assert!(Endpoint::LoginStatus.matches(&r.path()));
        assert_eq!(percent_encode("Az09-_~"), "Az09-_~");
    }
}
