//! Where Latchkey keeps its files, as a pure function of environment values.
//!
//! The rules of docs/behaviour.md, "Files and environment": `LATCHKEY_HOME` puts
//! everything under one root (`config.toml`, `state/`, `run/`); otherwise XDG
//! locations (or the platform's equivalents, which the caller passes in the same
//! fields), and for the runtime folder without `XDG_RUNTIME_DIR` a private
//! `latchkey-$UID` folder under the temp dir, which the caller must check for owner
//! and mode before trusting it (as ssh-agent does).
//!
//! Nothing here touches the file system: the caller reads the environment into
//! [`EnvInputs`] once, and tests feed any combination they like.

use std::path::{Path, PathBuf};

/// The environment values the path rules depend on. Empty strings count as unset,
/// as the XDG base directory specification asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvInputs {
    pub latchkey_home: Option<PathBuf>,
    pub latchkey_socket: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    /// The user's home folder (for `~/.config` and `~/.local/state`).
    pub home: Option<PathBuf>,
    /// The system temp folder, for the private runtime-folder fallback.
    pub temp_dir: PathBuf,
    /// The effective user id, naming the private runtime folder.
    pub uid: u32,
}

/// How the runtime folder was chosen, which decides how much it must be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeDirKind {
    /// Under `LATCHKEY_HOME`.
    LatchkeyHome,
    /// Under `XDG_RUNTIME_DIR`, which the session manager created private.
    Xdg,
    /// `latchkey-$UID` under the shared temp folder: anyone could have created it
    /// first, so owner and mode must be verified before use.
    TempFallback,
}

/// The resolved locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `config.toml`.
    pub config_file: PathBuf,
    /// The state folder: key file, `profiles/`.
    pub state_dir: PathBuf,
    /// The runtime folder holding the socket.
    pub runtime_dir: PathBuf,
    pub runtime_dir_kind: RuntimeDirKind,
    /// The daemon's socket (LATCHKEY_SOCKET wins).
    pub socket: PathBuf,
}

/// Why the locations could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Neither LATCHKEY_HOME, the XDG variables nor a home folder are known.
    NoHome,
    /// A variable holds a relative path, which the XDG specification says to ignore
    /// for XDG variables; for LATCHKEY_HOME and LATCHKEY_SOCKET it is an error
    /// because the answer would depend on the current directory.
    Relative(&'static str),
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::NoHome => f.write_str(
                "cannot tell where to keep files: set LATCHKEY_HOME, or HOME / XDG_CONFIG_HOME and XDG_STATE_HOME",
            ),
            PathError::Relative(var) => write!(f, "{var} must be an absolute path"),
        }
    }
}

impl std::error::Error for PathError {}

/// File name of the daemon's socket inside the runtime folder.
pub const SOCKET_FILE: &str = "latchkeyd.sock";
/// Folder name under XDG roots.
pub const APP_DIR: &str = "latchkey";
/// File name of the machine key inside the state folder.
pub const KEY_FILE: &str = "key";
/// Folder of the per-profile vaults and locks inside the state folder.
pub const PROFILES_DIR: &str = "profiles";

fn absolute(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref()
        .filter(|p| !p.as_os_str().is_empty() && p.is_absolute())
}

impl Paths {
    /// Everything under one folder, as `LATCHKEY_HOME=home` gives it: `config.toml`,
    /// `state/`, and `run/` with the socket. For programs that keep their own
    /// Latchkey apart from the person's (and for tests).
    pub fn in_home(home: &Path) -> Paths {
        let runtime_dir = home.join("run");
        Paths {
            config_file: home.join("config.toml"),
            state_dir: home.join("state"),
            socket: runtime_dir.join(SOCKET_FILE),
            runtime_dir,
            runtime_dir_kind: RuntimeDirKind::LatchkeyHome,
        }
    }

