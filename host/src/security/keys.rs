//! API keys with scopes. A key is `llmos_<id>_<secret>`; only the sha256 of the secret is
//! stored (sealed, in the store's `api-keys` tree). The secret is shown once, at creation.
//!
//! Scopes: `models:<name>` / `models:*` (inference on those models), `admin` (the admin
//! API), `data:<collection>` / `data:*` (read a collection: get, list, search, export) and
//! `data:<collection>:write` / `data:*:write` (also change it: create, ingest, delete),
//! `pii:anonymize` and `pii:deanonymize` (`POST /v1/anonymize`, `POST /v1/deanonymize`), each
//! also narrowed to one vault scope: `pii:deanonymize:<tenant>`.

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::generate::tenant::{Priority, Tenant};
use crate::data::{Store, StoreError, Tree};
use crate::security::audit::now_ms;

/// Errors creating or checking keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A scope that is not one of the accepted forms.
    #[error(
        "invalid scope {0:?}: accepted are models:<name>, models:*, tools:<name>, tools:mcp:<server>:<tool>, tools:mcp:<server>:*, tools:*, admin, data:<collection>, data:<collection>:write, data:*, data:*:write, pii:anonymize[:<vault-scope>], pii:deanonymize[:<vault-scope>]"
    )]
    BadScope(String),
    /// No scope given.
    #[error("a key needs at least one scope (e.g. --scope 'models:*' or --scope admin)")]
    NoScope,
    /// An expiry that cannot be read.
    #[error(
        "invalid expiry {0:?}: give a duration from 1s to 36500d (100 years) like 30d, 12h, 90m, 45s, \
         or an absolute time in seconds since the Unix epoch (1000000001 to 253402300799, before the year 10000)"
    )]
    BadExpiry(String),
    /// Unknown key id.
    #[error("no API key with id {0:?} (see `llmos keys list`)")]
    NotFound(String),
    /// A tenant label or limit that is not accepted.
    #[error("{0}")]
    BadTenancy(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key's tenant and its limits (docs/generation.md, "Scheduling"); all optional, and
/// absent from keys stored before they existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenancy {
    /// The tenant its requests run for; absent ⇒ the key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Most generation streams its tenant may have queued or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<usize>,
    /// Most tokens (prompt + max_tokens) its tenant may have waiting to be admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_tokens: Option<usize>,
    /// Priority class: weights its tenant's share of the batch.
    #[serde(default)]
    pub priority: Priority,
}

impl Tenancy {
    /// Checks the label (1 to 64 of `A-Z a-z 0-9 . _ -`) and the limits (at least 1).
    pub fn check(&self) -> Result<(), KeyError> {
        if let Some(t) = &self.tenant
            && (t.is_empty()
                || t.len() > 64
                || !t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            return Err(KeyError::BadTenancy(format!(
                "invalid tenant {t:?}: give 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'"
            )));
        }
        for (name, v) in [("max_streams", self.max_streams), ("max_queued_tokens", self.max_queued_tokens)] {
            if v == Some(0) {
                return Err(KeyError::BadTenancy(format!(
                    "invalid {name} 0: give at least 1, or leave it out for no limit"
                )));
            }
        }
        Ok(())
    }
}

/// A stored key (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public id (part of the key, safe to log).
    pub id: String,
    /// Operator's label.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Expiry, ms since the epoch.
    pub expires_ms: Option<u64>,
    /// Revoked keys stay listed but never authenticate.
    pub revoked: bool,
    /// Its tenant, limits and priority.
    #[serde(flatten)]
    pub tenancy: Tenancy,
    /// sha256 of the secret, hex.
    hash: String,
}

impl KeyRecord {
    /// The identity of a request over the admin socket (`api/local.rs`): the data
    /// location's owner, with every scope. Never stored; its id (`local:uid=N`) is what the
    /// audit log names, and no token matches its empty hash.
    pub fn local_owner(uid: u32) -> Self {
        let scopes = ["admin", "models:*", "data:*:write", "pii:anonymize", "pii:deanonymize", "tools:*"];
        Self {
            id: format!("local:uid={uid}"),
            name: "owner (admin socket)".into(),
            scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
            created_ms: 0,
            expires_ms: None,
            revoked: false,
            tenancy: Tenancy::default(),
            hash: String::new(),
        }
    }

