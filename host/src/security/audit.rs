//! The audit log: append-only records of security-relevant events (denials, grants,
//! installs), sealed in the store. The HTTP API issue adds API-key events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::data::{Store, StoreError, Tree};

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// `denied`, `granted`, `revoked`, `installed`, `removed`, `limit`, …
    pub kind: String,
    /// The plugin (or later the API key id) concerned.
    pub subject: String,
    /// The capability or limit concerned, if any.
    pub capability: Option<String>,
    /// Human-readable detail.
    pub detail: String,
}

/// Appends to and reads the audit log; counts denials since the process started.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Store,
    denials: Arc<AtomicU64>,
    by_subject: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AuditLog {
    /// The audit log kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            denials: Arc::new(AtomicU64::new(0)),
            by_subject: Arc::default(),
        }
    }

    /// Appends a record.
    pub fn record(
        &self,
        kind: &str,
        subject: &str,
        capability: Option<String>,
        detail: impl Into<String>,
    ) -> Result<(), StoreError> {
        let rec = AuditRecord {
            timestamp_ms: now_ms(),
            kind: kind.into(),
            subject: subject.into(),
            capability,
            detail: detail.into(),
        };
        let bytes = serde_json::to_vec(&rec).expect("plain data");
        self.store.append(Tree::Audit, &bytes).map(|_| ())
    }

    /// Records a denied capability and counts it. A failure to write is logged, not returned:
    /// the denial itself must happen either way.
    pub fn denied(&self, subject: &str, capability: &str, detail: &str) {
        self.denials.fetch_add(1, Ordering::Relaxed);
        *self
            .by_subject
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(subject.to_string())
            .or_default() += 1;
        tracing::warn!(plugin = subject, capability, "{detail}");
        if let Err(e) = self.record("denied", subject, Some(capability.into()), detail) {
            tracing::error!("audit log: {e}");
        }
    }

    /// Denials recorded by this process, per subject (plugin).
    pub fn denials_by_subject(&self) -> Vec<(String, u64)> {
        let m = self.by_subject.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Denials recorded by this process.
    pub fn denial_count(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.store
            .values(Tree::Audit, b"")?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Decode {
                    tree: Tree::Audit.name(),
                    key: hex::encode(k),
                    message: e.to_string(),
                })
            })
            .collect()
    }
}
