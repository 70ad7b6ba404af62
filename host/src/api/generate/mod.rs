//! `POST /v1/completions` and `POST /v1/chat/completions` (OpenAI shapes): one generation
//! per prompt × `n`, answered whole or as server-sent events ending in `data: [DONE]`.
//! A client that disconnects drops the streams, which cancels the sequences in the engine.

mod grounded;
mod policy;
mod request;
mod response;
mod structured;
mod tool_loop;
mod tools;
mod truncate;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, post};
use crate::api::{ApiJson, AppState, Caller, ModelLabel, model};
use crate::core::Model;
use crate::core::generate::tenant::{LimitError, Tenant};
use crate::core::generate::{Completion, GenerateRequest, GenerateStream};
use policy::Policies;
use response::Hooks;

pub use request::{
    ChatBody, ChatRequest, CompletionBody, CompletionRequest, GenerationParams, Prompt,
};
pub use grounded::{AskRequest, CollectionInput, Grounding};
pub use truncate::Truncate;
pub use response::Kind;

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        post("/v1/completions", Access::Model, completions).body::<CompletionBody>(),
        post("/v1/chat/completions", Access::Model, chat).body::<ChatBody>(),
        post("/v1/collections/{name}/ask", Access::Data { write: false }, grounded::ask).body::<AskRequest>(),
    ]
}

/// OpenAI's default `max_tokens` of completions.
const COMPLETION_DEFAULT_MAX_TOKENS: usize = 16;

