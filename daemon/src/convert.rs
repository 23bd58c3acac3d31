//! Engine values to wire shapes (`latchkey_proto::api`), in one place.
//!
//! Engine types are not serializable on purpose; the daemon's routes and the
//! client's embedded fallback both answer in the API's shapes, so both convert here
//! and cannot drift apart.

use latchkey_proto::api;

use crate::session::logout::LogoutOutcome;
use crate::session::slot::{Change, SessionChange};
use crate::session::status::SessionStatus;
use crate::vault::unix_now;

/// The state of every configured profile (`GET /v1/profiles`, the operator
/// status): logged in, generation, expiry, unsaved, the proxy's upstream. A
/// profile whose vault cannot be read shows as not logged in; its error is for
/// the commands that read it.
pub async fn profiles(engine: &std::sync::Arc<crate::Engine>) -> Vec<api::ProfileState> {
    let config = engine.config();
    let unsaved = engine.unsaved_profiles();
    let mut states = Vec::new();
    for name in config.profile_names() {
        let current = engine.current(&name).await.ok().flatten();
        states.push(api::ProfileState {
            unsaved: unsaved.contains(&name),
            logged_in: current.as_ref().is_some_and(|c| !c.session.expired),
            generation: current.as_ref().map(|c| c.generation),
            expires_at: current
                .as_ref()
                .and_then(|c| c.session.expires_at)
                .map(rfc3339),
            upstream: config
                .profiles
                .get(&name)
                .and_then(|p| p.proxy.as_ref())
                .map(|p| p.upstream.clone()),
            name,
        });
    }
    states
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const MAX_RFC3339: i64 = 253_402_300_799;

/// Unix seconds as RFC 3339 UTC (whole seconds), the API's time format. Times
/// outside what the format can hold are written as its first or last second, never
/// a panic (a vault written before lifetimes were bounded may hold one).
pub fn rfc3339(unix: i64) -> String {
    let secs = u64::try_from(unix.clamp(0, MAX_RFC3339)).unwrap_or(0);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `GET /v1/profiles/{p}/id-token`.
pub fn id_token(t: crate::session::id_token::IdToken) -> api::IdToken {
    api::IdToken {
        id_token: t.id_token,
        expires_at: t.expires_at.map(rfc3339),
        generation: t.generation,
    }
}

/// `GET /v1/profiles/{p}/session`.
pub fn session(st: SessionStatus) -> api::Session {
    api::Session {
        expires_at: st.expires_at.map(rfc3339),
        expires_in_seconds: st.expires_at.map(|e| e.saturating_sub(unix_now())),
        storage: api::Storage {
            kind: "encrypted_file".into(),
            path: st.vault_path.display().to_string(),
        },
        profile: st.profile,
        logged_in: st.logged_in,
        session_expired: st.session_expired,
        user: st.user,
        groups: st.groups,
        scopes: st.scopes,
        has_refresh_token: st.has_refresh_token,
        generation: st.generation,
        unsaved: st.unsaved,
    }
}

/// A `session` event of `GET /v1/events`.
pub fn session_event(c: SessionChange) -> api::SessionEvent {
    let change = match c.change {
        Change::Login => api::SessionChange::Login,
        Change::Refresh => api::SessionChange::Refresh,
        Change::Logout => api::SessionChange::Logout,
        Change::Expired => api::SessionChange::Expired,
    };
    api::SessionEvent {
        profile: c.profile,
        change,
        generation: c.generation,
    }
}

/// `POST /v1/profiles/{p}/logout`.
pub fn logged_out(outcome: LogoutOutcome) -> api::LoggedOut {
    let (outcome, detail) = match outcome {
        LogoutOutcome::Revoked => (
            api::LogoutOutcome::Revoked,
            "the provider revoked the session and the local copy was deleted".to_string(),
        ),
        LogoutOutcome::LocalOnly { reason } => (api::LogoutOutcome::LocalOnly, reason),
        LogoutOutcome::NotLoggedIn => (
            api::LogoutOutcome::NotLoggedIn,
            "there was no session to log out of".to_string(),
        ),
    };
    api::LoggedOut { outcome, detail }
}

/// A client token at rest as `GET /v1/client-tokens` lists it (never its secret).
pub fn client_token(r: latchkey_proto::delegation::TokenRecord) -> api::ClientToken {
    api::ClientToken {
        id: r.id,
        name: r.name,
        scopes: r.scopes,
        created_at: rfc3339(r.created_at),
        expires_at: r.expires_at.map(rfc3339),
        last_used_at: r.last_used_at.map(rfc3339),
    }
}

/// `POST /v1/client-tokens`'s answer: the only shape that holds a token's secret.
pub fn minted(m: crate::delegation::Minted) -> api::MintedToken {
    api::MintedToken {
        token: m.token,
        id: m.record.id,
        name: m.record.name,
        scopes: m.record.scopes,
        created_at: rfc3339(m.record.created_at),
        expires_at: m.record.expires_at.map(rfc3339),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn logout_outcomes_have_their_wire_names() {
        for outcome in [
            LogoutOutcome::Revoked,
            LogoutOutcome::LocalOnly {
                reason: "down".into(),
            },
            LogoutOutcome::NotLoggedIn,
        ] {
            let engine_name = outcome.name();
            assert_eq!(logged_out(outcome).outcome.as_str(), engine_name);
        }
        let local = logged_out(LogoutOutcome::LocalOnly {
            reason: "down".into(),
        });
        assert_eq!(
            (local.outcome, local.detail.as_str()),
            (api::LogoutOutcome::LocalOnly, "down")
        );
    }
}
