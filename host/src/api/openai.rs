//! OpenAI-compatible routes (`/v1/models`, `/v1/embeddings`) and llmos task routes for what
//! OpenAI has no shape for (`/v1/classify`, `/v1/entities`, `/v1/tokenize`, `/v1/detokenize`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::html;
use crate::api::strict::kind;
use crate::api::routes::{Access, ApiRoute, get, post};
use crate::api::{ApiJson, AppState, Caller, ModelLabel, model, route_text};
use crate::api::zero_shot::{self, ZeroShotLabel};
use crate::core::engine::Model;
use crate::core::manifest::Task;
use crate::core::zero_shot::LabelSpec;
use crate::core::text::{Input, Truncation};
use crate::plugins::gateway::TextTask;

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    vec![
        get("/v1/models", Access::Key, list_models),
        get("/v1/models/{id}", Access::Model, get_model),
        post("/v1/embeddings", Access::Model, embeddings).body::<EmbeddingsRequest>(),
        post("/v1/classify", Access::Model, classify)
            .body::<ClassifyRequest>()
            .html(),
        post("/v1/entities", Access::Model, entities)
            .body::<TextTaskRequest>()
            .html(),
        post("/v1/tokenize", Access::Model, tokenize).body::<TokenizeRequest>(),
        post("/v1/detokenize", Access::Model, detokenize).body::<DetokenizeRequest>(),
    ]
}

fn model_json(state: &AppState, name: &str) -> Option<Value> {
    let m = state.core.store.manifest(name).ok()?;
    let loaded = state.core.get_loaded(name);
    let info = loaded.as_ref().map(|l| l.info());
    Some(json!({
        "id": m.name,
        "object": "model",
        "created": state.started,
        "owned_by": "llmos",
        "task": m.task,
        "description": m.description,
        "license": m.license,
        "attribution": m.attribution,
        "loaded": loaded.is_some(),
        "provider": info.as_ref().map(|i| i.provider.serving),
        "providers_skipped": info.as_ref().map(|i| &i.provider.skipped),
        "dimensions": info.as_ref().and_then(|i| i.dimensions),
        "max_sequence_length": info.as_ref().and_then(|i| i.max_sequence_length),
        "labels": info.as_ref().and_then(|i| i.labels.clone()),
        "context_length": loaded.as_ref().and_then(|l| l.context_length()),
        "metrics": m.metrics,
        "training": m.training.as_ref().map(|t| json!({
            "base": t.base, "data": t.data.describe(), "seed": t.seed, "hidden": t.hidden,
        })),
    }))
}

/// Loaded models first, then every other model whose files are pulled.
async fn list_models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state
        .core
        .store
        .manifests()
        .filter(|m| state.core.get_loaded(&m.name).is_some() || state.core.store.is_pulled(&m.name))
        .filter_map(|m| model_json(&state, &m.name))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    model_json(&state, &id).map(Json).ok_or_else(|| {
        ApiError::model_not_found(format!(
            "unknown model {id:?}; GET /v1/models lists the available ones"
        ))
    })
}

/// `input` as OpenAI accepts it: a string, strings, token ids, or lists of token ids.
fn parse_input(v: Option<&Value>, allow_ids: bool) -> Result<Input, ApiError> {
    let bad = |m: String| ApiError::invalid(Some("input".to_string()), m);
    let accepted = if allow_ids {
        "a string, an array of strings, an array of token ids, or an array of arrays of token ids"
    } else {
        "a string or an array of strings"
    };
    let Some(v) = v else {
        return Err(bad(format!(
            "missing required field `input`: give {accepted}"
        )));
    };
    let ids = |a: &Value, at: String| -> Result<Vec<u32>, ApiError> {
        a.as_array()
            .ok_or_else(|| bad(format!("{at} must be an array of token ids")))?
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "{at} has {x}, which is not a token id (a non-negative integer)"
                        ))
                    })
            })
            .collect()
    };
    match v {
        Value::String(s) => Ok(Input::Texts(vec![s.clone()])),
        Value::Array(items) => match items.first() {
            None => Err(bad(format!("`input` is an empty array: give {accepted}"))),
            Some(Value::String(_)) => items
                .iter()
                .enumerate()
                .map(|(i, x)| x.as_str().map(str::to_string).ok_or_else(|| bad(format!("input[{i}] is {x}, but input[0] is a string: every element must be a string"))))
                .collect::<Result<_, _>>()
                .map(Input::Texts),
            Some(Value::Number(_)) if allow_ids => Ok(Input::TokenIds(vec![ids(v, "input".into())?])),
            Some(Value::Array(_)) if allow_ids => items
                .iter()
                .enumerate()
                .map(|(i, x)| ids(x, format!("input[{i}]")))
                .collect::<Result<_, _>>()
                .map(Input::TokenIds),
            Some(other) => Err(bad(format!("input[0] is {other}: `input` must be {accepted}"))),
        },
        other => Err(bad(format!("`input` is {other}: it must be {accepted}"))),
    }
}

