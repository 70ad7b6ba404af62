//! The chat tool loop (docs/tools.md §3): when a request's `tools` name installed llmos
//! tools (`{"type": "llmos_tool", "name": <id>}`) and the model calls one, llmos runs the
//! call and generates again, up to `[tools] max_steps` calls per choice.
//!
//! One step: the conversation so far is rendered with the chat template (tools described as
//! for any function), the answer is decoded (a call under the call grammar), then:
//! - text, or a call of a client function: the answer of the choice (`finish_reason`
//!   `stop`/`length`, or `tool_calls` as OpenAI);
//! - a call of an llmos tool: its arguments are checked against the tool's schema, the
//!   request policies of the model's chain see the call (task `tool`), the catalogue
//!   invokes the tool, the response policies see its result; the assistant's `tool_calls`
//!   message and the `tool` message join the conversation and the next step starts. Any
//!   failure (bad arguments, a denial, a tool error) is the tool message's content
//!   `{"error": {"kind", "message"}}`: the model sees it, the request does not fail;
//! - a call past the step limit: the choice ends with `finish_reason: "length"` and a
//!   message saying so.
//!
//! `tool_choice` applies to the first step; later steps use `auto` (a forced call would
//! otherwise repeat until the limit), unless `tool_choice` is a list (an llmos extension):
//! one choice per step, `auto` past its end. Each of `n` choices runs its own loop
//! (concurrently, so their steps share decode batches). The answer shows each choice's
//! earlier messages as `steps`; streamed, each step leaves as a chunk when it happens.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::request::GenerationParams;
use super::response::Kind;
use super::structured::{Plan, ResponseFormat};
use super::tools::{Tool, Tools};
use super::truncate::Truncate;
use super::{CHAT_ROUTE, ChatRequest, prepare_chat, run_whole};
use crate::api::error::ApiError;
use crate::api::{AppState, Caller, ModelLabel};
use crate::core::Model;
use crate::core::generate::{ChatMessage, FinishReason};
use crate::plugins::tools::{ToolCallCtx, ToolError};
use crate::security::keys::KeyRecord;

/// The tool `id` of an `llmos_tool` entry (`tools[i]`) as the model sees it; a 400 listing
/// the tools there are when there is no such tool, a 403 naming the scope (audited) when the
/// key may not use it.
pub(crate) fn resolve(state: &AppState, key: Option<&KeyRecord>, peer: Option<SocketAddr>, i: usize, id: &str) -> Result<Tool, ApiError> {
    let Some(spec) = state.gateway.tools.get(id) else {
        let known: Vec<String> = state.gateway.tools.list().into_iter().map(|t| t.id).collect();
        let there = if known.is_empty() { "no tools are installed".to_string() } else { format!("the tools are {}", known.join(", ")) };
        return Err(ApiError::invalid(Some("tools".into()), format!("tools[{i}] names the llmos tool {id:?}, which is not installed: {there}"))
            .with_code("tool_not_found"));
    };
    if let Some(key) = key
        && !key.allows_tool(&spec.id)
    {
        let msg = format!(
            "key {} lacks the scope tools:{} (or tools:*) to use the tool {} in tools[{i}]; it has {}",
            key.id,
            spec.id,
            spec.id,
            key.scopes.join(", ")
        );
        return Err(crate::api::access::refuse(state, peer, key, &format!("{CHAT_ROUTE}: no scope tools:{}", spec.id), msg));
    }
    Ok(Tool { name: spec.function_name(), description: Some(spec.description.clone()), parameters: Some(spec.parameters.clone()), order: Default::default(), llmos: Some(spec.id) })
}

/// `llmos_max_steps`: at most the configured `[tools] max_steps`.
pub(crate) fn max_steps(body: &Value, configured: usize, has_llmos: bool) -> Result<usize, ApiError> {
    let Some(v) = body.get("llmos_max_steps").filter(|v| !v.is_null()) else {
        return Ok(configured);
    };
    let bad = |m: String| ApiError::invalid(Some("llmos_max_steps".into()), m);
    if !has_llmos {
        return Err(bad("`llmos_max_steps` needs an {\"type\": \"llmos_tool\"} entry in `tools`".into()));
    }
    match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
        Some(n) if (1..=configured).contains(&n) => Ok(n),
        _ => Err(bad(format!("`llmos_max_steps` is {v}: give an integer from 1 to {configured} (the server's [tools] max_steps)"))),
    }
}

