//! The plugin host: engine, linkers per world, loaded plugins, worker threads, calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Trap};

use super::PluginError;
use super::bindings::integration::{Integration, IntegrationPre};
use super::bindings::policy::{Policy, PolicyPre};
use super::bindings::preprocessor::{Preprocessor, PreprocessorPre};
use super::bindings::tool::{Tool, ToolPre};
use super::bindings::types::{
    Event, Request, RequestContext, RequestVerdict, Response, ResponseVerdict, ToolCall,
    ToolSpec as WitToolSpec,
};
use super::engine::{CacheOutcome, ComponentCache, EngineSettings, Ticker, build_engine};
use super::inference::InferenceBackend;
use super::limits::{LimitKind, LimitTrap, Limits};
use super::manifest::World;
use super::registry::PluginRecord;
use super::state::{PluginCtx, Services, State};
use super::trace::{TracedHost, traced};
use crate::data::{Store, Tree};
use crate::security::{AuditLog, CapabilitySet};

/// Settings of the plugin host.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Engine-wide settings (part of the cache key).
    pub engine: EngineSettings,
    /// Worker threads that run plugin code (never the HTTP server's executor).
    pub threads: usize,
    /// Worker threads that deliver events to integrations (separate, so that slow
    /// integrations never hold up requests).
    pub event_threads: usize,
    /// Largest component accepted by install, bytes.
    pub max_component_bytes: u64,
    /// When set, install only accepts components inside this folder (after resolving links).
    pub install_root: Option<PathBuf>,
    /// Plugin calls waiting for a worker thread; a call beyond it is refused
    /// ([`PluginError::Busy`], a 429 over HTTP) instead of queueing without bound.
    pub queue_capacity: usize,
    /// Events waiting for an integration thread; an event beyond it is dropped and counted
    /// (`llmos_plugin_events_dropped_total`), so a slow integration never grows a backlog.
    pub event_queue_capacity: usize,
    /// Plugin calls one worker thread runs at once: while a call waits (for a model, an
    /// outbound request, a kv write), the thread runs the others, so plugins' model calls
    /// reach the model together and batch. `threads × calls_per_thread + event_threads` is
    /// kept within the engine's `max_instances`.
    pub calls_per_thread: usize,
    /// Refuse unsigned plugins and plugins not signed by a trusted publisher
    /// (`[plugins] require_signature`).
    pub require_signature: bool,
}

/// The default [`HostSettings::calls_per_thread`]: the instance slots left after the event
/// threads, shared by the call threads, at most 16 each.
pub fn default_calls_per_thread(threads: usize, event_threads: usize, max_instances: u32) -> usize {
    let slots = usize::try_from(max_instances).unwrap_or(usize::MAX);
    slots
        .saturating_sub(event_threads)
        .checked_div(threads.max(1))
        .unwrap_or(1)
        .clamp(1, 16)
}

impl Default for HostSettings {
    fn default() -> Self {
        let engine = EngineSettings::default();
        // Half the cores: the models' intra-op threads use them all, and on a small machine a
        // plugin thread waking in the middle of a model's parallel section stalls all of it
        // (BENCHMARKS.md, "The plugin path over HTTP": 2 threads on 2 cores cost light
        // plugins 3.6 % of throughput, 1 thread 1.4 %). Each thread runs many calls at once.
        let threads = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8));
        let calls_per_thread = default_calls_per_thread(threads, 1, engine.max_instances);
        Self {
            engine,
            threads,
            event_threads: 1,
            max_component_bytes: 32 << 20,
            install_root: None,
            queue_capacity: 256,
            event_queue_capacity: 1024,
            calls_per_thread,
            require_signature: false,
        }
    }
}

/// A component ready to instantiate for its world.
#[derive(Clone)]
pub(crate) enum Pre {
    Preprocessor(PreprocessorPre<State>),
    Policy(PolicyPre<State>),
    Integration(IntegrationPre<State>),
    Tool(ToolPre<State>),
}

/// An installed, enabled plugin, compiled and pre-instantiated.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub(crate) ctx: Arc<PluginCtx>,
    pub(crate) pre: Pre,
}

pub(crate) struct Inner {
    pub(crate) home: PathBuf,
    pub(crate) settings: HostSettings,
    pub(crate) engine: Engine,
    linkers: HashMap<World, Linker<State>>,
    pub(crate) cache: ComponentCache,
    pub(crate) services: Arc<Services>,
    loaded: Mutex<HashMap<String, Loaded>>,
    jobs: Mutex<Option<Queue>>,
    /// Integrations have their own workers, so slow ones never delay requests.
    events: Mutex<Option<Queue>>,
    /// Events dropped because the event queue was full.
    events_dropped: AtomicU64,
    /// Calls and failed calls (traps, limits) per plugin, for metrics.
    counts: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
    _ticker: Ticker,
    /// Bumped (under the `loaded` lock) by every invalidation; a load that read the record
    /// before an invalidation finds another value and does not cache what it read.
    generation: std::sync::atomic::AtomicU64,
    /// Tests only: runs in [`Inner::loaded`] after the record is read, before the cache insert.
    #[cfg(test)]
    before_insert: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Work for a plugin worker thread: a future run on the thread's own single-threaded
/// executor, beside the thread's other calls.
type Job = Box<dyn FnOnce() -> JobFuture + Send>;
type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The plugin host. Cheap to clone; every clone shares the engine, cache and workers.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("home", &self.inner.home)
            .finish()
    }
}

