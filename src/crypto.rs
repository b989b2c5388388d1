//! The inventory envelope shared with the Java PromSNMP:
//! `base64( iv[12] || AES-GCM ciphertext || tag[16] )`, key of 16, 24 or 32
//! bytes (AES-128/192/256). Where the bytes go is `persistence`'s business.

use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::Engine as _;

type Aes192Gcm = AesGcm<Aes192, U12>;

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The key everyone knows: it works, but every start warns about it.
pub const WELL_KNOWN_KEY: &str = "0123456789ABCDEF";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the key is {0} bytes long; AES-GCM needs 16, 24 or 32 bytes")]
    KeyLength(usize),
    #[error("not base64 ({0}); the file is not in the encrypted inventory format")]
    NotBase64(String),
    #[error("too short to hold an IV and a tag ({0} bytes after base64 decoding)")]
    TooShort(usize),
    #[error("decryption failed: wrong key, or the data was altered or truncated")]
    Decrypt,
}

enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

/// AES-GCM with the inventory key.
pub struct InventoryCipher {
    cipher: Cipher,
}

impl fmt::Debug for InventoryCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = match self.cipher {
            Cipher::Aes128(_) => 128,
            Cipher::Aes192(_) => 192,
            Cipher::Aes256(_) => 256,
        };
        write!(f, "InventoryCipher(AES-{bits}-GCM, key hidden)")
    }
}

impl InventoryCipher {
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let cipher = match key.len() {
            16 => Cipher::Aes128(Box::new(
                Aes128Gcm::new_from_slice(key).expect("16-byte key"),
            )),
            24 => Cipher::Aes192(Box::new(
                Aes192Gcm::new_from_slice(key).expect("24-byte key"),
            )),
            32 => Cipher::Aes256(Box::new(
                Aes256Gcm::new_from_slice(key).expect("32-byte key"),
            )),
            n => return Err(CryptoError::KeyLength(n)),
        };
        Ok(InventoryCipher { cipher })
    }

    /// Encrypts with a fresh random IV and returns the base64 envelope.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let nonce = Aes128Gcm::generate_nonce(&mut OsRng);
        let sealed = match &self.cipher {
            Cipher::Aes128(c) => c.encrypt(&nonce, plaintext),
            Cipher::Aes192(c) => c.encrypt(&nonce, plaintext),
            Cipher::Aes256(c) => c.encrypt(&nonce, plaintext),
        }
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(IV_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// Opens a base64 envelope (surrounding whitespace ignored).
    pub fn decrypt(&self, envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let text: Vec<u8> = envelope
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|e| CryptoError::NotBase64(e.to_string()))?;
        if raw.len() < IV_LEN + TAG_LEN {
            return Err(CryptoError::TooShort(raw.len()));
        }
        let (iv, sealed) = raw.split_at(IV_LEN);
        let nonce = Nonce::from_slice(iv);
        match &self.cipher {
            Cipher::Aes128(c) => c.decrypt(nonce, sealed),
            Cipher::Aes192(c) => c.decrypt(nonce, sealed),
            Cipher::Aes256(c) => c.decrypt(nonce, sealed),
        }
        .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_key_size() {
        for key in [
            "0123456789ABCDEF",
            "0123456789ABCDEF01234567",
            "0123456789ABCDEF0123456789ABCDEF",
        ] {
            let c = InventoryCipher::new(key.as_bytes()).unwrap();
            let env = c.encrypt(b"{\"devices\":[]}");
            assert_eq!(c.decrypt(env.as_bytes()).unwrap(), b"{\"devices\":[]}");
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&env)
                .unwrap();
            assert_eq!(raw.len(), 12 + 14 + 16);
        }
    }

    #[test]
    fn refuses_bad_keys_and_data() {
        assert_eq!(
            InventoryCipher::new(b"short").unwrap_err(),
            CryptoError::KeyLength(5)
        );
        let c = InventoryCipher::new(b"0123456789ABCDEF").unwrap();
        let other = InventoryCipher::new(b"FEDCBA9876543210").unwrap();
        let env = c.encrypt(b"secret");
        assert_eq!(
            other.decrypt(env.as_bytes()).unwrap_err(),
            CryptoError::Decrypt
        );
        // Truncated by whole base64 quanta: still base64, but the tag no longer matches.
        assert_eq!(
            c.decrypt(&env.as_bytes()[..env.len() - 4]).unwrap_err(),
            CryptoError::Decrypt
        );
        assert!(matches!(
            c.decrypt(&env.as_bytes()[..20]),
            Err(CryptoError::TooShort(15))
        ));
        assert!(matches!(
            c.decrypt(b"{not base64}"),
            Err(CryptoError::NotBase64(_))
        ));
        assert!(!format!("{c:?}").contains("0123"));
    }

    /// A known-answer vector (NIST GCM test case 3 key/IV, our envelope).
    #[test]
    fn matches_independent_vector() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308").unwrap();
        let iv = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let pt = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255").unwrap();
        let ct_tag = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f59854d5c2af327cd64a62cf35abd2ba6fab4";
        let mut env = iv.clone();
        env.extend(hex::decode(ct_tag).unwrap());
        let b64 = base64::engine::general_purpose::STANDARD.encode(env);
        let c = InventoryCipher::new(&key).unwrap();
        assert_eq!(c.decrypt(b64.as_bytes()).unwrap(), pt);
    }
}
