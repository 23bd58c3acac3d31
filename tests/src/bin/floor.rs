//! The benchmark floor (docs/behaviour.md, "Performance targets"): the least a token
//! command can cost. `floor serve SOCKET` answers every HTTP request on a Unix socket
//! with a small fixed JSON body; `floor get SOCKET` is a minimal Rust program doing one
//! HTTP/1.1 request over that socket and printing the body. `latchkey token` with a
//! warm daemon is measured against `floor get`. `floor start` only starts and exits:
//! the cost of a process, which the benchmark subtracts to split a command into
//! start-up and work. The server's answer carries the protocol header, so `latchkey
//! token` pointed at it (`LATCHKEY_SOCKET`) takes it as a daemon's: the benchmark
//! splits the token request into the client's share and the daemon's that way.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

const BODY: &str = r#"{"access_token":"floor-token-0123456789","token_type":"Bearer","expires_at":null,"generation":1}"#;

fn serve(path: &str) -> std::io::Result<()> {
    // A leftover socket from an earlier run is ours to replace; none is fine too.
    match std::fs::remove_file(path) {
        Ok(()) | Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    // Answered inline, one connection at a time: the benchmark asks sequentially, and a
    // thread per connection would add its own start-up to the floor.
    for stream in listener.incoming() {
        let Ok(s) = stream else { continue };
        answer(s);
    }
    Ok(())
}

fn answer(mut s: UnixStream) {
    // A client that never finishes its request must not stall the ones after it.
    drop(s.set_read_timeout(Some(std::time::Duration::from_secs(1))));
    let mut reader = BufReader::new(match s.try_clone() {
        Ok(r) => r,
        Err(_) => return,
    });
    let mut line = String::new();
    // Read the head up to the blank line, then answer and close.
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlatchkey-protocol: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    // A client that hung up early only loses its own answer.
    drop(s.write_all(answer.as_bytes()));
}

fn get(path: &str) -> std::io::Result<()> {
    let mut s = UnixStream::connect(path)?;
    s.write_all(b"GET /v1/profiles/work/token HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let token = body.split('"').nth(3).unwrap_or("");
    println!("{token}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("serve"), Some(p)) => serve(p),
        (Some("get"), Some(p)) => get(p),
        (Some("start"), None) => Ok(()),
        _ => {
            eprintln!("usage: floor serve|get SOCKET, or floor start");
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
