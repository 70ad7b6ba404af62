//! Per-call limits: CPU time, memory, output size and host calls.
//!
//! Every call gets a fresh store carrying a [`Limiter`] and an epoch deadline, so a limit
//! hit by one call never affects the next. The defaults are safe for untrusted code; a
//! manifest may ask for more, up to the host's ceilings ([`Limits::MAX`]).

use serde::{Deserialize, Serialize};

/// Limits of one call, and the plugin's storage quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock budget of one call, enforced by epoch interruption (milliseconds).
    /// Time spent in host calls (e.g. inference) counts too.
    pub timeout_ms: u64,
    /// Linear memory of the store, all memories together (MiB).
    pub memory_mib: u64,
    /// Total bytes of strings a call may return.
    pub max_output_bytes: u64,
    /// Calls into host interfaces (log, config, kv, inference, secrets) per call.
    pub max_host_calls: u64,
    /// `inference` calls (embed, classify, entities, generate) per plugin call.
    pub max_inference_calls: u64,
    /// Tokens all `inference` calls of one plugin call may make the models process.
    pub max_inference_tokens: u64,
    /// Bytes of kv data (keys and values) the plugin may keep, all calls together.
    pub kv_max_bytes: u64,
    /// kv keys the plugin may keep.
    pub kv_max_keys: u64,
    /// Largest kv value, bytes (at most 1 MiB).
    pub kv_max_value_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: 100,
            memory_mib: 64,
            max_output_bytes: 1 << 20,
            max_host_calls: 10_000,
            max_inference_calls: 64,
            max_inference_tokens: 16_384,
            kv_max_bytes: 16 << 20,
            kv_max_keys: 10_000,
            kv_max_value_bytes: 1 << 20,
        }
    }
}

/// `o`, else `d`, clamped to `lo..=hi`.
fn pick(o: Option<u64>, d: u64, lo: u64, hi: u64) -> u64 {
    o.unwrap_or(d).clamp(lo, hi)
}

impl Limits {
    /// Ceilings no manifest can exceed.
    pub const MAX: Limits = Limits {
        timeout_ms: 30_000,
        memory_mib: 512,
        max_output_bytes: 64 << 20,
        max_host_calls: 1_000_000,
        max_inference_calls: 100_000,
        max_inference_tokens: 10_000_000,
        kv_max_bytes: 1 << 30,
        kv_max_keys: 10_000_000,
        kv_max_value_bytes: 1 << 20,
    };

    /// The defaults overridden by what a manifest asks, clamped to [`Limits::MAX`].
    pub fn from_request(req: &LimitsRequest) -> Self {
        Limits::default().with_overrides(req)
    }

    /// These limits with the operator's overrides applied, clamped to [`Limits::MAX`].
    pub fn with_overrides(self, o: &LimitsRequest) -> Self {
        let m = Limits::MAX;
        Limits {
            timeout_ms: pick(o.timeout_ms, self.timeout_ms, 1, m.timeout_ms),
            memory_mib: pick(o.memory_mib, self.memory_mib, 1, m.memory_mib),
            max_output_bytes: pick(
                o.max_output_bytes,
                self.max_output_bytes,
                0,
                m.max_output_bytes,
            ),
            max_host_calls: pick(o.max_host_calls, self.max_host_calls, 0, m.max_host_calls),
            max_inference_calls: pick(
                o.max_inference_calls,
                self.max_inference_calls,
                0,
                m.max_inference_calls,
            ),
            max_inference_tokens: pick(
                o.max_inference_tokens,
                self.max_inference_tokens,
                0,
                m.max_inference_tokens,
            ),
            kv_max_bytes: pick(o.kv_max_bytes, self.kv_max_bytes, 0, m.kv_max_bytes),
            kv_max_keys: pick(o.kv_max_keys, self.kv_max_keys, 0, m.kv_max_keys),
            kv_max_value_bytes: pick(
                o.kv_max_value_bytes,
                self.kv_max_value_bytes,
                0,
                m.kv_max_value_bytes,
            ),
        }
    }
}

