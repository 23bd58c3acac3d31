//! The daemon's process hardening. It lives in the engine (`crate::harden`) so the
//! CLI can apply the same during a login; this name stays for the server's callers.

pub use crate::harden::{harden, raise_open_file_limit};
