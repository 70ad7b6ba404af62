//! The audit log: append-only records of security-relevant events (denials, grants,
//! installs, API-key events), sealed in the store under a big-endian sequence number.
//!
//! - **Versioned records.** Each record says `v: 1`; a later version adds a `prev` hash
//!   chaining each record to the one before, without rewriting old ones.
//! - **Bounded.** At most `max_records` (default 1,000,000): past it the oldest are dropped in
//!   a batch, and a record says how many.
//! - **Refusals are aggregated.** An unauthenticated refusal ([`AuditLog::refusal`]) is
//!   written for the first one from a source within a window (default 60 s); later ones are
//!   counted in memory and written as one record "N more refusals from SOURCE" when the window
//!   closes or on [`AuditLog::flush_refusals`]. Refusal records are not fsynced one by one
//!   (sled writes them within its flush interval), so a flood of bad requests costs neither a
//!   disk write each nor an unbounded log.
//! - **Paged reads.** [`AuditLog::page`] opens only the records of one page.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::data::{Store, StoreError, Tree};

/// The record format written now.
pub const RECORD_VERSION: u32 = 1;

fn version_1() -> u32 {
    1
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Record format version (records written before versions existed read as 1).
    #[serde(default = "version_1")]
    pub v: u32,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// `denied`, `granted`, `revoked`, `installed`, `removed`, `limit`, `auth-denied`,
    /// `auth-denied-summary`, `audit-truncated`, …
    pub kind: String,
    /// The plugin, API key id or request source concerned.
    pub subject: String,
    /// The capability or limit concerned, if any.
    pub capability: Option<String>,
    /// Human-readable detail.
    pub detail: String,
}

/// A record with its sequence number (its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Sequence number: increasing, never reused.
    pub seq: u64,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// One page of the log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    /// Matching records, oldest first.
    pub records: Vec<AuditEntry>,
    /// Pass as `after` for the next page; `None` when the log has nothing further.
    pub next: Option<u64>,
}

/// What a page keeps: records of this subject and/or kind.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this subject.
    pub subject: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
}

impl AuditFilter {
    fn keeps(&self, r: &AuditRecord) -> bool {
        self.subject.as_ref().is_none_or(|s| *s == r.subject)
            && self.kind.as_ref().is_none_or(|k| *k == r.kind)
    }
}

/// Bounds of the log.
#[derive(Debug, Clone, Copy)]
pub struct AuditLimits {
    /// Most records kept.
    pub max_records: u64,
    /// Refusals from one source within this window are written once, then counted.
    pub refusal_window: Duration,
}

impl Default for AuditLimits {
    fn default() -> Self {
        Self {
            max_records: 1_000_000,
            refusal_window: Duration::from_secs(60),
        }
    }
}

/// Most sources whose refusals are tracked one by one; past it they share one bucket.
const MAX_SOURCES: usize = 10_000;
/// The bucket of sources past [`MAX_SOURCES`].
const OTHER_SOURCES: &str = "(other sources)";
/// Most records a filtered page reads looking for matches.
const MAX_SCAN: usize = 10_000;

/// Refusals from one source in its current window.
struct Window {
    start: Instant,
    more: u64,
    last: String,
}

#[derive(Default)]
struct Shared {
    limits: Mutex<Option<AuditLimits>>,
    /// Records in the log; read from the store on the first append.
    count: Mutex<Option<u64>>,
    refusals: Mutex<HashMap<String, Window>>,
    last_sweep: Mutex<Option<Instant>>,
}

