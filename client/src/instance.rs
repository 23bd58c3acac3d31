//! The daemon's instance lock (`latchkeyd.lock` beside the socket) as the client
//! reads it: which process holds it, and, before `latchkey daemon stop` sends any
//! signal, the proof that this process is the user's own `latchkeyd`
//! (docs/behaviour.md, "Security").
//!
//! Why a proof: the lock file only *names* a pid. Without `XDG_RUNTIME_DIR` the
//! runtime folder lives under the shared temporary folder, and a file there could
//! name any process of the user (an editor, a shell). A signal goes out only when
//! all of these hold:
//! 1. the folder and the lock file are the user's (not symlinks, not writable by
//!    others), so nobody else wrote the pid;
//! 2. the lock is really held (the kernel drops it when its holder dies, so a free
//!    lock names nobody);
//! 3. on Linux, `/proc/locks` shows that very pid holding that very file;
//! 4. on Linux, `/proc/PID/status` shows the process runs as the user (real and
//!    effective uid) and is named `latchkeyd`. (`/proc/PID/exe` cannot be read:
//!    the daemon makes itself non-dumpable, which hides it even from its owner.)
//!
//! Elsewhere (macOS, the BSDs) there is no `/proc` to prove 3 and 4 with, so no
//! signal is sent at all: a daemon that does not answer on its socket must be
//! stopped by hand, and the error says so with the pid.
//!
//! This module never sends a signal; `Client::terminate_daemon` does, with a
//! [`Verified`] that only [`verify`] makes.

use std::fs::{File, TryLockError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The name of the daemon's process (its executable's file name).
const DAEMON_NAME: &str = "latchkeyd";

/// A pid proven to be the user's own latchkeyd holding the instance lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verified(u32);

impl Verified {
    pub(crate) fn pid(self) -> u32 {
        self.0
    }
}

/// Why a pid read from the lock is not signalled. The message names the file and
/// the pid, never anything read from another process beyond its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) pid: Option<u32>,
    pub(crate) lock: PathBuf,
    pub(crate) why: String,
}

/// The pid the lock names while some process holds it; `None` when it is free,
/// missing or unreadable. Unverified: fit for waiting on, never for a signal.
pub(crate) fn held_pid(lock: &Path) -> Option<u32> {
    let mut file = File::open(lock).ok()?;
    match file.try_lock() {
        Err(TryLockError::WouldBlock) => read_pid(&mut file),
        Ok(()) => None,
        Err(TryLockError::Error(e)) => {
            tracing::debug!(error = %e, "cannot test the daemon's instance lock");
            None
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Proves who holds the instance lock: `Ok(None)` when nobody does (no daemon),
/// `Ok(Some)` for the user's own latchkeyd, a [`Refusal`] otherwise.
pub(crate) fn verify(lock: &Path) -> Result<Option<Verified>, Refusal> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let refuse = |pid: Option<u32>, why: String| Refusal {
            pid,
            lock: lock.to_path_buf(),
            why,
        };
        let me = rustix::process::geteuid().as_raw();
        // 1. The folder: another user's, or one others may write to, could hold a
        // lock file anybody wrote.
        let dir = lock.parent().unwrap_or(Path::new("."));
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                return Err(refuse(None, format!("{} is not a folder", dir.display())));
            }
            Ok(m) if m.uid() != me => {
                return Err(refuse(
                    None,
                    format!(
                        "its folder {} belongs to uid {}, not to you",
                        dir.display(),
                        m.uid()
                    ),
                ));
            }
            Ok(m) if m.mode() & 0o022 != 0 => {
                return Err(refuse(
                    None,
                    format!("its folder {} is writable by other users", dir.display()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(refuse(None, format!("cannot inspect its folder: {e}"))),
        }
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(lock)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(refuse(None, format!("cannot open it: {e}"))),
        };
        let meta = file
            .metadata()
            .map_err(|e| refuse(None, format!("cannot inspect it: {e}")))?;
        if !meta.is_file() {
            return Err(refuse(None, "it is not a regular file".into()));
        }
        if meta.uid() != me {
            return Err(refuse(
                None,
                format!("it belongs to uid {}, not to you", meta.uid()),
            ));
        }
        // 2. A free lock names nobody: the kernel released it when its holder died.
        match file.try_lock() {
            Err(TryLockError::WouldBlock) => {}
            Ok(()) => return Ok(None),
            Err(TryLockError::Error(e)) => {
                return Err(refuse(None, format!("cannot test the lock: {e}")));
            }
        }
        let pid =
            read_pid(&mut file).ok_or_else(|| refuse(None, "it names no process id".into()))?;
        #[cfg(target_os = "linux")]
        {
            let dev = meta.dev();
            let locks = std::fs::read_to_string("/proc/locks")
                .map_err(|e| refuse(Some(pid), format!("cannot read /proc/locks: {e}")))?;
            let holders = flock_holders(
                &locks,
                rustix::fs::major(dev),
                rustix::fs::minor(dev),
                meta.ino(),
            );
            if !holders.contains(&pid) {
                return Err(refuse(
                    Some(pid),
                    match holders.first() {
                        Some(h) => {
                            format!("the lock is held by pid {h}, not by pid {pid} it names")
                        }
                        None => format!("the kernel shows no lock on it held by pid {pid}"),
                    },
                ));
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map_err(|e| refuse(Some(pid), format!("cannot read /proc/{pid}/status: {e}")))?;
            judge_process(&status, me).map_err(|why| refuse(Some(pid), why))?;
            Ok(Some(Verified(pid)))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(refuse(
                Some(pid),
                "this system offers no way to prove that the process is your latchkeyd".into(),
            ))
        }
    }
    #[cfg(not(unix))]
    {
        // No instance lock file on Windows: the first pipe instance is the lock.
        let _unused = lock;
        Ok(None)
    }
}

/// The pids `/proc/locks` shows holding a `flock` on the file (`major:minor:inode`,
/// the device numbers in hex). Waiting requests (`->` lines) hold nothing.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn flock_holders(proc_locks: &str, major: u32, minor: u32, inode: u64) -> Vec<u32> {
    let id = format!("{major:02x}:{minor:02x}:{inode}");
    proc_locks
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF"
            (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str()))
                .then(|| f.get(4).and_then(|p| p.parse().ok()))
                .flatten()
        })
        .collect()
}

