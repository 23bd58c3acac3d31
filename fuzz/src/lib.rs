//! The logic of Latchkey's fuzz targets, one module per target.
//!
//! Each `run` takes the fuzzer's bytes, drives the real decoder, and panics when an
//! invariant breaks (a panic is what libFuzzer reports as a crash). The binaries in
//! `fuzz_targets/` only call these, so `cargo test` here replays the committed
//! corpus and every saved regression on a stable toolchain, without libFuzzer.

pub mod api;
pub mod oauth;
pub mod vault;

#[cfg(test)]
mod replay {
    use std::path::Path;

    /// Runs every file under `fuzz/corpus/<target>` and `fuzz/regressions/<target>`.
    fn replay(target: &str, run: fn(&[u8])) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut count = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a readable folder").path();
                let data = std::fs::read(&path).expect("a readable input");
                eprintln!("replaying {}", path.display());
                run(&data);
                count += 1;
            }
        }
        assert!(count > 0, "no corpus for {target}");
    }

    #[test]
    fn vault_decode_corpus() {
        replay("vault_decode", crate::vault::run);
    }

    #[test]
    fn api_request_corpus() {
        replay("api_request", crate::api::run);
    }

    #[test]
    fn oauth_answer_corpus() {
        replay("oauth_answer", crate::oauth::run);
    }
}
