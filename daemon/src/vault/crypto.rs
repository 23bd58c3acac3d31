//! The vault's cryptography: scrypt key derivation and XChaCha20-Poly1305.
//!
//! Nothing here is hand-rolled: both primitives come from RustCrypto crates. This
//! module only fixes the parameters, bounds what a (possibly tampered) header may
//! ask the KDF for, and keeps key bytes in zeroizing buffers.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use latchkey_proto::vault::{KdfParams, NONCE_LEN, SALT_LEN};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The lowest scrypt cost accepted anywhere: never below log_n 10.
pub const MIN_LOG_N: u8 = 10;
/// The default scrypt cost (docs/behaviour.md, "Key derivation").
pub const DEFAULT_KDF: KdfParams = KdfParams::Scrypt {
    log_n: 15,
    r: 8,
    p: 1,
};
/// The most memory a header may make scrypt use (128 * r * 2^log_n bytes). A
/// tampered header must not be able to exhaust memory before authentication fails.
const MAX_KDF_MEMORY: u64 = 256 * 1024 * 1024;
/// The most work a header may ask for through parallelism.
const MAX_P: u32 = 16;

/// A 32-byte symmetric key, zeroized on drop. No `Debug` of the bytes, no `Display`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct KeyBytes(pub(crate) [u8; 32]);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes([redacted])")
    }
}

/// Checks KDF parameters read from a header or the config. Returns why not.
pub fn check_kdf(params: &KdfParams) -> Result<(), String> {
    let KdfParams::Scrypt { log_n, r, p } = *params;
    if log_n < MIN_LOG_N {
        return Err(format!(
            "scrypt log_n {log_n} is below the minimum {MIN_LOG_N}"
        ));
    }
    if log_n >= 32 || r == 0 || p == 0 || p > MAX_P {
        return Err(format!(
            "scrypt parameters log_n {log_n}, r {r}, p {p} are out of range"
        ));
    }
    let memory = 128u64
        .saturating_mul(u64::from(r))
        .saturating_mul(1u64 << log_n);
    if memory > MAX_KDF_MEMORY {
        return Err(format!(
            "scrypt parameters log_n {log_n}, r {r} would need {} MiB, more than the allowed {} MiB",
            memory >> 20,
            MAX_KDF_MEMORY >> 20
        ));
    }
    Ok(())
}

/// Derives the vault key from the key source with scrypt. Slow by design: callers
/// cache the result and count every call.
pub fn derive(
    source: &KeyBytes,
    salt: &[u8; SALT_LEN],
    params: &KdfParams,
) -> Result<KeyBytes, String> {
    check_kdf(params)?;
    let KdfParams::Scrypt { log_n, r, p } = *params;
    let params = scrypt::Params::new(log_n, r, p).map_err(|e| e.to_string())?;
    let mut out = KeyBytes([0; 32]);
    scrypt::scrypt(&source.0, salt, &params, &mut out.0).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Encrypts `plaintext` with `aad` authenticated alongside.
pub fn seal(
    key: &KeyBytes,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let cipher = XChaCha20Poly1305::new_from_slice(&key.0).map_err(|_| AeadError)?;
    cipher
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| AeadError)
}

/// Decrypts and authenticates. Any failure is one opaque error on purpose.
pub fn open(
    key: &KeyBytes,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, AeadError> {
    let cipher = XChaCha20Poly1305::new_from_slice(&key.0).map_err(|_| AeadError)?;
    cipher
        .decrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(zeroize::Zeroizing::new)
        .map_err(|_| AeadError)
}

/// The AEAD refused: wrong key, tampered data or (on sealing) an impossible length.
/// Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadError;

/// Fills a buffer from the operating system's CSPRNG.
pub fn random<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams::Scrypt {
        log_n: 10,
        r: 8,
        p: 1,
    };

    #[test]
    fn kdf_bounds() {
        assert!(check_kdf(&DEFAULT_KDF).is_ok());
        assert!(check_kdf(&FAST).is_ok());
        assert!(
            check_kdf(&KdfParams::Scrypt {
                log_n: 9,
                r: 8,
                p: 1
            })
            .is_err()
        );
        assert!(
            check_kdf(&KdfParams::Scrypt {
                log_n: 25,
                r: 8,
                p: 1
            })
            .is_err()
        );
        assert!(
            check_kdf(&KdfParams::Scrypt {
                log_n: 15,
                r: 0,
                p: 1
            })
            .is_err()
        );
        assert!(
            check_kdf(&KdfParams::Scrypt {
                log_n: 15,
                r: 8,
                p: 99
            })
            .is_err()
        );
    }

    #[test]
    fn derivation_depends_on_salt_and_source() {
        let a = derive(&KeyBytes([1; 32]), &[2; SALT_LEN], &FAST).unwrap();
        let b = derive(&KeyBytes([1; 32]), &[3; SALT_LEN], &FAST).unwrap();
        let c = derive(&KeyBytes([4; 32]), &[2; SALT_LEN], &FAST).unwrap();
        let a2 = derive(&KeyBytes([1; 32]), &[2; SALT_LEN], &FAST).unwrap();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let key = KeyBytes([9; 32]);
        let nonce = [1; NONCE_LEN];
        let ct = seal(&key, &nonce, b"header", b"hello").unwrap();
        assert_eq!(&open(&key, &nonce, b"header", &ct).unwrap()[..], b"hello");
        assert!(open(&key, &nonce, b"headex", &ct).is_err());
        assert!(open(&KeyBytes([8; 32]), &nonce, b"header", &ct).is_err());
        assert!(open(&key, &[2; NONCE_LEN], b"header", &ct).is_err());
    }

    #[test]
    fn key_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", KeyBytes([0x41; 32])),
            "KeyBytes([redacted])"
        );
    }
}
