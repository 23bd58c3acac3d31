//! The only file-system primitives the engine uses for its private files.
//!
//! - Folders are created 0700 and refused when they are symlinks, owned by another
//!   user, or writable by group or others.
//! - Files are read without following symlinks and refused on the same grounds.
//! - Writes are atomic: a temp file in the same folder created with O_EXCL and mode
//!   0600 from the start (no umask window), write, fsync, rename over the target,
//!   fsync the folder. A reader sees the old file or the new one, never a mix.
//!
//! Architecture invariant: vault, lock, key and config files are written only
//! through this module.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::StorageError;

/// The identity of a file as far as cache invalidation cares (docs/behaviour.md,
/// "Cache invalidation by file identity"): a change of any field means the file was
/// replaced or rewritten. The status-change time is there because no program can
/// set it back, as it can the modification time (a restore that keeps times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.size(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            FileIdentity {
                dev: 0,
                ino: 0,
                size: meta.len(),
                mtime_ns,
                ctime_ns: 0,
            }
        }
    }
}

/// The effective user id, or `None` where the concept does not apply.
pub fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        Some(rustix::process::geteuid().as_raw())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Refuses metadata of a symlink, another user's file, or one writable by group or
/// others. `private` also refuses any group or other permission bit (key files).
#[cfg_attr(not(unix), allow(unused_variables))]
fn check_meta(
    path: &Path,
    meta: &fs::Metadata,
    want_dir: bool,
    private: bool,
) -> Result<(), StorageError> {
    let insecure = |reason: String| StorageError::Insecure {
        path: path.to_path_buf(),
        reason,
    };
    if meta.file_type().is_symlink() {
        return Err(insecure("it is a symbolic link".into()));
    }
    if want_dir && !meta.is_dir() {
        return Err(insecure("it is not a folder".into()));
    }
    if !want_dir && !meta.is_file() {
        return Err(insecure("it is not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Some(uid) = current_uid()
            && meta.uid() != uid
        {
            return Err(insecure(format!(
                "it is owned by uid {}, not by you (uid {uid})",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(insecure(format!(
                "its mode {mode:04o} lets other users write to it"
            )));
        }
        if private && mode & 0o077 != 0 {
            let want = if want_dir { "0700" } else { "0600" };
            return Err(insecure(format!(
                "its mode {mode:04o} lets other users read it (want {want})"
            )));
        }
    }
    Ok(())
}

/// Makes sure `dir` exists as a private folder: creates it (and missing parents)
/// with mode 0700, or checks an existing one.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StorageError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => check_meta(dir, &meta, true, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(dir)
                .map_err(|e| StorageError::io("create the folder", dir, e))?;
            let meta = fs::symlink_metadata(dir)
                .map_err(|e| StorageError::io("inspect the folder", dir, e))?;
            check_meta(dir, &meta, true, false)
        }
        Err(e) => Err(StorageError::io("inspect the folder", dir, e)),
    }
}

/// Checks an existing folder that must let nobody else in at all (mode 0700 or
/// stricter), without creating or changing it; `Ok(false)` when it is missing.
pub fn check_private_dir(dir: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => check_meta(dir, &meta, true, true).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("inspect the folder", dir, e)),
    }
}

/// Checks an existing folder without creating it; `Ok(false)` when it is missing.
pub fn check_dir(dir: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => check_meta(dir, &meta, true, false).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("inspect the folder", dir, e)),
    }
}

/// Makes `opts` refuse a symlink as the final path component (O_NOFOLLOW; ELOOP).
pub(crate) fn no_follow(opts: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    opts
}

/// Opens a file for reading without following a symlink.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    no_follow(OpenOptions::new().read(true)).open(path)
}

