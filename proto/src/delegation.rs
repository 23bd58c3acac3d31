//! Client tokens: credentials Latchkey mints for tools that should not hold the
//! user's OAuth tokens (docs/behaviour.md, "Client tokens").
//!
//! A client token reads `lk_<id>_<secret>`: `id` is [`ID_LEN`] characters of
//! `[a-z0-9]`, public, what lists and revocations name; `secret` is
//! [`SECRET_BYTES`] bytes from the OS CSPRNG in base64url without padding. It is
//! limited to its [`Scope`]s, each one kind of operation on one profile.
//!
//! This module holds the shapes and the parsing (pure). Minting, hashing, the
//! constant-time check and the file live in the engine (`latchkey-daemon`'s
//! `delegation`); which route needs which scope is [`crate::request::Access`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::profile::ProfileName;

/// Length of a client token's id.
pub const ID_LEN: usize = 12;
/// Bytes of randomness in a client token's secret.
pub const SECRET_BYTES: usize = 32;
/// Length of the secret in base64url without padding.
pub const SECRET_LEN: usize = 43;
/// What every client token starts with, so it is recognisable (secret scanners,
/// the daemon telling it from a JWT).
pub const PREFIX: &str = "lk_";
/// The longest name a client token may have.
pub const MAX_NAME_LEN: usize = 64;
/// The most scopes one client token may carry.
pub const MAX_SCOPES: usize = 64;

/// The kinds of operation a scope grants, each on one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// The raw access token (`GET …/token`, `POST …/refresh`).
    Token,
    /// The session without tokens: `GET …/session`, the profile in `GET
    /// /v1/profiles`, its events.
    Session,
    /// Start and follow a login.
    Login,
    /// The API proxy.
    Proxy,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 4] = [
        ScopeKind::Token,
        ScopeKind::Session,
        ScopeKind::Login,
        ScopeKind::Proxy,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Token => "token",
            ScopeKind::Session => "session",
            ScopeKind::Login => "login",
            ScopeKind::Proxy => "proxy",
        }
    }
}

/// One grant: `kind:profile`, such as `token:work`. No wildcard exists: a scope
/// names exactly one profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope {
    pub kind: ScopeKind,
    pub profile: ProfileName,
}

impl Scope {
    pub fn new(kind: ScopeKind, profile: ProfileName) -> Scope {
        Scope { kind, profile }
    }

    /// Parses `kind:profile`. The error says what is wrong in words.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let Some((kind, profile)) = text.split_once(':') else {
            return Err(format!(
                "the scope {:?} is not of the form KIND:PROFILE (kinds: {})",
                shown(text),
                kinds()
            ));
        };
        let kind = ScopeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| {
                format!(
                    "the scope {:?} has an unknown kind (kinds: {})",
                    shown(text),
                    kinds()
                )
            })?;
        if profile.contains('*') || profile.contains('?') {
            return Err(format!(
                "the scope {:?} has a wildcard: a scope names exactly one profile",
                shown(text)
            ));
        }
        let profile = ProfileName::new(profile)
            .map_err(|e| format!("the scope {:?} names no valid profile: {e}", shown(text)))?;
        Ok(Scope { kind, profile })
    }
}

/// Scopes as people read them: `token:work session:home`.
pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A bounded, printable rendering of text that is being refused.
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

fn kinds() -> String {
    ScopeKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.profile)
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Scope, String> {
        Scope::parse(&s)
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

/// A client token's public id: [`ID_LEN`] characters of `[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

impl TokenId {
    /// Checks `id` against the format.
    pub fn new(id: impl Into<String>) -> Result<TokenId, String> {
        let id = id.into();
        if id.len() == ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            Ok(TokenId(id))
        } else {
            Err(format!(
                "{:?} is not a client token id ({ID_LEN} characters of a-z and 0-9)",
                shown(&id)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TokenId {
    type Error = String;
    fn try_from(s: String) -> Result<TokenId, String> {
        TokenId::new(s)
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> String {
        id.0
    }
}

/// A presented client token split into its id and its secret, format checked
/// only: whether it is valid is the engine's decision.
#[derive(PartialEq, Eq)]
pub struct Presented<'a> {
    pub id: TokenId,
    /// The base64url secret as presented.
    pub secret: &'a str,
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl<'a> Presented<'a> {
    /// Splits `lk_<id>_<secret>`; `None` when the text does not have that shape.
    pub fn parse(token: &'a str) -> Option<Presented<'a>> {
        let rest = token.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_at_checked(ID_LEN)?;
        let secret = secret.strip_prefix('_')?;
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if secret.len() != SECRET_LEN || !secret.bytes().all(base64url) {
            return None;
        }
        Some(Presented {
            id: TokenId::new(id).ok()?,
            secret,
        })
    }
}

/// The file `state/client-tokens`: every client token minted and not revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFile {
    /// [`TOKEN_FILE_VERSION`]; a newer one is refused and never overwritten.
    pub version: u32,
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
}

/// The format version of [`TokenFile`] this build reads and writes.
pub const TOKEN_FILE_VERSION: u32 = 1;

/// One client token at rest: never its secret, only the secret's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// SHA-256 of the secret's base64url text, hex.
    pub secret_sha256: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None`: until revoked.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Unix seconds, as last written (the daemon writes it at most once a minute).
    #[serde(default)]
    pub last_used_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_as_kind_colon_profile() {
        let s = Scope::parse("token:work").unwrap();
        assert_eq!(s.kind, ScopeKind::Token);
        assert_eq!(s.profile.as_str(), "work");
        assert_eq!(s.to_string(), "token:work");
        for k in ScopeKind::ALL {
            let text = format!("{}:p-1", k.as_str());
            assert_eq!(Scope::parse(&text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn unknown_kinds_wildcards_and_bad_profiles_are_refused_with_a_reason() {
        for (text, says) in [
            ("token", "not of the form"),
            ("admin:work", "unknown kind"),
            ("*:work", "unknown kind"),
            ("token:*", "wildcard"),
            ("token:wo*", "wildcard"),
            ("session:", "no valid profile"),
            ("token:../x", "no valid profile"),
            ("TOKEN:work", "unknown kind"),
        ] {
            let e = Scope::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn presented_tokens_are_split_by_shape_only() {
        let secret = "A".repeat(SECRET_LEN);
        let token = format!("lk_abcdef012345_{secret}");
        let p = Presented::parse(&token).unwrap();
        assert_eq!(p.id.as_str(), "abcdef012345");
        assert_eq!(p.secret, secret);
        assert!(!format!("{p:?}").contains(&secret));
        for bad in [
            String::new(),
            "lk_".into(),
            format!("lk_abcdef01234_{secret}"),
            format!("lk_ABCDEF012345_{secret}"),
            format!("lk_abcdef012345{secret}"),
            format!("lk_abcdef012345_{secret}A"),
            format!("lk_abcdef012345_{}", &secret[1..]),
            format!("xx_abcdef012345_{secret}"),
            format!("lk_abcdef012345_{}=", &secret[1..]),
            "lk_é".into(),
        ] {
            assert!(Presented::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn token_ids_are_twelve_lowercase_letters_or_digits() {
        assert!(TokenId::new("0123456789az").is_ok());
        assert!(TokenId::new("0123456789a").is_err());
        assert!(TokenId::new("0123456789aZ").is_err());
        assert!(TokenId::new("0123456789a-").is_err());
    }
}
