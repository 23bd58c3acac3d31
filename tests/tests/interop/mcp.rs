//! `latchkey mcp` driven by a real MCP host: the official TypeScript SDK's client
//! (`interop/mcp-client.mjs`) starts it over stdio with a client token, lists its
//! tools (each input schema compiled by Ajv) and calls them, against oidc-provider's
//! userinfo endpoint as the profile's API. The whole stdio transcript, both ways,
//! and the server's stderr join the leak check, with the client token among the
//! secrets.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use latchkey_tests::harness::bin;
use latchkey_tests::oidc_provider::{CLIENT_ID, ProviderOptions, interop_dir};
use serde_json::{Value, json};

use crate::world::Interop;

/// The SDK's client running `latchkey mcp`, fed one tool call per line.
struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    transcript: std::path::PathBuf,
}

impl Host {
    /// Starts the host with `latchkey mcp` under `token`; returns it with the
    /// tools it listed.
    fn start(world: &Interop, token: &str) -> (Host, Vec<Value>) {
        let transcript = world.home.path().join("mcp-transcript.jsonl");
        let server_env = json!({
            "LATCHKEY_HOME": world.home.path(),
            "LATCHKEY_CLIENT_TOKEN": token,
        });
        let mut child = world
            .home
            .command(
                "node",
                [
                    interop_dir().join("mcp-client.mjs").as_os_str(),
                    transcript.as_os_str(),
                    bin("latchkey").as_os_str(),
                    "mcp".as_ref(),
                ],
            )
            .env("MCP_SERVER_ENV", server_env.to_string())
            .into_command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node can be spawned");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut host = Host {
            stdin: child.stdin.take(),
            child,
            lines,
            transcript,
        };
        let first = host.next();
        assert_eq!(first["kind"], "initialized", "{first}");
        assert_eq!(first["server"]["name"], "latchkey", "{first}");
        let mut tools = Vec::new();
        loop {
            let line = host.next();
            match line["kind"].as_str() {
                Some("tool") => tools.push(line),
                Some("tools_listed") => break,
                _ => panic!("while listing tools: {line}"),
            }
        }
        (host, tools)
    }

    fn next(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(90))
            .expect("the MCP host answers within 90 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Calls `tool`; returns whether it is an error result and its JSON text.
    fn call(&mut self, tool: &str, arguments: Value) -> (bool, Value) {
        let stdin = self.stdin.as_mut().expect("the host is open");
        writeln!(stdin, "{}", json!({"name": tool, "arguments": arguments}))
            .expect("the host reads its stdin");
        let line = self.next();
        assert_eq!(line["kind"], "result", "{tool} {arguments}: {line}");
        let text = line["text"][0].as_str().expect("one text block");
        let doc = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (line["is_error"] == true, doc)
    }

    /// Closes the session (the host ends the server) and returns the host's last
    /// line and the transcript.
    fn close(mut self) -> (Value, String) {
        drop(self.stdin.take());
        let closed = self.next();
        let status = self.child.wait().expect("the host ends");
        assert!(status.success(), "the host failed: {closed}");
        let transcript = std::fs::read_to_string(&self.transcript).expect("the transcript");
        (closed, transcript)
    }
}

/// A tool error's category and message.
fn error_of(doc: &Value) -> (&str, &str) {
    (
        doc["error"]["category"].as_str().unwrap_or_default(),
        doc["error"]["message"].as_str().unwrap_or_default(),
    )
}

