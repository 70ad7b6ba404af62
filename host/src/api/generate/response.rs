//! The answers: whole JSON objects, or server-sent events (one chunk per token that adds
//! text, a last chunk per choice with its `finish_reason`, optionally a usage chunk, then
//! `data: [DONE]`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::grounded::Sources;
use super::policy::{Policies, STREAM_CHECK_BYTES};
use crate::api::error::ApiError;
use crate::core::generate::{Completion, FinishReason, GenEvent, GenerateStream, TokenLogprob};

/// Which route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/completions`.
    Completion,
    /// `/v1/chat/completions`.
    Chat,
}

/// What a chat answer shows of the generated text.
#[derive(Debug, Clone, Default)]
pub enum Shape {
    /// The text as it is.
    #[default]
    Text,
    /// The text's Markdown as sanitised HTML (whole answers only).
    Html,
    /// A tool call when the text is one (`tool_calls`, `finish_reason: "tool_calls"`).
    Tools(super::tools::Tools),
}

/// What every chunk of one answer repeats.
pub(crate) struct Meta {
    kind: Kind,
    shape: Shape,
    id: String,
    model: String,
    created: u64,
    prompt_tokens: usize,
    include_usage: bool,
}

impl Meta {
    pub(crate) fn new(kind: Kind, model: &str, started: u64, prompt_tokens: usize, include_usage: bool) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(started, |d| d.as_secs());
        let mut rng = crate::core::generate::Rng::from_time();
        let prefix = match kind {
            Kind::Completion => "cmpl",
            Kind::Chat => "chatcmpl",
        };
        let id = format!("{prefix}-{:016x}", rng.next_u64());
        Self { kind, shape: Shape::Text, id, model: model.to_string(), created: now, prompt_tokens, include_usage }
    }

    /// The same answer shown as `shape` (chat).
    pub(crate) fn with_shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    /// The tool calls of choice `index` as OpenAI shows them; `None` when the text is not
    /// a call nor an array of calls.
    fn calls(&self, text: &str, index: usize) -> Option<Vec<Value>> {
        let Shape::Tools(t) = &self.shape else { return None };
        let calls = t.calls_of(text)?;
        let base = format!("call_{}_{index}", self.id.trim_start_matches("chatcmpl-"));
        let call = |k: usize, (name, arguments): (String, String)| {
            let id = if k == 0 { base.clone() } else { format!("{base}_{k}") };
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
        };
        Some(calls.into_iter().enumerate().map(|(k, c)| call(k, c)).collect())
    }

    /// A chat answer's `message` and `finish_reason`.
    fn message(&self, text: &str, index: usize, finish: Option<&'static str>) -> (Value, Option<&'static str>) {
        match (&self.shape, self.calls(text, index)) {
            (_, Some(calls)) if finish == Some("stop") => {
                (json!({"role": "assistant", "content": null, "tool_calls": calls}), Some("tool_calls"))
            }
            (Shape::Html, _) => (json!({"role": "assistant", "content": crate::api::html::markdown_to_html(text)}), finish),
            _ => (json!({"role": "assistant", "content": text}), finish),
        }
    }

    /// The usage of whole answers.
    pub(crate) fn usage_of(&self, done: &[Completion]) -> Value {
        self.usage(done.iter().map(|c| c.usage.completion_tokens).fold(0usize, usize::saturating_add))
    }

    fn usage(&self, completion: usize) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens.saturating_add(completion),
        })
    }

    /// The whole answer.
    pub(crate) fn whole(&self, done: &[Completion]) -> Value {
        let choices: Vec<Value> = done
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let finish = c.finish_reason.map(|f| f.as_str());
                let tokens: Vec<Tok<'_>> = c.tokens.iter().filter_map(|(t, lp, top)| lp.as_ref().map(|lp| (t.as_str(), lp, top.as_slice()))).collect();
                let with_lp = c.tokens.iter().any(|t| t.1.is_some());
                let logprobs = if with_lp {
                    self.logprobs(&tokens, 0)
                } else {
                    Value::Null
                };
                match self.kind {
                    Kind::Completion => json!({"index": index, "text": c.text, "logprobs": logprobs, "finish_reason": finish}),
                    Kind::Chat => {
                        let (message, finish) = self.message(&c.text, index, finish);
                        json!({"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish})
                    }
                }
            })
            .collect();
        let completion = done.iter().map(|c| c.usage.completion_tokens).fold(0usize, usize::saturating_add);
        let object = match self.kind {
            Kind::Completion => "text_completion",
            Kind::Chat => "chat.completion",
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model,
               "choices": choices, "usage": self.usage(completion)})
    }

    /// Log-probabilities in the route's shape; `offset` is the text offset of the first token.
    fn logprobs(&self, tokens: &[Tok<'_>], offset: usize) -> Value {
        match self.kind {
            Kind::Completion => {
                let mut at = offset;
                let mut offsets = Vec::with_capacity(tokens.len());
                for (text, _, _) in tokens {
                    offsets.push(at);
                    at = at.saturating_add(text.len());
                }
                json!({
                    "tokens": tokens.iter().map(|t| &t.1.token).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.1.logprob).collect::<Vec<_>>(),
                    "top_logprobs": tokens.iter().map(|t| t.2.iter().map(|a| (a.token.clone(), json!(a.logprob))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            }
            Kind::Chat => {
                let one = |a: &TokenLogprob| json!({"token": a.token, "logprob": a.logprob, "bytes": a.token.as_bytes()});
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut v = one(t.1);
                        if let Some(o) = v.as_object_mut() {
                            o.insert("top_logprobs".into(), Value::Array(t.2.iter().map(one).collect()));
                        }
                        v
                    })
                    .collect();
                json!({"content": content})
            }
        }
    }

    fn chunk(&self, index: usize, text: Option<&str>, logprobs: Value, finish: Option<&str>) -> String {
        let choice = match self.kind {
            Kind::Completion => json!({"index": index, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}),
            Kind::Chat => {
                let delta = match text {
                    Some(t) => json!({"content": t}),
                    None if finish.is_none() => json!({"role": "assistant", "content": ""}),
                    None => json!({}),
                };
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
        };
        self.event(json!([choice]), Value::Null)
    }

    /// The last chunk of a choice; a grounded answer's carries the choice's `citations` and
    /// the answer's `sources`.
    fn finish_chunk(&self, index: usize, finish: &str, text: &str, sources: Option<&Sources>) -> String {
        let Some(s) = sources else {
            return self.chunk(index, None, Value::Null, Some(finish));
        };
        let mut choice = match self.kind {
            Kind::Completion => json!({"index": index, "text": "", "logprobs": null, "finish_reason": finish}),
            Kind::Chat => json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": finish}),
        };
        if let Some(o) = choice.as_object_mut() {
            o.insert("citations".into(), s.citations_json(text));
        }
        let mut v = self.event_value(json!([choice]), Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.insert("sources".into(), s.sources_json());
        }
        format!("data: {v}\n\n")
    }

    fn event(&self, choices: Value, usage: Value) -> String {
        format!("data: {}\n\n", self.event_value(choices, usage))
    }

    fn event_value(&self, choices: Value, usage: Value) -> Value {
        let object = match self.kind {
            Kind::Completion => "text_completion",
            Kind::Chat => "chat.completion.chunk",
        };
        let mut v = json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices});
        if self.include_usage
            && let Some(o) = v.as_object_mut()
        {
            o.insert("usage".into(), usage);
        }
        v
    }
}