/// What every choice's loop shares.
struct Cx {
    state: Arc<AppState>,
    caller: Option<Caller>,
    m: Arc<Model>,
    params: GenerationParams,
    messages: Vec<ChatMessage>,
    truncate: Truncate,
    tools: Tools,
    max_steps: usize,
    /// `chatcmpl-…`.
    id: String,
    created: u64,
}

/// One choice's end: its final message, `finish_reason`, log-probabilities, the messages
/// before it, and the tokens of every step.
#[derive(Debug)]
struct Outcome {
    message: Value,
    finish: Value,
    logprobs: Value,
    steps: Vec<Value>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// A tool's failure as the tool message's content.
pub(crate) fn error_content(kind: &str, message: &str) -> String {
    json!({"error": {"kind": kind, "message": message}}).to_string()
}

fn tool_error_kind(e: &ToolError) -> &'static str {
    match e {
        ToolError::NotFound(_) => "not_found",
        ToolError::Denied(_) => "denied",
        ToolError::InvalidArguments(_) => "invalid_arguments",
        ToolError::LimitExceeded(_) => "limit_exceeded",
        ToolError::Unavailable(_) => "unavailable",
        ToolError::Failed(_) => "failed",
    }
}

/// The two messages one executed call adds, as the answer shows them (OpenAI's shapes:
/// the assistant's `tool_calls`, then the `tool` message answering it).
pub(crate) fn step_messages(call_id: &str, name: &str, arguments: &str, content: &str) -> [Value; 2] {
    [
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ]}),
        json!({"role": "tool", "tool_call_id": call_id, "name": name, "content": content}),
    ]
}

/// The assistant message of a step's calls (`tool_calls`, in order): `(id, name, arguments)`.
fn assistant_message<'a>(calls: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Value {
    let calls: Vec<Value> = calls.map(|(id, name, arguments)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})).collect();
    json!({"role": "assistant", "content": null, "tool_calls": calls})
}

/// A step's calls as the model's conversation holds them: the calls as the JSON the model
/// wrote (one object, or an array of several), then one `tool` message per call, in order.
/// `(name, arguments, result)`.
pub(crate) fn conversation_calls(calls: &[(String, String, String)]) -> Vec<ChatMessage> {
    let written: Vec<String> = calls
        .iter()
        .map(|(name, arguments, _)| {
            let args: Value = serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.clone()));
            format!("{{\"name\": {}, \"arguments\": {args}}}", Value::String(name.clone()))
        })
        .collect();
    let content = if written.len() == 1 { written.join("") } else { format!("[{}]", written.join(", ")) };
    let mut out = vec![ChatMessage { role: "assistant".into(), content }];
    out.extend(calls.iter().map(|(_, _, result)| ChatMessage { role: "tool".into(), content: result.clone() }));
    out
}

fn internal(message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
}

