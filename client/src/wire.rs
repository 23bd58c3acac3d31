//! The socket protocol as the client speaks it, written once for both ways of
//! asking the daemon: the pooled hyper connections of `Transport::call` and the
//! one blocking std exchange of `transport::call_blocking` (`latchkey token`'s hot
//! path). Both build their request from the same [`Outgoing`] and [`FIELDS`], and
//! both hand the answer to [`check_head`] and [`decode`]; the blocking path reads
//! its bytes through [`parse`], which applies the same two.
//!
//! Every exchange ends as one [`Reach`], the input of the fallback table in
//! `lib.rs`:
//!
//! - `Answer`: the daemon's typed answer, success or error document. Final.
//! - `Dead`: no socket, nobody listening (ENOENT, ECONNREFUSED), or the daemon went
//!   away mid-exchange. The only outcome that starts a daemon.
//! - `Hung`: connected but no whole answer within the deadline (a stopped or
//!   wedged daemon).
//! - `Stale`: the answer carries another protocol version (or none).
//! - `Outdated`: a daemon of this protocol answered that it has no such endpoint:
//!   an older latchkeyd than this client.
//! - `Refused`: something listens, but not this user's daemon; never talked to.
//! - `Broken`: something of our protocol answered, but not in it: not HTTP, no
//!   Content-Length, too large, or a body that is not the endpoint's JSON (a 2xx
//!   that does not decode as the request's answer type, an error without the error
//!   document). Final too: the client reports it instead of starting a second
//!   daemon beside a running one or answering silently from the embedded engine.
//!
//! Nothing here does I/O; the module is pure so its rules are unit-tested byte by
//! byte.

use latchkey_proto::PROTOCOL_HEADER;
use latchkey_proto::error::{ErrorBody, ErrorDocument, NO_SUCH_ENDPOINT};
use latchkey_proto::request::Request;
use serde::de::DeserializeOwned;

/// The most an answer may weigh (head and body).
pub const MAX_REPLY: usize = 1024 * 1024;

/// [`latchkey_proto::PROTOCOL_VERSION`] as the header carries it.
pub const PROTOCOL: &str = "1";

/// The header fields of every request, besides framing (`Content-Length`) and
/// connection management, which each path adds its own way. The host is not used
/// by the daemon; HTTP/1.1 requires one.
pub const FIELDS: [(&str, &str); 2] = [("Host", "latchkeyd"), (PROTOCOL_HEADER, PROTOCOL)];

/// The protocol an answer's `Latchkey-Protocol` field names when it is not
/// ours (`none` when absent; shortened, since it is shown to people), or `None`
/// when it is ours.
pub fn other_protocol(field: Option<&[u8]>) -> Option<String> {
    let theirs = field.map(<[u8]>::trim_ascii);
    if theirs == Some(PROTOCOL.as_bytes()) {
        return None;
    }
    Some(theirs.map_or_else(
        || "none".to_string(),
        |v| String::from_utf8_lossy(v).chars().take(20).collect(),
    ))
}

/// How an exchange with the daemon ended. See the module documentation.
#[derive(Debug)]
pub enum Reach<T> {
    Answer(Result<T, ErrorBody>),
    Dead(String),
    Hung,
    Stale {
        theirs: String,
    },
    /// A daemon of this protocol that has no route for the request: an older
    /// latchkeyd, from before the request existed (nothing happened there).
    Outdated,
    /// Only Unix checks files and peers; on Windows the pipe's DACL does it.
    #[cfg_attr(not(unix), allow(dead_code))]
    Refused(String),
    Broken(String),
}

impl<T> Reach<T> {
    /// The same outcome with a success turned by `f`: every other row of the
    /// table passes through unchanged.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Reach<U>) -> Reach<U> {
        match self {
            Reach::Answer(Ok(answer)) => f(answer),
            Reach::Answer(Err(e)) => Reach::Answer(Err(e)),
            Reach::Dead(why) => Reach::Dead(why),
            Reach::Hung => Reach::Hung,
            Reach::Stale { theirs } => Reach::Stale { theirs },
            Reach::Outdated => Reach::Outdated,
            Reach::Refused(why) => Reach::Refused(why),
            Reach::Broken(why) => Reach::Broken(why),
        }
    }
}

/// A request of the proto's set, ready for either path.
#[derive(Debug)]
pub struct Outgoing {
    pub method: &'static str,
    /// Path and query, from [`Request::path`].
    pub target: String,
    /// The JSON body, sent with `Content-Type: application/json`.
    pub body: Option<Vec<u8>>,
}

impl Outgoing {
    /// Encodes `request`. Serialising the proto's bodies cannot fail in practice;
    /// if it ever did, that is our bug, reported like a broken exchange.
    pub fn new<R: Request>(request: &R) -> Result<Outgoing, String> {
        let body = match request.body() {
            Some(b) => {
                Some(serde_json::to_vec(b).map_err(|e| format!("cannot encode the request: {e}"))?)
            }
            None => None,
        };
        Ok(Outgoing {
            method: R::ENDPOINT.method().as_str(),
            target: request.path(),
            body,
        })
    }

