//! The per-profile lock: an exclusive advisory lock on `profiles/<name>.lock`
//! around every read-modify-write of a vault (refresh, login save, logout).
//!
//! The lock is `flock`-style (std `File::lock`), so it is per open file description:
//! it excludes other processes and other threads of this process alike, and the
//! kernel drops it when the holder dies, even on kill -9. Waiting is bounded; on
//! timeout the error names the holder's pid, which each holder writes into the lock
//! file once it has the lock.
//!
//! A [`ProfileLock`] is the proof a caller holds the lock: the vault's write and
//! delete operations take one, so an unlocked write does not compile.
//!
//! A process that holds a session the provider rotated but the disk refused (an
//! *unsaved* session) keeps the lock until the session is written, and marks the
//! lock file `PID unsaved`: the refresh token in the vault is spent, and no other
//! process may send it again. Whoever finds that mark gets
//! [`StorageError::HeldUnsaved`] at once instead of waiting out the timeout.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::StorageError;

/// The bounded wait for a profile lock (docs/behaviour.md, "Locks").
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A held profile lock. Released on drop (closing the file releases it).
#[derive(Debug)]
pub struct ProfileLock {
    profile: String,
    path: PathBuf,
    // Held for its lock; closing the descriptor releases it.
    file: File,
}

impl ProfileLock {
    /// The profile this lock guards.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks the lock as held for an unsaved session (or clears the mark), so other
    /// processes stop waiting for it. The bytes overwrite the pid already there, so
    /// a full disk does not stop this small write.
    pub fn mark_unsaved(&mut self, unsaved: bool) -> Result<(), StorageError> {
        let text = if unsaved {
            format!("{} {UNSAVED_MARK}", std::process::id())
        } else {
            std::process::id().to_string()
        };
        record(&mut self.file, &text).map_err(|e| StorageError::io("write the lock", &self.path, e))
    }
}

/// What the holder of an unsaved session writes after its pid.
const UNSAVED_MARK: &str = "unsaved";

/// Writes `text` over the lock file's content: the write first, then the length,
/// so replacing the few bytes already there needs no new space.
fn record(file: &mut File, text: &str) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.set_len(text.len() as u64)
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    super::fs::no_follow(&mut opts).open(path)
}

/// What the current holder wrote: its pid, and whether it holds an unsaved session.
fn holder(file: &mut File) -> (Option<u32>, bool) {
    let mut s = String::new();
    if file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(64).read_to_string(&mut s))
        .is_err()
    {
        return (None, false);
    }
    let mut words = s.split_whitespace();
    let pid = words.next().and_then(|w| w.parse().ok());
    (pid, words.next() == Some(UNSAVED_MARK))
}

/// Takes the exclusive lock of `profile` at `path`, waiting at most `timeout`.
/// The folder must exist and be private.
pub fn acquire(profile: &str, path: &Path, timeout: Duration) -> Result<ProfileLock, StorageError> {
    let mut file = open_lock_file(path).map_err(|e| StorageError::io("open the lock", path, e))?;
    let start = Instant::now();
    // Polling with a short, growing pause: std offers no timed lock, and a blocking
    // lock in a helper thread could not be abandoned on timeout.
    let mut pause = Duration::from_millis(2);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let (pid, unsaved) = holder(&mut file);
                if unsaved {
                    return Err(StorageError::HeldUnsaved {
                        path: path.to_path_buf(),
                        holder: pid,
                    });
                }
                if start.elapsed() >= timeout {
                    return Err(StorageError::LockTimeout {
                        path: path.to_path_buf(),
                        waited_secs: timeout.as_secs(),
                        holder: pid,
                    });
                }
                std::thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(TryLockError::Error(e)) => return Err(StorageError::io("lock", path, e)),
        }
    }
    // Record who holds the lock, for the timeout message of whoever waits next. A
    // failure here loses only that courtesy, but it also means the disk refuses
    // writes, which the caller is about to find out anyway; report it now.
    record(&mut file, &std::process::id().to_string())
        .map_err(|e| StorageError::io("write the lock", path, e))?;
    Ok(ProfileLock {
        profile: profile.to_string(),
        path: path.to_path_buf(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_times_out_naming_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("work.lock");
        let held = acquire("work", &p, Duration::from_secs(1)).unwrap();
        let err = acquire("work", &p, Duration::from_millis(100)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("held by pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        let again = acquire("work", &p, Duration::from_millis(100)).unwrap();
        assert_eq!(again.profile(), "work");
    }

    #[test]
    fn a_lock_marked_unsaved_is_refused_at_once_naming_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("work.lock");
        let mut held = acquire("work", &p, Duration::from_secs(1)).unwrap();
        held.mark_unsaved(true).unwrap();
        let start = Instant::now();
        let err = acquire("work", &p, Duration::from_secs(20)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5), "no waiting");
        assert!(
            matches!(err, StorageError::HeldUnsaved { holder: Some(pid), .. } if pid == std::process::id()),
            "{err:?}"
        );
        held.mark_unsaved(false).unwrap();
        let err = acquire("work", &p, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, StorageError::LockTimeout { .. }), "{err:?}");
        drop(held);
        acquire("work", &p, Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn waiter_gets_the_lock_when_released() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.lock");
        let held = acquire("w", &p, Duration::from_secs(1)).unwrap();
        let p2 = p.clone();
        let t = std::thread::spawn(move || acquire("w", &p2, Duration::from_secs(5)).map(drop));
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        t.join().unwrap().unwrap();
    }
}
