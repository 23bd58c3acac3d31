//! The socket API's documentation is true: every `curl` example of `docs/api.md` runs,
//! in document order, against a real `latchkeyd`, and each answer has the shape the
//! page shows and the shape `docs/openapi.yaml` declares (status, `Latchkey-Protocol`
//! header, JSON schema). A static check ties `docs/openapi.yaml` to the proto's
//! closed set of endpoints (`latchkey_proto::request::Endpoint::ALL`, which the
//! daemon's router registers) and to the proto's category-to-status mapping
//! (`Category::http_status`, which the routes use).
//!
//! The API proxy is one endpoint of every method (`Method::Any`); OpenAPI has no
//! "any", so the document lists it under each method its router takes, at
//! `/v1/proxy/{profile}/{path}` (the proto's `{*path}`, the rest of the path).
//! Its answers are the upstream's whatever their status (`Latchkey-Proxied: 1`)
//! or Latchkey's own errors: the page runs its examples with the fake
//! provider as the upstream, and checks an upstream's answer against the page,
//! not against a Latchkey schema.
//!
//! The OpenAPI file is read with a small YAML reader below that accepts only the
//! subset the file uses (block mappings and sequences, flow sequences of scalars,
//! quoted and plain scalars, `|` and `>` block scalars) and panics on anything else,
//! so it never misreads silently. `scripts/test` validates the same file with
//! `openapi-spec-validator`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latchkey_proto::error::Category;
use latchkey_proto::proxy::{PROXIED_HEADER, RETRIED_HEADER};
use latchkey_proto::request::{Endpoint, Method};
use latchkey_tests::fake_idp::FakeIdpConfig;
use latchkey_tests::harness::{World, bin};
use serde_json::{Map, Value};

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn openapi() -> Value {
    yaml::parse(&repo_file("docs/openapi.yaml"))
}

/// The operations an OpenAPI path item can hold (OpenAPI 3.1, "Path Item
/// Object"), in its order.
const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The methods docs/openapi.yaml lists an endpoint under: its own, or for
/// `Method::Any` the ones it takes (`Method::ANY`, which the daemon's router
/// registers; others get 405).
fn documented_methods(e: Endpoint) -> Vec<String> {
    match e.method() {
        Method::Any => Method::ANY.iter().map(|m| m.to_string()).collect(),
        m => vec![m.as_str().to_string()],
    }
}

/// A proto template as an OpenAPI path: `{*rest}` (the rest of the path) is an
/// ordinary `{rest}` there, its description saying that it spans segments.
fn openapi_template(template: &str) -> String {
    template.replace("{*", "{")
}

/// The OpenAPI path of the API proxy.
fn proxy_path() -> String {
    openapi_template(Endpoint::Proxy.template())
}

/// Whether an OpenAPI path's last variable is the rest of the path.
fn ends_in_rest(openapi_path: &str) -> bool {
    Endpoint::ALL
        .iter()
        .any(|e| e.template().contains("{*") && openapi_template(e.template()) == openapi_path)
}

/// What a docs/api.md example must cover: the endpoint, so one example of the
/// proxy covers all its methods.
fn endpoint_key(method: &str, template: &str) -> (String, String) {
    if template == proxy_path() {
        (Method::Any.as_str().to_string(), template.to_string())
    } else {
        (method.to_string(), template.to_string())
    }
}

// ---------------------------------------------------------------------------------
// The static check: openapi.yaml against the proto's endpoints and categories.
// ---------------------------------------------------------------------------------

/// Every endpoint of the proto's set is documented with its method, and nothing
/// else is; every operation takes the protocol header and every response declares
/// it; the category enum is the proto's; the statuses follow `http_status`; and
/// every operation has a curl example in docs/api.md.
#[test]
fn openapi_matches_the_routes_the_categories_and_the_examples() {
    let api = openapi();
    assert_eq!(api["openapi"], "3.1.0");

    let pairs: Vec<(String, String)> = Endpoint::ALL
        .iter()
        .flat_map(|e| {
            documented_methods(*e)
                .into_iter()
                .map(|m| (m, openapi_template(e.template())))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = pairs.iter().cloned().collect();
    assert_eq!(routes.len(), pairs.len(), "one endpoint per (method, path)");
    let documented: BTreeSet<(String, String)> = operations(&api)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    assert_eq!(
        routes, documented,
        "Endpoint::ALL (left) and docs/openapi.yaml (right) list different endpoints"
    );

    // The category enum is the proto's, in exit-code order.
    let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let category = resolve(&api, &api["components"]["schemas"]["Category"]);
    let enumerated: Vec<&str> = category["enum"]
        .as_array()
        .expect("Category has an enum")
        .iter()
        .map(|v| v.as_str().expect("category names are strings"))
        .collect();
    assert_eq!(enumerated, names, "the Category enum of docs/openapi.yaml");

    // The proxy's operations share the path's one description, which names the
    // headers that tell the upstream's answers from Latchkey's own.
    let proxy = proxy_path();
    let shared = api["paths"][&proxy]["description"]
        .as_str()
        .expect("the proxy's path item has the shared description");
    for header in [PROXIED_HEADER, RETRIED_HEADER] {
        assert!(
            shared.contains(header),
            "the proxy's description does not name {header}"
        );
    }

    // Statuses per category, as documented on the operations' error responses.
    let mut by_status: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for (method, path, op) in operations(&api) {
        // The path item's parameters apply to each of its operations.
        let mut params = api["paths"][&path]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        params.extend(op["parameters"].as_array().cloned().unwrap_or_default());
        assert!(
            params.iter().any(|p| {
                let p = resolve(&api, p);
                p["name"] == "Latchkey-Protocol" && p["in"] == "header"
            }),
            "{method} {path} does not declare the Latchkey-Protocol request header"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        for (status, response) in responses {
            let response = resolve(&api, response);
            assert!(
                response["headers"].get("Latchkey-Protocol").is_some(),
                "{method} {path} {status} does not declare the Latchkey-Protocol header"
            );
            // Every answer of the proxy may be the upstream's, and says so;
            // no other operation's ever is.
            let marker = &response["headers"][PROXIED_HEADER];
            assert_eq!(
                marker.is_object(),
                path == proxy,
                "{method} {path} {status}: the {PROXIED_HEADER} header is declared on the proxy's responses, and only there"
            );
            let Ok(code) = status.parse::<u16>() else {
                // `2XX` or `default`: the upstream's answer, whatever its status.
                assert!(
                    path == proxy && (status == "default" || status == "2XX"),
                    "{method} {path}: the status {status} (only the proxy has the upstream's `2XX` and `default`)"
                );
                let marker = resolve(&api, marker);
                assert_eq!(
                    marker["required"], true,
                    "{method} {path} {status}: an upstream's answer always carries {PROXIED_HEADER}"
                );
                assert!(
                    response["headers"].get(RETRIED_HEADER).is_some(),
                    "{method} {path} {status} does not declare {RETRIED_HEADER}"
                );
                continue;
            };
            if code < 400 {
                continue;
            }
            if let Some(schema) = response["content"].get("application/json") {
                for c in narrowed_categories(&api, &schema["schema"]) {
                    by_status.entry(code).or_default().insert(c);
                }
            }
        }
    }
    let mapping: BTreeMap<String, u16> = Category::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), c.http_status()))
        .collect();
    assert_eq!(
        mapping.len(),
        Category::ALL.len(),
        "http_status maps every category"
    );
    for (category, status) in &mapping {
        assert!(
            by_status.get(status).is_some_and(|s| s.contains(category)),
            "http_status maps {category} to {status}, but no operation documents {category} at {status}"
        );
    }
    // Where the code departs from http_status on purpose: unknown profiles, logins
    // and endpoints are 404 `usage`; the request deadline is 504 `transport`; a
    // missing or bad client token is 401 (the bearer challenge HTTP tooling knows)
    // while its category stays `forbidden`, since `not_logged_in` is about the
    // user's session, not about the caller; the API proxy's upstream unreachable
    // is 502 `transport`, the gateway's status.
    let exceptions = [
        (404, "usage"),
        (504, "transport"),
        (401, "forbidden"),
        (502, "transport"),
    ];
    for (status, categories) in &by_status {
        for c in categories {
            assert!(
                mapping.get(c) == Some(status) || exceptions.contains(&(*status, c.as_str())),
                "docs/openapi.yaml documents {c} at {status}, but http_status says {:?}",
                mapping.get(c)
            );
        }
    }
    assert_eq!(
        by_status
            .get(&404)
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["usage".to_string()]),
        "an unknown profile is 404 with category usage"
    );

    // docs/api.md: every example names a documented operation, every operation has
    // an example, and no curl hides outside the `sh` blocks the tests run.
    let md = repo_file("docs/api.md");
    let examples = md::examples(&md);
    let mut covered = BTreeSet::new();
    for ex in &examples {
        let (method, template) = ex.operation(&api);
        covered.insert(endpoint_key(&method, &template));
    }
    let endpoints: BTreeSet<(String, String)> =
        documented.iter().map(|(m, p)| endpoint_key(m, p)).collect();
    assert_eq!(
        covered, endpoints,
        "docs/api.md must show a curl example for every endpoint (left: shown, right: documented)"
    );
}

