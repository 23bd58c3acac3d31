//! The session's ID token, for tools that want it rather than the access token
//! (kubectl's OIDC authenticator: `latchkey kube-credential`). It is served while
//! its own `exp` (read from the JWT, unverified: the API server verifies it) is
//! more than `min_ttl` away, and renewed by a forced refresh otherwise. A
//! provider that answers a refresh without a new ID token leaves the old one: it
//! is served while it is still valid, and once it has expired the answer is
//! `IdTokenNotRenewed` (log in again), never a refresh per request.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::secret::Secret;

use super::refresh::Want;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::vault::unix_now;

/// An ID token and what is known of it.
#[derive(Debug, Clone)]
pub struct IdToken {
    pub id_token: Secret,
    /// Unix seconds, from the token's `exp` claim.
    pub expires_at: Option<i64>,
    pub generation: u64,
}

/// The `exp` claim of a JWT (its payload, base64url JSON), unverified.
pub fn jwt_expiry(jwt: &str) -> Option<i64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

impl Engine {
    /// The ID token of `profile`'s session, valid for `min_ttl` seconds more,
    /// renewed first when it is not (see the module documentation).
    pub async fn id_token(
        self: &Arc<Self>,
        profile: &str,
        min_ttl: u64,
    ) -> Result<IdToken, EngineError> {
        let current = self.usable(profile).await?;
        let held = |c: &super::slot::Current| {
            c.session.id_token.clone().map(|id| IdToken {
                expires_at: jwt_expiry(id.expose()),
                id_token: id,
                generation: c.generation,
            })
        };
        let Some(token) = held(&current) else {
            return Err(EngineError::NoIdToken {
                profile: profile.to_string(),
            });
        };
        let left = token.expires_at.map(|e| e - unix_now());
        if left.is_none_or(|l| l > i64::try_from(min_ttl).unwrap_or(i64::MAX)) {
            return Ok(token);
        }
        let expired = |t: &IdToken| t.expires_at.is_some_and(|e| e <= unix_now());
        if current.session.refresh_token.is_none() {
            // Nothing can renew it: served while it is valid.
            return if expired(&token) {
                Err(EngineError::IdTokenNotRenewed {
                    profile: profile.to_string(),
                })
            } else {
                Ok(token)
            };
        }
        self.refresh_as(
            profile,
            Want::Forced {
                seen_generation: current.generation,
            },
        )
        .await?;
        let renewed = self.usable(profile).await?;
        let renewed = held(&renewed).ok_or_else(|| EngineError::NoIdToken {
            profile: profile.to_string(),
        })?;
        if renewed.id_token == token.id_token && expired(&renewed) {
            return Err(EngineError::IdTokenNotRenewed {
                profile: profile.to_string(),
            });
        }
        Ok(renewed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"x","exp":1700000000}"#);
        assert_eq!(jwt_expiry(&format!("h.{payload}.s")), Some(1_700_000_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("h.!!!.s"), None);
        let no_exp = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(jwt_expiry(&format!("h.{no_exp}.s")), None);
    }
}
