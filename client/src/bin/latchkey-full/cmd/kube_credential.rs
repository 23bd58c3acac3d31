//! `latchkey kube-credential [--access-token]`: kubectl's client-go credential
//! plugin (the kubeconfig `exec` stanza; docs/behaviour.md, "Credential helpers").
//!
//! kubectl runs it with `KUBERNETES_EXEC_INFO`, an `ExecCredential` whose
//! `apiVersion` the answer must repeat (`client.authentication.k8s.io/v1beta1`
//! when the variable is absent, as older kubectl versions leave it). The answer
//! is an `ExecCredential` with `status.token` (the session's ID token, as the
//! Kubernetes OIDC authenticator expects, or the access token with
//! `--access-token`) and `status.expirationTimestamp` a minute before the token's
//! own expiry, so kubectl asks again before the API server would refuse it.
//!
//! The helper never logs in, even when kubectl says the session is interactive:
//! a login holds kubectl's command open for minutes and writes where kubectl
//! reads its credential. Without a session it prints one line naming the login
//! command on stderr and exits 1, as client-go expects from a plugin that has
//! nothing to give.

use std::time::{Duration, SystemTime};

use latchkey::Error;
use serde_json::json;

use super::Ctx;
use crate::render::Output;

/// The API versions of `ExecCredential` this helper answers in.
const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// kubectl is told the token expires this much before it does.
const EARLY: Duration = Duration::from_secs(60);

/// A token served must stay valid this long: `EARLY`, then a minute of use.
const MIN_TTL: u64 = 2 * EARLY.as_secs();

pub async fn run(ctx: &Ctx, access_token: bool) -> Result<Output, Error> {
    let api_version = api_version(std::env::var("KUBERNETES_EXEC_INFO").ok().as_deref())?;
    let profile = ctx.profile_name()?;
    let served = if access_token {
        ctx.client
            .token(&profile, MIN_TTL)
            .await
            .map(|t| (t.access_token, t.expires_at))
    } else {
        ctx.client
            .id_token(&profile, MIN_TTL)
            .await
            .map(|t| (t.id_token, t.expires_at))
    };
    let (token, expires_at) = match served {
        Ok(t) => t,
        Err(e) if super::wants_login(&e) => {
            super::no_credential(&profile, &e);
            return Ok(Output {
                exit: 1,
                text: String::new(),
                json: serde_json::Value::Null,
            });
        }
        Err(e) => return Err(e),
    };
    let mut status = serde_json::Map::new();
    // Declassification: kubectl asked for this credential.
    status.insert("token".into(), json!(token.expose()));
    if let Some(at) = expires_at.as_deref().and_then(early) {
        status.insert("expirationTimestamp".into(), json!(at));
    }
    let doc = json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": status,
    });
    Ok(Output {
        exit: 0,
        text: format!("{doc}\n"),
        json: doc,
    })
}

/// The `apiVersion` kubectl asked for in `KUBERNETES_EXEC_INFO`.
fn api_version(exec_info: Option<&str>) -> Result<&'static str, Error> {
    let Some(info) = exec_info.filter(|s| !s.trim().is_empty()) else {
        return Ok(V1BETA1);
    };
    let doc: serde_json::Value = serde_json::from_str(info).map_err(|e| {
        Error::usage(
            format!("KUBERNETES_EXEC_INFO is not JSON: {e}"),
            Some("run this command from a kubeconfig `exec` stanza".into()),
        )
    })?;
    match doc.get("apiVersion").and_then(|v| v.as_str()) {
        Some(V1) => Ok(V1),
        Some(V1BETA1) | None => Ok(V1BETA1),
        Some(other) => Err(Error::usage(
            format!(
                "kubectl asked for an ExecCredential of {other}, which latchkey does not speak"
            ),
            Some(format!(
                "set `apiVersion: {V1}` (or {V1BETA1}) in the kubeconfig `exec` stanza"
            )),
        )),
    }
}

/// `expires_at` (RFC 3339) less [`EARLY`], in RFC 3339.
fn early(expires_at: &str) -> Option<String> {
    let at = humantime::parse_rfc3339(expires_at).ok()?;
    let at = at.checked_sub(EARLY).unwrap_or(SystemTime::UNIX_EPOCH);
    Some(humantime::format_rfc3339_seconds(at).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_speaks_the_version_kubectl_asked_for() {
        assert_eq!(api_version(None).unwrap(), V1BETA1);
        assert_eq!(api_version(Some("")).unwrap(), V1BETA1);
        let v1 = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;
        assert_eq!(api_version(Some(v1)).unwrap(), V1);
        let alpha = r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1"}"#;
        assert_eq!(
            api_version(Some(alpha)).unwrap_err().category(),
            latchkey_proto::error::Category::Usage
        );
        assert!(api_version(Some("{")).is_err());
    }

    #[test]
    fn kubectl_is_told_a_minute_early() {
        assert_eq!(
            early("2026-12-01T10:00:00Z").as_deref(),
            Some("2026-12-01T09:59:00Z")
        );
        assert_eq!(early("not a time"), None);
    }
}