/// A bounded queue of jobs for a set of worker threads, with its depth for metrics.
struct Queue {
    tx: tokio::sync::mpsc::Sender<Job>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
}

/// The receiving end shared by a queue's worker threads.
type SharedReceiver = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>;

/// Starts `n` worker threads fed by one queue of `capacity` jobs, each running up to
/// `per_thread` jobs at once; they end when the sender is dropped and their jobs are done.
fn spawn_workers(
    name: &str,
    n: usize,
    capacity: usize,
    per_thread: usize,
) -> Result<Queue, PluginError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(capacity);
    let rx: SharedReceiver = Arc::new(tokio::sync::Mutex::new(rx));
    let depth = Arc::new(AtomicUsize::new(0));
    for i in 0..n {
        let (rx, depth) = (rx.clone(), depth.clone());
        let rt = worker_runtime()?;
        std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || rt.block_on(run_jobs(rx, depth, per_thread)))
            .map_err(|e| PluginError::Engine(format!("spawning plugin threads: {e}")))?;
    }
    Ok(Queue {
        tx,
        depth,
        capacity,
    })
}

/// One worker thread's loop: takes a job only when one of its `per_thread` slots is free (so
/// a queued job goes to a thread that can start it), runs it beside the others, and when the
/// queue closes waits for the jobs still running.
async fn run_jobs(rx: SharedReceiver, depth: Arc<AtomicUsize>, per_thread: usize) {
    let per_thread = u32::try_from(per_thread.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(tokio::sync::Semaphore::new(per_thread as usize));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let job = rx.lock().await.recv().await;
        let Some(job) = job else {
            break; // host dropped
        };
        depth.fetch_sub(1, Ordering::Relaxed);
        tokio::spawn(async move {
            job().await;
            drop(slot);
        });
    }
    let _ = slots.acquire_many(per_thread).await;
}

/// [`HostSettings::calls_per_thread`] within the instance slots: every running call holds
/// one, and a call that finds none fails, so the threads never run more than the pool has.
fn fit_calls_per_thread(s: &HostSettings) -> usize {
    let slots = usize::try_from(s.engine.max_instances).unwrap_or(usize::MAX);
    let fit = slots
        .saturating_sub(s.event_threads.max(1))
        .checked_div(s.threads.max(1))
        .unwrap_or(1);
    s.calls_per_thread.min(fit).max(1)
}

/// A single-threaded executor for one worker thread (and for benchmarks on the caller's).
fn worker_runtime() -> Result<tokio::runtime::Runtime, PluginError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PluginError::Engine(format!("plugin executor: {e}")))
}

fn linker_for(engine: &Engine, world: World) -> Result<Linker<State>, PluginError> {
    let mut l = Linker::<State>::new(engine);
    let e = |e: wasmtime::Error| PluginError::Engine(format!("linking {world}: {e:#}"));
    // WASI 0.2 (deny-by-default context) and wasi:http (allow-list in the hooks).
    wasmtime_wasi::p2::add_to_linker_async(&mut l).map_err(e)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l).map_err(e)?;
    match world {
        // Through `Traced`: each host call is recorded when the call is traced (plugin test).
        World::Preprocessor => Preprocessor::add_to_linker::<_, TracedHost>(&mut l, traced),
        World::Policy => Policy::add_to_linker::<_, TracedHost>(&mut l, traced),
        World::Integration => Integration::add_to_linker::<_, TracedHost>(&mut l, traced),
        World::Tool => Tool::add_to_linker::<_, TracedHost>(&mut l, traced),
    }
    .map_err(e)?;
    Ok(l)
}

impl PluginHost {
    /// Opens the host for the data location `home`: the sealed store in `<home>/store`,
    /// installed plugins in `<home>/plugins`, the precompiled cache in `<home>/plugin-cache`.
    /// `inference` is the model backend; `None` makes plugin inference calls `unavailable`.
    pub fn open(
        home: &Path,
        settings: HostSettings,
        inference: Option<Arc<dyn InferenceBackend>>,
    ) -> Result<Self, PluginError> {
        let store = Store::open_home(home)?;
        Self::with_store(home, store, settings, inference)
    }

