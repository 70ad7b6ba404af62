//! An opt-in trace of one plugin call, for `llmos plugin test`: every host call (interface
//! function, an argument summary, the outcome, its time), the plugin's log lines, the
//! capabilities used or denied, and what the call spent (wall time, peak linear memory, host
//! calls).
//!
//! The host interfaces are linked through [`Traced`], which forwards each call to the host
//! function in [`super::state`] and, only when the call's [`State`] carries a trace (an
//! `Option<Box<Trace>>`, `None` outside `plugin test`), records it. Off, the cost is one
//! branch per host call.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmtime::component::HasData;

use super::PluginError;
use super::bindings::{config, data, inference, kv, log, secrets, types};
use super::host::{Loaded, Pre, PluginHost, finish};
use super::manifest::World;
use super::registry::PluginRecord;
use super::state::{State, escape_log};
use super::bindings::types::ToolCall;
use super::{Event, Request, RequestContext, RequestVerdict, Response, ResponseVerdict};
use crate::security::Capability;

use types::Error as GuestError;

/// What one traced call recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Trace {
    /// Host calls, in order.
    pub host_calls: Vec<HostCall>,
    /// The plugin's log lines (escaped and cut as the host logs them).
    pub logs: Vec<LogLine>,
    /// Capabilities a host call used successfully.
    pub used: BTreeSet<String>,
    /// Capabilities a host call was denied.
    pub denied: BTreeSet<String>,
    /// wasi:http requests, recorded by the `send_request` hook (merged in by start time).
    #[serde(skip)]
    pub(crate) http: Arc<HttpCalls>,
}

/// The wasi:http requests of a traced call: the hook that sends them has no access to the
/// call's [`State`], so it records here.
#[derive(Debug, Default)]
pub struct HttpCalls(Mutex<Vec<HttpCall>>);

/// One recorded request with the capability it used or was denied.
#[derive(Debug)]
struct HttpCall {
    call: HostCall,
    used: Option<String>,
    denied: Option<String>,
}

impl HttpCalls {
    /// Records a request when `sink` is set: `Ok(status)`, or `Err(denied)`.
    pub(crate) fn record(
        sink: &Option<Arc<HttpCalls>>,
        at: Instant,
        what: String,
        cap: &Capability,
        outcome: Result<u16, bool>,
    ) {
        let Some(sink) = sink else { return };
        let cap = cap.to_string();
        let (text, used, denied) = match outcome {
            Ok(status) => (format!("ok: status {status}"), Some(cap), None),
            Err(true) => (format!("denied({cap})"), None, Some(cap)),
            Err(false) => ("error: the request failed".to_string(), None, None),
        };
        let call = HostCall {
            function: "wasi:http.handle".into(),
            args: what,
            outcome: text,
            micros: u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX),
            at: Some(at),
        };
        sink.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(HttpCall { call, used, denied });
    }
}

impl Trace {
    /// Merges the wasi:http requests into the host calls, in order of start.
    fn merge_http(&mut self) {
        let http = std::mem::take(&mut *self.http.0.lock().unwrap_or_else(|e| e.into_inner()));
        for h in http {
            self.used.extend(h.used);
            self.denied.extend(h.denied);
            self.host_calls.push(h.call);
        }
        self.host_calls.sort_by_key(|c| c.at);
    }
}

/// One host call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostCall {
    /// `interface.function`, e.g. `kv.get`.
    pub function: String,
    /// A summary of the arguments (strings quoted and cut, lists counted).
    pub args: String,
    /// `ok: …`, `denied(cap)`, `error: …` or `trap: …`.
    pub outcome: String,
    /// Time in the host, microseconds.
    pub micros: u64,
    /// When it started (orders wasi:http requests among the others).
    #[serde(skip)]
    pub(crate) at: Option<Instant>,
}

/// One log line of the plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// trace, debug, info, warn or error.
    pub level: String,
    /// The line.
    pub message: String,
}

/// The host interfaces as linked: [`State`] plus the trace hooks.
pub struct Traced<'a>(&'a mut State);

/// The [`HasData`] of the linker: each host call gets a [`Traced`] view of the store's state.
pub struct TracedHost;

impl HasData for TracedHost {
    type Data<'a> = Traced<'a>;
}

/// The linker's getter.
pub fn traced(s: &mut State) -> Traced<'_> {
    Traced(s)
}