#[test]
fn an_agent_calls_the_api_through_latchkey_and_never_sees_a_token() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    let issuer = world.idp.issuer().to_string();
    world
        .latchkey([
            "profile",
            "add",
            "other",
            "--issuer",
            &issuer,
            "--client-id",
            CLIENT_ID,
        ])
        .run()
        .ok();
    let config = world.home.config_file();
    let text = std::fs::read_to_string(&config).expect("the config");
    std::fs::write(
        &config,
        format!(
            "{text}\n[profiles.work.proxy]\nupstream = \"{issuer}\"\nallow = [\"GET /me\"]\n\n[profiles.other.proxy]\nupstream = \"{issuer}\"\n"
        ),
    )
    .expect("the config is written");
    world.start_daemon();
    world.device_login().0.ok();

    // Without a client token the server does not start: the owner's session is
    // never handed to an agent.
    let refused = world.latchkey(["mcp"]).run();
    refused.code(2);
    assert!(refused.stdout.is_empty(), "{refused:#?}");
    assert!(
        refused.stderr.contains("latchkey client-token mint"),
        "{refused:#?}"
    );

    // Minted outside the captured outputs: its stdout is the one place the
    // client token may appear.
    let mint = world
        .home
        .latchkey([
            "client-token",
            "mint",
            "--name",
            "agent",
            "--scope",
            "proxy:work",
            "--scope",
            "session:work",
        ])
        .run();
    mint.ok();
    let client_token = mint.stdout.trim().to_string();
    // Every output, the daemon's log and the provider's are checked for it too.
    world.also_secret(&client_token);
    let (mut host, tools) = Host::start(&world, &client_token);

    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["http_request", "list_profiles", "session_status"]);
    for tool in &tools {
        assert_eq!(tool["schema_ok"], true, "{tool}");
        assert_eq!(
            tool["input_schema"]["additionalProperties"], false,
            "every input is exact: {tool}"
        );
    }
    let http = &tools
        .iter()
        .find(|t| t["name"] == "http_request")
        .expect("http_request")["input_schema"];
    let mut required: Vec<&str> = http["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["method", "path", "profile"], "{http}");

    let (is_error, doc) = host.call("list_profiles", json!({}));
    assert!(!is_error, "{doc}");
    assert_eq!(
        doc["profiles"],
        json!([{
            "name": "work",
            "logged_in": true,
            "expires_at": doc["profiles"][0]["expires_at"],
            "upstream": issuer,
        }]),
        "only the profiles of the token's session: scopes"
    );

    let (is_error, doc) = host.call("session_status", json!({"profile": "work"}));
    assert!(!is_error, "{doc}");
    assert_eq!(doc["logged_in"], true, "{doc}");
    assert!(
        doc["expires"]
            .as_str()
            .unwrap_or_default()
            .starts_with("in "),
        "{doc}"
    );

    let me = json!({"profile": "work", "method": "GET", "path": "/me"});
    let (is_error, doc) = host.call("http_request", me.clone());
    assert!(!is_error, "{doc}");
    assert_eq!(doc["status"], 200, "{doc}");
    assert_eq!(doc["retried"], false, "{doc}");
    let user: Value =
        serde_json::from_str(doc["body"].as_str().expect("a text body")).expect("JSON");
    assert_eq!(user["sub"], world.idp.login.as_str(), "{user}");

    // The provider drops the access token; the proxy renews it and the call
    // still succeeds.
    let owner = world.latchkey(["token"]).run();
    owner.ok();
    world.idp.destroy_access_token(owner.stdout.trim());
    let (is_error, doc) = host.call("http_request", me.clone());
    assert!(!is_error, "{doc}");
    assert_eq!(
        (doc["status"].as_u64(), doc["retried"].as_bool()),
        (Some(200), Some(true)),
        "{doc}"
    );

    // A profile outside the token's scopes.
    let (is_error, doc) = host.call(
        "http_request",
        json!({"profile": "other", "method": "GET", "path": "/me"}),
    );
    assert!(is_error, "{doc}");
    let (category, message) = error_of(&doc);
    assert_eq!(category, "forbidden", "{doc}");
    assert!(
        message.contains("proxy:other"),
        "names the missing scope: {doc}"
    );

    // Outside the allow list: refused before anything leaves the machine.
    let (is_error, doc) = host.call(
        "http_request",
        json!({"profile": "work", "method": "GET", "path": "/admin"}),
    );
    assert!(is_error, "{doc}");
    let (category, message) = error_of(&doc);
    assert_eq!(category, "forbidden", "{doc}");
    assert!(message.contains("allow list"), "{doc}");
    let (is_error, doc) = host.call(
        "http_request",
        json!({"profile": "work", "method": "POST", "path": "/me", "body": "{}"}),
    );
    assert!(is_error && error_of(&doc).0 == "forbidden", "{doc}");
    let paths = world.idp.counters()["paths"].clone();
    assert!(
        paths.get("/admin").is_none(),
        "the upstream saw /admin: {paths}"
    );

    // A credential header from the agent is refused.
    for header in ["Authorization", "cookie", "Proxy-Authorization"] {
        let mut call = me.clone();
        call["headers"] = json!({ header: "Bearer not-a-token-of-ours" });
        let (is_error, doc) = host.call("http_request", call);
        assert!(is_error, "{header}: {doc}");
        assert_eq!(error_of(&doc).0, "usage", "{header}: {doc}");
    }
    // Input outside the schema is a tool error too.
    let mut extra = me.clone();
    extra["token"] = json!("x");
    let (is_error, doc) = host.call("http_request", extra);
    assert!(is_error, "an unknown field is refused: {doc}");
    assert_eq!(error_of(&doc).0, "usage", "{doc}");

    // Not logged in: the error carries the command a person runs.
    world.latchkey(["logout"]).run().ok();
    let (is_error, doc) = host.call("http_request", me);
    assert!(is_error, "{doc}");
    assert_eq!(error_of(&doc).0, "not_logged_in", "{doc}");
    assert!(
        doc["error"]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("latchkey login --profile work"),
        "{doc}"
    );

    let (closed, transcript) = host.close();
    assert_eq!(
        closed["exit"]["code"], 0,
        "the server ends when the host closes: {closed}"
    );
    assert!(
        transcript.contains("\"from_server\""),
        "the transcript holds the server's side"
    );
    // The world's leak check (issued tokens, the client token) covers it.
    world.capture_text("the MCP transcript", &transcript);
}
