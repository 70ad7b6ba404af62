//! Signed plugins: Ed25519 signatures over a component and its manifest, and the trusted
//! publishers (public keys only) that `install` and `upgrade` check them against.
//!
//! - A private key file is a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey
//!   -algorithm ed25519` writes), mode 0600. It never enters the store.
//! - A public key is printed `ed25519:<base64 of the 32 bytes>`; its key id is the first 16 hex
//!   digits of the sha256 of those bytes.
//! - The signed message is domain-separated ([`Subject::message`]): a fixed prefix, the
//!   plugin's name and version, the component's sha256 and the manifest file's sha256.
//! - A signature file (`COMPONENT.wasm.sig`) is JSON ([`SignatureFile`]).
//! - Publishers live in the store's `publishers` tree; a revoked one stays recorded as revoked.

use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{Store, StoreError, Tree};
use crate::security::audit::now_ms;

/// The `format` of a signature file this llmos writes and reads.
pub const SIGNATURE_FORMAT: &str = "llmos-plugin-signature/1";
/// The first line of every signed message (domain separation).
const DOMAIN: &str = "llmos plugin signature v1";
/// The prefix of a printed public key.
const KEY_PREFIX: &str = "ed25519:";

/// Errors of signing, verification and the publisher records. Messages say which check failed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A key file or signature file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A public key that is not `ed25519:<base64 of 32 bytes>`.
    #[error("invalid public key {0:?}: expected ed25519:<base64 of 32 bytes> (as `llmos plugin keygen` prints it)")]
    PublicKey(String),
    /// A signature file that is not the expected JSON.
    #[error("invalid signature file {path}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The signature does not verify; `what` names what changed when it can tell.
    #[error("bad signature: {0}")]
    Bad(String),
    /// Signed by a key no trusted publisher has.
    #[error(
        "signed by key {key_id} ({public_key}), which is not a trusted publisher's; trust it with `llmos plugin publisher add NAME {public_key}`"
    )]
    UnknownKey {
        /// The key id.
        key_id: String,
        /// The public key.
        public_key: String,
    },
    /// Signed by a publisher the operator revoked.
    #[error("signed by publisher {name} (key {key_id}), which was revoked")]
    Revoked {
        /// The publisher.
        name: String,
        /// The key id.
        key_id: String,
    },
    /// `publisher add` of a name or key already recorded, or revoke of an unknown name.
    #[error("{0}")]
    Publisher(String),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key id: the first 16 hex digits of the sha256 of the key's 32 bytes.
    pub fn key_id(&self) -> String {
        let d = Sha256::digest(self.0.as_bytes());
        hex::encode(d.get(..8).unwrap_or_default())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes());
        write!(f, "{KEY_PREFIX}{b}")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = SigningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SigningError::PublicKey(s.to_string());
        let b64 = s.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| bad())
    }
}

/// A new signing key from the operating system's random source.
pub fn generate() -> SigningKey {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

/// The public half of a signing key.
pub fn public_key(key: &SigningKey) -> PublicKey {
    PublicKey(key.verifying_key())
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> SigningError {
    SigningError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Writes a private key as PKCS#8 PEM, mode 0600. Refuses to replace an existing file.
pub fn write_private_key(path: &Path, key: &SigningKey) -> Result<(), SigningError> {
    use std::io::Write;
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| file_err(path, e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            file_err(path, "exists; keygen never replaces a key (choose another --out)")
        } else {
            file_err(path, e)
        }
    })?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| file_err(path, e))
}

/// Reads a private key file (PKCS#8 PEM).
pub fn read_private_key(path: &Path) -> Result<SigningKey, SigningError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        file_err(
            path,
            format!("not an Ed25519 private key in PKCS#8 PEM ({e}); make one with `llmos plugin keygen`"),
        )
    })
}

/// What a signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The plugin's name (from the manifest).
    pub plugin: String,
    /// Its version (from the manifest).
    pub version: String,
    /// sha256 of the component file, hex.
    pub component_sha256: String,
    /// sha256 of the manifest file, hex.
    pub manifest_sha256: String,
}

impl Subject {
    /// The signed bytes: a domain line, then one `key=value` line per field.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{DOMAIN}\nplugin={}\nversion={}\ncomponent-sha256={}\nmanifest-sha256={}\n",
            self.plugin, self.version, self.component_sha256, self.manifest_sha256
        )
        .into_bytes()
    }
}