/// Runs the chat with its tool loop, answered whole or streamed.
pub(crate) async fn chat(state: Arc<AppState>, caller: Option<Caller>, m: Arc<Model>, req: ChatRequest, tools: Tools, max_steps: usize) -> Result<Response, ApiError> {
    let ChatRequest { params, messages, grounding: _, truncate } = req;
    let mut rng = crate::core::generate::Rng::from_time();
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(state.started, |d| d.as_secs());
    let label = axum::Extension(ModelLabel(m.name().to_string()));
    let cx = Arc::new(Cx { state, caller, m, params, messages, truncate, tools, max_steps, id: format!("chatcmpl-{:016x}", rng.next_u64()), created });
    if cx.params.stream {
        let (tx, rx) = mpsc::channel::<String>(64);
        tokio::spawn(stream(Arc::clone(&cx), tx));
        let body = Body::from_stream(Events(rx));
        return Ok((label, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response());
    }
    let outcomes = run_choices(&cx, None).await?;
    let (mut prompt, mut completion) = (0u64, 0u64);
    let mut choices = Vec::with_capacity(outcomes.len());
    let mut hooks = None;
    for (index, (o, h)) in outcomes.into_iter().enumerate() {
        prompt = prompt.saturating_add(o.prompt_tokens);
        completion = completion.saturating_add(o.completion_tokens);
        choices.push(json!({"index": index, "message": o.message, "logprobs": o.logprobs, "finish_reason": o.finish, "steps": o.steps}));
        hooks = Some(h);
    }
    let v = json!({"id": cx.id, "object": "chat.completion", "created": cx.created, "model": cx.m.name(), "choices": choices,
                   "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)}});
    let v = match hooks {
        Some(h) => h.check_whole(v).await?,
        None => v,
    };
    Ok((label, Json(v)).into_response())
}

/// The tasks of a request's loops: aborted when the request goes away (a client that
/// disconnects, a timeout), so no loop runs on for nobody.
struct Tasks<T>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for Tasks<T> {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Every choice's loop, concurrently; each result with the hooks of its last step.
async fn run_choices(cx: &Arc<Cx>, tx: Option<&mpsc::Sender<String>>) -> Result<Vec<(Outcome, super::response::Hooks)>, ApiError> {
    let mut tasks = Tasks(Vec::with_capacity(cx.params.n));
    for index in 0..cx.params.n {
        let (cx, tx) = (Arc::clone(cx), tx.cloned());
        tasks.0.push(tokio::spawn(async move { run_choice(&cx, index, tx.as_ref()).await }));
    }
    let mut out = Vec::with_capacity(tasks.0.len());
    for h in &mut tasks.0 {
        out.push(h.await.map_err(|e| internal(format!("a tool loop failed: {e}")))??);
    }
    Ok(out)
}

/// A chunk of a streamed answer.
fn chunk(cx: &Cx, choice: Value) -> String {
    let mut v = json!({"id": cx.id, "object": "chat.completion.chunk", "created": cx.created, "model": cx.m.name(), "choices": [choice]});
    if cx.params.include_usage
        && let Some(o) = v.as_object_mut()
    {
        o.insert("usage".into(), Value::Null);
    }
    format!("data: {v}\n\n")
}

async fn stream(cx: Arc<Cx>, tx: mpsc::Sender<String>) {
    for i in 0..cx.params.n {
        let first = json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
        if tx.send(chunk(&cx, first)).await.is_err() {
            return;
        }
    }
    let run = tokio::select! {
        r = run_choices(&cx, Some(&tx)) => r,
        () = tx.closed() => return, // the client went away: dropping the loops' tasks aborts them
    };
    match run {
        Ok(outcomes) => {
            if cx.params.include_usage {
                let (p, c) = outcomes.iter().fold((0u64, 0u64), |(p, c), (o, _)| (p.saturating_add(o.prompt_tokens), c.saturating_add(o.completion_tokens)));
                let v = json!({"id": cx.id, "object": "chat.completion.chunk", "created": cx.created, "model": cx.m.name(), "choices": [],
                               "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p.saturating_add(c)}});
                let _ = tx.send(format!("data: {v}\n\n")).await;
            }
        }
        Err(e) => {
            let _ = tx.send(format!("data: {}\n\n", e.body())).await;
        }
    }
    let _ = tx.send("data: [DONE]\n\n".to_string()).await;
}

/// The body of a streamed answer.
struct Events(mpsc::Receiver<String>);

impl futures_core::Stream for Events {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(|s| Ok(Bytes::from(s))))
    }
}

async fn send(tx: Option<&mpsc::Sender<String>>, text: String) -> Result<(), ApiError> {
    match tx {
        Some(tx) => tx.send(text).await.map_err(|_| internal("the client went away".into())),
        None => Ok(()),
    }
}

/// One choice's loop.
async fn run_choice(cx: &Cx, index: usize, tx: Option<&mpsc::Sender<String>>) -> Result<(Outcome, super::response::Hooks), ApiError> {
    let mut conversation = cx.messages.clone();
    let mut steps: Vec<Value> = Vec::new();
    let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
    let mut calls = 0usize;
    loop {
        let tools = cx.tools.for_step(calls);
        let plan = Plan { format: ResponseFormat::Text, tools: Some(tools.clone()) };
        let mut params = cx.params.clone();
        params.n = 1;
        params.stream = false;
        params.sampling.seed = params.sampling.seed.map(|s| s.wrapping_add(index as u64));
        let req = ChatRequest { params, messages: conversation.clone(), grounding: None, truncate: cx.truncate };
        let prepared = prepare_chat(&cx.state, cx.caller.as_ref(), &cx.m, req, Some(&plan), CHAT_ROUTE).await?;
        let (meta, done, hooks) = run_whole(&cx.state, &cx.m, prepared, Kind::Chat).await?;
        let whole = meta.whole(&done);
        let usage = |k: &str| whole.get("usage").and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
        prompt_tokens = prompt_tokens.saturating_add(usage("prompt_tokens"));
        completion_tokens = completion_tokens.saturating_add(usage("completion_tokens"));
        let c = done.into_iter().next().ok_or_else(|| internal("the engine gave no answer".into()))?;
        let called = if c.finish_reason == Some(FinishReason::Stop) { tools.calls_of(&c.text) } else { None };
        // llmos runs a step's calls when every one of them is an llmos tool; a step that calls
        // a client function ends the choice with all its calls (`finish_reason: "tool_calls"`).
        let llmos: Option<Vec<(String, String, String)>> = called.as_ref().and_then(|list| {
            list.iter()
                .map(|(name, arguments)| tools.named(name).and_then(|t| t.llmos.clone()).map(|id| (name.clone(), arguments.clone(), id)))
                .collect()
        });
        if let Some(list) = llmos.filter(|l| !l.is_empty()) {
            if calls.saturating_add(list.len()) > cx.max_steps {
                let names: Vec<&str> = list.iter().map(|(n, _, _)| n.as_str()).collect();
                let note = format!(
                    "llmos stopped the tool loop: the model asked to call {} after {calls} tool calls, past the most this request allows ([tools] max_steps or llmos_max_steps)",
                    names.join(", ")
                );
                let message = json!({"role": "assistant", "content": note});
                send(tx, chunk(cx, json!({"index": index, "delta": {"content": note}, "logprobs": null, "finish_reason": null}))).await?;
                send(tx, chunk(cx, json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": "length"}))).await?;
                return Ok((Outcome { message, finish: json!("length"), logprobs: Value::Null, steps, prompt_tokens, completion_tokens }, hooks));
            }
            let mut ids = Vec::with_capacity(list.len());
            for _ in &list {
                calls = calls.saturating_add(1);
                ids.push(format!("call_{}_{index}_{calls}", cx.id.trim_start_matches("chatcmpl-")));
            }
            let assistant = assistant_message(ids.iter().zip(&list).map(|(id, (name, arguments, _))| (id.as_str(), name.as_str(), arguments.as_str())));
            send(tx, chunk(cx, json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": null, "steps": [assistant]}))).await?;
            steps.push(assistant);
            // The calls run in order; each answer is one `tool` message.
            let mut results = Vec::with_capacity(list.len());
            for (call_id, (name, arguments, id)) in ids.iter().zip(&list) {
                let content = invoke(cx, id, arguments, hooks.policy.as_deref()).await;
                let [_, tool] = step_messages(call_id, name, arguments, &content);
                send(tx, chunk(cx, json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": null, "steps": [tool]}))).await?;
                steps.push(tool);
                results.push((name.clone(), arguments.clone(), content));
            }
            conversation.extend(conversation_calls(&results));
            continue;
        }
        let choice = whole.get("choices").and_then(|c| c.get(0)).cloned().unwrap_or(Value::Null);
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        let logprobs = choice.get("logprobs").cloned().unwrap_or(Value::Null);
        if tx.is_some() {
            if let Some(p) = hooks.policy.as_deref().filter(|p| p.checks_responses()) {
                p.response(json!({"index": index, "text": c.text, "done": true}), true).await?;
            }
            let delta = match message.get("tool_calls").and_then(Value::as_array) {
                Some(calls) => {
                    let calls: Vec<Value> = calls.iter().cloned().enumerate().map(|(k, mut c)| {
                        if let Some(o) = c.as_object_mut() {
                            o.insert("index".into(), json!(k));
                        }
                        c
                    }).collect();
                    json!({"tool_calls": calls})
                }
                None => json!({"content": message.get("content").cloned().unwrap_or(Value::Null)}),
            };
            send(tx, chunk(cx, json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null}))).await?;
            send(tx, chunk(cx, json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": finish}))).await?;
        }
        return Ok((Outcome { message, finish, logprobs, steps, prompt_tokens, completion_tokens }, hooks));
    }
}

/// Runs one call of llmos tool `id`: the tool message's content (its result, or the error).
async fn invoke(cx: &Cx, id: &str, arguments: &str, policy: Option<&super::policy::Policies>) -> String {
    let Some(spec) = cx.state.gateway.tools.get(id) else {
        return error_content("not_found", &format!("the tool {id} is no longer installed"));
    };
    let checked = serde_json::from_str::<Value>(arguments)
        .map_err(|e| format!("the arguments are not JSON: {e}"))
        .and_then(|v| crate::plugins::tools::validate_arguments(&spec.parameters, &v).map(|()| v));
    if let Err(e) = checked {
        return error_content("invalid_arguments", &e);
    }
    let arguments = match policy {
        Some(p) => match p.tool_call(arguments.to_string()).await {
            Ok(a) => a,
            Err(e) => return error_content("denied", &e),
        },
        None => arguments.to_string(),
    };
    let value = match serde_json::from_str::<Value>(&arguments) {
        Ok(v) => v,
        Err(e) => return error_content("invalid_arguments", &format!("a policy rewrote the arguments into text that is not JSON: {e}")),
    };
    let ctx = ToolCallCtx {
        request_id: cx.id.clone(),
        key_id: cx.caller.as_ref().map(|c| c.0.id.clone()),
        model: cx.m.name().to_string(),
        route: CHAT_ROUTE.to_string(),
    };
    let result = match cx.state.gateway.tools.invoke(&spec.id, value, ctx).await {
        Ok(r) => r,
        Err(e) => return error_content(tool_error_kind(&e), &e.to_string()),
    };
    match policy {
        Some(p) => p.tool_result(&arguments, result).await.unwrap_or_else(|e| error_content("denied", &e)),
        None => result,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_step_shows_openai_messages_and_feeds_the_model_its_own_call() {
        let [a, t] = step_messages("call_1", "calculator", r#"{"expression":"2+2"}"#, "4");
        assert_eq!(
            a,
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\":\"2+2\"}"}}]})
        );
        assert_eq!(t, json!({"role": "tool", "tool_call_id": "call_1", "name": "calculator", "content": "4"}));
        let one = |n: &str, a: &str, r: &str| (n.to_string(), a.to_string(), r.to_string());
        let m = conversation_calls(&[one("calculator", r#"{"expression":"2+2"}"#, "4")]);
        let [a, t] = [&m[0], &m[1]];
        assert_eq!((a.role.as_str(), a.content.as_str()), ("assistant", r#"{"name": "calculator", "arguments": {"expression":"2+2"}}"#));
        assert_eq!((t.role.as_str(), t.content.as_str()), ("tool", "4"));
        // Several calls: one array as the model writes them, then one tool message each.
        let m = conversation_calls(&[one("a", "{}", "1"), one("b", r#"{"x":1}"#, "2")]);
        let got: Vec<(&str, &str)> = m.iter().map(|c| (c.role.as_str(), c.content.as_str())).collect();
        assert_eq!(got, [("assistant", r#"[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x":1}}]"#), ("tool", "1"), ("tool", "2")]);
        let v = assistant_message([("c1", "a", "{}"), ("c2", "b", "{}")].into_iter());
        assert_eq!(v["tool_calls"][1]["id"], "c2");
        let e: Value = serde_json::from_str(&error_content("denied", "no grant")).unwrap();
        assert_eq!(e, json!({"error": {"kind": "denied", "message": "no grant"}}));
    }

    #[test]
    fn tool_choice_forces_the_first_step_or_each_listed_step() {
        use super::super::tools::{Choice, Tools};
        let tool = |n: &str| Tool { name: n.into(), description: None, parameters: None, order: Default::default(), llmos: Some(n.into()) };
        let t = Tools { list: vec![tool("a"), tool("b")], choice: Choice::Named("a".into()), later: vec![], parallel: true };
        assert_eq!(t.for_step(0).choice, Choice::Named("a".into()));
        assert_eq!(t.for_step(1).choice, Choice::Auto);
        let t = Tools { later: vec![Choice::Named("b".into()), Choice::None], ..t };
        let seq: Vec<Choice> = (0..4).map(|k| t.for_step(k).choice).collect();
        assert_eq!(seq, [Choice::Named("a".into()), Choice::Named("b".into()), Choice::None, Choice::Auto]);
        let none = Tools { choice: Choice::None, later: vec![], ..t };
        assert_eq!(none.for_step(3).choice, Choice::None);
    }

    #[test]
    fn llmos_max_steps_is_at_most_the_configured_limit() {
        assert_eq!(max_steps(&json!({}), 8, true).unwrap(), 8);
        assert_eq!(max_steps(&json!({"llmos_max_steps": 2}), 8, true).unwrap(), 2);
        for bad in [json!(0), json!(9), json!("2"), json!(1.5)] {
            let e = max_steps(&json!({"llmos_max_steps": bad}), 8, true).unwrap_err();
            assert!(e.body().to_string().contains("from 1 to 8"), "{}", e.body());
        }
        assert!(max_steps(&json!({"llmos_max_steps": 2}), 8, false).unwrap_err().body().to_string().contains("llmos_tool"));
    }
}
