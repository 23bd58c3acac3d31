//! Mechanical rules for the engine's sources.
//!
//! The engine must never swallow a storage or auth error silently: every discarded
//! result (`let _ =`, `.ok();`) must carry a comment on the same line or the line
//! above saying why dropping it is right.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("read entry: {e}")).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether the statement ending at line `end` assigns its value (`let x = ...` or
/// `x = ...`), walking back over a method chain split across lines.
fn statement_binds(lines: &[&str], end: usize) -> bool {
    let mut i = end;
    loop {
        let code = lines[i].split("//").next().unwrap_or("");
        if code.contains('=') {
            return true;
        }
        let continues = code.trim_start().starts_with('.');
        if !continues || i == 0 {
            return false;
        }
        i -= 1;
    }
}

/// Finds discarded results without a justifying comment.
fn violations(source: &str) -> Vec<usize> {
    let lines: Vec<&str> = source.lines().collect();
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let discards = code.contains("let _ =")
            || (code.trim_end().ends_with(".ok();") && !statement_binds(&lines, i));
        if !discards {
            continue;
        }
        let commented_here = line.contains("//");
        let commented_above = i > 0 && lines[i - 1].trim_start().starts_with("//");
        if !commented_here && !commented_above {
            bad.push(i + 1);
        }
    }
    bad
}

#[test]
fn the_scanner_catches_what_it_should() {
    assert_eq!(violations("fn f() {\n    let _ = g();\n}\n"), vec![2]);
    assert_eq!(violations("    h().ok();\n"), vec![1]);
    assert!(violations("    // Dropping is right: best effort.\n    let _ = g();\n").is_empty());
    assert!(violations("    let _ = g(); // best effort\n").is_empty());
    assert!(violations("    let _guard = g();\n    let x = h().ok();\n").is_empty());
    assert!(violations("    let x = h()\n        .map(f)\n        .ok();\n").is_empty());
    assert_eq!(
        violations("    h()\n        .map(f)\n        .ok();\n"),
        vec![3]
    );
}

#[test]
fn engine_sources_never_discard_results_silently() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 5, "found too few sources: {files:?}");
    let mut report = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        for line in violations(&text) {
            report.push(format!("{}:{line}", f.display()));
        }
    }
    assert!(
        report.is_empty(),
        "discarded results without a comment saying why:\n{}",
        report.join("\n")
    );
}
