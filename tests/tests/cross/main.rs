//! Cross-process tests (SPEC §10, tier 2): the real `latchkey` binary in a
//! temporary LATCHKEY_HOME with a cleared environment.

mod login;
mod logs;
mod profiles;
mod refresh;
mod token;