/// Whether a `/proc/PID/status` text is a latchkeyd of uid `me`: `Name:` (the
/// executable's name, cut to 15 bytes by the kernel) and the real and effective
/// uids of `Uid:`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn judge_process(status: &str, me: u32) -> Result<(), String> {
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
    };
    let name = field("Name:").unwrap_or("");
    let uids: Vec<u32> = field("Uid:")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|u| u.parse().ok())
        .collect();
    match uids.as_slice() {
        [real, effective, ..] if *real == me && *effective == me => {}
        [real, effective, ..] => {
            return Err(format!(
                "the process runs as uid {real} (effective {effective}), not as you (uid {me})"
            ));
        }
        _ => return Err("its owner cannot be read".into()),
    }
    if name != DAEMON_NAME {
        return Err(format!("the process is {name:?}, not {DAEMON_NAME}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: POSIX  ADVISORY  WRITE 900 00:1f:77 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 00:2f:123456 0 EOF
2: -> FLOCK  ADVISORY  WRITE 5151 00:2f:123456 0 EOF
3: FLOCK  ADVISORY  WRITE 31337 08:01:123456 0 EOF
";

    #[test]
    fn the_holder_is_read_for_that_device_and_inode_only() {
        assert_eq!(flock_holders(LOCKS, 0, 0x2f, 123456), vec![4242]);
        assert_eq!(flock_holders(LOCKS, 8, 1, 123456), vec![31337]);
        assert!(flock_holders(LOCKS, 0, 0x1f, 77).is_empty(), "a POSIX lock");
        assert!(flock_holders(LOCKS, 0, 0x2f, 1).is_empty());
    }

    #[test]
    fn only_a_latchkeyd_of_ours_passes() {
        let status = |name: &str, uid: &str| {
            format!("Name:\t{name}\nUmask:\t0022\nUid:\t{uid}\nGid:\t1000\n")
        };
        assert_eq!(
            judge_process(&status("latchkeyd", "1000\t1000\t1000\t1000"), 1000),
            Ok(())
        );
        assert!(
            judge_process(&status("sleep", "1000\t1000\t1000\t1000"), 1000)
                .is_err_and(|w| w.contains("\"sleep\""))
        );
        assert!(
            judge_process(&status("latchkeyd", "1001\t1001\t1001\t1001"), 1000)
                .is_err_and(|w| w.contains("uid 1001"))
        );
        assert!(judge_process(&status("latchkeyd", "1000\t0\t0\t0"), 1000).is_err());
        assert!(judge_process("Name:\tlatchkeyd\n", 1000).is_err());
    }
}
