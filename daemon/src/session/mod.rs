//! Session operations of the engine, one module each: the refresh transaction
//! (`refresh`), interactive login (`login`), logout with revocation (`logout`) and
//! the offline status (`status`). They are `impl Engine` blocks, so the CLI's
//! embedded path and the daemon call the very same code.

pub mod login;
pub mod logout;
pub mod refresh;
pub mod status;

use latchkey_proto::vault::SessionRecord;

use crate::error::EngineError;

/// The best name for who owns a session, for messages.
pub(crate) fn who(s: &SessionRecord) -> Option<String> {
    s.user.as_ref().map(|u| {
        u.email
            .clone()
            .or_else(|| u.name.clone())
            .unwrap_or_else(|| u.sub.clone())
    })
}

/// The error for a session the provider no longer accepts.
pub(crate) fn expired(profile: &str, s: &SessionRecord) -> EngineError {
    EngineError::SessionExpired {
        profile: profile.to_string(),
        user: who(s),
    }
}
