//! The wasmtime engine, the epoch ticker and the precompiled-component cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;
use crate::data::{Store, Tree};

/// Engine-wide settings. They are part of the cache key: an artifact compiled under one
/// setting is never loaded under another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// `Config::concurrency_support`. On (the default) lets components that use the
    /// component-model async ABI (e.g. JavaScript built with the QuickJS backend) load, at a
    /// cost of 1–2 µs per call.
    pub concurrency_support: bool,
    /// Epoch tick; call deadlines are rounded up to whole ticks.
    pub tick: Duration,
    /// Component instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Largest linear memory any plugin may get (the pool's slot size), MiB.
    pub max_memory_mib: u64,
    /// Wasm stack per call, bytes.
    pub max_wasm_stack: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            concurrency_support: true,
            tick: Duration::from_millis(10),
            max_instances: 64,
            max_memory_mib: super::limits::Limits::MAX.memory_mib,
            max_wasm_stack: 512 << 10,
        }
    }
}

/// Builds the engine: components, epoch interruption, the pooling allocator.
pub fn build_engine(s: &EngineSettings) -> Result<Engine, PluginError> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(s.max_instances)
        .total_core_instances(s.max_instances.saturating_mul(4))
        .total_memories(s.max_instances.saturating_mul(2))
        .total_tables(s.max_instances.saturating_mul(4))
        .total_stacks(s.max_instances)
        .max_memories_per_component(4)
        // Each freed instance's memory is decommitted with madvise, whose TLB flush
        // interrupts every core (the model threads too): flush 16 at a time, not one by one.
        .decommit_batch_size(16)
        .max_memory_size(
            usize::try_from(s.max_memory_mib)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20),
        );
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .concurrency_support(s.concurrency_support)
        .max_wasm_stack(s.max_wasm_stack)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&cfg).map_err(|e| PluginError::Engine(format!("{e:#}")))
}

/// Increments the engine's epoch every tick until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts the ticker thread.
    // why: runs once at start-up, on no request's data; a process that cannot start a
    // thread cannot serve anything either.
    #[allow(clippy::expect_used)]
    pub fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("llmos-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// sha256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Precompiled components on disk, keyed by the component's sha256 and the engine's
/// compatibility hash (which covers the wasmtime version, target and settings such as
/// `concurrency_support`, also mixed in explicitly).
///
/// Deserialising runs native code, so only artifacts llmos wrote itself are loaded: each
/// write records the artifact's sha256 in the sealed store, and a file whose digest is not
/// the recorded one is ignored and recompiled.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    store: Store,
    compat: String,
}

impl ComponentCache {
    /// A cache in `dir` for this engine.
    pub fn new(dir: PathBuf, store: Store, engine: &Engine, s: &EngineSettings) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        s.concurrency_support.hash(&mut h);
        Self {
            dir,
            store,
            compat: format!("{:016x}", h.finish()),
        }
    }

    fn file_name(&self, sha256: &str) -> String {
        format!("{sha256}-{}.cwasm", self.compat)
    }

    /// The compiled component for `bytes` (whose sha256 is `sha256`): from the cache when
    /// llmos wrote a matching artifact, otherwise compiled and cached.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, CacheOutcome), PluginError> {
        let name = self.file_name(sha256);
        let path = self.dir.join(&name);
        if let Some(c) = self.load_cached(engine, &path, &name) {
            return Ok((c, CacheOutcome::Hit));
        }
        let component = Component::new(engine, bytes)
            .map_err(|e| PluginError::Invalid(format!("not a valid component: {e:#}")))?;
        self.write(&component, &path, &name)?;
        Ok((component, CacheOutcome::Compiled))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, engine: &Engine, path: &Path, name: &str) -> Option<Component> {
        let recorded = self
            .store
            .get(Tree::ComponentCache, name.as_bytes())
            .ok()??;
        let artifact = std::fs::read(path).ok()?;
        if Sha256::digest(&artifact).as_slice() != recorded.as_slice() {
            tracing::warn!(
                "ignoring cached artifact {}: digest mismatch",
                path.display()
            );
            return None;
        }
        // SAFETY: the bytes are an artifact this process family serialised with
        // `Component::serialize` (its digest was recorded in the sealed store when written and
        // matches), for an engine with the same compatibility hash (part of the file name).
        unsafe { Component::deserialize(engine, &artifact) }.ok()
    }

    fn write(&self, c: &Component, path: &Path, name: &str) -> Result<(), PluginError> {
        let io = |e: std::io::Error| PluginError::Io(format!("{}: {e}", path.display()));
        let artifact = c
            .serialize()
            .map_err(|e| PluginError::Engine(format!("serialising a component: {e:#}")))?;
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &artifact).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        self.store.put(
            Tree::ComponentCache,
            name.as_bytes(),
            &Sha256::digest(&artifact),
        )?;
        Ok(())
    }
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a precompiled artifact.
    Hit,
    /// Compiled now (and written to the cache).
    Compiled,
}
