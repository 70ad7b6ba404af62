//! Policies on generation (docs/generation.md §6b). The model's pipeline on the route
//! (`[pipelines.<model>]`, `request_policies` / `response_policies`) is asked:
//! - request policies about the prompt text (a chat's conversation rendered with the
//!   model's chat template), once, before anything is generated; a `modify` verdict
//!   replaces the prompt text;
//! - response policies about the output: a whole answer once (its JSON, which a `modify`
//!   verdict replaces); a stream on each choice's accumulated text
//!   (`{"index", "text", "done"}`), each time it has grown by [`STREAM_CHECK_BYTES`] and at
//!   its end. Streamed text is held back until a check has allowed it, so a denied text is
//!   never sent; a deny (or a `modify`, which a stream cannot honour) ends the stream with an
//!   error event and `data: [DONE]`.
//!
//! Policies fail closed: a failing policy plugin fails the request (502, or an error event).

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::{AppState, Caller};
use crate::plugins::gateway::Gateway;
use crate::plugins::pipeline::Chain;
use crate::plugins::{PluginError, Request, RequestContext, RequestVerdict, Response, ResponseVerdict};

/// A stream's text is checked each time it has grown by this many bytes, and at its end.
pub(crate) const STREAM_CHECK_BYTES: usize = 256;

/// The policies of one generation request.
pub(crate) struct Policies {
    gateway: Arc<Gateway>,
    chain: Chain,
    context: RequestContext,
    prompt: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").field("chain", &self.chain).field("context", &self.context).finish()
    }
}

static REQUEST_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn denied(gateway: &Gateway, plugin: &str, stage: &str, reason: &str) -> ApiError {
    gateway.note_denial(plugin);
    ApiError::new(StatusCode::FORBIDDEN, "permission_error", format!("denied by plugin {plugin} ({stage} policy): {reason}"))
        .with_param(Some(plugin.to_string()))
        .with_code("policy_denied")
}

fn failed(e: PluginError) -> ApiError {
    if let PluginError::Busy { .. } = e {
        let mut a = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", e.to_string()).with_code("plugin_queue_full");
        a.retry_after = Some(1);
        return a;
    }
    ApiError::new(StatusCode::BAD_GATEWAY, "server_error", e.to_string()).with_code("plugin_failed")
}

