//! Token revocation (RFC 7009).

use latchkey_proto::secret::Secret;
use url::Url;

use super::error::OAuthError;
use super::http::Http;

/// Revokes one token; `hint` is `refresh_token` or `access_token`.
pub async fn revoke(
    http: &Http,
    url: &Url,
    client: &super::client::ClientAuth,
    token: &Secret,
    hint: &str,
) -> Result<(), OAuthError> {
    // Declassification: the token goes back to the provider that issued it.
    let form = [("token", token.expose()), ("token_type_hint", hint)];
    let answer = http.post_form_as("revocation", url, &form, client).await?;
    if answer.is_success() {
        Ok(())
    } else {
        Err(answer.error())
    }
}