    /// The whole head for a connection used for one exchange (the blocking path):
    /// request line, [`FIELDS`], the body's type and length, `Connection: close`.
    #[cfg_attr(not(unix), allow(dead_code, reason = "the blocking path is Unix only"))]
    pub fn head_once(&self, bearer: Option<&latchkey_proto::secret::Secret>) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in FIELDS {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(token) = bearer {
            head.push_str(&format!("Authorization: Bearer {}\r\n", token.expose()));
        }
        if let Some(body) = &self.body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("Connection: close\r\n\r\n");
        head
    }
}

/// What the rules look at in an answer's head.
#[derive(Debug, Clone, Copy)]
pub struct AnswerHead<'a> {
    pub status: u16,
    /// The `Latchkey-Protocol` field's value, if any.
    pub protocol: Option<&'a [u8]>,
    /// The `Content-Length` field's value, if any.
    pub content_length: Option<&'a [u8]>,
}

/// Checks an answer's head: `Stale` for another protocol (or none), `Broken` for a
/// missing, unreadable or oversized Content-Length; else the body's length.
pub fn check_head<T>(head: &AnswerHead<'_>) -> Result<usize, Reach<T>> {
    if let Some(theirs) = other_protocol(head.protocol) {
        return Err(Reach::Stale { theirs });
    }
    let Some(raw) = head.content_length else {
        // A 204 carries no body, and HTTP forbids it a Content-Length.
        if head.status == 204 {
            return Ok(0);
        }
        return Err(Reach::Broken("the answer has no Content-Length".into()));
    };
    let length = std::str::from_utf8(raw.trim_ascii())
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or_else(|| Reach::Broken("the answer's Content-Length is not a number".into()))?;
    if length > MAX_REPLY {
        return Err(Reach::Broken(format!(
            "the answer is larger than {MAX_REPLY} bytes"
        )));
    }
    Ok(length)
}

/// A whole body by the rules: a 2xx is the request's answer type, anything else
/// the error document; a body that is neither is `Broken`. The decode error is
/// named, never the body (it may hold a token).
pub fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Reach<T> {
    // 204 has no body; its answer type is `api::NoContent`, JSON `null`.
    let body = if status == 204 && body.is_empty() {
        b"null".as_slice()
    } else {
        body
    };
    if (200..300).contains(&status) {
        return match serde_json::from_slice(body) {
            Ok(answer) => Reach::Answer(Ok(answer)),
            Err(e) => Reach::Broken(format!(
                "the HTTP {status} answer is not the expected JSON: {e}"
            )),
        };
    }
    match serde_json::from_slice::<ErrorDocument>(body) {
        Ok(doc) if status == 404 && doc.error.message == NO_SUCH_ENDPOINT => Reach::Outdated,
        Ok(doc) => Reach::Answer(Err(doc.error)),
        Err(_) => Reach::Broken(format!(
            "the daemon answered HTTP {status} without an error document"
        )),
    }
}

/// Where reading a buffered answer stands.
#[cfg_attr(not(unix), allow(dead_code, reason = "the blocking path is Unix only"))]
#[derive(Debug)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Partial,
    Done(Reach<T>),
}

/// Reads an answer from the bytes received so far: an HTTP/1.1 head, then a
/// Content-Length body (what the daemon sends), both by the rules above.
#[cfg_attr(not(unix), allow(dead_code, reason = "the blocking path is Unix only"))]
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Parsed<T> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut fields);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(e) => return Parsed::Done(Reach::Broken(format!("not an HTTP answer: {e}"))),
    };
    let field = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let head = AnswerHead {
        status: response.code.unwrap_or(0),
        protocol: field(PROTOCOL_HEADER),
        content_length: field("content-length"),
    };
    let length = match check_head(&head) {
        Ok(n) => n,
        Err(reach) => return Parsed::Done(reach),
    };
    match bytes.get(head_len..head_len.saturating_add(length)) {
        Some(body) => Parsed::Done(decode(head.status, body)),
        None => Parsed::Partial,
    }
}

#[cfg(test)]
mod tests {
    use latchkey_proto::api;
    use latchkey_proto::error::Category;
    use latchkey_proto::profile::ProfileName;
    use latchkey_proto::request as rq;

    use super::*;

