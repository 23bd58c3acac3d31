//! The API proxy's rules (docs/behaviour.md, "The API proxy"), in one place for
//! the daemon's `/v1/proxy` route and for `latchkey api` without a daemon: which
//! headers pass, when a 401 asks for a new token, which bodies can be replayed, which
//! paths may be appended to an upstream, and what an upstream's status means as an
//! exit code.
//!
//! Pure functions over names and values: no HTTP types, no I/O.

use crate::error::Category;
use crate::profile::ProfileName;

/// Set to `1` on a response to a request that was sent a second time, with a new
/// access token, after the upstream rejected the first one.
pub const RETRIED_HEADER: &str = "Latchkey-Retried";

/// Set to `1` on every response whose status, headers and body are the
/// upstream's. An answer without it is Latchkey's own (the JSON error shape).
/// Upstream responses never carry `Latchkey-*` headers of their own, so the
/// marker cannot be forged by an upstream.
pub const PROXIED_HEADER: &str = "Latchkey-Proxied";

/// The largest request body kept for a retry. A larger one streams to the
/// upstream and is not replayed after a 401.
pub const MAX_REPLAY: usize = 1024 * 1024;

/// Hop-by-hop headers (RFC 9110, section 7.6.1), plus `Proxy-Connection` and
/// `Keep-Alive` that old peers still send. They describe one connection and never
/// cross the proxy.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_latchkey(name: &str) -> bool {
    name.len() >= 9 && name[..9].eq_ignore_ascii_case("latchkey-")
}

fn is_hop_by_hop(name: &str, connection_names: &[&str]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || connection_names
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
}

/// The header names a `Connection` value lists (they are hop-by-hop too).
pub fn connection_names(connection: &str) -> Vec<&str> {
    connection
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect()
}

/// Whether a consumer's request header goes on to the upstream. Never: hop-by-hop
/// headers (and those `Connection` names), `Authorization` (Latchkey sets its
/// own), `Proxy-Authorization`, `Expect`, `Host` (the upstream's is set) and
/// `Latchkey-*`.
pub fn forwards_request_header(name: &str, connection_names: &[&str]) -> bool {
    !(is_hop_by_hop(name, connection_names)
        || name.eq_ignore_ascii_case("authorization")
        // The proxy answers a `100-continue` itself (it reads the body first).
        || name.eq_ignore_ascii_case("expect")
        || name.eq_ignore_ascii_case("host")
        || is_latchkey(name))
}

/// Whether an upstream's response header goes back to the consumer: everything but
/// hop-by-hop headers and `Latchkey-*` (which only Latchkey sets).
pub fn forwards_response_header(name: &str, connection_names: &[&str]) -> bool {
    !(is_hop_by_hop(name, connection_names) || is_latchkey(name))
}

/// Whether an upstream's 401 says the access token itself was refused, so a new
/// one may help (RFC 6750, section 3): a `Bearer` challenge with
/// `error="invalid_token"` or with no `error`. A 401 without any challenge counts
/// too (APIs that omit it are common, and a new token is the only thing Latchkey
/// can offer); a challenge of another scheme alone, or a `Bearer` error such as
/// `invalid_request` or `insufficient_scope`, does not. `values` are the
/// `WWW-Authenticate` header values.
pub fn wants_new_token<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any = false;
    for value in values {
        for c in challenges(value) {
            any = true;
            if c.scheme.eq_ignore_ascii_case("bearer") {
                match c.param("error") {
                    None => return true,
                    Some(e) if e == "invalid_token" => return true,
                    Some(_) => {}
                }
            }
        }
    }
    !any
}

/// One challenge of a `WWW-Authenticate` value: its scheme and its items
/// (`name=value` parameters, or a token68).
#[derive(Debug)]
struct Challenge<'a> {
    scheme: &'a str,
    items: Vec<&'a str>,
}

impl Challenge<'_> {
    /// The value of parameter `name`, unquoted.
    fn param(&self, name: &str) -> Option<String> {
        self.items.iter().find_map(|item| {
            let (key, value) = item.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| unquote(value.trim()))
        })
    }
}

