//! Target `api_request`: the daemon's socket API, through the real axum router.
//!
//! One fixture per process: a temporary `LATCHKEY_HOME` whose profile `work` holds a
//! stored session (fast KDF) and whose profile `spare` has none, every provider URL
//! pointing at a closed loopback port (so refresh, login and revocation fail fast
//! and deterministically), a [`Daemon`] over it, and `routes::router`. The peer
//! value every handler demands comes from the real peer check on a socketpair.
//!
//! Input layout, readable like an HTTP request so seeds are easy to write:
//! `[flags]<target>\n<name>: <value>\n...\n\n<body>`. The low three bits of
//! `flags` pick the method; bit 3 repeats the body past the 64 KiB limit. Bytes the
//! URI grammar refuses are percent-encoded, so decoding of paths and queries
//! (profile names, `min_ttl`, `wait`) sees arbitrary bytes.
//!
//! With bit 4 of `flags` set the request is built from the proto's closed request
//! set instead, as the client builds it: the target line's first byte picks an
//! endpoint of `Endpoint::ALL` (which also gives the method), and the rest of the
//! line is its variable (a profile name or a login id). A valid profile name goes
//! through the proto's request type (`request::Token { .. }.path()`, its JSON body);
//! an invalid one is put into the template as it is, percent-encoded, so the
//! router's name check sees it. Numbers (`min_ttl`, `wait`, `revoke`, `flow`) come
//! from the body's first bytes, and `Latchkey-Protocol: 1` is sent unless a header
//! line sets it.
//!
//! Bits 5 and 6 of `flags` pick the `Authorization` header: none, the fixture's
//! client token `token:work`, its client token `session:work`, or `Bearer` with the
//! first line's bytes (an arbitrary presented token); a header line of the input
//! may set one too. Bit 7 sends the request as if it came through a delegate
//! listener: the delegate socket, or the TCP listener (127.0.0.1:7878) when the
//! input sets a `Host` line, so the Host and Origin checks see arbitrary values.
//!
//! Checked for every request: no panic, no hang; the `Latchkey-Protocol: 1` header;
//! every non-2xx answer (but HEAD's) is the JSON error document; every 2xx body is
//! JSON (the event stream is only checked for its status); the stored refresh token
//! never appears in an answer, and the access token only in a 2xx `GET …/token`
//! (unless the request itself carried them: an unknown login id is quoted back).
//! And the access rules: a delegate-listener request without an `Authorization`
//! header is never answered 2xx (401 with `WWW-Authenticate`, or 403 from the TCP
//! checks); an owner-only endpoint answers 2xx only to the owner (the main socket,
//! no `Authorization`); the `session:work` token never gets the access token.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::BodyExt;
use latchkey_daemon::Engine;
use latchkey_daemon::config::Config;
use latchkey_daemon::server::peer::{self, DelegatePeer, Peer, PeerVerified, Via};
use latchkey_daemon::server::{Daemon, routes};
use latchkey_proto::api::{self, Activation};
use latchkey_proto::delegation::Scope;
use latchkey_proto::error::ErrorDocument;
use latchkey_proto::paths::{EnvInputs, Paths};
use latchkey_proto::profile::ProfileName;
use latchkey_proto::request::{self as rq, Access, Endpoint};
use latchkey_proto::secret::Secret;
use latchkey_proto::vault::{SessionRecord, UserInfo};
use latchkey_proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use tower::ServiceExt;

const ACCESS_TOKEN: &str = "fuzz-access-token-4f1dc0de";
const REFRESH_TOKEN: &str = "fuzz-refresh-token-9c2ebeef";
/// Nothing listens on port 1: connections are refused at once.
const PROVIDER: &str = "http://127.0.0.1:1";
/// A request that takes longer than this (the route deadline is 40 s) is a hang.
const HANG: Duration = Duration::from_secs(45);

struct Fixture {
    _home: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    vault_file: PathBuf,
    vault_bytes: Vec<u8>,
    tokens_file: PathBuf,
    tokens_bytes: Vec<u8>,
    /// Client tokens minted at set-up: `token:work` and `session:work`.
    token_work: String,
    session_work: String,
    peer: PeerVerified,
    _pair: (tokio::net::UnixStream, tokio::net::UnixStream),
    app: axum::Router,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| Mutex::new(Fixture::new()))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("the fixture file can be written");
    f.write_all(bytes).expect("the fixture file can be written");
}

