//! `latchkey profile ...` and profile resolution, through the real binary.

use latchkey_tests::harness::Home;

fn add(home: &Home, name: &str, extra: &[&str]) {
    let mut args = vec![
        "profile",
        "add",
        name,
        "--issuer",
        "http://127.0.0.1:9",
        "--client-id",
        "x",
    ];
    args.extend_from_slice(extra);
    home.latchkey(args).run().ok();
}

#[test]
fn add_then_list_as_json() {
    let home = Home::new();
    let run = home
        .latchkey([
            "profile",
            "add",
            "work",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "x",
            "--default",
        ])
        .run();
    run.ok();
    assert!(run.stdout.contains("Added profile work"), "{run:#?}");
    let list = home.latchkey(["profile", "list", "--json"]).run();
    list.ok();
    let doc = list.json();
    assert_eq!(doc["default_profile"], "work");
    assert_eq!(doc["profiles"][0]["name"], "work");
    assert_eq!(doc["profiles"][0]["issuer"], "http://127.0.0.1:9");
    assert_eq!(doc["profiles"][0]["default"], true);
    assert_eq!(
        doc["profiles"][0]["scopes"],
        serde_json::json!(["openid", "profile", "email", "offline_access"])
    );
}

#[cfg(unix)]
#[test]
fn config_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    add(&home, "work", &["--scope", "openid", "--scope", "api"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.config_file()), 0o600);
    let text = std::fs::read_to_string(home.config_file()).unwrap();
    assert!(text.contains(r#"scopes = ["openid", "api"]"#), "{text}");
}

#[test]
fn non_loopback_http_issuer_is_a_usage_error() {
    let home = Home::new();
    for issuer in ["http://example.com", "http://10.1.2.3", "ftp://127.0.0.1"] {
        let run = home
            .latchkey([
                "profile",
                "add",
                "w",
                "--issuer",
                issuer,
                "--client-id",
                "x",
            ])
            .run();
        run.code(2);
        assert!(run.stderr.starts_with("error: invalid issuer"), "{run:#?}");
        let json = home
            .latchkey([
                "profile",
                "add",
                "w",
                "--issuer",
                issuer,
                "--client-id",
                "x",
                "--json",
            ])
            .run();
        json.json_error(2, "usage");
    }
    assert!(
        !home.config_file().exists(),
        "a refused profile wrote a config"
    );
    // https anywhere, http on loopback names.
    add(&home, "loop6", &[]);
    home.latchkey([
        "profile",
        "add",
        "tls",
        "--issuer",
        "https://id.example.com",
        "--client-id",
        "x",
    ])
    .run()
    .ok();
    home.latchkey([
        "profile",
        "add",
        "lh",
        "--issuer",
        "http://localhost:8080",
        "--client-id",
        "x",
    ])
    .run()
    .ok();
}

#[test]
fn bad_names_duplicates_and_unknown_profiles_are_usage_errors() {
    let home = Home::new();
    add(&home, "work", &[]);
    let dup = home
        .latchkey([
            "profile",
            "add",
            "work",
            "--issuer",
            "https://a.example",
            "--client-id",
            "y",
        ])
        .run();
    dup.code(2);
    assert!(
        dup.stderr.contains("already exists") && dup.stderr.contains("hint:"),
        "{dup:#?}"
    );
    for bad in ["../evil", "a b", ".x"] {
        home.latchkey([
            "profile",
            "add",
            bad,
            "--issuer",
            "https://a.example",
            "--client-id",
            "y",
        ])
        .run()
        .code(2);
    }
    let err = home
        .latchkey(["token", "--profile", "nope", "--json"])
        .run()
        .json_error(2, "usage");
    assert!(
        err["message"].as_str().unwrap().contains("work"),
        "lists the known profiles: {err}"
    );
    home.latchkey(["profile", "remove", "nope"]).run().code(2);
}

#[test]
fn resolution_order_and_ambiguity() {
    let home = Home::new();
    // No profile at all: usage, with a hint to add one.
    let none = home.latchkey(["token", "--json"]).run();
    let err = none.json_error(2, "usage");
    assert!(
        err["hint"].as_str().unwrap().contains("profile add"),
        "{err}"
    );
    // One profile: chosen by itself.
    add(&home, "alpha", &[]);
    let one = home.latchkey(["token", "--json"]).run();
    assert!(
        one.json_error(3, "not_logged_in")["message"]
            .as_str()
            .unwrap()
            .contains("alpha")
    );
    // The first profile is the default, so a second one changes nothing.
    add(&home, "beta", &[]);
    let still = home.latchkey(["token", "--json"]).run();
    assert!(
        still.json_error(3, "not_logged_in")["message"]
            .as_str()
            .unwrap()
            .contains("alpha"),
        "{still:#?}"
    );
    // Two without a default (the default was removed): usage error listing both.
    home.latchkey(["profile", "remove", "alpha"]).run().ok();
    add(&home, "gamma", &[]);
    let two = home.latchkey(["token"]).run();
    two.code(2);
    assert!(two.stderr.contains("beta, gamma"), "{two:#?}");
    assert!(two.stderr.contains("hint:"), "{two:#?}");
    // LATCHKEY_PROFILE picks one; --profile beats it; the default applies last.
    let env = home
        .latchkey(["token", "--json"])
        .env("LATCHKEY_PROFILE", "beta")
        .run();
    assert!(
        env.json_error(3, "not_logged_in")["message"]
            .as_str()
            .unwrap()
            .contains("beta")
    );
    let flag = home
        .latchkey(["token", "--json", "--profile", "gamma"])
        .env("LATCHKEY_PROFILE", "beta")
        .run();
    assert!(
        flag.json_error(3, "not_logged_in")["message"]
            .as_str()
            .unwrap()
            .contains("gamma")
    );
    home.latchkey(["profile", "default", "beta"]).run().ok();
    let dflt = home.latchkey(["profile", "default"]).run();
    assert_eq!(dflt.ok().stdout, "beta\n");
    let by_default = home.latchkey(["token", "--json"]).run();
    assert!(
        by_default.json_error(3, "not_logged_in")["message"]
            .as_str()
            .unwrap()
            .contains("beta")
    );
}

#[test]
fn remove_clears_default_and_keeps_others() {
    let home = Home::new();
    add(&home, "a", &["--default"]);
    add(&home, "b", &[]);
    let run = home.latchkey(["profile", "remove", "a", "--json"]).run();
    run.ok();
    assert_eq!(run.json()["removed"], "a");
    let list = home.latchkey(["profile", "list", "--json"]).run().json();
    assert_eq!(list["default_profile"], serde_json::Value::Null);
    assert_eq!(list["profiles"].as_array().unwrap().len(), 1);
    assert_eq!(list["profiles"][0]["name"], "b");
}

#[test]
fn broken_config_is_a_usage_error_naming_the_file_and_is_not_rewritten() {
    let home = Home::new();
    let bad =
        "[profiles.w]\nissuer = \"https://a.example\"\nclient_id = \"x\"\nscope = [\"typo\"]\n";
    std::fs::write(home.config_file(), bad).unwrap();
    let run = home.latchkey(["profile", "list"]).run();
    run.code(2);
    assert!(
        run.stderr.contains("config.toml") && run.stderr.contains("scope"),
        "{run:#?}"
    );
    home.latchkey([
        "profile",
        "add",
        "z",
        "--issuer",
        "https://b.example",
        "--client-id",
        "y",
    ])
    .run()
    .code(2);
    assert_eq!(std::fs::read_to_string(home.config_file()).unwrap(), bad);
}

#[test]
fn usage_errors_exit_2_and_honour_json() {
    let home = Home::new();
    let run = home.latchkey(["token", "--no-such-flag"]).run();
    run.code(2);
    assert!(run.stderr.contains("error:"), "{run:#?}");
    home.latchkey(["token", "--no-such-flag", "--json"])
        .run()
        .json_error(2, "usage");
    home.latchkey(["--help"]).run().ok();
    home.latchkey(["--version"]).run().ok();
}
