//! See `latchkey_fuzz::oauth` for what this target feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| latchkey_fuzz::oauth::run(data));
