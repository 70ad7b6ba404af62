//! The WIT `inference.generate` on the real engine (docs/generation.md §6b): a guest
//! (test-probe) calls it through the core backend; the capability is checked first; decoding
//! is greedy (the plugin's text is the engine's greedy text); errors are WIT variants; and
//! the plugin call's deadline cancels the engine's sequence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmos::config::{Config, Paths};
use llmos::core::Core;
use llmos::core::generate::{GenerateRequest, Sampling};
use llmos::plugins::gateway::Gateway;
use llmos::plugins::registry::{self, InstallRequest};

use crate::plugins_common::{manifest, request, wasm};
use crate::support::Home;

const PROBE: &str = "testing/probe";
const LLAMA: &str = "tiny-llama";

/// The probe under a manifest asking for `caps` (instead of `inference:minilm`), granted `grants`, with a time limit.
fn install_probe(
    g: &Gateway,
    dir: &std::path::Path,
    caps: &str,
    grants: &[&str],
    timeout_ms: u64,
) -> String {
    let text = std::fs::read_to_string(manifest(PROBE)).unwrap();
    let text = format!(
        "{}\n[limits]\ntimeout_ms = {timeout_ms}\n",
        text.replace("\"inference:minilm\"", caps)
    );
    let path = dir.join("probe.toml");
    std::fs::write(&path, text).unwrap();
    let req = InstallRequest {
        component: wasm(PROBE),
        manifest: Some(path),
        grants: grants.iter().map(|s| s.to_string()).collect(),
        approve_limits: true,
        ..Default::default()
    };
    registry::install(&g.host, &req)
        .unwrap()
        .record
        .manifest
        .name
}

fn gateway(home: &Home) -> Gateway {
    let config = Config::load(&home.dir.path().join("llmos.toml")).unwrap();
    let paths = Paths::resolve(home.dir.path().to_path_buf(), &config);
    Gateway::open(Arc::new(Core::new(config, paths).unwrap()), None).unwrap()
}

fn greedy(core: &Core, prompt: &str, max_tokens: usize) -> String {
    let m = core.model(LLAMA).unwrap();
    let request = GenerateRequest {
        prompt: m.prompt_ids(prompt).unwrap(),
        max_tokens,
        sampling: Sampling {
            temperature: 0.0,
            ..Sampling::default()
        },
        stop: Vec::new(),
        logprobs: None,
        constraint: None,
    };
    pollster::block_on(m.generate(request).unwrap().collect())
        .unwrap()
        .text
}

#[test]
fn plugins_generate_greedily_under_their_capability_and_their_deadline_cancels_the_sequence() {
    let home = Home::new();
    let g = gateway(&home);
    let dir = tempfile::tempdir().unwrap();
    let caps = "\"inference:tiny-llama\", \"inference:minilm\", \"inference:nope\"";
    let p = install_probe(
        &g,
        dir.path(),
        caps,
        &["inference:tiny-llama", "inference:minilm", "inference:nope"],
        10000,
    );
    let run = |cmds: &[&str]| g.host.preprocess(&p, request(cmds)).unwrap();

    let expected = format!("ok:{:?}", greedy(&g.core, "Once upon a time", 8));
    let out = run(&[
        "generate tiny-llama Once upon a time",
        "generate tiny-llama Once upon a time",
    ]);
    assert_eq!(
        out,
        [expected.clone(), expected],
        "greedy: the engine's text, every time"
    );
    let out = run(&["generate-max tiny-llama 3 hello"]);
    assert_eq!(out, [format!("ok:{:?}", greedy(&g.core, "hello", 3))]);
    // Errors are the WIT variants.
    let out = run(&["generate minilm hi", "generate nope hi"]);
    assert!(
        out[0].starts_with("err:invalid-input:") && out[0].contains("minilm"),
        "{out:?}"
    );
    assert!(out[1].starts_with("err:not-found:"), "{out:?}");

    // Not granted: denied before any model is touched.
    let q = {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(manifest(PROBE))
            .unwrap()
            .replace("test-probe", "test-probe-2");
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            text.replace("\"inference:minilm\"", "\"inference:tiny-llama\""),
        )
        .unwrap();
        let req = InstallRequest {
            component: wasm(PROBE),
            manifest: Some(path),
            ..Default::default()
        };
        registry::install(&g.host, &req)
            .unwrap()
            .record
            .manifest
            .name
    };
    let out = g
        .host
        .preprocess(&q, request(&["generate tiny-llama hi"]))
        .unwrap();
    assert!(
        out[0].starts_with("err:denied:") && out[0].contains("inference:tiny-llama"),
        "{out:?}"
    );

    // A generation longer than a call's 300 ms (the whole context takes seconds): the host
    // call ends with limit-exceeded (then the guest, past its deadline, is stopped), and the
    // engine drops the sequence: its cancelled counter moves and its steps stop.
    let short = {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(manifest(PROBE))
            .unwrap()
            .replace("test-probe", "test-probe-3");
        let text = format!(
            "{}\n[limits]\ntimeout_ms = 300\n",
            text.replace("\"inference:minilm\"", "\"inference:tiny-llama\"")
        );
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        let grants = vec!["inference:tiny-llama".to_string()];
        let req = InstallRequest {
            component: wasm(PROBE),
            manifest: Some(path),
            grants,
            approve_limits: true,
            ..Default::default()
        };
        registry::install(&g.host, &req)
            .unwrap()
            .record
            .manifest
            .name
    };
    let m = g.core.model(LLAMA).unwrap();
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let cancelled = count(&m.stats.gen_cancelled);
    let start = Instant::now();
    let out = g.host.preprocess(
        &short,
        request(&["generate-max tiny-llama 100000 Once upon a time"]),
    );
    match &out {
        Ok(v) => assert!(v[0].starts_with("err:limit-exceeded:"), "{v:?}"),
        Err(e) => assert!(
            matches!(e, llmos::plugins::PluginError::Limit { .. }),
            "{e}"
        ),
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let t = Instant::now();
    while count(&m.stats.gen_cancelled) == cancelled {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the sequence was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let steps = count(&m.stats.gen_steps);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&m.stats.gen_steps), steps, "no step after the cancel");
}
