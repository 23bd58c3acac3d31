//! A git server over HTTP on loopback for the credential-helper tests: Debian's
//! `git http-backend` (CGI) behind a small server that lets a request through
//! only with a token a given rule accepts (the provider's own check of its
//! tokens), as HTTP Basic (the token as the password) or Bearer. It records which
//! scheme each request used, never the token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

/// Where `git http-backend` lives on Debian.
const HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";

/// A running git server; it serves the bare repositories under its root.
#[derive(Debug)]
pub struct GitServer {
    pub port: u16,
    /// Per request: the auth scheme it carried (`basic`, `bearer`, `none`) and
    /// whether it was let through.
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

/// Whether this machine can run the git tests.
pub fn available() -> bool {
    Path::new(HTTP_BACKEND).exists()
        && Command::new("git")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Whether the `git` on PATH announces `capability[]=authtype` to its
/// credential helpers (git 2.46 and later), so the bearer variant can be tried.
pub fn supports_authtype() -> bool {
    let Ok(out) = Command::new("git").arg("--version").output() else {
        return false;
    };
    // "git version 2.47.3" (some builds add ".windows.1" or a vendor suffix).
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .nth(2)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 46)
}

impl GitServer {
    /// Serves `root` on a loopback port; a token is good when `valid` says so.
    pub fn start(root: &Path, valid: impl Fn(&str) -> bool + Send + Sync + 'static) -> GitServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let root = root.to_path_buf();
        let valid = Arc::new(valid);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (root, valid, record) = (root.clone(), Arc::clone(&valid), Arc::clone(&record));
                std::thread::spawn(move || serve(conn, &root, &*valid, &record));
            }
        });
        GitServer { port, seen }
    }

    /// `http://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The schemes of the requests so far, and whether each was let through.
    pub fn seen(&self) -> Vec<(String, bool)> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn serve(
    conn: TcpStream,
    root: &Path,
    valid: &dyn Fn(&str) -> bool,
    record: &Mutex<Vec<(String, bool)>>,
) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = conn;
    // One request per connection: the answer says `Connection: close`.
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = read_body(&mut reader, &header);
    let (scheme, token) = match header("authorization") {
        Some(v) if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(v[6..].trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let password = decoded.split_once(':').map(|(_, p)| p.to_string());
            ("basic", password)
        }
        Some(v) if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") => {
            ("bearer", Some(v[7..].trim().to_string()))
        }
        _ => ("none", None),
    };
    let allowed = token.as_deref().is_some_and(|t| !t.is_empty() && valid(t));
    record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((scheme.to_string(), allowed));
    if !allowed {
        // The test reads the git client's outcome; a vanished client is its business.
        writer
            .write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nWWW-Authenticate: Bearer realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .ok();
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new(HTTP_BACKEND);
    cgi.env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", "latchkey-test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(p) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", p);
    }
    let Ok(mut child) = cgi.spawn() else {
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).ok();
    }
    let Ok(out) = child.wait_with_output() else {
        return;
    };
    let text = out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, gap)) = split else {
        return;
    };
    let cgi_head = String::from_utf8_lossy(&text[..at]).into_owned();
    let mut status = "200 OK".to_string();
    let mut head = String::new();
    for l in cgi_head.lines() {
        match l.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                head.push_str(l.trim_end());
                head.push_str("\r\n");
            }
            None => {}
        }
    }
    let payload = &text[at + gap..];
    let answer = format!(
        "HTTP/1.1 {status}\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    writer.write_all(answer.as_bytes()).ok();
    writer.write_all(payload).ok();
}

/// A request body by `Content-Length` or chunked transfer coding.
fn read_body(
    reader: &mut BufReader<TcpStream>,
    header: &dyn Fn(&str) -> Option<String>,
) -> Vec<u8> {
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end).ok();
                break;
            }
            let mut chunk = vec![0; n];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok();
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        if reader.read_exact(&mut body).is_err() {
            body.clear();
        }
    }
    body
}

/// Makes `root/NAME` a bare repository with one commit on `main`.
pub fn bare_repo(root: &Path, name: &str) -> PathBuf {
    let bare = root.join(name);
    let seed = root.join(format!("{name}-seed"));
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", root)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::create_dir_all(&seed).expect("a seed folder");
    git(root, &["init", "--bare", "-b", "main", name]);
    git(&seed, &["init", "-b", "main"]);
    std::fs::write(seed.join("README"), "hello\n").expect("a file");
    git(&seed, &["add", "README"]);
    git(&seed, &["commit", "-m", "first"]);
    git(
        &seed,
        &["push", bare.to_str().expect("a UTF-8 path"), "main"],
    );
    bare
}
