//! Client tokens in the engine (docs/behaviour.md, "Client tokens"): minting,
//! checking, listing and revoking the credentials Latchkey gives tools that should
//! not hold the user's OAuth tokens.
//!
//! - A token is `lk_<id>_<secret>`; only the SHA-256 of the secret is kept, beside
//!   the id. A presented token is found by its id and its hash compared in
//!   constant time (`subtle`).
//! - The set lives in `state/client-tokens` ([`store`]), written before memory
//!   changes: a refused write answers local_storage and changes nothing, so no
//!   token is accepted that is not on disk and none refused that still is.
//! - Memory is a cache of the file, checked by the file's identity (one `lstat`)
//!   before every check, as for vaults: a token minted or revoked by another
//!   process counts from the next request on.
//! - `last_used_at` is kept in memory as tokens are used and written with the
//!   file's other changes, or on the daemon's maintenance pass at most once a
//!   minute, so checking a token never waits on a disk write.

pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use latchkey_proto::delegation::{
    self as d, ID_LEN, MAX_NAME_LEN, MAX_SCOPES, Presented, SECRET_BYTES, Scope, ScopeKind,
    TokenId, TokenRecord,
};
use latchkey_proto::profile::ProfileName;
use latchkey_proto::secret::Secret;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use crate::error::StorageError;
use crate::session::slot::lock;
use crate::vault::crypto;
use store::{Snapshot, Store};

/// The longest lifetime a client token can be minted with: ten years.
pub const MAX_TTL: u64 = 10 * 365 * 24 * 3600;
/// How often the daemon writes `last_used_at` at most.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// The name of a token minted without one.
pub const DEFAULT_NAME: &str = "client";

/// What can go wrong with client tokens.
#[derive(Debug, thiserror::Error)]
pub enum DelegationError {
    /// A request that cannot be honoured as given (usage).
    #[error("{0}")]
    Invalid(String),
    #[error("no client token with id {0}")]
    NotFound(TokenId),
    #[error("the client-token file {} is not valid ({reason})", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A presented client token that checked out: what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub id: TokenId,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Verified {
    /// Whether the token holds `kind` on `profile`.
    pub fn allows(&self, kind: ScopeKind, profile: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s.kind == kind && s.profile.as_str() == profile)
    }

    /// The profiles on which the token holds `kind`.
    pub fn profiles(&self, kind: ScopeKind) -> Vec<ProfileName> {
        self.scopes
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.profile.clone())
            .collect()
    }
}

/// Why a presented token was not accepted. Every one of them is the same answer
/// to the caller (401 `invalid_token`); the reason is for the audit line.
#[derive(Debug)]
pub enum Rejection {
    /// Not of the form `lk_<id>_<secret>`.
    Malformed,
    /// No such id, or the secret does not match (revoked tokens are gone).
    Unknown,
    Expired,
    /// The file could not be read: nothing can be checked (fail closed).
    Unreadable(DelegationError),
}

impl Rejection {
    /// A word for the audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Unknown => "unknown",
            Rejection::Expired => "expired",
            Rejection::Unreadable(_) => "unreadable",
        }
    }
}

/// A freshly minted token: the only value that ever holds its secret.
#[derive(Debug)]
pub struct Minted {
    pub token: Secret,
    pub record: TokenRecord,
}

/// The client tokens of one Latchkey home.
#[derive(Debug)]
pub struct ClientTokens {
    store: Store,
    /// The file as last read. std Mutex: never held across I/O that waits on
    /// anyone (a read of the small file at most).
    cache: Mutex<Option<Arc<Snapshot>>>,
    /// Uses not written yet: id → Unix seconds.
    used: Mutex<HashMap<TokenId, i64>>,
    last_written: Mutex<Option<Instant>>,
}

