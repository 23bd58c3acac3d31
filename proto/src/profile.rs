//! Profile names and the JSON shapes of the `latchkey profile` commands.

use serde::{Deserialize, Serialize};

/// The longest profile name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Checks that a profile name is safe to use as a file name and in a URL path:
/// ASCII letters, digits, `-`, `_` and `.`, not starting with `.` or `-`, at most
/// [`MAX_NAME_LEN`] bytes. Returns why not, in words, when it is not.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a profile name cannot be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a profile name has at most {MAX_NAME_LEN} characters"
        ));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err("a profile name cannot start with '.' or '-'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "a profile name may use letters, digits, '-', '_' and '.', not {bad:?}"
        ));
    }
    Ok(())
}

/// One row of `latchkey profile list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSummary {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Whether this is `default_profile` in the config.
    pub default: bool,
}

/// `latchkey profile list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileList {
    pub default_profile: Option<String>,
    pub profiles: Vec<ProfileSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["work", "a", "corp-2.eu_west", "A1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "..",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
