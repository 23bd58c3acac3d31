//! Cross-process test support for Latchkey (tier 2 of docs/behaviour.md, "Test tiers").
//!
//! - [`fake_idp`]: an OAuth 2.0 / OIDC provider with counters, a request log and
//!   scripted faults, usable in-process and as the `fake-idp` binary.
//! - [`harness`]: runs the real `latchkey` binaries hermetically (temporary
//!   `LATCHKEY_HOME`, the caller's LATCHKEY_*, XDG_* and BROWSER cleared).
//! - [`git_server`]: `git http-backend` on loopback behind a token check.
//! - [`leak`]: asserts that no token the provider issued appears in captured output.
//! - [`oidc_provider`]: the real `oidc-provider` npm package, for the interop tier.
//! - [`peers`]: oidc-agent and gh, set up for the benchmark against peers.
//! - [`readme`]: the README's sections and fenced blocks, for tests that run them.
//! - [`upstream`]: raw requests to the API proxy and a recording loopback server.

pub mod fake_idp;
pub mod git_server;
pub mod harness;
pub mod kube_server;
pub mod leak;
pub mod oidc_provider;
pub mod peers;
pub mod readme;
pub mod upstream;
