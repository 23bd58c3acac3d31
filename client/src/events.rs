//! Session events for Rust callers: [`Client::events`] subscribes to the daemon's
//! `GET /v1/events` and [`Events::next`] yields each `session` event (a login,
//! refresh, logout or expiry of any profile, by any process) as it happens.
//!
//! Events are the daemon's: every process's changes pass through it (or reach it
//! by the vault file's identity), so only it can tell. A client starts a missing
//! daemon for a subscription as for any call, but there is no fallback: without
//! a daemon there is nothing to subscribe to, and the error says so. A
//! subscription ends (`None`) when the daemon stops, or, for a client token, at
//! the first event after the token was revoked or expired (a daemon that was
//! killed ends it with a transport error first); events sent while nobody was
//! subscribed are not replayed.
//!
//! The stream is Server-Sent Events: blocks separated by a blank line, each with
//! `event:` and `data:` lines; comments (`:` lines, the daemon's greeting and
//! keep-alives) and events of other names are skipped, so a later daemon may add
//! kinds without breaking this reader.

use http_body_util::BodyExt;
use latchkey_proto::api::SessionEvent;
use latchkey_proto::error::Category;

use crate::transport::EventStream;
use crate::wire::Reach;
use crate::{Client, Error, Mode};

/// The largest event this reader buffers; the daemon's are about 100 bytes.
const MAX_EVENT: usize = 64 * 1024;

/// An open subscription to the daemon's session events.
#[derive(Debug)]
pub struct Events {
    stream: EventStream,
    /// Bytes received and not yet parsed (less than one whole event).
    pending: Vec<u8>,
    socket: String,
    /// The stream ended or failed: every later call answers `None`.
    ended: bool,
}

impl Events {
    /// The next session event, waiting for it as long as it takes; `None` once
    /// the daemon ended the stream. A stream that broke off (the daemon killed)
    /// is an error of category transport, and an event this reader cannot
    /// understand one of category internal; after either, `None`.
    pub async fn next(&mut self) -> Option<Result<SessionEvent, Error>> {
        if self.ended {
            return None;
        }
        let next = self.read().await;
        if !matches!(next, Some(Ok(_))) {
            self.ended = true;
        }
        next
    }

    async fn read(&mut self) -> Option<Result<SessionEvent, Error>> {
        loop {
            while let Some(block) = take_block(&mut self.pending) {
                match parse_block(&block) {
                    Block::Session(Ok(event)) => return Some(Ok(event)),
                    Block::Session(Err(why)) => {
                        return Some(Err(Error::Broken {
                            socket: self.socket.clone(),
                            why,
                        }));
                    }
                    Block::Other => {}
                }
            }
            if self.pending.len() > MAX_EVENT {
                return Some(Err(Error::Broken {
                    socket: self.socket.clone(),
                    why: format!("an event longer than {MAX_EVENT} bytes"),
                }));
            }
            match self.stream.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
                Err(e) => {
                    return Some(Err(Error::Daemon {
                        category: Category::Transport,
                        message: format!("the daemon's event stream broke off: {e}"),
                        hint: Some("subscribe again".into()),
                    }));
                }
            }
        }
    }
}

impl Client {
    /// Subscribes to the daemon's session events (see [`Events`]); a missing
    /// daemon is started first when this client may start one. Without a daemon
    /// the answer is an error: `usage` under `LATCHKEY_NO_DAEMON`, else
    /// `transport` naming the socket.
    ///
    /// # Examples
    ///
    /// ```
    /// # let home = tempfile::tempdir()?;
    /// # std::fs::write(home.path().join("config.toml"), "[profiles.work]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"cli\"\n\n[profiles.work.proxy]\nupstream = \"http://127.0.0.1:9/v2\"\n")?;
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # runtime.block_on(async {
    /// # let client = latchkey::Client::new(latchkey::Paths::in_home(home.path()), latchkey::Mode::DaemonFirst { autostart: false });
    /// # let work = latchkey::ProfileName::new("work")?;
    /// match client.events().await {
    ///     Ok(mut events) => {
    ///         while let Some(event) = events.next().await {
    ///             let event = event?;
    ///             // Re-read what you show: status, who, until when.
    ///             println!("{}: {:?} (generation {:?})", event.profile, event.change, event.generation);
    ///         }
    ///     }
    ///     // No daemon runs here (and this client may not start one).
    ///     Err(e) => eprintln!("cannot follow the sessions: {e}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn events(&self) -> Result<Events, Error> {
        if !self.delegated && self.mode == Mode::EmbeddedOnly {
            return Err(Error::usage(
                "session events come from the daemon, and this client never uses one (LATCHKEY_NO_DAEMON)",
                Some("unset LATCHKEY_NO_DAEMON".into()),
            ));
        }
        if !self.daemon_allowed() {
            // Found hung, stale or foreign before: not asked again by this client.
            return Err(Error::Daemon {
                category: Category::Transport,
                message: format!(
                    "the daemon at {} was found unusable earlier; this client does not ask it again",
                    self.paths.socket.display()
                ),
                hint: Some(
                    "run `latchkey daemon restart`, then subscribe with a new client".into(),
                ),
            });
        }
        let mut reach = self.transport.subscribe(self.deadline).await;
        if let Reach::Dead(reason) = &reach
            && self.started_for(reason).await
        {
            reach = self.transport.subscribe(self.deadline).await;
        }
        let stream = self.daemon_only(reach)?;
        Ok(Events {
            stream,
            pending: Vec::new(),
            socket: self.paths.socket.display().to_string(),
            ended: false,
        })
    }
}