/// A string argument for a summary: quoted, cut to 60 characters.
fn quote(s: &str) -> String {
    let cut = s.floor_char_boundary(60);
    let kept = s.get(..cut).unwrap_or_default();
    if cut < s.len() {
        format!("{:?}… ({} bytes)", kept, s.len())
    } else {
        format!("{kept:?}")
    }
}

/// A started host call: when, what, with which capability.
struct Begun {
    at: Instant,
    args: String,
    cap: Option<String>,
}

impl Traced<'_> {
    /// Starts recording a call when tracing is on (`f` is not run otherwise).
    fn begin(&self, f: impl FnOnce() -> (String, Option<String>)) -> Option<Begun> {
        self.0.trace.as_ref()?;
        let (args, cap) = f();
        Some(Begun {
            at: Instant::now(),
            args,
            cap,
        })
    }

    /// Records the outcome of a call begun with [`Self::begin`].
    fn end<T>(
        &mut self,
        b: Option<Begun>,
        function: &str,
        r: &wasmtime::Result<Result<T, GuestError>>,
        ok: impl FnOnce(&T) -> String,
    ) {
        let (Some(b), Some(t)) = (b, self.0.trace.as_mut()) else {
            return;
        };
        let outcome = match r {
            Err(e) => format!("trap: {e:#}"),
            Ok(Err(GuestError::Denied(c))) => {
                t.denied.insert(c.clone());
                format!("denied({c})")
            }
            Ok(Err(e)) => format!("error: {}", quote(&format!("{e:?}"))),
            Ok(Ok(v)) => {
                if let Some(c) = b.cap {
                    t.used.insert(c);
                }
                format!("ok: {}", ok(v))
            }
        };
        t.host_calls.push(HostCall {
            function: function.into(),
            args: b.args,
            outcome,
            micros: u64::try_from(b.at.elapsed().as_micros()).unwrap_or(u64::MAX),
            at: Some(b.at),
        });
    }
}

/// A host call that cannot fail as a value, as a `Result` for [`Traced::end`].
fn infallible<T>(r: wasmtime::Result<T>) -> wasmtime::Result<Result<T, GuestError>> {
    r.map(Ok)
}

fn unwrap_infallible<T>(r: wasmtime::Result<Result<T, GuestError>>) -> wasmtime::Result<T> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(wasmtime::Error::msg(format!("{e:?}"))),
        Err(e) => Err(e),
    }
}

impl types::Host for Traced<'_> {}

fn level_name(l: log::Level) -> &'static str {
    match l {
        log::Level::Trace => "trace",
        log::Level::Debug => "debug",
        log::Level::Info => "info",
        log::Level::Warn => "warn",
        log::Level::Error => "error",
    }
}

impl log::Host for Traced<'_> {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if let Some(t) = self.0.trace.as_mut() {
            t.logs.push(LogLine {
                level: level_name(level).into(),
                message: escape_log(&message),
            });
        }
        let b = self.begin(|| (format!("{} {}", level_name(level), quote(&message)), None));
        let r = infallible(log::Host::log(self.0, level, message).await);
        self.end(b, "log.log", &r, |()| String::new());
        unwrap_infallible(r)
    }
}

impl config::Host for Traced<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let b = self.begin(|| (format!("key={}", quote(&key)), None));
        let r = infallible(config::Host::get(self.0, key).await);
        self.end(b, "config.get", &r, |v| match v {
            Some(v) => quote(v),
            None => "none".into(),
        });
        unwrap_infallible(r)
    }

    async fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        let b = self.begin(|| (String::new(), None));
        let r = infallible(config::Host::get_all(self.0).await);
        self.end(b, "config.get-all", &r, |v| format!("{} values", v.len()));
        unwrap_infallible(r)
    }
}

fn kv_cap() -> Option<String> {
    Some("kv".into())
}

impl kv::Host for Traced<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, GuestError>> {
        let b = self.begin(|| (format!("key={}", quote(&key)), kv_cap()));
        let r = kv::Host::get(self.0, key).await;
        self.end(b, "kv.get", &r, |v| match v {
            Some(v) => format!("{} bytes", v.len()),
            None => "none".into(),
        });
        r
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        let b = self.begin(|| {
            (
                format!("key={} value={} bytes", quote(&key), value.len()),
                kv_cap(),
            )
        });
        let r = kv::Host::set(self.0, key, value).await;
        self.end(b, "kv.set", &r, |()| "stored".into());
        r
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), GuestError>> {
        let b = self.begin(|| (format!("key={}", quote(&key)), kv_cap()));
        let r = kv::Host::delete(self.0, key).await;
        self.end(b, "kv.delete", &r, |()| "deleted".into());
        r
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, GuestError>> {
        let b = self.begin(|| (format!("prefix={}", quote(&prefix)), kv_cap()));
        let r = kv::Host::list_keys(self.0, prefix).await;
        self.end(b, "kv.list-keys", &r, |v| format!("{} keys", v.len()));
        r
    }
}