    /// Applies the path rules (docs/behaviour.md, "Files and environment") to the
    /// given environment values.
    pub fn resolve(env: &EnvInputs) -> Result<Paths, PathError> {
        let explicit_socket = match env.latchkey_socket.as_deref() {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) if !p.is_absolute() => return Err(PathError::Relative("LATCHKEY_SOCKET")),
            other => other.map(Path::to_path_buf),
        };
        let (config_file, state_dir, runtime_dir, kind) = match env.latchkey_home.as_deref() {
            Some(h) if !h.as_os_str().is_empty() => {
                if !h.is_absolute() {
                    return Err(PathError::Relative("LATCHKEY_HOME"));
                }
                let p = Paths::in_home(h);
                (
                    p.config_file,
                    p.state_dir,
                    p.runtime_dir,
                    p.runtime_dir_kind,
                )
            }
            _ => {
                let home = absolute(&env.home);
                let config_root = absolute(&env.xdg_config_home)
                    .map(Path::to_path_buf)
                    .or_else(|| home.map(|h| h.join(".config")))
                    .ok_or(PathError::NoHome)?;
                let state_root = absolute(&env.xdg_state_home)
                    .map(Path::to_path_buf)
                    .or_else(|| home.map(|h| h.join(".local").join("state")))
                    .ok_or(PathError::NoHome)?;
                let (runtime_dir, kind) = match absolute(&env.xdg_runtime_dir) {
                    Some(r) => (r.join(APP_DIR), RuntimeDirKind::Xdg),
                    None => (
                        env.temp_dir.join(format!("latchkey-{}", env.uid)),
                        RuntimeDirKind::TempFallback,
                    ),
                };
                (
                    config_root.join(APP_DIR).join("config.toml"),
                    state_root.join(APP_DIR),
                    runtime_dir,
                    kind,
                )
            }
        };
        let socket = explicit_socket.unwrap_or_else(|| runtime_dir.join(SOCKET_FILE));
        Ok(Paths {
            config_file,
            state_dir,
            runtime_dir,
            runtime_dir_kind: kind,
            socket,
        })
    }

    /// The folder of per-profile vaults and locks.
    pub fn profiles_dir(&self) -> PathBuf {
        self.state_dir.join(PROFILES_DIR)
    }

    /// The machine key file.
    pub fn key_file(&self) -> PathBuf {
        self.state_dir.join(KEY_FILE)
    }

    /// The vault of one profile. The name must have passed
    /// [`crate::profile::validate_name`], which keeps it a plain file name.
    pub fn vault_file(&self, profile: &str) -> PathBuf {
        self.profiles_dir().join(format!("{profile}.vault"))
    }

    /// The lock file beside a profile's vault.
    pub fn lock_file(&self, profile: &str) -> PathBuf {
        self.profiles_dir().join(format!("{profile}.lock"))
    }
}

