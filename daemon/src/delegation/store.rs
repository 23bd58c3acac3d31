//! The file `state/client-tokens`: JSON ([`TokenFile`]), 0600, written atomically
//! under its own lock (`state/client-tokens.lock`), read with the same checks as a
//! vault (no symlink, owned by the user, private mode).
//!
//! Every change is a read-modify-write under the lock, so many processes minting
//! at once all survive; and the file is written before anyone's memory changes, so
//! a refused write changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use latchkey_proto::delegation::{TOKEN_FILE_VERSION, TokenFile};

use super::DelegationError;
use crate::vault::fs::{self, FileIdentity, Replace};
use crate::vault::lock::{self, ProfileLock};

/// A token file larger than this is corrupt: a thousand tokens are ~300 KiB.
const MAX_FILE_LEN: u64 = 4 * 1024 * 1024;

/// Where the client tokens of one Latchkey home live.
#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    lock_timeout: Duration,
}

/// The file as read, with the identity it was read at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub identity: Option<FileIdentity>,
    pub file: TokenFile,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            state_dir: state_dir.to_path_buf(),
            path: state_dir.join("client-tokens"),
            lock_path: state_dir.join("client-tokens.lock"),
            lock_timeout: lock::DEFAULT_LOCK_TIMEOUT,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's identity (one `lstat`), `None` when it does not exist.
    pub fn identity(&self) -> Result<Option<FileIdentity>, DelegationError> {
        Ok(fs::identity(&self.path)?)
    }

    /// Reads the file; a missing file is an empty set. A file of a newer format is
    /// refused (and never overwritten, since every write reads first).
    pub fn read(&self) -> Result<Snapshot, DelegationError> {
        let Some((bytes, identity)) = fs::read_private(&self.path, MAX_FILE_LEN, true)? else {
            return Ok(Snapshot {
                identity: None,
                file: TokenFile {
                    version: TOKEN_FILE_VERSION,
                    tokens: Vec::new(),
                },
            });
        };
        let file: TokenFile =
            serde_json::from_slice(&bytes).map_err(|e| DelegationError::Malformed {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        if file.version != TOKEN_FILE_VERSION {
            return Err(DelegationError::Malformed {
                path: self.path.clone(),
                reason: format!(
                    "format version {} (this Latchkey reads {TOKEN_FILE_VERSION}); the file is left untouched",
                    file.version
                ),
            });
        }
        Ok(Snapshot {
            identity: Some(identity),
            file,
        })
    }

    /// Changes the file under its lock: reads it, lets `change` edit it, writes it
    /// back atomically (when `change` says it changed something) and returns the
    /// new snapshot with `change`'s result. Nothing is written when `change` fails.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut TokenFile) -> Result<(bool, T), DelegationError>,
    ) -> Result<(Snapshot, T), DelegationError> {
        let _lock = self.lock()?;
        let mut snapshot = self.read()?;
        let (changed, out) = change(&mut snapshot.file)?;
        if changed {
            let bytes = serde_json::to_vec_pretty(&snapshot.file)
                .map_err(|e| DelegationError::Internal(e.to_string()))?;
            fs::write_atomic(&self.path, &bytes, Replace::Overwrite)?;
            snapshot.identity = fs::identity(&self.path)?;
        }
        Ok((snapshot, out))
    }

    fn lock(&self) -> Result<ProfileLock, DelegationError> {
        fs::ensure_private_dir(&self.state_dir)?;
        Ok(lock::acquire(
            "client-tokens",
            &self.lock_path,
            self.lock_timeout,
        )?)
    }
}
