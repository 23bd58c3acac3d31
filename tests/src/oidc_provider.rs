//! The real `oidc-provider` npm package on loopback, for the interop tier (tier 3 of
//! docs/behaviour.md, "Test tiers") and for `scripts/demo`.
//!
//! [`OidcProvider::start`] runs `node interop/provider.mjs` (pinned in
//! `interop/package.json`), reads the issuer from its first stdout line and kills it on
//! drop. Its helpers talk to the provider the way a person's browser or a resource
//! server would: [`OidcProvider::approve_device`] walks the package's own device,
//! login and consent pages with plain form posts (a tiny cookie-carrying HTTP client,
//! [`FormAgent`]), [`OidcProvider::introspect`] and [`OidcProvider::userinfo`] ask the
//! provider what it thinks of a token. `/_interop/*` are the test script's own
//! additions: event counters, the tokens issued (for leak checks), the access-token TTL.
//!
//! Dependencies: `node`, `interop/node_modules` (`scripts/interop-deps` runs `npm ci`)
//! and, for the browser login, Debian's `/usr/bin/chromium`. [`available`] checks them:
//! with `CI=true` a missing one fails the test; elsewhere the test prints a notice and
//! returns early, so a workstation without Node still runs the other tiers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (this crate's parent folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// `interop/` in the workspace.
pub fn interop_dir() -> PathBuf {
    workspace_root().join("interop")
}

/// Debian's Chromium, the only browser the tier uses (never a downloaded one).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether `CI` asks for a strict run (any value but empty, `0` or `false`).
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// What the tier needs that is missing here, if anything.
pub fn missing(need_browser: bool) -> Vec<String> {
    let mut out = Vec::new();
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        out.push("`node` is not on PATH".to_string());
    }
    let modules = interop_dir().join("node_modules");
    for package in ["oidc-provider", "playwright-core"] {
        if !modules.join(package).join("package.json").exists() {
            out.push(format!(
                "{} lacks {package} (run scripts/interop-deps)",
                modules.display()
            ));
        }
    }
    if need_browser && !Path::new(CHROMIUM).exists() {
        out.push(format!(
            "{CHROMIUM} is missing (run scripts/interop-deps: apt-get install chromium)"
        ));
    }
    out
}

/// True when the interop tier can run. When it cannot: panics under `CI=true` (a
/// skipped interop test proves nothing), otherwise prints why on stderr and returns
/// false so the caller returns early.
#[track_caller]
pub fn available(need_browser: bool) -> bool {
    let missing = missing(need_browser);
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    assert!(
        !strict(),
        "CI=true and the interop tier cannot run: {why}. Run scripts/interop-deps first."
    );
    eprintln!("note: skipping an interop test: {why}");
    false
}

/// How to start the provider.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// Lifetime of access tokens issued from the start (changeable later).
    pub access_token_ttl: Duration,
    /// The `interval` the device authorization answer carries.
    pub device_interval: Duration,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            access_token_ttl: Duration::from_secs(3600),
            device_interval: Duration::from_secs(1),
        }
    }
}

/// A running `interop/provider.mjs`, killed on drop.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    issuer: String,
    introspector: (String, String),
    /// The confidential native clients (`latchkey-basic`, `latchkey-post`):
    /// client id and secret, by authentication method (`basic`, `post`).
    confidential: Vec<(String, String, String)>,
    /// The fixed test account's login name and password.
    pub login: String,
    pub password: String,
    /// stderr of the provider (its event lines and warnings) goes here.
    log: tempfile::NamedTempFile,
}

/// The provider's token introspection (RFC 7662) with the tests' confidential
/// client: what a resource server in front of this provider asks.
#[derive(Debug, Clone)]
pub struct Introspector {
    issuer: String,
    client: (String, String),
}

impl Introspector {
    /// The introspection answer for `token`.
    pub fn introspect(&self, token: &str) -> serde_json::Value {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.client.0, self.client.1));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let r = request(
            "POST",
            &format!("{}/token/introspection", self.issuer),
            &[
                ("Authorization", &format!("Basic {basic}")),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &body,
        )
        .expect("the provider answers");
        assert_eq!(r.status, 200, "introspection failed: {}", r.body);
        r.json()
    }

    /// Whether introspection calls `token` active.
    pub fn is_active(&self, token: &str) -> bool {
        self.introspect(token)["active"] == serde_json::Value::Bool(true)
    }
}

/// The client id the provider registers for Latchkey.
pub const CLIENT_ID: &str = "latchkey-cli";

