//! `POST /v1/completions` and `POST /v1/chat/completions` (OpenAI shapes): one generation
//! per prompt × `n`, answered whole or as server-sent events ending in `data: [DONE]`.
//! A client that disconnects drops the streams, which cancels the sequences in the engine.

mod request;
mod response;
mod structured;
mod tools;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, post};
use crate::api::{ApiJson, AppState, ModelLabel, model};
use crate::core::Model;
use crate::core::generate::{GenerateRequest, GenerateStream};

pub use request::{
    ChatBody, ChatRequest, CompletionBody, CompletionRequest, GenerationParams, Prompt,
};
pub use response::Kind;

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        post("/v1/completions", Access::Model, completions).body::<CompletionBody>(),
        post("/v1/chat/completions", Access::Model, chat).body::<ChatBody>(),
    ]
}

/// OpenAI's default `max_tokens` of completions.
const COMPLETION_DEFAULT_MAX_TOKENS: usize = 16;

async fn completions(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let req = CompletionRequest::from_value(&body)?;
    let m = model(&state, &req.params.model).await?;
    let vocab = vocab_size(&m);
    let prompts = req
        .prompt
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
    answer(&state, &m, &req.params, prompts, Some(max), Kind::Completion).await
}

async fn chat(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let mut req = ChatRequest::from_value(&body)?;
    let m = model(&state, &req.params.model).await?;
    let plan = structured::Plan::from_body(&body, req.params.stream)?;
    let messages = plan.messages(req.messages, m.template_takes_tools());
    let tools = plan.tools.as_ref().map(tools::Tools::template_value);
    let prompt = m.chat_ids_with_tools(&messages, tools.as_ref())?;
    req.params.constraint = plan.constraint(&m)?;
    req.params.shape = plan.shape();
    answer(&state, &m, &req.params, vec![prompt], req.params.max_tokens, Kind::Chat).await
}

fn vocab_size(m: &Model) -> Option<usize> {
    let logits = m.outputs.iter().find(|o| o.name == "logits")?;
    usize::try_from(*logits.shape.last()?).ok()
}

/// Starts prompt × n generations (all submitted before any is read, so they share decode
/// steps) and answers whole or as a stream.
async fn answer(
    state: &AppState,
    m: &Arc<Model>,
    p: &GenerationParams,
    prompts: Vec<Vec<u32>>,
    max_tokens: Option<usize>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let context = m.context_length().unwrap_or(0);
    let mut streams: Vec<GenerateStream> = Vec::new();
    let mut prompt_tokens = 0usize;
    for prompt in prompts {
        prompt_tokens = prompt_tokens.saturating_add(prompt.len());
        let max = max_tokens.unwrap_or_else(|| context.saturating_sub(prompt.len()).max(1));
        for j in 0..p.n {
            let mut sampling = p.sampling;
            sampling.seed = sampling.seed.map(|s| s.wrapping_add(j as u64));
            let request = GenerateRequest {
                prompt: prompt.clone(),
                max_tokens: max,
                sampling,
                stop: p.stop.clone(),
                logprobs: p.logprobs,
                constraint: p.constraint.clone(),
            };
            streams.push(m.generate(request)?);
        }
    }
    let meta = response::Meta::new(kind, m.name(), state.started, prompt_tokens, p.include_usage)
        .with_shape(p.shape.clone());
    let label = Extension(ModelLabel(m.name().to_string()));
    if p.stream {
        return Ok((label, response::sse(meta, streams)).into_response());
    }
    let mut done = Vec::with_capacity(streams.len());
    for s in streams {
        done.push(s.collect().await?);
    }
    Ok((label, Json(meta.whole(&done))).into_response())
}
