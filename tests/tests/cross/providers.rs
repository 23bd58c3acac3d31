//! Providers that differ (docs/providers.md): presets written by `profile add
//! --preset`, a client secret sent by HTTP Basic or in the form, and a session
//! with neither a refresh token nor an expiry (GitHub's OAuth apps) handled
//! honestly: status says so, `token` serves it, a refused token through the proxy
//! says to log in again.

use latchkey_tests::fake_idp::FakeIdpConfig;
use latchkey_tests::harness::World;
use latchkey_tests::upstream::{ResourceServer, set_work_proxy};

#[test]
fn presets_write_their_provider_and_ask_for_what_they_need() {
    let world = World::default_provider();
    let run = world
        .latchkey([
            "profile",
            "add",
            "gh",
            "--preset",
            "github",
            "--client-id",
            "Iv1.abc",
            "--json",
        ])
        .run();
    run.ok();
    let text = std::fs::read_to_string(world.home.config_file()).expect("config");
    for line in [
        "[profiles.gh]",
        "issuer = \"https://github.com\"",
        "token_endpoint = \"https://github.com/login/oauth/access_token\"",
        "device_authorization_endpoint = \"https://github.com/login/device/code\"",
        "userinfo_endpoint = \"https://api.github.com/user\"",
        "scopes = [\"read:user\", \"user:email\"]",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    world
        .latchkey([
            "profile",
            "add",
            "g",
            "--preset",
            "google",
            "--client-id",
            "1.apps.googleusercontent.com",
        ])
        .run()
        .ok();
    let text = std::fs::read_to_string(world.home.config_file()).expect("config");
    assert!(
        text.contains("auth_params = { access_type = \"offline\", prompt = \"consent\" }"),
        "{text}"
    );
    // What a preset needs is asked for; what it does not use is refused.
    let run = world
        .latchkey([
            "profile",
            "add",
            "kc",
            "--preset",
            "keycloak",
            "--client-id",
            "cli",
            "--json",
        ])
        .run();
    let err = run.json_error(2, "usage");
    assert!(
        err["message"].as_str().unwrap_or("").contains("--domain"),
        "{err}"
    );
    world
        .latchkey(["profile", "add", "x", "--client-id", "c", "--tenant", "t"])
        .run()
        .code(2);
    world
        .latchkey([
            "profile",
            "add",
            "x",
            "--preset",
            "nope",
            "--client-id",
            "c",
        ])
        .run()
        .code(2);
    // Nothing half-written by the refusals.
    let after = std::fs::read_to_string(world.home.config_file()).expect("config");
    assert!(!after.contains("[profiles.kc]") && !after.contains("[profiles.x]"));
}

#[test]
fn a_client_secret_goes_by_basic_or_in_the_form_and_nowhere_else() {
    const SECRET: &str = "GOCSPX-not-so-secret";
    let world = World::new(FakeIdpConfig {
        client_secret: Some(SECRET.into()),
        ..FakeIdpConfig::default()
    });
    // Without it the provider refuses the client: a usage error, not a session one.
    let browser = world.auto_browser();
    let run = world
        .latchkey(["login", "--json", "--timeout", "30"])
        .env("LATCHKEY_BROWSER", &browser)
        .run();
    run.code(2);
    let last: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap_or("")).expect("JSON lines");
    assert_eq!(last["error"]["category"], "usage", "{last}");

    world.set_work_keys(&format!("client_secret = \"{SECRET}\""));
    world.login();
    assert_eq!(
        world.idp.counters().client_secret_basic,
        1,
        "the code exchange"
    );
    world.latchkey(["refresh"]).run().ok();
    assert_eq!(world.idp.counters().client_secret_basic, 2);
    world.set_work_keys("client_auth = \"post\"");
    world.latchkey(["refresh"]).run().ok();
    assert_eq!(world.idp.counters().client_secret_post, 1);
    let out = world.latchkey(["logout", "--json"]).run();
    out.ok();
    assert_eq!(out.json()["outcome"], "revoked");
    // The device flow authenticates the client at its authorization endpoint too
    // (RFC 8628 §3.1), and at every poll.
    let before = world.idp.counters().client_secret_post;
    let device = world.latchkey(["login", "--device", "--json"]).run();
    device.ok();
    let c = world.idp.counters();
    assert_eq!(c.device_authorizations, 1);
    assert!(c.client_secret_post >= before + 2, "{c:?}");
    assert_eq!(c.client_secret_basic, 2, "{c:?}");

    let status = world.latchkey(["status", "--json"]).run();
    for text in [
        &run.stdout,
        &run.stderr,
        &device.stdout,
        &device.stderr,
        &status.stdout,
        &status.stderr,
    ] {
        assert!(!text.contains(SECRET), "the client secret was printed");
    }
}