impl Fixture {
    fn new() -> Fixture {
        let home = tempfile::Builder::new()
            .prefix("latchkey-fuzz-")
            .tempdir()
            .expect("a temporary home");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (a, b) = runtime
            .block_on(async { tokio::net::UnixStream::pair() })
            .expect("a socketpair");
        let uid = a.peer_cred().expect("own credentials").uid();
        let peer = peer::verify_unix(&a, uid).expect("the peer check passes for our own uid");
        let env = EnvInputs {
            latchkey_home: Some(home.path().to_path_buf()),
            latchkey_socket: None,
            xdg_config_home: None,
            xdg_state_home: None,
            xdg_runtime_dir: None,
            home: None,
            temp_dir: std::env::temp_dir(),
            uid,
        };
        let paths = Paths::resolve(&env).expect("paths under the temporary home");
        let config_text = format!(
            "default_profile = \"work\"\n\n[vault]\nscrypt_log_n = 10\n\n\
             [profiles.work]\nissuer = \"{PROVIDER}\"\nclient_id = \"fuzz\"\n\
             token_endpoint = \"{PROVIDER}/token\"\n\
             authorization_endpoint = \"{PROVIDER}/authorize\"\n\
             device_authorization_endpoint = \"{PROVIDER}/device\"\n\
             revocation_endpoint = \"{PROVIDER}/revoke\"\n\
             userinfo_endpoint = \"{PROVIDER}/userinfo\"\n\n\
             [profiles.spare]\nissuer = \"{PROVIDER}\"\nclient_id = \"fuzz\"\n"
        );
        write_private(&paths.config_file, config_text.as_bytes());
        let config = Config::load(&paths.config_file).expect("the fixture config loads");
        let engine = Engine::new(paths.clone(), config);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs() as i64;
        let session = SessionRecord {
            issuer: PROVIDER.into(),
            client_id: "fuzz".into(),
            access_token: Secret::new(ACCESS_TOKEN),
            token_type: "Bearer".into(),
            expires_at: Some(now + 3600),
            issued_at: now,
            refresh_token: Some(Secret::new(REFRESH_TOKEN)),
            id_token: None,
            scopes: vec!["openid".into()],
            user: Some(UserInfo {
                sub: "fuzz-user".into(),
                email: Some("fuzz@example.invalid".into()),
                name: None,
            }),
            groups: vec!["fuzzers".into()],
            expired: false,
            logged_in_at: Some(now),
            token_endpoint: Some(format!("{PROVIDER}/token")),
            revocation_endpoint: Some(format!("{PROVIDER}/revoke")),
            userinfo_endpoint: Some(format!("{PROVIDER}/userinfo")),
            token_auth: None,
            revocation_auth: None,
        };
        let vault = engine.vault();
        let lock = vault
            .lock("work", Duration::from_secs(10))
            .expect("the fixture profile locks");
        vault
            .store(&lock, &session)
            .expect("the fixture session is stored");
        drop(lock);
        let vault_file = vault.path("work").expect("a vault path");
        let vault_bytes = std::fs::read(&vault_file).expect("the stored vault reads back");
        let scope = |s: &str| Scope::parse(s).expect("a valid scope");
        let token_work = engine
            .mint_client_token(None, vec![scope("token:work")], None)
            .expect("the fixture token is minted");
        let session_work = engine
            .mint_client_token(None, vec![scope("session:work")], None)
            .expect("the fixture token is minted");
        let tokens_file = engine.client_tokens().path().to_path_buf();
        let tokens_bytes = std::fs::read(&tokens_file).expect("the token file reads back");
        let daemon = Daemon::new(engine, paths.socket.clone(), Activation::SelfBound);
        let app = routes::router(daemon);
        Fixture {
            _home: home,
            runtime,
            vault_file,
            vault_bytes,
            tokens_file,
            tokens_bytes,
            token_work: token_work.token.expose().to_string(),
            session_work: session_work.token.expose().to_string(),
            peer,
            _pair: (a, b),
            app,
        }
    }

