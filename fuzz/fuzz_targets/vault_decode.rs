//! See `latchkey_fuzz::vault` for what this target feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| latchkey_fuzz::vault::run(data));