    /// Like [`PluginHost::open`] with an already open store (one sled handle per process).
    pub fn with_store(
        home: &Path,
        store: Store,
        settings: HostSettings,
        inference: Option<Arc<dyn InferenceBackend>>,
    ) -> Result<Self, PluginError> {
        let engine = build_engine(&settings.engine)?;
        let mut linkers = HashMap::new();
        for w in [
            World::Preprocessor,
            World::Policy,
            World::Integration,
            World::Tool,
        ] {
            linkers.insert(w, linker_for(&engine, w)?);
        }
        let cache = ComponentCache::new(
            home.join("plugin-cache"),
            store.clone(),
            &engine,
            &settings.engine,
        );
        let services = Arc::new(Services {
            audit: AuditLog::new(store.clone()),
            store,
            inference,
            data: std::sync::RwLock::new(None),
        });
        let tx = spawn_workers(
            "llmos-plugin",
            settings.threads.max(1),
            settings.queue_capacity.max(1),
            fit_calls_per_thread(&settings),
        )?;
        // Events one at a time per thread: an integration sees them in order.
        let events = spawn_workers(
            "llmos-event",
            settings.event_threads.max(1),
            settings.event_queue_capacity.max(1),
            1,
        )?;
        let ticker = Ticker::start(engine.clone(), settings.engine.tick);
        let host = Self {
            inner: Arc::new(Inner {
                home: home.into(),
                settings,
                engine,
                linkers,
                cache,
                services,
                loaded: Mutex::new(HashMap::new()),
                jobs: Mutex::new(Some(tx)),
                events: Mutex::new(Some(events)),
                events_dropped: AtomicU64::new(0),
                counts: Mutex::new(Default::default()),
                _ticker: ticker,
                generation: std::sync::atomic::AtomicU64::new(0),
                #[cfg(test)]
                before_insert: Mutex::new(None),
            }),
        };
        // Replicas sharing the store: a plugin installed, granted, revoked or removed through
        // another one is loaded again from its record on the next call.
        let weak = Arc::downgrade(&host.inner);
        host.inner.services.store.on_change(move |tree| {
            if (tree == Tree::Plugins.name() || tree == "*")
                && let Some(inner) = weak.upgrade()
            {
                let mut loaded = inner.loaded.lock().unwrap_or_else(|e| e.into_inner());
                inner
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                loaded.clear();
            }
        });
        Ok(host)
    }

    /// Calls and failed calls (traps and exhausted limits) per plugin since the host opened.
    pub fn call_counts(&self) -> Vec<(String, u64, u64)> {
        let counts = self.inner.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .map(|(n, (c, f))| (n.clone(), *c, *f))
            .collect()
    }

    /// Events dropped because the event queue was full, since the host opened.
    pub fn events_dropped(&self) -> u64 {
        self.inner.events_dropped.load(Ordering::Relaxed)
    }

    /// Plugin calls and events waiting for a worker thread now: (calls, events).
    pub fn queue_depths(&self) -> (usize, usize) {
        let depth = |q: &Mutex<Option<Queue>>| {
            q.lock()
                .ok()
                .and_then(|q| q.as_ref().map(|q| q.depth.load(Ordering::Relaxed)))
                .unwrap_or(0)
        };
        (depth(&self.inner.jobs), depth(&self.inner.events))
    }

    /// Lets plugins search the data collections through `backend` (`data.search`, under
    /// `data:<collection>`); until it is set the search is `unavailable`.
    pub fn set_data(&self, backend: Arc<dyn super::data_backend::DataBackend>) {
        *self
            .inner
            .services
            .data
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(backend);
    }

    /// The data location.
    pub fn home(&self) -> &Path {
        &self.inner.home
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.services.store
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.services.audit
    }