/// The Windows named pipe that stands for `socket`: `\\.\pipe\latchkey-` and a
/// 64-bit FNV-1a hash of the socket path in hex. Windows has no socket files in a
/// private folder, so the path the rest of Latchkey reasons about (LATCHKEY_HOME,
/// LATCHKEY_SOCKET) is mapped to one pipe name per path: two homes never share a
/// daemon, and the client and the daemon agree without configuration. The pipe's
/// access list, not its name, keeps other users out (daemon/src/server/listen.rs).
pub fn pipe_name(socket: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in socket.to_string_lossy().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!(r"\\.\pipe\latchkey-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_names_are_stable_and_distinct_per_socket() {
        let a = pipe_name(Path::new("/home/a/run/latchkeyd.sock"));
        assert!(a.starts_with(r"\\.\pipe\latchkey-"), "{a}");
        assert_eq!(a.len(), r"\\.\pipe\latchkey-".len() + 16);
        assert_eq!(a, pipe_name(Path::new("/home/a/run/latchkeyd.sock")));
        assert_ne!(a, pipe_name(Path::new("/home/b/run/latchkeyd.sock")));
        // FNV-1a of the empty string is the offset basis.
        assert_eq!(
            pipe_name(Path::new("")),
            r"\\.\pipe\latchkey-cbf29ce484222325"
        );
    }

    fn base() -> EnvInputs {
        EnvInputs {
            home: Some("/home/ada".into()),
            temp_dir: "/tmp".into(),
            uid: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn latchkey_home_holds_everything() {
        let env = EnvInputs {
            latchkey_home: Some("/lk".into()),
            xdg_config_home: Some("/ignored".into()),
            ..base()
        };
        let p = Paths::resolve(&env).unwrap();
        assert_eq!(p.config_file, PathBuf::from("/lk/config.toml"));
        assert_eq!(p.state_dir, PathBuf::from("/lk/state"));
        assert_eq!(p.runtime_dir, PathBuf::from("/lk/run"));
        assert_eq!(p.socket, PathBuf::from("/lk/run/latchkeyd.sock"));
        assert_eq!(
            p.vault_file("work"),
            PathBuf::from("/lk/state/profiles/work.vault")
        );
        assert_eq!(
            p.lock_file("work"),
            PathBuf::from("/lk/state/profiles/work.lock")
        );
        assert_eq!(p.key_file(), PathBuf::from("/lk/state/key"));
    }

    #[test]
    fn xdg_variables_are_used() {
        let env = EnvInputs {
            xdg_config_home: Some("/c".into()),
            xdg_state_home: Some("/s".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..base()
        };
        let p = Paths::resolve(&env).unwrap();
        assert_eq!(p.config_file, PathBuf::from("/c/latchkey/config.toml"));
        assert_eq!(p.state_dir, PathBuf::from("/s/latchkey"));
        assert_eq!(p.runtime_dir, PathBuf::from("/run/user/1000/latchkey"));
        assert_eq!(p.runtime_dir_kind, RuntimeDirKind::Xdg);
    }

    #[test]
    fn home_defaults_and_private_temp_fallback() {
        let p = Paths::resolve(&base()).unwrap();
        assert_eq!(
            p.config_file,
            PathBuf::from("/home/ada/.config/latchkey/config.toml")
        );
        assert_eq!(
            p.state_dir,
            PathBuf::from("/home/ada/.local/state/latchkey")
        );
        assert_eq!(p.runtime_dir, PathBuf::from("/tmp/latchkey-1000"));
        assert_eq!(p.runtime_dir_kind, RuntimeDirKind::TempFallback);
    }

    #[test]
    fn empty_and_relative_xdg_values_are_ignored() {
        let env = EnvInputs {
            xdg_config_home: Some("".into()),
            xdg_state_home: Some("relative/state".into()),
            xdg_runtime_dir: Some("".into()),
            ..base()
        };
        let p = Paths::resolve(&env).unwrap();
        assert_eq!(
            p.config_file,
            PathBuf::from("/home/ada/.config/latchkey/config.toml")
        );
        assert_eq!(
            p.state_dir,
            PathBuf::from("/home/ada/.local/state/latchkey")
        );
        assert_eq!(p.runtime_dir_kind, RuntimeDirKind::TempFallback);
    }

    #[test]
    fn explicit_socket_wins() {
        let env = EnvInputs {
            latchkey_socket: Some("/x/y.sock".into()),
            ..base()
        };
        assert_eq!(
            Paths::resolve(&env).unwrap().socket,
            PathBuf::from("/x/y.sock")
        );
    }

    #[test]
    fn errors_without_any_root_or_with_relative_overrides() {
        let env = EnvInputs {
            home: None,
            ..base()
        };
        assert_eq!(Paths::resolve(&env), Err(PathError::NoHome));
        let env = EnvInputs {
            latchkey_home: Some("rel".into()),
            ..base()
        };
        assert_eq!(
            Paths::resolve(&env),
            Err(PathError::Relative("LATCHKEY_HOME"))
        );
        let env = EnvInputs {
            latchkey_socket: Some("rel.sock".into()),
            ..base()
        };
        assert_eq!(
            Paths::resolve(&env),
            Err(PathError::Relative("LATCHKEY_SOCKET"))
        );
    }
}