/// Appends to and reads the audit log; counts denials since the process started.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
    denials: Arc<AtomicU64>,
    by_subject: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("limits", &self.limits())
            .finish()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AuditLog {
    /// The audit log kept in `store`, with the default limits.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            denials: Arc::new(AtomicU64::new(0)),
            by_subject: Arc::default(),
            shared: Arc::default(),
        }
    }

    /// Sets the limits (for every clone of this log).
    pub fn set_limits(&self, limits: AuditLimits) {
        *lock(&self.shared.limits) = Some(limits);
    }

    /// The limits in force.
    pub fn limits(&self) -> AuditLimits {
        lock(&self.shared.limits).unwrap_or_default()
    }

    /// Appends a record, durably (flushed before returning).
    pub fn record(
        &self,
        kind: &str,
        subject: &str,
        capability: Option<String>,
        detail: impl Into<String>,
    ) -> Result<(), StoreError> {
        self.append(kind, subject, capability, detail.into(), true)
    }

    fn append(
        &self,
        kind: &str,
        subject: &str,
        capability: Option<String>,
        detail: String,
        durable: bool,
    ) -> Result<(), StoreError> {
        let rec = AuditRecord {
            v: RECORD_VERSION,
            timestamp_ms: now_ms(),
            kind: kind.into(),
            subject: subject.into(),
            capability,
            detail,
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::Decode {
            tree: Tree::Audit.name(),
            key: String::new(),
            message: e.to_string(),
        })?;
        let mut count = lock(&self.shared.count);
        let n = match *count {
            Some(n) => n,
            None => u64::try_from(self.store.count(Tree::Audit)?).unwrap_or(u64::MAX),
        };
        if durable {
            self.store.append(Tree::Audit, &bytes)?;
        } else {
            self.store.append_buffered(Tree::Audit, &bytes)?;
        }
        *count = Some(self.bound(n.saturating_add(1))?);
        Ok(())
    }

    /// Drops the oldest records when the log holds more than `max_records` (a batch of 1 %
    /// more, so that this runs once per many appends) and records how many; returns the count.
    fn bound(&self, n: u64) -> Result<u64, StoreError> {
        let max = self.limits().max_records.max(1);
        if n <= max {
            return Ok(n);
        }
        // Room for the note below, and a margin.
        let excess = n
            .saturating_sub(max)
            .saturating_add(1)
            .saturating_add(max / 100);
        let drop = usize::try_from(excess).unwrap_or(usize::MAX);
        let dropped = self.store.remove_first(Tree::Audit, drop)?;
        let note = AuditRecord {
            v: RECORD_VERSION,
            timestamp_ms: now_ms(),
            kind: "audit-truncated".into(),
            subject: "audit-log".into(),
            capability: None,
            detail: format!(
                "dropped the {dropped} oldest audit records: the log keeps at most {max} ([audit] max_records)"
            ),
        };
        let bytes = serde_json::to_vec(&note).map_err(|e| StoreError::Decode {
            tree: Tree::Audit.name(),
            key: String::new(),
            message: e.to_string(),
        })?;
        self.store.append(Tree::Audit, &bytes)?;
        tracing::warn!("{}", note.detail);
        let dropped = u64::try_from(dropped).unwrap_or(u64::MAX);
        Ok(n.saturating_sub(dropped).saturating_add(1))
    }

    /// Records a refused, unauthenticated request from `source` (the peer address): the
    /// first from a source within the window is written, later ones are counted and written
    /// as one summary when the window closes or on [`AuditLog::flush_refusals`]. No fsync per
    /// refusal. A failure to write is logged: the refusal happens either way.
    pub fn refusal(&self, source: &str, subject: &str, detail: &str) {
        let window = self.limits().refusal_window;
        let now = Instant::now();
        let mut summaries = self.sweep(now, window);
        let first = {
            let mut map = lock(&self.shared.refusals);
            let key = if map.contains_key(source) || map.len() < MAX_SOURCES {
                source
            } else {
                OTHER_SOURCES
            };
            match map.get_mut(key) {
                Some(w) if now.duration_since(w.start) < window => {
                    w.more = w.more.saturating_add(1);
                    w.last = format!("{subject}: {detail}");
                    false
                }
                _ => {
                    if let Some(old) = map.remove(key) {
                        summaries.extend(summary(key, &old, window));
                    }
                    map.insert(
                        key.to_string(),
                        Window {
                            start: now,
                            more: 0,
                            last: String::new(),
                        },
                    );
                    true
                }
            }
        };
        for (source, detail) in summaries {
            self.write_refusal("auth-denied-summary", &source, detail);
        }
        if first {
            self.write_refusal("auth-denied", subject, format!("from {source}: {detail}"));
        }
    }

    /// Closes the windows that have run out; returns their summaries.
    fn sweep(&self, now: Instant, window: Duration) -> Vec<(String, String)> {
        {
            let mut last = lock(&self.shared.last_sweep);
            match *last {
                Some(t) if now.duration_since(t) < window => return Vec::new(),
                _ => *last = Some(now),
            }
        }
        let mut map = lock(&self.shared.refusals);
        let closed: Vec<String> = map
            .iter()
            .filter(|(_, w)| now.duration_since(w.start) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|k| map.remove(&k).and_then(|w| summary(&k, &w, window)))
            .collect()
    }

    /// Writes a summary of every refusal counted and not yet written (on shutdown, and
    /// before the log is read), keeping the windows open.
    pub fn flush_refusals(&self) {
        let window = self.limits().refusal_window;
        let pending: Vec<(String, String)> = {
            let mut map = lock(&self.shared.refusals);
            map.iter_mut()
                .filter_map(|(k, w)| {
                    let s = summary(k, w, window);
                    w.more = 0;
                    s
                })
                .collect()
        };
        for (source, detail) in pending {
            self.write_refusal("auth-denied-summary", &source, detail);
        }
    }

    fn write_refusal(&self, kind: &str, subject: &str, detail: String) {
        if let Err(e) = self.append(kind, subject, None, detail, false) {
            tracing::error!("audit log: {e}");
        }
    }

    /// Records a denied capability and counts it. A failure to write is logged, not returned:
    /// the denial itself must happen either way.
    pub fn denied(&self, subject: &str, capability: &str, detail: &str) {
        self.denials.fetch_add(1, Ordering::Relaxed);
        let mut by_subject = lock(&self.by_subject);
        let n = by_subject.entry(subject.to_string()).or_default();
        *n = n.saturating_add(1);
        drop(by_subject);
        tracing::warn!(plugin = subject, capability, "{detail}");
        if let Err(e) = self.record("denied", subject, Some(capability.into()), detail) {
            tracing::error!("audit log: {e}");
        }
    }

    /// Denials recorded by this process, per subject (plugin).
    pub fn denials_by_subject(&self) -> Vec<(String, u64)> {
        let m = lock(&self.by_subject);
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Denials recorded by this process.
    pub fn denial_count(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }

    /// Every record, oldest first (opens the whole log: the CLI's `plugin audit`).
    pub fn records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.store
            .values(Tree::Audit, b"")?
            .into_iter()
            .map(|(k, v)| decode(&k, &v).map(|e| e.record))
            .collect()
    }

    /// Up to `limit` records after sequence number `after` that pass `filter`, oldest
    /// first. Only the records read for this page are opened (at most `limit` without a
    /// filter, at most 10,000 with one: then `next` says where to go on).
    pub fn page(
        &self,
        after: Option<u64>,
        limit: usize,
        filter: &AuditFilter,
    ) -> Result<AuditPage, StoreError> {
        let filtered = filter.subject.is_some() || filter.kind.is_some();
        let mut records = Vec::new();
        let mut cursor = after;
        let mut scanned = 0usize;
        loop {
            let want = if filtered { limit.max(100) } else { limit };
            let key = cursor.map(u64::to_be_bytes);
            let batch =
                self.store
                    .page(Tree::Audit, key.as_ref().map(<[u8; 8]>::as_slice), want)?;
            let exhausted = batch.len() < want;
            for (k, v) in &batch {
                let e = decode(k, v)?;
                cursor = Some(e.seq);
                scanned = scanned.saturating_add(1);
                if filter.keeps(&e.record) {
                    records.push(e);
                    if records.len() == limit {
                        return Ok(AuditPage {
                            records,
                            next: cursor,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(AuditPage {
                    records,
                    next: None,
                });
            }
            if scanned >= MAX_SCAN {
                return Ok(AuditPage {
                    records,
                    next: cursor,
                });
            }
        }
    }
}

fn summary(source: &str, w: &Window, window: Duration) -> Option<(String, String)> {
    (w.more > 0).then(|| {
        (
            source.to_string(),
            format!(
                "{} more refusals from {source} within {} s of the first (last: {})",
                w.more,
                window.as_secs(),
                w.last
            ),
        )
    })
}

fn decode(k: &[u8], v: &[u8]) -> Result<AuditEntry, StoreError> {
    let err = |message: String| StoreError::Decode {
        tree: Tree::Audit.name(),
        key: hex::encode(k),
        message,
    };
    let seq = <[u8; 8]>::try_from(k)
        .map(u64::from_be_bytes)
        .map_err(|_| err("the key is not an 8-byte sequence number".into()))?;
    let record = serde_json::from_slice(v).map_err(|e| err(e.to_string()))?;
    Ok(AuditEntry { seq, record })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_home(dir.path()).unwrap();
        (dir, AuditLog::new(store))
    }

    fn all(a: &AuditLog) -> Vec<AuditEntry> {
        a.page(None, usize::MAX, &AuditFilter::default())
            .unwrap()
            .records
    }

    #[test]
    fn paging_returns_every_record_exactly_once() {
        let (_d, a) = log();
        for i in 0..250 {
            let kind = if i % 3 == 0 { "granted" } else { "denied" };
            a.record(kind, &format!("p{}", i % 5), None, format!("#{i}"))
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let p = a.page(after, 100, &AuditFilter::default()).unwrap();
            pages += 1;
            assert!(p.records.len() <= 100);
            seen.extend(p.records.iter().map(|e| e.record.detail.clone()));
            match p.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert!(pages <= 4, "{pages} pages");
        let want: Vec<String> = (0..250).map(|i| format!("#{i}")).collect();
        assert_eq!(seen, want);
        // Filtered: subject p1 and kind denied, all of them once, across pages of 7.
        let f = AuditFilter {
            subject: Some("p1".into()),
            kind: Some("denied".into()),
        };
        let (mut got, mut after) = (Vec::new(), None);
        loop {
            let p = a.page(after, 7, &f).unwrap();
            got.extend(p.records.into_iter().map(|e| e.record.detail));
            match p.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let want: Vec<String> = (0..250)
            .filter(|i| i % 5 == 1 && i % 3 != 0)
            .map(|i| format!("#{i}"))
            .collect();
        assert_eq!(got, want);
        assert!(all(&a).iter().all(|e| e.record.v == 1));
    }

    #[test]
    fn the_bound_drops_the_oldest_and_says_so() {
        let (_d, a) = log();
        a.set_limits(AuditLimits {
            max_records: 100,
            ..AuditLimits::default()
        });
        for i in 0..250 {
            a.record("granted", "p", None, format!("#{i}")).unwrap();
        }
        let recs = all(&a);
        assert!(recs.len() <= 100, "{} records", recs.len());
        let notes: Vec<&AuditEntry> = recs
            .iter()
            .filter(|e| e.record.kind == "audit-truncated")
            .collect();
        assert!(!notes.is_empty());
        assert!(
            notes[0].record.detail.contains("dropped the")
                && notes[0].record.detail.contains("100"),
            "{}",
            notes[0].record.detail
        );
        // The newest survive, the oldest are gone, in order.
        let kept: Vec<&str> = recs
            .iter()
            .filter(|e| e.record.kind == "granted")
            .map(|e| e.record.detail.as_str())
            .collect();
        assert_eq!(kept.last(), Some(&"#249"));
        assert!(!kept.contains(&"#0"));
        assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq));
        // A log reopened counts what it holds.
        let b = AuditLog::new(a.store.clone());
        b.set_limits(a.limits());
        b.record("granted", "p", None, "after reopening").unwrap();
        assert!(all(&b).len() <= 100);
    }

    #[test]
    fn refusals_are_written_once_per_source_and_window_then_summarised() {
        let (_d, a) = log();
        a.set_limits(AuditLimits {
            refusal_window: Duration::from_millis(300),
            ..AuditLimits::default()
        });
        for i in 0..500 {
            a.refusal(
                "10.0.0.1",
                "anonymous",
                &format!("/v1/models: no API key #{i}"),
            );
        }
        a.refusal("10.0.0.2", "unknown", "/v1/models: not a valid key");
        let recs = all(&a);
        assert_eq!(recs.len(), 2, "{recs:?}");
        a.flush_refusals();
        let recs = all(&a);
        assert_eq!(recs.len(), 3, "{recs:?}");
        let s = &recs[2].record;
        assert_eq!(s.kind, "auth-denied-summary");
        assert_eq!(s.subject, "10.0.0.1");
        assert!(
            s.detail.starts_with("499 more refusals from 10.0.0.1"),
            "{}",
            s.detail
        );
        assert!(s.detail.contains("#499"), "{}", s.detail);
        // After the window: the next refusal is written again.
        std::thread::sleep(Duration::from_millis(350));
        a.refusal("10.0.0.1", "anonymous", "/v1/models: no API key again");
        assert_eq!(all(&a).len(), 4);
    }
}