/// One limit a manifest raises above the host's default (shown at install and upgrade; the
/// operator must approve it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedLimit {
    /// The `[limits]` key, e.g. `timeout_ms`.
    pub name: String,
    /// What the plugin gets (after clamping to the ceilings).
    pub asked: u64,
    /// The host's default.
    pub default: u64,
}

impl std::fmt::Display for RaisedLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (default {})", self.name, self.asked, self.default)
    }
}

impl LimitsRequest {
    /// The limits this request (a manifest's `[limits]`) raises above the host's defaults.
    pub fn raised(&self) -> Vec<RaisedLimit> {
        let l = Limits::from_request(self);
        let d = Limits::default();
        [
            ("timeout_ms", l.timeout_ms, d.timeout_ms),
            ("memory_mib", l.memory_mib, d.memory_mib),
            ("max_output_bytes", l.max_output_bytes, d.max_output_bytes),
            ("max_host_calls", l.max_host_calls, d.max_host_calls),
            (
                "max_inference_calls",
                l.max_inference_calls,
                d.max_inference_calls,
            ),
            (
                "max_inference_tokens",
                l.max_inference_tokens,
                d.max_inference_tokens,
            ),
            ("kv_max_bytes", l.kv_max_bytes, d.kv_max_bytes),
            ("kv_max_keys", l.kv_max_keys, d.kv_max_keys),
            (
                "kv_max_value_bytes",
                l.kv_max_value_bytes,
                d.kv_max_value_bytes,
            ),
        ]
        .into_iter()
        .filter(|(_, asked, default)| asked > default)
        .map(|(name, asked, default)| RaisedLimit {
            name: name.into(),
            asked,
            default,
        })
        .collect()
    }
}

/// `[limits]` of a manifest (and the operator's overrides): what the plugin needs; omitted fields take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// See [`Limits::timeout_ms`] (default 100).
    pub timeout_ms: Option<u64>,
    /// See [`Limits::memory_mib`] (default 64).
    pub memory_mib: Option<u64>,
    /// See [`Limits::max_output_bytes`] (default 1 MiB).
    pub max_output_bytes: Option<u64>,
    /// See [`Limits::max_host_calls`] (default 10000).
    pub max_host_calls: Option<u64>,
    /// See [`Limits::max_inference_calls`] (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inference_calls: Option<u64>,
    /// See [`Limits::max_inference_tokens`] (default 16384).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inference_tokens: Option<u64>,
    /// See [`Limits::kv_max_bytes`] (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_bytes: Option<u64>,
    /// See [`Limits::kv_max_keys`] (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_keys: Option<u64>,
    /// See [`Limits::kv_max_value_bytes`] (default 1 MiB, the ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_max_value_bytes: Option<u64>,
}

/// Which limit stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// CPU/wall time ([`Limits::timeout_ms`]).
    Time,
    /// Linear memory ([`Limits::memory_mib`]).
    Memory,
    /// The wasm stack (engine-wide, 512 KiB).
    Stack,
    /// Returned bytes ([`Limits::max_output_bytes`]).
    Output,
    /// Host calls ([`Limits::max_host_calls`]).
    HostCalls,
    /// Tables, instances or host resources (wasi handles, http fields size).
    Resources,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::Time => "time",
            LimitKind::Memory => "memory",
            LimitKind::Stack => "stack",
            LimitKind::Output => "output size",
            LimitKind::HostCalls => "host calls",
            LimitKind::Resources => "resources",
        })
    }
}

/// The trap a limiter raises; carried inside `wasmtime::Error` and recognised after the call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} limit exceeded: {detail}")]
pub struct LimitTrap {
    /// Which limit.
    pub kind: LimitKind,
    /// The limit and what was asked.
    pub detail: String,
}