/// The challenges of one `WWW-Authenticate` value (RFC 9110, section 11.6.1). The
/// value is a comma-separated list in which an item that is not `name=value`
/// starts a new challenge, so items are split at commas outside quoted strings and
/// then grouped.
fn challenges(value: &str) -> Vec<Challenge<'_>> {
    let mut out: Vec<Challenge<'_>> = Vec::new();
    for item in split_outside_quotes(value) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let first = item.split([' ', '\t']).next().unwrap_or(item);
        let rest = item[first.len()..].trim_start();
        let is_param = first.contains('=') || rest.starts_with('=');
        if is_param {
            if let Some(c) = out.last_mut() {
                c.items.push(item);
            }
        } else {
            out.push(Challenge {
                scheme: first,
                items: if rest.is_empty() { vec![] } else { vec![rest] },
            });
        }
    }
    out
}

fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// A token, or a quoted string without its quotes and escapes.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"') else {
        return v.to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// Why a path cannot be appended to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

impl std::fmt::Display for BadPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BadPath {}

/// Checks the path a consumer asks for, as sent (percent-encoding kept), before it
/// is appended to the upstream: the upstream's own path is the boundary. Each
/// segment is percent-decoded (repeatedly, as servers that decode twice would) and
/// refused when a part of it, split at `/` and `\`, is `.` or `..` (also before a
/// `;` parameter, `..;`): a server in front of the API that decodes before it
/// normalises must not be handed a way out. An encoded slash inside a segment
/// (`group%2Fproject`, as GitLab's API wants) is fine. Backslashes, spaces,
/// control characters and `#` are refused as they are.
pub fn check_path(path: &str) -> Result<(), BadPath> {
    if path.contains('\\') {
        return Err(BadPath("a path with a backslash is refused"));
    }
    if path
        .chars()
        .any(|c| c.is_ascii_control() || c == ' ' || c == '#')
    {
        return Err(BadPath(
            "a path with spaces, control characters or `#` is refused",
        ));
    }
    for segment in path.split('/') {
        let mut decoded = segment.to_string();
        for _ in 0..3 {
            let next = percent_decode(&decoded);
            if next == decoded {
                break;
            }
            decoded = next;
        }
        let climbs = decoded.split(['/', '\\']).any(|part| {
            let part = part.split(';').next().unwrap_or(part);
            part == "." || part == ".."
        });
        if climbs {
            return Err(BadPath(
                "a path with `.` or `..` segments (also encoded) could leave the upstream's base path",
            ));
        }
    }
    Ok(())
}

/// `%XX` sequences decoded (bytes that do not make UTF-8 become U+FFFD); anything
/// else as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        match (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path as a person writes it (`/me`, `v2/issues?state=open`) as the path on
/// the upstream (one leading `/` dropped) and the query.
pub fn split(path: &str) -> (&str, Option<&str>) {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// The socket API's request target for `path` (as a person writes it: `/me`,
/// `v2/issues?state=open`) on `profile`'s upstream: `/v1/proxy/{profile}/{path}`
/// with the query. Bytes outside printable ASCII are percent-encoded; the path is
/// checked by [`check_path`] and must not be empty.
pub fn target(profile: &ProfileName, path: &str) -> Result<String, BadPath> {
    let (path, query) = split(path);
    if path.is_empty() {
        return Err(BadPath("name a path on the upstream, such as /me"));
    }
    let path = encode_non_ascii(path);
    check_path(&path)?;
    let mut out = format!("/v1/proxy/{}/{path}", profile.as_str());
    if let Some(q) = query {
        let q = encode_non_ascii(q);
        if q.chars()
            .any(|c| c.is_ascii_control() || c == ' ' || c == '#')
        {
            return Err(BadPath(
                "a query with spaces, control characters or `#` is refused; percent-encode them",
            ));
        }
        out.push('?');
        out.push_str(&q);
    }
    Ok(out)
}

fn encode_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an upstream's status means as an exit code of `latchkey api`: `None` for
/// 2xx (success); otherwise the category whose exit code it gets. A redirect
/// (passed back, never followed) and other 4xx are the caller's to handle
/// (`usage`); 401 after the one retry means the session does not work for this
/// API (`session_expired`); 403 `forbidden`; 408, 429, 502, 503 and 504 `transport`
/// (worth retrying later); other 5xx `server`.
pub fn upstream_category(status: u16) -> Option<Category> {
    Some(match status {
        200..=299 => return None,
        401 => Category::SessionExpired,
        403 => Category::Forbidden,
        408 | 429 | 502 | 503 | 504 => Category::Transport,
        500..=599 => Category::Server,
        _ => Category::Usage,
    })
}

/// One entry of a profile's `allow` list (`[profiles.NAME.proxy] allow`):
/// `METHOD PATH`. METHOD is an HTTP method (any case) or `*`; PATH starts with
/// `/`, and each `*` in it stands for any run of characters, `/` included
/// (`GET /v2/*` allows every GET under `/v2/`). A request is matched by its
/// method and the path of the URL it would be sent to, as sent (percent-encoding
/// kept, dot segments already refused, no query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    method: String,
    path: String,
}