/// A signature file (`COMPONENT.wasm.sig`). The subject's fields are repeated for people and
/// for precise errors; verification always recomputes them from the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// [`SIGNATURE_FORMAT`].
    pub format: String,
    /// The plugin's name.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// sha256 of the component, hex.
    pub component_sha256: String,
    /// sha256 of the manifest file, hex.
    pub manifest_sha256: String,
    /// The signer's key id.
    pub key_id: String,
    /// The signer's public key, `ed25519:<base64>`.
    pub public_key: String,
    /// The Ed25519 signature of [`Subject::message`], base64.
    pub signature: String,
}

/// Signs a subject.
pub fn sign(key: &SigningKey, subject: &Subject) -> SignatureFile {
    let sig = key.sign(&subject.message());
    let pk = public_key(key);
    SignatureFile {
        format: SIGNATURE_FORMAT.into(),
        plugin: subject.plugin.clone(),
        version: subject.version.clone(),
        component_sha256: subject.component_sha256.clone(),
        manifest_sha256: subject.manifest_sha256.clone(),
        key_id: pk.key_id(),
        public_key: pk.to_string(),
        signature: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    }
}

/// Reads a signature file.
pub fn read_signature(path: &Path) -> Result<SignatureFile, SigningError> {
    let text = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let f: SignatureFile = serde_json::from_slice(&text).map_err(|e| SigningError::Malformed {
        path: path.display().to_string(),
        message: format!("{e}; expected the JSON that `llmos plugin sign` writes"),
    })?;
    if f.format != SIGNATURE_FORMAT {
        return Err(SigningError::Malformed {
            path: path.display().to_string(),
            message: format!(
                "format {:?}; this llmos reads {SIGNATURE_FORMAT:?}",
                f.format
            ),
        });
    }
    Ok(f)
}

/// What changed since signing, when the file's own copy of the subject says so.
fn what_changed(f: &SignatureFile, s: &Subject) -> String {
    let mut changed = Vec::new();
    if f.component_sha256 != s.component_sha256 {
        changed.push(format!(
            "the component changed after signing (signed sha256 {}, the file has {})",
            f.component_sha256, s.component_sha256
        ));
    }
    if f.manifest_sha256 != s.manifest_sha256 {
        changed.push(format!(
            "the manifest changed after signing (signed sha256 {}, the file has {})",
            f.manifest_sha256, s.manifest_sha256
        ));
    }
    if f.plugin != s.plugin || f.version != s.version {
        changed.push(format!(
            "signed for {} {}, the manifest says {} {}",
            f.plugin, f.version, s.plugin, s.version
        ));
    }
    if changed.is_empty() {
        "the signature does not match the component and manifest".into()
    } else {
        changed.join("; ")
    }
}