impl OidcProvider {
    /// Starts the provider and waits (up to 60 s: Node starting on a busy machine)
    /// until it prints its issuer.
    pub fn start(opts: ProviderOptions) -> OidcProvider {
        let log = tempfile::Builder::new()
            .prefix("oidc-provider-")
            .suffix(".log")
            .tempfile()
            .expect("a log file can be made");
        let mut child = Command::new("node")
            .arg(interop_dir().join("provider.mjs"))
            .arg("--access-token-ttl")
            .arg(opts.access_token_ttl.as_secs().max(1).to_string())
            .arg("--device-interval")
            .arg(opts.device_interval.as_secs().max(1).to_string())
            .current_dir(interop_dir())
            .env_remove("INTEROP_ACCESS_TOKEN_TTL")
            .env_remove("INTEROP_DEVICE_INTERVAL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("the log file reopens"))
            .spawn()
            .expect("node can be spawned");
        let stdout = child.stdout.take().expect("stdout is piped");
        // Read the first line on a thread so a provider that hangs before printing it
        // fails the test after the deadline instead of blocking forever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the pipe open and drained: a write to a closed pipe kills Node.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if !line.trim().is_empty() => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("interop/provider.mjs did not print its issuer; its stderr:\n{text}");
            }
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).expect("the provider's first line is JSON");
        let s = |v: &serde_json::Value| v.as_str().expect("a string field").to_string();
        OidcProvider {
            issuer: s(&ready["issuer"]),
            introspector: (
                s(&ready["introspection_client"]["client_id"]),
                s(&ready["introspection_client"]["client_secret"]),
            ),
            confidential: ["basic", "post"]
                .iter()
                .map(|m| {
                    let c = &ready["confidential_clients"][m];
                    (m.to_string(), s(&c["client_id"]), s(&c["client_secret"]))
                })
                .collect(),
            login: s(&ready["account"]["sub"]),
            password: s(&ready["account"]["password"]),
            child,
            log,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider's stderr so far: warnings and one JSON line per event.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The provider's event counters (`GET /_interop/counters`).
    pub fn counters(&self) -> serde_json::Value {
        self.interop_get("counters")
    }

    /// `GET /_interop/{what}`, one of the provider's test-only answers, as JSON.
    fn interop_get(&self, what: &str) -> serde_json::Value {
        let r = request("GET", &format!("{}/_interop/{what}", self.issuer), &[], "")
            .expect("the provider answers");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Successful token responses for `grant_type` (e.g. `refresh_token`).
    pub fn grants(&self, grant_type: &str) -> u64 {
        self.counters()["grants"][grant_type].as_u64().unwrap_or(0)
    }

    /// Grants the provider revoked because a spent refresh token came back.
    pub fn reuse_revocations(&self) -> u64 {
        self.counters()["grants_revoked"]["reuse"]
            .as_u64()
            .expect("a counter")
    }

    /// The confidential native client that authenticates with `method` (`basic`
    /// or `post`): its client id and secret.
    pub fn confidential_client(&self, method: &str) -> (String, String) {
        self.confidential
            .iter()
            .find(|(m, _, _)| m == method)
            .map(|(_, id, secret)| (id.clone(), secret.clone()))
            .unwrap_or_else(|| panic!("no confidential client for {method}"))
    }

    /// Every secret a leak check must look for besides the issued tokens: the
    /// confidential clients' secrets.
    pub fn client_secrets(&self) -> Vec<String> {
        self.confidential
            .iter()
            .map(|(_, _, s)| s.clone())
            .collect()
    }

    /// The query parameters of every authorization request the provider got, in
    /// order (without state, nonce and the PKCE challenge).
    pub fn authorization_requests(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        serde_json::from_value(self.interop_get("authorization-requests"))
            .expect("a JSON list of objects")
    }

    /// Every access, refresh and ID token the provider handed out, for leak checks.
    pub fn issued_tokens(&self) -> Vec<String> {
        serde_json::from_value(self.interop_get("issued")).expect("a JSON list of strings")
    }

    /// Sets the lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        let r = request(
            "POST",
            &format!(
                "{}/_interop/config?access_token_ttl={}",
                self.issuer,
                ttl.as_secs().max(1)
            ),
            &[],
            "",
        )
        .expect("the provider answers");
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// RFC 7662 introspection of any token by the tests' confidential client.
    pub fn introspect(&self, token: &str) -> serde_json::Value {
        self.introspector().introspect(token)
    }

    /// The tests' introspecting client, for use on other threads (a resource
    /// server that checks the bearer tokens it gets).
    pub fn introspector(&self) -> Introspector {
        Introspector {
            issuer: self.issuer.clone(),
            client: self.introspector.clone(),
        }
    }

    /// Presents `refresh_token` at the token endpoint as Latchkey's client would: what
    /// a replay by a thief (or a buggy double refresh) looks like to the provider.
    pub fn redeem_refresh_token(&self, refresh_token: &str) -> Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .append_pair("client_id", CLIENT_ID)
            .finish();
        request(
            "POST",
            &format!("{}/token", self.issuer),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        )
        .expect("the provider answers")
    }

