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

use latchkey_proto::vault::{ClientAuthMethod, SessionRecord};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::oauth::OAuthError;
use crate::oauth::discovery::{self, Endpoints};

/// Which of a provider's endpoints a session operation needs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionEndpoint {
    Token,
    Revocation,
}

impl Engine {
    /// The endpoint `which` of the session `s`'s provider, and how the provider
    /// announced a client secret goes there: what login stored in the session,
    /// else (a session from before they were stored) discovery now.
    pub(crate) async fn session_endpoint(
        &self,
        profile: &str,
        s: &SessionRecord,
        which: SessionEndpoint,
    ) -> Result<(url::Url, Option<ClientAuthMethod>), OAuthError> {
        let (stored, announced) = match which {
            SessionEndpoint::Token => (&s.token_endpoint, s.token_auth),
            SessionEndpoint::Revocation => (&s.revocation_endpoint, s.revocation_auth),
        };
        if let Some(u) = stored {
            return Ok((
                crate::config::check_url(u).map_err(OAuthError::Setup)?,
                announced,
            ));
        }
        let setup = |e: EngineError| OAuthError::Setup(e.to_string());
        let http = self.http(profile).map_err(setup)?;
        let p = self.profile(profile).map_err(setup)?;
        let Endpoints {
            token,
            token_auth,
            revocation,
            revocation_auth,
            ..
        } = discovery::endpoints(http, &p).await?;
        match which {
            SessionEndpoint::Token => Ok((token, token_auth)),
            SessionEndpoint::Revocation => {
                revocation.map(|url| (url, revocation_auth)).ok_or_else(|| {
                    OAuthError::Setup("the provider does not support revocation".into())
                })
            }
        }
    }
}

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