/// Checks that `f` is a valid signature of `subject` by the key it names; returns that key.
/// Which publisher (if any) owns the key is [`Publishers::check`]'s question.
pub fn verify(f: &SignatureFile, subject: &Subject) -> Result<PublicKey, SigningError> {
    let key: PublicKey = f.public_key.parse()?;
    if key.key_id() != f.key_id {
        return Err(SigningError::Bad(format!(
            "key id {} does not belong to public key {} (its id is {})",
            f.key_id,
            f.public_key,
            key.key_id()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&f.signature)
        .map_err(|e| SigningError::Bad(format!("signature is not base64: {e}")))?;
    let sig = Signature::from_slice(&bytes)
        .map_err(|_| SigningError::Bad("signature is not 64 bytes".into()))?;
    key.0
        .verify_strict(&subject.message(), &sig)
        .map_err(|_| SigningError::Bad(what_changed(f, subject)))?;
    Ok(key)
}

/// A trusted publisher: a name and a public key. Revoked ones stay recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publisher {
    /// The operator's name for it.
    pub name: String,
    /// `ed25519:<base64>`.
    pub public_key: String,
    /// Its key id.
    pub key_id: String,
    /// When it was added (ms since the Unix epoch).
    pub added_at_ms: u64,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

/// The trusted publishers in the store.
#[derive(Debug, Clone)]
pub struct Publishers(Store);

impl Publishers {
    /// The publishers of this store.
    pub fn new(store: Store) -> Self {
        Self(store)
    }

    /// Every publisher, by name (revoked ones included).
    pub fn list(&self) -> Result<Vec<Publisher>, SigningError> {
        self.0
            .values(Tree::Publishers, b"")?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| {
                    SigningError::Store(StoreError::Decode {
                        tree: Tree::Publishers.name(),
                        key: String::from_utf8_lossy(&k).into_owned(),
                        message: e.to_string(),
                    })
                })
            })
            .collect()
    }

    /// Adds a publisher. A name or key already recorded (even revoked) is refused.
    pub fn add(&self, name: &str, public_key: &str) -> Result<Publisher, SigningError> {
        check_name(name)?;
        let key: PublicKey = public_key.parse()?;
        for p in self.list()? {
            if p.name == name {
                return Err(SigningError::Publisher(format!(
                    "publisher {name} exists{} (key {}); choose another name",
                    if p.revoked_at_ms.is_some() { " (revoked)" } else { "" },
                    p.key_id
                )));
            }
            if p.key_id == key.key_id() {
                return Err(SigningError::Publisher(format!(
                    "key {} is already recorded as publisher {}{}",
                    p.key_id,
                    p.name,
                    if p.revoked_at_ms.is_some() { " (revoked)" } else { "" }
                )));
            }
        }
        let p = Publisher {
            name: name.into(),
            public_key: key.to_string(),
            key_id: key.key_id(),
            added_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        self.0.put_json(Tree::Publishers, name.as_bytes(), &p)?;
        Ok(p)
    }

    /// Revokes a publisher: its signatures are refused from now on; the record stays.
    pub fn revoke(&self, name: &str) -> Result<Publisher, SigningError> {
        let mut p: Publisher = self
            .0
            .get_json(Tree::Publishers, name.as_bytes())?
            .ok_or_else(|| {
                SigningError::Publisher(format!(
                    "no publisher {name} (see `llmos plugin publisher list`)"
                ))
            })?;
        if p.revoked_at_ms.is_some() {
            return Err(SigningError::Publisher(format!(
                "publisher {name} is already revoked"
            )));
        }
        p.revoked_at_ms = Some(now_ms());
        self.0.put_json(Tree::Publishers, name.as_bytes(), &p)?;
        Ok(p)
    }

    /// The trusted publisher of `key`: unknown and revoked keys are errors naming which.
    pub fn check(&self, key: &PublicKey) -> Result<Publisher, SigningError> {
        let id = key.key_id();
        match self.list()?.into_iter().find(|p| p.key_id == id) {
            Some(p) if p.revoked_at_ms.is_some() => Err(SigningError::Revoked {
                name: p.name,
                key_id: id,
            }),
            Some(p) => Ok(p),
            None => Err(SigningError::UnknownKey {
                key_id: id,
                public_key: key.to_string(),
            }),
        }
    }
}

/// Publisher names: 1 to 64 of `[A-Za-z0-9._-]`.
fn check_name(name: &str) -> Result<(), SigningError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SigningError::Publisher(format!(
            "invalid publisher name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            plugin: "p".into(),
            version: "1.0.0".into(),
            component_sha256: "aa".into(),
            manifest_sha256: "bb".into(),
        }
    }

    #[test]
    fn a_signature_verifies_and_any_change_is_named() {
        let key = generate();
        let f = sign(&key, &subject());
        assert_eq!(verify(&f, &subject()).unwrap(), public_key(&key));
        let mut s = subject();
        s.component_sha256 = "cc".into();
        let e = verify(&f, &s).unwrap_err().to_string();
        assert!(e.contains("the component changed after signing"), "{e}");
        let mut s = subject();
        s.manifest_sha256 = "cc".into();
        let e = verify(&f, &s).unwrap_err().to_string();
        assert!(e.contains("the manifest changed"), "{e}");
        // A signature by another key under this file's public key fails.
        let mut forged = sign(&generate(), &subject());
        forged.public_key = f.public_key.clone();
        forged.key_id = f.key_id.clone();
        assert!(matches!(verify(&forged, &subject()), Err(SigningError::Bad(_))));
    }

    #[test]
    fn public_keys_round_trip_and_bad_ones_are_named() {
        let pk = public_key(&generate());
        assert_eq!(pk.to_string().parse::<PublicKey>().unwrap(), pk);
        assert_eq!(pk.key_id().len(), 16);
        let e = "ed25519:AAAA".parse::<PublicKey>().unwrap_err().to_string();
        assert!(e.contains("expected ed25519:<base64 of 32 bytes>"), "{e}");
    }

    #[test]
    fn private_key_files_are_pem_0600_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate();
        write_private_key(&path, &key).unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(read_private_key(&path).unwrap().to_bytes(), key.to_bytes());
        let e = write_private_key(&path, &generate()).unwrap_err().to_string();
        assert!(e.contains("never replaces"), "{e}");
    }
}
