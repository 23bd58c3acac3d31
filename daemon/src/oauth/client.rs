//! Who Latchkey is at a provider's token, device authorization and revocation
//! endpoints: a public client
//! (its `client_id` in the form, PKCE doing the rest), or an "installed app" client
//! with a secret its provider hands out but does not treat as confidential
//! (Google's desktop clients), sent by HTTP Basic or in the form (RFC 6749 §2.3.1).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_proto::secret::Secret;
use zeroize::Zeroizing;

use crate::config::{ClientAuthMethod, ProfileConfig};

/// The client's credentials.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub id: String,
    pub secret: Option<Secret>,
    pub method: ClientAuthMethod,
}

impl ClientAuth {
    /// A public client: `client_id` in the form, nothing else.
    pub fn public(id: &str) -> ClientAuth {
        ClientAuth {
            id: id.to_string(),
            secret: None,
            method: ClientAuthMethod::Basic,
        }
    }

    /// The client a session was issued to (`client_id`), with the profile's secret
    /// when the profile still names that client. The method is the profile's
    /// `client_auth`, else what the provider `announced` in its metadata (found
    /// at login and kept in the session, so a refresh or a logout needs no
    /// discovery), else Basic, which every provider must take (RFC 6749 §2.3.1).
    /// A secret goes to the token, device authorization (RFC 8628 §3.1) and
    /// revocation endpoints only, never into an authorization URL.
    pub fn for_session(
        client_id: &str,
        profile: Option<&ProfileConfig>,
        announced: Option<ClientAuthMethod>,
    ) -> ClientAuth {
        match profile {
            Some(p) if p.client_id == client_id => ClientAuth {
                id: client_id.to_string(),
                secret: p.client_secret.clone().filter(|s| !s.is_empty()),
                method: p
                    .client_auth
                    .or(announced)
                    .unwrap_or(ClientAuthMethod::Basic),
            },
            _ => ClientAuth::public(client_id),
        }
    }

    /// The profile's client at a login, where the provider `announced` a method.
    pub fn of(profile: &ProfileConfig, announced: Option<ClientAuthMethod>) -> ClientAuth {
        ClientAuth::for_session(&profile.client_id, Some(profile), announced)
    }

    /// Adds the client's form fields to `form`, and returns the `Authorization`
    /// header's value when the secret goes by HTTP Basic.
    pub(crate) fn apply<'a>(&'a self, form: &mut Vec<(&'a str, &'a str)>) -> Option<Secret> {
        match (&self.secret, self.method) {
            (None, _) => {
                form.push(("client_id", &self.id));
                None
            }
            (Some(secret), ClientAuthMethod::Post) => {
                // Declassification: the secret goes to the provider that issued it.
                form.push(("client_id", &self.id));
                form.push(("client_secret", secret.expose()));
                None
            }
            (Some(secret), ClientAuthMethod::Basic) => {
                // RFC 6749 §2.3.1: each part form-urlencoded, then base64.
                let enc = |s: &str| {
                    Zeroizing::new(
                        url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>(),
                    )
                };
                let pair = Zeroizing::new(format!(
                    "{}:{}",
                    enc(&self.id).as_str(),
                    enc(secret.expose()).as_str()
                ));
                Some(Secret::new(format!(
                    "Basic {}",
                    STANDARD.encode(pair.as_bytes())
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_encodes_each_part_before_base64() {
        let c = ClientAuth {
            id: "app id".into(),
            secret: Some(Secret::new("s:é")),
            method: ClientAuthMethod::Basic,
        };
        let mut form = Vec::new();
        let header = c.apply(&mut form).expect("a header");
        assert!(
            form.is_empty(),
            "no client_id beside Basic: one method per request"
        );
        let b64 = header.expose().strip_prefix("Basic ").unwrap();
        let pair = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(pair, "app+id:s%3A%C3%A9");
        assert!(
            !format!("{c:?}").contains("s:é"),
            "the secret never reaches Debug"
        );
    }

    #[test]
    fn post_and_public_put_the_client_in_the_form() {
        let mut c = ClientAuth::public("cli");
        let mut form = Vec::new();
        assert!(c.apply(&mut form).is_none());
        assert_eq!(form, [("client_id", "cli")]);
        c.secret = Some(Secret::new("shh"));
        c.method = ClientAuthMethod::Post;
        let mut form = Vec::new();
        assert!(c.apply(&mut form).is_none());
        assert_eq!(form, [("client_id", "cli"), ("client_secret", "shh")]);
    }
}
