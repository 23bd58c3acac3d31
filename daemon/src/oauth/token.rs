//! The token endpoint (RFC 6749 §3.2): code exchange, refresh, device-code polls.

use latchkey_proto::secret::Secret;
use serde::{Deserialize, Deserializer};
use url::Url;

use super::error::OAuthError;
use super::http::Http;

/// What the token endpoint hands back.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    /// Normalised to `Bearer`.
    pub token_type: String,
    /// As the provider sent it (possibly zero, negative or absurd); the engine
    /// bounds it with [`crate::policy::expires_at`].
    pub expires_in: Option<i64>,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    /// Space-separated scopes, when the server says which were granted.
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    token_type: String,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    id_token: Option<Secret>,
    #[serde(default)]
    scope: Option<String>,
}

/// Accepts `expires_in` as an integer, a float or a numeric string: some providers
/// send the latter, and refusing it would lock their users out. The value is kept as
/// sent, sign and size included (saturating at the ends of `i64`); bounding it is
/// the engine's rule, not the parser's.
fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Int(i64),
        Float(f64),
        Str(String),
    }
    // `as` saturates (and maps NaN to 0): a fractional lifetime rounds toward zero,
    // and 1e30 becomes i64::MAX, which the engine's bound then clamps.
    let float = |f: f64| f as i64;
    Ok(match Option::<N>::deserialize(d)? {
        None => None,
        Some(N::Int(n)) => Some(n),
        Some(N::Float(f)) if f.is_nan() => None,
        Some(N::Float(f)) => Some(float(f)),
        Some(N::Str(s)) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().filter(|f| !f.is_nan()).map(float))
        }
    })
}

/// The grant being exchanged.
#[derive(Debug)]
pub enum Grant<'a> {
    AuthorizationCode {
        code: &'a Secret,
        verifier: &'a Secret,
        redirect_uri: &'a str,
    },
    RefreshToken {
        refresh_token: &'a Secret,
    },
    DeviceCode {
        device_code: &'a Secret,
    },
}

/// RFC 8628's grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Calls the token endpoint with `grant` as `client`.
pub async fn request(
    http: &Http,
    token_url: &Url,
    client: &super::client::ClientAuth,
    grant: Grant<'_>,
    extra: &[(&str, &str)],
) -> Result<TokenSet, OAuthError> {
    // Declassification: each secret goes to the token endpoint that issued it.
    let mut form: Vec<(&str, &str)> = match &grant {
        Grant::AuthorizationCode {
            code,
            verifier,
            redirect_uri,
        } => vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("code_verifier", verifier.expose()),
            ("redirect_uri", redirect_uri),
        ],
        Grant::RefreshToken { refresh_token } => vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ],
        Grant::DeviceCode { device_code } => vec![
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", device_code.expose()),
        ],
    };
    form.extend_from_slice(extra);
    let answer = http.post_form_as("token", token_url, &form, client).await?;
    let r: TokenResponse = answer.json()?;
    if r.access_token.is_empty() {
        return Err(answer.malformed("the access token is empty"));
    }
    if !r.token_type.eq_ignore_ascii_case("bearer") {
        return Err(answer.malformed(format!(
            "token type {:?} is not supported (only Bearer)",
            r.token_type.chars().take(20).collect::<String>()
        )));
    }
    Ok(TokenSet {
        access_token: r.access_token,
        token_type: "Bearer".into(),
        expires_in: r.expires_in,
        refresh_token: r.refresh_token.filter(|t| !t.is_empty()),
        id_token: r.id_token,
        scope: r.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_lenient() {
        for (json, want) in [
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":60}"#,
                Some(60),
            ),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":"60"}"#,
                Some(60),
            ),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":59.9}"#,
                Some(59),
            ),
            (r#"{"access_token":"a","token_type":"bearer"}"#, None),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":-5}"#,
                Some(-5),
            ),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":1e18}"#,
                Some(1_000_000_000_000_000_000),
            ),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":18446744073709551615}"#,
                Some(i64::MAX),
            ),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":"abc"}"#,
                None,
            ),
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":null}"#,
                None,
            ),
        ] {
            let r: TokenResponse = serde_json::from_str(json).unwrap();
            assert_eq!(r.expires_in, want, "{json}");
        }
    }
}
