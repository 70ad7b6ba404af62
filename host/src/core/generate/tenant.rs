//! Tenants of generation (docs/generation.md, "Scheduling"): who a stream belongs to, the
//! per-tenant limits checked when a request starts (`max_streams`, `max_queued_tokens`),
//! and the per-tenant counters behind `/metrics`.
//!
//! A [`Ticket`] goes with each generation stream from submission to its end: it counts the
//! stream (and, until the engine admits it, its queued tokens) against its tenant, and
//! gives the engine the tenant's name and weight. Dropping it (the sequence finished, was
//! cancelled, or never ran) gives everything back, so no count can leak.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The tenant of requests made without an API key (open mode, the CLI, plugins).
pub const LOCAL_TENANT: &str = "local";

/// A key's priority class: its tenant's share of the engine is weighted by it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Weight 4.
    High,
    /// Weight 2.
    #[default]
    Normal,
    /// Weight 1.
    Low,
}

impl Priority {
    /// The weight of the class in deficit round-robin (quanta per visit).
    pub fn weight(self) -> u64 {
        match self {
            Self::High => 4,
            Self::Normal => 2,
            Self::Low => 1,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    /// Parses `high`, `normal` or `low`; the error names what is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "high" => Ok(Self::High),
            "normal" => Ok(Self::Normal),
            "low" => Ok(Self::Low),
            _ => Err(format!("invalid priority {s:?}: accepted are high, normal, low")),
        }
    }
}

/// Who a request runs for and what it may hold (from its API key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The key's `tenant` label, else its id; [`LOCAL_TENANT`] without a key.
    pub name: Arc<str>,
    /// Priority class.
    pub priority: Priority,
    /// Most streams (queued or running) at once.
    pub max_streams: Option<usize>,
    /// Most tokens (prompt + `max_tokens`) of requests waiting to be admitted.
    pub max_queued_tokens: Option<usize>,
}

impl Tenant {
    /// The tenant of requests without a key.
    pub fn local() -> Self {
        Self {
            name: LOCAL_TENANT.into(),
            priority: Priority::Normal,
            max_streams: None,
            max_queued_tokens: None,
        }
    }
}

/// Upper bounds (seconds) of the time-to-first-token histogram.
pub const TTFT_BUCKETS: [f64; 10] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counters of one tenant (all models together).
#[derive(Debug, Default)]
pub struct TenantStats {
    /// Streams waiting for the engine to admit them.
    pub queued_requests: AtomicUsize,
    /// Their tokens (prompt + `max_tokens`).
    pub queued_tokens: AtomicUsize,
    /// Streams admitted and not yet ended (running, or paused by the scheduler).
    pub running: AtomicUsize,
    /// Tokens generated.
    pub generated: AtomicU64,
    /// Time to first token: counts per bucket of [`TTFT_BUCKETS`], then the rest.
    pub ttft: [AtomicU64; TTFT_BUCKETS.len() + 1],
    /// Sum of the times to first token, microseconds.
    pub ttft_sum_us: AtomicU64,
    /// Serialises check-and-count of the limits.
    gate: Mutex<()>,
}

impl TenantStats {
    /// Streams queued or running.
    pub fn streams(&self) -> usize {
        self.queued_requests
            .load(Ordering::Relaxed)
            .saturating_add(self.running.load(Ordering::Relaxed))
    }

    fn observe_ttft(&self, wait: std::time::Duration) {
        let secs = wait.as_secs_f64();
        let i = TTFT_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(TTFT_BUCKETS.len());
        if let Some(b) = self.ttft.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.ttft_sum_us.fetch_add(
            u64::try_from(wait.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// A request refused at a tenant's limit (HTTP 429).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// `max_streams` reached.
    #[error(
        "tenant {tenant} is at its limit max_streams = {max}: {current} generation streams are queued or running now and this request needs {asked} more; retry when one ends"
    )]
    Streams {
        /// Tenant.
        tenant: String,
        /// The limit.
        max: usize,
        /// Streams now.
        current: usize,
        /// Streams the request needs.
        asked: usize,
    },
    /// `max_queued_tokens` reached.
    #[error(
        "tenant {tenant} is at its limit max_queued_tokens = {max}: {current} tokens (prompt + max_tokens) are queued now and this request adds {asked}; retry when the queue drains or ask for fewer max_tokens"
    )]
    QueuedTokens {
        /// Tenant.
        tenant: String,
        /// The limit.
        max: usize,
        /// Tokens queued now.
        current: usize,
        /// Tokens of the request.
        asked: usize,
    },
}

/// Every tenant seen since the server started (bounded by the keys that exist).
#[derive(Debug, Default)]
pub struct Tenants {
    map: Mutex<BTreeMap<Arc<str>, Arc<TenantStats>>>,
}