type Tok<'a> = (&'a str, &'a TokenLogprob, &'a [TokenLogprob]);

/// The body of a streamed answer: what the pump task sends, as it comes.
struct Events(mpsc::Receiver<String>);

impl futures_core::Stream for Events {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(|s| Ok(Bytes::from(s))))
    }
}

/// A streamed answer; its pump stops (and the generations are cancelled) when the client
/// goes away.
pub(crate) fn sse(meta: Meta, streams: Vec<GenerateStream>, hooks: Hooks) -> Response {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(pump(meta, streams, tx, hooks));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(Events(rx)),
    )
        .into_response()
}

/// The next event of any stream still open, with the stream's index.
async fn next_event(slots: &mut [Option<GenerateStream>]) -> Option<(usize, Result<GenEvent, crate::core::engine::TaskError>)> {
    std::future::poll_fn(|cx| {
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            match futures_core::Stream::poll_next(Pin::new(s), cx) {
                Poll::Ready(Some(ev)) => return Poll::Ready(Some((i, ev))),
                Poll::Ready(None) => *slot = None,
                Poll::Pending => {}
            }
        }
        if slots.iter().all(Option::is_none) { Poll::Ready(None) } else { Poll::Pending }
    })
    .await
}

/// Per choice of a stream: its text so far, the length a policy last allowed, and the
/// events held back until a policy check allows them.
#[derive(Default)]
struct Choice {
    text: String,
    checked: usize,
    held: Vec<String>,
}

