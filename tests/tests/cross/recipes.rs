//! The README's recipes under "Give a tool less than your session" run as written:
//! its `toml` block goes into the config, then each recipe's `sh` block runs with
//! bash (`-euo pipefail`) against a real daemon and a logged-in `work` profile, with
//! `CONFIG` and `RUNTIME` set as the README says. Two substitutions, both stated
//! here: the TCP port is a free one instead of 7878 (tests run in parallel), and
//! `docker` is a stand-in that does what the recipe relies on (`run --rm -v SRC:DST
//! -e K=V IMAGE CMD…`): a private mount namespace with a fresh `/run`, each `-v`
//! bind-mounted, the command run as another user (uid 65534) with only the `-e`
//! variables and `PATH`, where `latchkey` is this build's binary, as in an image
//! that ships it.

use std::path::{Path, PathBuf};

use latchkey_tests::fake_idp::TokenKind;
use latchkey_tests::harness::{World, bin_dir};
use latchkey_tests::readme;

const SECTION: &str = "## Give a tool less than your session";

/// The section's `toml` block and its recipes: (heading, `sh` block).
fn recipes() -> (String, Vec<(String, String)>) {
    let blocks = readme::blocks(&readme::section(SECTION));
    let toml = blocks
        .iter()
        .find(|b| b.lang == "toml")
        .map(|b| b.text.clone())
        .expect("the [delegate] block");
    let out = blocks
        .into_iter()
        .filter(|b| b.lang == "sh" && !b.heading.is_empty())
        .map(|b| (b.heading, b.text))
        .collect();
    (toml, out)
}

/// The `docker` stand-in (see the module documentation).
fn docker_shim(dir: &Path) -> PathBuf {
    let path = dir.join("docker");
    std::fs::write(
        &path,
        r#"#!/bin/bash
# A stand-in for `docker run --rm -v SRC:DST -e K=V IMAGE CMD...` (tests/tests/cross/recipes.rs).
set -euo pipefail
[ "$1" = run ] || { echo "docker stand-in: only 'run'" >&2; exit 2; }
shift
setup='mount -t tmpfs tmpfs /run'
envs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rm) shift ;;
    -v) src=${2%%:*}; dst=${2#*:}; setup+="; touch '$dst'; mount --bind '$src' '$dst'"; shift 2 ;;
    -e) envs+=("$2"); shift 2 ;;
    *) break ;;
  esac
done
shift # the image
exec unshare --mount --propagation private bash -c \
  "$setup; exec setpriv --reuid=65534 --regid=65534 --clear-groups -- env -i PATH='$PATH' HOME=/nonexistent ${envs[*]} \"\$@\"" \
  container "$@"
"#,
    )
    .expect("the stand-in is written");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("mode");
    path
}

#[test]
fn the_readme_recipes_run_as_written() {
    let (toml, recipes) = recipes();
    let headings: Vec<&str> = recipes.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        headings,
        ["An editor plugin", "A container", "An agent sandbox"],
        "the README's recipes"
    );
    let port = latchkey_tests::harness::free_loopback_port().to_string();
    let world = World::default_provider();
    world.login();
    let config = world.home.config_file();
    let text = std::fs::read_to_string(&config).expect("a config");
    std::fs::write(&config, format!("{text}\n{}", toml.replace("7878", &port)))
        .expect("the config is written");
    world.start_daemon();
    let issued = world.newest(TokenKind::AccessToken);
    let shims = tempfile::tempdir().expect("a folder");
    docker_shim(shims.path());
    let path = format!(
        "{}:{}:{}",
        shims.path().display(),
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (heading, script) in &recipes {
        let out = world
            .home
            .command(
                "bash",
                ["-euo", "pipefail", "-c", &script.replace("7878", &port)],
            )
            .env("PATH", &path)
            .env("CONFIG", &config)
            .env("RUNTIME", world.home.path().join("run"))
            .run();
        assert_eq!(out.code, 0, "{heading}: {out:#?}");
        match heading.as_str() {
            "An editor plugin" => {
                assert!(out.stdout.contains("Profile work: logged in"), "{out:#?}");
                assert!(out.stdout.contains("refused, exit 5"), "{out:#?}");
                assert!(
                    !out.all_output().contains(&issued),
                    "the plugin got no token"
                );
            }
            "A container" => {
                assert_eq!(out.stdout.trim(), issued, "{out:#?}");
            }
            "An agent sandbox" => {
                let mut lines = out.stdout.lines();
                let first: serde_json::Value =
                    serde_json::from_str(lines.next().unwrap_or_default()).expect("JSON");
                assert_eq!(first["access_token"], issued.as_str());
                assert_eq!(lines.next_back(), Some("401"), "{out:#?}");
            }
            other => panic!("a recipe this test does not know: {other}"),
        }
    }
}
