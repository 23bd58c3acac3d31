//! Process hardening (docs/behaviour.md, "Security"): no core dumps and no ptrace
//! attach by other processes of the same user, where the OS allows. Both processes
//! that hold tokens in memory for long call it: `latchkeyd` at start, and the
//! `latchkey` CLI for the minutes a login runs.
//!
//! Failures are warnings: the process still runs, and says what it could not do.
//! This module only changes the process's own attributes; it never touches a file.

/// Applies what this OS supports.
///
/// Children inherit the zero core limit (the browser the CLI opens, for one), which
/// is the usual default anyway; the not-dumpable flag is reset by `execve`.
pub fn harden() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{
            DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit,
        };
        // Not dumpable: no core file, and /proc/PID/mem and ptrace are closed to
        // other processes of the same user (the kernel treats us like a setuid one).
        if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            tracing::warn!(error = %e, "cannot disable core dumps and ptrace (PR_SET_DUMPABLE)");
        }
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, none) {
            tracing::warn!(error = %e, "cannot set RLIMIT_CORE to 0");
        }
    }
    // macOS and the BSDs: no core files. ptrace(PT_DENY_ATTACH) is not used: it
    // also blocks the user's own debugger and is trivially bypassed (unverified here).
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        if let Err(e) = setrlimit(Resource::Core, none) {
            tracing::warn!(error = %e, "cannot set RLIMIT_CORE to 0");
        }
        tracing::debug!("ptrace attach is not disabled on this OS");
    }
    #[cfg(not(unix))]
    tracing::warn!("core dumps and ptrace are not disabled on this OS");
}

/// The most open files macOS grants a process whatever its hard limit says
/// (`OPEN_MAX`); a larger soft limit is refused with EINVAL.
#[cfg(target_os = "macos")]
const MACOS_OPEN_MAX: u64 = 10240;

/// Raises the soft limit on open files to the hard limit, for `latchkeyd`: the
/// daemon's sockets, vaults and locks then keep working even when connections it
/// did not ask for (its socket's, a login's callback port's) pile up against the
/// common soft default of 1024. Unix only: elsewhere (Windows) there is no such
/// per-process soft limit and nothing is done. Returns the new soft limit when it
/// was raised.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        // `None` is "unlimited": nothing to raise.
        let current = limit.current?;
        // Linux has no unlimited hard limit for open files; if one shows up, leave
        // the soft limit alone rather than guess a number.
        #[cfg(not(target_os = "macos"))]
        let target = limit.maximum?;
        #[cfg(target_os = "macos")]
        let target = limit
            .maximum
            .map_or(MACOS_OPEN_MAX, |m| m.min(MACOS_OPEN_MAX));
        if target <= current {
            return None;
        }
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = current, to = target, "raised the open-file limit");
                Some(target)
            }
            Err(e) => {
                tracing::warn!(error = %e, soft = current, "cannot raise the open-file limit");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}