/// Arguments of an inference call: the model and the inputs' count and size.
fn model_args(model: &str, texts: &[String]) -> (String, Option<String>) {
    let bytes: usize = texts.iter().map(String::len).sum();
    (
        format!("model={model} texts={} ({bytes} bytes)", texts.len()),
        Some(format!("inference:{model}")),
    )
}

impl inference::Host for Traced<'_> {
    async fn embed(
        &mut self,
        model: String,
        texts: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Vec<f32>>, GuestError>> {
        let b = self.begin(|| model_args(&model, &texts));
        let r = inference::Host::embed(self.0, model, texts).await;
        self.end(b, "inference.embed", &r, |v| {
            format!(
                "{} vectors of {}",
                v.len(),
                v.first().map_or(0, std::vec::Vec::len)
            )
        });
        r
    }

    async fn classify(
        &mut self,
        model: String,
        texts: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Vec<inference::LabelScore>>, GuestError>> {
        let b = self.begin(|| model_args(&model, &texts));
        let r = inference::Host::classify(self.0, model, texts).await;
        self.end(b, "inference.classify", &r, |v| {
            let top: Vec<String> = v
                .iter()
                .filter_map(|s| s.first().map(|l| format!("{} {:.3}", l.label, l.score)))
                .collect();
            top.join(", ")
        });
        r
    }

    async fn entities(
        &mut self,
        model: String,
        text: String,
    ) -> wasmtime::Result<Result<Vec<inference::Entity>, GuestError>> {
        let b = self.begin(|| model_args(&model, std::slice::from_ref(&text)));
        let r = inference::Host::entities(self.0, model, text).await;
        self.end(b, "inference.entities", &r, |v| {
            let labels: Vec<&str> = v.iter().map(|e| e.label.as_str()).collect();
            format!("{} entities [{}]", v.len(), labels.join(" "))
        });
        r
    }

    async fn generate(
        &mut self,
        model: String,
        prompt: String,
        max_tokens: u32,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        let b = self.begin(|| {
            let (a, c) = model_args(&model, std::slice::from_ref(&prompt));
            (format!("{a} max_tokens={max_tokens}"), c)
        });
        let r = inference::Host::generate(self.0, model, prompt, max_tokens).await;
        self.end(b, "inference.generate", &r, |v| quote(v));
        r
    }
}

impl secrets::Host for Traced<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, GuestError>> {
        let b = self.begin(|| (format!("name={}", quote(&name)), Some(format!("secret:{name}"))));
        let r = secrets::Host::get(self.0, name).await;
        // Never the value: only its length.
        self.end(b, "secrets.get", &r, |v| format!("{} bytes (value not shown)", v.len()));
        r
    }
}

impl data::Host for Traced<'_> {
    async fn search(
        &mut self,
        collection: String,
        query: String,
        top_k: u32,
    ) -> wasmtime::Result<Result<Vec<data::Hit>, GuestError>> {
        let b = self.begin(|| {
            (
                format!("collection={} query={} top_k={top_k}", quote(&collection), quote(&query)),
                Some(format!("data:{collection}")),
            )
        });
        let r = data::Host::search(self.0, collection, query, top_k).await;
        self.end(b, "data.search", &r, |v| format!("{} hits", v.len()));
        r
    }
}

/// The call `llmos plugin test` makes, for the plugin's world.
#[derive(Debug, Clone)]
pub enum TestCall {
    /// A preprocessor's `preprocess`.
    Preprocess(Request),
    /// A policy's `check-request`.
    CheckRequest(Request),
    /// A policy's `check-response`.
    CheckResponse(Response),
    /// An integration's `on-event`.
    OnEvent(Event),
    /// A tool's `invoke`.
    Invoke(ToolCall),
}

