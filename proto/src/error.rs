//! Error categories, exit codes, HTTP statuses and the JSON error document
//! (docs/behaviour.md, "Exit codes and error categories").
//!
//! Every crate keeps its own typed errors and maps them to a [`Category`] in exactly
//! one function. The category is what scripts, plugins and exit codes rely on; the
//! message is for people and must never carry token material or raw server bodies.

use serde::{Deserialize, Serialize};

/// The error categories. The serialized names are the `category` field of the JSON
/// error document and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Unexpected failure: a bug.
    Internal,
    /// Bad arguments or config.
    Usage,
    /// No session for the profile.
    NotLoggedIn,
    /// The server rejected the refresh (revoked, expired, reused): log in again.
    SessionExpired,
    /// Authenticated but not allowed (403, insufficient scope, missing group).
    Forbidden,
    /// Could not talk to the server (DNS, connect, timeout, 429, 502/503/504).
    Transport,
    /// The server answered wrongly (other 5xx, malformed or unexpected response).
    Server,
    /// The vault or its folder is unreadable, corrupt, tampered, locked or full.
    LocalStorage,
}

impl Category {
    /// Every category, in exit-code order.
    pub const ALL: [Category; 8] = [
        Category::Internal,
        Category::Usage,
        Category::NotLoggedIn,
        Category::SessionExpired,
        Category::Forbidden,
        Category::Transport,
        Category::Server,
        Category::LocalStorage,
    ];

    /// The process exit code for this category; the mapping is a contract.
    pub const fn exit_code(self) -> i32 {
        match self {
            Category::Internal => 1,
            Category::Usage => 2,
            Category::NotLoggedIn => 3,
            Category::SessionExpired => 4,
            Category::Forbidden => 5,
            Category::Transport => 6,
            Category::Server => 7,
            Category::LocalStorage => 8,
        }
    }

    /// The HTTP status of the socket API's answer for an error of this category:
    /// the one mapping, used by the daemon's routes and checked against
    /// `docs/openapi.yaml`. The category stays authoritative; the status is for
    /// generic HTTP tooling. (The routes depart from it in two documented places: an
    /// unknown profile, login or endpoint is 404, the request deadline 504.)
    pub const fn http_status(self) -> u16 {
        match self {
            Category::Usage => 400,
            Category::NotLoggedIn | Category::SessionExpired => 401,
            Category::Forbidden => 403,
            Category::Transport => 503,
            Category::Server => 502,
            Category::LocalStorage | Category::Internal => 500,
        }
    }

    /// The wire name, as in the JSON `category` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Internal => "internal",
            Category::Usage => "usage",
            Category::NotLoggedIn => "not_logged_in",
            Category::SessionExpired => "session_expired",
            Category::Forbidden => "forbidden",
            Category::Transport => "transport",
            Category::Server => "server",
            Category::LocalStorage => "local_storage",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message of the daemon's answer to a request it has no route for. A client
/// that gets it from a daemon of its own protocol is talking to an older
/// latchkeyd that predates the request: it goes on without it and says to
/// restart it.
pub const NO_SUCH_ENDPOINT: &str = "no such endpoint";

/// The body of the JSON error document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub category: Category,
    pub message: String,
    /// The next step for the person, such as `run latchkey login --profile work`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Whether trying again later may succeed (transport errors mostly).
    #[serde(default)]
    pub retryable: bool,
}

/// `{"error": {"category", "message", "hint", "retryable"}}`: the one shape of every
/// failure on stdout with `--json` and on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDocument {
    pub error: ErrorBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec_table() {
        let codes: Vec<i32> = Category::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn wire_names_match_serde() {
        for c in Category::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }

    #[test]
    fn error_document_shape() {
        let doc = ErrorDocument {
            error: ErrorBody {
                category: Category::NotLoggedIn,
                message: "not logged in to profile work".into(),
                hint: Some("run latchkey login --profile work".into()),
                retryable: false,
            },
        };
        let v: serde_json::Value = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["error"]["category"], "not_logged_in");
        assert_eq!(v["error"]["retryable"], false);
        assert!(v["error"]["hint"].is_string());
    }
}
