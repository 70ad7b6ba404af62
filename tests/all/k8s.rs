//! Kubernetes (issue 12, docs/scale-out.md "Kubernetes"): the engine metrics that the Gateway
//! API inference extension's endpoint picker and KEDA read (gauges moving under running
//! streamed generations, histograms counting, `[metrics] aliases`), a model served from a
//! KServe-style folder (`llmos serve --model-dir`), and every manifest under `deploy/`
//! validated offline against the Kubernetes and CRD schemas, the Dockerfile linted
//! (tests/k8s/validate.py).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Home, Server, call, client_python, repo, text};

const MODEL: &str = "kserve-llama";

/// A KServe-style model folder (`/mnt/models`): an llmos manifest next to the files it lists.
fn model_folder(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let fixture = repo().join("tests/fixtures");
    let manifest = std::fs::read_to_string(fixture.join("manifests/tiny-llama.toml")).unwrap();
    let manifest = manifest
        .replace("name = \"tiny-llama\"", &format!("name = \"{name}\""))
        .replace("../tiny-llama/", "");
    std::fs::write(dir.join("model.toml"), manifest).unwrap();
    for f in ["model.onnx", "tokenizer.json", "generation.json"] {
        std::fs::copy(fixture.join("tiny-llama").join(f), dir.join(f)).unwrap();
    }
}

