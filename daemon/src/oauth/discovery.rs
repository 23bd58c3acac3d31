//! Finding a provider's endpoints: OpenID Connect discovery (falling back to RFC 8414
//! metadata), with the profile's explicit endpoints taking precedence. A profile that
//! names its token endpoint needs no discovery at all.

use serde::Deserialize;
use url::Url;

use super::authcode::ExpectedIssuer;
use super::error::OAuthError;
use super::http::Http;
use crate::config::{ClientAuthMethod, ProfileConfig, check_url};

/// The endpoints of one provider. Only the token endpoint is required; each flow
/// checks for the others it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: Option<Url>,
    pub token: Url,
    pub device_authorization: Option<Url>,
    pub userinfo: Option<Url>,
    pub revocation: Option<Url>,
    /// What the browser flow's authorization response must say in `iss` (RFC 9207).
    pub issuer: ExpectedIssuer,
    /// How the metadata says a client secret goes to the token endpoint (and the
    /// device authorization endpoint, RFC 8628 §3.1); `None` when it did not say.
    pub token_auth: Option<ClientAuthMethod>,
    /// The same for the revocation endpoint; the token endpoint's when the
    /// metadata lists nothing for revocation.
    pub revocation_auth: Option<ClientAuthMethod>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    #[serde(default)]
    authorization_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    /// RFC 9207 §3. Anything but JSON `true` counts as "not announced", so an odd
    /// value cannot make discovery fail.
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<serde_json::Value>,
    /// RFC 8414 §2. Read leniently ([`announced`]): an odd value counts as unsaid.
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<serde_json::Value>,
    #[serde(default)]
    revocation_endpoint_auth_methods_supported: Option<serde_json::Value>,
}

/// The secret-sending method a metadata list of auth methods allows:
/// `client_secret_basic` when listed (the RFC 8414 default, and the one every
/// provider must take), else `client_secret_post` when listed, else `None` (not a
/// list, or only methods Latchkey does not use: `none`, `private_key_jwt`...).
fn announced(list: Option<&serde_json::Value>) -> Option<ClientAuthMethod> {
    let methods = list?.as_array()?;
    let has = |m: &str| methods.iter().any(|v| v.as_str() == Some(m));
    if has("client_secret_basic") {
        Some(ClientAuthMethod::Basic)
    } else if has("client_secret_post") {
        Some(ClientAuthMethod::Post)
    } else {
        None
    }
}

fn endpoint(what: &str, s: &str) -> Result<Url, OAuthError> {
    check_url(s).map_err(|reason| {
        OAuthError::Setup(format!("the {what} endpoint {s:?} is not usable: {reason}"))
    })
}

fn optional(what: &str, s: Option<&str>) -> Result<Option<Url>, OAuthError> {
    s.map(|s| endpoint(what, s)).transpose()
}

/// The issuer without a trailing slash, as discovery paths are appended to it.
fn trimmed(issuer: &str) -> &str {
    issuer.strip_suffix('/').unwrap_or(issuer)
}

/// Resolves the endpoints for `profile`, discovering them unless the profile names
/// its token endpoint.
pub async fn endpoints(http: &Http, profile: &ProfileConfig) -> Result<Endpoints, OAuthError> {
    let explicit = |what, v: &Option<String>| optional(what, v.as_deref());
    if let Some(token) = &profile.token_endpoint {
        return Ok(Endpoints {
            authorization: explicit("authorization", &profile.authorization_endpoint)?,
            token: endpoint("token", token)?,
            device_authorization: explicit(
                "device authorization",
                &profile.device_authorization_endpoint,
            )?,
            userinfo: explicit("userinfo", &profile.userinfo_endpoint)?,
            revocation: explicit("revocation", &profile.revocation_endpoint)?,
            // Without metadata the configured issuer is the identifier (RFC 9207
            // §2.4), and nobody announced that `iss` is sent.
            issuer: ExpectedIssuer {
                issuer: profile.issuer.clone(),
                required: false,
            },
            token_auth: None,
            revocation_auth: None,
        });
    }
    let (meta, _date) = discover(http, &profile.issuer).await?;
    let pick = |what, mine: &Option<String>, theirs: Option<String>| {
        optional(what, mine.as_deref().or(theirs.as_deref()))
    };
    let issuer = ExpectedIssuer {
        required: meta.authorization_response_iss_parameter_supported
            == Some(serde_json::Value::Bool(true)),
        issuer: meta.issuer,
    };
    let token_auth = announced(meta.token_endpoint_auth_methods_supported.as_ref());
    let revocation_auth = match &meta.revocation_endpoint_auth_methods_supported {
        Some(list) => announced(Some(list)),
        None => token_auth,
    };
    let token = pick("token", &profile.token_endpoint, meta.token_endpoint)?.ok_or_else(|| {
        OAuthError::Setup(format!(
            "the provider {} publishes no token endpoint; set token_endpoint in the profile",
            profile.issuer
        ))
    })?;
    Ok(Endpoints {
        authorization: pick(
            "authorization",
            &profile.authorization_endpoint,
            meta.authorization_endpoint,
        )?,
        token,
        device_authorization: pick(
            "device authorization",
            &profile.device_authorization_endpoint,
            meta.device_authorization_endpoint,
        )?,
        userinfo: pick(
            "userinfo",
            &profile.userinfo_endpoint,
            meta.userinfo_endpoint,
        )?,
        revocation: pick(
            "revocation",
            &profile.revocation_endpoint,
            meta.revocation_endpoint,
        )?,
        issuer,
        token_auth,
        revocation_auth,
    })
}

