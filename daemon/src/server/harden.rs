//! Process hardening at daemon start (docs/behaviour.md, "Security"): no core dumps,
//! no ptrace attach by other processes of the same user, where the OS allows.
//! Failures are warnings: the daemon still runs, and says what it could not do.

/// Applies what this OS supports.
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