impl AllowRule {
    /// Parses `METHOD PATH`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<AllowRule, String> {
        let mut parts = text.split_whitespace();
        let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{text:?} is not `METHOD /path` (e.g. \"GET /v2/*\")"
            ));
        };
        let is_token = |m: &str| m.bytes().all(|b| b.is_ascii_alphabetic());
        if method != "*" && !is_token(method) {
            return Err(format!("{text:?}: {method:?} is not an HTTP method or `*`"));
        }
        if !path.starts_with('/') {
            return Err(format!("{text:?}: the path must start with `/`"));
        }
        if path.contains('?') {
            return Err(format!("{text:?}: a path pattern has no query"));
        }
        Ok(AllowRule {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
        })
    }

    /// Whether a request with `method` to the URL path `path` is allowed by it.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(method)) && glob(&self.path, path)
    }
}

impl std::fmt::Display for AllowRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Whether `rules` allow a request: one of them matches.
pub fn allowed(rules: &[AllowRule], method: &str, path: &str) -> bool {
    rules.iter().any(|r| r.matches(method, path))
}

/// `pattern` against `text`, `*` matching any run of characters: the classic
/// greedy match that backtracks to the last `*` (linear in practice, no
/// recursion).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules_match_method_and_path_with_stars() {
        let rules: Vec<AllowRule> = ["GET /v2/*", "post /v2/issues", "* /health"]
            .iter()
            .map(|r| AllowRule::parse(r).unwrap())
            .collect();
        for (method, path, ok) in [
            ("GET", "/v2/issues", true),
            ("get", "/v2/issues/1/comments", true),
            ("GET", "/v2/", true),
            ("GET", "/v2", false),
            ("GET", "/v3/issues", false),
            ("POST", "/v2/issues", true),
            ("POST", "/v2/issues/1", false),
            ("DELETE", "/v2/issues", false),
            ("DELETE", "/health", true),
            ("GET", "/healthz", false),
            ("GET", "/x/v2/y", false),
        ] {
            assert_eq!(allowed(&rules, method, path), ok, "{method} {path}");
        }
        assert!(!allowed(&[], "GET", "/"), "an empty list allows nothing");
        assert!(glob("/a*b*c", "/aXbYbZc"));
        assert!(!glob("/a*b*c", "/aXbYbZ"));
        assert!(glob("*", ""));
        assert_eq!(rules[1].to_string(), "POST /v2/issues");
    }

    #[test]
    fn allow_rules_are_checked_when_read() {
        for bad in [
            "GET",
            "/v2",
            "GET v2",
            "GET /a /b",
            "G3T /x",
            "GET /x?y=1",
            "",
        ] {
            assert!(AllowRule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_401_asks_for_a_new_token_only_when_the_token_was_refused() {
        assert!(wants_new_token([]), "no challenge at all");
        assert!(wants_new_token(["Bearer"]));
        assert!(wants_new_token(["Bearer realm=\"api\""]));
        assert!(wants_new_token([
            "Bearer realm=\"x\", error=\"invalid_token\", error_description=\"a, b\""
        ]));
        assert!(wants_new_token(["bearer error = invalid_token"]));
        assert!(!wants_new_token(["Bearer error=\"insufficient_scope\""]));
        assert!(!wants_new_token(["Bearer error=\"invalid_request\""]));
        assert!(!wants_new_token(["Basic realm=\"x\""]));
        // Several challenges in one value, and in several values.
        assert!(wants_new_token(["Basic realm=\"x\", Bearer realm=\"y\""]));
        assert!(wants_new_token(["Basic realm=\"x\"", "Bearer"]));
        assert!(!wants_new_token([
            "Basic realm=\"a,Bearer\", Bearer error=\"insufficient_scope\""
        ]));
        // A quoted comma or an escaped quote does not end the parameter.
        assert!(wants_new_token([
            "Bearer error_description=\"say \\\"no\\\", twice\", error=\"invalid_token\""
        ]));
    }

    #[test]
    fn headers_that_name_a_connection_or_latchkey_do_not_pass() {
        let conn = connection_names("keep-alive, X-Secret-Hop");
        for name in [
            "Connection",
            "transfer-encoding",
            "Authorization",
            "Proxy-Authorization",
            "Host",
            "Latchkey-Protocol",
            "latchkey-retried",
            "x-secret-hop",
            "Upgrade",
            "Expect",
        ] {
            assert!(!forwards_request_header(name, &conn), "{name}");
        }
        for name in [
            "Accept",
            "Content-Type",
            "Content-Length",
            "X-Request-Id",
            "Cookie",
        ] {
            assert!(forwards_request_header(name, &conn), "{name}");
        }
        assert!(forwards_response_header("WWW-Authenticate", &[]));
        assert!(forwards_response_header("Location", &[]));
        assert!(!forwards_response_header("Latchkey-Retried", &[]));
        assert!(!forwards_response_header("Transfer-Encoding", &[]));
        assert!(forwards_response_header("Latch", &[]));
    }

    #[test]
    fn a_path_cannot_climb_out_of_the_upstream() {
        for bad in [
            "../x",
            "a/../b",
            "a/./b",
            "%2e%2e/x",
            "a/%2E/b",
            "a\\b",
            "a%5C..%5Cb",
            "a b",
            "a#b",
            "%2e%2e%2fadmin",
            "x%2f..%2fadmin",
            "%252e%252e/admin",
            "..;/admin",
            "a/..;x=1/b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "me",
            "v2/issues",
            "a..b/c",
            "projects/group%2Fproject/issues",
            "%2Fencoded",
            "a//b",
            "a%5Cb",
            "",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn targets_are_built_under_the_profile() {
        let work = ProfileName::new("work").unwrap();
        assert_eq!(target(&work, "/me").unwrap(), "/v1/proxy/work/me");
        assert_eq!(
            target(&work, "v2/issues?state=open&q=a%20b").unwrap(),
            "/v1/proxy/work/v2/issues?state=open&q=a%20b"
        );
        assert_eq!(
            target(&work, "/caf\u{e9}").unwrap(),
            "/v1/proxy/work/caf%C3%A9"
        );
        assert!(target(&work, "/").is_err());
        assert!(target(&work, "").is_err());
        assert!(target(&work, "/../admin").is_err());
        assert!(target(&work, "/x?a b").is_err());
    }

    #[test]
    fn upstream_statuses_map_to_categories() {
        assert_eq!(upstream_category(200), None);
        assert_eq!(upstream_category(204), None);
        assert_eq!(upstream_category(302), Some(Category::Usage));
        assert_eq!(upstream_category(404), Some(Category::Usage));
        assert_eq!(upstream_category(401), Some(Category::SessionExpired));
        assert_eq!(upstream_category(403), Some(Category::Forbidden));
        assert_eq!(upstream_category(429), Some(Category::Transport));
        assert_eq!(upstream_category(503), Some(Category::Transport));
        assert_eq!(upstream_category(500), Some(Category::Server));
    }
}
