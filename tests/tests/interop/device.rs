//! The device flow (RFC 8628) against oidc-provider, approved through the package's
//! own pages (code confirmation, sign-in, consent) with plain form posts.

use latchkey_tests::oidc_provider::ProviderOptions;

use crate::world::Interop;

/// stdout of a `--json` login as JSON Lines.
pub fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

fn device_login(with_daemon: bool) {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    if with_daemon {
        world.start_daemon();
    } else {
        world.without_daemon();
    }
    let (run, pages) = world.device_login();
    run.ok();
    let ev = events(&run.stdout);
    assert_eq!(ev[0]["event"], "device_code", "{ev:?}");
    let code = ev[0]["user_code"].as_str().unwrap();
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");
    assert!(
        ev[0]["verification_uri"]
            .as_str()
            .unwrap()
            .starts_with(world.idp.issuer())
    );
    for page in ["Confirm Device", "Sign-in", "Authorize", "Sign-in Success"] {
        assert!(
            pages.iter().any(|t| t == page),
            "the approval went through the provider's {page:?} page: {pages:?}"
        );
    }
    assert_eq!(pages.last().unwrap(), "Sign-in Success", "{pages:?}");
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "logged_in", "{ev:?}");
    assert_eq!(last["profile"], "work");
    assert_eq!(last["user"]["email"], "interop@example.test");
    assert_eq!(last["user"]["sub"], "interop-user");

    let c = world.idp.counters();
    assert_eq!(c["device_authorizations"], 1, "{c}");
    assert_eq!(
        c["grants"]["urn:ietf:params:oauth:grant-type:device_code"], 1,
        "{c}"
    );
    assert!(
        c["userinfo"].as_u64().unwrap() >= 1,
        "Latchkey fetched userinfo: {c}"
    );

    let st = world.latchkey(["status", "--json"]).run();
    let st = st.ok().json();
    assert_eq!(st["logged_in"], true, "{st}");
    assert_eq!(
        st["has_refresh_token"], true,
        "offline access granted: {st}"
    );
    assert_eq!(st["user"]["name"], "Interop User", "{st}");
    assert_eq!(st["groups"], serde_json::json!(["dev", "interop"]), "{st}");
    assert_eq!(st["daemon"]["running"], with_daemon, "{st}");

    let token = world.latchkey(["token"]).run();
    token.ok();
    let token = token.stdout.trim_end();
    assert_eq!(token, world.stored_session().access_token.expose());
    assert!(world.idp.is_active(token), "the provider accepts the token");
    let (status, me) = world.idp.userinfo(token);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["sub"], "interop-user");
    let refresh = world
        .stored_session()
        .refresh_token
        .expect("a refresh token");
    assert!(world.idp.is_active(refresh.expose()));
}

#[test]
fn device_login_approved_on_the_providers_pages_embedded() {
    device_login(false);
}

/// `latchkey login` runs the login in its own process; a running daemon serves the
/// new session at once.
#[test]
fn device_login_approved_on_the_providers_pages_with_a_daemon_running() {
    device_login(true);
}

/// The daemon runs the device flow: a login started on the socket, approved on the
/// provider's pages, its outcome long-polled.
#[test]
fn device_login_run_by_the_daemon() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    world.start_daemon();
    let (started, done) = world.socket_login("device", |s| {
        let uri = s["verification_uri_complete"]
            .as_str()
            .expect("a device login");
        world
            .idp
            .approve_device(uri)
            .expect("the approval goes through");
    });
    assert_eq!(started["flow"], "device", "{started}");
    assert_eq!(done["state"], "logged_in", "{done}");
    assert_eq!(done["user"]["email"], "interop@example.test", "{done}");
    let st = world.latchkey(["daemon", "status", "--json"]).run();
    let st = st.ok().json();
    assert_eq!(st["profiles"][0]["logged_in"], true, "{st}");
    let token = world.latchkey(["token"]).run();
    token.ok();
    assert!(world.idp.is_active(token.stdout.trim_end()));
}
