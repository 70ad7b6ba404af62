//! Grounded answers (docs/generation.md §6b): the `collection` extension of chat and
//! `POST /v1/collections/{name}/ask`. The last user message is searched in the collection
//! with the data module's search (the collection's embedding model and preprocessors); the
//! top chunks go into the system message as numbered sources `[1]`, `[2]`, …; the answer
//! carries `sources` (every retrieved chunk) and `citations` (the ones the answer cites).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::{ApiJson, AppState, Caller, ModelLabel, model};
use crate::core::generate::ChatMessage;
use crate::data::collections::{Filter, Hit};
use crate::data::ingest::IngestError;
use crate::plugins::embedder::CollectionEmbedder;

/// Chunks retrieved when `top_k` is not given.
pub(crate) const DEFAULT_TOP_K: usize = 4;
/// The most chunks one answer may be grounded on.
pub(crate) const MAX_TOP_K: usize = 32;

/// What the `collection` extension asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Grounding {
    /// The collection.
    pub collection: String,
    /// Chunks to retrieve.
    pub top_k: usize,
    /// Chunks scoring below this are left out.
    pub min_score: Option<f32>,
}

/// `collection` on chat: a name, or `{"name", "top_k"?, "min_score"?}`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the accepted shapes; `Grounding::parse` reads them
pub enum CollectionInput {
    /// The collection's name (4 chunks).
    Name(String),
    /// The collection and how much to retrieve.
    Options {
        /// The collection's name.
        name: String,
        /// Chunks to retrieve, 1-32 (default 4).
        top_k: Option<u64>,
        /// Leave out chunks scoring below this (cosine similarity, -1 to 1).
        min_score: Option<f64>,
    },
}

fn bad(message: String) -> ApiError {
    ApiError::invalid(Some("collection".into()), message)
}

impl Grounding {
    /// Parses the `collection` field of a chat body.
    pub fn parse(v: &Value) -> Result<Self, ApiError> {
        let accepted = "give a collection name or {\"name\", \"top_k\"?, \"min_score\"?}";
        let (name, o) = match v {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => match o.get("name") {
                Some(Value::String(s)) => (s.clone(), Some(o)),
                _ => return Err(bad(format!("`collection` is {v} without a string `name`: {accepted}"))),
            },
            other => return Err(bad(format!("`collection` is {other}: {accepted}"))),
        };
        if name.is_empty() {
            return Err(bad(format!("`collection` names no collection: {accepted}")));
        }
        let mut g = Self { collection: name, top_k: DEFAULT_TOP_K, min_score: None };
        let Some(o) = o else { return Ok(g) };
        if let Some(k) = o.keys().find(|k| !["name", "top_k", "min_score"].contains(&k.as_str())) {
            return Err(bad(format!("unknown field `collection.{k}`; accepted are name, top_k, min_score")));
        }
        g.top_k = top_k(o.get("top_k"), "collection.top_k")?.unwrap_or(DEFAULT_TOP_K);
        g.min_score = min_score(o.get("min_score"), "collection.min_score")?;
        Ok(g)
    }
}

fn top_k(v: Option<&Value>, name: &str) -> Result<Option<usize>, ApiError> {
    match v.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => match v.as_u64().and_then(|k| usize::try_from(k).ok()) {
            Some(k) if (1..=MAX_TOP_K).contains(&k) => Ok(Some(k)),
            _ => Err(ApiError::invalid(Some(name.into()), format!("`{name}` is {v}: give an integer from 1 to {MAX_TOP_K}"))),
        },
    }
}

#[allow(clippy::cast_possible_truncation)] // why: checked to lie in [-1, 1]
fn min_score(v: Option<&Value>, name: &str) -> Result<Option<f32>, ApiError> {
    match v.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (-1.0..=1.0).contains(&x) => Ok(Some(x as f32)),
            _ => Err(ApiError::invalid(Some(name.into()), format!("`{name}` is {v}: give a number from -1 to 1"))),
        },
    }
}

/// The chunks an answer is grounded on, numbered from 1.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// The retrieved chunks, best first.
    pub hits: Vec<Hit>,
    /// The question (its words are not evidence of a citation).
    pub question: String,
}