/// Removes and returns the first whole block (up to a blank line) of `pending`,
/// without its terminator; `None` until one has arrived. Lines may end in `\n` or
/// `\r\n`.
fn take_block(pending: &mut Vec<u8>) -> Option<String> {
    let mut at = 0;
    let (end, skip) = loop {
        let nl = at + pending.get(at..)?.iter().position(|&b| b == b'\n')?;
        let rest = &pending[nl + 1..];
        if rest.first() == Some(&b'\n') {
            break (nl, 2);
        }
        if rest.starts_with(b"\r\n") {
            break (nl, 3);
        }
        at = nl + 1;
    };
    let block: Vec<u8> = pending.drain(..end + skip).take(end).collect();
    Some(String::from_utf8_lossy(&block).into_owned())
}

/// What one block of the stream is.
#[derive(Debug, PartialEq)]
enum Block {
    /// A `session` event, or why its data is not one.
    Session(Result<SessionEvent, String>),
    /// A comment, a keep-alive, or an event of another name.
    Other,
}

fn parse_block(block: &str) -> Block {
    let mut name = "message";
    let mut data: Option<String> = None;
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value,
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    match (name, data) {
        ("session", Some(data)) => Block::Session(
            serde_json::from_str(&data)
                .map_err(|e| format!("a session event that is not one: {e}")),
        ),
        _ => Block::Other,
    }
}

#[cfg(test)]
mod tests {
    use latchkey_proto::api::SessionChange;

    use super::*;

    #[test]
    fn blocks_are_cut_at_blank_lines_whatever_the_line_ends() {
        let mut p = b": subscribed\n\nevent: session\r\ndata: {}\r\n\r\nevent: sess".to_vec();
        assert_eq!(take_block(&mut p).as_deref(), Some(": subscribed"));
        assert_eq!(
            take_block(&mut p).as_deref(),
            Some("event: session\r\ndata: {}\r")
        );
        assert_eq!(take_block(&mut p), None);
        assert_eq!(p, b"event: sess");
        p.extend_from_slice(b"ion\n");
        assert_eq!(take_block(&mut p), None);
        p.extend_from_slice(b"\n");
        assert_eq!(take_block(&mut p).as_deref(), Some("event: session"));
        assert!(p.is_empty());
    }

    #[test]
    fn session_events_are_read_and_everything_else_skipped() {
        let data = r#"{"profile":"work","change":"refresh","generation":7}"#;
        assert_eq!(
            parse_block(&format!("event: session\ndata: {data}")),
            Block::Session(Ok(SessionEvent {
                profile: "work".into(),
                change: SessionChange::Refresh,
                generation: Some(7),
            }))
        );
        // No space after the colon is as good; an id line is ignored.
        assert!(matches!(
            parse_block(&format!("id: 3\nevent:session\ndata:{data}")),
            Block::Session(Ok(_))
        ));
        for other in [
            ": subscribed",
            "",
            &format!("event: telemetry\ndata: {data}"),
            &format!("data: {data}"),
            "event: session",
        ] {
            assert_eq!(parse_block(other), Block::Other, "{other:?}");
        }
        assert!(matches!(
            parse_block("event: session\ndata: {\"profile\":"),
            Block::Session(Err(_))
        ));
    }
}