/// The categories an error response's schema allows: the narrowing of its `allOf`
/// branches, else every category.
fn narrowed_categories(api: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(api, schema);
    let mut found = Vec::new();
    for branch in schema["allOf"].as_array().cloned().unwrap_or_default() {
        let branch = resolve(api, &branch);
        let c = &branch["properties"]["error"]["properties"]["category"];
        if let Some(v) = c.get("const").and_then(Value::as_str) {
            found.push(v.to_string());
        }
        for v in c["enum"].as_array().cloned().unwrap_or_default() {
            found.push(v.as_str().expect("a category name").to_string());
        }
    }
    if found.is_empty() {
        found = Category::ALL
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
    }
    found
}

// ---------------------------------------------------------------------------------
// OpenAPI helpers: operations, references, and a small JSON Schema check.
// ---------------------------------------------------------------------------------

/// `(METHOD, path, operation)` of every operation.
fn operations(api: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in api["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if OPENAPI_METHODS.contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Follows `$ref`s within the document.
fn resolve<'a>(api: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let pointer = r.strip_prefix('#').expect("only local references");
        v = api
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling reference {r}"));
    }
    panic!("a reference loop")
}

/// The path template of `api` that `path` matches. A last variable that is the
/// rest of the path ([`ends_in_rest`]) takes one or more segments, not empty.
fn template_of(api: &Value, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    api["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .find(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            let fits = |(t, s): (&&str, &&str)| t == s || (t.starts_with('{') && t.ends_with('}'));
            if ends_in_rest(t) {
                let head = ts.len() - 1;
                segments.len() >= ts.len()
                    && ts[..head].iter().zip(&segments).all(fits)
                    && !segments[head..].join("/").is_empty()
            } else {
                ts.len() == segments.len() && ts.iter().zip(&segments).all(fits)
            }
        })
        .cloned()
}

/// The response `op` documents for `status`: its own, else its range (`4XX`),
/// else `default`, as OpenAPI picks them.
fn documented_response(api: &Value, op: &Value, status: u16) -> Option<Value> {
    let responses = &op["responses"];
    [
        status.to_string(),
        format!("{}XX", status / 100),
        "default".to_string(),
    ]
    .iter()
    .find_map(|k| responses.get(k))
    .map(|r| resolve(api, r).clone())
}

