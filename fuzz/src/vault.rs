//! Target `vault_decode`: the vault file decoder (`vault::codec`), with a fixed key.
//!
//! The first byte picks a mode:
//! - even: the rest is a whole vault file, given to `codec::parse` and, when the
//!   framing holds, to `codec::decrypt`. Random bytes rarely authenticate, so this
//!   mode mostly covers the framing and the header.
//! - odd: the rest is `[header length u16 BE][header JSON][plaintext]`; the target
//!   frames and seals it with the fixed key like a writer would, so the decoder
//!   reaches the authenticated session-record parser with arbitrary JSON.
//!
//! Checked: no panic; what parses is within the format's bounds; a sealed file with
//! a valid header always authenticates; the session-record error names a position,
//! never content (it could hold tokens); what decrypts re-encodes to the same record.

use latchkey_daemon::fuzzing::key_from_bytes;
use latchkey_daemon::vault::codec::{self, DecodeError};
use latchkey_daemon::vault::crypto::{self, KeyBytes};
use latchkey_proto::vault::{FORMAT_VERSION, MAGIC, MAX_HEADER_LEN, SessionRecord, VaultHeader};

/// The fixed key every input is opened with; the seeds were sealed with it.
pub const KEY: [u8; 32] = [0x4c; 32];

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = key_from_bytes(KEY);
    if mode % 2 == 0 {
        if let Err(DecodeError::Malformed(reason)) = open(rest, &key)
            && reason.starts_with("session record")
        {
            // Authenticated but not a record: the reason names a position only.
            assert!(reason.len() < 120, "{reason}");
        }
    } else {
        sealed(rest, &key);
    }
}

/// Parses and decrypts `bytes`; `Err` carries the decoder's own error.
fn open(bytes: &[u8], key: &KeyBytes) -> Result<SessionRecord, DecodeError> {
    let parsed = codec::parse(bytes)?;
    assert!((1..=FORMAT_VERSION).contains(&parsed.version));
    assert!(crypto::check_kdf(&parsed.header.kdf).is_ok());
    let record = codec::decrypt(&parsed, key)?;
    round_trip(&parsed.header, key, &record);
    Ok(record)
}

fn round_trip(header: &VaultHeader, key: &KeyBytes, record: &SessionRecord) {
    let bytes = codec::encode(header, key, record).expect("a decoded vault re-encodes");
    let parsed = codec::parse(&bytes).expect("a re-encoded vault parses");
    assert_eq!(&parsed.header, header);
    let again = codec::decrypt(&parsed, key).expect("a re-encoded vault decrypts");
    assert_eq!(&again, record);
}

fn sealed(rest: &[u8], key: &KeyBytes) {
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (header, plain) = rest.split_at(len);
    let valid_header = serde_json::from_slice::<VaultHeader>(header)
        .ok()
        .filter(|h| crypto::check_kdf(&h.kdf).is_ok());
    let nonce = valid_header.as_ref().map_or([0; 24], |h| h.nonce);
    let mut file = Vec::with_capacity(14 + header.len() + plain.len() + 16);
    file.extend_from_slice(&MAGIC);
    file.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    file.extend_from_slice(&u32::try_from(header.len()).expect("u16 fits").to_be_bytes());
    file.extend_from_slice(header);
    let ct = crypto::seal(key, &nonce, &file, plain).expect("sealing cannot fail");
    file.extend_from_slice(&ct);
    match open(&file, key) {
        Ok(_) => assert!(valid_header.is_some()),
        Err(DecodeError::Malformed(reason)) if valid_header.is_some() => {
            // The header parsed, so only the record can be at fault, and the reason
            // must not quote it.
            assert!(
                reason.starts_with("session record at line ") && reason.len() < 120,
                "{reason}"
            );
            assert!(serde_json::from_slice::<SessionRecord>(plain).is_err());
        }
        Err(e) => assert!(
            valid_header.is_none() || header.len() as u64 > u64::from(MAX_HEADER_LEN),
            "a well-sealed vault with a valid header failed: {e:?}"
        ),
    }
}