/// Whether the caller may search `collection`: the same scopes as
/// `POST /v1/collections/{name}/search` (`data:<name>`, `data:*`, or either with `:write`).
pub(crate) fn check_access(
    state: &AppState,
    caller: Option<&Caller>,
    peer: Option<SocketAddr>,
    path: &str,
    collection: &str,
) -> Result<(), ApiError> {
    match caller {
        None => Ok(()), // an open server: no keys
        Some(Caller(key)) => crate::api::access::require_data(state, peer, key, path, collection, false),
    }
}

/// Searches `g.collection` for `question`.
pub(crate) async fn retrieve(
    state: &Arc<AppState>,
    caller: Option<&Caller>,
    g: &Grounding,
    question: &str,
    route: &str,
) -> Result<Sources, ApiError> {
    let colls = state.data.collections.clone();
    let name = g.collection.clone();
    let coll = blocking(move || Ok(colls.require(&name)?)).await?;
    let m = model(state, &coll.model).await?;
    let (st, key, pre, q) = (state.clone(), caller.map(|c| c.0.id.clone()), coll.preprocessors.clone(), question.to_string());
    let route = route.to_string();
    let vector = blocking(move || {
        CollectionEmbedder::new(&st.gateway.host, m, &pre, &route, key)
            .query(&q)
            .map_err(|e| ApiError::from(IngestError::Model(e)))
    })
    .await?;
    let (colls, name, k) = (state.data.collections.clone(), g.collection.clone(), g.top_k);
    let mut hits = blocking(move || Ok(colls.search(&name, &vector, k, &Filter::default())?)).await?;
    if let Some(min) = g.min_score {
        hits.retain(|h| h.score >= min);
    }
    Ok(Sources { hits, question: question.to_string() })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("retrieval task: {e}")))?
}

/// The text of the last user message (what is searched).
pub(crate) fn last_user(messages: &[ChatMessage]) -> Option<&str> {
    messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.as_str())
}

impl Sources {
    /// The instructions and numbered sources given to the model.
    pub(crate) fn prompt(&self) -> String {
        let mut s = String::from(
            "Answer the question using only the sources below. Cite the sources you use by their number in brackets, like [1].",
        );
        if self.hits.is_empty() {
            s.push_str(" No source matched the question: say that the collection has no answer.");
        }
        for (i, h) in self.hits.iter().enumerate() {
            s.push_str(&format!("\n\n[{}] {}", i.saturating_add(1), h.text.trim()));
        }
        s
    }

    /// Puts the sources into the conversation: appended to the first system message, or as
    /// a new system message first (one system message, the shape every chat template takes).
    pub(crate) fn insert_into(&self, messages: &mut Vec<ChatMessage>) {
        let text = self.prompt();
        match messages.first_mut() {
            Some(m) if m.role == "system" => {
                m.content = format!("{}\n\n{text}", m.content.trim_end());
            }
            _ => messages.insert(0, ChatMessage { role: "system".into(), content: text }),
        }
    }

    /// Every retrieved chunk, numbered as in the prompt.
    pub(crate) fn sources_json(&self) -> Value {
        Value::Array(
            self.hits
                .iter()
                .enumerate()
                .map(|(i, h)| json!({"index": i.saturating_add(1), "chunk": h.chunk, "document": h.document, "score": h.score, "text": h.text}))
                .collect(),
        )
    }

    /// The chunks `answer` cites (see [`cited`]).
    pub(crate) fn citations_json(&self, answer: &str) -> Value {
        let texts: Vec<&str> = self.hits.iter().map(|h| h.text.as_str()).collect();
        Value::Array(
            cited(answer, &self.question, &texts)
                .into_iter()
                .filter_map(|i| {
                    let h = self.hits.get(i)?;
                    Some(json!({"index": i.saturating_add(1), "chunk": h.chunk, "document": h.document, "score": h.score}))
                })
                .collect(),
        )
    }

