//! The encrypted session store: one vault file per profile, the lock beside it, the
//! machine key, and the derived-key cache.
//!
//! Architecture invariant: only this module opens, writes, locks or renames vault,
//! lock and key files. Every write is atomic ([`fs::write_atomic`]) and happens
//! under the profile's lock, which [`Vault::store`] and [`Vault::delete`] demand as
//! a [`ProfileLock`] argument. A file of a newer format version is never
//! overwritten. Reads never create anything.

pub mod codec;
pub mod crypto;
pub mod fs;
pub mod key;
pub mod lock;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use latchkey_proto::vault::{KdfParams, MAX_FILE_LEN, SALT_LEN, SessionRecord, VaultHeader};

use crate::error::StorageError;
pub use fs::FileIdentity;
pub use lock::{DEFAULT_LOCK_TIMEOUT, ProfileLock};

/// A decrypted vault and what is needed to notice it changed.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub session: SessionRecord,
    pub generation: u64,
    /// Unix seconds of the write.
    pub written_at: i64,
    pub identity: FileIdentity,
    /// The file `identity` describes, kept open while this value lives
    /// ([`fs::Pin`]): a cache that holds it cannot mistake a successor for it.
    pub pin: fs::Pin,
    /// The KDF parameters the file was written with.
    pub kdf: KdfParams,
}

/// The result of a successful write.
#[derive(Debug, Clone)]
pub struct Stored {
    pub generation: u64,
    /// Unix seconds, as in the header.
    pub written_at: i64,
    pub identity: FileIdentity,
    pub pin: fs::Pin,
    pub kdf: KdfParams,
}

impl Stored {
    /// What a load of the file just written would give.
    pub fn loaded(self, session: SessionRecord) -> Loaded {
        Loaded {
            session,
            generation: self.generation,
            written_at: self.written_at,
            identity: self.identity,
            pin: self.pin,
            kdf: self.kdf,
        }
    }
}

/// The store of all profiles' vaults under one state folder.
#[derive(Debug)]
pub struct Vault {
    state_dir: PathBuf,
    profiles_dir: PathBuf,
    kdf: KdfParams,
    keys: key::KeyCache,
    reads: AtomicU64,
}

impl Vault {
    /// A vault store under `state_dir` that writes new vaults with `kdf`.
    pub fn new(state_dir: PathBuf, kdf: KdfParams) -> Self {
        let profiles_dir = state_dir.join(latchkey_proto::paths::PROFILES_DIR);
        let keys = key::KeyCache::new(state_dir.join(latchkey_proto::paths::KEY_FILE));
        Vault {
            state_dir,
            profiles_dir,
            kdf,
            keys,
            reads: AtomicU64::new(0),
        }
    }

    /// The vault file of a profile. The name is checked again here, so no caller
    /// can make the vault touch a path outside `profiles/`.
    pub fn path(&self, profile: &str) -> Result<PathBuf, StorageError> {
        latchkey_proto::profile::validate_name(profile).map_err(|reason| {
            StorageError::Insecure {
                path: self.profiles_dir.join(profile),
                reason,
            }
        })?;
        Ok(self.profiles_dir.join(format!("{profile}.vault")))
    }

