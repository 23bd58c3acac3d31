//! `latchkey api`: one request to the profile's API through the proxy (the
//! daemon's, or the embedded engine's with the same rules), the response body on
//! stdout and the status in the exit code: 0 for 2xx, else the category of
//! `latchkey_proto::proxy::upstream_category` (docs/behaviour.md, "The API proxy").

use std::io::{Read, Write};

use bytes::Bytes;
use latchkey::{ApiRequest, Error};
use serde_json::json;

use super::Ctx;
use crate::cli::ApiArgs;
use crate::render::Output;

pub async fn run(ctx: &Ctx, json: bool, args: ApiArgs) -> Result<Output, Error> {
    let profile = ctx.profile_name()?;
    let body = match (&args.data, &args.input) {
        (Some(d), _) => Bytes::from(d.clone().into_bytes()),
        (None, Some(path)) => Bytes::from(read_input(path)?),
        (None, None) => Bytes::new(),
    };
    let method = args
        .method
        .clone()
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.to_string())
        .to_ascii_uppercase();
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(Error::usage(
                format!("the header {h:?} is not 'Name: value'"),
                None,
            ));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let response = ctx
        .client
        .send(
            &profile,
            ApiRequest {
                method,
                path: args.path.clone(),
                headers,
                body,
            },
        )
        .await?;
    let exit = response
        .category()
        .map_or(0, |c| u8::try_from(c.exit_code()).unwrap_or(1));
    if json {
        return Ok(Output {
            exit,
            text: String::new(),
            json: json!({
                "profile": profile,
                "status": response.status,
                "retried": response.retried,
                "headers": response.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "body": String::from_utf8_lossy(&response.body),
            }),
        });
    }
    let mut out = Vec::new();
    if args.include {
        out.extend_from_slice(format!("HTTP {}\r\n", response.status).as_bytes());
        for (n, v) in &response.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&response.body);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(Error::Output(e)),
    }
    if exit != 0 {
        upstream_failed(response.status, &profile);
    }
    Ok(Output {
        exit,
        text: String::new(),
        json: serde_json::Value::Null,
    })
}

/// One line on stderr for a non-2xx answer (the body went to stdout).
#[allow(
    clippy::print_stderr,
    reason = "the status of a failed call belongs on stderr"
)]
fn upstream_failed(status: u16, profile: &str) {
    eprintln!("error: the API answered HTTP {status}");
    if status == 401 {
        eprintln!(
            "hint: the token was refused even after a refresh; run `latchkey login --profile {profile}`"
        );
    }
}

fn read_input(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf))
    };
    read.map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display()), None))?;
    Ok(buf)
}
