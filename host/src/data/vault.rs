//! The pseudonymisation vault: stable, reversible tokens per scope (a tenant or a
//! collection), the mapping token → original sealed in [`Tree::Vault`].
//!
//! A token is `<TYPE_hex>`: the hex is the start of a keyed fingerprint
//! ([`Store::fingerprint`]) of `(scope, type, original)`, so the same value in the same scope
//! always gets the same token, another scope gets another, and nobody without the master key
//! can compute or test one. The mapping is stored under `scope \0 token` (the key holds no
//! plaintext; the store hashes it, see docs/data.md) with the original sealed in the value.
//! Two values whose 8-digit tokens collide: the later one gets 16 digits, then 64.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::{Store, StoreError, Tree};
use llmos_pii::{Keyed, Source, Span, tokens};

/// Errors of the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A scope name that is not accepted.
    #[error(
        "invalid scope {0:?}: give 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-' (a tenant or collection name; default \"default\")"
    )]
    BadScope(String),
    /// Every token length is taken by other values (never seen: 256-bit fingerprints).
    #[error("vault scope {scope}: no free token for a {kind} value (fingerprint collision)")]
    Collision {
        /// The scope.
        scope: String,
        /// The entity type.
        kind: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fingerprint context of pseudonym tokens.
const TOKEN_CONTEXT: &str = "llmos-pii-vault";
/// Fingerprint context of the `hash` operator.
const HASH_CONTEXT: &str = "llmos-pii-hash";
/// Token lengths in bytes of the fingerprint (hex digits: twice that), tried in order.
const TOKEN_BYTES: [usize; 3] = [4, 8, 32];

/// What the vault keeps for a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Mapping {
    v: u32,
    kind: String,
    original: String,
}

/// The vault over a store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Vault {
    store: Store,
}

/// What deanonymising a text gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// The text with every token of the scope replaced by its original.
    pub text: String,
    /// Tokens replaced.
    pub restored: usize,
    /// Well-formed tokens the scope does not know (left as they are).
    pub unknown: usize,
}

/// Checks a scope name: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn check_scope(scope: &str) -> Result<(), VaultError> {
    let ok = (1..=64).contains(&scope.len())
        && scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(VaultError::BadScope(scope.to_string()))
    }
}

fn key(scope: &str, token: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len().saturating_add(token.len()).saturating_add(1));
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(token.as_bytes());
    k
}

impl Vault {
    /// The vault of a store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// A session handing out tokens of `scope` for one request; new mappings are written
    /// together, durably, by [`Session::commit`].
    pub fn session(&self, scope: &str) -> Result<Session<'_>, VaultError> {
        check_scope(scope)?;
        Ok(Session {
            vault: self,
            scope: scope.to_string(),
            pending: BTreeMap::new(),
        })
    }

    fn mapping(&self, scope: &str, token: &str) -> Result<Option<Mapping>, StoreError> {
        self.store.get_json(Tree::Vault, &key(scope, token))
    }

    /// The original of a token in `scope`, if the scope issued it.
    pub fn original(&self, scope: &str, token: &str) -> Result<Option<String>, VaultError> {
        check_scope(scope)?;
        let kind = tokens::find(token)
            .first()
            .filter(|f| f.token == token)
            .map(|f| f.kind.to_string());
        Ok(self
            .mapping(scope, token)?
            .filter(|m| Some(&m.kind) == kind.as_ref())
            .map(|m| m.original))
    }

    /// Replaces every token of `scope` found in `text` by its original; tokens of other
    /// scopes (or made up) stay as they are.
    pub fn deanonymize(&self, scope: &str, text: &str) -> Result<Restored, VaultError> {
        check_scope(scope)?;
        let mut originals: Vec<(Span, String)> = Vec::new();
        let mut unknown = 0usize;
        for f in tokens::find(text) {
            match self.mapping(scope, f.token)? {
                Some(m) if m.kind == f.kind => originals.push((
                    Span {
                        start: f.start,
                        end: f.end,
                        kind: m.kind,
                        source: Source::Pattern,
                    },
                    m.original,
                )),
                _ => unknown = unknown.saturating_add(1),
            }
        }
        let spans: Vec<Span> = originals.iter().map(|(s, _)| s.clone()).collect();
        let mut next = originals.into_iter().map(|(_, o)| o);
        let (out, done) = llmos_pii::replace_with(text, &spans, |_, _| {
            Ok::<_, VaultError>(next.next().unwrap_or_default())
        })?;
        Ok(Restored {
            text: out,
            restored: done.len(),
            unknown,
        })
    }
}

/// Tokens of one scope for one request (see [`Vault::session`]).
#[derive(Debug)]
pub struct Session<'a> {
    vault: &'a Vault,
    scope: String,
    /// New mappings, by stored key.
    pending: BTreeMap<Vec<u8>, Mapping>,
}

impl Session<'_> {
    /// Writes the new mappings in one durable step; returns how many.
    pub fn commit(self) -> Result<usize, VaultError> {
        let values: Vec<(Vec<u8>, Vec<u8>)> = self
            .pending
            .iter()
            .map(|(k, m)| (k.clone(), serde_json::to_vec(m).unwrap_or_default()))
            .collect();
        if values.is_empty() {
            return Ok(0);
        }
        let writes: Vec<(Tree, &[u8], &[u8])> = values
            .iter()
            .map(|(k, v)| (Tree::Vault, k.as_slice(), v.as_slice()))
            .collect();
        self.vault.store.put_many(&writes)?;
        Ok(values.len())
    }
}

