//! The browser flow (authorization code + PKCE, loopback redirect on an ephemeral
//! port) against oidc-provider, with headless Debian Chromium driven by
//! playwright-core as Latchkey's BROWSER: it signs in on the provider's login page,
//! consents, and ends on Latchkey's one-shot listener.

use latchkey_tests::oidc_provider::ProviderOptions;

use crate::device::events;
use crate::world::Interop;

/// Checks the authorize URL Latchkey made and that the browser really ended on the
/// listener it names.
fn assert_went_to_the_listener(world: &Interop, authorize_url: &str, report: &serde_json::Value) {
    assert_eq!(report["ok"], true, "{report}");
    let url = url::Url::parse(authorize_url).unwrap();
    assert!(url.as_str().starts_with(world.idp.issuer()));
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    let redirect = url::Url::parse(&q["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");
    assert_eq!(
        report["final_origin"],
        format!("http://127.0.0.1:{}", redirect.port().unwrap()),
        "{report}"
    );
    assert_eq!(report["final_path"], "/callback");
    assert_eq!(report["callback_had_code"], true);
    assert!(
        report["page_text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("terminal"),
        "the callback page sends the person back to the terminal: {report}"
    );
}

/// The session works afterwards: status, a token the provider accepts.
fn assert_logged_in(world: &Interop, with_daemon: bool) {
    let c = world.idp.counters();
    assert_eq!(c["grants"]["authorization_code"], 1, "{c}");
    let st = world.latchkey(["status", "--json"]).run();
    let st = st.ok().json();
    assert_eq!(st["logged_in"], true, "{st}");
    assert_eq!(st["has_refresh_token"], true, "{st}");
    assert_eq!(st["user"]["sub"], "interop-user", "{st}");
    assert_eq!(st["daemon"]["running"], with_daemon, "{st}");
    let token = world.latchkey(["token"]).run();
    token.ok();
    let token = token.stdout.trim_end();
    assert!(world.idp.is_active(token));
    assert_eq!(world.idp.userinfo(token).0, 200);
}

#[test]
fn browser_login_with_headless_chromium_embedded() {
    let Some(world) = Interop::new(ProviderOptions::default(), true) else {
        return;
    };
    world.without_daemon();
    let (run, report) = world.browser_login();
    run.ok();
    let ev = events(&run.stdout);
    assert_eq!(ev[0]["event"], "authorize_url", "{ev:?}");
    assert_went_to_the_listener(&world, ev[0]["url"].as_str().unwrap(), &report);
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "logged_in", "{ev:?}");
    assert_eq!(last["user"]["sub"], "interop-user");
    assert_logged_in(&world, false);
}

/// The daemon runs the loopback listener: a login started on the socket (as an
/// editor plugin does), the browser sent to the URL it answered.
#[test]
fn browser_login_with_headless_chromium_run_by_the_daemon() {
    let Some(world) = Interop::new(ProviderOptions::default(), true) else {
        return;
    };
    world.start_daemon();
    let mut report = serde_json::Value::Null;
    let (started, done) = world.socket_login("browser", |s| {
        let url = s["authorize_url"].as_str().expect("an authorize_url");
        report = world.run_browser(0, url);
    });
    assert_eq!(done["state"], "logged_in", "{done}");
    assert_eq!(done["user"]["sub"], "interop-user", "{done}");
    assert_went_to_the_listener(&world, started["authorize_url"].as_str().unwrap(), &report);
    assert_logged_in(&world, true);
}