    /// Adds `sources` to a whole answer and `citations` to each of its choices.
    pub(crate) fn add_to(&self, answer: &mut Value, done: &[crate::core::generate::Completion]) {
        if let Some(choices) = answer.get_mut("choices").and_then(Value::as_array_mut) {
            for (c, d) in choices.iter_mut().zip(done) {
                if let Some(o) = c.as_object_mut() {
                    o.insert("citations".into(), self.citations_json(&d.text));
                }
            }
        }
        if let Some(o) = answer.as_object_mut() {
            o.insert("sources".into(), self.sources_json());
        }
    }

    /// `citations` and `sources` of one answer, as fields to add.
    pub(crate) fn fields(&self, answer: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("citations".into(), self.citations_json(answer));
        m.insert("sources".into(), self.sources_json());
        m
    }
}

/// The sources (0-based) an answer cites: those it names as `[n]`; when it names none, the
/// sources that hold a word of the answer (4 characters or more, compared case-insensitively)
/// that the question does not have — the answer took it from there.
pub(crate) fn cited(answer: &str, question: &str, sources: &[&str]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let after = rest.get(open.saturating_add(1)..).unwrap_or_default();
        let Some(close) = after.find(']') else { break };
        for part in after.get(..close).unwrap_or_default().split(',') {
            if let Ok(n) = part.trim().parse::<usize>()
                && (1..=sources.len()).contains(&n)
                && !out.contains(&n.saturating_sub(1))
            {
                out.push(n.saturating_sub(1));
            }
        }
        rest = after.get(close..).unwrap_or_default();
    }
    if !out.is_empty() {
        out.sort_unstable();
        return out;
    }
    let asked = words(question);
    let said: Vec<String> = words(answer).into_iter().filter(|w| !asked.contains(w)).collect();
    (0..sources.len())
        .filter(|&i| {
            let have = words(sources.get(i).copied().unwrap_or_default());
            said.iter().any(|w| have.contains(w))
        })
        .collect()
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .collect()
}

/// `POST /v1/collections/{name}/ask`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The question (searched in the collection, then answered from the chunks found).
    pub question: String,
    /// A generation model with a chat template (default: the one generation model loaded).
    pub model: Option<String>,
    /// Chunks to retrieve, 1-32 (default 4).
    pub top_k: Option<u64>,
    /// Leave out chunks scoring below this (-1 to 1).
    pub min_score: Option<f64>,
    /// Most tokens of the answer (default: the rest of the context).
    pub max_tokens: Option<u64>,
    /// 0-2 (default 0: greedy, so the same question gets the same answer).
    pub temperature: Option<f64>,
    /// Same seed ⇒ same text.
    pub seed: Option<i64>,
    /// Server-sent events (chat chunks; the last one carries `citations` and `sources`).
    pub stream: Option<bool>,
}

/// The generation model of an ask: the one named, else the one loaded.
fn ask_model(state: &AppState, named: Option<&str>) -> Result<String, ApiError> {
    if let Some(n) = named {
        return Ok(n.to_string());
    }
    let loaded: Vec<String> = state
        .core
        .loaded()
        .iter()
        .filter(|m| m.context_length().is_some())
        .map(|m| m.name().to_string())
        .collect();
    match loaded.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(ApiError::invalid(
            Some("model".into()),
            format!(
                "give `model`: a generation model with a chat template (loaded now: {})",
                if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") }
            ),
        )),
    }
}

/// The chat body an ask stands for.
fn ask_body(req: &AskRequest, model: String, name: String) -> Value {
    let mut collection = json!({"name": name});
    if let Some(o) = collection.as_object_mut() {
        o.insert("top_k".into(), json!(req.top_k));
        o.insert("min_score".into(), json!(req.min_score));
    }
    json!({
        "model": model,
        "messages": [{"role": "user", "content": req.question}],
        "collection": collection,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature.unwrap_or(0.0),
        "seed": req.seed,
        "stream": req.stream,
    })
}

