//! The per-call store data and the host side of every `llmos:plugin` interface.
//!
//! Each function first counts the host call (a trap past [`Limits::max_host_calls`]), then
//! checks the plugin's *effective* capabilities, and returns `denied(<capability>)` — recorded
//! in the audit log — when the capability is missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{config, data, inference, kv, log, secrets, types};
use super::data_backend::{DataBackend, DataBackendError};
use super::inference::{Budget, InferenceBackend, InferenceError, InferenceFuture};
use super::limits::{LimitKind, LimitTrap, Limiter, Limits, MAX_HTTP_FIELDS_BYTES, MAX_RESOURCES};
use super::outbound;
use crate::data::{Store, StoreError, Tree};
use crate::security::{AuditLog, Capability, CapabilitySet, HttpScheme};

use types::Error as GuestError;

/// Largest kv key, bytes.
pub const MAX_KV_KEY: usize = 512;
/// Largest kv value, bytes (the ceiling of [`Limits::kv_max_value_bytes`]).
pub const MAX_KV_VALUE: usize = 1 << 20;
/// Longest log message kept, bytes.
const MAX_LOG: usize = 4096;

/// What every call shares: the store, the audit log and the models.
pub struct Services {
    /// The sealed store (kv, secrets).
    pub store: Store,
    /// Where denials are recorded.
    pub audit: AuditLog,
    /// The models, when this process has them.
    pub inference: Option<Arc<dyn InferenceBackend>>,
    /// The data collections, once the process has set them ([`super::PluginHost::set_data`]).
    pub data: std::sync::RwLock<Option<Arc<dyn DataBackend>>>,
}

/// What one installed plugin's calls share: identity, capabilities, config, limits.
#[derive(Debug)]
pub struct PluginCtx {
    /// The plugin's name.
    pub name: String,
    /// Requested by its manifest.
    pub requested: CapabilitySet,
    /// Requested ∩ granted.
    pub effective: CapabilitySet,
    /// Operator values merged over the manifest's defaults.
    pub config: BTreeMap<String, String>,
    /// Per-call limits.
    pub limits: Limits,
}

impl PluginCtx {
    /// The denial message: names the capability and how to get it.
    pub fn refusal(&self, cap: &Capability) -> String {
        if self.requested.iter().any(|r| r.covers(cap)) {
            format!(
                "plugin {} was denied {cap}: its manifest requests it but the operator has not granted it; grant it with `llmos plugin grant {} {cap}`",
                self.name, self.name
            )
        } else {
            format!(
                "plugin {} was denied {cap}: its manifest does not request it (a new plugin version must request it, then `llmos plugin upgrade` and `llmos plugin grant {} {cap}`)",
                self.name, self.name
            )
        }
    }
}

/// The data of one call's store.
pub struct State {
    pub(crate) plugin: Arc<PluginCtx>,
    services: Arc<Services>,
    pub(crate) limiter: Limiter,
    host_calls: u64,
    /// When this call's time budget ends: host calls never wait past it.
    deadline: Instant,
    /// `inference` calls and tokens used by this call (see [`Limits::max_inference_calls`]).
    inference_calls: u64,
    inference_tokens: u64,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: HttpHooks,
    /// `llmos plugin test`'s record of this call ([`super::trace`]); `None` otherwise.
    pub(crate) trace: Option<Box<super::trace::Trace>>,
}

impl State {
    /// Fresh state for one call. WASI is deny-by-default: no arguments, environment,
    /// directories, sockets or name lookups; stdio goes nowhere.
    pub fn new(plugin: Arc<PluginCtx>, services: Arc<Services>) -> Self {
        let limiter = Limiter::new(&plugin.limits);
        let hooks = HttpHooks {
            plugin: plugin.clone(),
            audit: services.audit.clone(),
            timeout: Duration::from_millis(plugin.limits.timeout_ms),
            trace: None,
        };
        // Host memory that no limiter sees: bound the handles and the size of each fields.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_HTTP_FIELDS_BYTES);
        Self {
            limiter,
            host_calls: 0,
            deadline: deadline_after(plugin.limits.timeout_ms),
            inference_calls: 0,
            inference_tokens: 0,
            wasi: WasiCtx::builder().build(),
            http,
            table,
            hooks,
            plugin,
            services,
            trace: None,
        }
    }

