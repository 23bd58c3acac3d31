//! Cross-process tests (tier 2 of docs/behaviour.md, "Test tiers"): the real `latchkey`
//! binary in a temporary LATCHKEY_HOME with a cleared environment.

mod activation;
mod api_docs;
mod blocking;
mod broken_vault;
mod categories;
mod daemon;
mod delegation;
mod docker;
mod doctor;
mod exec;
mod exit_codes;
mod front;
mod git;
mod kube;
mod lifetimes;
mod login;
mod logout;
mod logs;
mod profiles;
mod providers;
mod proxy;
mod recipes;
mod refresh;
mod runtime;
mod shell;
mod token;
mod troubleshooting;
