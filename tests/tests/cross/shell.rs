//! Completions and man pages (docs/behaviour.md, "Commands"): the script of
//! `latchkey completions bash` loaded by a real bash completes subcommands and the
//! profile names of config.toml; `man -l` renders the generated page; zsh's and
//! fish's scripts name the same completer.

use std::path::Path;

use latchkey_tests::harness::{Run, World, bin_dir};

/// Runs `script` in a non-interactive bash with `latchkey` first on PATH.
fn bash(world: &World, script: &str) -> Run {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    world
        .home
        .command("bash", ["--norc", "--noprofile", "-c", script])
        .env("PATH", path)
        .run()
}

/// What bash's completion offers for the command line `words` (the last word
/// is the one being completed), with the script of `latchkey completions bash`.
fn complete(world: &World, words: &[&str]) -> Vec<String> {
    let script = world.home.path().join("latchkey.bash");
    let quoted = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let run = bash(
        world,
        &format!(
            "source '{}'
complete -p latchkey >/dev/null || exit 9
COMP_WORDS=({quoted})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_TYPE=9
COMP_LINE=\"${{COMP_WORDS[*]}}\"
COMP_POINT=${{#COMP_LINE}}
_clap_complete_latchkey latchkey \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"
printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ),
    );
    world.capture("bash completion", &run, false);
    run.ok();
    run.stdout
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_profile_names() {
    let world = World::default_provider();
    world.add_profile("dev-1");
    let script = world.latchkey(["completions", "bash"]).run();
    script.ok();
    std::fs::write(world.home.path().join("latchkey.bash"), &script.stdout).expect("written");

    let subcommands = complete(&world, &["latchkey", "to"]);
    assert_eq!(subcommands, ["token"], "{subcommands:?}");
    let helpers = complete(&world, &["latchkey", "kube"]);
    assert_eq!(helpers, ["kube-credential"], "{helpers:?}");
    let profiles = complete(&world, &["latchkey", "status", "--profile", ""]);
    assert_eq!(profiles, ["dev-1", "work"], "{profiles:?}");
    let removable = complete(&world, &["latchkey", "profile", "remove", "w"]);
    assert_eq!(removable, ["work"], "{removable:?}");
    // Without a config, no profile names, and no error either.
    std::fs::remove_file(world.home.config_file()).expect("config removed");
    assert!(complete(&world, &["latchkey", "--profile", ""]).is_empty());
}

#[test]
fn zsh_and_fish_scripts_call_the_same_completer() {
    let world = World::default_provider();
    for shell in ["zsh", "fish"] {
        let run = world.latchkey(["completions", shell]).run();
        run.ok();
        assert!(
            run.stdout.contains("LATCHKEY_COMPLETE") && run.stdout.contains("latchkey"),
            "{shell}: {}",
            run.stdout
        );
    }
    world.latchkey(["completions", "tcsh"]).run().code(2);
    // An unrelated COMPLETE in the environment changes nothing.
    let run = world
        .latchkey(["profile", "list"])
        .env("COMPLETE", "bash")
        .run();
    run.ok();
    assert!(run.stdout.contains("work"), "{}", run.stdout);
}

fn man_available() -> bool {
    let ok = std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "man is missing under CI"
        );
        eprintln!("skipped: man is missing");
    }
    ok
}

/// `man -l PAGE` as plain text.
fn render(world: &World, page: &Path) -> Run {
    world
        .home
        .command("man", ["-l", &page.display().to_string()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .run()
}

#[test]
fn man_renders_the_generated_pages() {
    let world = World::default_provider();
    if !man_available() {
        return;
    }
    let page = world.latchkey(["man"]).run();
    page.ok();
    let file = world.home.path().join("latchkey.1");
    std::fs::write(&file, &page.stdout).expect("written");
    let shown = render(&world, &file);
    shown.ok();
    for text in [
        "latchkey",
        "SYNOPSIS",
        "--profile",
        "kube-credential",
        "completions",
    ] {
        assert!(
            shown.stdout.contains(text),
            "{text} missing:\n{}",
            shown.stdout
        );
    }

    let dir = world.home.path().join("man1");
    let listed = world
        .latchkey(["man", "--out-dir", &dir.display().to_string()])
        .run();
    listed.ok();
    for name in [
        "latchkey.1",
        "latchkey-token.1",
        "latchkey-git-credential.1",
    ] {
        assert!(
            dir.join(name).is_file(),
            "{name} missing: {}",
            listed.stdout
        );
    }
    let token = render(&world, &dir.join("latchkey-token.1"));
    token.ok();
    assert!(token.stdout.contains("--min-ttl"), "{}", token.stdout);
}