    /// Traces this call (`llmos plugin test`): host calls, logs and wasi:http requests.
    pub(crate) fn start_trace(&mut self) {
        let t = super::trace::Trace::default();
        self.hooks.trace = Some(t.http.clone());
        self.trace = Some(Box::new(t));
    }

    /// Host calls made by this call so far.
    pub(crate) fn host_calls(&self) -> u64 {
        self.host_calls
    }

    /// Starts a new host-call count, time budget and inference quota (a warm instance's
    /// next call).
    pub(crate) fn reset_host_calls(&mut self) {
        self.host_calls = 0;
        self.deadline = deadline_after(self.plugin.limits.timeout_ms);
        self.inference_calls = 0;
        self.inference_tokens = 0;
    }

    /// The `limit-exceeded` a host call returns when the call's time is up.
    fn out_of_time(&self, waiting_for: &str) -> GuestError {
        GuestError::LimitExceeded(format!(
            "plugin {}'s time limit of {} ms per call was reached while waiting for {waiting_for}; \
             the host call was stopped (raise it with `llmos plugin limits {} --timeout-ms N`)",
            self.plugin.name, self.plugin.limits.timeout_ms, self.plugin.name
        ))
    }

    /// Runs a store operation off this thread (sled writes fsync) and waits for it no longer
    /// than the call's remaining time.
    async fn store_op<T: Send + 'static>(
        &mut self,
        what: &str,
        op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> wasmtime::Result<Result<T, GuestError>> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err(self.out_of_time(what)));
        }
        let store = self.services.store.clone();
        let task = tokio::task::spawn_blocking(move || op(&store));
        match tokio::time::timeout(left, task).await {
            Err(_) => Ok(Err(self.out_of_time(what))),
            Ok(Err(e)) => Err(wasmtime::Error::msg(format!("{what}: {e}"))),
            Ok(Ok(r)) => r.map(Ok).map_err(fault),
        }
    }

    /// Counts an `inference` call against the plugin's quotas and returns the budget the
    /// model gets: the call's deadline and the tokens left.
    fn inference_budget(&mut self, model: &str) -> Result<Budget, GuestError> {
        let (name, l) = (&self.plugin.name, &self.plugin.limits);
        if self.inference_calls >= l.max_inference_calls {
            return Err(GuestError::LimitExceeded(format!(
                "plugin {name} may make {} inference calls per call (its max_inference_calls \
                 quota); raise it with `llmos plugin limits {name} --max-inference-calls N`",
                l.max_inference_calls
            )));
        }
        let left = l.max_inference_tokens.saturating_sub(self.inference_tokens);
        if left == 0 {
            return Err(GuestError::LimitExceeded(format!(
                "plugin {name} has used its {} inference tokens per call (its \
                 max_inference_tokens quota); raise it with `llmos plugin limits {name} --max-inference-tokens N`",
                l.max_inference_tokens
            )));
        }
        if Instant::now() >= self.deadline {
            return Err(self.out_of_time(&format!("model {model}")));
        }
        self.inference_calls = self.inference_calls.saturating_add(1);
        Ok(Budget {
            deadline: self.deadline,
            max_tokens: usize::try_from(left).unwrap_or(usize::MAX),
        })
    }

    /// Awaits a model's answer until the call's deadline; counts the tokens it cost. Past
    /// the deadline the future is dropped, which tells the model the caller has gone.
    async fn await_inference<T>(
        &mut self,
        model: &str,
        answer: InferenceFuture<T>,
    ) -> Result<T, GuestError> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) | Ok(Err(InferenceError::Expired)) => {
                Err(self.out_of_time(&format!("model {model}")))
            }
            Ok(Err(InferenceError::TokenBudget { tokens, max })) => {
                let name = &self.plugin.name;
                Err(GuestError::LimitExceeded(format!(
                    "plugin {name} may use {} inference tokens per call (its max_inference_tokens \
                     quota, {max} left); this request to model {model} has {tokens}; raise it with \
                     `llmos plugin limits {name} --max-inference-tokens N`",
                    self.plugin.limits.max_inference_tokens
                )))
            }
            Ok(Err(e)) => Err(map_inference(e)),
            Ok(Ok(a)) => {
                self.inference_tokens = self.inference_tokens.saturating_add(a.tokens as u64);
                Ok(a.value)
            }
        }
    }

    fn count(&mut self) -> wasmtime::Result<()> {
        self.host_calls = self.host_calls.saturating_add(1);
        if self.host_calls > self.plugin.limits.max_host_calls {
            return Err(LimitTrap {
                kind: LimitKind::HostCalls,
                detail: format!(
                    "{} host calls allowed per call",
                    self.plugin.limits.max_host_calls
                ),
            }
            .into());
        }
        Ok(())
    }

    /// Counts the call and checks `cap`; `Ok(Err(denied))` when missing.
    fn check(&mut self, cap: Capability) -> wasmtime::Result<Result<(), GuestError>> {
        self.count()?;
        if self.plugin.effective.allows(&cap) {
            return Ok(Ok(()));
        }
        let name = cap.to_string();
        self.services
            .audit
            .denied(&self.plugin.name, &name, &self.plugin.refusal(&cap));
        Ok(Err(GuestError::Denied(name)))
    }

    fn kv_key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(
            self.plugin
                .name
                .len()
                .saturating_add(1)
                .saturating_add(key.len()),
        );
        k.extend_from_slice(self.plugin.name.as_bytes());
        k.push(0);
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn backend(&self) -> Result<Arc<dyn InferenceBackend>, GuestError> {
        self.services.inference.clone().ok_or_else(|| {
            GuestError::Unavailable("no models are loaded in this llmos process".into())
        })
    }
}