/// SPEC §3: with no `client_auth` in the profile, the secret goes the way the
/// provider's metadata announces, at login, refresh, revocation and the device
/// flow alike, and the profile's own choice still wins.
#[test]
fn the_secret_goes_the_way_discovery_announces_unless_the_profile_says() {
    const SECRET: &str = "announced-post-secret";
    let world = World::new(FakeIdpConfig {
        client_secret: Some(SECRET.into()),
        client_secret_method: Some("client_secret_post"),
        ..FakeIdpConfig::default()
    });
    world.set_work_keys(&format!("client_secret = \"{SECRET}\""));
    world.login();
    world.latchkey(["refresh"]).run().ok();
    let out = world.latchkey(["logout", "--json"]).run();
    out.ok();
    assert_eq!(out.json()["outcome"], "revoked", "{}", out.stdout);
    let c = world.idp.counters();
    // The code exchange, the refresh, two revocations.
    assert_eq!(c.client_secret_post, 4, "{c:?}");
    assert_eq!(c.client_secret_basic, 0, "{c:?}");
    world.latchkey(["login", "--device", "--json"]).run().ok();
    assert_eq!(world.idp.counters().client_secret_basic, 0);

    // The profile's own method wins over the announcement: this provider then
    // refuses the client, a usage error that loses nothing.
    world.set_work_keys("client_auth = \"basic\"");
    let before = world.stored_session();
    let run = world.latchkey(["refresh", "--json"]).run();
    run.code(2);
    assert_eq!(run.json()["error"]["category"], "usage", "{}", run.stdout);
    assert_eq!(world.stored_session(), before, "the session is as it was");
}

#[test]
fn a_session_without_refresh_token_or_expiry_is_served_until_refused() {
    let world = World::new(FakeIdpConfig {
        issue_refresh_token: false,
        expires_in_raw: Some("null".into()),
        ..FakeIdpConfig::default()
    });
    world.login();
    let status = world.latchkey(["status", "--json"]).run();
    status.ok();
    let doc = status.json();
    assert_eq!(doc["logged_in"], true);
    assert_eq!(doc["session_expired"], false);
    assert_eq!(doc["has_refresh_token"], false);
    assert_eq!(doc["expires_at"], serde_json::Value::Null);
    let plain = world.latchkey(["status"]).run();
    plain.ok();
    assert!(
        plain.stdout.contains("no stated expiry"),
        "{}",
        plain.stdout
    );
    assert!(
        plain.stdout.contains("refresh token: none"),
        "{}",
        plain.stdout
    );

    let before = world.idp.counters().token_successes;
    world.latchkey(["token"]).run().ok();
    world.start_daemon();
    world.latchkey(["token"]).run().ok();
    assert_eq!(
        world.idp.counters().token_successes,
        before,
        "served as held"
    );

    // The API refuses the token: nothing can renew it, so log in again.
    let userinfo = world.idp.url("/userinfo");
    let api = ResourceServer::start(move |token| {
        latchkey_tests::oidc_provider::request(
            "GET",
            &userinfo,
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
        .is_ok_and(|r| r.status == 200)
    });
    set_work_proxy(
        &world.home.config_file(),
        &format!("upstream = \"http://127.0.0.1:{}\"", api.port),
    );
    world.latchkey(["api", "/me"]).run().ok();
    world.idp.expire_access_tokens();
    let refused = world.latchkey(["api", "/me", "--json"]).run();
    let err = refused.json_error(4, "session_expired");
    assert!(
        err["hint"]
            .as_str()
            .unwrap_or("")
            .contains("latchkey login"),
        "{err}"
    );
}