    /// Deletes one access token from the provider's store and nothing else (its
    /// grant and refresh token stay): a token that Latchkey still thinks valid
    /// and the provider's APIs now refuse. RFC 7009 revocation would not do: at
    /// this provider, revoking an access token revokes its whole grant.
    pub fn destroy_access_token(&self, access_token: &str) {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", access_token)
            .finish();
        let r = request(
            "POST",
            &format!("{}/_interop/destroy-access-token?{query}", self.issuer),
            &[],
            "",
        )
        .expect("the provider answers");
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Whether introspection calls `token` active.
    pub fn is_active(&self, token: &str) -> bool {
        self.introspect(token)["active"] == serde_json::Value::Bool(true)
    }

    /// The userinfo endpoint with `access_token`: (status, body as JSON or null).
    pub fn userinfo(&self, access_token: &str) -> (u16, serde_json::Value) {
        let r = request(
            "GET",
            &format!("{}/me", self.issuer),
            &[("Authorization", &format!("Bearer {access_token}"))],
            "",
        )
        .expect("the provider answers");
        let json = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, json)
    }

    /// Approves a device login as the test account: see [`approve_device`].
    pub fn approve_device(&self, verification_uri_complete: &str) -> Result<Vec<String>, String> {
        approve_device(verification_uri_complete, &self.login, &self.password)
    }
}

/// Approves a device login like a person would: opens `verification_uri_complete`,
/// confirms the code, signs in as `login` and consents, all through oidc-provider's
/// own HTML pages with form posts. Returns the pages' headings in order.
pub fn approve_device(
    verification_uri_complete: &str,
    login: &str,
    password: &str,
) -> Result<Vec<String>, String> {
    let mut agent = FormAgent::default();
    let mut page = agent.get(verification_uri_complete)?;
    let mut titles = vec![page.heading()];
    for _ in 0..10 {
        if page.body.contains("Sign-in Success") {
            return Ok(titles);
        }
        let mut form = page.form().ok_or_else(|| {
            format!(
                "no form on the page titled {:?} at {} (status {})",
                page.title(),
                page.url,
                page.status
            )
        })?;
        if form.fields.contains_key("login") {
            form.fields.insert("login".into(), login.to_string());
            form.fields.insert("password".into(), password.to_string());
        }
        page = agent.submit(&page.url, &form)?;
        titles.push(page.heading());
    }
    Err(format!("the approval did not finish: {titles:?}"))
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser without JavaScript: follows redirects, carries cookies, posts forms.
#[derive(Debug, Default)]
pub struct FormAgent {
    /// Cookies by name; the provider's cookie paths hold interaction ids, so the
    /// newest cookie of a name is the one that matters.
    cookies: BTreeMap<String, String>,
}

/// A page the agent ended on after following redirects.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: String,
    pub status: u16,
    pub body: String,
}

/// An HTML form: where it posts and its named inputs with their values.
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    pub method: String,
    pub fields: BTreeMap<String, String>,
}

impl Page {
    /// The `<title>`, or an empty string.
    pub fn title(&self) -> String {
        between(&self.body, "<title>", "</title>")
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    /// The first `<h1>`, else the `<title>`: the package's login and consent pages
    /// share one title and differ in their heading.
    pub fn heading(&self) -> String {
        between(&self.body, "<h1>", "</h1>")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.title())
    }

