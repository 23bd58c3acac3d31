//! The git credential helper with Debian's git (docs/behaviour.md, "Credential
//! helpers"): a repository served over HTTP on loopback that takes only a token
//! the provider's userinfo accepts; clone and push with Latchkey as the helper and
//! no token in any git file; a token the provider stops accepting fails one fetch,
//! git's `erase` renews it, and the next fetch works after one refresh.

use std::path::Path;

use latchkey_tests::git_server::{self, GitServer, bare_repo};
use latchkey_tests::harness::{Run, World, bin};
use latchkey_tests::oidc_provider::request;

/// A server whose token check is the fake provider's userinfo.
fn server(world: &World, root: &Path) -> GitServer {
    let userinfo = world.idp.url("/userinfo");
    GitServer::start(root, move |token| {
        request(
            "GET",
            &userinfo,
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
        .is_ok_and(|r| r.status == 200)
    })
}

/// git with Latchkey as its only credential helper, no prompts, no system or
/// global config.
fn git(world: &World, dir: &Path, args: &[&str]) -> Run {
    let helper = format!(
        "credential.helper=!{} git-credential",
        bin("latchkey").display()
    );
    let mut all = vec![
        "-C".to_string(),
        dir.display().to_string(),
        "-c".into(),
        "credential.helper=".into(),
        "-c".into(),
        helper,
        "-c".into(),
        "user.name=t".into(),
        "-c".into(),
        "user.email=t@example.test".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let run = world
        .home
        .command("git", &all)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .run();
    world.capture(&format!("git {}", args.join(" ")), &run, false);
    run
}

fn every_file_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A world whose `work` profile serves a git server on loopback (with the extra
/// profile keys `extra`), logged in; `None` (after a notice) without git, which
/// fails the run under CI.
fn git_world(extra: &str) -> Option<(World, GitServer)> {
    if !git_server::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "git is missing under CI"
        );
        eprintln!("skipped: git or git-http-backend is missing");
        return None;
    }
    let world = World::default_provider();
    let root = world.home.path().join("srv");
    std::fs::create_dir_all(&root).expect("a server folder");
    bare_repo(&root, "repo.git");
    let server = server(&world, &root);
    world.set_work_keys(&format!(
        "git_hosts = [\"127.0.0.1:{}\"]\n{extra}",
        server.port
    ));
    world.login();
    Some((world, server))
}

#[test]
fn clone_push_and_a_refused_token_healed_through_erase() {
    let Some((world, server)) = git_world("") else {
        return;
    };
    world.start_daemon();

    let work = world.home.path().join("clone");
    git(
        &world,
        world.home.path(),
        &["clone", &server.url("repo.git"), "clone"],
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(work.join("README")).expect("cloned"),
        "hello\n"
    );
    std::fs::write(work.join("NEW"), "pushed\n").expect("a file");
    git(&world, &work, &["add", "NEW"]).ok();
    git(&world, &work, &["commit", "-m", "second"]).ok();
    git(&world, &work, &["push", "origin", "main"]).ok();
    assert!(server.seen().iter().any(|(s, ok)| s == "basic" && *ok));

    // No token anywhere in the clone's files (config, logs, packed refs...).
    let access = world.newest(latchkey_tests::fake_idp::TokenKind::AccessToken);
    for f in every_file_under(&work) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&access),
            "{} holds the token",
            f.display()
        );
    }

    // The provider stops accepting the token: one fetch fails, git erases it...
    world.idp.expire_access_tokens();
    let failed = git(&world, &work, &["fetch"]);
    assert_ne!(failed.code, 0, "the refused token fails this fetch");
    assert_eq!(
        world.idp.counters().refresh_successes,
        1,
        "erase renewed it"
    );
    // ...and the next one works, with no further refresh.
    git(&world, &work, &["fetch"]).ok();
    assert_eq!(world.idp.counters().refresh_successes, 1);
}

#[test]
fn the_bearer_variant_and_hosts_that_are_not_ours() {
    if !git_server::supports_authtype() {
        // Debian 12's own git is 2.39; this machine kind also carries a newer
        // one first on PATH, so CI never takes this branch.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the git on PATH is older than 2.46 (no authtype) under CI"
        );
        eprintln!(
            "skipped: the git on PATH is older than 2.46 and cannot send a Bearer credential"
        );
        return;
    }
    let Some((world, server)) = git_world("git_auth = \"bearer\"") else {
        return;
    };
    git(
        &world,
        world.home.path(),
        &["clone", &server.url("repo.git"), "clone"],
    )
    .ok();
    let seen = server.seen();
    assert!(
        seen.iter().any(|(s, ok)| s == "bearer" && *ok),
        "git sent the token as a Bearer credential: {seen:?}"
    );
    assert!(!seen.iter().any(|(s, _)| s == "basic"), "{seen:?}");

    // The helper itself: an unknown host gets no answer and exit 0, so git asks
    // its next helper; not logged in is one line and no answer.
    let ask = |input: &str| {
        let run = world
            .home
            .latchkey(["git-credential", "get"])
            .run_with_input(input.as_bytes());
        world.capture_text("git-credential stderr", &run.stderr);
        run
    };
    let run = ask("protocol=https\nhost=elsewhere.example\n\n");
    run.ok();
    assert_eq!(run.stdout, "");
    world.latchkey(["logout", "--local"]).run().ok();
    let run = ask(&format!(
        "protocol=http\nhost=127.0.0.1:{}\n\n",
        server.port
    ));
    run.ok();
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("latchkey login --profile work"),
        "{}",
        run.stderr
    );
}