    /// The precompiled-component cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.inner.cache
    }

    /// The engine (for benchmarks and diagnostics).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Runs `f`'s future on a plugin worker thread and waits for it.
    fn on_worker<T, F, Fut>(&self, f: F) -> Result<T, PluginError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = self.inner.clone();
        self.submit(Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(f(inner).await);
            })
        }))?;
        rx.recv()
            .map_err(|_| PluginError::Engine("plugin worker thread exited".into()))
    }

    /// Runs `f`'s future on a plugin worker thread; the returned future resolves with its
    /// result. When the future is dropped before a worker picks the job up (the caller has
    /// gone, e.g. a request that timed out), the job is skipped.
    async fn on_worker_async<T, F, Fut>(&self, f: F) -> Result<T, PluginError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = self.inner.clone();
        self.submit(Box::new(move || {
            Box::pin(async move {
                if tx.is_closed() {
                    return;
                }
                let _ = tx.send(f(inner).await);
            })
        }))?;
        rx.await
            .map_err(|_| PluginError::Engine("plugin worker thread exited".into()))
    }

    fn submit(&self, job: Job) -> Result<(), PluginError> {
        Self::send(&self.inner.jobs, job, ("plugin calls", "queue_capacity"))
    }

    /// Queues a job; a full queue is refused at once ([`PluginError::Busy`]).
    fn send(
        queue: &Mutex<Option<Queue>>,
        job: Job,
        (what, setting): (&'static str, &'static str),
    ) -> Result<(), PluginError> {
        let q = queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = q.as_ref() else {
            return Err(PluginError::Engine("plugin workers are shut down".into()));
        };
        // Counted before sending so the worker's decrement never underflows.
        q.depth.fetch_add(1, Ordering::Relaxed);
        match q.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                q.depth.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    tokio::sync::mpsc::error::TrySendError::Full(_) => PluginError::Busy {
                        queue: what,
                        capacity: q.capacity,
                        setting,
                    },
                    tokio::sync::mpsc::error::TrySendError::Closed(_) => {
                        PluginError::Engine("plugin workers are shut down".into())
                    }
                })
            }
        }
    }

    /// A counter bumped by every change to an installed plugin (install, upgrade, grant,
    /// revoke, enable, disable, configure, remove): a cache of what the records say is
    /// current while it holds the same value.
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets the compiled state of `name` (after a grant, config or upgrade change). Calls
    /// already running end with what they loaded; a load in progress does not cache it, so the
    /// next call reads the new record.
    pub(crate) fn invalidate(&self, name: &str) {
        let mut loaded = self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner());
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        loaded.remove(name);
    }

    /// Compiles (through the cache) and checks a component against a world's linker.
    pub(crate) fn prepare(
        &self,
        bytes: &[u8],
        sha256: &str,
        world: World,
    ) -> Result<(Component, Pre, CacheOutcome), PluginError> {
        self.inner.prepare(bytes, sha256, world)
    }

    pub(crate) fn loaded(&self, name: &str) -> Result<Loaded, PluginError> {
        self.inner.loaded(name)
    }

    /// Runs a preprocessor (on a plugin worker thread; this thread waits).
    pub fn preprocess(&self, name: &str, request: Request) -> Result<Vec<String>, PluginError> {
        let name = name.to_string();
        self.on_worker(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_preprocess(&l, &request).await
        })?
    }

    /// Runs a policy on a request.
    pub fn check_request(
        &self,
        name: &str,
        request: Request,
    ) -> Result<RequestVerdict, PluginError> {
        let name = name.to_string();
        self.on_worker(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_check_request(&l, &request).await
        })?
    }

    /// Runs a policy on a response.
    pub fn check_response(
        &self,
        name: &str,
        response: Response,
    ) -> Result<ResponseVerdict, PluginError> {
        let name = name.to_string();
        self.on_worker(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_check_response(&l, &response).await
        })?
    }

    /// Delivers an event to an integration and waits for it (tests, diagnostics).
    pub fn deliver(&self, name: &str, event: Event) -> Result<(), PluginError> {
        let name = name.to_string();
        self.on_worker(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_on_event(&l, &event).await
        })?
    }

    /// [`PluginHost::preprocess`] for async callers (the HTTP server): the plugin runs on a
    /// plugin worker thread and the task awaits the reply without blocking its executor.
    pub async fn preprocess_async(
        &self,
        name: &str,
        request: Request,
    ) -> Result<Vec<String>, PluginError> {
        let name = name.to_string();
        self.on_worker_async(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_preprocess(&l, &request).await
        })
        .await?
    }

    /// [`PluginHost::check_request`] for async callers.
    pub async fn check_request_async(
        &self,
        name: &str,
        request: Request,
    ) -> Result<RequestVerdict, PluginError> {
        let name = name.to_string();
        self.on_worker_async(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_check_request(&l, &request).await
        })
        .await?
    }

    /// [`PluginHost::check_response`] for async callers.
    pub async fn check_response_async(
        &self,
        name: &str,
        response: Response,
    ) -> Result<ResponseVerdict, PluginError> {
        let name = name.to_string();
        self.on_worker_async(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_check_response(&l, &response).await
        })
        .await?
    }

    /// Runs a tool plugin's `invoke` (on a plugin worker thread, in a fresh store under the
    /// plugin's limits and grants); the caller's task awaits it.
    pub async fn invoke_async(&self, name: &str, call: ToolCall) -> Result<String, PluginError> {
        let name = name.to_string();
        self.on_worker_async(move |inner| async move {
            let l = inner.loaded(&name)?;
            inner.call_invoke(&l, &call).await
        })
        .await?
    }

    /// Calls a tool component's `tools()` once under `ctx`'s limits and grants (install and
    /// upgrade, before the record exists). Blocks the calling thread.
    pub(crate) fn component_tools(
        &self,
        ctx: PluginCtx,
        pre: Pre,
    ) -> Result<Vec<WitToolSpec>, PluginError> {
        let l = Loaded {
            ctx: Arc::new(ctx),
            pre,
        };
        self.on_worker(move |inner| async move { inner.call_tools(&l).await })?
    }

    /// Delivers an event without waiting: the caller is never delayed or failed by it;
    /// errors are logged. `done`, when given, receives the outcome (tests).
    pub fn notify(
        &self,
        name: &str,
        event: Event,
        done: Option<mpsc::Sender<Result<(), PluginError>>>,
    ) {
        let host = self.clone();
        let plugin = name.to_string();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let name = plugin;
                let r = match host.loaded(&name) {
                    Ok(l) => host.inner.call_on_event(&l, &event).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = &r {
                    tracing::warn!("integration {name}: {e}");
                }
                if let Some(d) = done {
                    let _ = d.send(r);
                }
            })
        });
        match Self::send(&self.inner.events, job, ("events", "event_queue_capacity")) {
            Ok(()) => {}
            Err(e @ PluginError::Busy { .. }) => {
                // Logged at the 1st, 2nd, 4th, 8th… drop, so a flood cannot flood the log.
                let n = self
                    .inner
                    .events_dropped
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if n.is_power_of_two() {
                    tracing::warn!("integration {name}: event dropped ({n} so far): {e}");
                }
            }
            Err(e) => tracing::warn!("integration {name}: {e}"),
        }
    }

    /// A long-lived instance of a preprocessor for measuring per-call overhead: the store is
    /// reused, and each call gets a fresh time budget and host-call count. Production paths
    /// use a fresh store per call instead.
    pub fn warm_preprocessor(&self, name: &str) -> Result<WarmPreprocessor, PluginError> {
        let loaded = self.loaded(name)?;
        let Pre::Preprocessor(pre) = &loaded.pre else {
            return Err(wrong_world(&loaded, World::Preprocessor));
        };
        let rt = worker_runtime()?;
        let mut store = self.inner.new_store(&loaded);
        let instance = rt
            .block_on(pre.instantiate_async(&mut store))
            .map_err(|e| classify(&loaded.ctx, e))?;
        Ok(WarmPreprocessor {
            rt,
            store,
            instance,
            ticks: self.inner.ticks(&loaded.ctx.limits),
            ctx: loaded.ctx.clone(),
        })
    }

    /// A runner of fresh-store calls on the calling thread (benchmarks: no thread hand-off).
    pub fn local_runner(&self) -> Result<LocalRunner, PluginError> {
        Ok(LocalRunner {
            rt: worker_runtime()?,
            host: self.clone(),
        })
    }
}

