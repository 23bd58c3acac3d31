//! The API proxy's benchmark (docs/behaviour.md, "Performance targets"): the same
//! small GET to a loopback upstream, sent directly and through `latchkeyd`'s
//! `/v1/proxy`, in the same run. Sequential requests alternate between the two, so
//! noise lands on both; then 16 concurrent clients, each on its own kept-alive
//! connection, for a fixed window, direct first and proxied after.
//!
//! The upstream runs on its own thread and runtime in this process: a hyper
//! server that answers every request with a small JSON body. Every answer is
//! checked (200, the body, and `Latchkey-Proxied` on the proxied ones).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

const BODY: &str = r#"{"id":1,"name":"bench"}"#;

/// What the proxy benchmark measured.
#[derive(Debug)]
pub struct ProxyFigures {
    pub direct_median: Duration,
    pub proxied_median: Duration,
    pub direct_per_sec: f64,
    pub proxied_per_sec: f64,
    pub sequential: usize,
    pub concurrent_requests: usize,
}

/// Starts the upstream; returns its port. It lives until the process ends.
pub fn start_upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("an address").port();
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(Bytes::from_static(
                                    BODY.as_bytes(),
                                )))
                                .expect("a response"),
                        )
                    });
                    // A connection the benchmark drops ends here; nothing to report.
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                        .ok();
                });
            }
        });
    });
    port
}

#[derive(Debug, Clone)]
enum Way {
    Direct(u16),
    Proxied(PathBuf),
}

impl Way {
    async fn connect(&self) -> SendRequest<Empty<Bytes>> {
        match self {
            Way::Direct(port) => {
                let s = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .expect("the upstream answers");
                s.set_nodelay(true).expect("nodelay");
                handshake(s).await
            }
            Way::Proxied(socket) => {
                let s = tokio::net::UnixStream::connect(socket)
                    .await
                    .expect("the daemon answers");
                handshake(s).await
            }
        }
    }

    fn request(&self) -> hyper::Request<Empty<Bytes>> {
        let (uri, host) = match self {
            Way::Direct(port) => ("/items/1".to_string(), format!("127.0.0.1:{port}")),
            Way::Proxied(_) => ("/v1/proxy/work/items/1".to_string(), "latchkeyd".into()),
        };
        hyper::Request::get(uri)
            .header("host", host)
            .header("latchkey-protocol", "1")
            .body(Empty::new())
            .expect("a request")
    }

    /// One request on `sender`, its answer checked.
    async fn ask(&self, sender: &mut SendRequest<Empty<Bytes>>) {
        sender.ready().await.expect("the connection stays up");
        let r = sender
            .send_request(self.request())
            .await
            .expect("an answer");
        assert_eq!(r.status(), 200, "{self:?}");
        if matches!(self, Way::Proxied(_)) {
            assert!(r.headers().contains_key("latchkey-proxied"), "proxied");
        }
        let body = r.into_body().collect().await.expect("a body").to_bytes();
        assert_eq!(body.as_ref(), BODY.as_bytes());
    }
}

async fn handshake<S>(io: S) -> SendRequest<Empty<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("a handshake");
    tokio::spawn(async move {
        // Ends when the benchmark drops the sender.
        conn.await.ok();
    });
    sender
}

/// Measures both ways against the upstream at `port`, the proxy through the
/// daemon at `socket` (whose profile `work` has the upstream configured).
pub fn measure(socket: &Path, port: u16, sequential: usize, window: Duration) -> ProxyFigures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let direct = Way::Direct(port);
    let proxied = Way::Proxied(socket.to_path_buf());
    runtime.block_on(async {
        let mut d = direct.connect().await;
        let mut p = proxied.connect().await;
        // Warm-up: connections, the daemon's upstream pool, the token.
        for _ in 0..20 {
            direct.ask(&mut d).await;
            proxied.ask(&mut p).await;
        }
        let (mut dt, mut pt) = (Vec::new(), Vec::new());
        for _ in 0..sequential {
            let t0 = Instant::now();
            direct.ask(&mut d).await;
            dt.push(t0.elapsed());
            let t0 = Instant::now();
            proxied.ask(&mut p).await;
            pt.push(t0.elapsed());
        }
        let direct_per_sec = throughput(&direct, window).await;
        let (proxied_per_sec, n) = {
            let before = Instant::now();
            let rate = throughput(&proxied, window).await;
            (rate, (rate * before.elapsed().as_secs_f64()) as usize)
        };
        ProxyFigures {
            direct_median: super::median(&dt),
            proxied_median: super::median(&pt),
            direct_per_sec,
            proxied_per_sec,
            sequential,
            concurrent_requests: n,
        }
    })
}

/// Requests per second with 16 clients, each on its own connection, for `window`.
async fn throughput(way: &Way, window: Duration) -> f64 {
    let stop = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let way = way.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = way.connect().await;
            let mut n = 0u64;
            while Instant::now() < stop {
                way.ask(&mut sender).await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await.expect("a client task");
    }
    total as f64 / window.as_secs_f64()
}
