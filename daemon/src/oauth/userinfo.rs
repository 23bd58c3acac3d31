//! The OIDC userinfo endpoint: who the session belongs to and their groups.

use latchkey_proto::secret::Secret;
use latchkey_proto::vault::UserInfo;
use url::Url;

use super::error::OAuthError;
use super::http::Http;

/// Fetches the user and the groups listed under `groups_claim`.
pub async fn fetch(
    http: &Http,
    url: &Url,
    access_token: &Secret,
    groups_claim: &str,
) -> Result<(UserInfo, Vec<String>), OAuthError> {
    let answer = http.get("userinfo", url, Some(access_token)).await?;
    let claims: serde_json::Map<String, serde_json::Value> = answer.json()?;
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    // GitHub's user API (its userinfo for the preset) has no `sub`: its numeric
    // `id` is the stable subject, and `login` the name when `name` is empty.
    let id = claims.get("id").and_then(|v| match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    });
    let sub = text("sub")
        .or(id)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| answer.malformed("no `sub` claim"))?;
    let groups = match claims.get(groups_claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Ok((
        UserInfo {
            sub,
            email: text("email"),
            name: text("name")
                .filter(|n| !n.is_empty())
                .or_else(|| text("preferred_username"))
                .or_else(|| text("login")),
        },
        groups,
    ))
}
