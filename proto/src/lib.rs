//! Latchkey's wire and file-format types.
//!
//! Everything that crosses a process boundary or lands on disk is defined here as
//! plain serde types: the error categories and exit codes, the protocol version,
//! the socket API's closed set of requests ([`request`]) and their bodies
//! ([`api`]), validated profile names, the vault header and the session record
//! inside it, and the rules that turn environment values into paths. The rules they
//! carry are stated in `docs/behaviour.md`.
//!
//! Architecture invariant: this crate performs no I/O. It has no tokio, no sockets
//! and no files; path rules are pure functions of values the caller read from the
//! environment. That keeps it usable from any consumer (the engine, the CLI, tools
//! in other languages reading the OpenAPI file) and trivially testable.

pub mod api;
pub mod delegation;
pub mod error;
pub mod paths;
pub mod profile;
pub mod proxy;
pub mod request;
pub mod secret;
pub mod vault;

/// The socket protocol's major version, sent both ways in the `Latchkey-Protocol`
/// header. It is an explicit integer, deliberately not derived from the crate
/// version: releases that keep the wire format keep the number.
pub const PROTOCOL_VERSION: u32 = 1;

/// The name of the HTTP header that carries [`PROTOCOL_VERSION`].
pub const PROTOCOL_HEADER: &str = "Latchkey-Protocol";