pub(crate) async fn ask(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(req): ApiJson<AskRequest>,
) -> Result<Response, ApiError> {
    if req.question.trim().is_empty() {
        return Err(ApiError::invalid(Some("question".into()), "`question` is empty: give the question to answer"));
    }
    let model_name = ask_model(&state, req.model.as_deref())?;
    if let Some(Extension(Caller(key))) = &caller
        && !key.allows_model(&model_name)
    {
        return Err(crate::api::access::refuse(
            &state,
            peer.map(|p| p.0.0),
            key,
            &format!("/v1/collections/{name}/ask: no scope for model {model_name}"),
            format!("key {} lacks the scope models:{model_name} (it has {})", key.id, key.scopes.join(", ")),
        ));
    }
    let body = ask_body(&req, model_name, name);
    let mut chat = super::ChatRequest::from_value(&body)?;
    let m = model(&state, &chat.params.model).await?;
    let caller = caller.map(|c| c.0);
    let route = "/v1/collections/{name}/ask";
    // The route's preprocessors run on the question before retrieval, as chat's do on its
    // user messages (the search and the prompt both see the preprocessed question).
    super::policy::preprocess_messages(&state, m.name(), route, caller.as_ref(), &mut chat.messages).await?;
    let prepared = super::prepare_chat(&state, caller.as_ref(), &m, chat, None, route).await?;
    if prepared.params.stream {
        return super::respond(&state, &m, prepared, super::Kind::Chat).await;
    }
    let (meta, done, hooks) = super::run_whole(&state, &m, prepared, super::Kind::Chat).await?;
    let answer = done.first().map(|c| c.text.clone()).unwrap_or_default();
    let mut v = json!({"answer": answer, "model": m.name(), "usage": meta.usage_of(&done)});
    if let (Some(o), Some(s)) = (v.as_object_mut(), hooks.sources.as_ref()) {
        o.extend(s.fields(&answer));
    }
    let v = hooks.check_whole(v).await?;
    Ok((Extension(ModelLabel(m.name().to_string())), Json(v)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_the_numbers_named_else_the_sources_the_answer_took_words_from() {
        let s = ["The vault code is 7431.", "Cats sleep all day.", "Rust is safe."];
        assert_eq!(cited("It is 7431 [1], see also [3] and [9].", "code?", &s), [0, 2]);
        assert_eq!(cited("See [2, 3].", "", &s), [1, 2]);
        assert_eq!(cited("The code is 7431.", "What is the vault code?", &s), [0]);
        assert!(cited("I do not know.", "What is the vault code?", &s).is_empty());
    }

    #[test]
    fn collection_is_a_name_or_options_and_bad_values_are_named() {
        assert_eq!(Grounding::parse(&json!("docs")).unwrap().top_k, DEFAULT_TOP_K);
        let g = Grounding::parse(&json!({"name": "docs", "top_k": 2, "min_score": 0.1})).unwrap();
        assert_eq!((g.collection.as_str(), g.top_k), ("docs", 2));
        for (v, needle) in [
            (json!(3), "collection name"),
            (json!({"top_k": 2}), "name"),
            (json!({"name": "d", "top_k": 0}), "1 to 32"),
            (json!({"name": "d", "min_score": 3}), "-1 to 1"),
            (json!({"name": "d", "k": 1}), "collection.k"),
        ] {
            let e = Grounding::parse(&v).unwrap_err();
            assert!(e.message.contains(needle), "{v}: {}", e.message);
        }
    }

    #[test]
    fn sources_join_the_system_message_or_come_first() {
        let hit = |t: &str| Hit { score: 0.5, document: "d".into(), chunk: "d:0".into(), text: t.into(), metadata: Map::new() };
        let s = Sources { hits: vec![hit("alpha"), hit("beta")], question: "q".into() };
        let mut m = vec![ChatMessage { role: "user".into(), content: "q".into() }];
        s.insert_into(&mut m);
        assert_eq!(m.len(), 2);
        assert!(m[0].role == "system" && m[0].content.contains("[1] alpha\n\n[2] beta"), "{m:?}");
        let mut m = vec![ChatMessage { role: "system".into(), content: "Be brief.".into() }, ChatMessage { role: "user".into(), content: "q".into() }];
        s.insert_into(&mut m);
        assert!(m.len() == 2 && m[0].content.starts_with("Be brief.\n\n") && m[0].content.contains("[2] beta"));
    }
}
