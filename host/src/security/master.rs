//! Where the master key comes from.
//!
//! Exactly one of, in this order of preference when resolving [`MasterSource::from_env`]:
//! - `LLMOS_MASTER_KEY`: 64 hex digits;
//! - `LLMOS_MASTER_PASSPHRASE`: a passphrase stretched with Argon2id ([`Kdf`]; its salt and
//!   parameters are kept in clear in the store's metadata, so the same passphrase gives the
//!   same key for that store and a different one elsewhere);
//! - a key file of 32 raw bytes: `LLMOS_MASTER_KEY_FILE`, else `<home>/master.key`. A missing
//!   file is created (mode 0600, random key) only for a store that holds nothing yet. A file
//!   that group or others can access is refused (a key readable by others protects nothing).
//!
//! Setting more than one of the three variables is an error rather than a silent choice.
//! Keep the key outside the data folder (another disk, a secrets manager, an environment set
//! by the service manager): a copy of the data folder with `master.key` in it is readable.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::seal::SealError;

/// Environment variable holding the master key as 64 hex digits.
pub const MASTER_KEY_ENV: &str = "LLMOS_MASTER_KEY";
/// Environment variable naming the master key file.
pub const MASTER_KEY_FILE_ENV: &str = "LLMOS_MASTER_KEY_FILE";
/// Environment variable holding the master passphrase.
pub const MASTER_PASSPHRASE_ENV: &str = "LLMOS_MASTER_PASSPHRASE";
/// Environment variable holding the new master key (hex) for `llmos store rotate-master`.
pub const NEW_MASTER_KEY_ENV: &str = "LLMOS_NEW_MASTER_KEY";

/// Shortest passphrase accepted.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// A master key, or what it is derived from.
#[derive(Clone)]
pub enum MasterSource {
    /// The key itself (from `LLMOS_MASTER_KEY`, or given directly).
    Key([u8; 32]),
    /// A key file (32 raw bytes).
    File(PathBuf),
    /// A passphrase, stretched with the store's [`Kdf`].
    Passphrase(String),
}

impl std::fmt::Debug for MasterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl MasterSource {
    /// The source the environment names for the data location `home` (see the module
    /// documentation).
    pub fn from_env(home: &Path) -> Result<Self, SealError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (key, pass, file) = (
            var(MASTER_KEY_ENV),
            var(MASTER_PASSPHRASE_ENV),
            var(MASTER_KEY_FILE_ENV),
        );
        let set: Vec<&str> = [
            (MASTER_KEY_ENV, key.is_some()),
            (MASTER_PASSPHRASE_ENV, pass.is_some()),
            (MASTER_KEY_FILE_ENV, file.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, on)| on.then_some(n))
        .collect();
        if set.len() > 1 {
            return Err(SealError::Ambiguous(format!(
                "{} are all set; set only one master key source",
                set.join(" and ")
            )));
        }
        if let Some(hex_key) = key {
            return Ok(Self::Key(parse_hex_key(&hex_key, MASTER_KEY_ENV)?));
        }
        if let Some(p) = pass {
            return Self::passphrase(p);
        }
        Ok(Self::File(
            file.map_or_else(|| home.join("master.key"), PathBuf::from),
        ))
    }

    /// A passphrase source; refuses one shorter than [`MIN_PASSPHRASE_CHARS`].
    pub fn passphrase(p: String) -> Result<Self, SealError> {
        let n = p.chars().count();
        if n < MIN_PASSPHRASE_CHARS {
            return Err(SealError::Passphrase(format!(
                "{n} characters; at least {MIN_PASSPHRASE_CHARS} are needed"
            )));
        }
        Ok(Self::Passphrase(p))
    }

    /// What the source is, for messages (never the key).
    pub fn describe(&self) -> String {
        match self {
            Self::Key(_) => "a key given as hex".into(),
            Self::File(p) => format!("key file {}", p.display()),
            Self::Passphrase(_) => "a passphrase".into(),
        }
    }
}

