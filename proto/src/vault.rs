//! The vault file format (docs/behaviour.md, "Vault format").
//!
//! ```text
//! magic            8 bytes   b"LKVAULT\0"
//! format version   u16 BE    FORMAT_VERSION
//! header length    u32 BE    at most MAX_HEADER_LEN
//! header           JSON      VaultHeader
//! ciphertext       rest      XChaCha20-Poly1305(SessionRecord JSON), tag included
//! ```
//!
//! Everything before the ciphertext (magic, version, length and header) is the AEAD's
//! associated data, so a change to any header byte makes the file fail to open.
//! A reader refuses a newer format version and writers never overwrite one. Fields
//! added later to [`VaultHeader`] or [`SessionRecord`] must be optional (`#[serde(default)]`)
//! so that older files keep loading; unknown fields are ignored so that a file written
//! by a newer minor release still opens.
//!
//! The encoding and the cryptography live in the engine (`latchkey-daemon`'s
//! `vault::codec`); this module only defines the shapes.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The first eight bytes of every vault file.
pub const MAGIC: [u8; 8] = *b"LKVAULT\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The bytes before the header: magic, version, header length.
pub const PREFIX_LEN: usize = MAGIC.len() + 2 + 4;
/// A header longer than this is corrupt: real ones are a few hundred bytes.
pub const MAX_HEADER_LEN: u32 = 16 * 1024;
/// A vault larger than this is corrupt: sessions are a few kilobytes.
pub const MAX_FILE_LEN: u64 = 1024 * 1024;
/// Length of the KDF salt.
pub const SALT_LEN: usize = 32;
/// Length of the XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;

/// The key-derivation parameters recorded in a vault header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum KdfParams {
    /// scrypt with cost 2^log_n, block size r, parallelism p.
    Scrypt { log_n: u8, r: u32, p: u32 },
}

/// The authenticated, unencrypted header of a vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultHeader {
    pub kdf: KdfParams,
    /// The KDF salt, kept across rewrites of the same vault so that the daemon
    /// derives the key once.
    #[serde(with = "hex::serde")]
    pub salt: [u8; SALT_LEN],
    /// A fresh random nonce for every write.
    #[serde(with = "hex::serde")]
    pub nonce: [u8; NONCE_LEN],
    /// +1 on every write of this profile's vault.
    pub generation: u64,
    /// Unix seconds when the file was written.
    pub written_at: i64,
}

/// A user as the provider's userinfo endpoint described them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// How a client secret reaches the provider (RFC 6749 §2.3.1): HTTP Basic, or
/// `client_id` and `client_secret` in the form. The profile's `client_auth` key
/// names one; otherwise the engine uses what the provider's metadata announced
/// at login (recorded in [`SessionRecord::token_auth`]), else Basic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMethod {
    Basic,
    Post,
}

/// The session as stored, encrypted, inside the vault.
///
/// Token fields are [`Secret`]s: the record's `Debug` output is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The issuer the session belongs to, so a profile re-pointed at another
    /// provider never sends this session's tokens there.
    pub issuer: String,
    pub client_id: String,
    pub access_token: Secret,
    /// Usually `Bearer`.
    pub token_type: String,
    /// Unix seconds when the access token expires; `None` when the provider did not say.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Unix seconds when the access token was obtained, for the half-lifetime rule.
    pub issued_at: i64,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    #[serde(default)]
    pub id_token: Option<Secret>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub user: Option<UserInfo>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Set when the provider rejected the refresh token: the session is kept so
    /// that status can say who must log in again, but no token is served from it.
    #[serde(default)]
    pub expired: bool,
    /// Unix seconds of the login that started this session; refreshes keep it, so
    /// a new login is told apart from a refresh.
    #[serde(default)]
    pub logged_in_at: Option<i64>,
    /// The endpoints found at login, so a refresh or logout needs no discovery.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// How the provider's metadata said a client secret goes to the token and
    /// device authorization endpoints (`token_endpoint_auth_methods_supported`),
    /// found at login; `None` when it said nothing usable or was not asked.
    #[serde(default)]
    pub token_auth: Option<ClientAuthMethod>,
    /// The same for the revocation endpoint
    /// (`revocation_endpoint_auth_methods_supported`).
    #[serde(default)]
    pub revocation_auth: Option<ClientAuthMethod>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_with_hex_bytes() {
        let h = VaultHeader {
            kdf: KdfParams::Scrypt {
                log_n: 15,
                r: 8,
                p: 1,
            },
            salt: [7; SALT_LEN],
            nonce: [9; NONCE_LEN],
            generation: 3,
            written_at: 1_700_000_000,
        };
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains("\"name\":\"scrypt\""), "{json}");
        assert!(json.contains(&"07".repeat(SALT_LEN)), "{json}");
        assert_eq!(serde_json::from_str::<VaultHeader>(&json).unwrap(), h);
    }

    #[test]
    fn older_session_without_later_fields_loads() {
        // The minimal record: every field added after the first release is optional.
        let json = r#"{"issuer":"https://id","client_id":"c","access_token":"a",
            "token_type":"Bearer","issued_at":1,"some_future_field":true}"#;
        let s: SessionRecord = serde_json::from_str(json).unwrap();
        assert!(s.refresh_token.is_none() && !s.expired && s.groups.is_empty());
    }

    #[test]
    fn debug_does_not_show_tokens() {
        let json = r#"{"issuer":"https://id","client_id":"c","access_token":"AT-very-secret",
            "token_type":"Bearer","issued_at":1,"refresh_token":"RT-very-secret"}"#;
        let s: SessionRecord = serde_json::from_str(json).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
