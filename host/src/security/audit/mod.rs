//! The audit log: a tamper-evident, hash-chained record of security-relevant events
//! (denials, grants, installs, API-key events, admin actions), sealed in the store.
//!
//! - **Entries** `{v, seq, time, who, what, target, outcome, capability, detail, prev}`:
//!   `who` is the key id, `cli`, a plugin or `llmos` itself ([`current_actor`]); `prev` is the
//!   SHA-256 of the previous entry's canonical bytes ([`chain`]). Sequence numbers are
//!   consecutive, so a removed entry shows as a gap; a MAC'd head record written with each
//!   append shows removed newest entries.
//! - **Bounded by segments** of `segment_records`: past `max_records` the oldest whole
//!   segments are removed, each leaving a MAC'd checkpoint from which the rest still verifies,
//!   and an entry says what went. `llmos audit archive` exports segments before removing them.
//! - **Verified** by [`AuditLog::verify`] (`llmos audit verify`, `GET /admin/audit/verify`),
//!   which names the first edited, removed, reordered or inserted entry, or forged checkpoint.
//! - **Refusals are aggregated.** An unauthenticated refusal ([`AuditLog::refusal`]) is
//!   written for the first one from a source within a window (default 60 s); later ones are
//!   counted in memory and written as one entry "N more refusals from SOURCE" when the window
//!   closes or on [`AuditLog::flush_refusals`]. Those entries are buffered (written together
//!   with the next durable entry, within a second, or on [`AuditLog::flush`]), so a flood of
//!   bad requests costs neither a disk sync each nor an unbounded log.
//! - **Plugin traps** ([`AuditLog::trap`]: a call that trapped or ran out of a limit) are
//!   aggregated the same way per plugin, the first [`TRAP_BURST`] of a window written.
//! - **Paged reads.** [`AuditLog::page`] opens only the entries of one page.
//! - **Format v1** records (before the chain) are still read; the chain starts after them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::data::{Store, StoreError, Tree};

pub mod chain;
mod refusals;
pub mod verify;

pub use chain::{Checkpoint, Dropped};
pub use verify::{Problem, VerifyReport};

/// The record format written now (2: chained).
pub const RECORD_VERSION: u32 = 2;

fn version_1() -> u32 {
    1
}

/// The actor of what llmos does by itself (bounds, recovery, and writes made outside any
/// request or command).
pub const SYSTEM_ACTOR: &str = "llmos";

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Record format version (1: before the chain, 2: chained).
    #[serde(default = "version_1")]
    pub v: u32,
    /// Sequence number: consecutive, never reused (format v1: its key).
    #[serde(default)]
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    #[serde(alias = "timestamp_ms")]
    pub time: u64,
    /// Who: an API key id, `cli`, `plugin:NAME`, `anonymous`, or `llmos`.
    #[serde(default)]
    pub who: String,
    /// What happened: `denied`, `granted`, `revoked`, `installed`, `removed`, `key-created`,
    /// `key-revoked`, `admin-action`, `auth-denied`, `auth-denied-summary`, `trap`,
    /// `audit-truncated`, …
    #[serde(alias = "kind")]
    pub what: String,
    /// What it concerned: a plugin, API key id, request source or path.
    #[serde(alias = "subject")]
    pub target: String,
    /// `ok`, `denied`, `failed` (a trap), or an HTTP status for admin actions.
    #[serde(default)]
    pub outcome: String,
    /// The capability concerned, if any.
    #[serde(default)]
    pub capability: Option<String>,
    /// Human-readable detail.
    #[serde(default)]
    pub detail: String,
    /// Hash of the previous entry (hex); absent in format v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

impl AuditRecord {
    /// An entry llmos writes about the log itself.
    fn note(what: &str, detail: String) -> Self {
        Self::from_event(AuditEvent::new(what, "audit-log").by(SYSTEM_ACTOR).detail(detail))
    }

    fn from_event(e: AuditEvent) -> Self {
        Self {
            v: RECORD_VERSION,
            seq: 0,
            time: now_ms(),
            who: e.who.unwrap_or_else(current_actor),
            what: e.what,
            target: e.target,
            outcome: e.outcome,
            capability: e.capability,
            detail: e.detail,
            prev: None,
        }
    }
}

/// An event to record; `who` defaults to [`current_actor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The actor, or `None` for the current one.
    pub who: Option<String>,
    /// What happened.
    pub what: String,
    /// What it concerned.
    pub target: String,
    /// How it ended.
    pub outcome: String,
    /// The capability concerned.
    pub capability: Option<String>,
    /// Detail.
    pub detail: String,
}