async fn completions(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let mut req = CompletionRequest::from_value(&body)?;
    let m = model(&state, &req.params.model).await?;
    let vocab = vocab_size(&m);
    let caller = caller.map(|c| c.0);
    req.prompt = completion_preprocess(&state, m.name(), caller.as_ref(), req.prompt).await?;
    let policy = Policies::of(&state, m.name(), "/v1/completions", caller.as_ref());
    let prompt = match &policy {
        Some(p) => completion_policy(p, req.prompt).await?,
        None => req.prompt,
    };
    let prompts = prompt
        .iter()
        .map(|p| match p {
            Prompt::Text(t) => m.prompt_ids(t).map_err(ApiError::from),
            Prompt::Ids(ids) => match ids.iter().find(|&&id| vocab.is_some_and(|v| id as usize >= v)) {
                Some(id) => Err(ApiError::invalid(
                    Some("prompt".into()),
                    format!("token id {id} is not in the vocabulary of {} ({} tokens)", m.name(), vocab.unwrap_or(0)),
                )),
                None => Ok(ids.clone()),
            },
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max = req.params.max_tokens.unwrap_or(COMPLETION_DEFAULT_MAX_TOKENS);
    let tenant = tenant_of(caller.as_ref());
    let prepared = Prepared { params: req.params, prompts, max_tokens: Some(max), hooks: Hooks { sources: None, policy }, tenant };
    respond(&state, &m, prepared, Kind::Completion).await
}

/// The chain's preprocessors run on completion prompts as texts (token-id prompts are
/// refused when there are any).
async fn completion_preprocess(state: &AppState, model: &str, caller: Option<&Caller>, prompt: Vec<Prompt>) -> Result<Vec<Prompt>, ApiError> {
    if state.gateway.chain(model, "/v1/completions").preprocessors.is_empty() {
        return Ok(prompt);
    }
    let texts = prompt_texts(prompt, "preprocessors")?;
    let texts = policy::preprocess(state, model, "/v1/completions", caller, texts).await?;
    Ok(texts.into_iter().map(Prompt::Text).collect())
}

/// Request policies see completion prompts as texts (token-id prompts are refused).
async fn completion_policy(p: &Policies, prompt: Vec<Prompt>) -> Result<Vec<Prompt>, ApiError> {
    let texts = prompt_texts(prompt, "policies")?;
    let texts = match p.request(texts.clone()).await? {
        Some(new) => new,
        None => texts,
    };
    Ok(texts.into_iter().map(Prompt::Text).collect())
}

/// The completion prompts as texts for the route's `plugins` (preprocessors or policies,
/// which read text); token-id prompts are refused naming them.
fn prompt_texts(prompt: Vec<Prompt>, plugins: &str) -> Result<Vec<String>, ApiError> {
    prompt
        .into_iter()
        .map(|p| match p {
            Prompt::Text(t) => Ok(t),
            Prompt::Ids(_) => Err(ApiError::invalid(
                Some("prompt".into()),
                format!("this model has {plugins} on /v1/completions, which read text: send the prompt as text, not token ids"),
            )),
        })
        .collect()
}

/// A chat body and the JSON text it was parsed from (a json_schema's declared property
/// order is read from the text: `Value` sorts keys).
struct ChatJson {
    value: Value,
    raw: Option<axum::body::Bytes>,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for ChatJson {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, _state: &S) -> Result<Self, Self::Rejection> {
        // Parsed already by `auth` (with keys), which keeps the text too.
        if let Some(p) = req.extensions().get::<crate::api::ParsedBody>() {
            let raw = req.extensions().get::<crate::api::RawBody>().map(|r| r.0.clone());
            return Ok(Self { value: Value::clone(&p.0), raw });
        }
        let limit = req.extensions().get::<crate::api::BodyLimit>().map_or(0, |l| l.0);
        let raw = crate::api::read_body(req.into_body(), limit).await?;
        let value = crate::api::parse_body(&raw)?;
        Ok(Self { value, raw: Some(raw) })
    }
}

async fn chat(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ChatJson { value: body, raw }: ChatJson,
) -> Result<Response, ApiError> {
    let mut req = ChatRequest::from_value(&body)?;
    let caller = caller.map(|c| c.0);
    let peer = peer.map(|p| p.0.0);
    let key = caller.as_ref().map(|c| &c.0);
    let resolve = |i: usize, id: &str| tool_loop::resolve(&state, key, peer, i, id);
    let plan = structured::Plan::from_body(&body, raw.as_deref(), req.params.stream, &resolve)?;
    if let Some(g) = &req.grounding {
        grounded::check_access(&state, caller.as_ref(), peer, CHAT_ROUTE, &g.collection)?;
    }
    let has_llmos = plan.tools.as_ref().is_some_and(tools::Tools::has_llmos);
    let max_steps = tool_loop::max_steps(&body, state.core.config().tools.max_steps(), has_llmos)?;
    let m = model(&state, &req.params.model).await?;
    // Preprocessors run once on the user's messages, before any templating (and before a
    // tool loop's steps, which then see the preprocessed conversation).
    policy::preprocess_messages(&state, m.name(), CHAT_ROUTE, caller.as_ref(), &mut req.messages).await?;
    if let Some(t) = plan.tools.as_ref().filter(|t| t.has_llmos()) {
        if req.grounding.is_some() {
            return Err(ApiError::invalid(
                Some("collection".into()),
                "`collection` cannot be combined with {\"type\": \"llmos_tool\"} tools yet: search the collection with the collection-search tool instead",
            ));
        }
        return tool_loop::chat(Arc::clone(&state), caller, m, req, t.clone(), max_steps).await;
    }
    let prepared = prepare_chat(&state, caller.as_ref(), &m, req, Some(&plan), CHAT_ROUTE).await?;
    respond(&state, &m, prepared, Kind::Chat).await
}

const CHAT_ROUTE: &str = "/v1/chat/completions";

/// A generation ready to start: prompts, and what runs around it.
pub(crate) struct Prepared {
    /// The request's parameters.
    pub(crate) params: GenerationParams,
    prompts: Vec<Vec<u32>>,
    max_tokens: Option<usize>,
    hooks: Hooks,
    /// Who it runs for (its key's tenant), for the scheduler and the tenant's limits.
    tenant: Tenant,
}

/// The tenant of a request: its key's (docs/generation.md, "Scheduling"); `local` without a key.
pub(crate) fn tenant_of(caller: Option<&Caller>) -> Tenant {
    caller.map_or_else(Tenant::local, |c| c.0.tenant())
}

/// A chat's prompt: grounded in a collection when asked (retrieval on the last user
/// message), with its tools described and its output constrained (`plan`: response_format,
/// tools), truncated when asked, and seen by the request policies of `route`.
pub(crate) async fn prepare_chat(
    state: &Arc<AppState>,
    caller: Option<&Caller>,
    m: &Arc<Model>,
    req: ChatRequest,
    plan: Option<&structured::Plan>,
    route: &str,
) -> Result<Prepared, ApiError> {
    let ChatRequest { mut params, mut messages, grounding, truncate: how } = req;
    let sources = match &grounding {
        Some(g) => {
            let question = grounded::last_user(&messages).map(str::to_string).ok_or_else(|| {
                ApiError::invalid(Some("messages".into()), "`collection` needs a user message: the last one is searched in the collection")
            })?;
            let s = grounded::retrieve(state, caller, g, &question, route).await?;
            s.insert_into(&mut messages);
            Some(Arc::new(s))
        }
        None => None,
    };
    let mut tools = None;
    if let Some(plan) = plan {
        messages = plan.messages(messages, m.template_takes_tools());
        tools = plan.tools.as_ref().map(tools::Tools::template_value);
        // The model's token table is built on first use (0.35 s for smollm2) and the schema
        // compiled: model work, so off the async executor.
        let (owned, model) = (plan.clone(), Arc::clone(m));
        params.constraint = tokio::task::spawn_blocking(move || owned.constraint(&model))
            .await
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    format!("building the output constraint failed: {e}"),
                )
            })??;
        params.shape = plan.shape();
    }
    let mut prompt = truncate::fit(m, &mut messages, how, params.max_tokens, tools.as_ref())?;
    let policy = Policies::of(state, m.name(), route, caller);
    if let Some(p) = &policy
        && let Some(new) = p.request(vec![m.chat_text_with_tools(&messages, tools.as_ref())?]).await?
    {
        prompt = m.rendered_ids(new.first().map_or("", String::as_str))?;
    }
    Ok(Prepared { max_tokens: params.max_tokens, params, prompts: vec![prompt], hooks: Hooks { sources, policy }, tenant: tenant_of(caller) })
}