fn truncation(body: &Value) -> Result<Truncation, ApiError> {
    match body.get("truncate") {
        None | Some(Value::Null) => Ok(Truncation::Error),
        Some(Value::Bool(true)) => Ok(Truncation::Truncate),
        Some(Value::Bool(false)) => Ok(Truncation::Error),
        Some(other) => Err(ApiError::invalid(
            Some("truncate".into()),
            format!("`truncate` is {other}: it must be true or false"),
        )),
    }
}

fn model_name(body: &Value) -> Result<String, ApiError> {
    match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None => Err(ApiError::invalid(
            Some("model".into()),
            "missing required field `model`: give a model name (GET /v1/models lists them)",
        )),
        Some(other) => Err(ApiError::invalid(
            Some("model".into()),
            format!("`model` is {other}: it must be a model name string"),
        )),
    }
}

fn object(body: Value) -> Result<Value, ApiError> {
    if body.is_object() {
        Ok(body)
    } else {
        Err(ApiError::invalid(
            None,
            format!(
                "the request body must be a JSON object, got {}",
                kind(&body)
            ),
        ))
    }
}


/// `input` of embeddings and classify, as OpenAI accepts it.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the accepted shapes; `parse_input` reads them
pub enum TextOrIdsInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One list of token ids (from /v1/tokenize).
    TokenIds(Vec<u32>),
    /// Several lists of token ids.
    TokenIdLists(Vec<Vec<u32>>),
}

/// `input` of the routes that take text only.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the accepted shapes; `parse_input` reads them
pub enum TextsInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
}

/// `ids` of /v1/detokenize.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the accepted shapes; `parse_input` reads them
pub enum IdsInput {
    /// One list of token ids.
    TokenIds(Vec<u32>),
    /// Several lists of token ids.
    TokenIdLists(Vec<Vec<u32>>),
}

/// How embeddings are encoded in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON numbers (default).
    Float,
    /// Little-endian f32, base64.
    Base64,
}

/// `POST /v1/embeddings`.
#[derive(Debug, ToSchema)]
pub struct EmbeddingsRequest {
    /// A model name (GET /v1/models).
    pub model: String,
    /// What to embed.
    #[schema(value_type = TextOrIdsInput)]
    pub input: Input,
    /// Cut over-long inputs at the model's maximum instead of refusing them.
    #[schema(value_type = Option<bool>)]
    pub truncate: Truncation,
    /// `float` (default) or `base64`.
    #[schema(value_type = Option<EncodingFormat>)]
    pub encoding_format: EncodingFormat,
    /// Must be the model's own dimension count, or absent.
    #[schema(value_type = Option<u64>)]
    pub dimensions: Option<Value>,
}

impl EmbeddingsRequest {
    fn from_value(body: &Value) -> Result<Self, ApiError> {
        let model = model_name(body)?;
        let input = parse_input(body.get("input"), true)?;
        let truncate = truncation(body)?;
        let encoding_format = match body.get("encoding_format") {
            None | Some(Value::Null) => EncodingFormat::Float,
            Some(Value::String(s)) if s == "float" => EncodingFormat::Float,
            Some(Value::String(s)) if s == "base64" => EncodingFormat::Base64,
            Some(other) => {
                return Err(ApiError::invalid(
                    Some("encoding_format".into()),
                    format!("`encoding_format` is {other}: accepted are \"float\" and \"base64\""),
                ));
            }
        };
        Ok(Self {
            model,
            input,
            truncate,
            encoding_format,
            dimensions: body.get("dimensions").filter(|d| !d.is_null()).cloned(),
        })
    }
}

/// `POST /v1/classify` and `POST /v1/entities` (entities take texts only).
#[derive(Debug, ToSchema)]
pub struct TextTaskRequest {
    /// A model name (GET /v1/models).
    pub model: String,
    /// Texts (or, for classify, token ids).
    #[schema(value_type = TextOrIdsInput)]
    pub input: Input,
    /// Cut over-long inputs at the model's maximum instead of refusing them.
    #[schema(value_type = Option<bool>)]
    pub truncate: Truncation,
}

impl TextTaskRequest {
    fn from_value(body: &Value, allow_ids: bool) -> Result<Self, ApiError> {
        Ok(Self {
            model: model_name(body)?,
            input: parse_input(body.get("input"), allow_ids)?,
            truncate: truncation(body)?,
        })
    }
}