impl ClientTokens {
    pub fn new(state_dir: &Path) -> ClientTokens {
        ClientTokens {
            store: Store::new(state_dir),
            cache: Mutex::new(None),
            used: Mutex::new(HashMap::new()),
            last_written: Mutex::new(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// The set as on disk now: from memory when the file did not change.
    fn snapshot(&self) -> Result<Arc<Snapshot>, DelegationError> {
        let identity = self.store.identity()?;
        if let Some(s) = lock(&self.cache).as_ref()
            && s.identity == identity
        {
            return Ok(s.clone());
        }
        let fresh = Arc::new(self.store.read()?);
        *lock(&self.cache) = Some(fresh.clone());
        Ok(fresh)
    }

    fn remember(&self, snapshot: Snapshot) {
        *lock(&self.cache) = Some(Arc::new(snapshot));
    }

    /// Checks a presented token (the text after `Bearer `) at `now` (Unix seconds)
    /// and records its use.
    pub fn verify(&self, presented: &str, now: i64) -> Result<Verified, Rejection> {
        let p = Presented::parse(presented).ok_or(Rejection::Malformed)?;
        let snapshot = self.snapshot().map_err(Rejection::Unreadable)?;
        let record = snapshot
            .file
            .tokens
            .iter()
            .find(|r| r.id == p.id)
            .ok_or(Rejection::Unknown)?;
        let hash = secret_hash(p.secret);
        if !bool::from(hash.as_bytes().ct_eq(record.secret_sha256.as_bytes())) {
            return Err(Rejection::Unknown);
        }
        if record.expires_at.is_some_and(|e| e <= now) {
            return Err(Rejection::Expired);
        }
        lock(&self.used).insert(record.id.clone(), now);
        Ok(Verified {
            id: record.id.clone(),
            name: record.name.clone(),
            scopes: record.scopes.clone(),
        })
    }

    /// Whether token `id` is still on file and unexpired at `now`: long-lived
    /// answers (the event stream) end once it is not. `false` when the file cannot
    /// be read (fail closed).
    pub fn is_live(&self, id: &TokenId, now: i64) -> bool {
        self.snapshot().is_ok_and(|s| {
            s.file
                .tokens
                .iter()
                .any(|r| r.id == *id && r.expires_at.is_none_or(|e| e > now))
        })
    }

    /// Mints a token with `scopes` (checked here: at least one, no duplicates kept)
    /// at `now`. The file is written before the token exists anywhere else.
    pub fn mint(
        &self,
        name: Option<String>,
        scopes: Vec<Scope>,
        ttl_seconds: Option<u64>,
        now: i64,
    ) -> Result<Minted, DelegationError> {
        let name = check_name(name)?;
        let scopes = check_scopes(scopes)?;
        let expires_at = match ttl_seconds {
            None => None,
            Some(0) => {
                return Err(DelegationError::Invalid(
                    "a client token's lifetime must be at least one second".into(),
                ));
            }
            Some(t) if t > MAX_TTL => {
                return Err(DelegationError::Invalid(format!(
                    "a client token lives at most {} days",
                    MAX_TTL / 86_400
                )));
            }
            Some(t) => Some(now.saturating_add(i64::try_from(t).unwrap_or(i64::MAX))),
        };
        let secret = random_secret()?;
        let secret_sha256 = secret_hash(&secret);
        let (snapshot, record) = self.store.update(|file| {
            let id = loop {
                let id = random_id()?;
                if !file.tokens.iter().any(|r| r.id == id) {
                    break id;
                }
            };
            let record = TokenRecord {
                id,
                name,
                scopes,
                secret_sha256,
                created_at: now,
                expires_at,
                last_used_at: None,
            };
            file.tokens.push(record.clone());
            Ok((true, record))
        })?;
        self.remember(snapshot);
        let token = Secret::new(format!("{}{}_{}", d::PREFIX, record.id, secret.as_str()));
        Ok(Minted { token, record })
    }

    /// Every token, without secrets, with the latest use this process saw.
    pub fn list(&self) -> Result<Vec<TokenRecord>, DelegationError> {
        let snapshot = self.snapshot()?;
        let used = lock(&self.used);
        Ok(snapshot
            .file
            .tokens
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.secret_sha256.clear();
                if let Some(&t) = used.get(&r.id) {
                    r.last_used_at = Some(r.last_used_at.map_or(t, |w| w.max(t)));
                }
                r
            })
            .collect())
    }

    /// Revokes token `id`: it is gone from the file before this returns.
    pub fn revoke(&self, id: &TokenId) -> Result<(), DelegationError> {
        let (snapshot, found) = self.store.update(|file| {
            let before = file.tokens.len();
            file.tokens.retain(|r| r.id != *id);
            let found = file.tokens.len() != before;
            Ok((found, found))
        })?;
        self.remember(snapshot);
        lock(&self.used).remove(id);
        if found {
            Ok(())
        } else {
            Err(DelegationError::NotFound(id.clone()))
        }
    }

    /// Writes the uses seen since the last write into `last_used_at`, at most once
    /// per [`LAST_USED_EVERY`] unless `now_anyway` (a graceful stop). Blocking.
    pub fn write_last_used(&self, now_anyway: bool) -> Result<(), DelegationError> {
        if lock(&self.used).is_empty() {
            return Ok(());
        }
        {
            let mut last = lock(&self.last_written);
            if !now_anyway && last.is_some_and(|t| t.elapsed() < LAST_USED_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let used = std::mem::take(&mut *lock(&self.used));
        let result = self.store.update(|file| {
            let mut changed = false;
            for r in &mut file.tokens {
                if let Some(&t) = used.get(&r.id)
                    && r.last_used_at.is_none_or(|w| w < t)
                {
                    r.last_used_at = Some(t);
                    changed = true;
                }
            }
            Ok((changed, ()))
        });
        match result {
            Ok((snapshot, ())) => {
                self.remember(snapshot);
                Ok(())
            }
            Err(e) => {
                // Kept for the next attempt; newer uses seen meanwhile win.
                let mut now = lock(&self.used);
                for (id, t) in used {
                    now.entry(id).or_insert(t);
                }
                Err(e)
            }
        }
    }
}

/// SHA-256 of a secret's text, hex: what the file keeps.
fn secret_hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// [`SECRET_BYTES`] from the OS CSPRNG, base64url without padding.
fn random_secret() -> Result<zeroize::Zeroizing<String>, DelegationError> {
    let bytes = zeroize::Zeroizing::new(
        crypto::random::<SECRET_BYTES>().map_err(|_| StorageError::Random)?,
    );
    Ok(zeroize::Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()),
    ))
}

/// [`ID_LEN`] characters of `[a-z0-9]`, uniformly (bytes past the largest multiple
/// of 36 are drawn again).
fn random_id() -> Result<TokenId, DelegationError> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(ID_LEN);
    while id.len() < ID_LEN {
        for b in crypto::random::<32>().map_err(|_| StorageError::Random)? {
            if b < 252 && id.len() < ID_LEN {
                id.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    TokenId::new(id).map_err(DelegationError::Internal)
}

fn check_name(name: Option<String>) -> Result<String, DelegationError> {
    let name = name.unwrap_or_else(|| DEFAULT_NAME.to_string());
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(DelegationError::Invalid(format!(
            "a client token's name has 1 to {MAX_NAME_LEN} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(DelegationError::Invalid(
            "a client token's name cannot hold control characters".into(),
        ));
    }
    Ok(name)
}

fn check_scopes(mut scopes: Vec<Scope>) -> Result<Vec<Scope>, DelegationError> {
    if scopes.is_empty() {
        return Err(DelegationError::Invalid(
            "a client token needs at least one scope, such as token:PROFILE".into(),
        ));
    }
    scopes.sort();
    scopes.dedup();
    if scopes.len() > MAX_SCOPES {
        return Err(DelegationError::Invalid(format!(
            "a client token has at most {MAX_SCOPES} scopes"
        )));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    fn tokens() -> (tempfile::TempDir, ClientTokens) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let t = ClientTokens::new(&state);
        (dir, t)
    }

    #[test]
    fn a_minted_token_verifies_with_its_scopes_and_its_secret_is_not_stored() {
        let (_d, t) = tokens();
        let m = t
            .mint(Some("ci".into()), vec![scope("token:work")], None, 100)
            .unwrap();
        let text = m.token.expose().to_string();
        assert!(text.starts_with("lk_"), "{text}");
        assert_eq!(text.len(), 3 + ID_LEN + 1 + d::SECRET_LEN);
        let v = t.verify(&text, 101).unwrap();
        assert_eq!(v.name, "ci");
        assert!(v.allows(ScopeKind::Token, "work"));
        assert!(!v.allows(ScopeKind::Token, "home"));
        assert!(!v.allows(ScopeKind::Session, "work"));
        let on_disk = std::fs::read_to_string(t.path()).unwrap();
        let secret = &text[3 + ID_LEN + 1..];
        assert!(!on_disk.contains(secret));
        assert!(on_disk.contains(&secret_hash(secret)));
    }

    #[test]
    fn wrong_secrets_unknown_ids_and_expired_tokens_are_refused() {
        let (_d, t) = tokens();
        let m = t
            .mint(None, vec![scope("session:work")], Some(10), 100)
            .unwrap();
        let text = m.token.expose().to_string();
        assert!(t.verify(&text, 109).is_ok());
        assert!(matches!(t.verify(&text, 110), Err(Rejection::Expired)));
        let mut wrong = text.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(t.verify(&wrong, 101), Err(Rejection::Unknown)));
        let other_id = format!("lk_{}{}", "z".repeat(ID_LEN), &text[3 + ID_LEN..]);
        assert!(matches!(t.verify(&other_id, 101), Err(Rejection::Unknown)));
        assert!(matches!(
            t.verify("Bearer x", 101),
            Err(Rejection::Malformed)
        ));
    }

    #[test]
    fn a_revoked_token_is_refused_and_a_second_revocation_is_not_found() {
        let (_d, t) = tokens();
        let m = t.mint(None, vec![scope("token:work")], None, 1).unwrap();
        t.revoke(&m.record.id).unwrap();
        assert!(matches!(
            t.verify(m.token.expose(), 2),
            Err(Rejection::Unknown)
        ));
        assert!(matches!(
            t.revoke(&m.record.id),
            Err(DelegationError::NotFound(_))
        ));
    }

    #[test]
    fn liveness_follows_revocation_and_expiry() {
        let (_d, t) = tokens();
        let m = t
            .mint(None, vec![scope("session:w")], Some(10), 100)
            .unwrap();
        assert!(t.is_live(&m.record.id, 109));
        assert!(!t.is_live(&m.record.id, 110));
        t.revoke(&m.record.id).unwrap();
        assert!(!t.is_live(&m.record.id, 101));
    }

    #[test]
    fn another_instance_sees_mints_and_revocations_by_the_file() {
        let (d, a) = tokens();
        let b = ClientTokens::new(&d.path().join("state"));
        let m = a.mint(None, vec![scope("token:work")], None, 1).unwrap();
        assert!(b.verify(m.token.expose(), 2).is_ok());
        a.revoke(&m.record.id).unwrap();
        assert!(b.verify(m.token.expose(), 3).is_err());
    }

    #[test]
    fn bad_mints_are_invalid_and_write_nothing() {
        let (_d, t) = tokens();
        for (name, scopes, ttl) in [
            (None, vec![], None),
            (Some(String::new()), vec![scope("token:a")], None),
            (Some("a\nb".to_string()), vec![scope("token:a")], None),
            (Some("x".repeat(65)), vec![scope("token:a")], None),
            (None, vec![scope("token:a")], Some(0)),
            (None, vec![scope("token:a")], Some(MAX_TTL + 1)),
        ] {
            assert!(matches!(
                t.mint(name, scopes, ttl, 1),
                Err(DelegationError::Invalid(_))
            ));
        }
        assert!(!t.path().exists());
    }

    #[test]
    fn uses_are_listed_at_once_and_written_on_request() {
        let (d, t) = tokens();
        let m = t.mint(None, vec![scope("token:w")], None, 1).unwrap();
        assert_eq!(t.list().unwrap()[0].last_used_at, None);
        t.verify(m.token.expose(), 50).unwrap();
        let listed = t.list().unwrap();
        assert_eq!(listed[0].last_used_at, Some(50));
        assert!(listed[0].secret_sha256.is_empty());
        t.write_last_used(true).unwrap();
        let other = ClientTokens::new(&d.path().join("state"));
        assert_eq!(other.list().unwrap()[0].last_used_at, Some(50));
    }

    #[test]
    fn ids_are_drawn_from_the_alphabet() {
        for _ in 0..50 {
            let id = random_id().unwrap();
            assert_eq!(id.as_str().len(), ID_LEN);
        }
    }
}