/// Fetches and checks the metadata document. Also used by `doctor --server`.
async fn discover(http: &Http, issuer: &str) -> Result<(Metadata, Option<String>), OAuthError> {
    let base = trimmed(issuer);
    let oidc = endpoint(
        "discovery",
        &format!("{base}/.well-known/openid-configuration"),
    )?;
    let answer = http.get("discovery", &oidc, None).await?;
    let answer = if answer.status == 404 {
        // RFC 8414: OAuth-only servers publish their metadata here instead.
        let oauth = endpoint(
            "discovery",
            &format!("{base}/.well-known/oauth-authorization-server"),
        )?;
        http.get("discovery", &oauth, None).await?
    } else {
        answer
    };
    let meta: Metadata = answer.json()?;
    // OIDC Discovery §4.3: the issuer in the document must be the one asked for,
    // or a look-alike server could redirect the whole flow.
    if !same_issuer(&meta.issuer, base) {
        return Err(answer.malformed(format!(
            "it names issuer {:?}, not the configured {issuer:?}",
            meta.issuer
        )));
    }
    Ok((meta, answer.date))
}

/// Whether a discovery document's `issuer` is the configured one (`base`, without
/// its trailing slash). One tolerance, for Microsoft Entra ID: the multi-tenant
/// authorities (`common`, `organizations`) publish
/// `https://login.microsoftonline.com/{tenantid}/v2.0`, a literal placeholder
/// for the tenant each token names; it matches when the placeholder is a whole
/// path segment (never in the host) standing for exactly one segment of `base`,
/// and the rest is equal. (The document is fetched from `base` itself, with
/// redirects off, so this cannot let another server in.)
fn same_issuer(published: &str, base: &str) -> bool {
    const PLACEHOLDER: &str = "{tenantid}";
    let published = trimmed(published);
    if published == base {
        return true;
    }
    let Some((head, tail)) = published.split_once(PLACEHOLDER) else {
        return false;
    };
    let in_path = head
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if !in_path || !head.ends_with('/') || !(tail.is_empty() || tail.starts_with('/')) {
        return false;
    }
    base.strip_prefix(head)
        .and_then(|rest| rest.strip_suffix(tail))
        .is_some_and(|segment| !segment.is_empty() && !segment.contains(['/', '?', '#', '{', '}']))
}

/// Proves the provider answers (discovery, or the explicit token endpoint) and
/// returns its `Date` header, for `doctor --server`.
pub async fn probe(http: &Http, profile: &ProfileConfig) -> Result<Option<String>, OAuthError> {
    match &profile.token_endpoint {
        // Without discovery, any answer of the token endpoint (usually 405 to a GET)
        // proves it is reachable and carries a Date.
        Some(t) => Ok(http.get("token", &endpoint("token", t)?, None).await?.date),
        None => Ok(discover(http, &profile.issuer).await?.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_method_prefers_basic_then_post_and_ignores_the_rest() {
        use serde_json::json;
        let pick = |v: serde_json::Value| announced(Some(&v));
        // Google's order: post first, basic too: Basic, the RFC's default.
        assert_eq!(
            pick(json!(["client_secret_post", "client_secret_basic"])),
            Some(ClientAuthMethod::Basic)
        );
        // GitHub-like: the form only.
        assert_eq!(
            pick(json!(["client_secret_post", "private_key_jwt"])),
            Some(ClientAuthMethod::Post)
        );
        assert_eq!(pick(json!(["none"])), None);
        assert_eq!(pick(json!(["private_key_jwt", "tls_client_auth"])), None);
        assert_eq!(pick(json!("client_secret_post")), None, "not a list");
        assert_eq!(pick(json!([1, null, {}])), None);
        assert_eq!(announced(None), None);
    }

    #[test]
    fn entra_multi_tenant_issuers_match_their_template_and_nothing_looser() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        assert!(same_issuer(
            template,
            "https://login.microsoftonline.com/organizations/v2.0"
        ));
        assert!(same_issuer(
            template,
            "https://login.microsoftonline.com/common/v2.0"
        ));
        assert!(!same_issuer(
            template,
            "https://login.microsoftonline.com/v2.0"
        ));
        assert!(!same_issuer(
            template,
            "https://login.microsoftonline.com/a/b/v2.0"
        ));
        assert!(!same_issuer(template, "https://evil.example/common/v2.0"));
        assert!(!same_issuer(
            "https://{tenantid}/v2.0",
            "https://evil.example/v2.0"
        ));
        assert!(!same_issuer(
            "https://login.microsoftonline.com/x{tenantid}/v2.0",
            "https://login.microsoftonline.com/xy/v2.0"
        ));
        assert!(same_issuer(
            "https://id.example.com/",
            "https://id.example.com"
        ));
        assert!(!same_issuer(
            "https://id.example.com/x",
            "https://id.example.com"
        ));
    }
}