/// Runs the preprocessors of `model`'s chain on `route` over `texts`, in the chain's order
/// (each plugin gets all the texts, as on the task routes); the texts unchanged when the
/// chain has none. A preprocessor that fails, or returns another number of texts, fails the
/// request (502 `plugin_failed`; 429 when its queue is full).
pub(crate) async fn preprocess(state: &AppState, model: &str, route: &str, caller: Option<&Caller>, texts: Vec<String>) -> Result<Vec<String>, ApiError> {
    let chain = state.gateway.chain(model, route);
    if chain.preprocessors.is_empty() || texts.is_empty() {
        return Ok(texts);
    }
    let context = RequestContext {
        request_id: format!("gen-{}", REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        key_id: caller.map(|c| c.0.id.clone()),
        model: model.to_string(),
        task: "generate".into(),
        route: route.to_string(),
    };
    let mut inputs = texts;
    for p in &chain.preprocessors {
        let req = Request { context: context.clone(), inputs: inputs.clone() };
        let out = state.gateway.host.preprocess_async(p, req).await.map_err(failed)?;
        if out.len() != inputs.len() {
            return Err(ApiError::new(StatusCode::BAD_GATEWAY, "server_error", format!("plugin {p}: the preprocessor returned {} texts for {}", out.len(), inputs.len()))
                .with_code("plugin_failed"));
        }
        inputs = out;
    }
    Ok(inputs)
}

/// Runs the chain's preprocessors (see [`preprocess`]) on the text of every user message,
/// in order, before the conversation is templated.
pub(crate) async fn preprocess_messages(
    state: &AppState,
    model: &str,
    route: &str,
    caller: Option<&Caller>,
    messages: &mut [crate::core::generate::ChatMessage],
) -> Result<(), ApiError> {
    let texts: Vec<String> = messages.iter().filter(|m| m.role == "user").map(|m| m.content.clone()).collect();
    let out = preprocess(state, model, route, caller, texts).await?;
    for (m, text) in messages.iter_mut().filter(|m| m.role == "user").zip(out) {
        m.content = text;
    }
    Ok(())
}

impl Policies {
    /// The policies `model` has on `route`; `None` when it has none.
    pub(crate) fn of(state: &AppState, model: &str, route: &str, caller: Option<&Caller>) -> Option<Arc<Self>> {
        let chain = state.gateway.chain(model, route);
        if chain.request_policies.is_empty() && chain.response_policies.is_empty() {
            return None;
        }
        let id = format!("gen-{}", REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let context = RequestContext {
            request_id: id,
            key_id: caller.map(|c| c.0.id.clone()),
            model: model.to_string(),
            task: "generate".into(),
            route: route.to_string(),
        };
        Some(Arc::new(Self { gateway: state.gateway.clone(), chain, context, prompt: std::sync::Mutex::default() }))
    }

    /// Asks the request policies about the prompt texts; `Some` holds the texts a policy
    /// replaced them with (as many as given).
    pub(crate) async fn request(&self, texts: Vec<String>) -> Result<Option<Vec<String>>, ApiError> {
        let mut inputs = texts;
        let mut changed = false;
        for p in &self.chain.request_policies {
            let req = Request { context: self.context.clone(), inputs: inputs.clone() };
            match self.gateway.host.check_request_async(p, req).await.map_err(failed)? {
                RequestVerdict::Allow => {}
                RequestVerdict::Deny(reason) => return Err(denied(&self.gateway, p, "request", &reason)),
                RequestVerdict::Modify(new) if new.len() == inputs.len() => {
                    inputs = new;
                    changed = true;
                }
                RequestVerdict::Modify(new) => {
                    return Err(ApiError::new(StatusCode::BAD_GATEWAY, "server_error", format!("plugin {p}: modified {} prompts into {}", inputs.len(), new.len()))
                        .with_code("plugin_failed"));
                }
            }
        }
        *self.prompt.lock().unwrap_or_else(|e| e.into_inner()) = inputs.clone();
        Ok(changed.then_some(inputs))
    }

    /// Asks the response policies about `output`; returns it, or what a policy replaced it
    /// with (`modify` is refused when `streaming`: sent text cannot be changed).
    pub(crate) async fn response(&self, output: Value, streaming: bool) -> Result<Value, ApiError> {
        let mut output = output;
        let inputs = self.prompt.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for p in &self.chain.response_policies {
            let resp = Response { context: self.context.clone(), inputs: inputs.clone(), output_json: output.to_string() };
            match self.gateway.host.check_response_async(p, resp).await.map_err(failed)? {
                ResponseVerdict::Allow => {}
                ResponseVerdict::Deny(reason) => return Err(denied(&self.gateway, p, "response", &reason)),
                ResponseVerdict::Modify(_) if streaming => {
                    return Err(denied(&self.gateway, p, "response", "it modified a streamed answer, which cannot be changed once sent; ask without `stream` to get the modified answer"));
                }
                ResponseVerdict::Modify(json) => {
                    output = serde_json::from_str(&json).map_err(|e| {
                        ApiError::new(StatusCode::BAD_GATEWAY, "server_error", format!("plugin {p}: modified the response into invalid JSON: {e}"))
                            .with_code("plugin_failed")
                    })?;
                }
            }
        }
        Ok(output)
    }

    /// The request policies on a tool call of the tool loop (task `tool`, the arguments'
    /// JSON text as the one input): `Ok` holds the arguments to use (a `modify` replaces
    /// them), `Err` why the call may not run — a deny, or a failing policy plugin (policies
    /// fail closed); the loop shows it to the model as the tool's answer.
    pub(crate) async fn tool_call(&self, arguments: String) -> Result<String, String> {
        let context = RequestContext { task: "tool".into(), ..self.context.clone() };
        let mut input = arguments;
        for p in &self.chain.request_policies {
            let req = Request { context: context.clone(), inputs: vec![input.clone()] };
            match self.gateway.host.check_request_async(p, req).await {
                Ok(RequestVerdict::Allow) => {}
                Ok(RequestVerdict::Deny(reason)) => {
                    self.gateway.note_denial(p);
                    return Err(format!("denied by plugin {p} (request policy): {reason}"));
                }
                Ok(RequestVerdict::Modify(new)) => match <[String; 1]>::try_from(new) {
                    Ok([one]) => input = one,
                    Err(new) => return Err(format!("plugin {p} modified the call's one input into {}", new.len())),
                },
                Err(e) => return Err(format!("policy plugin {p} failed: {e}")),
            }
        }
        Ok(input)
    }

    /// The response policies on a tool's result (task `tool`; the input is the arguments,
    /// the output the result: as it is when it is JSON, else as a JSON string). `Ok` holds
    /// the result to show the model (a `modify` replaces it), `Err` why it may not be shown.
    pub(crate) async fn tool_result(&self, arguments: &str, result: String) -> Result<String, String> {
        let context = RequestContext { task: "tool".into(), ..self.context.clone() };
        let mut output = match serde_json::from_str::<Value>(&result) {
            Ok(v) => v,
            Err(_) => Value::String(result),
        };
        for p in &self.chain.response_policies {
            let resp = Response { context: context.clone(), inputs: vec![arguments.to_string()], output_json: output.to_string() };
            match self.gateway.host.check_response_async(p, resp).await {
                Ok(ResponseVerdict::Allow) => {}
                Ok(ResponseVerdict::Deny(reason)) => {
                    self.gateway.note_denial(p);
                    return Err(format!("denied by plugin {p} (response policy): {reason}"));
                }
                Ok(ResponseVerdict::Modify(json)) => {
                    output = serde_json::from_str(&json).map_err(|e| format!("plugin {p} modified the result into invalid JSON: {e}"))?;
                }
                Err(e) => return Err(format!("policy plugin {p} failed: {e}")),
            }
        }
        Ok(match output {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    /// Whether response policies are configured (streams then hold text back).
    pub(crate) fn checks_responses(&self) -> bool {
        !self.chain.response_policies.is_empty()
    }
}