    fn lock_path(&self, profile: &str) -> Result<PathBuf, StorageError> {
        self.path(profile).map(|p| p.with_extension("lock"))
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// When `loaded` was written with other KDF parameters than the configured
    /// ones: a new salt for them, with its key derived now, so that the write that
    /// moves the vault ([`Vault::store_reserved`]) derives nothing. `None` when
    /// nothing is to move, or the key cannot be derived now (the move waits).
    pub fn prepare_rekey(&self, loaded: &Loaded) -> Option<Rekeyed> {
        if loaded.kdf == self.kdf {
            return None;
        }
        let salt = crypto::random::<SALT_LEN>().ok()?;
        match self.keys.vault_key(&self.kdf, &salt, false) {
            Ok(_) => Some(Rekeyed {
                kdf: self.kdf,
                salt,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot move the vault to the configured KDF yet");
                None
            }
        }
    }

    /// How many key derivations this process ran.
    pub fn kdf_derivations(&self) -> u64 {
        self.keys.derivations()
    }

    /// How many vault files this process read and decrypted.
    pub fn vault_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn ensure_dirs(&self) -> Result<(), StorageError> {
        fs::ensure_private_dir(&self.state_dir)?;
        fs::ensure_private_dir(&self.profiles_dir)
    }

    /// Takes the profile's lock, creating the folders if needed.
    pub fn lock(&self, profile: &str, timeout: Duration) -> Result<ProfileLock, StorageError> {
        let path = self.lock_path(profile)?;
        self.ensure_dirs()?;
        lock::acquire(profile, &path, timeout)
    }

    /// One `lstat` of the profile's vault: cheap enough for every request.
    pub fn identity(&self, profile: &str) -> Result<Option<FileIdentity>, StorageError> {
        fs::identity(&self.path(profile)?)
    }

    /// Reads and decrypts the profile's vault; `Ok(None)` when there is none.
    pub fn load(&self, profile: &str) -> Result<Option<Loaded>, StorageError> {
        let path = self.path(profile)?;
        if !fs::check_dir(&self.state_dir)? || !fs::check_dir(&self.profiles_dir)? {
            return Ok(None);
        }
        let Some((bytes, identity, pin)) = fs::read_private_pinned(&path, MAX_FILE_LEN, false)?
        else {
            return Ok(None);
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        let parsed = codec::parse(&bytes).map_err(|e| decode_error(&path, e))?;
        let key = self
            .keys
            .vault_key(&parsed.header.kdf, &parsed.header.salt, false)?;
        let session = codec::decrypt(&parsed, &key).map_err(|e| decode_error(&path, e))?;
        Ok(Some(Loaded {
            session,
            generation: parsed.header.generation,
            written_at: parsed.header.written_at,
            identity,
            pin,
            kdf: parsed.header.kdf,
        }))
    }

    /// Writes `session` as the profile's vault with the next generation. The
    /// existing file's salt is kept (so a long-lived process derives once) unless
    /// the configured KDF parameters changed; a newer-format file is refused and
    /// left untouched.
    pub fn store(
        &self,
        lock: &ProfileLock,
        session: &SessionRecord,
    ) -> Result<Stored, StorageError> {
        self.ensure_dirs()?;
        self.write(lock, session, None, Rekey::IfChanged)
    }

    /// Claims the space a rewrite of the profile's vault will need (see
    /// [`fs::Reservation`]): the size of the current file with as much again as
    /// headroom for tokens that grew, at least [`RESERVE_HEADROOM`].
    pub fn reserve(&self, lock: &ProfileLock) -> Result<fs::Reservation, StorageError> {
        let path = self.path(lock.profile())?;
        self.ensure_dirs()?;
        fs::sweep_temps_of(&self.profiles_dir, lock.profile());
        let current = fs::identity(&path)?.map_or(0, |i| i.size);
        fs::reserve(
            &self.profiles_dir,
            reservation_len(current),
            Some(lock.profile()),
        )
    }

    /// [`Vault::store`] into space claimed earlier by [`Vault::reserve`]. It never
    /// derives a key: this is the write a refresh makes between the provider's
    /// answer and the fsync, and a derivation there would widen the one window in
    /// which a crash loses the session from milliseconds to the KDF's cost. So it
    /// keeps the file's KDF parameters and salt, or moves to the ones `rekey`
    /// prepared (and derived for) before anything was sent.
    pub fn store_reserved(
        &self,
        lock: &ProfileLock,
        reservation: fs::Reservation,
        session: &SessionRecord,
        rekey: Option<Rekeyed>,
    ) -> Result<Stored, StorageError> {
        let rekey = match rekey {
            Some(r) => Rekey::To(r),
            None => Rekey::Never,
        };
        self.write(lock, session, Some(reservation), rekey)
    }

    fn write(
        &self,
        lock: &ProfileLock,
        session: &SessionRecord,
        reservation: Option<fs::Reservation>,
        rekey: Rekey,
    ) -> Result<Stored, StorageError> {
        let path = self.path(lock.profile())?;
        let previous = fs::read_private(&path, MAX_FILE_LEN, false)?;
        let (generation, kept) = match previous.as_ref().map(|(b, _)| codec::parse(b)) {
            None => (0, None),
            Some(Ok(p)) => (
                p.header.generation,
                match rekey {
                    Rekey::To(r) => Some((r.kdf, r.salt)),
                    Rekey::Never => Some((p.header.kdf, p.header.salt)),
                    Rekey::IfChanged => {
                        (p.header.kdf == self.kdf).then_some((p.header.kdf, p.header.salt))
                    }
                },
            ),
            Some(Err(codec::DecodeError::UnsupportedVersion(v))) => {
                return Err(decode_error(
                    &path,
                    codec::DecodeError::UnsupportedVersion(v),
                ));
            }
            // A corrupt file is replaced: the caller (a login) has a fresh session and
            // the old bytes could not be opened by anyone.
            Some(Err(_)) => (0, None),
        };
        let (kdf, salt) = match kept {
            Some(k) => k,
            None => (
                self.kdf,
                crypto::random::<SALT_LEN>().map_err(|_| StorageError::Random)?,
            ),
        };
        let header = VaultHeader {
            kdf,
            salt,
            nonce: crypto::random().map_err(|_| StorageError::Random)?,
            generation: generation.saturating_add(1),
            written_at: unix_now(),
        };
        let key = self.key_for_write(&header)?;
        let bytes =
            codec::encode(&header, &key, session).map_err(|reason| StorageError::Malformed {
                path: path.clone(),
                reason,
            })?;
        match reservation {
            Some(r) => r.commit(&path, &bytes, fs::Replace::Overwrite)?,
            None => {
                fs::sweep_temps_of(&self.profiles_dir, lock.profile());
                fs::reserve(&self.profiles_dir, 0, Some(lock.profile()))?.commit(
                    &path,
                    &bytes,
                    fs::Replace::Overwrite,
                )?;
            }
        }
        // Under the profile's lock no writer of ours can replace it meanwhile. The
        // write is done: failing to pin it (no file descriptor left) only costs
        // the pin, never the write's success.
        let pinned = fs::open_identity(&path).ok().flatten();
        let (identity, pin) = match pinned {
            Some(p) => p,
            None => (
                fs::identity(&path)?.ok_or_else(|| {
                    StorageError::io(
                        "inspect",
                        &path,
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "vanished right after the write",
                        ),
                    )
                })?,
                None,
            ),
        };
        Ok(Stored {
            generation: header.generation,
            written_at: header.written_at,
            identity,
            pin,
            kdf: header.kdf,
        })
    }

    /// The key to write with. The machine key is made here when it does not exist
    /// yet, but never while vaults made with another one remain: a new key would
    /// orphan them ([`StorageError::KeyMissing`] says what to do instead).
    fn key_for_write(
        &self,
        header: &VaultHeader,
    ) -> Result<std::sync::Arc<crypto::KeyBytes>, StorageError> {
        match self.keys.vault_key(&header.kdf, &header.salt, false) {
            Err(StorageError::BadKey { .. }) if fs::identity(self.keys.key_file())?.is_none() => {
                let vaults = self.vault_names()?;
                if !vaults.is_empty() {
                    return Err(StorageError::KeyMissing {
                        path: self.keys.key_file().to_path_buf(),
                        vaults,
                    });
                }
                self.keys.vault_key(&header.kdf, &header.salt, true)
            }
            other => other,
        }
    }

    /// Whether a write could make the machine key, were it missing, once the vault
    /// of `profile` is out of the way: `Err(KeyMissing)` when the key is missing
    /// and other profiles' vaults were made with it. A login checks this before it
    /// moves an unreadable vault aside, so a login that cannot succeed changes
    /// nothing.
    pub fn check_key_for(&self, profile: &str) -> Result<(), StorageError> {
        if fs::identity(self.keys.key_file())?.is_some() {
            return Ok(());
        }
        let vaults: Vec<String> = self
            .vault_names()?
            .into_iter()
            .filter(|n| n != profile)
            .collect();
        if vaults.is_empty() {
            Ok(())
        } else {
            Err(StorageError::KeyMissing {
                path: self.keys.key_file().to_path_buf(),
                vaults,
            })
        }
    }

    /// The profiles that have a vault file.
    fn vault_names(&self) -> Result<Vec<String>, StorageError> {
        let entries = match std::fs::read_dir(&self.profiles_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io("list", &self.profiles_dir, e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".vault"))
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Moves the profile's vault aside as `<name>.vault.broken-<unix time>`, so a new
    /// session can be written without destroying one that may still be recovered
    /// (a restored machine key opens it again). `Ok(None)` when there was none.
    pub fn set_aside(&self, lock: &ProfileLock) -> Result<Option<PathBuf>, StorageError> {
        let path = self.path(lock.profile())?;
        let to = path.with_file_name(format!("{}.vault.broken-{}", lock.profile(), unix_now()));
        Ok(fs::rename(&path, &to)?.then_some(to))
    }

    /// Deletes the profile's vault; `Ok(false)` when there was none. A newer-format
    /// file is deleted too: logging out is an explicit request to forget it.
    ///
    /// When the folder refuses the deletion but the file takes a write (a folder
    /// made read-only by its mode), the file is emptied in place before the error
    /// is returned: an empty vault reads as corrupt, never as a session, so no
    /// later process can bring the logged-out session back from it.
    pub fn delete(&self, lock: &ProfileLock) -> Result<bool, StorageError> {
        let path = self.path(lock.profile())?;
        fs::remove(&path).inspect_err(|_| {
            let empty = std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() == 0);
            if !empty && fs::erase_in_place(&path) {
                tracing::warn!(path = %path.display(), "the vault could not be deleted; its content is erased in place");
            }
        })
    }
}

/// Whether a write may move a vault to the configured KDF parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rekey {
    /// When they differ from the file's: a new salt, and a new key derivation.
    IfChanged,
    /// Never: the file's parameters and salt are kept (the key is cached).
    Never,
    /// To these, whose key [`Vault::prepare_rekey`] derived already.
    To(Rekeyed),
}

/// KDF parameters and a salt whose key is derived and cached: what a refresh moves
/// its vault to without deriving inside its crash window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    kdf: KdfParams,
    salt: [u8; SALT_LEN],
}

/// The least headroom a reservation adds to the current vault's size.
pub const RESERVE_HEADROOM: u64 = 8 * 1024;

/// How many bytes to reserve for rewriting a vault of `current` bytes: twice its
/// size, and at least [`RESERVE_HEADROOM`] more (a new ID token, longer tokens).
pub fn reservation_len(current: u64) -> u64 {
    current.saturating_add(current.max(RESERVE_HEADROOM))
}

fn decode_error(path: &Path, e: codec::DecodeError) -> StorageError {
    let path = path.to_path_buf();
    match e {
        codec::DecodeError::Malformed(reason) => StorageError::Malformed { path, reason },
        codec::DecodeError::UnsupportedVersion(found) => StorageError::UnsupportedVersion {
            path,
            found,
            supported: latchkey_proto::vault::FORMAT_VERSION,
        },
        codec::DecodeError::Undecryptable => StorageError::Undecryptable { path },
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it, which only a broken
/// clock can do).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