    /// The tenant its generation requests run for: its label, else its id.
    pub fn tenant(&self) -> Tenant {
        let t = &self.tenancy;
        Tenant {
            name: t.tenant.as_deref().unwrap_or(&self.id).into(),
            priority: t.priority,
            max_streams: t.max_streams,
            max_queued_tokens: t.max_queued_tokens,
        }
    }

    /// The record without its hash, for listings.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "scopes": self.scopes, "created_ms": self.created_ms,
            "expires_ms": self.expires_ms, "revoked": self.revoked,
            "tenant": self.tenancy.tenant, "max_streams": self.tenancy.max_streams,
            "max_queued_tokens": self.tenancy.max_queued_tokens,
            "priority": self.tenancy.priority,
        })
    }

    /// Whether the key may run inference on `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s == "models:*" || s.strip_prefix("models:") == Some(model))
    }

    /// Whether the key may use `scope` (e.g. `pii:deanonymize`) on some target: it has the
    /// scope itself or a narrowed `scope:<target>`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| {
            s.strip_prefix(scope)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
        })
    }

    /// Whether the key may use `scope` on `target` (a vault scope): it has `scope`,
    /// `scope:*` or `scope:<target>`.
    pub fn allows_scope_on(&self, scope: &str, target: &str) -> bool {
        self.scopes.iter().any(|s| match s.strip_prefix(scope) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix(':')
                .is_some_and(|t| t == "*" || t == target),
            None => false,
        })
    }

    /// Whether the key may read `collection` (`data:<collection>`, `data:*`, or either with
    /// `:write`, which implies read).
    pub fn can_read_data(&self, collection: &str) -> bool {
        self.scopes.iter().any(|s| {
            let Some(rest) = s.strip_prefix("data:") else {
                return false;
            };
            let name = rest.strip_suffix(":write").unwrap_or(rest);
            name == "*" || name == collection
        })
    }

    /// Whether the key may change `collection` (`data:<collection>:write`, `data:*:write`).
    pub fn can_write_data(&self, collection: &str) -> bool {
        self.scopes.iter().any(|s| {
            s.strip_prefix("data:")
                .and_then(|r| r.strip_suffix(":write"))
                .is_some_and(|name| name == "*" || name == collection)
        })
    }

    /// Whether the key's requests may use the tool `id` (docs/tools.md): `tools:*`,
    /// `tools:<id>`, or for a tool of a registered MCP server (`mcp:<server>:<tool>`)
    /// `tools:mcp:<server>:*`.
    pub fn allows_tool(&self, id: &str) -> bool {
        self.scopes.iter().any(|s| {
            let Some(t) = s.strip_prefix("tools:") else {
                return false;
            };
            t == "*"
                || t == id
                || t.strip_suffix(":*").is_some_and(|server| {
                    server.starts_with("mcp:")
                        && id
                            .strip_prefix(server)
                            .is_some_and(|rest| rest.starts_with(':'))
                })
        })
    }

    /// Whether the key has the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == "admin")
    }
}

/// Why a presented key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not of the form `llmos_<id>_<secret>`, or unknown, or wrong secret.
    Invalid,
    /// Revoked.
    Revoked(String),
    /// Expired.
    Expired(String),
}

fn check_scope(s: &str) -> Result<(), KeyError> {
    let ok_name = |n: &str| {
        n == "*"
            || (!n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
    };
    let ok = s == "admin"
        || ["pii:anonymize", "pii:deanonymize"].iter().any(|p| {
            s.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.strip_prefix(':').is_some_and(ok_name))
        })
        || s.strip_prefix("models:").is_some_and(ok_name)
        || s.strip_prefix("tools:").is_some_and(|t| match t.strip_prefix("mcp:") {
            // `tools:mcp:<server>:<tool>` or `tools:mcp:<server>:*`
            Some(r) => r
                .split_once(':')
                .is_some_and(|(server, tool)| server != "*" && ok_name(server) && ok_name(tool)),
            None => ok_name(t),
        })
        || s
            .strip_prefix("data:")
            .map(|r| r.strip_suffix(":write").unwrap_or(r))
            .is_some_and(ok_name);
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadScope(s.to_string()))
    }
}

