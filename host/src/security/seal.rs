//! Sealing: ChaCha20-Poly1305 with a 256-bit master key.
//!
//! The master key comes from `LLMOS_MASTER_KEY` (64 hex digits) or the file
//! `<home>/master.key`, created with mode 0600 on first use. A sealed value is
//! `nonce (12 bytes) ‖ ciphertext+tag`, with a random nonce per value; callers bind values to
//! where they are stored through the associated data.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Environment variable holding the master key as 64 hex digits.
pub const MASTER_KEY_ENV: &str = "LLMOS_MASTER_KEY";

/// Errors of sealing and of the master key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The sealed value was altered, belongs elsewhere, or the master key is not the one it
    /// was sealed with.
    #[error("cannot open sealed value: wrong master key, or the value was altered or moved")]
    Open,
    /// `LLMOS_MASTER_KEY` is not 64 hex digits.
    #[error("{MASTER_KEY_ENV} must be 64 hex digits (32 bytes)")]
    BadEnvKey,
    /// The key file is unreadable, has the wrong size, or could not be created.
    #[error("master key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// Seals and opens values with the master key.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    /// Key of [`Sealer::fingerprint`], derived from the master key (never the key itself).
    fingerprint_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with this key.
    pub fn from_key(key: [u8; 32]) -> Self {
        let fingerprint_key = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .map(|m| m.chain_update(b"llmos fingerprint key v1").finalize().into_bytes().into())
            .unwrap_or_default();
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            fingerprint_key,
        }
    }

    /// HMAC-SHA-256 of `data` under a key derived from the master key, separated by `context`.
    pub fn fingerprint(&self, context: &str, data: &[u8]) -> [u8; 32] {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key)
            .map(|m| {
                m.chain_update((context.len() as u64).to_be_bytes())
                    .chain_update(context.as_bytes())
                    .chain_update(data)
                    .finalize()
                    .into_bytes()
                    .into()
            })
            .unwrap_or_default()
    }

    /// The master key of a data location: `LLMOS_MASTER_KEY` if set, else `<home>/master.key`,
    /// created (0600, random) when missing.
    pub fn for_home(home: &Path) -> Result<Self, SealError> {
        if let Ok(hex_key) = std::env::var(MASTER_KEY_ENV)
            && !hex_key.is_empty()
        {
            let bytes = hex::decode(hex_key.trim()).map_err(|_| SealError::BadEnvKey)?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadEnvKey)?;
            return Ok(Self::from_key(key));
        }
        Self::from_key_file(&home.join("master.key"))
    }

    /// Reads the key file, or creates it with a random key and mode 0600.
    pub fn from_key_file(path: &Path) -> Result<Self, SealError> {
        let err = |message: String| SealError::KeyFile {
            path: path.into(),
            message,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|b: Vec<u8>| err(format!("{} bytes; expected 32", b.len())))?;
                Ok(Self::from_key(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let key: [u8; 32] = ChaCha20Poly1305::generate_key(&mut OsRng).into();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
                f.write_all(&key).map_err(|e| err(e.to_string()))?;
                f.sync_all().map_err(|e| err(e.to_string()))?;
                Ok(Self::from_key(key))
            }
            Err(e) => Err(err(e.to_string())),
        }
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
        if sealed.len() < 12 + 16 {
            return Err(SealError::Open);
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SealError::Open)
    }
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
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/master.key");
        let sealed = Sealer::from_key_file(&path).unwrap().seal(b"x", b"");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            Sealer::from_key_file(&path)
                .unwrap()
                .open(&sealed, b"")
                .unwrap(),
            b"x"
        );
    }
}
