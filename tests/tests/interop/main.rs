//! The interop tier (tier 3 of docs/behaviour.md, "Test tiers"): the real `latchkey`
//! and `latchkeyd` binaries against the real `oidc-provider` npm package on loopback.
//!
//! Needs `node`, `interop/node_modules` and, for the browser logins, Debian's
//! Chromium: `scripts/interop-deps` installs them. Without them each test prints a
//! notice and returns early, except with `CI=true`, where it fails.

mod world;

mod browser;
mod client_secret;
mod device;
mod leaks;
mod logout;
mod mcp;
mod proxy;
mod refresh;