/// A file kept open so that its inode number cannot be given to another file
/// for as long as the pin lives: a cache keyed by [`FileIdentity`] then always
/// sees a replaced file as changed, even when the new one has the old one's size
/// and (coarse) times and the file system reuses inode numbers at once (ext4,
/// XFS). Windows reports no inode number (and an open file there can stand in the
/// way of a rename over it), so nothing is pinned there.
pub type Pin = Option<std::sync::Arc<File>>;

fn pin_of(file: File) -> Pin {
    #[cfg(unix)]
    {
        Some(std::sync::Arc::new(file))
    }
    #[cfg(not(unix))]
    {
        drop(file);
        None
    }
}

/// The identity of the file at `path` with a [`Pin`] on it: opened without
/// following a symlink, then `fstat`, so both describe the same file. `None` when
/// missing.
pub fn open_identity(path: &Path) -> Result<Option<(FileIdentity, Pin)>, StorageError> {
    let file = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("open", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| StorageError::io("inspect", path, e))?;
    Ok(Some((FileIdentity::of(&meta), pin_of(file))))
}

/// Reads a private file whole: `Ok(None)` when it does not exist. Refuses symlinks,
/// foreign owners, unsafe modes and files larger than `max_len`.
pub fn read_private(
    path: &Path,
    max_len: u64,
    private: bool,
) -> Result<Option<(Vec<u8>, FileIdentity)>, StorageError> {
    Ok(read_private_pinned(path, max_len, private)?.map(|(bytes, identity, _)| (bytes, identity)))
}

/// [`read_private`], with a [`Pin`] on the very file read.
pub fn read_private_pinned(
    path: &Path,
    max_len: u64,
    private: bool,
) -> Result<Option<(Vec<u8>, FileIdentity, Pin)>, StorageError> {
    let file = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: the final component is a symlink.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(StorageError::Insecure {
                path: path.to_path_buf(),
                reason: "it is a symbolic link".into(),
            });
        }
        Err(e) => return Err(StorageError::io("open", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| StorageError::io("inspect", path, e))?;
    check_meta(path, &meta, false, private)?;
    if meta.len() > max_len {
        return Err(StorageError::Malformed {
            path: path.to_path_buf(),
            reason: format!("{} bytes is larger than any valid file", meta.len()),
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    (&file)
        .take(max_len + 1)
        .read_to_end(&mut buf)
        .map_err(|e| StorageError::io("read", path, e))?;
    Ok(Some((buf, FileIdentity::of(&meta), pin_of(file))))
}

/// The identity of a file without reading it (one `lstat`), `None` when missing.
pub fn identity(path: &Path) -> Result<Option<FileIdentity>, StorageError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(FileIdentity::of(&meta))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("inspect", path, e)),
    }
}

/// How [`write_atomic`] treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Rename over it.
    Overwrite,
    /// Fail with `AlreadyExists` if it exists (for files made once, like the key).
    CreateNew,
}

/// Space claimed on disk for a coming atomic write: a temporary file in the target's
/// folder, created 0600 with O_EXCL, filled with `len` zero bytes and fsync'd.
///
/// This is how a refresh makes sure its result can be saved *before* it spends the
/// refresh token: on a full or read-only disk the reservation fails and the provider
/// is never asked. Writing the real bytes later reuses the claimed blocks, so it
/// needs no new space as long as they fit. Dropping a reservation removes the file.
#[derive(Debug)]
pub struct Reservation {
    tmp: tempfile::NamedTempFile,
    dir: std::path::PathBuf,
}

/// How temporary files of atomic writes and reservations are named: this prefix,
/// then for a profile's vault `<profile>@` (a character no profile name has), a
/// random part, and the suffix.
const TEMP_PREFIX: &str = ".latchkey-";
const TEMP_SUFFIX: &str = ".tmp";

fn temp_prefix(owner: Option<&str>) -> String {
    match owner {
        Some(profile) => format!("{TEMP_PREFIX}{profile}@"),
        None => TEMP_PREFIX.to_string(),
    }
}