/// `ms` from now; a budget too large for the clock ends now rather than wrapping.
fn deadline_after(ms: u64) -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_millis(ms)).unwrap_or(now)
}

/// Host faults (store I/O) trap; they are not the guest's to handle.
fn fault(e: impl std::error::Error + Send + Sync + 'static) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

fn map_inference(e: InferenceError) -> GuestError {
    match e {
        InferenceError::UnknownModel(m) => GuestError::NotFound(format!("model {m}")),
        InferenceError::InvalidInput(m) => GuestError::InvalidInput(m),
        InferenceError::Busy => GuestError::Unavailable("model busy, try again".into()),
        InferenceError::Failed(m) => GuestError::Unavailable(m),
        e @ (InferenceError::Expired | InferenceError::TokenBudget { .. }) => {
            GuestError::LimitExceeded(e.to_string())
        }
    }
}

macro_rules! try_guest {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

impl types::Host for State {}

/// A guest's log text as one safe line: at most [`MAX_LOG`] bytes of it, with control
/// characters (newlines, carriage returns, ANSI escapes, C1 controls) and bidirectional
/// overrides escaped, so a plugin can neither forge log lines nor restyle a terminal.
pub(crate) fn escape_log(message: &str) -> String {
    let cut = message.floor_char_boundary(MAX_LOG);
    let kept = message.get(..cut).unwrap_or_default();
    let mut out = String::with_capacity(kept.len());
    for c in kept.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&c.escape_unicode().to_string());
            }
            c => out.push(c),
        }
    }
    if cut < message.len() {
        out.push_str(&format!(" [truncated: {} bytes]", message.len()));
    }
    out
}

impl log::Host for State {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.count()?;
        // The message was copied out of the guest by the bindings (bounded by the plugin's
        // memory limit); only an escaped, truncated line goes to the log.
        let message = escape_log(&message);
        let plugin = self.plugin.name.as_str();
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl config::Host for State {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.count()?;
        Ok(self.plugin.config.get(&key).cloned())
    }