impl Tenants {
    /// The counters of `name` (created on first use).
    pub fn stats(&self, name: &Arc<str>) -> Arc<TenantStats> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.clone()).or_default().clone()
    }

    /// Every tenant's counters, by name.
    pub fn snapshot(&self) -> Vec<(Arc<str>, Arc<TenantStats>)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Tickets for streams of `tenant`, one per entry of `tokens` (each its prompt +
    /// `max_tokens`), all counted at once or none: refused when the tenant's streams or
    /// queued tokens would pass its limits.
    pub fn admit(&self, tenant: &Tenant, tokens: &[usize]) -> Result<Vec<Ticket>, LimitError> {
        let stats = self.stats(&tenant.name);
        let _gate = stats.gate.lock().unwrap_or_else(|e| e.into_inner());
        let asked = tokens.len();
        let current = stats.streams();
        if let Some(max) = tenant.max_streams
            && current.saturating_add(asked) > max
        {
            return Err(LimitError::Streams {
                tenant: tenant.name.to_string(),
                max,
                current,
                asked,
            });
        }
        let sum = tokens.iter().fold(0usize, |a, t| a.saturating_add(*t));
        let queued = stats.queued_tokens.load(Ordering::Relaxed);
        if let Some(max) = tenant.max_queued_tokens
            && queued.saturating_add(sum) > max
        {
            return Err(LimitError::QueuedTokens {
                tenant: tenant.name.to_string(),
                max,
                current: queued,
                asked: sum,
            });
        }
        let now = Instant::now();
        Ok(tokens
            .iter()
            .map(|&t| {
                stats.queued_requests.fetch_add(1, Ordering::Relaxed);
                stats.queued_tokens.fetch_add(t, Ordering::Relaxed);
                Ticket {
                    tenant: tenant.name.clone(),
                    weight: tenant.priority.weight(),
                    stats: stats.clone(),
                    queued_tokens: t,
                    queued: true,
                    ended: false,
                    submitted: now,
                    first_token: false,
                }
            })
            .collect())
    }
}

/// One stream's place in its tenant's counts (see the module doc).
#[derive(Debug)]
pub struct Ticket {
    tenant: Arc<str>,
    weight: u64,
    stats: Arc<TenantStats>,
    queued_tokens: usize,
    queued: bool,
    ended: bool,
    submitted: Instant,
    first_token: bool,
}

impl Ticket {
    /// A ticket of the local tenant with no limits, counted in `tenants`.
    pub fn local(tenants: &Tenants, tokens: usize) -> Option<Self> {
        tenants.admit(&Tenant::local(), &[tokens]).ok()?.pop()
    }

    /// The tenant.
    pub fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// Its weight (priority class).
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// The engine took the stream in: it is no longer queued.
    pub(crate) fn admitted(&mut self) {
        if std::mem::replace(&mut self.queued, false) {
            self.stats.queued_requests.fetch_sub(1, Ordering::Relaxed);
            self.stats
                .queued_tokens
                .fetch_sub(self.queued_tokens, Ordering::Relaxed);
            self.stats.running.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One token generated (the first one also times the wait).
    pub(crate) fn token(&mut self) {
        self.stats.generated.fetch_add(1, Ordering::Relaxed);
        if !std::mem::replace(&mut self.first_token, true) {
            self.stats
                .observe_ttft(self.submitted.elapsed());
        }
    }

    /// The stream ended: it stops counting now (before its last event goes out).
    pub(crate) fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if std::mem::replace(&mut self.queued, false) {
            self.stats.queued_requests.fetch_sub(1, Ordering::Relaxed);
            self.stats
                .queued_tokens
                .fetch_sub(self.queued_tokens, Ordering::Relaxed);
        } else {
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(max_streams: Option<usize>, max_queued_tokens: Option<usize>) -> Tenant {
        Tenant {
            name: "acme".into(),
            priority: Priority::Low,
            max_streams,
            max_queued_tokens,
        }
    }

    #[test]
    fn limits_count_streams_and_queued_tokens_and_tickets_give_them_back() {
        let t = Tenants::default();
        let mut a = t.admit(&tenant(Some(2), Some(100)), &[40, 40]).unwrap();
        let e = t.admit(&tenant(Some(2), None), &[1]).unwrap_err();
        assert_eq!(
            e,
            LimitError::Streams { tenant: "acme".into(), max: 2, current: 2, asked: 1 }
        );
        assert!(e.to_string().contains("max_streams = 2"), "{e}");
        let e = t.admit(&tenant(None, Some(100)), &[30]).unwrap_err();
        assert!(e.to_string().contains("max_queued_tokens = 100") && e.to_string().contains("80 tokens"), "{e}");
        // Admitted streams leave the queued tokens but still count as streams.
        for x in &mut a {
            x.admitted();
        }
        let s = t.stats(&"acme".into());
        assert_eq!((s.queued_tokens.load(Ordering::Relaxed), s.running.load(Ordering::Relaxed)), (0, 2));
        assert!(t.admit(&tenant(Some(2), Some(100)), &[30]).is_err());
        let b = t.admit(&tenant(Some(3), Some(100)), &[30]).unwrap();
        a.truncate(1);
        a[0].token();
        a[0].end();
        drop(a);
        drop(b);
        assert_eq!(s.streams(), 0);
        assert_eq!(s.queued_tokens.load(Ordering::Relaxed), 0);
        assert_eq!(s.generated.load(Ordering::Relaxed), 1);
        assert_eq!(t.admit(&tenant(Some(1), Some(10)), &[10]).unwrap()[0].weight(), 1);
    }
}