/// 429 naming the tenant's limit and its count.
fn limit_err(e: LimitError) -> ApiError {
    let code = match e {
        LimitError::Streams { .. } => "max_streams",
        LimitError::QueuedTokens { .. } => "max_queued_tokens",
    };
    let mut a = ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", e.to_string())
        .with_code(code);
    a.retry_after = Some(1);
    a
}

fn vocab_size(m: &Model) -> Option<usize> {
    let logits = m.outputs.iter().find(|o| o.name == "logits")?;
    usize::try_from(*logits.shape.last()?).ok()
}

/// Starts prompt × n generations (all submitted before any is read, so they share decode
/// steps).
fn start(state: &AppState, m: &Arc<Model>, p: &Prepared, kind: Kind) -> Result<(response::Meta, Vec<GenerateStream>), ApiError> {
    let context = m.context_length().unwrap_or(0);
    let mut streams: Vec<GenerateStream> = Vec::new();
    let mut prompt_tokens = 0usize;
    let max_of = |prompt: &Vec<u32>| p.max_tokens.unwrap_or_else(|| context.saturating_sub(prompt.len()).max(1));
    // Every stream of the request is counted against the tenant's limits at once (or none).
    let sizes: Vec<usize> = p
        .prompts
        .iter()
        .flat_map(|prompt| std::iter::repeat_n(prompt.len().saturating_add(max_of(prompt)), p.params.n))
        .collect();
    let mut tickets = state.core.tenants().admit(&p.tenant, &sizes).map_err(limit_err)?.into_iter();
    for prompt in &p.prompts {
        prompt_tokens = prompt_tokens.saturating_add(prompt.len());
        let max = max_of(prompt);
        for j in 0..p.params.n {
            let mut sampling = p.params.sampling;
            sampling.seed = sampling.seed.map(|s| s.wrapping_add(j as u64));
            let request = GenerateRequest {
                prompt: prompt.clone(),
                max_tokens: max,
                sampling,
                stop: p.params.stop.clone(),
                logprobs: p.params.logprobs,
                constraint: p.params.constraint.clone(),
            };
            streams.push(m.generate_for(request, tickets.next())?);
        }
    }
    let meta = response::Meta::new(kind, m.name(), state.started, prompt_tokens, p.params.include_usage)
        .with_shape(p.params.shape.clone());
    Ok((meta, streams))
}

/// Runs a prepared generation to its end.
pub(crate) async fn run_whole(
    state: &AppState,
    m: &Arc<Model>,
    p: Prepared,
    kind: Kind,
) -> Result<(response::Meta, Vec<Completion>, Hooks), ApiError> {
    let (meta, streams) = start(state, m, &p, kind)?;
    let mut done = Vec::with_capacity(streams.len());
    for s in streams {
        done.push(s.collect().await?);
    }
    Ok((meta, done, p.hooks))
}

/// Answers whole (after the response policies) or as a stream.
pub(crate) async fn respond(state: &AppState, m: &Arc<Model>, p: Prepared, kind: Kind) -> Result<Response, ApiError> {
    let label = Extension(ModelLabel(m.name().to_string()));
    if p.params.stream {
        let (meta, streams) = start(state, m, &p, kind)?;
        return Ok((label, response::sse(meta, streams, p.hooks)).into_response());
    }
    let (meta, done, hooks) = run_whole(state, m, p, kind).await?;
    let mut v = meta.whole(&done);
    if let Some(s) = &hooks.sources {
        s.add_to(&mut v, &done);
    }
    let v = hooks.check_whole(v).await?;
    Ok((label, Json(v)).into_response())
}