impl AuditEvent {
    /// `what` happened to `target`, successfully, by the current actor.
    pub fn new(what: &str, target: &str) -> Self {
        Self {
            who: None,
            what: what.into(),
            target: target.into(),
            outcome: outcome_of(what).into(),
            capability: None,
            detail: String::new(),
        }
    }

    /// Done by `who`.
    pub fn by(mut self, who: &str) -> Self {
        self.who = Some(who.into());
        self
    }

    /// Ended with `outcome`.
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self
    }

    /// Concerning `capability`.
    pub fn capability(mut self, capability: Option<String>) -> Self {
        self.capability = capability;
        self
    }

    /// With `detail`.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// The outcome an event of this kind has unless told otherwise.
fn outcome_of(what: &str) -> &'static str {
    if what == "denied" || what.starts_with("auth-denied") {
        "denied"
    } else if what == "trap" {
        "failed"
    } else {
        "ok"
    }
}

thread_local! {
    static THREAD_ACTOR: Cell<Option<String>> = const { Cell::new(None) };
}
tokio::task_local! {
    static TASK_ACTOR: String;
}
static PROCESS_ACTOR: OnceLock<String> = OnceLock::new();

/// Runs `f` with `who` as the actor of what it records on this thread.
pub fn acting_as<T>(who: Option<String>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = self.0.take();
            THREAD_ACTOR.with(|a| a.set(old));
        }
    }
    let _restore = who.map(|w| Restore(THREAD_ACTOR.with(|a| a.replace(Some(w)))));
    f()
}

/// Runs the future `f` with `who` as the actor of what it records (an HTTP request).
pub async fn acting_as_async<F: Future>(who: String, f: F) -> F::Output {
    TASK_ACTOR.scope(who, f).await
}

/// Sets the actor of this whole process (the CLI: `cli`); the first call wins.
pub fn set_process_actor(who: &str) {
    let _ = PROCESS_ACTOR.set(who.into());
}

/// Who is acting here: set by [`acting_as`] (this thread), [`acting_as_async`] (this
/// request), [`set_process_actor`], else [`SYSTEM_ACTOR`].
pub fn current_actor() -> String {
    THREAD_ACTOR
        .with(|a| {
            let v = a.take();
            a.set(v.clone());
            v
        })
        .or_else(|| TASK_ACTOR.try_with(Clone::clone).ok())
        .or_else(|| PROCESS_ACTOR.get().cloned())
        .unwrap_or_else(|| SYSTEM_ACTOR.into())
}

/// One page of the log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    /// Matching entries, oldest first.
    pub records: Vec<AuditRecord>,
    /// Pass as `after` for the next page; `None` when the log has nothing further.
    pub next: Option<u64>,
}

/// What a page keeps: entries matching every field given.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only by this actor.
    pub who: Option<String>,
    /// Only this kind of event.
    pub what: Option<String>,
    /// Only concerning this.
    pub target: Option<String>,
    /// Only with this outcome.
    pub outcome: Option<String>,
}

impl AuditFilter {
    fn is_empty(&self) -> bool {
        self.who.is_none() && self.what.is_none() && self.target.is_none() && self.outcome.is_none()
    }

    fn keeps(&self, r: &AuditRecord) -> bool {
        let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        is(&self.who, &r.who)
            && is(&self.what, &r.what)
            && is(&self.target, &r.target)
            && is(&self.outcome, &r.outcome)
    }
}

/// Bounds of the log.
#[derive(Debug, Clone, Copy)]
pub struct AuditLimits {
    /// Most entries kept; past it the oldest whole segments are removed.
    pub max_records: u64,
    /// Entries per segment (the unit of removal).
    pub segment_records: u64,
    /// Refusals from one source within this window are written once, then counted.
    pub refusal_window: Duration,
}

impl Default for AuditLimits {
    fn default() -> Self {
        Self {
            max_records: 1_000_000,
            segment_records: 10_000,
            refusal_window: Duration::from_secs(60),
        }
    }
}

impl AuditLimits {
    /// The segment size used: `segment_records`, at most a tenth of `max_records` (so that
    /// removing whole segments can keep the bound), at least 1.
    pub fn segment(&self) -> u64 {
        self.segment_records
            .min(self.max_records.checked_div(10).unwrap_or(0))
            .max(1)
    }
}