/// What runs around a generation: the grounding sources and the policies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hooks {
    /// The chunks a grounded answer rests on.
    pub(crate) sources: Option<Arc<Sources>>,
    /// The route's policies.
    pub(crate) policy: Option<Arc<Policies>>,
}

impl Hooks {
    /// A whole answer after the response policies (as they left it).
    pub(crate) async fn check_whole(&self, v: Value) -> Result<Value, ApiError> {
        match &self.policy {
            Some(p) if p.checks_responses() => p.response(v, false).await,
            _ => Ok(v),
        }
    }
}

/// Events of choice `c` that may be sent now: all of them without response policies; with
/// them, once the text has grown by [`STREAM_CHECK_BYTES`] since the last check (or at the
/// end) and the policies allow it.
async fn release(policy: Option<&Policies>, index: usize, c: &mut Choice, outs: Vec<String>, end: bool) -> Result<Vec<String>, ApiError> {
    let Some(p) = policy else { return Ok(outs) };
    c.held.extend(outs);
    if !end && c.text.len().saturating_sub(c.checked) < STREAM_CHECK_BYTES {
        return Ok(Vec::new());
    }
    c.checked = c.text.len();
    p.response(json!({"index": index, "text": c.text, "done": end}), true).await?;
    Ok(std::mem::take(&mut c.held))
}