impl TestCall {
    /// The exported function.
    pub fn function(&self) -> &'static str {
        match self {
            Self::Preprocess(_) => "preprocess",
            Self::CheckRequest(_) => "check-request",
            Self::CheckResponse(_) => "check-response",
            Self::OnEvent(_) => "on-event",
            Self::Invoke(_) => "invoke",
        }
    }
}

/// What `llmos plugin test` (or `POST /admin/plugins/{name}/test`) asks for; the call
/// follows from the plugin's world.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TestInput {
    /// The request's inputs (preprocessor, policy) or the event's (integration).
    pub inputs: Vec<String>,
    /// The request's model (default `plugin-test`).
    pub model: Option<String>,
    /// Policies: call `check-response` with this response body (JSON).
    pub output_json: Option<String>,
    /// Integrations: the synthetic event's kind (default `inference.finished`).
    pub event: Option<String>,
}

impl TestInput {
    /// The call for a plugin of `world`, or what is wrong with the input.
    pub fn call(&self, world: World, request_id: String) -> Result<TestCall, String> {
        if self.inputs.is_empty() {
            return Err("give at least one input".into());
        }
        let context = RequestContext {
            request_id,
            key_id: None,
            model: self.model.clone().unwrap_or_else(|| "plugin-test".into()),
            task: "embed".into(),
            route: "plugin-test".into(),
        };
        let inputs = self.inputs.clone();
        if self.output_json.is_some() && world != World::Policy {
            return Err(format!(
                "output_json is for policies (check-response); this plugin is a {world}"
            ));
        }
        Ok(match world {
            World::Preprocessor => TestCall::Preprocess(Request { context, inputs }),
            World::Policy => match &self.output_json {
                Some(o) => {
                    serde_json::from_str::<Value>(o)
                        .map_err(|e| format!("output_json {o:?} is not JSON: {e}"))?;
                    TestCall::CheckResponse(Response {
                        context,
                        inputs,
                        output_json: o.clone(),
                    })
                }
                None => TestCall::CheckRequest(Request { context, inputs }),
            },
            World::Tool => {
                // `--input TOOL [--input '{"arg": …}']`.
                let mut it = inputs.into_iter();
                let name = it.next().unwrap_or_default();
                let arguments_json = it.next().unwrap_or_else(|| "{}".into());
                match serde_json::from_str::<Value>(&arguments_json) {
                    Ok(Value::Object(_)) => {}
                    _ => {
                        return Err(format!(
                            "a tool plugin is tested with the tool's name as the first input and its arguments (a JSON object) as the second; {arguments_json:?} is not a JSON object"
                        ));
                    }
                }
                TestCall::Invoke(ToolCall {
                    context: RequestContext {
                        task: "tool".into(),
                        model: String::new(),
                        ..context
                    },
                    name,
                    arguments_json,
                })
            }
            World::Integration => TestCall::OnEvent(Event {
                kind: self
                    .event
                    .clone()
                    .unwrap_or_else(|| "inference.finished".into()),
                context,
                timestamp_ms: crate::security::audit::now_ms(),
                payload_json: json!({
                    "input_count": inputs.len(),
                    "inputs": inputs,
                    "output_bytes": 0,
                })
                .to_string(),
            }),
        })
    }
}

/// What one traced call did and spent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestReport {
    /// The plugin.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// Its world.
    pub world: World,
    /// The function called.
    pub function: String,
    /// What it returned (JSON), when it succeeded.
    pub result: Option<Value>,
    /// The error, when it failed (a trap, a limit, a guest error).
    pub error: Option<String>,
    /// Host calls, logs, capabilities.
    pub trace: Trace,
    /// Time, memory and host calls.
    pub spent: Spent,
}

/// What a call spent, next to its limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spent {
    /// Wall time of the call (instantiation included), milliseconds.
    pub wall_ms: f64,
    /// The call's time budget, milliseconds.
    pub timeout_ms: u64,
    /// Peak linear memory of the store (all memories), bytes.
    pub peak_memory_bytes: u64,
    /// Its limit, bytes.
    pub memory_limit_bytes: u64,
    /// Host calls made.
    pub host_calls: u64,
    /// Their limit.
    pub max_host_calls: u64,
    /// Fuel consumed: `None`, since llmos bounds time by epoch interruption, not fuel.
    pub fuel: Option<u64>,
}

fn request_verdict(v: &RequestVerdict) -> Value {
    match v {
        RequestVerdict::Allow => json!({"allow": null}),
        RequestVerdict::Deny(r) => json!({"deny": r}),
        RequestVerdict::Modify(i) => json!({"modify": i}),
    }
}

