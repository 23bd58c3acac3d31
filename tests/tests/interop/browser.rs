//! The browser flow (authorization code + PKCE, loopback redirect on an ephemeral
//! port) against oidc-provider, with headless Debian Chromium driven by
//! playwright-core as Latchkey's BROWSER: it signs in on the provider's login page,
//! consents, and ends on Latchkey's one-shot listener.

use latchkey_tests::oidc_provider::ProviderOptions;

use crate::device::events;
use crate::world::Interop;

fn browser_login(with_daemon: bool) {
    let Some(world) = Interop::new(ProviderOptions::default(), true) else {
        return;
    };
    let (browser, report) = world.browser(0);
    let mut cmd = world
        .latchkey(["login", "--json", "--timeout", "180"])
        .env("LATCHKEY_BROWSER", &browser);
    if with_daemon {
        world.start_daemon();
    } else {
        cmd = cmd.env("LATCHKEY_NO_DAEMON", "1");
    }
    let run = cmd.run();
    let report = world.browser_report(&report);
    run.ok();
    assert_eq!(report["ok"], true, "{report}");
    let ev = events(&run.stdout);
    assert_eq!(ev[0]["event"], "authorize_url", "{ev:?}");
    let url = url::Url::parse(ev[0]["url"].as_str().unwrap()).unwrap();
    assert!(url.as_str().starts_with(world.idp.issuer()));
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    let redirect = url::Url::parse(&q["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");
    // The browser really ended on Latchkey's listener, on the port it chose.
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
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "logged_in", "{ev:?}");
    assert_eq!(last["user"]["sub"], "interop-user");

    let c = world.idp.counters();
    assert_eq!(c["grants"]["authorization_code"], 1, "{c}");
    let st = world.latchkey(["status", "--json"]).run();
    let st = st.ok().json();
    assert_eq!(st["logged_in"], true, "{st}");
    assert_eq!(st["has_refresh_token"], true, "{st}");
    assert_eq!(st["daemon"]["running"], with_daemon, "{st}");

    let token = world.latchkey(["token"]).run();
    token.ok();
    let token = token.stdout.trim_end();
    assert!(world.idp.is_active(token));
    assert_eq!(world.idp.userinfo(token).0, 200);
}

#[test]
fn browser_login_with_headless_chromium_embedded() {
    browser_login(false);
}

#[test]
fn browser_login_with_headless_chromium_through_the_daemon() {
    browser_login(true);
}
