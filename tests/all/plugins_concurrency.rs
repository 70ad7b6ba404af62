//! Several plugin calls run at once on one worker thread: while one waits for a model, the
//! thread runs the others, so their model calls reach the model together (and batch there).

use std::sync::Arc;

use llmos::plugins::PluginHost;
use llmos::plugins::inference::{Answer, Budget, InferenceFuture};
use llmos::plugins::registry::{self, InstallRequest};
use llmos::plugins::{EntitySpan, HostSettings, InferenceBackend, InferenceError, LabelScore};

use crate::plugins_common::{manifest, request, settings, wasm};

/// A model that answers only when `n` embed calls wait at once (or fails at the budget's
/// deadline): it proves how many plugin calls were in flight together.
struct Together {
    barrier: Arc<tokio::sync::Barrier>,
}

impl InferenceBackend for Together {
    fn embed(&self, _: &str, texts: Vec<String>, budget: Budget) -> InferenceFuture<Vec<Vec<f32>>> {
        let barrier = self.barrier.clone();
        Box::pin(async move {
            let left = budget
                .deadline
                .saturating_duration_since(std::time::Instant::now());
            match tokio::time::timeout(left, barrier.wait()).await {
                Ok(_) => Ok(Answer {
                    value: texts.iter().map(|_| vec![1.0]).collect(),
                    tokens: texts.len(),
                }),
                Err(_) => Err(InferenceError::Expired),
            }
        })
    }

    fn classify(
        &self,
        m: &str,
        _: Vec<String>,
        _: Budget,
    ) -> InferenceFuture<Vec<Vec<LabelScore>>> {
        let m = m.to_string();
        Box::pin(async move { Err(InferenceError::UnknownModel(m)) })
    }

    fn entities(&self, m: &str, _: String, _: Budget) -> InferenceFuture<Vec<EntitySpan>> {
        let m = m.to_string();
        Box::pin(async move { Err(InferenceError::UnknownModel(m)) })
    }
}

/// Runs four probe calls (each one `embed`) at once on a host with one worker thread running
/// `per_thread` calls; returns how many got their embedding.
fn four_at_once(per_thread: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let backend = Together {
        barrier: Arc::new(tokio::sync::Barrier::new(4)),
    };
    let host = PluginHost::open(
        dir.path(),
        HostSettings {
            threads: 1,
            calls_per_thread: per_thread,
            ..settings()
        },
        Some(Arc::new(backend)),
    )
    .unwrap();
    // A budget long enough for four instantiations on a busy machine.
    let text = std::fs::read_to_string(manifest("testing/probe")).unwrap();
    let path = dir.path().join("probe.toml");
    std::fs::write(&path, format!("{text}\n[limits]\ntimeout_ms = 3000\n")).unwrap();
    let req = InstallRequest {
        component: wasm("testing/probe"),
        manifest: Some(path),
        grants: vec!["inference:minilm".into()],
        sha256: None,
        config: Default::default(),
        approve_limits: true,
        signature: None,
    };
    let name = registry::install(&host, &req).unwrap().record.manifest.name;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (host, name) = (host.clone(), name.clone());
            std::thread::spawn(move || host.preprocess(&name, request(&["embed minilm"])))
        })
        .collect();
    calls
        .into_iter()
        .map(|c| c.join().unwrap())
        .filter(|r| matches!(r, Ok(out) if out.first().is_some_and(|o| o.starts_with("ok:"))))
        .count()
}

#[test]
fn one_worker_thread_runs_several_plugin_calls_at_once() {
    // Four calls that each wait for the other three: all four finish when the thread runs
    // four at once ...
    assert_eq!(four_at_once(4), 4);
    // ... and at most the last does when it runs one at a time (the old behaviour: each
    // call held the thread until its deadline; a waiter that timed out still counts as
    // arrived at the barrier), which shows the test can tell the two apart.
    assert!(four_at_once(1) <= 1);
}