/// `POST /v1/classify`: a classification model's own labels, or (with `labels`) zero-shot
/// classification by an embedding model.
#[derive(Debug, ToSchema)]
pub struct ClassifyRequest {
    /// A model name (GET /v1/models): a classify model, or an embed model with `labels`.
    pub model: String,
    /// Texts or token ids.
    #[schema(value_type = TextOrIdsInput)]
    pub input: Input,
    /// Cut over-long inputs at the model's maximum instead of refusing them.
    #[schema(value_type = Option<bool>)]
    pub truncate: Truncation,
    /// Zero-shot labels (embed models only): 2 to 64, names unique; each scored by the
    /// cosine of the input to the label's prototype (the normalised mean embedding of its
    /// description, or else "This text is about {name}.", and its examples), softmax over
    /// labels of cosine × 20.
    #[schema(value_type = Option<Vec<ZeroShotLabel>>)]
    pub labels: Option<Vec<LabelSpec>>,
}

impl ClassifyRequest {
    fn from_value(body: &Value) -> Result<Self, ApiError> {
        let task = TextTaskRequest::from_value(body, true)?;
        let labels = match body.get("labels") {
            None | Some(Value::Null) => None,
            Some(v) => Some(zero_shot::parse_labels(v)?),
        };
        Ok(Self {
            model: task.model,
            input: task.input,
            truncate: task.truncate,
            labels,
        })
    }
}

/// `POST /v1/tokenize`.
#[derive(Debug, ToSchema)]
pub struct TokenizeRequest {
    /// A model name (GET /v1/models).
    pub model: String,
    /// Texts to tokenise.
    #[schema(value_type = TextsInput)]
    pub input: Vec<String>,
    /// Add the model's special tokens (default true).
    #[schema(value_type = Option<bool>)]
    pub add_special_tokens: bool,
}

/// `POST /v1/detokenize`.
#[derive(Debug, ToSchema)]
pub struct DetokenizeRequest {
    /// A model name (GET /v1/models).
    pub model: String,
    /// Token ids to turn back into text.
    #[schema(value_type = IdsInput)]
    pub ids: Vec<Vec<u32>>,
    /// Leave special tokens out of the text (default false).
    #[schema(value_type = Option<bool>)]
    pub skip_special_tokens: bool,
}

impl TokenizeRequest {
    fn from_value(body: &Value) -> Result<Self, ApiError> {
        Ok(Self {
            model: model_name(body)?,
            input: texts_only(parse_input(body.get("input"), false)?)?,
            add_special_tokens: bool_field(body, "add_special_tokens", true)?,
        })
    }
}

impl DetokenizeRequest {
    fn from_value(body: &Value) -> Result<Self, ApiError> {
        let model = model_name(body)?;
        let ids = match parse_input(body.get("ids"), true).map_err(|e| ApiError {
            param: Some("ids".into()),
            message: e.message.replace("`input`", "`ids`"),
            ..e
        })? {
            Input::TokenIds(ids) => ids,
            Input::Texts(_) => {
                return Err(ApiError::invalid(
                    Some("ids".into()),
                    "`ids` must be an array of token ids or an array of arrays of token ids",
                ));
            }
        };
        Ok(Self {
            model,
            ids,
            skip_special_tokens: bool_field(body, "skip_special_tokens", false)?,
        })
    }
}

/// The request parsing of the `/v1` POST routes, as the handlers run it, for the fuzz
/// target `openai_request` (`crate::fuzzing`): `route` picks embeddings, classify,
/// entities, tokenize or detokenize.
pub(crate) fn parse_for_fuzzing(route: u8, bytes: &[u8]) -> Result<(), ApiError> {
    let body = object(crate::api::parse_body(bytes)?)?;
    match route % 7 {
        0 => EmbeddingsRequest::from_value(&body).map(drop),
        1 => ClassifyRequest::from_value(&body).map(drop),
        2 => texts_only(TextTaskRequest::from_value(&body, false)?.input).map(drop),
        3 => TokenizeRequest::from_value(&body).map(drop),
        4 => DetokenizeRequest::from_value(&body).map(drop),
        5 => crate::api::generate::CompletionRequest::from_value(&body).map(drop),
        _ => crate::api::generate::ChatRequest::from_value(&body).map(drop),
    }
}

fn texts_only(input: Input) -> Result<Vec<String>, ApiError> {
    match input {
        Input::Texts(t) => Ok(t),
        Input::TokenIds(_) => Err(ApiError::invalid(
            Some("input".into()),
            "`input` must be a string or an array of strings",
        )),
    }
}

fn with_model(resp: impl IntoResponse, m: &Model) -> Response {
    (Extension(ModelLabel(m.name().to_string())), resp).into_response()
}