    fn answer(status: &str, fields: &[&str], body: &str) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status}\r\n");
        for f in fields {
            out.push_str(f);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.push_str(body);
        out.into_bytes()
    }

    /// A well-formed answer from the daemon, with its length.
    fn daemon(status: &str, body: &str) -> Vec<u8> {
        answer(
            status,
            &[
                "content-type: application/json",
                "latchkey-protocol: 1",
                &format!("content-length: {}", body.len()),
            ],
            body,
        )
    }

    fn done<T: DeserializeOwned>(bytes: &[u8]) -> Reach<T> {
        match parse(bytes) {
            Parsed::Done(r) => r,
            Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(bytes)),
        }
    }

    fn broken<T: std::fmt::Debug>(r: Reach<T>) -> String {
        match r {
            Reach::Broken(why) => why,
            other => panic!("expected Broken, got {other:?}"),
        }
    }

    const TOKEN: &str =
        r#"{"access_token":"at-1","token_type":"Bearer","expires_at":null,"generation":3}"#;

    #[test]
    fn a_token_answer_decodes() {
        let Reach::Answer(Ok(t)) = done::<api::Token>(&daemon("200 OK", TOKEN)) else {
            panic!("not a token");
        };
        assert_eq!((t.access_token.expose(), t.generation), ("at-1", 3));
    }

    #[test]
    fn an_error_document_is_a_final_answer() {
        let body = r#"{"error":{"category":"not_logged_in","message":"no","retryable":false}}"#;
        let Reach::Answer(Err(e)) = done::<api::Token>(&daemon("401 Unauthorized", body)) else {
            panic!("not an error answer");
        };
        assert_eq!(e.category, Category::NotLoggedIn);
    }

    #[test]
    fn every_prefix_of_an_answer_is_partial() {
        let whole = daemon("200 OK", TOKEN);
        for end in 0..whole.len() {
            assert!(
                matches!(parse::<api::Token>(&whole[..end]), Parsed::Partial),
                "{end}"
            );
        }
        assert!(matches!(
            parse::<api::Token>(&whole),
            Parsed::Done(Reach::Answer(Ok(_)))
        ));
    }

    #[test]
    fn another_protocol_or_none_is_stale() {
        let two = answer(
            "200 OK",
            &["latchkey-protocol: 2", "content-length: 2"],
            "{}",
        );
        assert!(matches!(done::<api::Health>(&two), Reach::Stale { theirs } if theirs == "2"));
        let none = answer("200 OK", &["content-length: 2"], "{}");
        assert!(matches!(done::<api::Health>(&none), Reach::Stale { theirs } if theirs == "none"));
    }

    #[test]
    fn malformed_answers_are_broken() {
        // Not HTTP at all.
        let why = broken(done::<api::Token>(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"));
        assert!(why.starts_with("not an HTTP answer"), "{why}");
        let why = broken(done::<api::Token>(b"\x16\x03\x01\x02\x00\x01\x00"));
        assert!(why.starts_with("not an HTTP answer"), "{why}");
        // No Content-Length (a chunked or close-delimited body).
        let chunked = answer(
            "200 OK",
            &["latchkey-protocol: 1", "transfer-encoding: chunked"],
            "2\r\n{}\r\n0\r\n\r\n",
        );
        assert!(broken(done::<api::Token>(&chunked)).contains("Content-Length"));
        let nonsense = answer("200 OK", &["latchkey-protocol: 1", "content-length: x"], "");
        assert!(broken(done::<api::Token>(&nonsense)).contains("Content-Length"));
        // Larger than any answer the daemon sends.
        let huge = answer(
            "200 OK",
            &["latchkey-protocol: 1", "content-length: 1048577"],
            "",
        );
        assert!(broken(done::<api::Token>(&huge)).contains("larger"));
        // A 2xx body that is not JSON, or JSON of another shape.
        assert!(broken(done::<api::Token>(&daemon("200 OK", "<html>"))).contains("HTTP 200"));
        assert!(
            broken(done::<api::Token>(&daemon("200 OK", r#"{"version":"1"}"#)))
                .contains("HTTP 200")
        );
        // An error status without the error document.
        let why = broken(done::<api::Token>(&daemon(
            "500 Internal Server Error",
            "oops",
        )));
        assert!(why.contains("HTTP 500"), "{why}");
        let why = broken(done::<api::Token>(&daemon(
            "404 Not Found",
            r#"{"error":"x"}"#,
        )));
        assert!(why.contains("error document"), "{why}");
    }

    #[test]
    fn a_broken_answer_never_quotes_the_body() {
        let secret = r#"{"access_token":"at-secret-1","generation":"not a number"}"#;
        let why = broken(done::<api::Token>(&daemon("200 OK", secret)));
        assert!(!why.contains("at-secret-1"), "{why}");
    }

    #[test]
    fn the_protocol_constant_is_the_proto_version() {
        assert_eq!(PROTOCOL, latchkey_proto::PROTOCOL_VERSION.to_string());
    }

    #[test]
    fn request_heads_come_from_the_proto_set() {
        let work = ProfileName::new("work").unwrap();
        let token = Outgoing::new(&rq::Token {
            profile: work.clone(),
            min_ttl: 60,
        })
        .unwrap();
        assert_eq!(
            token.head_once(None),
            "GET /v1/profiles/work/token?min_ttl=60 HTTP/1.1\r\nHost: latchkeyd\r\n\
             Latchkey-Protocol: 1\r\nConnection: close\r\n\r\n"
        );
        let logout = Outgoing::new(&rq::Logout {
            profile: work,
            body: api::LogoutRequest { revoke: true },
        })
        .unwrap();
        assert_eq!(logout.body.as_deref(), Some(&br#"{"revoke":true}"#[..]));
        assert_eq!(
            logout.head_once(None),
            "POST /v1/profiles/work/logout HTTP/1.1\r\nHost: latchkeyd\r\n\
             Latchkey-Protocol: 1\r\nContent-Type: application/json\r\n\
             Content-Length: 15\r\nConnection: close\r\n\r\n"
        );
    }
}
