//! The key source and the cache of derived vault keys.
//!
//! The default key source is a 32-byte random machine key in `state/key` (0600),
//! made on first use. The vault key is scrypt over it with the vault's salt; a
//! derivation costs about 100 ms by design, so each process keeps derived keys for
//! its whole life and counts every derivation (the daemon reports the count, and
//! the benchmarks prove the daemon removes that cost from token calls).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use latchkey_proto::vault::{KdfParams, SALT_LEN};

use super::crypto::{self, KeyBytes};
use super::fs::{self, Replace};
use crate::error::StorageError;

/// What a derived key is derived from, besides the machine key.
type KeyId = (KdfParams, [u8; SALT_LEN]);

/// Derived keys by (parameters, salt), and the machine key once loaded.
///
/// A std `Mutex` is right here: the sections only look up or insert into a short
/// list and never await. A derivation runs outside those locks, under a lock of its
/// own key only, so callers that miss the same key at once derive it once and
/// other keys are never held up.
#[derive(Debug)]
pub struct KeyCache {
    key_file: PathBuf,
    /// The machine key, with the identity of the file it was read from: a
    /// derivation first checks that the file is still that one (a state folder
    /// reset while the daemon runs gets a new key, and the vaults written since
    /// need it).
    machine_key: Mutex<Option<(Arc<KeyBytes>, fs::FileIdentity)>>,
    derived: Mutex<Vec<(KeyId, Arc<KeyBytes>)>>,
    /// The derivation running for each key, if any (see [`KeyCache::vault_key`]).
    flights: Mutex<Vec<(KeyId, Arc<Mutex<()>>)>>,
    derivations: AtomicU64,
}

impl KeyCache {
    pub fn new(key_file: PathBuf) -> Self {
        KeyCache {
            key_file,
            machine_key: Mutex::new(None),
            derived: Mutex::new(Vec::new()),
            flights: Mutex::new(Vec::new()),
            derivations: AtomicU64::new(0),
        }
    }

    /// How many scrypt derivations this process ran.
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }

    /// The key file this cache reads.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The vault key for `(params, salt)`, derived at most once per process.
    /// `create` allows making the machine key when it does not exist yet (writes do;
    /// reads of an existing vault must not silently make a new, useless key).
    pub fn vault_key(
        &self,
        params: &KdfParams,
        salt: &[u8; SALT_LEN],
        create: bool,
    ) -> Result<Arc<KeyBytes>, StorageError> {
        let id = (*params, *salt);
        if let Some(k) = self.cached(&id) {
            return Ok(k);
        }
        // One derivation per key at a time: callers that miss together (many
        // requests right after another process wrote a new salt) wait for the one
        // running instead of each spending its memory and CPU. Other keys derive
        // meanwhile.
        let flight = {
            let mut flights = lock(&self.flights);
            flights.retain(|(_, f)| Arc::strong_count(f) > 1);
            match flights.iter().find(|(i, _)| *i == id) {
                Some((_, f)) => f.clone(),
                None => {
                    let f = Arc::new(Mutex::new(()));
                    flights.push((id, f.clone()));
                    f
                }
            }
        };
        let _one = lock(&flight);
        if let Some(k) = self.cached(&id) {
            return Ok(k);
        }
        let source = self.machine_key(create)?;
        let key = crypto::derive(&source, salt, params).map_err(|reason| StorageError::BadKey {
            path: self.key_file.clone(),
            reason,
        })?;
        self.derivations.fetch_add(1, Ordering::Relaxed);
        // Counted by the benchmarks from the logs of daemon-less processes.
        tracing::debug!(target: "latchkey::kdf", "derived a vault key");
        let key = Arc::new(key);
        lock(&self.derived).push((id, key.clone()));
        Ok(key)
    }

    fn cached(&self, id: &KeyId) -> Option<Arc<KeyBytes>> {
        lock(&self.derived)
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, k)| k.clone())
    }

    /// The machine key, read again when its file is not the one it was read from
    /// (one `lstat`, on a derivation only: rare by design).
    fn machine_key(&self, create: bool) -> Result<Arc<KeyBytes>, StorageError> {
        let now = fs::identity(&self.key_file)?;
        if let Some((k, read_from)) = lock(&self.machine_key).as_ref()
            && now == Some(*read_from)
        {
            return Ok(k.clone());
        }
        let key = Arc::new(load_or_create(&self.key_file, create)?);
        match fs::identity(&self.key_file)? {
            Some(identity) => *lock(&self.machine_key) = Some((key.clone(), identity)),
            None => *lock(&self.machine_key) = None,
        }
        Ok(key)
    }
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves the
/// data consistent (single push or assignment), so a panic elsewhere cannot have
/// left it half-updated.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn load_or_create(path: &Path, create: bool) -> Result<KeyBytes, StorageError> {
    loop {
        if let Some((bytes, _)) = fs::read_private(path, 64, true)? {
            let bytes = zeroize::Zeroizing::new(bytes);
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| StorageError::BadKey {
                    path: path.to_path_buf(),
                    reason: format!("{} bytes instead of 32", bytes.len()),
                })?;
            return Ok(KeyBytes(arr));
        }
        if !create {
            return Err(StorageError::BadKey {
                path: path.to_path_buf(),
                reason: "the file is missing, so no existing vault can be decrypted".into(),
            });
        }
        let fresh = KeyBytes(crypto::random::<32>().map_err(|_| StorageError::Random)?);
        match fs::write_atomic(path, &fresh.0, Replace::CreateNew) {
            Ok(()) => return Ok(fresh),
            // Another process made the key first: use theirs (next loop turn).
            Err(StorageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams::Scrypt {
        log_n: 10,
        r: 8,
        p: 1,
    };

    #[test]
    fn derives_once_per_salt_and_makes_the_key_once() {
        let d = tempfile::tempdir().unwrap();
        let kf = d.path().join("key");
        let cache = KeyCache::new(kf.clone());
        assert!(
            cache.vault_key(&FAST, &[1; 32], false).is_err(),
            "no key yet"
        );
        let a = cache.vault_key(&FAST, &[1; 32], true).unwrap();
        let a2 = cache.vault_key(&FAST, &[1; 32], false).unwrap();
        assert_eq!(a, a2);
        assert_eq!(cache.derivations(), 1);
        cache.vault_key(&FAST, &[2; 32], false).unwrap();
        assert_eq!(cache.derivations(), 2);
        assert_eq!(std::fs::read(&kf).unwrap().len(), 32);
        // A second process (a new cache) reads the same machine key.
        let other = KeyCache::new(kf);
        assert_eq!(other.vault_key(&FAST, &[1; 32], false).unwrap(), a);
    }

    #[test]
    fn callers_missing_the_same_key_at_once_derive_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(KeyCache::new(dir.path().join("key")));
        cache.vault_key(&FAST, &[9; 32], true).unwrap();
        let before = cache.derivations();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || cache.vault_key(&FAST, &[7; 32], false).unwrap())
            })
            .collect();
        let keys: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(cache.derivations() - before, 1);
    }

    #[test]
    fn wrong_length_key_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let kf = d.path().join("key");
        fs::write_atomic(&kf, b"short", Replace::CreateNew).unwrap();
        let err = KeyCache::new(kf)
            .vault_key(&FAST, &[1; 32], true)
            .unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
    }
}