async fn embeddings(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let req = EmbeddingsRequest::from_value(&object(body)?)?;
    let name = req.model;
    let m = model(&state, &name).await?;
    if let Some(d) = req.dimensions {
        let native = m.dimensions();
        if d.as_u64().and_then(|d| usize::try_from(d).ok()) != native {
            return Err(ApiError::invalid(
                Some("dimensions".into()),
                format!(
                    "model {name} produces {} dimensions and is not trained to be shortened; `dimensions` must be {} or omitted (got {d})",
                    native.map_or("no".into(), |n| n.to_string()),
                    native.map_or("absent".into(), |n| n.to_string())
                ),
            ));
        }
    }
    let base64 = req.encoding_format == EncodingFormat::Base64;
    Ok(route_text(
        &state,
        caller.map(|c| c.0),
        &m,
        TextTask::Embed { base64 },
        "/v1/embeddings",
        req.input,
        req.truncate,
    )
    .await)
}

async fn classify(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let format = html::negotiate(&headers)?;
    let req = ClassifyRequest::from_value(&object(body)?)?;
    let texts = match &req.input {
        Input::Texts(t) if format == html::Format::Html => t.clone(),
        _ => Vec::new(),
    };
    let m = model(&state, &req.model).await?;
    let caller = caller.map(|c| c.0);
    let resp = match req.labels {
        Some(labels) => {
            let answer = match zero_shot::check_model(&m) {
                Ok(()) => zero_shot::run(&state, caller, &m, labels, req.input, req.truncate).await,
                Err(e) => Err(e),
            };
            with_model(answer.map(Json), &m)
        }
        None if m.manifest.task == Task::Embed => with_model(
            ApiError::invalid(
                Some("model".into()),
                format!(
                    "model {} does embed, not classify: give `labels` (2 to 64 label names, or {{name, description, examples}} objects) to classify zero-shot with it, or pick a model whose task is classify (GET /v1/models)",
                    m.name()
                ),
            )
            .with_code("wrong_task"),
            &m,
        ),
        None => {
            route_text(&state, caller, &m, TextTask::Classify, "/v1/classify", req.input, req.truncate)
                .await
        }
    };
    Ok(html::respond(format, resp, |v| html::classes_page(v, &texts)).await)
}

async fn entities(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let format = html::negotiate(&headers)?;
    let req = TextTaskRequest::from_value(&object(body)?, false)?;
    let texts = texts_only(req.input)?;
    let shown = if format == html::Format::Html {
        texts.clone()
    } else {
        Vec::new()
    };
    let m = model(&state, &req.model).await?;
    let resp = route_text(
        &state,
        caller.map(|c| c.0),
        &m,
        TextTask::Entities,
        "/v1/entities",
        Input::Texts(texts),
        req.truncate,
    )
    .await;
    Ok(html::respond(format, resp, |v| html::entities_page(v, &shown)).await)
}

fn bool_field(body: &Value, name: &str, default: bool) -> Result<bool, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::invalid(
            Some(name.into()),
            format!("`{name}` is {other}: it must be true or false"),
        )),
    }
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let req = TokenizeRequest::from_value(&object(body)?)?;
    let (name, texts, special) = (req.model, req.input, req.add_special_tokens);
    let m = model(&state, &name).await?;
    let m2 = m.clone();
    // Tokenising is CPU work: keep it off the async executor.
    let rows = tokio::task::spawn_blocking(move || {
        let enc = m2.encoder.as_ref().ok_or_else(|| {
            ApiError::invalid(
                Some("model".into()),
                format!("model {} has no tokenizer", m2.name()),
            )
        })?;
        texts
            .iter()
            .map(|t| {
                enc.ids(t, special)
                    .map_err(|e| ApiError::invalid(Some("input".into()), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
    })??;
    let data: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, ids)| json!({"index": i, "ids": ids, "count": ids.len()}))
        .collect();
    Ok(with_model(
        Json(json!({"object": "list", "data": data, "model": name})),
        &m,
    ))
}

async fn detokenize(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let req = DetokenizeRequest::from_value(&object(body)?)?;
    let (name, ids, skip) = (req.model, req.ids, req.skip_special_tokens);
    let m = model(&state, &name).await?;
    let m2 = m.clone();
    let texts = tokio::task::spawn_blocking(move || {
        let enc = m2.encoder.as_ref().ok_or_else(|| {
            ApiError::invalid(
                Some("model".into()),
                format!("model {} has no tokenizer", m2.name()),
            )
        })?;
        ids.iter()
            .map(|row| {
                enc.decode(row, skip)
                    .map_err(|e| ApiError::invalid(Some("ids".into()), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
    })??;
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"index": i, "text": t}))
        .collect();
    Ok(with_model(
        Json(json!({"object": "list", "data": data, "model": name})),
        &m,
    ))
}