/// Parses `30d`, `12h`, `90m`, `45s`, or absolute epoch seconds, into an expiry time (ms).
/// Durations and absolute times out of range are refused with the accepted range; nothing
/// the caller sends can overflow.
pub fn parse_expiry(s: &str, now_ms: u64) -> Result<u64, KeyError> {
    /// The longest duration: 100 years.
    const MAX_SECS: u64 = 36_500 * 86_400;
    /// The latest absolute time: 9999-12-31T23:59:59Z.
    const MAX_EPOCH: u64 = 253_402_300_799;
    let bad = || KeyError::BadExpiry(s.to_string());
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let per_unit: u64 = match unit {
        "" if (1_000_000_001..=MAX_EPOCH).contains(&n) => {
            return n.checked_mul(1000).ok_or_else(bad);
        }
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    let secs = n
        .checked_mul(per_unit)
        .filter(|s| (1..=MAX_SECS).contains(s))
        .ok_or_else(bad)?;
    secs.checked_mul(1000)
        .and_then(|ms| now_ms.checked_add(ms))
        .ok_or_else(bad)
}

fn hex_random(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equal without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The key store.
#[derive(Clone)]
pub struct Keys {
    store: Store,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

impl Keys {
    /// Keys kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Creates a key; returns its record and the secret token (shown once).
    pub fn create(
        &self,
        name: &str,
        scopes: &[String],
        expires_ms: Option<u64>,
    ) -> Result<(KeyRecord, String), KeyError> {
        self.create_with(name, scopes, expires_ms, Tenancy::default())
    }

    /// [`Self::create`] with a tenant, limits and a priority.
    pub fn create_with(
        &self,
        name: &str,
        scopes: &[String],
        expires_ms: Option<u64>,
        tenancy: Tenancy,
    ) -> Result<(KeyRecord, String), KeyError> {
        tenancy.check()?;
        if scopes.is_empty() {
            return Err(KeyError::NoScope);
        }
        for s in scopes {
            check_scope(s)?;
        }
        let id = hex_random(6);
        let secret = hex_random(24);
        let token = format!("llmos_{id}_{secret}");
        let rec = KeyRecord {
            id: id.clone(),
            name: name.to_string(),
            scopes: scopes.to_vec(),
            created_ms: now_ms(),
            expires_ms,
            revoked: false,
            tenancy,
            hash: digest(&secret),
        };
        self.store.put_json(Tree::ApiKeys, id.as_bytes(), &rec)?;
        Ok((rec, token))
    }

    /// Every key, newest last.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let mut out: Vec<KeyRecord> = self
            .store
            .values(Tree::ApiKeys, b"")?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        out.sort_by_key(|k| k.created_ms);
        Ok(out)
    }

    /// Whether any key that can still authenticate exists.
    pub fn any_active(&self) -> Result<bool, KeyError> {
        let now = now_ms();
        Ok(self
            .list()?
            .iter()
            .any(|k| !k.revoked && k.expires_ms.is_none_or(|e| e > now)))
    }

    /// Revokes a key.
    pub fn revoke(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let mut rec: KeyRecord = self
            .store
            .get_json(Tree::ApiKeys, id.as_bytes())?
            .ok_or_else(|| KeyError::NotFound(id.to_string()))?;
        rec.revoked = true;
        self.store.put_json(Tree::ApiKeys, id.as_bytes(), &rec)?;
        Ok(rec)
    }

    /// Checks a presented token.
    pub fn authenticate(&self, token: &str) -> Result<Result<KeyRecord, Refusal>, KeyError> {
        let Some((id, secret)) = token.strip_prefix("llmos_").and_then(|r| r.split_once('_'))
        else {
            return Ok(Err(Refusal::Invalid));
        };
        let Some(rec) = self
            .store
            .get_json::<KeyRecord>(Tree::ApiKeys, id.as_bytes())?
        else {
            return Ok(Err(Refusal::Invalid));
        };
        if !same(&digest(secret), &rec.hash) {
            return Ok(Err(Refusal::Invalid));
        }
        if rec.revoked {
            return Ok(Err(Refusal::Revoked(rec.id)));
        }
        if rec.expires_ms.is_some_and(|e| e <= now_ms()) {
            return Ok(Err(Refusal::Expired(rec.id)));
        }
        Ok(Ok(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("s"),
            crate::security::seal::Sealer::from_key([7; 32]),
        )
        .unwrap();
        (dir, Keys::new(store))
    }

    #[test]
    fn huge_expiries_are_errors_not_overflows() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_expiry("2h", now).unwrap(), now + 7_200_000);
        for s in [
            "18446744073709551615d",
            "213503982334602d",
            "5124095576030431h",
            "18446744073709551615",
            "18446744073709551s",
            "0d",
        ] {
            assert!(
                matches!(parse_expiry(s, now), Err(KeyError::BadExpiry(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn only_the_hash_is_stored_and_the_token_authenticates() {
        let (_d, k) = keys();
        let (rec, token) = k.create("ci", &["models:minilm".into()], None).unwrap();
        assert!(!format!("{:?}", k.list().unwrap()).contains(token.rsplit('_').next().unwrap()));
        let got = k.authenticate(&token).unwrap().unwrap();
        assert_eq!(got.id, rec.id);
        assert!(got.allows_model("minilm") && !got.allows_model("pii-ner") && !got.is_admin());
        assert_eq!(
            k.authenticate(&format!("{token}x")).unwrap(),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            k.authenticate("Bearer nonsense").unwrap(),
            Err(Refusal::Invalid)
        );
        k.revoke(&rec.id).unwrap();
        assert_eq!(
            k.authenticate(&token).unwrap(),
            Err(Refusal::Revoked(rec.id))
        );
        assert!(!k.any_active().unwrap());
    }

    #[test]
    fn scopes_and_expiry_are_validated() {
        let (_d, k) = keys();
        assert!(matches!(
            k.create("x", &["model:minilm".into()], None),
            Err(KeyError::BadScope(_))
        ));
        assert!(matches!(k.create("x", &[], None), Err(KeyError::NoScope)));
        for bad in ["pii:anonymize:", "pii:anonymizer", "pii:deanonymize:a b", "pii:*"] {
            assert!(check_scope(bad).is_err(), "{bad}");
        }
        let (rec, _) = k
            .create("pii", &["pii:deanonymize:tenant-a".into()], None)
            .unwrap();
        assert!(rec.has_scope("pii:deanonymize") && !rec.has_scope("pii:anonymize"));
        assert!(rec.allows_scope_on("pii:deanonymize", "tenant-a"));
        assert!(!rec.allows_scope_on("pii:deanonymize", "tenant-b"));
        let (all, _) = k.create("pii", &["pii:anonymize:*".into()], None).unwrap();
        assert!(all.allows_scope_on("pii:anonymize", "any"));
        assert_eq!(parse_expiry("2d", 1000).unwrap(), 1000 + 2 * 86_400_000);
        assert!(parse_expiry("2w", 0).is_err() && parse_expiry("0d", 0).is_err());
        let (_, token) = k
            .create("old", &["admin".into()], Some(now_ms() - 1))
            .unwrap();
        assert!(matches!(
            k.authenticate(&token).unwrap(),
            Err(Refusal::Expired(_))
        ));
    }

    #[test]
    fn expiry_input_cannot_overflow() {
        let now = now_ms();
        let max = u64::MAX.to_string();
        for s in [
            format!("{max}d"),
            format!("{max}h"),
            format!("{max}m"),
            format!("{max}s"),
            max.clone(),
            "213503982334602d".into(), // * 86400 * 1000 overflows u64
            "36501d".into(),
            "253402300800".into(), // year 10000
            "99999999999999999999999d".into(),
        ] {
            let e = parse_expiry(&s, now).unwrap_err().to_string();
            assert!(
                e.contains("36500d") && e.contains("253402300799"),
                "{s}: {e}"
            );
        }
        // The edges of the range are accepted; `now` near the end of time is not wrapped.
        assert_eq!(parse_expiry("36500d", 0).unwrap(), 36_500 * 86_400_000);
        assert_eq!(
            parse_expiry("253402300799", now).unwrap(),
            253_402_300_799_000
        );
        assert!(parse_expiry("1s", u64::MAX - 10).is_err());
    }

    #[test]
    fn data_scopes_read_write_and_wildcards() {
        let (_d, k) = keys();
        let scopes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (r, _) = k.create("", &scopes(&["data:docs", "data:notes:write"]), None).unwrap();
        assert!(r.can_read_data("docs") && !r.can_write_data("docs"));
        assert!(r.can_read_data("notes") && r.can_write_data("notes"), "write implies read");
        assert!(!r.can_read_data("other") && !r.can_read_data("doc"));
        assert!(!r.allows_model("docs"));
        let (all, _) = k.create("", &scopes(&["data:*"]), None).unwrap();
        assert!(all.can_read_data("x") && !all.can_write_data("x"));
        let (w, _) = k.create("", &scopes(&["data:*:write"]), None).unwrap();
        assert!(w.can_write_data("x") && w.can_read_data("x"));
        let (m, _) = k.create("", &scopes(&["models:*", "admin"]), None).unwrap();
        assert!(!m.can_read_data("x"));
        for bad in ["data:", "data::write", "data:a:read", "data:a b", "data:a:write:write"] {
            let e = k.create("", &scopes(&[bad]), None).unwrap_err().to_string();
            assert!(e.contains("data:<collection>:write"), "{bad}: {e}");
        }
    }

    #[test]
    fn tenants_limits_and_priority_are_stored_checked_and_old_keys_load() {
        let (_d, k) = keys();
        let t = Tenancy {
            tenant: Some("acme".into()),
            max_streams: Some(2),
            max_queued_tokens: None,
            priority: Priority::High,
        };
        let (rec, token) = k.create_with("a", &["models:*".into()], None, t.clone()).unwrap();
        let got = k.authenticate(&token).unwrap().unwrap();
        assert_eq!(got.tenancy, t);
        assert_eq!(&*got.tenant().name, "acme");
        assert_eq!(rec.public()["priority"], "high");
        let (plain, _) = k.create("b", &["models:*".into()], None).unwrap();
        assert_eq!(*plain.tenant().name, *plain.id, "no label: the key id");
        for bad in [
            Tenancy { tenant: Some("a b".into()), ..Tenancy::default() },
            Tenancy { tenant: Some(String::new()), ..Tenancy::default() },
            Tenancy { max_streams: Some(0), ..Tenancy::default() },
            Tenancy { max_queued_tokens: Some(0), ..Tenancy::default() },
        ] {
            let e = k.create_with("x", &["admin".into()], None, bad).unwrap_err();
            assert!(matches!(e, KeyError::BadTenancy(_)), "{e}");
        }
        // A record stored before tenants existed still loads, with the defaults.
        let old = serde_json::json!({"id": "abc", "name": "", "scopes": ["admin"], "created_ms": 1,
            "expires_ms": null, "revoked": false, "hash": "00"});
        let r: KeyRecord = serde_json::from_value(old).unwrap();
        assert_eq!(r.tenancy, Tenancy::default());
        assert_eq!(r.tenant().priority, Priority::Normal);
    }

    #[test]
    fn tool_scopes_name_one_tool_a_server_or_all() {
        let (_d, k) = keys();
        let scopes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (one, _) = k
            .create("", &scopes(&["tools:calculator", "tools:mcp:wiki:*", "tools:mcp:fs:read"]), None)
            .unwrap();
        assert!(one.allows_tool("calculator") && !one.allows_tool("collection-search"));
        assert!(one.allows_tool("mcp:wiki:search") && one.allows_tool("mcp:wiki:page"));
        assert!(one.allows_tool("mcp:fs:read") && !one.allows_tool("mcp:fs:write"));
        assert!(!one.allows_tool("mcp:wikipedia:search"), "a server's prefix is not the server");
        assert!(!one.allows_model("calculator"));
        let (all, _) = k.create("", &scopes(&["tools:*"]), None).unwrap();
        assert!(all.allows_tool("calculator") && all.allows_tool("mcp:wiki:search"));
        let (m, _) = k.create("", &scopes(&["models:*"]), None).unwrap();
        assert!(!m.allows_tool("calculator"));
        for bad in ["tools:", "tools:mcp:", "tools:mcp:*:x", "tools:a b", "tools:mcp:s:t:u"] {
            let e = k.create("", &scopes(&[bad]), None).unwrap_err().to_string();
            assert!(e.contains("tools:mcp:<server>:<tool>"), "{bad}: {e}");
        }
    }
}
