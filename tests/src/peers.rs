//! The peers the benchmark measures Latchkey against (SPEC §8): oidc-agent and gh.