    /// Undoes what a request may have changed: a logout deletes the vault. A
    /// shutdown request only cancels the daemon's token, which ends event streams at
    /// once and changes no answer's status; a new daemon per shutdown would cost a
    /// key derivation and an HTTP client each time, so the daemon is kept.
    fn reset(&mut self) {
        if std::fs::read(&self.vault_file).ok().as_deref() != Some(&self.vault_bytes[..]) {
            write_private(&self.vault_file, &self.vault_bytes);
        }
        // Mints and revocations by owner inputs are undone too (an atomic rename, as
        // the engine writes, so its cache sees a new file).
        if std::fs::read(&self.tokens_file).ok().as_deref() != Some(&self.tokens_bytes[..]) {
            let tmp = self.tokens_file.with_extension("fuzz-tmp");
            write_private(&tmp, &self.tokens_bytes);
            std::fs::rename(&tmp, &self.tokens_file).expect("the token file is restored");
        }
    }
}

/// Percent-encodes what the URI grammar refuses, so any bytes make a request target.
fn target(bytes: &[u8]) -> Option<Uri> {
    let mut s = String::with_capacity(bytes.len() + 1);
    if bytes.first() != Some(&b'/') {
        s.push('/');
    }
    for &b in bytes {
        if b.is_ascii_graphic() && !b"\"#<>\\^`{|}".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.parse().ok()
}

/// Raw bytes as one path segment: all but `A-Z a-z 0-9 - . _ ~` percent-encoded,
/// so the router decodes exactly these bytes (dots stay, so `..` arrives as is).
fn segment(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Bit 4 of `flags`: build the request from the proto's set.
const TYPED: u8 = 16;

/// A typed input's method, target and body (see the module documentation).
fn typed(line: &[u8], body: &[u8]) -> Option<(Method, String, Vec<u8>)> {
    let (&pick, variable) = line.split_first()?;
    let endpoint = Endpoint::ALL[usize::from(pick) % Endpoint::ALL.len()];
    let number = {
        let mut n = [0u8; 8];
        let len = body.len().min(8);
        n[..len].copy_from_slice(&body[..len]);
        u64::from_le_bytes(n)
    };
    let first = body.first().copied().unwrap_or(0);
    let profile = std::str::from_utf8(variable)
        .ok()
        .and_then(|v| ProfileName::new(v).ok());
    fn built<R: rq::Request>(r: &R) -> (String, Vec<u8>) {
        let body = r
            .body()
            .map(|b| serde_json::to_vec(b).expect("the proto's bodies serialise"))
            .unwrap_or_default();
        (r.path(), body)
    }
    let (target, body) = match (endpoint, profile) {
        (Endpoint::Health, _) => built(&rq::Health),
        (Endpoint::Profiles, _) => built(&rq::Profiles),
        (Endpoint::Events, _) => built(&rq::Events),
        (Endpoint::Status, _) => built(&rq::Status),
        (Endpoint::Shutdown, _) => built(&rq::Shutdown),
        (Endpoint::ListClientTokens, _) => built(&rq::ListClientTokens),
        (Endpoint::MintClientToken, _) => {
            // The body's bytes as a mint request when they are one, else as they are.
            let target = endpoint.template().to_string();
            match serde_json::from_slice::<api::MintRequest>(body) {
                Ok(b) => built(&rq::MintClientToken { body: b }),
                Err(_) => (target, body.to_vec()),
            }
        }
        (Endpoint::RevokeClientToken, _) => match std::str::from_utf8(variable)
            .ok()
            .and_then(|v| latchkey_proto::delegation::TokenId::new(v).ok())
        {
            Some(id) => built(&rq::RevokeClientToken { id }),
            None => (
                endpoint.template().replace("{id}", &segment(variable)),
                Vec::new(),
            ),
        },
        (Endpoint::LoginStatus, _) => built(&rq::LoginStatus {
            id: String::from_utf8_lossy(variable).into_owned(),
            // At most 2 s: a long-poll must not slow the fuzzer down.
            wait: (first & 1 == 1).then_some(number % 3),
        }),
        (Endpoint::Token, Some(profile)) => built(&rq::Token {
            profile,
            min_ttl: number,
        }),
        (Endpoint::IdToken, Some(profile)) => built(&rq::IdToken {
            profile,
            min_ttl: number,
        }),
        (Endpoint::Session, Some(profile)) => built(&rq::Session { profile }),
        (Endpoint::Refresh, Some(profile)) => built(&rq::Refresh { profile }),
        (Endpoint::Logout, Some(profile)) => built(&rq::Logout {
            profile,
            body: api::LogoutRequest {
                revoke: first & 1 == 1,
            },
        }),
        (Endpoint::Login, Some(profile)) => built(&rq::Login {
            profile,
            body: api::LoginRequest {
                flow: if first & 1 == 1 {
                    api::LoginFlow::Browser
                } else {
                    api::LoginFlow::Device
                },
            },
        }),
        // The fuzz daemon's profiles have no upstream: the proxy answers from its
        // checks (access, path, configuration), never from the network.
        (Endpoint::Proxy, Some(profile)) => {
            let path = String::from_utf8_lossy(body);
            match latchkey_proto::proxy::target(&profile, &path) {
                Ok(target) => (target, Vec::new()),
                Err(_) => (
                    format!("/v1/proxy/{}/{}", profile.as_str(), segment(body)),
                    Vec::new(),
                ),
            }
        }
        (Endpoint::Proxy, None) => (format!("/v1/proxy/{}/x", segment(variable)), body.to_vec()),
        // A name that breaks the rules, into the template as the router sees it.
        (
            Endpoint::Token
            | Endpoint::IdToken
            | Endpoint::Session
            | Endpoint::Refresh
            | Endpoint::Logout
            | Endpoint::Login,
            None,
        ) => (
            endpoint.template().replace("{profile}", &segment(variable)),
            body.to_vec(),
        ),
    };
    let method = match endpoint.method() {
        rq::Method::Any => [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ][usize::from(first) % 5]
            .clone(),
        m => Method::from_bytes(m.as_str().as_bytes()).ok()?,
    };
    Some((method, target, body))
}

/// Bits 5 and 6 of `flags`: the `Authorization` header (see the module docs).
const AUTH_SHIFT: u8 = 5;
/// Bit 7 of `flags`: through a delegate listener.
const DELEGATE: u8 = 128;

fn request(data: &[u8], token_work: &str, session_work: &str) -> Option<Request<Body>> {
    let (&flags, rest) = data.split_first()?;
    let method = match flags & 7 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::PUT,
        3 => Method::DELETE,
        4 => Method::HEAD,
        5 => Method::OPTIONS,
        6 => Method::PATCH,
        _ => Method::from_bytes(b"FUZZ").ok()?,
    };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first_line = lines.next()?;
    let (method, uri, body) = if flags & TYPED != 0 {
        let (method, target, body) = typed(first_line, body)?;
        (method, target.parse::<Uri>().ok()?, body)
    } else {
        (method, target(first_line)?, body.to_vec())
    };
    let mut req = Request::builder().method(method).uri(uri);
    let mut protocol_set = false;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        // Framing is hyper's business on the real socket; here the body is whole.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        protocol_set |= name.as_str().eq_ignore_ascii_case(PROTOCOL_HEADER);
        req = req.header(name, value);
    }
    if flags & TYPED != 0 && !protocol_set {
        req = req.header(PROTOCOL_HEADER, PROTOCOL_VERSION);
    }
    let presented = match (flags >> AUTH_SHIFT) & 3 {
        0 => None,
        1 => Some(format!("Bearer {token_work}")),
        2 => Some(format!("Bearer {session_work}")),
        _ => Some(format!("Bearer {}", String::from_utf8_lossy(first_line))),
    };
    if let Some(value) = presented.and_then(|v| HeaderValue::from_str(&v).ok()) {
        req = req.header(header::AUTHORIZATION, value);
    }
    let mut body = body;
    if flags & 8 != 0 {
        let unit = if body.is_empty() {
            vec![b' ']
        } else {
            body.clone()
        };
        while body.len() <= routes::MAX_BODY {
            body.extend_from_slice(&unit);
        }
    }
    req.body(Body::from(body)).ok()
}

