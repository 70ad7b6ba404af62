//! Sealing: ChaCha20-Poly1305 with 256-bit keys, and keyed hashes (HMAC-SHA-256).
//!
//! A sealed value is `nonce (12 bytes) ‖ ciphertext+tag`, with a random nonce per value;
//! callers bind values to where they are stored through the associated data. The store
//! ([`crate::data::Store`]) seals values with *data keys*, which are themselves sealed
//! ("wrapped") with the master key; where the master key comes from is
//! [`crate::security::master`].

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::PathBuf;

pub use super::master::{MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MASTER_PASSPHRASE_ENV};

/// Errors of sealing and of the master key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The sealed value was altered, belongs elsewhere, or the key is not the one it was
    /// sealed with.
    #[error("cannot open sealed value: wrong key, or the value was altered or moved")]
    Open,
    /// A hex key (`LLMOS_MASTER_KEY`, `LLMOS_NEW_MASTER_KEY`) is not 64 hex digits.
    #[error("{var} must be 64 hex digits (32 bytes)")]
    BadHexKey {
        /// The environment variable.
        var: String,
    },
    /// The key file is unreadable, has the wrong size, or could not be created.
    #[error("master key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The key file can be read or changed by other users.
    #[error(
        "master key file {path} has mode {mode:03o}: group or others can access it; \
         run `chmod 600 {path}` (only its owner may read it)"
    )]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A passphrase could not be used.
    #[error("master passphrase: {0}")]
    Passphrase(String),
    /// More than one master key source is set.
    #[error("{0}")]
    Ambiguous(String),
}

/// Seals and opens values with one key.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with this key.
    pub fn from_key(key: [u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// A fresh random 256-bit key (from the operating system's generator).
    pub fn random_key() -> [u8; 32] {
        ChaCha20Poly1305::generate_key(&mut OsRng).into()
    }

    /// Seals `plain`, bound to `aad`.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        // why: ChaCha20-Poly1305 fails only past 256 GiB of plaintext, far beyond any body
        // or value limit; the signature stays infallible for its many callers.
        #[allow(clippy::expect_used)]
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(ct.len().saturating_add(12));
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed with the same key and `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (Some(nonce), Some(ct)) = (sealed.get(..12), sealed.get(12..)) else {
            return Err(SealError::Open);
        };
        if ct.len() < 16 {
            return Err(SealError::Open);
        }
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SealError::Open)
    }
}

/// HMAC-SHA-256 under a key derived from a root key for one purpose.
#[derive(Clone)]
pub struct KeyedHash {
    key: [u8; 32],
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash(..)")
    }
}

impl KeyedHash {
    /// The hash for `purpose` under `root` (the key is HMAC(root, purpose), never the root).
    pub fn derive(root: &[u8; 32], purpose: &str) -> Self {
        Self {
            key: hmac(root, &[purpose.as_bytes()]),
        }
    }

    /// HMAC of the parts, each prefixed by its length (so `["ab","c"]` ≠ `["a","bc"]`).
    pub fn hash(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut framed = Vec::new();
        for p in parts {
            framed.extend_from_slice(&(p.len() as u64).to_be_bytes());
            framed.extend_from_slice(p);
        }
        hmac(&self.key, &[&framed])
    }
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map(|m| {
            parts
                .iter()
                .fold(m, |m, p| m.chain_update(p))
                .finalize()
                .into_bytes()
                .into()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let s = Sealer::from_key([1; 32]);
        let sealed = s.seal(b"hello", b"ctx");
        assert_eq!(s.open(&sealed, b"ctx").unwrap(), b"hello");
        assert!(s.open(&sealed, b"other").is_err());
        let mut bad = sealed.clone();
        bad[14] ^= 1;
        assert!(s.open(&bad, b"ctx").is_err());
        assert!(Sealer::from_key([2; 32]).open(&sealed, b"ctx").is_err());
        assert!(s.open(&sealed[..20], b"ctx").is_err());
    }

    #[test]
    fn keyed_hashes_depend_on_root_purpose_and_framing() {
        let a = KeyedHash::derive(&[1; 32], "x");
        assert_eq!(a.hash(&[b"k"]), a.hash(&[b"k"]));
        assert_ne!(a.hash(&[b"ab", b"c"]), a.hash(&[b"a", b"bc"]));
        assert_ne!(a.hash(&[b"k"]), KeyedHash::derive(&[1; 32], "y").hash(&[b"k"]));
        assert_ne!(a.hash(&[b"k"]), KeyedHash::derive(&[2; 32], "x").hash(&[b"k"]));
    }
}