fn response_verdict(v: &ResponseVerdict) -> Value {
    match v {
        ResponseVerdict::Allow => json!({"allow": null}),
        ResponseVerdict::Deny(r) => json!({"deny": r}),
        ResponseVerdict::Modify(o) => json!({"modify": o}),
    }
}

impl PluginHost {
    /// Runs one call of an installed plugin with a trace, on this thread, in a fresh store
    /// with the plugin's limits and grants (as in production). A failed call is reported
    /// in [`TestReport::error`]; only a plugin that cannot be loaded is an `Err`.
    pub fn test_call(&self, name: &str, call: &TestCall) -> Result<TestReport, PluginError> {
        let record = PluginRecord::get(self.store(), name)?;
        let l = self.loaded(name)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PluginError::Engine(format!("plugin executor: {e}")))?;
        let (result, trace, spent) = rt.block_on(self.traced_call(&l, call));
        Ok(TestReport {
            plugin: record.manifest.name,
            version: record.manifest.version,
            world: record.manifest.world,
            function: call.function().into(),
            error: result.as_ref().err().map(ToString::to_string),
            result: result.ok(),
            trace,
            spent,
        })
    }

    async fn traced_call(
        &self,
        l: &Loaded,
        call: &TestCall,
    ) -> (Result<Value, PluginError>, Trace, Spent) {
        let inner = &self.inner;
        let mut store = inner.new_store(l);
        store.data_mut().start_trace();
        let start = Instant::now();
        let ctx = &l.ctx;
        let result = match (&l.pre, call) {
            (Pre::Preprocessor(pre), TestCall::Preprocess(req)) => {
                let c = async {
                    let i = pre.instantiate_async(&mut store).await?;
                    i.call_preprocess(&mut store, req).await
                };
                inner
                    .limited(l, c)
                    .await
                    .and_then(|o| finish(ctx, o, |v| v.iter().map(String::len).sum()))
                    .map(|v| json!(v))
            }
            (Pre::Policy(pre), TestCall::CheckRequest(req)) => {
                let c = async {
                    let i = pre.instantiate_async(&mut store).await?;
                    i.call_check_request(&mut store, req).await
                };
                inner
                    .limited(l, c)
                    .await
                    .and_then(|o| finish(ctx, o, |_| 0))
                    .map(|v| request_verdict(&v))
            }
            (Pre::Policy(pre), TestCall::CheckResponse(resp)) => {
                let c = async {
                    let i = pre.instantiate_async(&mut store).await?;
                    i.call_check_response(&mut store, resp).await
                };
                inner
                    .limited(l, c)
                    .await
                    .and_then(|o| finish(ctx, o, |_| 0))
                    .map(|v| response_verdict(&v))
            }
            (Pre::Integration(pre), TestCall::OnEvent(ev)) => {
                let c = async {
                    let i = pre.instantiate_async(&mut store).await?;
                    i.call_on_event(&mut store, ev).await
                };
                inner
                    .limited(l, c)
                    .await
                    .and_then(|o| finish(ctx, o, |_| 0))
                    .map(|()| json!(null))
            }
            (Pre::Tool(pre), TestCall::Invoke(tc)) => {
                let c = async {
                    let i = pre.instantiate_async(&mut store).await?;
                    i.call_invoke(&mut store, tc).await
                };
                inner
                    .limited(l, c)
                    .await
                    .and_then(|o| finish(ctx, o, String::len))
                    .map(|v| json!(v))
            }
            _ => Err(PluginError::Invalid(format!(
                "plugin {} does not export {}",
                ctx.name,
                call.function()
            ))),
        };
        let wall = start.elapsed();
        let state = store.data_mut();
        let mut trace = state.trace.take().map(|t| *t).unwrap_or_default();
        trace.merge_http();
        let spent = Spent {
            wall_ms: wall.as_secs_f64() * 1000.0,
            timeout_ms: ctx.limits.timeout_ms,
            peak_memory_bytes: u64::try_from(state.limiter.memory_used()).unwrap_or(u64::MAX),
            memory_limit_bytes: ctx.limits.memory_mib.saturating_mul(1 << 20),
            host_calls: state.host_calls(),
            max_host_calls: ctx.limits.max_host_calls,
            fuel: None,
        };
        (result, trace, spent)
    }
}