    /// The first form on the page.
    pub fn form(&self) -> Option<Form> {
        let start = self.body.find("<form")?;
        let rest = &self.body[start..];
        let tag_end = rest.find('>')?;
        let tag = &rest[..tag_end];
        let end = rest.find("</form>").unwrap_or(rest.len());
        let inner = &rest[tag_end..end];
        let mut fields = BTreeMap::new();
        let mut at = 0;
        while let Some(i) = inner[at..].find("<input") {
            let s = at + i;
            let e = inner[s..].find('>').map_or(inner.len(), |e| s + e);
            let input = &inner[s..e];
            if let Some(name) = attr(input, "name") {
                fields.insert(name, attr(input, "value").unwrap_or_default());
            }
            at = e;
        }
        Some(Form {
            action: attr(tag, "action").unwrap_or_default(),
            method: attr(tag, "method").unwrap_or_else(|| "get".into()),
            fields,
        })
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let s = text.find(open)? + open.len();
    let e = text[s..].find(close)? + s;
    Some(&text[s..e])
}

/// An attribute of a tag, `name="value"`, HTML entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let s = tag.find(&needle)? + needle.len();
    let e = tag[s..].find('"')? + s;
    Some(unescape(&tag[s..e]))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl FormAgent {
    /// `GET url`, following redirects.
    pub fn get(&mut self, url: &str) -> Result<Page, String> {
        self.follow("GET", url.to_string(), String::new())
    }

    /// Submits `form` of the page at `page_url`, following redirects.
    pub fn submit(&mut self, page_url: &str, form: &Form) -> Result<Page, String> {
        let base = url::Url::parse(page_url).map_err(|e| e.to_string())?;
        let action = base.join(&form.action).map_err(|e| e.to_string())?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form.fields)
            .finish();
        if form.method.eq_ignore_ascii_case("post") {
            self.follow("POST", action.to_string(), body)
        } else {
            let mut action = action;
            action.set_query(Some(&body));
            self.follow("GET", action.to_string(), String::new())
        }
    }

    fn follow(&mut self, method: &str, url: String, body: String) -> Result<Page, String> {
        let (mut method, mut url, mut body) = (method.to_string(), url, body);
        for _ in 0..20 {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let mut headers = vec![("Accept", "text/html")];
            if !cookie.is_empty() {
                headers.push(("Cookie", &cookie));
            }
            if method == "POST" {
                headers.push(("Content-Type", "application/x-www-form-urlencoded"));
            }
            let r = request(&method, &url, &headers, &body)?;
            for v in r.headers_named("set-cookie") {
                self.set_cookie(v);
            }
            if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
                let location = r
                    .headers_named("location")
                    .next()
                    .ok_or_else(|| format!("a {} from {url} without Location", r.status))?;
                let next = url::Url::parse(&url)
                    .and_then(|u| u.join(location))
                    .map_err(|e| e.to_string())?;
                if !matches!(r.status, 307 | 308) {
                    method = "GET".into();
                    body.clear();
                }
                url = next.to_string();
                continue;
            }
            return Ok(Page {
                url,
                status: r.status,
                body: r.body,
            });
        }
        Err(format!("too many redirects ending at {url}"))
    }

    fn set_cookie(&mut self, header: &str) {
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let expired = parts.any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "max-age=0" || p.starts_with("expires=thu, 01 jan 1970")
        });
        if expired || value.is_empty() {
            self.cookies.remove(name.trim());
        } else {
            self.cookies
                .insert(name.trim().to_string(), value.trim().to_string());
        }
    }
}

/// A complete HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// Values of the headers named `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

/// One HTTP/1.1 request over a fresh loopback connection (`Connection: close`),
/// bounded by 30 s. Only `http://` URLs.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if u.scheme() != "http" {
        return Err(format!("only http:// URLs: {url}"));
    }
    let host = u.host_str().ok_or("no host")?.to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let deadline = Duration::from_secs(30);
    let mut stream = TcpStream::connect((host.as_str(), port))
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    let target = &u[url::Position::BeforePath..url::Position::AfterQuery];
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("send to {url}: {e}"))?;
    let started = Instant::now();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {url} after {:?}: {e}", started.elapsed()))?;
    parse_response(&raw).ok_or_else(|| format!("a malformed answer from {url}"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_chunks_parse() {
        let page = Page {
            url: "http://127.0.0.1:1/device".into(),
            status: 200,
            body: r#"<title> Sign-in </title><form id="f" method="post" action="/interaction/a&amp;b">
<input type="hidden" name="xsrf" value="x&quot;y"/><input required type="text" name="login" placeholder="p" autofocus="on">
</form><input name="outside" value="no">"#
                .into(),
        };
        assert_eq!(page.title(), "Sign-in");
        let f = page.form().unwrap();
        assert_eq!(f.action, "/interaction/a&b");
        assert_eq!(f.method, "post");
        assert_eq!(f.fields["xsrf"], "x\"y");
        assert_eq!(f.fields["login"], "");
        assert!(!f.fields.contains_key("outside"));
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
    }

    #[test]
    fn expired_cookies_are_dropped() {
        let mut a = FormAgent::default();
        a.set_cookie("_interaction=abc; path=/interaction/x; httponly");
        assert_eq!(a.cookies["_interaction"], "abc");
        a.set_cookie("_interaction=; path=/interaction/x; expires=Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(a.cookies.is_empty());
    }
}
