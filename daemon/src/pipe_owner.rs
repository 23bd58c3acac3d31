//! Who runs the other end of a named pipe (Windows), and whether to trust it
//! (docs/behaviour.md, "Security").
//!
//! On Windows the daemon's socket is a pipe with a well-known name. Another user can
//! create that name first: the real daemon then cannot, and the impostor would hand
//! out tokens or its own device codes. Both ends therefore compare the user SID of
//! the pipe server's process with their own:
//! - the client (`latchkey::Client`'s transport), after connecting and before
//!   sending anything: a foreign server is `Refused` (a notice and the embedded
//!   engine);
//! - the daemon, when it cannot create the pipe: a pipe of its own user means
//!   "already running", anyone else's is a loud failure.
//!
//! The decision is [`judge`], a pure function, so it is tested on every platform;
//! reading a SID ([`process_user_sid`]) is Windows-only and, like the rest of the
//! Windows code, type-checked but never run (`scripts/check-windows`). A server
//! whose owner cannot be read is not trusted: this must fail closed.

/// What the pipe server's owner means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The server runs as our own user.
    Ours,
    /// Anyone else, or nobody we can tell: do not trust it. The text says why.
    Foreign(String),
}

/// Decides from our user SID and the pipe server's (each as its string form,
/// `S-1-5-21-...`, or the error met reading it).
pub fn judge(ours: Result<&str, &str>, server: Result<&str, &str>) -> Verdict {
    match (ours, server) {
        (Err(e), _) => Verdict::Foreign(format!("cannot read your own user SID: {e}")),
        (_, Err(e)) => {
            Verdict::Foreign(format!("cannot tell which user runs the pipe server: {e}"))
        }
        // The string form is canonical (upper-case prefix, decimal parts); compared
        // without case all the same, so a spelling difference can only refuse.
        (Ok(a), Ok(b)) if !a.is_empty() && a.eq_ignore_ascii_case(b) => Verdict::Ours,
        (Ok(a), Ok(b)) => {
            Verdict::Foreign(format!("the pipe server runs as {b}, not as you ({a})"))
        }
    }
}

/// The user SID (string form) of the process `pid`, or of this process with `None`.
#[cfg(windows)]
pub fn process_user_sid(pid: Option<u32>) -> std::io::Result<String> {
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    use windows_sys::Win32::Security::{GetTokenInformation, TOKEN_QUERY, TOKEN_USER, TokenUser};
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    /// Closes a handle we opened, on every path.
    struct Owned(HANDLE);
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: the handle was returned open by OpenProcess/OpenProcessToken
            // and is closed once, here. A failed close leaves nothing to do.
            #[allow(unsafe_code)]
            unsafe {
                CloseHandle(self.0);
            }
        }
    }

    let last = std::io::Error::last_os_error;
    #[allow(unsafe_code)]
    // SAFETY: plain Win32 calls with valid out-pointers; every handle opened is
    // wrapped in `Owned` at once; the token buffer is sized by the first call and
    // aligned for TOKEN_USER (u64 storage); the SID pointer it holds points inside
    // that buffer, which lives until the string is made; the string from
    // ConvertSidToStringSidW is NUL-terminated, read once and freed with LocalFree.
    unsafe {
        // The current-process pseudo-handle needs no closing.
        let _process_guard;
        let process = match pid {
            None => GetCurrentProcess(),
            Some(pid) => {
                let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
                if h.is_null() {
                    return Err(last());
                }
                _process_guard = Owned(h);
                h
            }
        };
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(process, TOKEN_QUERY, &mut token) == 0 {
            return Err(last());
        }
        let token = Owned(token);
        let mut len = 0u32;
        // The first call fails by design (ERROR_INSUFFICIENT_BUFFER): it only tells
        // the size of the TOKEN_USER, SID included.
        GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut len);
        if len == 0 {
            return Err(last());
        }
        let mut buf = vec![0u64; (len as usize).div_ceil(8)];
        if GetTokenInformation(token.0, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) == 0 {
            return Err(last());
        }
        let user = &*(buf.as_ptr().cast::<TOKEN_USER>());
        let mut wide: *mut u16 = std::ptr::null_mut();
        if ConvertSidToStringSidW(user.User.Sid, &mut wide) == 0 {
            return Err(last());
        }
        let mut n = 0;
        while *wide.add(n) != 0 {
            n += 1;
        }
        let sid = String::from_utf16_lossy(std::slice::from_raw_parts(wide, n));
        LocalFree(wide.cast());
        Ok(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";
    const OTHER: &str = "S-1-5-21-1004336348-1177238915-682003330-1002";

    #[test]
    fn only_a_server_of_our_own_user_is_trusted() {
        assert_eq!(judge(Ok(ME), Ok(ME)), Verdict::Ours);
        assert_eq!(judge(Ok(ME), Ok(&ME.to_lowercase())), Verdict::Ours);
        assert!(
            matches!(judge(Ok(ME), Ok(OTHER)), Verdict::Foreign(w) if w.contains(OTHER) && w.contains(ME))
        );
        // A prefix is not the same user.
        assert!(matches!(
            judge(Ok(ME), Ok("S-1-5-21-1004336348")),
            Verdict::Foreign(_)
        ));
    }

    #[test]
    fn an_owner_that_cannot_be_read_is_not_trusted() {
        assert!(matches!(
            judge(Ok(ME), Err("access denied")),
            Verdict::Foreign(w) if w.contains("access denied")
        ));
        assert!(matches!(
            judge(Err("no token"), Ok(ME)),
            Verdict::Foreign(_)
        ));
        assert!(matches!(judge(Ok(""), Ok("")), Verdict::Foreign(_)));
    }
}