/// The store's resource limiter: caps each memory *and* the total of all memories (some
/// toolchains emit components with several linear memories), tables and instance counts.
/// Growth beyond a cap traps with a [`LimitTrap`] instead of returning -1 to the guest, so the
/// error says what happened.
#[derive(Debug)]
pub struct Limiter {
    memory_total: usize,
    memory_used: usize,
    table_elements: usize,
}

impl Limiter {
    /// A limiter for these limits.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_total: usize::try_from(limits.memory_mib)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20),
            memory_used: 0,
            table_elements: 100_000,
        }
    }
}

impl Limiter {
    /// Linear memory of the store now, all memories together (memories only grow, so this
    /// is also the peak).
    pub fn memory_used(&self) -> usize {
        self.memory_used
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // `desired` is the guest's: saturate, so a huge request is refused, never wrapped.
        let total = self.memory_used.saturating_sub(current).saturating_add(desired);
        if desired > self.memory_total || total > self.memory_total {
            return Err(LimitTrap {
                kind: LimitKind::Memory,
                detail: format!(
                    "{} MiB allowed, the plugin asked for {} MiB",
                    self.memory_total >> 20,
                    total.div_ceil(1 << 20)
                ),
            }
            .into());
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(LimitTrap {
                kind: LimitKind::Resources,
                detail: format!(
                    "{} table elements allowed, asked {desired}",
                    self.table_elements
                ),
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

/// Host resources (wasi handles: `wasi:http` fields and requests, streams, pollables) a call
/// may hold at once; the store's resource table refuses more, and the call stops with a
/// [`LimitKind::Resources`] error. wasmtime's default is a million.
pub const MAX_RESOURCES: usize = 512;

/// Bytes one `wasi:http` fields object (headers, trailers) may hold, counted as wasi-http
/// counts its in-memory size (wasmtime's default is 128 KiB). With [`MAX_RESOURCES`] this
/// bounds the host memory a call can hold through wasi handles to 16 MiB.
pub const MAX_HTTP_FIELDS_BYTES: usize = 32 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn total_across_memories_is_capped() {
        let mut l = Limiter::new(&Limits {
            memory_mib: 4,
            ..Limits::default()
        });
        assert!(l.memory_growing(0, 2 << 20, None).unwrap());
        assert!(l.memory_growing(0, 2 << 20, None).unwrap());
        let e = l.memory_growing(0, 1 << 16, None).unwrap_err();
        assert!(e.to_string().contains("4 MiB allowed"), "{e}");
    }

    /// A guest's `desired` size is its own number: a huge one is refused, never an
    /// overflow (the old sum panicked here in debug builds and wrapped in release).
    #[test]
    fn a_huge_desired_size_is_refused_not_overflowed() {
        let mut l = Limiter::new(&Limits {
            memory_mib: 4,
            ..Limits::default()
        });
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        let e = l.memory_growing(0, usize::MAX, None).unwrap_err();
        assert!(e.to_string().contains("4 MiB allowed"), "{e}");
        assert!(l.memory_growing(1 << 20, 2 << 20, None).unwrap());
    }

    #[test]
    fn requests_are_clamped() {
        let l = Limits::from_request(&LimitsRequest {
            timeout_ms: Some(10_000_000),
            memory_mib: Some(8),
            ..Default::default()
        });
        assert_eq!(l.timeout_ms, Limits::MAX.timeout_ms);
        assert_eq!(l.memory_mib, 8);
        assert_eq!(l.max_host_calls, Limits::default().max_host_calls);
    }

    #[test]
    fn raised_quotas_need_approval_like_raised_limits() {
        let req = LimitsRequest {
            timeout_ms: Some(50),
            max_inference_tokens: Some(1 << 20),
            kv_max_bytes: Some(1 << 30),
            ..Default::default()
        };
        let raised: Vec<String> = req.raised().iter().map(|r| r.name.clone()).collect();
        assert_eq!(raised, ["max_inference_tokens", "kv_max_bytes"]);
    }
}
