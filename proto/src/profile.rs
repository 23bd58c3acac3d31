//! Profile names and the JSON shapes of the `latchkey profile` commands.
//!
//! A profile name ends up in a file name (`profiles/<name>.vault`) and in a URL path
//! (`/v1/profiles/<name>/token`), so it is checked once, where it enters, and then
//! travels as a [`ProfileName`]: a value of that type has passed [`validate_name`],
//! and the request types of [`crate::request`] take nothing else.

use std::fmt;

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

/// A profile name that has passed [`validate_name`]: only URL-safe and file-name-safe
/// characters, so it can be put into a request path or a file name as it is. The
/// only ways to make one check the rules; serde checks them too, so a name read from
/// JSON or from a URL path is validated by the act of decoding it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProfileName(String);

impl ProfileName {
    /// Checks `name` against the naming rules.
    pub fn new(name: impl Into<String>) -> Result<ProfileName, InvalidProfileName> {
        let name = name.into();
        match validate_name(&name) {
            Ok(()) => Ok(ProfileName(name)),
            Err(reason) => Err(InvalidProfileName { name, reason }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ProfileName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ProfileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ProfileName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProfileName {
    type Err = InvalidProfileName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileName::new(s)
    }
}

impl TryFrom<String> for ProfileName {
    type Error = InvalidProfileName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ProfileName::new(s)
    }
}

impl From<ProfileName> for String {
    fn from(p: ProfileName) -> String {
        p.0
    }
}

impl PartialEq<str> for ProfileName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ProfileName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A name that breaks the rules of [`validate_name`], and why. `Display` quotes the
/// name with `{:?}` (control characters escaped) and cuts it to 80 characters, so a
/// hostile name cannot forge lines in a log or a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProfileName {
    pub name: String,
    /// In words, such as "a profile name cannot be empty".
    pub reason: String,
}

impl fmt::Display for InvalidProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.name.chars().take(80).collect();
        write!(f, "invalid profile name {shown:?}: {}", self.reason)
    }
}

impl std::error::Error for InvalidProfileName {}

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

    const GOOD: [&str; 5] = ["work", "a", "corp-2.eu_west", "A1", "_x"];

    fn bad() -> Vec<String> {
        [
            "", ".hidden", "-x", "a/b", "..", "../evil", "a b", "é", "a%2Fb", "a?b", "a#b", "a\nb",
            "a\u{0}b",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["x".repeat(MAX_NAME_LEN + 1)])
        .collect()
    }

    #[test]
    fn names() {
        for ok in GOOD {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        for bad in bad() {
            assert!(validate_name(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_profile_name_is_made_only_through_the_rules() {
        for ok in GOOD {
            let name = ProfileName::new(ok).unwrap();
            assert_eq!(name.as_str(), ok);
            assert_eq!(ok.parse::<ProfileName>().unwrap(), name);
            assert_eq!(&*name, ok);
        }
        for bad in bad() {
            let e = ProfileName::new(bad.clone()).unwrap_err();
            assert_eq!(e.name, bad);
            assert_eq!(Err(e.reason.clone()), validate_name(&bad));
            assert!(bad.parse::<ProfileName>().is_err());
        }
    }

    #[test]
    fn serde_checks_the_rules_and_keeps_the_plain_string() {
        let name: ProfileName = serde_json::from_str("\"work\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"work\"");
        for bad in bad() {
            let json = serde_json::to_string(&bad).unwrap();
            assert!(serde_json::from_str::<ProfileName>(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_invalid_name_is_shown_escaped_and_cut() {
        let e = ProfileName::new(format!("a\nb{}", "x".repeat(200))).unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.len() < 200, "{shown}");
        assert!(shown.contains("a\\nb"), "{shown}");
    }
}