fn metrics(s: &Server) -> String {
    reqwest::blocking::get(s.at("/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

/// The value of `name{model="m"}` (`name_count` etc. for histograms), if served.
fn sample(text: &str, name: &str, model: &str) -> Option<f64> {
    let prefix = format!("{name}{{model=\"{model}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

/// Streams a completion to its end; returns the completion tokens it reports.
fn stream(s: &Server, max_tokens: u64) -> u64 {
    use std::io::{BufRead, BufReader};
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let r = client
        .post(s.at("/v1/completions"))
        .json(
            &json!({"model": MODEL, "prompt": "once upon a time", "max_tokens": max_tokens,
            "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut tokens = 0;
    for line in BufReader::new(r).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            tokens = n;
        }
    }
    tokens
}

#[test]
fn engine_metrics_move_under_streamed_generation_and_a_model_folder_serves() {
    let home = Home::new();
    let folder = home.dir.path().join("mnt-models");
    model_folder(&folder, MODEL);
    let cfg = home.dir.path().join("llmos.toml");
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str(&format!(
        "\n[models.overrides.{MODEL}]\nmax_batch = 1\n\n[metrics.aliases]\n\
         llmos_generate_queued_requests = [\"vllm:num_requests_waiting\"]\n\
         llmos_generate_running_requests = [\"vllm:num_requests_running\"]\n\
         llmos_generate_kv_cache_usage_ratio = [\"vllm:kv_cache_usage_perc\", \"vllm:gpu_cache_usage_perc\"]\n\
         llmos_generate_time_to_first_token_seconds = [\"vllm:time_to_first_token_seconds\"]\n"
    ));
    std::fs::write(&cfg, toml).unwrap();
    let folder_arg = folder.display().to_string();
    let s = home.serve(&["--model-dir", &folder_arg]);

    // The folder's model is registered and loaded; the built-in defaults are not.
    let (status, models) = call(&s, "GET", "/v1/models", None, None);
    assert_eq!(status, 200, "{models}");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&MODEL), "{models}");
    let (status, _) = call(&s, "GET", "/v2/health/ready", None, None);
    assert_eq!(status, 200);
    let (status, ready) = call(&s, "GET", &format!("/v2/models/{MODEL}/ready"), None, None);
    assert_eq!(status, 200, "{ready}");
    let (_, health) = call(&s, "GET", "/health", None, None);
    let loaded: Vec<&str> = health["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        loaded,
        [MODEL],
        "only the folder's model is loaded: {health}"
    );

    // Idle: the gauges are served (under the aliases too) and at zero.
    let idle = metrics(&s);
    for name in [
        "llmos_generate_queued_requests",
        "llmos_generate_running_requests",
        "llmos_generate_kv_cache_usage_ratio",
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
    ] {
        assert_eq!(sample(&idle, name, MODEL), Some(0.0), "{name}:\n{idle}");
        assert!(idle.contains(&format!("# TYPE {name} gauge")), "{name}");
    }

    // Three long streams on a batch of one: one runs, two wait, the cache holds its rows.
    const STREAMS: usize = 3;
    const MAX_TOKENS: u64 = 1500;
    let (seen, tokens) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..STREAMS)
            .map(|_| scope.spawn(|| stream(&s, MAX_TOKENS)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = None;
        while Instant::now() < deadline {
            let m = metrics(&s);
            let q = sample(&m, "llmos_generate_queued_requests", MODEL).unwrap();
            let r = sample(&m, "llmos_generate_running_requests", MODEL).unwrap();
            let kv = sample(&m, "llmos_generate_kv_cache_usage_ratio", MODEL).unwrap();
            if q >= 1.0 && r == 1.0 && kv > 0.0 {
                seen = Some(m);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let tokens: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        (seen, tokens)
    });
    let busy =
        seen.expect("never saw queued >= 1, running = 1 and KV usage > 0 during the streams");
    let kv = sample(&busy, "llmos_generate_kv_cache_usage_ratio", MODEL).unwrap();
    assert!(kv > 0.0 && kv <= 1.0, "{kv}");
    // One row of at most 4096 positions out of max_batch 1 x context 4096.
    assert_eq!(sample(&busy, "vllm:kv_cache_usage_perc", MODEL), Some(kv));
    assert_eq!(
        sample(&busy, "vllm:num_requests_waiting", MODEL),
        sample(&busy, "llmos_generate_queued_requests", MODEL)
    );

    // Done: the gauges are back at zero, the histograms counted every token.
    let done = settled(
        || metrics(&s),
        MODEL,
        &[
            "llmos_generate_queued_requests",
            "llmos_generate_running_requests",
            "llmos_generate_kv_cache_usage_ratio",
        ],
    );
    let ttft = "llmos_generate_time_to_first_token_seconds";
    let tpot = "llmos_generate_time_per_output_token_seconds";
    assert!(done.contains(&format!("# TYPE {ttft} histogram")));
    assert_eq!(
        sample(&done, &format!("{ttft}_count"), MODEL),
        Some(STREAMS as f64)
    );
    assert_eq!(
        sample(&done, "vllm:time_to_first_token_seconds_count", MODEL),
        Some(STREAMS as f64)
    );
    let total: u64 = tokens.iter().sum();
    assert!(total > STREAMS as u64, "{tokens:?}");
    assert_eq!(
        sample(&done, &format!("{tpot}_count"), MODEL),
        Some((total - STREAMS as u64) as f64),
        "one per token after each first; tokens {tokens:?}"
    );
    let inf = format!(
        "{tpot}_bucket{{model=\"{MODEL}\",le=\"+Inf\"}} {}",
        total - STREAMS as u64
    );
    assert!(done.contains(&inf), "{done}");
    // A waiting stream's first token came after another's whole run: the slowest TTFT is long.
    let ttft_sum = sample(&done, &format!("{ttft}_sum"), MODEL).unwrap();
    assert!(ttft_sum > 0.0, "{ttft_sum}");
    drop(s);

    // A file of the folder altered: the server refuses to start and names it.
    let bad = home.dir.path().join("bad-models");
    model_folder(&bad, "bad-llama");
    std::fs::write(bad.join("generation.json"), b"{}").unwrap();
    let bad_arg = bad.display().to_string();
    let err = home.fails(&["serve", "--listen", "127.0.0.1:0", "--model-dir", &bad_arg]);
    assert!(
        err.contains("--model-dir") && err.contains("generation.json") && err.contains("corrupt"),
        "{err}"
    );
    // A folder without a manifest: named, with what it must hold.
    let empty = home.dir.path().join("empty-models");
    std::fs::create_dir_all(&empty).unwrap();
    let empty_arg = empty.display().to_string();
    let err = home.fails(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--model-dir",
        &empty_arg,
    ]);
    assert!(err.contains("no model manifest (*.toml)"), "{err}");

    // An alias that is no Prometheus name, or of an unknown metric: refused at start.
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str("llmos_generate_running_requests_typo = [\"x\"]\n");
    std::fs::write(&cfg, &toml).unwrap();
    let err = home.fails(&["serve", "--listen", "127.0.0.1:0", "--models", "add"]);
    assert!(
        err.contains("llmos_generate_running_requests_typo")
            && err.contains("accepted are llmos_generate_queued_requests"),
        "{err}"
    );
    let toml = toml.replace("llmos_generate_running_requests_typo = [\"x\"]", "");
    let toml = toml.replace("\"vllm:num_requests_running\"", "\"vllm num running\"");
    std::fs::write(&cfg, &toml).unwrap();
    let err = home.fails(&["serve", "--listen", "127.0.0.1:0", "--models", "add"]);
    assert!(
        err.contains("\"vllm num running\" is not a Prometheus metric name"),
        "{err}"
    );

    // With a key, /metrics needs one, unless `[metrics] public` (in-cluster scrapers).
    let toml = toml.replace("\"vllm num running\"", "\"vllm:num_requests_running\"");
    std::fs::write(&cfg, &toml).unwrap();
    let key = crate::support::create_key(&home, &["models:*"]);
    let s = home.serve(&["--models", "add"]);
    let (status, _) = call(&s, "GET", "/metrics", None, None);
    assert_eq!(status, 401);
    drop(s);
    std::fs::write(&cfg, format!("{toml}\n[metrics]\npublic = true\n")).unwrap();
    let s = home.serve(&["--models", "add"]);
    let r = reqwest::blocking::get(s.at("/metrics")).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.text()
            .unwrap()
            .contains("# TYPE llmos_generate_queued_requests gauge")
    );
    let (status, _) = call(&s, "GET", "/v1/models", None, None);
    assert_eq!(status, 401, "only /metrics is public");
    let (status, _) = call(&s, "GET", "/v1/models", Some(&key), None);
    assert_eq!(status, 200);
}

/// Every manifest under deploy/ (the Helm chart rendered first) validated offline:
/// core resources against the Kubernetes JSON schemas of `kubernetes-validate`, the CRD
/// resources against the committed CRD schemas of tests/fixtures/crds. The script also
/// checks that a broken copy of each kind is refused, so it cannot pass vacuously.
#[test]
fn deploy_manifests_validate_offline() {
    let home = Home::new();
    let rendered = home.dir.path().join("rendered");
    let out = std::process::Command::new(client_python())
        .arg(repo().join("tests/k8s/validate.py"))
        .arg(&rendered)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The image's config and the chart's rendered one are read by the real binary (unknown
    // keys are errors there).
    for cfg in [
        repo().join("deploy/llmos.toml"),
        rendered.join("chart-llmos.toml"),
    ] {
        let out = home
            .cmd(&["models", "list"])
            .env("LLMOS_CONFIG", &cfg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", cfg.display(), text(&out));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "Deployment",
        "Service",
        "Secret",
        "ScaledObject",
        "InferencePool",
        "ClusterServingRuntime",
        "InferenceService",
    ] {
        assert!(
            stdout.contains(&format!("ok {kind} ")),
            "{kind} not validated:\n{stdout}"
        );
    }
    assert!(stdout.contains("refused broken copies of ClusterServingRuntime, Deployment, InferencePool, InferenceService, ScaledObject, Secret, Service"), "{stdout}");
    assert!(stdout.contains("cross-references ok"), "{stdout}");
    assert!(
        stdout.contains("ok Dockerfile deploy/Dockerfile (hadolint)"),
        "{stdout}"
    );
}

/// Under the fair scheduler a sequence paused to give its slot to another tenant still waits
/// on this replica: the queue gauge counts it (as vLLM counts preempted requests), and gives
/// it back when it resumes.
#[test]
fn a_paused_sequence_counts_as_queued() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str("\n[models.overrides.tiny-llama]\nmax_batch = 1\n\n[generation]\nquantum = 4\n");
    std::fs::write(&cfg, toml).unwrap();
    let mut keys = Vec::new();
    for tenant in ["heavy", "light"] {
        let v = home.json(&["keys", "create", "--scope", "models:*", "--tenant", tenant]);
        keys.push(v["secret"].as_str().unwrap().to_string());
    }
    let s = home.serve(&["--models", "tiny-llama"]);
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let scrape = || {
        client
            .get(s.at("/metrics"))
            .bearer_auth(&keys[0])
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let run = |key: &str, max_tokens: u64| {
        let r = client
            .post(s.at("/v1/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "tiny-llama", "prompt": "once upon a time",
                "max_tokens": max_tokens, "temperature": 0}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    let tenant_queued = |m: &str, t: &str| {
        let prefix = format!("llmos_tenant_queued_requests{{tenant=\"{t}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let paused_seen = std::thread::scope(|scope| {
        let heavy = scope.spawn(|| run(&keys[0], 800));
        let deadline = Instant::now() + Duration::from_secs(60);
        while sample(&scrape(), "llmos_generate_running_requests", "tiny-llama") != Some(1.0) {
            assert!(Instant::now() < deadline, "heavy never ran");
            std::thread::sleep(Duration::from_millis(2));
        }
        let light = scope.spawn(|| run(&keys[1], 200));
        let mut seen = false;
        while !light.is_finished() {
            let m = scrape();
            let q = sample(&m, "llmos_generate_queued_requests", "tiny-llama").unwrap();
            // Nothing waits to be admitted, yet one waits: heavy, paused.
            if q == 1.0 && tenant_queued(&m, "heavy") == 0.0 && tenant_queued(&m, "light") == 0.0 {
                seen = true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        light.join().unwrap();
        heavy.join().unwrap();
        seen
    });
    assert!(
        paused_seen,
        "never saw heavy paused and counted as queued while light ran"
    );
    settled(
        scrape,
        "tiny-llama",
        &[
            "llmos_generate_queued_requests",
            "llmos_generate_running_requests",
        ],
    );
}

/// Scrapes until every gauge in `names` of `model` reads 0 and returns that scrape. The
/// engine thread publishes its last batch change a moment after the client has its answer
/// (the final token is sent before the finished row leaves the batch), so a scrape right
/// after the answer may still see it; the gauges must settle within 10 s.
fn settled(scrape: impl Fn() -> String, model: &str, names: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape();
        let nonzero: Vec<_> = names
            .iter()
            .filter(|n| sample(&m, n, model) != Some(0.0))
            .collect();
        if nonzero.is_empty() {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{nonzero:?} not back at 0 10 s after the last answer:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
