//! The inventory file's envelope, `base64(iv[12] || AES-GCM ciphertext || tag[16])`
//! (src/crypto.rs), read the way the inventory file is loaded: plaintext JSON
//! when it starts with `{`, else decrypted with the key, then parsed.
//!
//! The first byte picks a mode:
//! - even: the rest is a file's contents, opened with each key size (the
//!   well-known key, a 24- and a 32-byte key) and, if it opens, parsed;
//! - odd: structured round trip: a key (16, 24 or 32 bytes, or a bad length)
//!   and a plaintext from the input; encrypt → decrypt gives the plaintext
//!   back, whitespace in the envelope is ignored, and any altered or
//!   truncated envelope is refused, never accepted or panicking.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use promsnmp::crypto::{CryptoError, InventoryCipher, WELL_KNOWN_KEY};
use promsnmp::inventory::Inventory;

fn ciphers() -> &'static [InventoryCipher; 3] {
    static C: OnceLock<[InventoryCipher; 3]> = OnceLock::new();
    C.get_or_init(|| {
        [
            InventoryCipher::new(WELL_KNOWN_KEY.as_bytes()).unwrap(),
            InventoryCipher::new(b"0123456789ABCDEF01234567").unwrap(),
            InventoryCipher::new(b"0123456789ABCDEF0123456789ABCDEF").unwrap(),
        ]
    })
}

/// What `persistence::InventoryFile::load` does with the file's bytes.
fn load(cipher: &InventoryCipher, bytes: &[u8]) {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let plaintext = if first == Some(&b'{') {
        bytes.to_vec()
    } else {
        match cipher.decrypt(bytes) {
            Ok(p) => p,
            Err(CryptoError::KeyLength(_)) => panic!("key length error from a valid cipher"),
            Err(_) => return,
        }
    };
    let _ = Inventory::from_json(&plaintext);
}

fn round_trip(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let key_len = *u.choose(&[16usize, 24, 32, 16, 24, 32, 0, 15, 33])?;
    let key = u.bytes(key_len)?.to_vec();
    let cipher = match InventoryCipher::new(&key) {
        Ok(c) => c,
        Err(CryptoError::KeyLength(n)) => {
            assert!(![16, 24, 32].contains(&n));
            return Ok(());
        }
        Err(e) => panic!("unexpected key error {e:?}"),
    };
    assert!(!format!("{cipher:?}").is_empty());
    let flip_at: usize = u.arbitrary()?;
    let flip_bits: u8 = u.arbitrary()?;
    let cut: usize = u.arbitrary()?;
    let plaintext = u.take_rest();
    let envelope = cipher.encrypt(plaintext);
    assert_eq!(
        cipher
            .decrypt(envelope.as_bytes())
            .expect("own envelope opens"),
        plaintext
    );
    // Whitespace around and inside the base64 text is ignored.
    let spaced = format!("\n  {}\r\n", envelope.replace('A', " A\t"));
    assert_eq!(cipher.decrypt(spaced.as_bytes()).unwrap(), plaintext);
    // Any altered bit of the decoded envelope must be refused.
    let mut raw = base64_decode(&envelope);
    let at = flip_at % raw.len();
    if flip_bits != 0 {
        raw[at] ^= flip_bits;
        let altered = base64_encode(&raw);
        assert!(
            cipher.decrypt(altered.as_bytes()).is_err(),
            "an altered envelope was accepted"
        );
        raw[at] ^= flip_bits;
    }
    // Any truncation too.
    let keep = cut % raw.len();
    let truncated = base64_encode(&raw[..keep]);
    assert!(
        cipher.decrypt(truncated.as_bytes()).is_err(),
        "a truncated envelope was accepted"
    );
    Ok(())
}

// Plain base64 (standard alphabet, padded), to stay independent of the
// implementation under test.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        for cipher in ciphers() {
            load(cipher, rest);
        }
    } else {
        let _ = round_trip(rest);
    }
});
