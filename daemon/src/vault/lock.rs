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

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::StorageError;

/// SPEC §6: the bounded wait for a profile lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A held profile lock. Released on drop (closing the file releases it).
#[derive(Debug)]
pub struct ProfileLock {
    profile: String,
    path: PathBuf,
    // Held for its lock; closing the descriptor releases it.
    _file: File,
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
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    opts.open(path)
}

/// Reads the pid the current holder wrote, if any.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
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
                if start.elapsed() >= timeout {
                    return Err(StorageError::LockTimeout {
                        path: path.to_path_buf(),
                        waited_secs: timeout.as_secs(),
                        holder: holder_pid(&mut file),
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
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| write!(file, "{}", std::process::id()))
        .map_err(|e| StorageError::io("write the lock", path, e))?;
    Ok(ProfileLock {
        profile: profile.to_string(),
        path: path.to_path_buf(),
        _file: file,
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
