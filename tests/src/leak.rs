//! The leak check (docs/behaviour.md, "Security" and "Reliability under faults"): no
//! token the provider issued may appear in anything the tests capture, except
//! `latchkey token`'s own stdout.

/// Tokens shorter than this are not searched for: a short string could occur by
/// chance, and every real token (and every fake-provider token) is longer.
const MIN_TOKEN_LEN: usize = 12;

/// Returns the descriptions of `captured` texts that contain any of `secrets`.
/// Each captured text is `(what, text)`; the secret itself is never part of the
/// report, so a failing test does not leak it either.
pub fn find_leaks<S: AsRef<str>>(secrets: &[S], captured: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, text) in captured {
        for (i, s) in secrets.iter().enumerate() {
            let s = s.as_ref();
            if s.len() >= MIN_TOKEN_LEN && text.contains(s) {
                found.push(format!(
                    "{what} contains issued secret #{i} ({} bytes)",
                    s.len()
                ));
            }
        }
    }
    found
}

/// Panics when any captured text contains any secret.
#[track_caller]
pub fn assert_no_leaks<S: AsRef<str>>(secrets: &[S], captured: &[(&str, &str)]) {
    assert!(
        secrets.iter().all(|s| s.as_ref().len() >= MIN_TOKEN_LEN),
        "a secret under test is too short to be searched for reliably"
    );
    let leaks = find_leaks(secrets, captured);
    assert!(
        leaks.is_empty(),
        "token material leaked:\n{}",
        leaks.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_names_without_revealing() {
        let secrets = ["fk_at_0123456789abcdef"];
        let leaks = find_leaks(
            &secrets,
            &[
                ("stderr", "oops fk_at_0123456789abcdef"),
                ("stdout", "fine"),
            ],
        );
        assert_eq!(leaks.len(), 1);
        assert!(leaks[0].starts_with("stderr"));
        assert!(!leaks[0].contains("0123456789"));
        assert!(find_leaks(&secrets, &[("x", "fk_at_0123")]).is_empty());
    }
}
