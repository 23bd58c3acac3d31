//! A Kubernetes API server's front door for the kubectl tests, on loopback over
//! https (kubectl hands an exec plugin's token only to a TLS server): a
//! self-signed certificate for `127.0.0.1` made per server, `GET /api` answered
//! with an `APIVersions` document when the bearer token passes a given check (as
//! the API server's OIDC authenticator checks an ID token), `401` with a
//! Kubernetes `Status` otherwise. It counts requests and refusals, never keeps a
//! token.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A running server.
#[derive(Debug)]
pub struct KubeServer {
    pub port: u16,
    /// The certificate's PEM, for the kubeconfig's `certificate-authority-data`.
    ca_pem: String,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicUsize,
    refused: AtomicUsize,
    /// Requests that carried no bearer token at all.
    anonymous: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// Whether this machine has kubectl.
pub fn available() -> bool {
    client_minor().is_some()
}

/// kubectl's minor version (`32` of 1.32), `None` without kubectl.
fn client_minor() -> Option<u32> {
    let out = std::process::Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let minor = doc["clientVersion"]["minor"].as_str()?;
    minor.trim_end_matches('+').parse().ok()
}

impl KubeServer {
    /// Serves on a loopback port; a bearer token is good when `valid` says so.
    ///
    /// # Panics
    /// When no certificate can be made or no port bound: a broken test machine.
    pub fn start(valid: impl Fn(&str) -> bool + Send + Sync + 'static) -> KubeServer {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a self-signed certificate");
        let ca_pem = cert.cert.pem();
        let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a usable certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let counts = Arc::new(Counts::default());
        let valid = Arc::new(valid);
        let shared = Arc::clone(&counts);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (config, valid, counts) =
                    (Arc::clone(&config), Arc::clone(&valid), Arc::clone(&shared));
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, config, &*valid, &counts) {
                        counts
                            .errors
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(e.to_string());
                    }
                });
            }
        });
        KubeServer {
            port,
            ca_pem,
            counts,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Requests served, and how many of them were refused (401).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.counts.requests.load(Ordering::SeqCst),
            self.counts.refused.load(Ordering::SeqCst),
        )
    }

    /// Writes a kubeconfig at `dir/kubeconfig` whose one user runs `command`
    /// with `args` as its `exec` plugin (`apiVersion` v1 and `interactiveMode` as
    /// given; v1beta1 without it for kubectl before 1.22, such as Debian 12's),
    /// and returns its path.
    pub fn kubeconfig(
        &self,
        dir: &Path,
        command: &Path,
        args: &[&str],
        interactive_mode: &str,
    ) -> PathBuf {
        let args = args
            .iter()
            .map(|a| format!("      - {a}\n"))
            .collect::<String>();
        let (version, mode) = if client_minor().is_some_and(|m| m >= 22) {
            ("v1", format!("      interactiveMode: {interactive_mode}\n"))
        } else {
            ("v1beta1", String::new())
        };
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: loopback
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: latchkey
  user:
    exec:
      apiVersion: client.authentication.k8s.io/{version}
      command: {command}
      args:
{args}{mode}      provideClusterInfo: false
contexts:
- name: loopback
  context:
    cluster: loopback
    user: latchkey
current-context: loopback
",
            server = self.url(),
            ca = STANDARD.encode(&self.ca_pem),
            command = command.display(),
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("kubeconfig written");
        path
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    valid: &dyn Fn(&str) -> bool,
    counts: &Counts,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        match tls.read(&mut chunk) {
            // A client that hung up (kubectl probing, or giving up) is no error.
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    counts.requests.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&buf).into_owned();
    let token = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| v.trim().strip_prefix("Bearer ").map(str::to_string))?
    });
    let body = match token {
        Some(t) if valid(&t) => (
            "200 OK",
            r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#
                .to_string(),
        ),
        other => {
            if other.is_none() {
                counts.anonymous.fetch_add(1, Ordering::SeqCst);
            }
            counts.refused.fetch_add(1, Ordering::SeqCst);
            (
                "401 Unauthorized",
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
                    .to_string(),
            )
        }
    };
    let answer = format!(
        "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.0,
        body.1.len(),
        body.1
    );
    tls.write_all(answer.as_bytes())?;
    tls.flush()?;
    tls.conn.send_close_notify();
    // The peer may already be gone; the answer was written.
    tls.flush().ok();
    Ok(())
}