/// Removes the temporary files of `profile`'s vault in `dir`: what a process
/// killed between a reservation (or a write) and its commit left behind, at least
/// a reservation's size each. The caller holds the profile's lock, so none of them
/// is anyone's live reservation, however old or young. Failures are only logged:
/// this is housekeeping, and the caller's own write does not depend on it.
pub fn sweep_temps_of(dir: &Path, profile: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix(Some(profile));
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => tracing::info!(
                file = name,
                "removed a temporary file a stopped process left behind"
            ),
            Err(e) => {
                tracing::debug!(file = name, error = %e, "cannot remove a stale temporary file")
            }
        }
    }
}

/// Reserves `len` bytes for a write into `dir` (which must already be private),
/// in a temporary file named for `owner` (a profile) when given.
pub fn reserve(dir: &Path, len: u64, owner: Option<&str>) -> Result<Reservation, StorageError> {
    // tempfile creates with O_EXCL and mode 0600 on Unix: no other user can open the
    // file between its creation and the rename, whatever the umask.
    let prefix = temp_prefix(owner);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| StorageError::io("create a temporary file in", dir, e))?;
    if len > 0 {
        let zeros = [0u8; 4096];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
            tmp.write_all(&zeros[..n])
                .map_err(|e| StorageError::io("reserve space in", dir, e))?;
            left -= n as u64;
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| StorageError::io("reserve space in", dir, e))?;
    }
    Ok(Reservation {
        tmp,
        dir: dir.to_path_buf(),
    })
}