/// See [`PluginHost::local_runner`].
pub struct LocalRunner {
    rt: tokio::runtime::Runtime,
    host: PluginHost,
}

impl LocalRunner {
    /// Runs a preprocessor with a fresh store and instance on this thread.
    pub fn preprocess(&self, name: &str, request: &Request) -> Result<Vec<String>, PluginError> {
        let loaded = self.host.loaded(name)?;
        self.rt
            .block_on(self.host.inner.call_preprocess(&loaded, request))
    }
}

/// See [`PluginHost::warm_preprocessor`].
pub struct WarmPreprocessor {
    rt: tokio::runtime::Runtime,
    store: wasmtime::Store<State>,
    instance: Preprocessor,
    ticks: u64,
    ctx: Arc<PluginCtx>,
}

impl WarmPreprocessor {
    /// One call on the warm instance, with a fresh time budget and host-call count.
    pub fn call(&mut self, request: &Request) -> Result<Vec<String>, PluginError> {
        self.store.set_epoch_deadline(self.ticks);
        self.store.data_mut().reset_host_calls();
        let out = self
            .rt
            .block_on(self.instance.call_preprocess(&mut self.store, request))
            .map_err(|e| classify(&self.ctx, e))?;
        finish(&self.ctx, out, |v| v.iter().map(String::len).sum())
    }
}

fn wrong_world(l: &Loaded, expected: World) -> PluginError {
    let actual = match l.pre {
        Pre::Preprocessor(_) => World::Preprocessor,
        Pre::Policy(_) => World::Policy,
        Pre::Integration(_) => World::Integration,
        Pre::Tool(_) => World::Tool,
    };
    PluginError::WrongWorld {
        plugin: l.ctx.name.clone(),
        actual,
        expected,
    }
}

/// Maps a failed call to an error naming the plugin and, for limits, the limit.
fn classify(ctx: &PluginCtx, e: wasmtime::Error) -> PluginError {
    let plugin = ctx.name.clone();
    for cause in e.chain() {
        if let Some(l) = cause.downcast_ref::<LimitTrap>() {
            return PluginError::Limit {
                plugin,
                kind: l.kind,
                detail: l.detail.clone(),
            };
        }
        if let Some(wasmtime_wasi_http::FieldMapError::TotalSizeTooBig) = cause.downcast_ref() {
            return PluginError::Limit {
                plugin,
                kind: LimitKind::Resources,
                detail: format!(
                    "{} bytes allowed per wasi:http fields object (headers, trailers)",
                    super::limits::MAX_HTTP_FIELDS_BYTES
                ),
            };
        }
        if let Some(wasmtime::component::ResourceTableError::Full) = cause.downcast_ref() {
            return PluginError::Limit {
                plugin,
                kind: LimitKind::Resources,
                detail: format!(
                    "{} host resources (wasi handles such as http fields, streams, pollables) allowed at once",
                    super::limits::MAX_RESOURCES
                ),
            };
        }
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Limit {
            plugin,
            kind: LimitKind::Time,
            detail: format!("{} ms allowed per call", ctx.limits.timeout_ms),
        },
        Some(Trap::StackOverflow) => PluginError::Limit {
            plugin,
            kind: LimitKind::Stack,
            detail: "the wasm stack is exhausted (512 KiB)".into(),
        },
        _ => {
            // The full chain (with the wasm backtrace, whose frame names come from the
            // guest) goes to the operator's log only; callers get the trap's code.
            tracing::warn!(plugin = %plugin, "plugin trapped: {e:?}");
            PluginError::Trap {
                plugin,
                message: trap_reason(&e),
            }
        }
    }
}

