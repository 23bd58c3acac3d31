//! Test support for the API proxy (docs/behaviour.md, "The API proxy"): a raw
//! HTTP exchange over a Unix socket that keeps the whole answer (head and
//! de-chunked body), a loopback server that records what reaches it (for hosts
//! that must never see a token), and a resource server that checks bearer tokens
//! with a given rule (the real provider's introspection, in the interop tier).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sets (or replaces) `[profiles.work.proxy]` in the config file at `config` to
/// the TOML lines `table`; a running daemon reads it on its next request.
pub fn set_work_proxy(config: &Path, table: &str) {
    let text = std::fs::read_to_string(config).expect("a config");
    let base = text
        .split("\n[profiles.work.proxy]")
        .next()
        .unwrap_or(&text)
        .to_string();
    std::fs::write(config, format!("{base}\n[profiles.work.proxy]\n{table}\n"))
        .expect("config written");
}

/// An answer: status, lower-cased head, body (de-chunked), and the raw bytes as
/// text for the leak check.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
    pub raw: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Whether the head has this exact (lower-cased) header line.
    pub fn has(&self, header_line: &str) -> bool {
        self.head.lines().any(|l| l.trim() == header_line)
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One request over the Unix socket `socket` with `Connection: close`, the
/// protocol header, extra header lines (each ending in `\r\n`) and a body.
pub fn proxy_request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Answer {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: latchkeyd\r\nLatchkey-Protocol: 1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("the socket answers");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(&request).expect("sent");
    let mut out = Vec::new();
    // A reset after the answer still leaves it.
    if let Err(e) = s.read_to_end(&mut out) {
        assert!(!out.is_empty(), "no answer: {e}");
    }
    let raw = String::from_utf8_lossy(&out).into_owned();
    let status = raw
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let (head, payload) = raw.split_once("\r\n\r\n").expect("a head");
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    Answer {
        status,
        head,
        body,
        raw,
    }
}

/// A loopback HTTP server that records every request head it gets and answers
/// each with the same response (200 `{}` unless told otherwise).
#[derive(Debug)]
pub struct Recorder {
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

/// What [`Recorder::start`] answers.
const OK_EMPTY: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

impl Recorder {
    /// Answers 200 `{}`.
    pub fn start() -> Recorder {
        Recorder::answering(OK_EMPTY.to_string())
    }

    /// Answers every request with `response`, a whole HTTP/1.1 response that
    /// closes the connection.
    pub fn answering(response: String) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                record
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(String::from_utf8_lossy(&buf).into_owned());
                // The test reads what was recorded, not whether this answer arrived.
                conn.write_all(response.as_bytes()).ok();
            }
        });
        Recorder { port, seen }
    }

    /// Every request head received so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A resource server on loopback, as an API in front of a provider would be: it
/// reads each request whole (head and `Content-Length` body, any size), asks
/// `valid` about its bearer token, and answers 200 `{"ok":true,"bytes":N}` or 401
/// with `WWW-Authenticate: Bearer error="invalid_token"`.
#[derive(Debug)]
pub struct ResourceServer {
    pub port: u16,
}

impl ResourceServer {
    pub fn start(valid: impl Fn(&str) -> bool + Send + Sync + 'static) -> ResourceServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let valid = Arc::new(valid);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let valid = Arc::clone(&valid);
                std::thread::spawn(move || serve_one(conn, &*valid));
            }
        });
        ResourceServer { port }
    }
}

fn serve_one(mut conn: std::net::TcpStream, valid: &dyn Fn(&str) -> bool) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let field = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let length: usize = field("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let token = field("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        .unwrap_or_default();
    let answer = if !token.is_empty() && valid(&token) {
        let body = format!("{{\"ok\":true,\"bytes\":{length}}}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    // The test reads the proxy's answer; a vanished peer is its business.
    conn.write_all(answer.as_bytes()).ok();
}
