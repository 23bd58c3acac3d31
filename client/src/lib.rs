//! The Latchkey client: the `latchkey` CLI's shared pieces and, with the daemon
//! issue, `latchkey::Client` (socket first, embedded engine as fallback).
//!
//! Today every command runs the embedded engine from `latchkey-daemon` in-process.
//!
//! Architecture invariant: this crate never links the daemon's server stack (no
//! axum); `cargo tree -p latchkey -e normal` proves it in CI.

pub mod error;

pub use error::Error;