/// Traps of one plugin written one by one within a window before they are only counted.
pub const TRAP_BURST: u64 = 3;

/// Most characters of a trap entry's detail.
pub const MAX_TRAP_DETAIL: usize = 300;

/// `s` on one line (control characters as spaces), cut to `max` characters with `…`.
fn bounded(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

/// Most entries a filtered page reads looking for matches.
const MAX_SCAN: usize = 10_000;

#[derive(Default)]
struct Shared {
    limits: Mutex<Option<AuditLimits>>,
    chain: Mutex<Option<Arc<chain::Chain>>>,
    refusals: refusals::Refusals,
    traps: refusals::Refusals,
}

/// Appends to, reads and verifies the audit log; counts denials since the process started.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
    denials: Arc<AtomicU64>,
    by_subject: Arc<Mutex<BTreeMap<String, u64>>>,
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

    fn chain(&self) -> Result<Arc<chain::Chain>, StoreError> {
        let mut c = lock(&self.shared.chain);
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let found = chain::chain_of(&self.store)?;
        *c = Some(found.clone());
        Ok(found)
    }

    /// Appends an entry `kind` about `subject` by the current actor, durably (written and
    /// flushed before returning).
    pub fn record(
        &self,
        kind: &str,
        subject: &str,
        capability: Option<String>,
        detail: impl Into<String>,
    ) -> Result<(), StoreError> {
        let e = AuditEvent::new(kind, subject)
            .capability(capability)
            .detail(detail);
        self.event(e).map(|_| ())
    }

    /// Appends an event durably; returns its seq.
    pub fn event(&self, e: AuditEvent) -> Result<u64, StoreError> {
        self.append(e, true)
    }

    fn append(&self, e: AuditEvent, durable: bool) -> Result<u64, StoreError> {
        let limits = self.limits();
        self.chain()?.append(
            AuditRecord::from_event(e),
            durable,
            limits.max_records,
            limits.segment(),
        )
    }

    /// Writes the buffered entries (refusals) now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.chain()?.flush()
    }

    /// Records a refused, unauthenticated request from `source` (the peer address): the
    /// first from a source within the window is written, later ones are counted and written
    /// as one summary when the window closes or on [`AuditLog::flush_refusals`]. Buffered,
    /// never a disk sync each. A failure to write is logged: the refusal happens either way.
    pub fn refusal(&self, source: &str, subject: &str, detail: &str) {
        let window = self.limits().refusal_window;
        let (first, summaries) =
            self.shared
                .refusals
                .count(source, format!("{subject}: {detail}"), window, 1);
        for s in summaries {
            self.write_refusal_summary(s, window);
        }
        if first {
            self.write_refusal(
                "auth-denied",
                subject,
                source,
                format!("from {source}: {detail}"),
            );
        }
    }

    /// Records a plugin call that trapped or ran out of a limit (time, memory, stack, host
    /// calls, resources): `detail` says which, and where (host-written, cut to
    /// [`MAX_TRAP_DETAIL`] characters). Aggregated like refusals: the first [`TRAP_BURST`]
    /// of a plugin within the window are written, later ones are counted and written as one
    /// entry "N more traps …" when the window closes or on [`AuditLog::flush_refusals`], so a
    /// plugin that traps in a loop cannot grow the log without bound. Buffered, never a disk
    /// sync each; a failure to write is logged.
    pub fn trap(&self, plugin: &str, detail: &str) {
        let window = self.limits().refusal_window;
        let detail = bounded(detail, MAX_TRAP_DETAIL);
        let (first, summaries) =
            self.shared
                .traps
                .count(plugin, detail.clone(), window, TRAP_BURST);
        for s in summaries {
            self.write_trap_summary(s, window);
        }
        if first {
            self.write_trap(plugin, detail);
        }
    }

    /// Writes a summary of every refusal and trap counted and not yet written (on shutdown,
    /// and before the log is read), keeping the windows open; then writes what is buffered.
    pub fn flush_refusals(&self) {
        let window = self.limits().refusal_window;
        for s in self.shared.refusals.pending() {
            self.write_refusal_summary(s, window);
        }
        for s in self.shared.traps.pending() {
            self.write_trap_summary(s, window);
        }
        if let Err(e) = self.flush() {
            tracing::error!("audit log: {e}");
        }
    }

    fn write_refusal_summary(&self, (source, more, last): refusals::Summary, window: Duration) {
        let detail = format!(
            "{more} more refusals from {source} within {} s of the first (last: {last})",
            window.as_secs()
        );
        self.write_refusal("auth-denied-summary", "anonymous", &source, detail);
    }

    fn write_refusal(&self, what: &str, who: &str, source: &str, detail: String) {
        let e = AuditEvent::new(what, source).by(who).detail(detail);
        if let Err(e) = self.append(e, false) {
            tracing::error!("audit log: {e}");
        }
    }

    fn write_trap_summary(&self, (plugin, more, last): refusals::Summary, window: Duration) {
        let detail = format!(
            "{more} more traps within {} s of the first (last: {last})",
            window.as_secs()
        );
        self.write_trap(&plugin, detail);
    }

    fn write_trap(&self, plugin: &str, detail: String) {
        let e = AuditEvent::new("trap", plugin)
            .by(&format!("plugin:{plugin}"))
            .detail(detail);
        if let Err(e) = self.append(e, false) {
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
        let e = AuditEvent::new("denied", subject)
            .by(&format!("plugin:{subject}"))
            .capability(Some(capability.into()))
            .detail(detail);
        if let Err(e) = self.event(e) {
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

    /// Every entry, oldest first (opens the whole log: the CLI's `plugin audit`).
    pub fn records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.flush()?;
        self.store
            .values(Tree::Audit, b"")?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Up to `limit` entries after sequence number `after` that pass `filter`, oldest
    /// first. Only the entries read for this page are opened (at most `limit` without a
    /// filter, at most 10,000 with one: then `next` says where to go on).
    pub fn page(
        &self,
        after: Option<u64>,
        limit: usize,
        filter: &AuditFilter,
    ) -> Result<AuditPage, StoreError> {
        self.flush()?;
        if limit == 0 {
            return Ok(AuditPage {
                records: Vec::new(),
                next: after,
            });
        }
        let filtered = !filter.is_empty();
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
                if filter.keeps(&e) {
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

    /// The newest `n` entries, oldest first.
    pub fn tail(&self, n: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let head = self.head_seq()?;
        let back = u64::try_from(n).unwrap_or(u64::MAX);
        let after = head.checked_sub(back).filter(|a| *a > 0);
        Ok(self.page(after, n, &AuditFilter::default())?.records)
    }

    /// The newest entry's seq (0 when the log is empty).
    pub fn head_seq(&self) -> Result<u64, StoreError> {
        self.chain()?.head_seq()
    }

    /// Verifies the whole log (see [`verify`]); the report names the first problem.
    /// Appends wait only while the head and the entry keys are read; entries appended
    /// meanwhile are left for the next run. When a segment was removed meanwhile and a
    /// problem was found, the walk runs again with appends waiting.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let chain = self.chain()?;
        let (snap, drops) = chain.locked(|| verify::snapshot(&self.store))?;
        let report = verify::verify(&self.store, snap?)?;
        if report.ok || chain.drops() == drops {
            return Ok(report);
        }
        let (report, _) = chain.locked(|| {
            verify::snapshot(&self.store).and_then(|s| verify::verify(&self.store, s))
        })?;
        report
    }

    /// Exports every whole segment that ends before `before` to `out` (JSON lines, one
    /// segment at a time, each handed over before it is removed), then removes it behind a
    /// checkpoint. The segment holding the newest entry always stays.
    pub fn archive(
        &self,
        before: u64,
        out: &mut chain::Archive<'_>,
    ) -> Result<Vec<Dropped>, StoreError> {
        let segment = self.limits().segment();
        let dropped = self.chain()?.archive(before, segment, out)?;
        if let (Some(first), Some(last)) = (dropped.first(), dropped.last()) {
            let records: u64 = dropped.iter().map(|d| d.records).fold(0, u64::saturating_add);
            self.event(
                AuditEvent::new("audit-archived", "audit-log").detail(format!(
                    "archived and removed {records} entries (seq {} to {}); checkpoint at seq {}",
                    first.first, last.last, last.last
                )),
            )?;
        }
        Ok(dropped)
    }
}

fn decode(k: &[u8], v: &[u8]) -> Result<AuditRecord, StoreError> {
    let seq = chain::seq_of(k)?;
    let mut r: AuditRecord = serde_json::from_slice(v)
        .map_err(|e| chain::decode_err(Tree::Audit, k, e.to_string()))?;
    if r.v < 2 {
        r.seq = seq;
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
