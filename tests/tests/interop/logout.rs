//! `latchkey logout` verified at the provider: afterwards oidc-provider's
//! introspection calls the old refresh and access tokens inactive, and its userinfo
//! endpoint refuses the old access token.

use latchkey_tests::oidc_provider::ProviderOptions;

use crate::world::Interop;

fn logout_revokes_at_the_provider(with_daemon: bool) {
    let Some(world) = Interop::new(ProviderOptions::default(), false) else {
        return;
    };
    if with_daemon {
        world.start_daemon();
    } else {
        world.without_daemon();
    }
    world.device_login().0.ok();
    let token = world.latchkey(["token"]).run();
    token.ok();
    let access = token.stdout.trim_end().to_string();
    let refresh = world
        .stored_session()
        .refresh_token
        .expect("a refresh token");
    assert!(world.idp.is_active(&access));
    assert!(world.idp.is_active(refresh.expose()));
    assert_eq!(world.idp.userinfo(&access).0, 200);

    let run = world.latchkey(["logout", "--json"]).run();
    let out = run.ok().json();
    assert_eq!(out["outcome"], "revoked", "{out}");

    assert!(
        !world.idp.is_active(refresh.expose()),
        "refresh token revoked"
    );
    assert!(!world.idp.is_active(&access), "access token revoked");
    let (status, body) = world.idp.userinfo(&access);
    assert_eq!(status, 401, "userinfo refuses the old token: {body}");
    let c = world.idp.counters();
    assert!(c["revocations"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["grants_revoked"]["revocation"], 1, "{c}");

    let st = world.latchkey(["status", "--json"]).run();
    assert_eq!(st.json()["logged_in"], false);
    world
        .latchkey(["token", "--json"])
        .run()
        .json_error(3, "not_logged_in");
}

#[test]
fn logout_revokes_at_the_provider_embedded() {
    logout_revokes_at_the_provider(false);
}

#[test]
fn logout_revokes_at_the_provider_through_the_daemon() {
    logout_revokes_at_the_provider(true);
}