async fn pump(meta: Meta, streams: Vec<GenerateStream>, tx: mpsc::Sender<String>, hooks: Hooks) {
    let n = streams.len();
    let mut slots: Vec<Option<GenerateStream>> = streams.into_iter().map(Some).collect();
    let mut offsets = vec![0usize; n];
    let mut choices: Vec<Choice> = (0..n).map(|_| Choice::default()).collect();
    let policy = hooks.policy.as_deref().filter(|p| p.checks_responses());
    let mut completion = 0usize;
    let mut held = Holds(vec![matches!(meta.shape, Shape::Tools(_)).then(String::new); n]);
    if meta.kind == Kind::Chat {
        for i in 0..n {
            if tx.send(meta.chunk(i, None, Value::Null, None)).await.is_err() {
                return;
            }
        }
    }
    loop {
        let next = tokio::select! {
            n = next_event(&mut slots) => n,
            () = tx.closed() => return, // the client went away: dropping the streams cancels
        };
        let Some((i, ev)) = next else { break };
        let Some(c) = choices.get_mut(i) else { continue };
        if let Ok(GenEvent::Token { text, .. }) = &ev {
            c.text.push_str(text);
        }
        // With tools, a choice that may be a call is held back (`Holds`); what it lets go
        // comes first, then the event itself if it is still to be sent.
        let (mut outs, ev, finish) = held.hold(&meta, i, ev);
        let mut end = false;
        if let Some(ev) = ev {
            let out = match ev {
                Ok(GenEvent::Token { text, logprob, top_logprobs, .. }) => {
                    let lp = match &logprob {
                        Some(lp) => meta.logprobs(&[(text.as_str(), lp, top_logprobs.as_slice())], offsets.get(i).copied().unwrap_or(0)),
                        None if text.is_empty() => continue,
                        None => Value::Null,
                    };
                    if let Some(o) = offsets.get_mut(i) {
                        *o = o.saturating_add(text.len());
                    }
                    meta.chunk(i, Some(&text), lp, None)
                }
                Ok(GenEvent::Done { finish_reason, usage }) => {
                    completion = completion.saturating_add(usage.completion_tokens);
                    end = true;
                    let finish = finish.unwrap_or(finish_reason.as_str());
                    meta.finish_chunk(i, finish, &c.text, hooks.sources.as_deref())
                }
                Err(e) => {
                    let body = ApiError::from(e).body();
                    let _ = tx.send(format!("data: {body}\n\n")).await;
                    return;
                }
            };
            outs.push(out);
        }
        if outs.is_empty() {
            continue;
        }
        match release(policy, i, c, outs, end).await {
            Ok(ready) => {
                for out in ready {
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                // A policy denied (or failed): end the stream; dropping the streams cancels.
                let _ = tx.send(format!("data: {}\n\n", e.body())).await;
                let _ = tx.send("data: [DONE]\n\n".to_string()).await;
                return;
            }
        }
    }
    if meta.include_usage {
        let _ = tx.send(meta.event(json!([]), meta.usage(completion))).await;
    }
    let _ = tx.send("data: [DONE]\n\n".to_string()).await;
}

/// With tools, a streamed choice is held back while it may be a call (empty so far, or
/// starting with `{` or `[`): a call leaves whole as `delta.tool_calls` at its end; text that is
/// not a call leaves as soon as that is clear.
struct Holds(Vec<Option<String>>);

/// What to do with an event of a held choice: chunks to send first, then the event (if
/// still to be handled) and the `finish_reason` to show for it.
type Hold = (Vec<String>, Option<Result<GenEvent, crate::core::engine::TaskError>>, Option<&'static str>);

impl Holds {
    fn hold(&mut self, meta: &Meta, i: usize, ev: Result<GenEvent, crate::core::engine::TaskError>) -> Hold {
        let Some(Some(buf)) = self.0.get_mut(i) else { return (Vec::new(), Some(ev), None) };
        match &ev {
            Ok(GenEvent::Token { text, .. }) => {
                buf.push_str(text);
                let start = buf.trim_start();
                if start.is_empty() || start.starts_with('{') || start.starts_with('[') {
                    return (Vec::new(), None, None);
                }
                let text = std::mem::take(buf);
                self.release(i);
                (vec![meta.chunk(i, Some(&text), Value::Null, None)], None, None)
            }
            Ok(GenEvent::Done { finish_reason, .. }) => {
                let text = std::mem::take(buf);
                self.release(i);
                match meta.calls(&text, i) {
                    Some(mut calls) if *finish_reason == FinishReason::Stop => {
                        for (k, call) in calls.iter_mut().enumerate() {
                            if let Some(o) = call.as_object_mut() {
                                o.insert("index".into(), json!(k));
                            }
                        }
                        let delta = json!({"tool_calls": calls});
                        let chunk = json!({"index": i, "delta": delta, "logprobs": null, "finish_reason": null});
                        (vec![meta.event(json!([chunk]), Value::Null)], Some(ev), Some("tool_calls"))
                    }
                    _ if text.is_empty() => (Vec::new(), Some(ev), None),
                    _ => (vec![meta.chunk(i, Some(&text), Value::Null, None)], Some(ev), None),
                }
            }
            Err(_) => (Vec::new(), Some(ev), None),
        }
    }

    fn release(&mut self, i: usize) {
        if let Some(slot) = self.0.get_mut(i) {
            *slot = None;
        }
    }
}
