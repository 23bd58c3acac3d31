//! Encoding and decoding of vault files (the layout is documented in
//! `latchkey_proto::vault`).
//!
//! Decoding is split in two so the caller can look up (or derive) the key between
//! the steps: [`parse`] checks the framing and reads the header without any key;
//! [`decrypt`] authenticates the whole prefix and header as associated data and
//! opens the ciphertext. Neither step panics on any input: a property test feeds
//! them arbitrary bytes.

use latchkey_proto::vault::{
    FORMAT_VERSION, MAGIC, MAX_HEADER_LEN, PREFIX_LEN, SessionRecord, VaultHeader,
};

use super::crypto::{self, KeyBytes};

/// Why bytes are not a vault this build can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Framing or header is broken; the reason is safe to show.
    Malformed(String),
    /// A newer format version than this build knows.
    UnsupportedVersion(u16),
    /// Authentication failed (tampered, truncated, other key).
    Undecryptable,
}

/// A vault whose framing and header parsed; the ciphertext is still sealed.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub version: u16,
    pub header: VaultHeader,
    /// Magic, version, length and header bytes: the AEAD's associated data.
    aad: &'a [u8],
    ciphertext: &'a [u8],
}

/// Checks the framing and reads the header. Needs no key.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, DecodeError> {
    if bytes.len() < PREFIX_LEN {
        return Err(DecodeError::Malformed("file too short".into()));
    }
    let (magic, rest) = bytes.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(DecodeError::Malformed("wrong magic bytes".into()));
    }
    let version = u16::from_be_bytes([rest[0], rest[1]]);
    if version > FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    if version == 0 {
        return Err(DecodeError::Malformed("format version 0".into()));
    }
    let header_len = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
    if header_len > MAX_HEADER_LEN {
        return Err(DecodeError::Malformed("header length out of range".into()));
    }
    // Bounded by MAX_HEADER_LEN above, so the conversion and addition cannot overflow.
    let header_end = PREFIX_LEN + header_len as usize;
    if bytes.len() < header_end {
        return Err(DecodeError::Malformed("file ends inside the header".into()));
    }
    let header: VaultHeader = serde_json::from_slice(&bytes[PREFIX_LEN..header_end])
        .map_err(|e| DecodeError::Malformed(format!("header: {e}")))?;
    crypto::check_kdf(&header.kdf).map_err(DecodeError::Malformed)?;
    Ok(Parsed {
        version,
        header,
        aad: &bytes[..header_end],
        ciphertext: &bytes[header_end..],
    })
}

/// Authenticates and decrypts a parsed vault with its derived key.
pub fn decrypt(parsed: &Parsed<'_>, key: &KeyBytes) -> Result<SessionRecord, DecodeError> {
    let plain = crypto::open(key, &parsed.header.nonce, parsed.aad, parsed.ciphertext)
        .map_err(|crypto::AeadError| DecodeError::Undecryptable)?;
    // The plaintext was authenticated, so a JSON error here means a writer bug or an
    // incompatible record, not tampering; it is reported as malformed.
    serde_json::from_slice(&plain).map_err(|e| {
        DecodeError::Malformed(format!(
            "session record at line {} column {}: {:?}",
            e.line(),
            e.column(),
            e.classify()
        ))
    })
}

/// Encodes a session under `header` with `key`.
pub fn encode(
    header: &VaultHeader,
    key: &KeyBytes,
    session: &SessionRecord,
) -> Result<Vec<u8>, String> {
    let header_json = serde_json::to_vec(header).map_err(|e| e.to_string())?;
    let header_len = u32::try_from(header_json.len())
        .ok()
        .filter(|&n| n <= MAX_HEADER_LEN)
        .ok_or("header too long")?;
    let mut out = Vec::with_capacity(PREFIX_LEN + header_json.len() + 512);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&header_len.to_be_bytes());
    out.extend_from_slice(&header_json);
    // The plaintext holds tokens: keep it in a zeroizing buffer.
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(session).map_err(|e| e.to_string())?);
    let ct = crypto::seal(key, &header.nonce, &out, &plain)
        .map_err(|crypto::AeadError| "encryption failed".to_string())?;
    out.extend_from_slice(&ct);
    Ok(out)
}
