//! Profiles with a `client_secret` against oidc-provider's confidential native
//! clients, one per client authentication method (Basic: the browser flow, then
//! the device flow; post: the device flow): the package accepts only the
//! method a client registered, so a login, a refresh and a revocation that succeed
//! prove the secret went the configured way (HTTP Basic, or in the form). The
//! profile's `auth_params` are read back at the provider's authorization endpoint.
//! The world's leak check looks for the secrets too, in every output, the daemon's
//! log and the provider's.

use latchkey_tests::oidc_provider::{CLIENT_ID, ProviderOptions};

use crate::device::events;
use crate::world::Interop;

/// Points `work` at the confidential client of `method`, with its secret and two
/// provider-specific authorization parameters.
fn confidential_profile(world: &Interop, method: &str) -> String {
    let (client_id, secret) = world.idp.confidential_client(method);
    let path = world.home.config_file();
    let text = std::fs::read_to_string(&path).expect("the config");
    let from = format!("client_id = \"{CLIENT_ID}\"");
    assert!(text.contains(&from), "{text}");
    let text = text.replacen(
        &from,
        &format!(
            "client_id = \"{client_id}\"\nclient_secret = \"{secret}\"\nclient_auth = \"{method}\"\nauth_params = {{ access_type = \"offline\", ui_locales = \"en-GB\" }}"
        ),
        1,
    );
    std::fs::write(&path, text).expect("the config is written");
    client_id
}

/// What every confidential session must do after its login: refresh (the token
/// endpoint authenticates the client), show itself without the secret, and log
/// out with a revocation the provider accepted (the revocation endpoint
/// authenticates it too).
fn refresh_status_and_logout(world: &Interop) {
    let before = world.idp.grants("refresh_token");
    world.latchkey(["refresh", "--json"]).run().ok();
    assert_eq!(world.idp.grants("refresh_token"), before + 1);
    let token = world.latchkey(["token"]).run();
    token.ok();
    assert_eq!(world.idp.userinfo(token.stdout.trim_end()).0, 200);
    let st = world.latchkey(["status", "--json"]).run();
    assert_eq!(st.ok().json()["logged_in"], true);
    world.latchkey(["doctor", "--server"]).run().ok();
    let out = world.latchkey(["logout", "--json"]).run();
    assert_eq!(out.ok().json()["outcome"], "revoked", "{out:#?}");
    let c = world.idp.counters();
    assert_eq!(c["grants_revoked"]["revocation"], 1, "{c}");
    assert_eq!(c["grant_errors"].get("invalid_client"), None, "{c}");
}

#[test]
fn client_secret_basic_with_the_browser_flow_and_auth_params() {
    let Some(world) = Interop::new(ProviderOptions::default(), true) else {
        return;
    };
    let client_id = confidential_profile(&world, "basic");
    world.start_daemon();
    let (run, report) = world.browser_login();
    run.ok();
    assert_eq!(report["ok"], true, "{report}");
    let ev = events(&run.stdout);
    assert_eq!(ev.last().expect("events")["event"], "logged_in", "{ev:?}");

    let requests = world.idp.authorization_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let q = &requests[0];
    assert_eq!(q["client_id"], client_id.as_str(), "{q:?}");
    assert_eq!(q["access_type"], "offline", "{q:?}");
    assert_eq!(q["ui_locales"], "en-GB", "{q:?}");
    assert_eq!(q["code_challenge_method"], "S256", "{q:?}");
    assert!(
        !q.contains_key("client_secret"),
        "the secret is never in the authorization request: {q:?}"
    );
    assert_eq!(world.idp.grants("authorization_code"), 1);
    world.latchkey(["daemon", "status", "--json"]).run().ok();
    refresh_status_and_logout(&world);
    // The device flow with Basic: the secret authenticates the device
    // authorization request too (RFC 8628 §3.1).
    world.device_login().0.ok();
    assert_eq!(
        world
            .idp
            .grants("urn:ietf:params:oauth:grant-type:device_code"),
        1
    );
}

#[test]
fn client_secret_post_with_the_device_flow() {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    confidential_profile(&world, "post");
    world.without_daemon();
    let (run, _pages) = world.device_login();
    run.ok();
    assert_eq!(
        world
            .idp
            .grants("urn:ietf:params:oauth:grant-type:device_code"),
        1
    );
    refresh_status_and_logout(&world);
}
