//! The README's shell blocks, for the tests that run them as written
//! (`tests/cross/recipes.rs`, `tests/cross/troubleshooting.rs`).

use std::path::Path;

/// The text of the README's section under `heading` (a `## ` line), up to the
/// next `## ` heading.
pub fn section(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("the README");
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("the README has no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// A fenced block of a section: its language, the `### ` heading above it (empty
/// before the first), and its lines, indentation removed (blocks may sit in a
/// list).
#[derive(Debug, Clone)]
pub struct Block {
    pub lang: String,
    pub heading: String,
    pub text: String,
}

/// The fenced blocks of `section`, in order.
pub fn blocks(section: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if let Some(h) = line.strip_prefix("### ") {
            heading = h.to_string();
        } else if let Some(lang) = line.strip_prefix("```") {
            let mut text = String::new();
            for l in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                text.push_str(l.trim_start());
                text.push('\n');
            }
            out.push(Block {
                lang: lang.to_string(),
                heading: heading.clone(),
                text,
            });
        }
    }
    out
}