/// Checks `v` against `schema`: `$ref`, `allOf`, `oneOf`, `anyOf`, `type`, `enum`,
/// `const`, `required`, `properties`, `items`, `minimum`, and `format: date-time`.
/// A schema with `required` is a whole shape: a field it does not list is reported
/// too, so the document keeps up with every field the daemon sends.
fn check(api: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(api, schema);
    for s in schema["allOf"].as_array().into_iter().flatten() {
        check(api, s, v, at, errors);
    }
    for (key, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(branches) = schema[key].as_array() {
            let matching = branches
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    check(api, s, v, at, &mut e);
                    e.is_empty()
                })
                .count();
            if matching == 0 || (exactly_one && matching > 1) {
                errors.push(format!("{at}: {matching} branches of {key} match {v}"));
            }
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("a strange type at {at}"),
        };
        let fits = |t: &str| match t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            other => panic!("unknown type {other} at {at}"),
        };
        if !types.iter().any(|t| fits(t)) {
            errors.push(format!("{at}: {v} is not of type {t}"));
        }
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        errors.push(format!("{at}: {v} is not {c}"));
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), v.as_f64())
        && n < min
    {
        errors.push(format!("{at}: {n} is below {min}"));
    }
    if schema["format"] == "date-time"
        && let Some(s) = v.as_str()
    {
        let b = s.as_bytes();
        let plausible = b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && (s.ends_with('Z') || s.contains('+'));
        if !plausible {
            errors.push(format!("{at}: {s:?} is not an RFC 3339 time"));
        }
    }
    if let Some(obj) = v.as_object() {
        let properties = schema["properties"].as_object();
        if let Some(required) = schema["required"].as_array() {
            for r in required {
                let r = r.as_str().expect("required names are strings");
                if !obj.contains_key(r) {
                    errors.push(format!("{at}: the required field {r} is missing"));
                }
            }
            for k in obj.keys() {
                if !properties.is_some_and(|p| p.contains_key(k)) {
                    errors.push(format!("{at}: the field {k} is not documented"));
                }
            }
        }
        for (k, sub) in properties.into_iter().flatten() {
            if let Some(field) = obj.get(k) {
                check(api, sub, field, &format!("{at}.{k}"), errors);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(api, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Every key the example shows is in the answer and no other, with the same JSON
/// type, recursively (arrays by their first element).
fn same_shape(expected: &Value, actual: &Value, at: &str, errors: &mut Vec<String>) {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if kind(expected) != kind(actual) {
        errors.push(format!(
            "{at}: the example shows a {}, the daemon sent a {}",
            kind(expected),
            kind(actual)
        ));
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let ek: BTreeSet<&String> = e.keys().collect();
            let ak: BTreeSet<&String> = a.keys().collect();
            if ek != ak {
                errors.push(format!(
                    "{at}: the example shows the fields {ek:?}, the daemon sent {ak:?}"
                ));
            }
            for (k, ev) in e {
                if let Some(av) = a.get(k) {
                    same_shape(ev, av, &format!("{at}.{k}"), errors);
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e0), Some(a0)) = (e.first(), a.first()) {
                same_shape(e0, a0, &format!("{at}[0]"), errors);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// The live run: every curl of docs/api.md against a real daemon.
// ---------------------------------------------------------------------------------

/// Every header an `http` example shows is in the answer, with that value;
/// `context` is the answer as a failure may show it.
#[track_caller]
fn headers_as_shown(what: &str, expected: &Answer, answer: &Answer, context: &str) {
    for (k, v) in &expected.headers {
        assert_eq!(
            answer.headers.get(k),
            Some(v),
            "{what}: the header {k}: {context}"
        );
    }
}

/// A `latchkeyd` of a test, stopped on drop (SIGTERM, then SIGKILL), panics included.
/// Its stderr is a file, as an autostarted daemon's is, so `GET /v1/status` names
/// its `log_file` as the page's example does.
struct DaemonGuard {
    child: Child,
    log: PathBuf,
    socket: PathBuf,
}

impl DaemonGuard {
    fn start(world: &World) -> DaemonGuard {
        let log = world.home.path().join("latchkeyd-docs.log");
        let file = std::fs::File::create(&log).expect("the daemon's log can be made");
        let mut cmd = world
            .home
            .command(bin("latchkeyd"), Vec::<&str>::new())
            .into_command();
        cmd.stdout(Stdio::null()).stderr(file);
        let child = cmd.spawn().expect("latchkeyd can be spawned");
        let mut guard = DaemonGuard {
            child,
            log,
            socket: world.home.path().join("run/latchkeyd.sock"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if guard.socket.exists() && health_answers(&guard.socket) {
                return guard;
            }
            if let Ok(Some(status)) = guard.child.try_wait() {
                panic!("latchkeyd exited at start ({status}): {}", guard.logs());
            }
            assert!(
                Instant::now() < deadline,
                "latchkeyd did not answer in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's stderr so far.
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("(its log is unreadable: {e})"))
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let stopped =
                sent.is_ok_and(|s| s.success()) && self.wait_exit(Duration::from_secs(5)).is_some();
            if !stopped && let Err(e) = self.child.kill() {
                eprintln!("cannot kill latchkeyd: {e}");
            }
        }
        if let Err(e) = self.child.wait() {
            eprintln!("cannot reap latchkeyd: {e}");
        }
    }
}

/// One raw `GET /v1/health` over the socket, without curl: is the daemon serving?
fn health_answers(socket: &Path) -> bool {
    raw_get(socket, "/v1/health").is_some()
}

/// A raw `GET` over the socket, without curl (so not part of the page's walk):
/// the JSON body of a 200, else `None`.
fn raw_get(socket: &Path, path: &str) -> Option<Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: latchkeyd\r\nLatchkey-Protocol: 1\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    if !answer.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(answer.split_once("\r\n\r\n")?.1).ok()
}

/// An HTTP answer as `curl --include` printed it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn parse_answer(text: &str) -> Answer {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/"),
        "not an HTTP answer: {status_line:?}"
    );
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The event stream example, running in the background.
struct EventStream {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl EventStream {
    fn start(world: &World, ex: &md::Example) -> EventStream {
        let mut cmd = world
            .home
            .command("sh", ["-c", &format!("exec {} --include", ex.command)])
            .into_command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("curl can be spawned");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            if let Err(e) = stderr_pipe.read_to_string(&mut s) {
                s.push_str(&format!("\n(stderr unreadable: {e})"));
            }
            s
        });
        EventStream {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// The response head, once the daemon has answered (and so subscribed us).
    fn head(&mut self) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut head = String::new();
        loop {
            let line = self
                .next_line(deadline)
                .unwrap_or_else(|| panic!("no complete answer head within 5 s: {head:?}"));
            if line.is_empty() {
                return parse_answer(&head);
            }
            head.push_str(&line);
            head.push('\n');
        }
    }

    /// The next event's `(name, data)`, skipping keep-alive comments.
    fn next_event(&mut self, within: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + within;
        let mut name = String::new();
        loop {
            let line = self.next_line(deadline)?;
            if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                let data = serde_json::from_str(d.trim())
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {line:?}"));
                return Some((name, data));
            }
        }
    }

    /// Stops curl; everything it printed, for the leak check.
    fn stop(mut self) -> (String, String) {
        if let Err(e) = self.child.kill() {
            eprintln!("cannot stop the event stream's curl: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("cannot reap the event stream's curl: {e}");
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (self.seen.join("\n"), stderr)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Err(e) = self.child.kill() {
                eprintln!("cannot stop the event stream's curl: {e}");
            }
            if let Err(e) = self.child.wait() {
                eprintln!("cannot reap the event stream's curl: {e}");
            }
        }
    }
}

const TOKEN_PATH: &str = "/v1/profiles/{profile}/token";
const ID_TOKEN_PATH: &str = "/v1/profiles/{profile}/id-token";
const CLIENT_TOKENS_PATH: &str = "/v1/client-tokens";

#[test]
fn every_curl_example_of_the_api_page_runs_against_a_real_daemon() {
    let started = Instant::now();
    let api = openapi();
    let md_text = repo_file("docs/api.md");
    let examples = md::examples(&md_text);

    // Device logins are approved after one pending poll, at 1 s intervals.
    let world = World::new(FakeIdpConfig::default());
    // The page's API proxy examples: the upstream of `work` is its provider, whose
    // userinfo endpoint takes the session's access token.
    let config = world.home.config_file();
    let text = std::fs::read_to_string(&config).expect("a config");
    std::fs::write(
        &config,
        format!(
            "{text}\n[profiles.work.proxy]\nupstream = \"{}\"\n",
            world.idp.issuer()
        ),
    )
    .expect("the config is writable");
    world.login();
    let mut daemon = DaemonGuard::start(&world);
    let proxy = proxy_path();

    let mut env: Vec<(String, String)> = Vec::new();
    let mut events: Option<EventStream> = None;
    let mut login: Option<Value> = None;
    let mut joined = 0;
    let mut long_polled = false;
    // The client token the page mints: (id, the whole token), and whether the page
    // has revoked it since.
    let mut minted: Option<(String, String)> = None;
    let mut revoked = false;
    // The page's requests through the proxy, and those the upstream answered.
    let mut proxy_requests = 0;
    let mut upstream_answers = 0;
    let mut ran = 0;

    for ex in &examples {
        let (method, template) = ex.operation(&api);
        let op = api["paths"][&template][method.to_ascii_lowercase()].clone();
        let what = format!(
            "the example of docs/api.md line {} ({method} {template})",
            ex.line
        );

        if template == "/v1/events" {
            let stream = EventStream::start(&world, ex);
            // The daemon subscribes the stream when it answers; its head only
            // reaches curl with the first event, so ask the operator counters.
            let deadline = Instant::now() + Duration::from_secs(5);
            while raw_get(&daemon.socket, "/v1/status")
                .is_none_or(|s| s["counters"]["event_subscribers"] != 1)
            {
                assert!(Instant::now() < deadline, "{what}: not subscribed in 5 s");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                op["responses"]["200"]["content"]
                    .get("text/event-stream")
                    .is_some(),
                "{what}: openapi.yaml declares text/event-stream"
            );
            events = Some(stream);
            ran += 1;
            continue;
        }

        let mut cmd = world
            .home
            .command("sh", ["-c", &format!("exec {} --include", ex.command)]);
        for (k, v) in &env {
            cmd = cmd.env(k, v);
        }
        let userinfo_before = world.idp.counters().userinfo_ok;
        let run = cmd.run();
        let answer = parse_answer(&run.stdout);
        // Only the token endpoint's own success may carry a token.
        let holds_token =
            (template == TOKEN_PATH || template == ID_TOKEN_PATH) && answer.status == 200;
        world.capture(&what, &run, holds_token);
        // A mint's answer holds a client token's secret: kept out of messages too.
        let holds_secret = holds_token
            || (method == "POST" && template == CLIENT_TOKENS_PATH && answer.status == 201);
        let shown = |a: &Answer| {
            if holds_secret {
                format!("status {} (body withheld: it holds a token)", a.status)
            } else {
                format!("{a:?}")
            }
        };
        assert_eq!(run.code, 0, "{what}: curl failed: {}", run.stderr);
        ran += 1;

        // The protocol header, on every answer.
        assert_eq!(
            answer.headers.get("latchkey-protocol").map(String::as_str),
            Some("1"),
            "{what}: {}",
            shown(&answer)
        );

        // The status is documented, and the body fits its schema.
        let response = documented_response(&api, &op, answer.status).unwrap_or_else(|| {
            panic!(
                "{what}: status {} is not documented in openapi.yaml",
                answer.status
            )
        });
        // Whose answer it is: the upstream's through the proxy, else Latchkey's.
        let proxied = answer.headers.get(&PROXIED_HEADER.to_ascii_lowercase());
        if template == proxy {
            proxy_requests += 1;
            assert_eq!(
                ex.answer_kind, "http",
                "{what}: a proxy example shows its head, which says whose answer it is"
            );
            assert_eq!(
                parse_answer(&ex.answer)
                    .headers
                    .contains_key(&PROXIED_HEADER.to_ascii_lowercase()),
                proxied.is_some(),
                "{what}: the page and the daemon differ on whether {PROXIED_HEADER} is set: {}",
                shown(&answer)
            );
            assert!(
                proxied.is_some() || answer.status >= 400,
                "{what}: Latchkey's own answers on the proxy are errors: {}",
                shown(&answer)
            );
        }
        let body = if let Some(marker) = proxied {
            assert_eq!(
                template, proxy,
                "{what}: only the proxy's answers are marked as the upstream's"
            );
            assert_eq!(marker, "1", "{what}: {}", shown(&answer));
            assert!(
                response["headers"].get(PROXIED_HEADER).is_some(),
                "{what}: openapi.yaml does not say its {} may be the upstream's",
                answer.status
            );
            upstream_answers += 1;
            upstream_answer(&what, ex, &answer)
        } else if answer.status == 204 {
            // A 204 has no body: openapi.yaml declares none and the page shows the
            // status line and headers only.
            assert!(
                response.get("content").is_none(),
                "{what}: openapi.yaml declares a body for a 204"
            );
            assert!(
                answer.body.is_empty() && !answer.headers.contains_key("content-type"),
                "{what}: a 204 with a body: {}",
                shown(&answer)
            );
            assert_eq!(
                ex.answer_kind, "http",
                "{what}: a 204 is shown as an http block (status line and headers)"
            );
            let expected = parse_answer(&ex.answer);
            assert_eq!(expected.status, 204, "{what}: {}", shown(&answer));
            headers_as_shown(&what, &expected, &answer, &shown(&answer));
            assert!(
                expected.body.trim().is_empty(),
                "{what}: the page shows a body for a 204"
            );
            Value::Null
        } else {
            let content_type = answer
                .headers
                .get("content-type")
                .cloned()
                .unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "{what}: {}",
                shown(&answer)
            );
            let body: Value = serde_json::from_str(&answer.body).unwrap_or_else(|e| {
                panic!("{what}: the body is not JSON ({e}): {}", shown(&answer))
            });
            let schema = &response["content"]["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{what}: no JSON schema for {}",
                answer.status
            );
            let mut errors = Vec::new();
            check(&api, schema, &body, "body", &mut errors);
            assert!(
                errors.is_empty(),
                "{what} does not match openapi.yaml:\n{}\n{}",
                errors.join("\n"),
                shown(&answer)
            );

            // And it has the shape the page shows.
            let expected_body = match ex.answer_kind.as_str() {
                "json" => ex.answer.clone(),
                "http" => {
                    let expected = parse_answer(&ex.answer);
                    assert_eq!(expected.status, answer.status, "{what}: {}", shown(&answer));
                    headers_as_shown(&what, &expected, &answer, &shown(&answer));
                    expected.body
                }
                other => panic!("{what}: a {other} answer block cannot show a JSON body"),
            };
            if ex.answer_kind == "json" {
                assert!(
                    (200..300).contains(&answer.status),
                    "{what}: a json answer block shows a success: {}",
                    shown(&answer)
                );
            }
            let expected: Value = serde_json::from_str(&expected_body)
                .unwrap_or_else(|e| panic!("{what}: its answer block is not JSON: {e}"));
            let mut errors = Vec::new();
            same_shape(&expected, &body, "body", &mut errors);
            assert!(
                errors.is_empty(),
                "{what} differs from the page:\n{}\n{}",
                errors.join("\n"),
                shown(&answer)
            );
            body
        };

        // What the page says about particular endpoints.
        match (method.as_str(), template.as_str()) {
            ("POST", "/v1/profiles/{profile}/refresh") => {
                let stream = events
                    .as_mut()
                    .expect("the page subscribes to events before the refresh");
                let head = stream.head();
                assert_eq!(head.status, 200, "the event stream: {head:?}");
                assert_eq!(
                    head.headers.get("latchkey-protocol").map(String::as_str),
                    Some("1"),
                    "the event stream: {head:?}"
                );
                assert!(
                    head.headers
                        .get("content-type")
                        .is_some_and(|c| c.starts_with("text/event-stream")),
                    "the event stream: {head:?}"
                );
                let (name, data) = stream
                    .next_event(Duration::from_secs(5))
                    .expect("the refresh is announced on the event stream within 5 s");
                assert_eq!(name, "session");
                assert_eq!(data["profile"], "work");
                assert_eq!(data["change"], "refresh", "the first event: {data}");
                assert_eq!(data["generation"], body["generation"]);
                let example = md::event_data(&examples, "/v1/events", &api);
                let mut errors = Vec::new();
                same_shape(&example, &data, "event", &mut errors);
                check(
                    &api,
                    &api["components"]["schemas"]["SessionEvent"],
                    &data,
                    "event",
                    &mut errors,
                );
                assert!(errors.is_empty(), "the event: {}", errors.join("\n"));
            }
            ("POST", "/v1/profiles/{profile}/login") => {
                assert_eq!(body["state"], "pending", "{body}");
                match &login {
                    None => {
                        let id = body["id"].as_str().expect("a login id").to_string();
                        env.push(("LOGIN_ID".into(), id));
                        login = Some(body.clone());
                    }
                    Some(first) => {
                        assert_eq!(
                            body["id"], first["id"],
                            "a second login request joins the pending one"
                        );
                        assert_eq!(body["user_code"], first["user_code"]);
                        assert_eq!(body["flow"], first["flow"]);
                        joined += 1;
                    }
                }
            }
            ("GET", "/v1/logins/{id}") => {
                assert_eq!(body["state"], "logged_in", "{body}");
                long_polled = true;
            }
            ("GET", TOKEN_PATH) if answer.status == 401 => {
                assert_eq!(body["error"]["category"], "not_logged_in");
                if let Some(pending) = login.as_ref().filter(|_| !long_polled) {
                    let code = pending["user_code"].as_str().expect("a user code");
                    let hint = body["error"]["hint"].as_str().unwrap_or_default();
                    assert!(
                        hint.contains(code),
                        "a token request names the pending login: {hint}"
                    );
                }
            }
            ("POST", "/v1/shutdown") => assert_eq!(answer.status, 202),
            (_, t) if t == proxy && proxied.is_some() && answer.status == 200 => {
                // The curl sent no token; the upstream got the session's.
                if ex.command.contains("/userinfo") {
                    assert_eq!(
                        world.idp.counters().userinfo_ok,
                        userinfo_before + 1,
                        "{what}: the provider's userinfo accepted the session's token"
                    );
                }
                assert!(
                    !answer
                        .headers
                        .contains_key(&RETRIED_HEADER.to_ascii_lowercase()),
                    "{what}: a fresh token is not retried: {}",
                    shown(&answer)
                );
            }
            ("GET", "/v1/status") => {
                // Every proxy example of the page reaches the route and is
                // counted (Latchkey's own refusal of a path too); none is retried
                // or fails upstream.
                let c = &body["counters"];
                assert_eq!(c["proxy_requests"], proxy_requests, "{what}: {c}");
                assert_eq!(c["proxy_retries"], 0, "{what}: {c}");
                assert_eq!(c["proxy_upstream_errors"], 0, "{what}: {c}");
            }
            ("POST", CLIENT_TOKENS_PATH) => {
                assert_eq!(answer.status, 201, "{what}: {}", shown(&answer));
                assert!(minted.is_none(), "{what}: the page mints one client token");
                let id = body["id"].as_str().expect("an id").to_string();
                let token = body["token"].as_str().expect("a token").to_string();
                let secret = token
                    .strip_prefix(&format!("lk_{id}_"))
                    .unwrap_or_else(|| panic!("{what}: the token is not lk_<id>_<secret>"));
                assert_eq!(secret.len(), 43, "{what}: a 32-byte base64url secret");
                // What later examples of the page use, as LOGIN_ID above.
                env.push(("CLIENT_TOKEN_ID".into(), id.clone()));
                env.push(("CLIENT_TOKEN".into(), token.clone()));
                minted = Some((id, token));
            }
            ("GET", CLIENT_TOKENS_PATH) => {
                let (id, token) = minted.as_ref().expect("the page mints before it lists");
                let secret = &token[token.len() - 43..];
                assert!(
                    !answer.body.contains(secret),
                    "{what}: the list shows a secret"
                );
                let listed = body["tokens"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["id"] == id.as_str()));
                assert_eq!(
                    listed, !revoked,
                    "{what}: the minted token is listed until revoked"
                );
            }
            ("DELETE", "/v1/client-tokens/{id}") if answer.status == 204 => {
                assert!(
                    minted.is_some() && !revoked,
                    "{what}: revokes the minted token"
                );
                revoked = true;
            }
            _ => {}
        }
        // A request with the minted token is the token's: allowed while it
        // exists, refused with the bearer challenge once it is revoked.
        if let Some((_, token)) = &minted
            && ex.command.contains("Bearer $CLIENT_TOKEN")
        {
            assert!(
                !run.stdout.contains(token.as_str()),
                "{what}: an answer repeats the client token"
            );
            if revoked {
                assert_eq!(answer.status, 401, "{what}: {}", shown(&answer));
                assert_eq!(
                    answer.headers.get("www-authenticate").map(String::as_str),
                    Some("Bearer realm=\"latchkey\", error=\"invalid_token\""),
                    "{what}: {}",
                    shown(&answer)
                );
                assert_eq!(body["error"]["category"], "forbidden");
            } else {
                assert_ne!(answer.status, 401, "{what}: {}", shown(&answer));
            }
        }
    }
    assert_eq!(ran, examples.len());
    assert!(
        upstream_answers >= 1,
        "the page shows an upstream's answer through the proxy"
    );
    assert!(login.is_some() && joined >= 1, "the page logs in twice");
    assert!(long_polled, "the page long-polls the login");
    let (token_id, token) = minted.expect("the page mints a client token");
    assert!(revoked, "the page revokes the client token it minted");

    // The daemon stopped on the page's last request and removed its socket.
    let last = examples.last().expect("examples");
    assert_eq!(
        last.operation(&api).1,
        "/v1/shutdown",
        "the page ends with it"
    );
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("latchkeyd exits after POST /v1/shutdown");
    assert!(status.success(), "latchkeyd exited with {status}");
    assert!(!daemon.socket.exists(), "the socket is removed");
    let logs = daemon.logs();
    assert!(
        logs.contains("latchkey::audit"),
        "one audit line per request: {logs}"
    );
    // The requests made with the client token name it (id and name) in their
    // audit lines; its secret is in no log line.
    assert!(
        logs.lines().any(|l| l.contains("latchkey::audit")
            && l.contains("client_token")
            && l.contains(&token_id)
            && l.contains("client_token_name")
            && l.contains("editor-plugin")),
        "an audit line names the client token: {logs}"
    );
    assert!(
        !logs.contains(&token[token.len() - 43..]),
        "a client token's secret is in the daemon's log"
    );
    // A proxied request's audit line names the upstream's host and the path.
    assert!(
        logs.lines().any(|l| l.contains("latchkey::audit")
            && l.contains("upstream=\"127.0.0.1\"")
            && l.contains("path=")
            && l.contains("retried=false")),
        "an audit line names the proxy's upstream: {logs}"
    );
    world.capture(
        "latchkeyd (daemon log)",
        &run_of(String::new(), logs),
        false,
    );

    // The stream saw the whole story, then ended with the daemon.
    let mut stream = events.expect("the page shows the event stream");
    let mut changes = vec!["refresh".to_string()];
    while let Some((_, data)) = stream.next_event(Duration::from_secs(3)) {
        changes.push(data["change"].as_str().unwrap_or("?").to_string());
    }
    assert_eq!(
        changes,
        ["refresh", "logout", "login"],
        "session events in order"
    );
    let (out, err) = stream.stop();
    world.capture("curl of /v1/events", &run_of(out, err), false);

    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the walk-through took {:?}",
        started.elapsed()
    );
}

/// An upstream's answer through the proxy, against the page's `http` block: the
/// status and the headers shown, and the body (its JSON shape, or its text).
/// Its schema is the upstream's, not one of openapi.yaml's.
fn upstream_answer(what: &str, ex: &md::Example, answer: &Answer) -> Value {
    let expected = parse_answer(&ex.answer);
    let context = format!("{answer:?}");
    assert_eq!(expected.status, answer.status, "{what}: {context}");
    headers_as_shown(what, &expected, answer, &context);
    let is_json = answer
        .headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    if !is_json {
        assert_eq!(
            expected.body.trim(),
            answer.body.trim(),
            "{what}: the upstream's body"
        );
        return Value::Null;
    }
    let body: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("{what}: the upstream's body is not JSON ({e}): {context}"));
    let shown: Value = serde_json::from_str(&expected.body)
        .unwrap_or_else(|e| panic!("{what}: its answer block is not JSON: {e}"));
    let mut errors = Vec::new();
    same_shape(&shown, &body, "body", &mut errors);
    assert!(
        errors.is_empty(),
        "{what} differs from the page:\n{}\n{context}",
        errors.join("\n")
    );
    body
}

fn run_of(stdout: String, stderr: String) -> latchkey_tests::harness::Run {
    latchkey_tests::harness::Run {
        code: 0,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------------
// docs/api.md: the `sh` blocks and the answer block after each.
// ---------------------------------------------------------------------------------

mod md {
    use super::{Value, template_of};

    /// One curl example and the answer block that follows it.
    #[derive(Debug)]
    pub struct Example {
        /// 1-based line of the `sh` block's fence.
        pub line: usize,
        /// The command, continuation lines joined.
        pub command: String,
        /// `json`, `http` or `text`.
        pub answer_kind: String,
        pub answer: String,
    }

    impl Example {
        /// `(METHOD, path template)` of the documented operation it calls.
        pub fn operation(&self, api: &Value) -> (String, String) {
            let words = shell_words(&self.command);
            let mut method = None;
            let mut url = None;
            let mut has_body = false;
            let mut i = 0;
            while i < words.len() {
                match words[i].as_str() {
                    "-X" | "--request" => {
                        method = words.get(i + 1).cloned();
                        i += 1;
                    }
                    "-d" | "--data" | "--data-binary" | "--data-raw" | "--json" => {
                        has_body = true;
                        i += 1;
                    }
                    w if w.starts_with("http://latchkeyd/") => url = Some(w.to_string()),
                    _ => {}
                }
                i += 1;
            }
            let url = url.unwrap_or_else(|| {
                panic!(
                    "line {}: no http://latchkeyd/ URL in the example",
                    self.line
                )
            });
            assert!(
                self.command
                    .contains("--unix-socket \"$LATCHKEY_HOME/run/latchkeyd.sock\""),
                "line {}: every example uses the socket under $LATCHKEY_HOME",
                self.line
            );
            let path = url["http://latchkeyd".len()..]
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string();
            let method = method.unwrap_or_else(|| if has_body { "POST" } else { "GET" }.into());
            let template = template_of(api, &path)
                .unwrap_or_else(|| panic!("line {}: {path} is not in openapi.yaml", self.line));
            assert!(
                api["paths"][&template]
                    .get(method.to_ascii_lowercase())
                    .is_some(),
                "line {}: {method} {template} is not in openapi.yaml",
                self.line
            );
            (method, template)
        }
    }

    /// The `data:` JSON of the answer block of the example calling `path`.
    pub fn event_data(examples: &[Example], path: &str, api: &Value) -> Value {
        let ex = examples
            .iter()
            .find(|e| e.operation(api).1 == path)
            .expect("an event stream example");
        assert_eq!(ex.answer_kind, "text", "the event stream's answer is text");
        assert!(ex.answer.lines().any(|l| l == "event: session"));
        let data = ex
            .answer
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line");
        serde_json::from_str(data).expect("the data line is JSON")
    }

    /// Splits a command into words: spaces separate, quotes group, no expansion.
    fn shell_words(cmd: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut quote: Option<char> = None;
        for c in cmd.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    in_word = true;
                }
                (None, c) if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                (None, c) => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        assert!(quote.is_none(), "an unclosed quote in {cmd}");
        if in_word {
            words.push(word);
        }
        words
    }

    /// Every example, in page order. Panics on an `sh` block that is not exactly
    /// one curl, on an example without an answer block, and on a curl outside an
    /// `sh` block (it would escape this test).
    pub fn examples(text: &str) -> Vec<Example> {
        let mut blocks: Vec<(usize, String, String)> = Vec::new();
        let mut open: Option<(usize, String, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match (&mut open, line.strip_prefix("```")) {
                (None, Some(lang)) => open = Some((i + 1, lang.trim().to_string(), String::new())),
                (Some(_), Some("")) => blocks.extend(open.take()),
                (Some((_, _, body)), _) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
        assert!(open.is_none(), "docs/api.md has an unclosed code block");
        let mut out = Vec::new();
        for (n, (line, lang, body)) in blocks.iter().enumerate() {
            if lang != "sh" {
                assert!(
                    !body.lines().any(|l| l.trim_start().starts_with("curl ")),
                    "line {line}: a curl in a {lang:?} block is never run by the tests; use sh"
                );
                continue;
            }
            let joined = body.replace("\\\n", " ");
            let commands: Vec<&str> = joined
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            assert!(
                commands.len() == 1 && commands[0].starts_with("curl "),
                "line {line}: an sh block holds exactly one curl: {commands:?}"
            );
            let (_, kind, answer) = blocks
                .get(n + 1)
                .unwrap_or_else(|| panic!("line {line}: the example has no answer block after it"));
            assert!(
                ["json", "http", "text"].contains(&kind.as_str()),
                "line {line}: the block after an example shows its answer (json, http or text), not {kind:?}"
            );
            out.push(Example {
                line: *line,
                command: commands[0].to_string(),
                answer_kind: kind.clone(),
                answer: answer.clone(),
            });
        }
        assert!(!out.is_empty(), "docs/api.md has curl examples");
        out
    }
}

// ---------------------------------------------------------------------------------
// A strict reader for the YAML subset docs/openapi.yaml is written in.
// ---------------------------------------------------------------------------------

mod yaml {
    use super::{Map, Value};

    pub fn parse(text: &str) -> Value {
        let mut p = Parser {
            lines: text.lines().map(str::to_string).collect(),
            pos: 0,
        };
        p.skip_blank();
        assert!(p.pos < p.lines.len(), "an empty YAML document");
        assert_eq!(p.indent(), 0, "the document starts at column 0");
        let v = p.node(0);
        p.skip_blank();
        assert!(
            p.pos == p.lines.len(),
            "line {}: unexpected indentation",
            p.pos + 1
        );
        v
    }

    struct Parser {
        lines: Vec<String>,
        pos: usize,
    }

    impl Parser {
        fn skip_blank(&mut self) {
            while self.pos < self.lines.len() {
                let t = self.lines[self.pos].trim_start();
                if !(t.is_empty() || t.starts_with('#')) {
                    break;
                }
                self.pos += 1;
            }
        }

        fn indent(&self) -> usize {
            let line = &self.lines[self.pos];
            assert!(
                !line.starts_with('\t'),
                "line {}: tabs are not YAML indentation",
                self.pos + 1
            );
            line.len() - line.trim_start_matches(' ').len()
        }

        fn content(&self) -> &str {
            self.lines[self.pos].trim_start_matches(' ')
        }

        fn is_item(&self) -> bool {
            let c = self.content();
            c == "-" || c.starts_with("- ")
        }

        fn node(&mut self, indent: usize) -> Value {
            if self.is_item() {
                self.sequence(indent)
            } else {
                self.mapping(indent)
            }
        }

        fn mapping(&mut self, indent: usize) -> Value {
            let mut map = Map::new();
            loop {
                self.skip_blank();
                if self.pos >= self.lines.len() || self.indent() < indent {
                    break;
                }
                let line = self.pos + 1;
                assert_eq!(self.indent(), indent, "line {line}: unexpected indentation");
                if self.is_item() {
                    break;
                }
                let (key, rest) = split_key(self.content())
                    .unwrap_or_else(|| panic!("line {line}: expected `key: value`"));
                self.pos += 1;
                let value = self.value(&rest, indent, line);
                assert!(
                    map.insert(key.clone(), value).is_none(),
                    "line {line}: duplicate key {key}"
                );
            }
            Value::Object(map)
        }

        /// The value after `key:` on a line of indentation `indent`.
        fn value(&mut self, rest: &str, indent: usize, line: usize) -> Value {
            let rest = rest.trim();
            if rest.starts_with('|') || rest.starts_with('>') {
                return self.block_scalar(rest, indent, line);
            }
            if !rest.is_empty() {
                return scalar(rest, line);
            }
            self.skip_blank();
            if self.pos < self.lines.len() {
                let i = self.indent();
                if i > indent {
                    return self.node(i);
                }
                if i == indent && self.is_item() {
                    return self.sequence(i);
                }
            }
            Value::Null
        }

        fn sequence(&mut self, indent: usize) -> Value {
            let mut items = Vec::new();
            loop {
                self.skip_blank();
                if self.pos >= self.lines.len() || self.indent() != indent || !self.is_item() {
                    assert!(
                        self.pos >= self.lines.len() || self.indent() <= indent,
                        "line {}: unexpected indentation",
                        self.pos + 1
                    );
                    break;
                }
                let line = self.pos + 1;
                let after = self.content()[1..].to_string();
                let trimmed = after.trim_start();
                if trimmed.is_empty() {
                    self.pos += 1;
                    self.skip_blank();
                    let i = self.indent();
                    assert!(i > indent, "line {line}: an empty sequence item");
                    items.push(self.node(i));
                } else if split_key(trimmed).is_some() {
                    // `- key: value`: a mapping whose keys start at the column after
                    // the dash; reread this line with the dash turned into a space.
                    let item_indent = indent + 1 + (after.len() - trimmed.len());
                    self.lines[self.pos] = format!("{}{}", " ".repeat(item_indent), trimmed);
                    items.push(self.mapping(item_indent));
                } else if trimmed.starts_with('-') && trimmed[1..].starts_with(' ') {
                    panic!("line {line}: nested inline sequences are not supported");
                } else {
                    self.pos += 1;
                    items.push(scalar(trimmed, line));
                }
            }
            Value::Array(items)
        }

        /// `|`, `|-`, `>`, `>-` with the content more indented than `indent`.
        fn block_scalar(&mut self, header: &str, indent: usize, line: usize) -> Value {
            let folded = header.starts_with('>');
            let strip = match &header[1..] {
                "" => false,
                "-" => true,
                other => panic!("line {line}: unsupported block scalar header {other:?}"),
            };
            let mut raw: Vec<String> = Vec::new();
            while self.pos < self.lines.len() {
                let l = &self.lines[self.pos];
                let blank = l.trim().is_empty();
                let ind = l.len() - l.trim_start_matches(' ').len();
                if !blank && ind <= indent {
                    break;
                }
                raw.push(l.clone());
                self.pos += 1;
            }
            while raw.last().is_some_and(|l| l.trim().is_empty()) {
                raw.pop();
            }
            let Some(first) = raw.iter().find(|l| !l.trim().is_empty()) else {
                return Value::String(String::new());
            };
            let base = first.len() - first.trim_start_matches(' ').len();
            let lines: Vec<&str> = raw
                .iter()
                .map(|l| {
                    if l.trim().is_empty() {
                        ""
                    } else {
                        assert!(
                            l.len() - l.trim_start_matches(' ').len() >= base,
                            "line {line}: a block scalar line is less indented than its first"
                        );
                        &l[base..]
                    }
                })
                .collect();
            let mut text = String::new();
            if folded {
                let mut empties = 0;
                for (i, l) in lines.iter().enumerate() {
                    if l.is_empty() {
                        empties += 1;
                        continue;
                    }
                    assert!(
                        !l.starts_with(' '),
                        "line {line}: more-indented lines in a folded scalar are not supported"
                    );
                    if i > 0 {
                        if empties == 0 {
                            text.push(' ');
                        } else {
                            text.push_str(&"\n".repeat(empties));
                        }
                    }
                    empties = 0;
                    text.push_str(l);
                }
            } else {
                text = lines.join("\n");
            }
            if !strip {
                text.push('\n');
            }
            Value::String(text)
        }
    }

    /// `key: rest` or `key:`; the key plain or quoted.
    fn split_key(content: &str) -> Option<(String, String)> {
        if content.starts_with('\'') || content.starts_with('"') {
            let (key, len) = quoted(content)?;
            let rest = &content[len..];
            let rest = rest.strip_prefix(':')?;
            return (rest.is_empty() || rest.starts_with(' ')).then(|| (key, rest.to_string()));
        }
        if content.starts_with(['[', '{', '#', '&', '*', '!', '|', '>', '%', '@', '`']) {
            return None;
        }
        let (key, rest) = match content.find(": ") {
            Some(i) => (&content[..i], &content[i + 1..]),
            None => (content.strip_suffix(':')?, ""),
        };
        assert!(
            !key.contains(" #"),
            "a comment in a key is not supported: {key}"
        );
        Some((key.trim_end().to_string(), rest.to_string()))
    }

    /// A quoted scalar at the start of `s`: its value and how many bytes it took.
    fn quoted(s: &str) -> Option<(String, usize)> {
        let q = s.chars().next()?;
        let mut out = String::new();
        let mut chars = s.char_indices().skip(1).peekable();
        while let Some((i, c)) = chars.next() {
            match (q, c) {
                ('\'', '\'') => {
                    if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                        chars.next();
                        out.push('\'');
                    } else {
                        return Some((out, i + 1));
                    }
                }
                ('"', '"') => return Some((out, i + 1)),
                ('"', '\\') => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        '"' => '"',
                        '\\' => '\\',
                        '/' => '/',
                        other => panic!("unsupported escape \\{other}"),
                    });
                }
                (_, c) => out.push(c),
            }
        }
        None
    }

    fn scalar(s: &str, line: usize) -> Value {
        if s.starts_with('\'') || s.starts_with('"') {
            let (v, len) = quoted(s).unwrap_or_else(|| panic!("line {line}: unclosed quote"));
            assert!(
                s[len..].trim().is_empty(),
                "line {line}: text after a quoted scalar"
            );
            return Value::String(v);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .unwrap_or_else(|| panic!("line {line}: a flow sequence on one line only"));
            if inner.trim().is_empty() {
                return Value::Array(Vec::new());
            }
            return Value::Array(inner.split(',').map(|i| scalar(i.trim(), line)).collect());
        }
        if s == "{}" {
            return Value::Object(Map::new());
        }
        assert!(
            !s.starts_with(['{', '&', '*', '!', '%', '@', '`', '|', '>', '#']),
            "line {line}: unsupported YAML: {s}"
        );
        assert!(
            !s.contains(" #") && !s.contains(": "),
            "line {line}: quote this scalar: {s}"
        );
        assert!(
            !["yes", "no", "on", "off", "y", "n"].contains(&s.to_ascii_lowercase().as_str()),
            "line {line}: quote {s}: YAML 1.1 readers take it for a boolean"
        );
        match s {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" | "~" => Value::Null,
            _ => {
                if let Ok(i) = s.parse::<i64>() {
                    Value::from(i)
                } else if s.contains('.')
                    && s.chars().all(|c| c.is_ascii_digit() || c == '.')
                    && s.matches('.').count() == 1
                {
                    Value::from(
                        s.parse::<f64>()
                            .unwrap_or_else(|e| panic!("line {line}: {e}")),
                    )
                } else {
                    Value::String(s.to_string())
                }
            }
        }
    }

    #[test]
    fn reads_the_subset() {
        let v = parse(
            "a: 1\nb:\n  - x\n  - 'y: z'\n  - k: v\n    l: [m, 'null']\nc: |\n  one\n\n  two\nd: >-\n  folded\n  text\n\n  para\n'200':\n  e: \"q\\\"\"\nf:\n- 2\n- true\n",
        );
        assert_eq!(
            v,
            serde_json::json!({
                "a": 1,
                "b": ["x", "y: z", {"k": "v", "l": ["m", "null"]}],
                "c": "one\n\ntwo\n",
                "d": "folded text\npara",
                "200": {"e": "q\""},
                "f": [2, true],
            })
        );
    }
}
