//! Prometheus text exposition: HTTP requests and latencies recorded here, model counters
//! read from the core at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::core::Core;
use crate::core::worker::BATCH_BUCKETS;
use crate::plugins::gateway::Gateway;

const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

type Key = (String, String, u16);

/// HTTP counters (route, model, status).
#[derive(Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<Key, Histogram>>,
    /// Handler panics caught by the panic layer (`llmos_panics_total`).
    pub panics: crate::api::panic::PanicCounter,
    /// Connections open now (`llmos_http_connections`).
    pub connections: AtomicU64,
    /// Connections refused at the `max_connections` cap (`llmos_http_connections_refused_total`).
    pub connections_refused: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Escapes a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn render_plugins(&self, gateway: &Gateway, out: &mut String) {
        let calls = gateway.host.call_counts();
        out.push_str("# HELP llmos_plugin_calls_total Plugin calls.\n# TYPE llmos_plugin_calls_total counter\n");
        for (p, c, _) in &calls {
            let _ = writeln!(
                out,
                "llmos_plugin_calls_total{{plugin=\"{}\"}} {c}",
                label(p)
            );
        }
        out.push_str("# HELP llmos_plugin_traps_total Plugin calls stopped by a trap or an exhausted limit.\n# TYPE llmos_plugin_traps_total counter\n");
        for (p, _, f) in &calls {
            let _ = writeln!(
                out,
                "llmos_plugin_traps_total{{plugin=\"{}\"}} {f}",
                label(p)
            );
        }
        out.push_str("# HELP llmos_plugin_capability_denials_total Host calls refused for a capability the plugin lacks.\n# TYPE llmos_plugin_capability_denials_total counter\n");
        for (p, n) in gateway.host.audit().denials_by_subject() {
            let _ = writeln!(
                out,
                "llmos_plugin_capability_denials_total{{plugin=\"{}\"}} {n}",
                label(&p)
            );
        }
        out.push_str("# HELP llmos_plugin_policy_denials_total Requests and responses denied by a policy plugin.\n# TYPE llmos_plugin_policy_denials_total counter\n");
        for (p, n) in gateway.policy_denials() {
            let _ = writeln!(
                out,
                "llmos_plugin_policy_denials_total{{plugin=\"{}\"}} {n}",
                label(&p)
            );
        }
        let (calls, events) = gateway.host.queue_depths();
        let _ = writeln!(
            out,
            "# HELP llmos_plugin_queue_depth Plugin calls and events waiting for a worker thread.\n\
             # TYPE llmos_plugin_queue_depth gauge\n\
             llmos_plugin_queue_depth{{queue=\"calls\"}} {calls}\n\
             llmos_plugin_queue_depth{{queue=\"events\"}} {events}\n\
             # HELP llmos_plugin_events_dropped_total Events dropped because the event queue was full.\n\
             # TYPE llmos_plugin_events_dropped_total counter\n\
             llmos_plugin_events_dropped_total {}",
            gateway.host.events_dropped()
        );
    }

    /// Records one finished request.
    pub fn observe(&self, route: &str, model: &str, status: u16, elapsed: Duration) {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        let h = http
            .entry((route.to_string(), model.to_string(), status))
            .or_default();
        let s = elapsed.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(c) = h.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
        h.sum += s;
        h.count = h.count.saturating_add(1);
    }

    /// The exposition text.
    pub fn render(&self, core: &Core, gateway: &Gateway) -> String {
        let mut out = String::new();
        let http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP llmos_http_requests_total HTTP requests by route, model and status.\n# TYPE llmos_http_requests_total counter\n");
        for ((route, model, status), h) in http.iter() {
            let _ = writeln!(
                out,
                "llmos_http_requests_total{{route=\"{}\",model=\"{}\",status=\"{status}\"}} {}",
                label(route),
                label(model),
                h.count
            );
        }
        // Latency per route and model (statuses merged).
        let mut merged: BTreeMap<(String, String), Histogram> = BTreeMap::new();
        for ((route, model, _), h) in http.iter() {
            let m = merged.entry((route.clone(), model.clone())).or_default();
            for (a, b) in m.counts.iter_mut().zip(h.counts) {
                *a = a.saturating_add(b);
            }
            m.sum += h.sum;
            m.count = m.count.saturating_add(h.count);
        }
        drop(http);
        out.push_str("# HELP llmos_http_request_duration_seconds HTTP request latency.\n# TYPE llmos_http_request_duration_seconds histogram\n");
        for ((route, model), h) in &merged {
            let (route, model) = (label(route), label(model));
            let mut cum = 0u64;
            for (b, n) in LATENCY_BUCKETS.iter().zip(h.counts) {
                cum = cum.saturating_add(n);
                let _ = writeln!(
                    out,
                    "llmos_http_request_duration_seconds_bucket{{route=\"{route}\",model=\"{model}\",le=\"{b}\"}} {cum}"
                );
            }
            let _ = writeln!(
                out,
                "llmos_http_request_duration_seconds_bucket{{route=\"{route}\",model=\"{model}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "llmos_http_request_duration_seconds_sum{{route=\"{route}\",model=\"{model}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "llmos_http_request_duration_seconds_count{{route=\"{route}\",model=\"{model}\"}} {}",
                h.count
            );
        }

        let models = core.loaded();
        out.push_str("# HELP llmos_model_info Loaded models and the execution provider serving each.\n# TYPE llmos_model_info gauge\n");
        for m in &models {
            let _ = writeln!(
                out,
                "llmos_model_info{{model=\"{}\",task=\"{}\",provider=\"{}\"}} 1",
                label(m.name()),
                m.manifest.task.as_str(),
                m.provider.serving
            );
        }
        out.push_str("# HELP llmos_queue_depth Requests waiting for a model's inference threads.\n# TYPE llmos_queue_depth gauge\n");
        for m in &models {
            let _ = writeln!(
                out,
                "llmos_queue_depth{{model=\"{}\"}} {}",
                label(m.name()),
                m.stats.queued.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP llmos_tokens_total Tokens processed by a model.\n# TYPE llmos_tokens_total counter\n");
        for m in &models {
            let _ = writeln!(
                out,
                "llmos_tokens_total{{model=\"{}\"}} {}",
                label(m.name()),
                m.stats.tokens.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP llmos_batch_size Rows per model run (coalesced requests).\n# TYPE llmos_batch_size histogram\n");
        for m in &models {
            let name = label(m.name());
            let mut cum = 0u64;
            let mut rows = m.stats.batch_rows.iter().map(|r| r.load(Ordering::Relaxed));
            for (b, n) in BATCH_BUCKETS.iter().zip(rows.by_ref()) {
                cum = cum.saturating_add(n);
                let _ = writeln!(
                    out,
                    "llmos_batch_size_bucket{{model=\"{name}\",le=\"{b}\"}} {cum}"
                );
            }
            // The last bucket (above the largest bound) is what the zip left.
            cum = rows.fold(cum, u64::saturating_add);
            let _ = writeln!(
                out,
                "llmos_batch_size_bucket{{model=\"{name}\",le=\"+Inf\"}} {cum}"
            );
            let _ = writeln!(
                out,
                "llmos_batch_size_sum{{model=\"{name}\"}} {}",
                m.stats.rows.load(Ordering::Relaxed)
            );
            let _ = writeln!(out, "llmos_batch_size_count{{model=\"{name}\"}} {cum}");
        }
        render_generation(&models, &mut out);
        render_engine(&models, &core.config().metrics, &mut out);
        render_tenants(core.tenants(), &mut out);
        self.render_plugins(gateway, &mut out);
        self.render_server(&mut out);
        out
    }

    fn render_server(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP llmos_panics_total Handler panics caught and answered with 500 (each one is a bug).\n\
             # TYPE llmos_panics_total counter\nllmos_panics_total {}",
            self.panics.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP llmos_http_connections HTTP connections open now.\n\
             # TYPE llmos_http_connections gauge\nllmos_http_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP llmos_http_connections_refused_total Connections answered 503 and closed at the max_connections cap.\n\
             # TYPE llmos_http_connections_refused_total counter\nllmos_http_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
    }
}

/// Most tenants given their own series; the others are summed under `tenant="other"`.
pub const MAX_TENANT_SERIES: usize = 100;

/// Per-tenant generation metrics (all models together). Tenants are key ids or operator
/// labels; past [`MAX_TENANT_SERIES`] (by name) the rest share the series `other`.
fn render_tenants(tenants: &crate::core::generate::tenant::Tenants, out: &mut String) {
    use crate::core::generate::tenant::TTFT_BUCKETS;
    let all = tenants.snapshot();
    // (name, queued requests, running, generated, ttft buckets, ttft sum µs)
    type Row = (String, u64, u64, u64, Vec<u64>, u64);
    let mut rows: Vec<Row> = Vec::new();
    for (i, (name, st)) in all.iter().enumerate() {
        let ttft: Vec<u64> = st.ttft.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let row: Row = (
            name.to_string(),
            st.queued_requests.load(Ordering::Relaxed) as u64,
            st.running.load(Ordering::Relaxed) as u64,
            st.generated.load(Ordering::Relaxed),
            ttft,
            st.ttft_sum_us.load(Ordering::Relaxed),
        );
        if i < MAX_TENANT_SERIES {
            rows.push(row);
            continue;
        }
        if rows.len() == MAX_TENANT_SERIES {
            rows.push(("other".into(), 0, 0, 0, vec![0; TTFT_BUCKETS.len().saturating_add(1)], 0));
        }
        if let Some(o) = rows.last_mut() {
            o.1 = o.1.saturating_add(row.1);
            o.2 = o.2.saturating_add(row.2);
            o.3 = o.3.saturating_add(row.3);
            for (a, b) in o.4.iter_mut().zip(&row.4) {
                *a = a.saturating_add(*b);
            }
            o.5 = o.5.saturating_add(row.5);
        }
    }
    type Series = (&'static str, &'static str, fn(&Row) -> u64);
    let gauges: [Series; 3] = [
        ("llmos_tenant_queued_requests", "gauge", |r| r.1),
        ("llmos_tenant_running_streams", "gauge", |r| r.2),
        ("llmos_tenant_generated_tokens_total", "counter", |r| r.3),
    ];
    let helps = [
        "Generation streams of a tenant waiting to be admitted by the engine.",
        "Generation streams of a tenant admitted and not ended (running or paused by the scheduler).",
        "Tokens generated for a tenant.",
    ];
    for ((name, kind, get), help) in gauges.into_iter().zip(helps) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in &rows {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", label(&r.0), get(r));
        }
    }
    let name = "llmos_tenant_time_to_first_token_seconds";
    let _ = writeln!(out, "# HELP {name} Time from a generation request's submission to its first token, per tenant.\n# TYPE {name} histogram");
    for r in &rows {
        let t = label(&r.0);
        let mut cum = 0u64;
        for (b, c) in TTFT_BUCKETS.iter().zip(&r.4) {
            cum = cum.saturating_add(*c);
            let _ = writeln!(out, "{name}_bucket{{tenant=\"{t}\",le=\"{b}\"}} {cum}");
        }
        cum = cum.saturating_add(r.4.last().copied().unwrap_or(0));
        let _ = writeln!(out, "{name}_bucket{{tenant=\"{t}\",le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum{{tenant=\"{t}\"}} {}", r.5 as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{tenant=\"{t}\"}} {cum}");
    }
}

/// A counter: name, help, how to read it.
type Counter = (&'static str, &'static str, fn(&crate::core::worker::ModelStats) -> u64);

/// Counters of the generation engines (models whose task is generate).
fn render_generation(models: &[std::sync::Arc<crate::core::Model>], out: &mut String) {
    let counters: [Counter; 7] = [
        ("llmos_generate_steps_total", "Decode steps run (one per batch of running sequences).", |s| s.gen_steps.load(Ordering::Relaxed)),
        ("llmos_generate_tokens_total", "Tokens generated.", |s| s.gen_tokens.load(Ordering::Relaxed)),
        ("llmos_generate_sequences_total", "Sequences started (prompts prefilled).", |s| s.gen_prefills.load(Ordering::Relaxed)),
        ("llmos_generate_prefill_runs_total", "Prefill runs (prompts that queued together run as one left-padded batch).", |s| s.gen_prefill_runs.load(Ordering::Relaxed)),
        ("llmos_generate_cancelled_total", "Sequences dropped because their caller went away.", |s| s.gen_cancelled.load(Ordering::Relaxed)),
        ("llmos_generate_draft_tokens_total", "Tokens drafted by prompt lookup (speculative decoding) and checked in a decode step.", |s| s.gen_draft_tokens.load(Ordering::Relaxed)),
        ("llmos_generate_draft_accepted_total", "Drafted tokens kept (the sampler picked them).", |s| s.gen_draft_accepted.load(Ordering::Relaxed)),
    ];
    let gen_models: Vec<_> = models
        .iter()
        .filter(|m| m.manifest.task == crate::core::manifest::Task::Generate)
        .collect();
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for m in &gen_models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", label(m.name()), get(&m.stats));
        }
    }
}

/// Reads one engine gauge of a model.
type Gauge = fn(&crate::core::worker::ModelStats) -> String;

/// The per-model engine metrics of generation models (config.rs `ENGINE_METRICS`), each under
/// its llmos name and the `[metrics] aliases` given for it: what the Gateway API inference
/// extension's endpoint picker and KEDA read.
fn render_engine(
    models: &[std::sync::Arc<crate::core::Model>],
    cfg: &crate::config::MetricsConfig,
    out: &mut String,
) {
    use crate::core::worker::{LatencyHistogram, ModelStats, TPOT_BUCKETS, TTFT_BUCKETS};
    let gen_models: Vec<_> = models
        .iter()
        .filter(|m| m.manifest.task == crate::core::manifest::Task::Generate)
        .collect();
    let gauges: [(&str, &str, Gauge); 3] = [
        (
            "llmos_generate_queued_requests",
            "Generation requests waiting for the engine: not admitted yet, or paused by the fair scheduler.",
            |s| {
                let q = s.queued.load(Ordering::Relaxed);
                q.saturating_add(s.gen_paused.load(Ordering::Relaxed)).to_string()
            },
        ),
        (
            "llmos_generate_running_requests",
            "Generation requests in the engine's running batch.",
            |s| s.gen_running.load(Ordering::Relaxed).to_string(),
        ),
        (
            "llmos_generate_kv_cache_usage_ratio",
            "KV-cache positions held by the running batch over what the engine may hold (max_batch x context length), 0 to 1.",
            |s| {
                let used = s.gen_kv_used.load(Ordering::Relaxed) as f64;
                let cap = s.gen_kv_capacity.load(Ordering::Relaxed) as f64;
                let r = if cap > 0.0 { used / cap } else { 0.0 };
                r.clamp(0.0, 1.0).to_string()
            },
        ),
    ];
    for (metric, help, get) in gauges {
        for name in cfg.names(metric) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for m in &gen_models {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", label(m.name()), get(&m.stats));
            }
        }
    }
    type Hist = (&'static str, &'static str, &'static [f64; 15], fn(&ModelStats) -> &LatencyHistogram);
    let hists: [Hist; 2] = [
        (
            "llmos_generate_time_to_first_token_seconds",
            "Time from a generation request's submission to its first token.",
            &TTFT_BUCKETS,
            |s| &s.gen_ttft,
        ),
        (
            "llmos_generate_time_per_output_token_seconds",
            "Time between two tokens of a generated sequence (after the first).",
            &TPOT_BUCKETS,
            |s| &s.gen_tpot,
        ),
    ];
    for (metric, help, bounds, get) in hists {
        for name in cfg.names(metric) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for m in &gen_models {
                let model = label(m.name());
                let h = get(&m.stats);
                let mut cum = 0u64;
                for (b, c) in bounds.iter().zip(&h.buckets) {
                    cum = cum.saturating_add(c.load(Ordering::Relaxed));
                    let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"{b}\"}} {cum}");
                }
                cum = cum.saturating_add(h.buckets.last().map_or(0, |c| c.load(Ordering::Relaxed)));
                let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {cum}");
                let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {sum}");
                let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {cum}");
            }
        }
    }
}