/// The bytes with `%XX` escapes decoded, as the router decodes paths and queries.
fn percent_decoded(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

pub fn run(data: &[u8]) {
    let mut fx = fixture().lock().unwrap_or_else(|p| p.into_inner());
    fx.reset();
    let Some(mut req) = request(data, &fx.token_work, &fx.session_work) else {
        return;
    };
    let delegated = data.first().is_some_and(|f| f & DELEGATE != 0);
    let peer = if delegated {
        let tcp = req.headers().contains_key(header::HOST);
        Peer::Delegate(DelegatePeer {
            via: if tcp {
                Via::Tcp(([127, 0, 0, 1], 7878).into())
            } else {
                Via::Socket
            },
            uid: None,
            pid: None,
            addr: None,
        })
    } else {
        Peer::Owner(fx.peer.clone())
    };
    req.extensions_mut().insert(peer);
    let authorization: Option<Vec<u8>> = {
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.as_bytes().to_vec()),
            // Several: the first counts; a marker that matches no fixture token.
            (Some(_), Some(_)) => Some(b"(several)".to_vec()),
        }
    };
    let owner = !delegated && authorization.is_none();
    let only_session =
        authorization.as_deref() == Some(format!("Bearer {}", fx.session_work).as_bytes());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let app = fx.app.clone();
    let response = fx
        .runtime
        .block_on(async { tokio::time::timeout(HANG, app.oneshot(req)).await })
        .unwrap_or_else(|_| panic!("{method} {path} hung"))
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    if delegated && authorization.is_none() {
        assert!(
            status == 401 || status == 403,
            "{method} {path} -> {status} through a delegate listener without a token"
        );
        if status == 401 {
            assert!(
                response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"Bearer realm=\"latchkey\"")),
                "{method} {path} -> 401 without the Bearer challenge"
            );
        }
    }
    let endpoint = Endpoint::find(method.as_str(), &path);
    if status.is_success() && endpoint.is_some_and(|e| e.access() == Access::Owner) {
        assert!(owner, "{method} {path} -> {status} for a client token");
    }
    assert_eq!(
        response
            .headers()
            .get(PROTOCOL_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some(PROTOCOL_VERSION.to_string().as_str()),
        "{method} {path} -> {status} lacks the protocol header"
    );
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    if content_type.starts_with(b"text/event-stream") {
        // An endless stream: its status is all there is to check.
        assert!(
            status.is_success(),
            "{method} {path} -> {status} as a stream"
        );
        return;
    }
    let body = fx
        .runtime
        .block_on(async { tokio::time::timeout(HANG, response.into_body().collect()).await })
        .unwrap_or_else(|_| panic!("{method} {path}: the body hung"))
        .expect("an in-memory body cannot fail")
        .to_bytes();
    if std::env::var_os("LATCHKEY_FUZZ_TRACE").is_some() {
        eprintln!(
            "{method} {path} -> {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A token the request itself carries may rightly be echoed (an unknown login id
    // is quoted back); only the daemon's own copy must not come out.
    let asked = percent_decoded(data);
    let sent = |token: &str| contains(data, token) || contains(&asked, token);
    assert!(
        sent(REFRESH_TOKEN) || !contains(&body, REFRESH_TOKEN),
        "{method} {path} -> {status} shows the refresh token"
    );
    if only_session && !sent(ACCESS_TOKEN) {
        assert!(
            !contains(&body, ACCESS_TOKEN),
            "{method} {path} -> {status} gave the access token to session:work"
        );
    }
    if !sent(ACCESS_TOKEN) && contains(&body, ACCESS_TOKEN) {
        assert!(
            status.is_success() && Endpoint::find(method.as_str(), &path) == Some(Endpoint::Token),
            "{method} {path} -> {status} shows the access token"
        );
    }
    if method == Method::HEAD {
        return;
    }
    if status.is_success() {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
            panic!("{method} {path} -> {status}: the body is not JSON ({e})");
        }
    } else {
        assert!(
            content_type.starts_with(b"application/json"),
            "{method} {path} -> {status}: content type {:?}",
            String::from_utf8_lossy(&content_type)
        );
        if let Err(e) = serde_json::from_slice::<ErrorDocument>(&body) {
            panic!(
                "{method} {path} -> {status}: not the error document ({e}): {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