    async fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        self.count()?;
        Ok(self
            .plugin
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

fn check_key(key: &str) -> Result<(), GuestError> {
    if key.is_empty() || key.len() > MAX_KV_KEY {
        return Err(GuestError::InvalidInput(format!(
            "kv keys are 1 to {MAX_KV_KEY} bytes; got {}",
            key.len()
        )));
    }
    Ok(())
}

/// The `limit-exceeded` for a kv write past a quota (none when within).
fn kv_quota(plugin: &PluginCtx, u: &crate::data::store::Usage) -> Result<(), GuestError> {
    let (name, l) = (&plugin.name, &plugin.limits);
    if u.keys > l.kv_max_keys {
        return Err(GuestError::LimitExceeded(format!(
            "plugin {name}'s kv quota of {} keys is full (kv_max_keys); delete keys, or raise it \
             with `llmos plugin limits {name} --kv-max-keys N`",
            l.kv_max_keys
        )));
    }
    if u.bytes > l.kv_max_bytes {
        return Err(GuestError::LimitExceeded(format!(
            "plugin {name}'s kv quota of {} bytes would be exceeded ({} bytes with this write; \
             kv_max_bytes); delete keys, or raise it with `llmos plugin limits {name} --kv-max-bytes N`",
            l.kv_max_bytes, u.bytes
        )));
    }
    Ok(())
}

impl kv::Host for State {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, GuestError>> {
        try_guest!(self.check(Capability::Kv)?);
        try_guest!(check_key(&key));
        let k = self.kv_key(&key);
        self.store_op("kv.get", move |s| s.get(Tree::PluginKv, &k))
            .await
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        try_guest!(self.check(Capability::Kv)?);
        try_guest!(check_key(&key));
        let max = self
            .plugin
            .limits
            .kv_max_value_bytes
            .min(MAX_KV_VALUE as u64);
        if value.len() as u64 > max {
            return Ok(Err(GuestError::LimitExceeded(format!(
                "plugin {}'s kv values are at most {max} bytes (kv_max_value_bytes); got {}",
                self.plugin.name,
                value.len()
            ))));
        }
        let (k, ns) = (self.kv_key(&key), self.kv_key(""));
        let plugin = self.plugin.clone();
        let r = self
            .store_op("kv.set", move |s| {
                s.put_metered(Tree::PluginKv, &ns, &k, &value, |u| kv_quota(&plugin, u))
            })
            .await?;
        Ok(r.and_then(|quota| quota.map(|_| ())))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), GuestError>> {
        try_guest!(self.check(Capability::Kv)?);
        try_guest!(check_key(&key));
        let (k, ns) = (self.kv_key(&key), self.kv_key(""));
        let r = self
            .store_op("kv.delete", move |s| {
                s.remove_metered(Tree::PluginKv, &ns, &k)
            })
            .await?;
        Ok(r.map(|_| ()))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, GuestError>> {
        try_guest!(self.check(Capability::Kv)?);
        let base = self.kv_key("").len();
        let p = self.kv_key(&prefix);
        let keys = try_guest!(
            self.store_op("kv.list-keys", move |s| s.keys(Tree::PluginKv, &p, 1000))
                .await?
        );
        Ok(Ok(keys
            .into_iter()
            .map(|k| String::from_utf8_lossy(k.get(base..).unwrap_or_default()).into_owned())
            .collect()))
    }
}

impl inference::Host for State {
    async fn embed(
        &mut self,
        model: String,
        texts: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Vec<f32>>, GuestError>> {
        try_guest!(self.check(Capability::Inference(model.clone()))?);
        let b = try_guest!(self.backend());
        let budget = try_guest!(self.inference_budget(&model));
        let answer = b.embed(&model, texts, budget);
        Ok(self.await_inference(&model, answer).await)
    }

    async fn classify(
        &mut self,
        model: String,
        texts: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Vec<inference::LabelScore>>, GuestError>> {
        try_guest!(self.check(Capability::Inference(model.clone()))?);
        let b = try_guest!(self.backend());
        let budget = try_guest!(self.inference_budget(&model));
        let answer = b.classify(&model, texts, budget);
        let all = try_guest!(self.await_inference(&model, answer).await);
        Ok(Ok(all
            .into_iter()
            .map(|labels| {
                labels
                    .into_iter()
                    .map(|l| inference::LabelScore {
                        label: l.label,
                        score: l.score,
                    })
                    .collect()
            })
            .collect()))
    }

    async fn entities(
        &mut self,
        model: String,
        text: String,
    ) -> wasmtime::Result<Result<Vec<inference::Entity>, GuestError>> {
        try_guest!(self.check(Capability::Inference(model.clone()))?);
        let b = try_guest!(self.backend());
        let budget = try_guest!(self.inference_budget(&model));
        let answer = b.entities(&model, text, budget);
        let es = try_guest!(self.await_inference(&model, answer).await);
        Ok(Ok(es
            .into_iter()
            .map(|e| inference::Entity {
                label: e.label,
                start: u32::try_from(e.start).unwrap_or(u32::MAX),
                end: u32::try_from(e.end).unwrap_or(u32::MAX),
                text: e.text,
                score: e.score,
            })
            .collect()))
    }

    async fn generate(
        &mut self,
        model: String,
        prompt: String,
        max_tokens: u32,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        try_guest!(self.check(Capability::Inference(model.clone()))?);
        let b = try_guest!(self.backend());
        let budget = try_guest!(self.inference_budget(&model));
        let max = usize::try_from(max_tokens).unwrap_or(usize::MAX);
        let answer = b.generate(&model, prompt, max, budget);
        Ok(self.await_inference(&model, answer).await)
    }
}

impl secrets::Host for State {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, GuestError>> {
        try_guest!(self.check(Capability::Secret(name.clone()))?);
        let key = secret_key(&self.plugin.name, &name);
        match self
            .services
            .store
            .get(Tree::PluginSecrets, &key)
            .map_err(fault)?
        {
            Some(v) => Ok(Ok(String::from_utf8_lossy(&v).into_owned())),
            None => Ok(Err(GuestError::NotFound(format!(
                "secret {name} is granted but not set; set it with `llmos plugin secret {} {name}`",
                self.plugin.name
            )))),
        }
    }
}

impl data::Host for State {
    async fn search(
        &mut self,
        collection: String,
        query: String,
        top_k: u32,
    ) -> wasmtime::Result<Result<Vec<data::Hit>, GuestError>> {
        try_guest!(self.check(Capability::Data(collection.clone()))?);
        if let Err(e) = super::data_backend::check_query(&query, top_k) {
            return Ok(Err(map_data(e)));
        }
        let backend = self
            .services
            .data
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(backend) = backend else {
            return Ok(Err(GuestError::Unavailable(
                "this llmos process has no data collections open (data.search works in `llmos serve` and `llmos tools call`)".into(),
            )));
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Err(self.out_of_time("data.search")));
        }
        // The query is embedded by a model (and maybe preprocessors): off this thread, and
        // never waited for past the call's time budget.
        let plugin = self.plugin.name.clone();
        let task = tokio::task::spawn_blocking(move || {
            backend.search(&plugin, &collection, &query, top_k)
        });
        match tokio::time::timeout(left, task).await {
            Err(_) => Ok(Err(self.out_of_time("data.search"))),
            Ok(Err(e)) => Err(wasmtime::Error::msg(format!("data.search: {e}"))),
            Ok(Ok(Err(e))) => Ok(Err(map_data(e))),
            Ok(Ok(Ok(hits))) => Ok(Ok(hits
                .into_iter()
                .map(|h| data::Hit {
                    document: h.document,
                    chunk: h.chunk,
                    text: h.text,
                    score: h.score,
                    metadata_json: Value::Object(h.metadata).to_string(),
                })
                .collect())),
        }
    }
}

fn map_data(e: DataBackendError) -> GuestError {
    match e {
        DataBackendError::NotFound(m) => GuestError::NotFound(m),
        DataBackendError::InvalidInput(m) => GuestError::InvalidInput(m),
        DataBackendError::Unavailable(m) => GuestError::Unavailable(m),
    }
}

/// How much kv data a plugin keeps (a counter kept with the data, no scan).
pub fn kv_usage(store: &Store, plugin: &str) -> Result<crate::data::store::Usage, StoreError> {
    store.usage(Tree::PluginKv, format!("{plugin}\0").as_bytes())
}

/// Removes a plugin's kv data and its usage counter.
pub fn clear_kv(store: &Store, plugin: &str) -> Result<usize, StoreError> {
    store.clear_metered(Tree::PluginKv, format!("{plugin}\0").as_bytes())
}

/// The store key of a plugin's secret.
pub fn secret_key(plugin: &str, name: &str) -> Vec<u8> {
    format!("{plugin}\0{name}").into_bytes()
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// `wasi:http` hooks: the allow-list is checked by name before any lookup, then every resolved
/// address is checked and the connection goes to exactly that address ([`outbound`]).
struct HttpHooks {
    plugin: Arc<PluginCtx>,
    audit: AuditLog,
    timeout: Duration,
    /// Where a traced call's requests are recorded (`None` unless traced).
    trace: Option<Arc<super::trace::HttpCalls>>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl HttpHooks {
    fn deny(&self, detail: &str, cap: &Capability) {
        tracing::warn!(plugin = %self.plugin.name, "{detail}");
        self.audit
            .denied(&self.plugin.name, &cap.to_string(), detail);
    }
}

impl wasmtime_wasi_http::WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        use wasmtime_wasi_http::Error as HttpError;
        let uri = request.uri();
        let scheme = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            HttpScheme::Https
        } else {
            HttpScheme::Http
        };
        let default_port = scheme.default_port();
        let (host, port) = match uri.authority() {
            Some(a) => (a.host().to_string(), a.port_u16().unwrap_or(default_port)),
            None => (String::new(), default_port),
        };
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let cap = Capability::Http {
            scheme: Some(scheme),
            host: bare.clone(),
            port: Some(port),
        };
        let what = format!("{} {uri}", request.method());
        let (at, sink) = (Instant::now(), self.trace.clone());
        if !self.plugin.effective.allows_http(scheme, &host, port) {
            self.deny(&self.plugin.refusal(&cap), &cap);
            super::trace::HttpCalls::record(&sink, at, what, &cap, Err(true));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // Never wait longer than the plugin's own time budget.
        let cap_t = |d: Option<Duration>| Some(d.map_or(self.timeout, |d| d.min(self.timeout)));
        let o = options.unwrap_or_default();
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: cap_t(o.connect_timeout),
            first_byte_timeout: cap_t(o.first_byte_timeout),
            between_bytes_timeout: cap_t(o.between_bytes_timeout),
        };
        let plugin = self.plugin.clone();
        let audit = self.audit.clone();
        let timeout = self.timeout;
        Box::new(async move {
            // Resolve once, check each address, connect to exactly those.
            let addrs = match outbound::resolve(
                &plugin.name,
                &plugin.effective,
                scheme,
                &bare,
                port,
                timeout,
            )
            .await
            {
                outbound::Resolved::Allowed(a) => a,
                outbound::Resolved::NotFound => {
                    super::trace::HttpCalls::record(&sink, at, what, &cap, Err(false));
                    return Err(HttpError::DnsError {
                        rcode: Some("address not available".into()),
                        info_code: None,
                    });
                }
                outbound::Resolved::Refused(detail) => {
                    tracing::warn!(plugin = %plugin.name, "{detail}");
                    audit.denied(&plugin.name, &cap.to_string(), &detail);
                    super::trace::HttpCalls::record(&sink, at, what, &cap, Err(true));
                    return Err(HttpError::DestinationIpProhibited);
                }
            };
            let r = outbound::send(request, addrs, bare, options).await;
            let outcome = match &r {
                Ok((resp, _)) => Ok(resp.status().as_u16()),
                Err(_) => Err(false),
            };
            super::trace::HttpCalls::record(&sink, at, what, &cap, outcome);
            r
        })
    }
}