impl Reservation {
    /// Writes `bytes` into the reserved file, trims it to their length, fsyncs it,
    /// renames it over `path` and fsyncs the folder. `path` must be in the folder the
    /// reservation was made in.
    pub fn commit(
        mut self,
        path: &Path,
        bytes: &[u8],
        replace: Replace,
    ) -> Result<(), StorageError> {
        if path.parent() != Some(self.dir.as_path()) {
            return Err(StorageError::Insecure {
                path: path.to_path_buf(),
                reason: "it is not in the folder its space was reserved in".into(),
            });
        }
        let file = self.tmp.as_file_mut();
        file.seek(std::io::SeekFrom::Start(0))
            .and_then(|_| file.write_all(bytes))
            .and_then(|()| file.set_len(bytes.len() as u64))
            .map_err(|e| StorageError::io("write", path, e))?;
        file.sync_all()
            .map_err(|e| StorageError::io("flush", path, e))?;
        match replace {
            // rename(2) replaces a symlink at `path` rather than following it.
            Replace::Overwrite => self.tmp.persist(path).map(drop),
            Replace::CreateNew => self.tmp.persist_noclobber(path).map(drop),
        }
        .map_err(|e| StorageError::io("replace", path, e.error))?;
        match replace {
            Replace::Overwrite => sync_dir_after_change(&self.dir),
            // A file made once (the machine key) must be durable before anything
            // depends on it: vaults written with a key that a power cut then loses
            // could never be opened again.
            Replace::CreateNew => sync_dir(&self.dir)?,
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically and durably, mode 0600. The folder must
/// already be private ([`ensure_private_dir`]).
pub fn write_atomic(path: &Path, bytes: &[u8], replace: Replace) -> Result<(), StorageError> {
    let dir = path.parent().ok_or_else(|| StorageError::Insecure {
        path: path.to_path_buf(),
        reason: "it has no parent folder".into(),
    })?;
    reserve(dir, 0, None)?.commit(path, bytes, replace)
}

/// Renames a file within its folder durably (the folder is fsync'd); `Ok(false)`
/// when it was not there. rename(2) moves a symlink itself, never its target.
pub fn rename(from: &Path, to: &Path) -> Result<bool, StorageError> {
    match fs::rename(from, to) {
        Ok(()) => {
            if let Some(dir) = to.parent() {
                sync_dir_after_change(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("move", from, e)),
    }
}

/// Removes a file durably; `Ok(false)` when it was not there.
pub fn remove(path: &Path) -> Result<bool, StorageError> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir_after_change(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("delete", path, e)),
    }
}

/// Empties the file at `path` in place (no symlink followed) and flushes it;
/// whether that worked. For a file that must stop saying anything when its folder
/// refuses to let it be deleted.
pub fn erase_in_place(path: &Path) -> bool {
    no_follow(OpenOptions::new().write(true))
        .open(path)
        .and_then(|f| f.set_len(0).and_then(|()| f.sync_all()))
        .is_ok()
}

/// fsyncs a folder after a rename or removal in it has happened, so the change
/// survives a crash. A failure is logged, not returned: the change is already what
/// every reader sees, and an error would tell the caller it did not happen (a login
/// that "failed" with its session in place, a refresh kept unsaved behind a vault
/// that already holds it). What is lost is only the guarantee against a power
/// cut before the OS writes the folder back.
fn sync_dir_after_change(dir: &Path) {
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(error = %e, "the change is made, but the folder could not be flushed; it survives a power cut only once the system writes it back");
    }
}

/// fsyncs a folder so a rename or removal in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io("flush the folder", dir, e))
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a folder as a file; NTFS journals the rename itself.
        let _unused: &Path = dir;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn atomic_write_is_0600_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", Replace::Overwrite).unwrap();
        write_atomic(&p, b"two", Replace::Overwrite).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = write_atomic(&p, b"three", Replace::CreateNew).unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // No temp file is left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_pinned_file_keeps_its_inode_number_from_its_successor() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v");
        // Control: does this file system hand a freed inode number out at once
        // (ext4, XFS)? tmpfs does not, and then there is nothing to show here.
        write_atomic(&p, b"one", Replace::Overwrite).unwrap();
        let unpinned = identity(&p).unwrap().unwrap();
        fs::remove_file(&p).unwrap();
        write_atomic(&p, b"two", Replace::Overwrite).unwrap();
        if identity(&p).unwrap().unwrap().ino != unpinned.ino {
            eprintln!("skipped: this file system does not reuse inode numbers at once");
            return;
        }
        let (_, first, pinned) = read_private_pinned(&p, 10, false).unwrap().unwrap();
        fs::remove_file(&p).unwrap();
        write_atomic(&p, b"six", Replace::Overwrite).unwrap();
        let second = identity(&p).unwrap().unwrap();
        assert_ne!(first.ino, second.ino, "the pinned inode number was reused");
        assert_ne!(first, second);
        drop(pinned);
        // Rewritten in place with its modification time put back: still a change.
        let before = identity(&p).unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"SIX", 0).unwrap();
        f.set_modified(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_nanos(u64::try_from(before.mtime_ns).unwrap()),
        )
        .unwrap();
        let after = identity(&p).unwrap().unwrap();
        assert_eq!(
            (after.ino, after.size, after.mtime_ns),
            (before.ino, before.size, before.mtime_ns)
        );
        assert_ne!(after, before, "the status-change time tells them apart");
    }

    #[test]
    fn private_dir_is_created_0700_and_bad_ones_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        ensure_private_dir(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&p).unwrap_err();
        assert!(err.to_string().contains("other users write"), "{err}");
        let link = d.path().join("link");
        symlink(d.path(), &link).unwrap();
        assert!(
            ensure_private_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
    }

    #[test]
    fn reads_refuse_symlinks_and_loose_modes() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        write_atomic(&real, b"x", Replace::Overwrite).unwrap();
        let link = d.path().join("link");
        symlink(&real, &link).unwrap();
        let err = read_private(&link, 10, false).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_private(&real, 10, false).is_ok());
        assert!(
            read_private(&real, 10, true)
                .unwrap_err()
                .to_string()
                .contains("read it")
        );
        fs::set_permissions(&real, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_private(&real, 10, false).is_err());
        assert!(
            read_private(&d.path().join("missing"), 10, false)
                .unwrap()
                .is_none()
        );
    }
}