/// Why a call failed, for the audit log and the caller: the trap's code (`wasm \`unreachable\` instruction
/// executed`, …) or the host fault at the root, cut short. Never the backtrace (its frame
/// names come from the guest) nor the guest's panic text (which goes to its stderr).
fn trap_reason(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => format!("host fault: {}", short(&e.root_cause().to_string())),
    }
}

/// At most 80 characters of `s` on one line, for audit details.
fn short(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

/// The output limit: `n` bytes returned (`what` says what they were, e.g. "an error of ").
fn check_output(ctx: &PluginCtx, n: usize, what: &str) -> Result<(), PluginError> {
    let n = n as u64;
    if n > ctx.limits.max_output_bytes {
        return Err(PluginError::Limit {
            plugin: ctx.name.clone(),
            kind: LimitKind::Output,
            detail: format!(
                "{} bytes allowed, the plugin returned {what}{n}{}",
                ctx.limits.max_output_bytes,
                if what.is_empty() { "" } else { " bytes" }
            ),
        });
    }
    Ok(())
}

/// Checks the output limit and maps the guest's own error.
pub(crate) fn finish<T>(
    ctx: &PluginCtx,
    out: Result<T, super::bindings::types::Error>,
    size: impl Fn(&T) -> usize,
) -> Result<T, PluginError> {
    match out {
        Ok(v) => {
            check_output(ctx, size(&v), "")?;
            Ok(v)
        }
        Err(error) => {
            // An error's payload is output too.
            check_output(ctx, guest_error_len(&error), "an error of ")?;
            let hint = match &error {
                super::bindings::types::Error::Denied(cap) => match cap.parse() {
                    Ok(cap) => format!(" ({})", ctx.refusal(&cap)),
                    Err(_) => String::new(),
                },
                _ => String::new(),
            };
            Err(PluginError::Guest {
                plugin: ctx.name.clone(),
                error,
                hint,
            })
        }
    }
}

fn guest_error_len(e: &super::bindings::types::Error) -> usize {
    use super::bindings::types::Error as E;
    match e {
        E::Denied(s)
        | E::NotFound(s)
        | E::InvalidInput(s)
        | E::LimitExceeded(s)
        | E::Unavailable(s) => s.len(),
    }
}

impl Inner {
    fn ticks(&self, limits: &Limits) -> u64 {
        let tick = u64::try_from(self.settings.engine.tick.as_millis().max(1)).unwrap_or(u64::MAX);
        limits.timeout_ms.div_ceil(tick).saturating_add(1)
    }

    pub(crate) fn new_store(&self, l: &Loaded) -> wasmtime::Store<State> {
        let mut store = wasmtime::Store::new(
            &self.engine,
            State::new(l.ctx.clone(), self.services.clone()),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.ticks(&l.ctx.limits));
        store.epoch_deadline_trap();
        store
    }

    fn prepare(
        &self,
        bytes: &[u8],
        sha256: &str,
        world: World,
    ) -> Result<(Component, Pre, CacheOutcome), PluginError> {
        let (component, outcome) = self.cache.load(&self.engine, bytes, sha256)?;
        let linker = self.linkers.get(&world).ok_or_else(|| {
            PluginError::Invalid(format!("this llmos has no linker for the {world} world"))
        })?;
        let wrong = |e: wasmtime::Error| {
            PluginError::Invalid(format!(
                "the component does not fit the {world} world: {e:#}"
            ))
        };
        let ipre = linker.instantiate_pre(&component).map_err(wrong)?;
        let pre = match world {
            World::Preprocessor => Pre::Preprocessor(PreprocessorPre::new(ipre).map_err(wrong)?),
            World::Policy => Pre::Policy(PolicyPre::new(ipre).map_err(wrong)?),
            World::Integration => Pre::Integration(IntegrationPre::new(ipre).map_err(wrong)?),
            World::Tool => Pre::Tool(ToolPre::new(ipre).map_err(wrong)?),
        };
        Ok((component, pre, outcome))
    }

    fn loaded(&self, name: &str) -> Result<Loaded, PluginError> {
        if let Some(l) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(l.clone());
        }
        // Read before the record: an invalidation after this point changes it.
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let record = PluginRecord::get(&self.services.store, name)?;
        if !record.enabled {
            return Err(PluginError::Disabled(name.into()));
        }
        let path = record.component_path(&self.home);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Installed through another replica: the bytes are in the shared store.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.services.store.shared() => {
                let b = self
                    .services
                    .store
                    .get(Tree::Components, record.sha256.as_bytes())?
                    .ok_or_else(|| PluginError::Io(format!("plugin {name}: {e}, and the shared store has no component {}", record.sha256)))?;
                if let Some(dir) = path.parent()
                    && std::fs::create_dir_all(dir).is_ok()
                {
                    let _ = std::fs::write(&path, &b);
                }
                b
            }
            Err(e) => return Err(PluginError::Io(format!("plugin {name}: {e}"))),
        };
        let sha = super::engine::sha256_hex(&bytes);
        if sha != record.sha256 {
            return Err(PluginError::Digest {
                expected: record.sha256.clone(),
                actual: sha,
            });
        }
        let (_, pre, _) = self.prepare(&bytes, &sha, record.manifest.world)?;
        let requested = record.manifest.requested()?;
        let ctx = PluginCtx {
            name: name.into(),
            effective: CapabilitySet::effective(&requested, &record.granted),
            requested,
            config: record.manifest.effective_config(&record.config)?,
            limits: {
                let mut l = record.limits();
                l.memory_mib = l.memory_mib.min(self.settings.engine.max_memory_mib);
                l
            },
        };
        let l = Loaded {
            ctx: Arc::new(ctx),
            pre,
        };
        #[cfg(test)]
        if let Some(hook) = self.before_insert.lock().unwrap_or_else(|e| e.into_inner()).take() {
            hook();
        }
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        // Cache only if nothing was invalidated since the record was read; either way this
        // call runs with what it read (it started before the change).
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            loaded.insert(name.into(), l.clone());
        }
        Ok(l)
    }

    /// Runs a call under the plugin's wall-clock deadline (which also cancels a guest blocked
    /// in the host, e.g. sleeping or waiting for HTTP) and maps failures. Not audited: the
    /// dry runs of `llmos plugin test` (their trace shows the failure); see [`Self::limited_at`].
    pub(crate) async fn limited<R>(
        &self,
        l: &Loaded,
        call: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, PluginError> {
        self.run_limited(l, call).await.0
    }

    /// [`Self::limited`] for the calls requests make: a call that trapped or ran out of a
    /// limit is also recorded in the audit log (`trap`, aggregated per plugin), naming the
    /// limit or the trap, the export (`stage`) and the request's model and route.
    pub(crate) async fn limited_at<R>(
        &self,
        l: &Loaded,
        stage: &'static str,
        context: Option<&RequestContext>,
        call: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, PluginError> {
        let (result, reason) = self.run_limited(l, call).await;
        if let Some(reason) = reason {
            let mut detail = format!("{reason} in {stage}");
            if let Some(c) = context {
                if !c.model.is_empty() {
                    detail.push_str(&format!(", model {}", short(&c.model)));
                }
                if !c.route.is_empty() {
                    detail.push_str(&format!(", route {}", short(&c.route)));
                }
            }
            self.services.audit.trap(&l.ctx.name, &detail);
        }
        result
    }

    /// Runs and counts the call; the second value says why it failed, when it trapped or ran
    /// out of a limit (host-written: the limit, or the trap's code; never guest strings).
    async fn run_limited<R>(
        &self,
        l: &Loaded,
        call: impl Future<Output = wasmtime::Result<R>>,
    ) -> (Result<R, PluginError>, Option<String>) {
        let wall = Duration::from_millis(l.ctx.limits.timeout_ms)
            .saturating_add(self.settings.engine.tick.saturating_mul(2));
        let mut trap = None;
        let result = match tokio::time::timeout(wall, call).await {
            Ok(r) => r.map_err(|e| {
                trap = Some(trap_reason(&e));
                classify(&l.ctx, e)
            }),
            Err(_) => Err(PluginError::Limit {
                plugin: l.ctx.name.clone(),
                kind: LimitKind::Time,
                detail: format!(
                    "{} ms allowed per call; the plugin was still waiting on the host",
                    l.ctx.limits.timeout_ms
                ),
            }),
        };
        let reason = match &result {
            Err(PluginError::Limit { kind, detail, .. }) => {
                Some(format!("{kind} limit exceeded ({detail})"))
            }
            Err(PluginError::Trap { .. }) => trap,
            _ => None,
        };
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = counts.entry(l.ctx.name.clone()).or_default();
        c.0 = c.0.saturating_add(1);
        c.1 = c.1.saturating_add(u64::from(reason.is_some()));
        drop(counts);
        (result, reason)
    }

    pub(crate) async fn call_preprocess(
        &self,
        l: &Loaded,
        req: &Request,
    ) -> Result<Vec<String>, PluginError> {
        let Pre::Preprocessor(pre) = &l.pre else {
            return Err(wrong_world(l, World::Preprocessor));
        };
        let mut store = self.new_store(l);
        let call = async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_preprocess(&mut store, req).await
        };
        let out = self
            .limited_at(l, "preprocess", Some(&req.context), call)
            .await?;
        finish(&l.ctx, out, |v| v.iter().map(String::len).sum())
    }

    async fn call_check_request(
        &self,
        l: &Loaded,
        req: &Request,
    ) -> Result<RequestVerdict, PluginError> {
        let Pre::Policy(pre) = &l.pre else {
            return Err(wrong_world(l, World::Policy));
        };
        let mut store = self.new_store(l);
        let call = async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_check_request(&mut store, req).await
        };
        let out = self
            .limited_at(l, "check-request", Some(&req.context), call)
            .await?;
        finish(&l.ctx, out, |v| match v {
            RequestVerdict::Allow => 0,
            RequestVerdict::Deny(s) => s.len(),
            RequestVerdict::Modify(v) => v.iter().map(String::len).sum(),
        })
    }

    async fn call_check_response(
        &self,
        l: &Loaded,
        resp: &Response,
    ) -> Result<ResponseVerdict, PluginError> {
        let Pre::Policy(pre) = &l.pre else {
            return Err(wrong_world(l, World::Policy));
        };
        let mut store = self.new_store(l);
        let call = async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_check_response(&mut store, resp).await
        };
        let out = self
            .limited_at(l, "check-response", Some(&resp.context), call)
            .await?;
        finish(&l.ctx, out, |v| match v {
            ResponseVerdict::Allow => 0,
            ResponseVerdict::Deny(s) | ResponseVerdict::Modify(s) => s.len(),
        })
    }

    /// A tool component's `tools()` (at install and upgrade).
    pub(crate) async fn call_tools(&self, l: &Loaded) -> Result<Vec<WitToolSpec>, PluginError> {
        let Pre::Tool(pre) = &l.pre else {
            return Err(wrong_world(l, World::Tool));
        };
        let mut store = self.new_store(l);
        let call = async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_tools(&mut store).await
        };
        let out = self.limited_at(l, "tools", None, call).await?;
        finish(&l.ctx, Ok(out), |v| {
            v.iter()
                .map(|t| {
                    t.name
                        .len()
                        .saturating_add(t.description.len())
                        .saturating_add(t.parameters_json.len())
                })
                .sum()
        })
    }

    /// A tool component's `invoke`.
    pub(crate) async fn call_invoke(&self, l: &Loaded, call: &ToolCall) -> Result<String, PluginError> {
        let Pre::Tool(pre) = &l.pre else {
            return Err(wrong_world(l, World::Tool));
        };
        let mut store = self.new_store(l);
        let run = async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_invoke(&mut store, call).await
        };
        let out = self
            .limited_at(l, "invoke", Some(&call.context), run)
            .await?;
        finish(&l.ctx, out, String::len)
    }

    async fn call_on_event(&self, l: &Loaded, event: &Event) -> Result<(), PluginError> {
        let Pre::Integration(pre) = &l.pre else {
            return Err(wrong_world(l, World::Integration));
        };
        let mut store = self.new_store(l);
        let call = async {
            let i = pre.instantiate_async(&mut store).await?;
            i.call_on_event(&mut store, event).await
        };
        let out = self
            .limited_at(l, "on-event", Some(&event.context), call)
            .await?;
        finish(&l.ctx, out, |_| 0)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the worker threads once their current job is done.
        for q in [&self.jobs, &self.events] {
            if let Ok(mut j) = q.lock() {
                j.take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::registry::{self, InstallRequest};
    use crate::plugins::{Request, RequestContext};

    /// The test guests, built as the integration tests build them (plugins/target).
    fn probe_wasm() -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--target", "wasm32-wasip2", "--release", "--quiet"])
            .args(["-p", "test-probe"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .unwrap();
        assert!(status.success());
        dir.join("target/wasm32-wasip2/release/test_probe.wasm")
    }

    fn kv_get(host: &PluginHost, name: &str) -> String {
        let req = Request {
            context: RequestContext {
                request_id: "r".into(),
                key_id: None,
                model: "m".into(),
                task: "embed".into(),
                route: "test".into(),
            },
            inputs: vec!["kv.get k".into()],
        };
        host.preprocess(name, req).unwrap().remove(0)
    }

    /// item 8: a revoke that lands while the first call is loading the plugin: that call ends
    /// with its old grant, the next one sees the revocation (on the old code the stale grant
    /// stayed cached until the next invalidation).
    #[test]
    fn revoke_during_first_load_is_seen_by_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let settings = HostSettings {
            threads: 1,
            ..HostSettings::default()
        };
        let host = PluginHost::open(dir.path(), settings, None).unwrap();
        let manifest =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/testing/probe/manifest.toml");
        let req = InstallRequest {
            component: probe_wasm(),
            manifest: Some(manifest),
            grants: vec!["kv".into()],
            ..Default::default()
        };
        let name = registry::install(&host, &req).unwrap().record.manifest.name;
        for round in 0..3 {
            let (h, n) = (host.clone(), name.clone());
            *host.inner.before_insert.lock().unwrap() = Some(Box::new(move || {
                registry::revoke(&h, &n, &["kv".into()]).unwrap();
            }));
            assert_eq!(
                kv_get(&host, &name),
                "ok:None",
                "round {round}: running call"
            );
            assert_eq!(
                kv_get(&host, &name),
                "err:denied:kv",
                "round {round}: the next call must see the revocation"
            );
            // Granted again; the next round's first call loads afresh.
            registry::grant(&host, &name, &["kv".into()]).unwrap();
        }
    }
}
