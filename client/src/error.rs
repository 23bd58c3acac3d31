//! The client's error type and its one mapping to error categories
//! (docs/behaviour.md, "Exit codes and error categories").
//!
//! Engine errors keep the engine's own mapping; the client adds only what it
//! decides itself (usage problems it detects, output failures).

use latchkey_daemon::EngineError;
use latchkey_proto::error::{Category, ErrorBody, ErrorDocument};

/// Everything a `latchkey` command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Bad arguments the client itself detected.
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// A typed error answered by the daemon: final, its category is authoritative.
    #[error("{}", .0.message)]
    Remote(latchkey_proto::error::ErrorBody),
    /// A condition of the daemon itself (`latchkey daemon status` with none running).
    #[error("{message}")]
    Daemon {
        category: Category,
        message: String,
        hint: Option<String>,
    },
    /// Something answered on the daemon's socket, but not in the protocol (not
    /// HTTP, no Content-Length, a body that is not the endpoint's JSON). Category
    /// `internal`: daemon and client ship together, so this is a bug (or something
    /// of the same user's posing as the daemon); it is surfaced, never answered
    /// around by autostart or the embedded engine.
    #[error("the daemon at {socket} answered outside the protocol: {why}")]
    Broken { socket: String, why: String },
    /// A bug or an environment the program cannot run in.
    #[error("internal error: {0}")]
    Internal(String),
    /// Writing the answer failed (other than a closed pipe, which is success).
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// A usage error with an optional next step.
    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint,
        }
    }

    /// The error category, which decides the exit code.
    pub fn category(&self) -> Category {
        match self {
            Error::Engine(e) => e.category(),
            Error::Usage { .. } => Category::Usage,
            Error::Remote(b) => b.category,
            Error::Daemon { category, .. } => *category,
            Error::Broken { .. } | Error::Output(_) | Error::Internal(_) => Category::Internal,
        }
    }

    /// The next step for the person, if there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Engine(e) => e.hint(),
            Error::Usage { hint, .. } => hint.clone(),
            Error::Remote(b) => b.hint.clone(),
            Error::Daemon { hint, .. } => hint.clone(),
            Error::Broken { .. } => Some(
                "run `latchkey daemon restart`; LATCHKEY_NO_DAEMON=1 answers from the encrypted file meanwhile".into(),
            ),
            Error::Output(_) | Error::Internal(_) => None,
        }
    }

    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Engine(e) => e.retryable(),
            Error::Remote(b) => b.retryable,
            _ => false,
        }
    }

    /// The JSON error document: category, message, hint and `retryable`.
    pub fn to_document(&self) -> ErrorDocument {
        ErrorDocument {
            error: ErrorBody {
                category: self.category(),
                message: self.to_string(),
                hint: self.hint(),
                retryable: self.retryable(),
            },
        }
    }
}

impl From<latchkey_daemon::ConfigError> for Error {
    fn from(e: latchkey_daemon::ConfigError) -> Self {
        Error::Engine(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_logged_in_carries_the_login_hint() {
        let e = Error::from(EngineError::NotLoggedIn {
            profile: "work".into(),
        });
        let doc = e.to_document();
        assert_eq!(doc.error.category, Category::NotLoggedIn);
        assert_eq!(doc.error.category.exit_code(), 3);
        assert!(
            doc.error
                .hint
                .unwrap()
                .contains("latchkey login --profile work")
        );
    }

    #[test]
    fn a_broken_daemon_is_internal_with_a_way_out() {
        let e = Error::Broken {
            socket: "/run/l.sock".into(),
            why: "not an HTTP answer".into(),
        };
        let doc = e.to_document();
        assert_eq!(doc.error.category, Category::Internal);
        assert_eq!(doc.error.category.exit_code(), 1);
        assert!(doc.error.message.contains("/run/l.sock"));
        let hint = doc.error.hint.unwrap();
        assert!(hint.contains("latchkey daemon restart") && hint.contains("LATCHKEY_NO_DAEMON=1"));
    }
}
