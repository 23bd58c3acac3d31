//! The real `oidc-provider` npm package on loopback, for the interop tier (SPEC §10, tier 3).