impl Keyed for Session<'_> {
    type Error = VaultError;

    /// 32 hex digits of a keyed fingerprint of the value in this scope: equal values in a
    /// scope hash alike; values cannot be linked across scopes or tested without the key.
    fn hash(&mut self, _kind: &str, original: &str) -> Result<String, VaultError> {
        let data = [self.scope.as_bytes(), b"\0", original.as_bytes()].concat();
        let fp = self.vault.store.fingerprint(HASH_CONTEXT, &data);
        Ok(hex::encode(fp.get(..16).unwrap_or_default()))
    }

    fn pseudonym(&mut self, kind: &str, original: &str) -> Result<String, VaultError> {
        let data = [
            self.scope.as_bytes(),
            b"\0",
            kind.as_bytes(),
            b"\0",
            original.as_bytes(),
        ]
        .concat();
        let fp = self.vault.store.fingerprint(TOKEN_CONTEXT, &data);
        let wanted = Mapping {
            v: 1,
            kind: kind.to_string(),
            original: original.to_string(),
        };
        for n in TOKEN_BYTES {
            let token = tokens::format(kind, &hex::encode(fp.get(..n).unwrap_or_default()));
            let k = key(&self.scope, &token);
            let held = match self.pending.get(&k) {
                Some(m) => Some(m.clone()),
                None => self.vault.mapping(&self.scope, &token)?,
            };
            match held {
                Some(m) if m == wanted => return Ok(token),
                Some(_) => continue, // another value has this token: a longer one
                None => {
                    self.pending.insert(k, wanted);
                    return Ok(token);
                }
            }
        }
        Err(VaultError::Collision {
            scope: self.scope.clone(),
            kind: kind.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::seal::Sealer;

    fn vault() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([3; 32])).unwrap();
        (dir, Vault::new(s))
    }

    #[test]
    fn tokens_are_stable_per_scope_and_reversible() {
        let (_d, v) = vault();
        let mut a = v.session("tenant-a").unwrap();
        let t1 = a.pseudonym("PERSON", "Ann Lee").unwrap();
        let t2 = a.pseudonym("PERSON", "Ann Lee").unwrap();
        let other = a.pseudonym("PERSON", "Bob Ray").unwrap();
        assert_eq!(t1, t2);
        assert_ne!(t1, other);
        assert!(t1.starts_with("<PERSON_") && t1.len() == "<PERSON_>".len() + 8, "{t1}");
        assert_eq!(a.commit().unwrap(), 2);
        let mut b = v.session("tenant-b").unwrap();
        assert_ne!(b.pseudonym("PERSON", "Ann Lee").unwrap(), t1);
        // Later sessions of the same scope find the same token.
        let mut a2 = v.session("tenant-a").unwrap();
        assert_eq!(a2.pseudonym("PERSON", "Ann Lee").unwrap(), t1);
        assert_eq!(a2.commit().unwrap(), 0);
        let text = format!("{t1} met {other} and <PERSON_00000000>");
        let r = v.deanonymize("tenant-a", &text).unwrap();
        assert_eq!(r.text, "Ann Lee met Bob Ray and <PERSON_00000000>");
        assert_eq!((r.restored, r.unknown), (2, 1));
        // Another scope restores nothing.
        assert_eq!(v.deanonymize("tenant-b", &text).unwrap().text, text);
        assert_eq!(v.original("tenant-a", &t1).unwrap().as_deref(), Some("Ann Lee"));
    }

    #[test]
    fn a_collision_takes_a_longer_token() {
        let (_d, v) = vault();
        let mut s = v.session("x").unwrap();
        let t = s.pseudonym("EMAIL", "a@b.org").unwrap();
        s.commit().unwrap();
        // Plant another value under the short token, as a collision would.
        let planted = Mapping { v: 1, kind: "EMAIL".into(), original: "other@b.org".into() };
        v.store.put_json(Tree::Vault, &key("x", &t), &planted).unwrap();
        let mut s = v.session("x").unwrap();
        let long = s.pseudonym("EMAIL", "a@b.org").unwrap();
        assert_eq!(long.len(), t.len() + 8);
        s.commit().unwrap();
        assert_eq!(v.original("x", &long).unwrap().as_deref(), Some("a@b.org"));
        assert_eq!(v.original("x", &t).unwrap().as_deref(), Some("other@b.org"));
    }

    #[test]
    fn scopes_are_checked() {
        let (_d, v) = vault();
        for bad in ["", "a b", "a\0b", &"x".repeat(65)] {
            assert!(matches!(v.session(bad), Err(VaultError::BadScope(_))), "{bad:?}");
        }
        let mut s = v.session("s").unwrap();
        assert_eq!(s.hash("EMAIL", "a@b.org").unwrap(), s.hash("PHONE", "a@b.org").unwrap());
        let mut t = v.session("t").unwrap();
        assert_ne!(s.hash("EMAIL", "a@b.org").unwrap(), t.hash("EMAIL", "a@b.org").unwrap());
    }
}