/// A 32-byte key from 64 hex digits held in `var`.
pub fn parse_hex_key(text: &str, var: &str) -> Result<[u8; 32], SealError> {
    let bad = || SealError::BadHexKey { var: var.into() };
    let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// Reads a key file; `None` when it does not exist. Refuses a file group or others can
/// access, and one that is not 32 bytes.
pub fn read_key_file(path: &Path) -> Result<Option<[u8; 32]>, SealError> {
    let err = |message: String| SealError::KeyFile {
        path: path.into(),
        message,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SealError::KeyFileMode {
                path: path.into(),
                mode,
            });
        }
    }
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| err(format!("{} bytes; expected 32 raw bytes", b.len())))?;
    Ok(Some(key))
}

/// Creates a key file with a fresh random key, mode 0600 (refuses to replace a file).
pub fn create_key_file(path: &Path) -> Result<[u8; 32], SealError> {
    let err = |message: String| SealError::KeyFile {
        path: path.into(),
        message,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let key = super::seal::Sealer::random_key();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
    f.write_all(&key).map_err(|e| err(e.to_string()))?;
    f.sync_all().map_err(|e| err(e.to_string()))?;
    Ok(key)
}

/// How a passphrase is stretched: Argon2id (RFC 9106) version 0x13 with these parameters and
/// salt, kept in clear in the store's metadata. Defaults: 64 MiB of memory, 3 passes, 1 lane
/// (RFC 9106's second recommended setting, with one lane since llmos runs it on one thread;
/// about 0.1–0.3 s on a current CPU), 16-byte random salt, 32-byte output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Salt, hex.
    pub salt: String,
}

impl Kdf {
    /// The default parameters with a fresh random salt.
    pub fn new_random() -> Self {
        let salt = super::seal::Sealer::random_key();
        Self {
            algorithm: "argon2id".into(),
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
            salt: hex::encode(salt.get(..16).unwrap_or_default()),
        }
    }

    /// The key `passphrase` stretches to.
    pub fn derive(&self, passphrase: &str) -> Result<[u8; 32], SealError> {
        use argon2::{Algorithm, Argon2, Params, Version};
        let bad = |m: String| SealError::Passphrase(m);
        if self.algorithm != "argon2id" {
            return Err(bad(format!(
                "the store names key derivation {:?}; only argon2id is known",
                self.algorithm
            )));
        }
        let salt = hex::decode(&self.salt).map_err(|e| bad(format!("stored salt: {e}")))?;
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| bad(format!("stored Argon2 parameters: {e}")))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, &mut out)
            .map_err(|e| bad(e.to_string()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_a_shared_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/master.key");
        assert_eq!(read_key_file(&path).unwrap(), None);
        let key = create_key_file(&path).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), Some(key));
        assert!(create_key_file(&path).is_err(), "never replaces a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let e = read_key_file(&path).unwrap_err();
            assert!(matches!(e, SealError::KeyFileMode { mode: 0o640, .. }), "{e}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        std::fs::write(dir.path().join("short"), b"abc").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join("short");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = read_key_file(&p).unwrap_err().to_string();
            assert!(e.contains("3 bytes; expected 32"), "{e}");
        }
    }

    #[test]
    fn passphrases_stretch_per_salt_and_short_ones_are_refused() {
        let small = |salt: &str| Kdf {
            memory_kib: 64,
            iterations: 1,
            salt: salt.into(),
            ..Kdf::new_random()
        };
        let a = small("00112233445566778899aabbccddeeff");
        assert_eq!(a.derive("correct horse").unwrap(), a.derive("correct horse").unwrap());
        assert_ne!(a.derive("correct horse").unwrap(), a.derive("correct house").unwrap());
        let b = small("ffeeddccbbaa99887766554433221100");
        assert_ne!(a.derive("correct horse").unwrap(), b.derive("correct horse").unwrap());
        assert!(MasterSource::passphrase("short".into()).is_err());
        assert_eq!(Kdf::new_random().salt.len(), 32);
        assert!(parse_hex_key("zz", MASTER_KEY_ENV).is_err());
        assert_eq!(parse_hex_key(&"ab".repeat(32), MASTER_KEY_ENV).unwrap(), [0xab; 32]);
    }
}
