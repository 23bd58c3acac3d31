//! Hooks for the fuzz targets under `fuzz/`; not an API, hidden from the docs.
//!
//! The vault decoder is public (`vault::codec`), but its key type can only be made
//! by the KDF or the key cache. A fuzz target must not run scrypt per input, so it
//! builds a fixed key here instead.

use crate::vault::crypto::KeyBytes;

/// A vault key from raw bytes.
pub fn key_from_bytes(bytes: [u8; 32]) -> KeyBytes {
    KeyBytes(bytes)
}
