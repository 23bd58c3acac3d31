//! The Latchkey engine.
//!
//! This crate is the engine as a library: configuration and profiles, the encrypted
//! vault with its locks and key, the OAuth flows and the session operations. The
//! `latchkey` client embeds it for the daemon-less path; the `server` feature adds
//! the `latchkeyd` socket server on top.
//!
//! Architecture invariant: without the `server` feature this crate links no HTTP
//! server stack (no axum), so the client stays lean.

pub mod config;
pub mod convert;
pub mod delegation;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod harden;
pub mod oauth;
pub mod pipe_owner;
pub mod policy;
pub mod proxy;
#[cfg(feature = "server")]
pub mod server;
pub mod session;
pub mod vault;

pub use engine::Engine;
pub use error::{ConfigError, EngineError, StorageError};
