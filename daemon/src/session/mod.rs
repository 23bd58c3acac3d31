//! The session service: the one owner of every session rule. The daemon, the
//! client's embedded path and doctor all call it; none of them keeps a copy of a
//! rule.
//!
//! - `slot`: the per-profile state (single flight, the cached view of the vault,
//!   the unsaved session), the refresh tasks, the change feed and statistics;
//! - `view`: the current session, from memory while the vault file is unchanged;
//! - `refresh`: the token request and the refresh transaction;
//! - `unsaved`: sessions the provider rotated and the disk refused;
//! - `maintain`: the daemon's background pass (retry writes, refresh ahead);
//! - `id_token`: the session's ID token, renewed when its own `exp` is near;
//! - `login`, `logout`, `status`: the other operations.
//!
//! They are `impl Engine` blocks, so every caller runs the very same code.

pub mod id_token;
pub mod login;
pub mod logout;
pub mod maintain;
pub mod refresh;
pub mod slot;
pub mod status;
pub mod unsaved;
pub mod view;

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
