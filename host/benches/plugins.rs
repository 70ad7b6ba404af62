//! Plugin host overhead: `cargo bench -p llmos --bench plugins`.
//!
//! Measures, with the `test-echo` plugin and a 1 KiB input string:
//! - a call on a warm instance (store and instance reused, fresh budget per call);
//! - a call with a fresh store and instance (what every production call does), on the
//!   calling thread and through the plugin worker threads;
//! - cold start from the precompiled cache (open the host, load, first call) and, for
//!   contrast, with an empty cache (compilation).

#[path = "../../tests/all/plugins_common.rs"]
#[allow(unreachable_pub)]
mod plugins_common;

use std::time::{Duration, Instant};

use llmos::plugins::PluginHost;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let n = v.len();
    (v[n / 2], v[n * 99 / 100], v[0])
}

fn row(name: &str, v: Vec<Duration>) {
    let n = v.len();
    let (median, p99, min) = stats(v);
    println!(
        "| {name} | {n} | {:.2} µs | {:.2} µs | {:.2} µs |",
        median.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        min.as_secs_f64() * 1e6
    );
}

fn main() {
    let text = "a".repeat(1024);
    let req = plugins_common::request(&[&text]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    {
        let host = PluginHost::open(home, plugins_common::settings(), None).unwrap();
        plugins_common::install(&host, "testing/echo", &[], &[]);
    }
    println!("| measurement | calls | median | p99 | min |");
    println!("|---|---|---|---|---|");

    // Cold start from the precompiled cache: open + load (deserialise) + first call.
    let mut cold = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let host = PluginHost::open(home, plugins_common::settings(), None).unwrap();
        host.local_runner()
            .unwrap()
            .preprocess("test-echo", &req)
            .unwrap();
        cold.push(t.elapsed());
    }
    row(
        "cold start, precompiled cache (open host + load + first call)",
        cold,
    );

    let host = PluginHost::open(home, plugins_common::settings(), None).unwrap();
    let bytes = std::fs::read(plugins_common::wasm("testing/echo")).unwrap();
    let sha = llmos::plugins::engine::sha256_hex(&bytes);
    let mut load = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        host.cache().load(host.engine(), &bytes, &sha).unwrap();
        load.push(t.elapsed());
    }
    row(
        "component load from the precompiled cache (verify + deserialise)",
        load,
    );
    let mut compile = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        wasmtime::component::Component::new(host.engine(), &bytes).unwrap();
        compile.push(t.elapsed());
    }
    row("component compile without cache (for contrast)", compile);

    // Warm instance.
    let mut warm = host.warm_preprocessor("test-echo").unwrap();
    for _ in 0..1000 {
        warm.call(&req).unwrap();
    }
    let mut v = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        let out = warm.call(&req).unwrap();
        v.push(t.elapsed());
        assert_eq!(out[0].len(), 1024);
    }
    row("warm instance, 1 KiB in and out", v);

    // Fresh store + instance per call, on this thread.
    let local = host.local_runner().unwrap();
    for _ in 0..500 {
        local.preprocess("test-echo", &req).unwrap();
    }
    let mut v = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let t = Instant::now();
        local.preprocess("test-echo", &req).unwrap();
        v.push(t.elapsed());
    }
    row("fresh store + instance per call, 1 KiB", v);

    // Fresh instance, through the plugin worker threads (includes the thread hand-off).
    let mut v = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let t = Instant::now();
        host.preprocess("test-echo", req.clone()).unwrap();
        v.push(t.elapsed());
    }
    row("fresh instance via plugin worker thread, 1 KiB", v);

    // The shipped plugins on one sentence, fresh instance per call on this thread: what a
    // request on a route with a plugin chain pays per plugin (pii-redact without its NER
    // grant, so patterns only: the model call is measured by bench/plugins/run.sh).
    plugins_common::install(&host, "normalize", &[], &[]);
    plugins_common::install(&host, "pii-redact", &[], &[("ner_labels", "")]);
    let sentence = plugins_common::request(&[
        "Contact Jane Doe at jane.doe@example.com or +1 555 123 4567 about order 12345.",
    ]);
    for name in ["test-echo", "normalize", "pii-redact"] {
        for _ in 0..200 {
            local.preprocess(name, &sentence).unwrap();
        }
        let mut v = Vec::with_capacity(5_000);
        for _ in 0..5_000 {
            let t = Instant::now();
            local.preprocess(name, &sentence).unwrap();
            v.push(t.elapsed());
        }
        row(&format!("{name}, one sentence, fresh instance per call"), v);
    }
}
