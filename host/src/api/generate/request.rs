//! The bodies of `/v1/completions` and `/v1/chat/completions`, parsed strictly: every
//! field is checked against what OpenAI accepts, fields llmos does not do yet are refused by
//! name, and unknown fields are refused by name (never ignored).

use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::core::generate::{ChatMessage, Sampling};

/// Fields OpenAI defines that this build does not do yet (a later slice of issue 8).
const NOT_YET: &[&str] = &[
    "functions",
    "function_call",
    "logit_bias",
    "echo",
    "suffix",
    "best_of",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "reasoning_effort",
];

/// Fields of chat only (docs/generation.md §6a): `/v1/completions` refuses them by name.
const CHAT_ONLY: &[&str] = &["response_format", "tools", "tool_choice", "parallel_tool_calls"];

const COMMON: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "stream",
    "stream_options",
    "user",
    "top_k",
    "min_p",
    "repetition_penalty",
];

/// Most choices per request (`n` × prompts).
pub(crate) const MAX_CHOICES: usize = 16;

/// A prompt: text, or token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Text, tokenised by the model.
    Text(String),
    /// Token ids as given.
    Ids(Vec<u32>),
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, ToSchema)]
#[allow(dead_code)] // describes the accepted shape
pub struct StreamOptions {
    /// Send a last chunk with the usage of the whole request.
    pub include_usage: bool,
}

/// What both routes share, parsed.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    /// A generation model.
    pub model: String,
    /// Most tokens to generate per choice.
    pub max_tokens: Option<usize>,
    /// Choices per prompt.
    pub n: usize,
    /// Strings that end the text.
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// A last chunk with the usage.
    pub include_usage: bool,
    /// `Some(n)`: log-probabilities with the `n` best alternatives.
    pub logprobs: Option<usize>,
    /// End-user id (accepted for compatibility, recorded nowhere).
    pub user: Option<String>,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// What the text must be (chat: `response_format`, tools), set by the chat handler.
    pub constraint: Option<std::sync::Arc<dyn crate::core::generate::grammar::Constraint>>,
    /// How a chat answer shows the text (HTML, tool calls), set by the chat handler.
    pub shape: super::response::Shape,
}

/// `POST /v1/completions`, parsed.
#[derive(Debug)]
pub struct CompletionRequest {
    /// The common fields.
    pub params: GenerationParams,
    /// The prompt(s).
    pub prompt: Vec<Prompt>,
}

/// `POST /v1/chat/completions`, parsed.
#[derive(Debug)]
pub struct ChatRequest {
    /// The common fields.
    pub params: GenerationParams,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// llmos: answer from a collection's chunks (`collection`).
    pub grounding: Option<super::grounded::Grounding>,
    /// llmos: what to do when the conversation is longer than the context (`truncate`).
    pub truncate: super::truncate::Truncate,
}

/// A `stop` value.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // describes the accepted shapes; `stop` reads them
pub enum StopInput {
    /// One string.
    One(String),
    /// Up to 4 strings.
    Several(Vec<String>),
}

/// One chat message.
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // describes the accepted shape; `messages` reads it
pub struct MessageInput {
    /// system, developer, user, assistant or tool.
    pub role: String,
    /// A string, or an array of `{"type": "text", "text": "…"}` parts (null on an assistant
    /// message that only calls tools).
    #[schema(value_type = Object)]
    pub content: Value,
    /// assistant: the calls it made (`[{"id", "type": "function", "function": {"name",
    /// "arguments"}}]`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Value>,
    /// tool: the id of the call this message answers.
    pub tool_call_id: Option<String>,
    /// The participant's or tool's name (accepted, not shown to the model).
    pub name: Option<String>,
}

/// The body of `POST /v1/completions` (OpenAI's, plus top_k, min_p, repetition_penalty).
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // describes the accepted body; `CompletionRequest::from_value` reads it
pub struct CompletionBody {
    /// A generation model (GET /v1/models).
    pub model: String,
    /// The prompt(s): a string, strings, token ids, or lists of token ids (one set of
    /// choices each).
    pub prompt: crate::api::openai::TextOrIdsInput,
    /// Most tokens per choice (default 16).
    pub max_tokens: Option<u64>,
    /// 0-2 (default 1); 0 = greedy.
    pub temperature: Option<f64>,
    /// (0, 1], default 1.
    pub top_p: Option<f64>,
    /// Choices per prompt, 1-16.
    pub n: Option<u64>,
    /// Strings that end the text (not included).
    pub stop: Option<StopInput>,
    /// Same seed ⇒ same text.
    pub seed: Option<i64>,
    /// -2..2.
    pub presence_penalty: Option<f64>,
    /// -2..2.
    pub frequency_penalty: Option<f64>,
    /// 0-5: log-probabilities of each token and this many alternatives.
    pub logprobs: Option<u64>,
    /// Server-sent events ending with `data: [DONE]`.
    pub stream: Option<bool>,
    /// `{"include_usage": true}`: a last chunk with the usage.
    pub stream_options: Option<StreamOptions>,
    /// End-user id.
    pub user: Option<String>,
    /// llmos: keep the k most likely tokens (0 = all).
    pub top_k: Option<u64>,
    /// llmos: drop tokens less likely than min_p × the best.
    pub min_p: Option<f64>,
    /// llmos: > 0, 1 = off.
    pub repetition_penalty: Option<f64>,
}

/// The body of `POST /v1/chat/completions` (OpenAI's, plus top_k, min_p, repetition_penalty).
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // describes the accepted body; `ChatRequest::from_value` reads it
pub struct ChatBody {
    /// A generation model with a chat template (GET /v1/models).
    pub model: String,
    /// The conversation.
    pub messages: Vec<MessageInput>,
    /// Most tokens per choice (default: the rest of the context).
    pub max_tokens: Option<u64>,
    /// Same as max_tokens (OpenAI's newer name).
    pub max_completion_tokens: Option<u64>,
    /// 0-2 (default 1); 0 = greedy.
    pub temperature: Option<f64>,
    /// (0, 1], default 1.
    pub top_p: Option<f64>,
    /// Choices, 1-16.
    pub n: Option<u64>,
    /// Strings that end the text (not included).
    pub stop: Option<StopInput>,
    /// Same seed ⇒ same text.
    pub seed: Option<i64>,
    /// -2..2.
    pub presence_penalty: Option<f64>,
    /// -2..2.
    pub frequency_penalty: Option<f64>,
    /// Log-probabilities of each token.
    pub logprobs: Option<bool>,
    /// 0-20 alternatives per token (with logprobs).
    pub top_logprobs: Option<u64>,
    /// Server-sent events ending with `data: [DONE]`.
    pub stream: Option<bool>,
    /// `{"include_usage": true}`: a last chunk with the usage.
    pub stream_options: Option<StreamOptions>,
    /// End-user id.
    pub user: Option<String>,
    /// llmos: keep the k most likely tokens (0 = all).
    pub top_k: Option<u64>,
    /// llmos: drop tokens less likely than min_p × the best.
    pub min_p: Option<f64>,
    /// llmos: > 0, 1 = off.
    pub repetition_penalty: Option<f64>,
    /// `{"type": "text" | "json_object" | "json_schema" | "html"}` (docs/generation.md §6a).
    pub response_format: Option<super::structured::ResponseFormatInput>,
    /// Functions the model may call.
    pub tools: Option<Vec<super::tools::ToolInput>>,
    /// `"none"`, `"auto"`, `"required"` or `{"type": "function", "function": {"name"}}`.
    #[schema(value_type = Object)]
    pub tool_choice: Option<Value>,
    /// Accepted; llmos makes one call per choice.
    pub parallel_tool_calls: Option<bool>,
    /// llmos: answer from this collection's chunks (the last user message is searched); the
    /// answer carries `sources` and `citations`. Needs a key that may search it.
    pub collection: Option<super::grounded::CollectionInput>,
    /// llmos: with `{"type": "llmos_tool"}` tools, the most tool calls per choice (1 to the
    /// server's `[tools] max_steps`, its default).
    pub llmos_max_steps: Option<u64>,
    /// llmos: `"oldest"` drops the oldest turns (never the system message nor the last user
    /// message) until the prompt fits; default `"none"`: 400 `context_length_exceeded`.
    pub truncate: Option<String>,
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::invalid(Some(param.to_string()), message)
}

fn check_fields(body: &Map<String, Value>, own: &[&str]) -> Result<(), ApiError> {
    for key in body.keys() {
        if NOT_YET.contains(&key.as_str()) {
            return Err(bad(
                key,
                format!("`{key}` is not supported by llmos yet (structured output, tools and the like arrive in a later release); remove it"),
            )
            .with_code("unsupported_parameter"));
        }
        if CHAT_ONLY.contains(&key.as_str()) && !own.contains(&key.as_str()) {
            return Err(bad(key, format!("`{key}` is taken by /v1/chat/completions only; remove it here")).with_code("unsupported_parameter"));
        }
        if !COMMON.contains(&key.as_str()) && !own.contains(&key.as_str()) {
            let mut known: Vec<&str> = COMMON.iter().chain(own).copied().collect();
            known.sort_unstable();
            return Err(bad(
                key,
                format!("unknown field `{key}`; accepted are {}", known.join(", ")),
            )
            .with_code("unknown_parameter"));
        }
    }
    Ok(())
}

fn present<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

/// A value already checked to lie in a parameter's small range.
#[allow(clippy::cast_possible_truncation)] // why: ranges are within ±10, f32 holds them
fn narrow(x: f64) -> f32 {
    x as f32
}

fn number(body: &Map<String, Value>, key: &str, lo: f64, hi: f64, default: f64) -> Result<f32, ApiError> {
    let Some(v) = present(body, key) else {
        return Ok(narrow(default));
    };
    match v.as_f64() {
        Some(x) if (lo..=hi).contains(&x) => Ok(narrow(x)),
        _ => Err(bad(key, format!("`{key}` is {v}: give a number from {lo} to {hi}"))),
    }
}

fn count(body: &Map<String, Value>, key: &str, lo: u64, hi: u64) -> Result<Option<usize>, ApiError> {
    let Some(v) = present(body, key) else {
        return Ok(None);
    };
    match v.as_u64() {
        Some(x) if (lo..=hi).contains(&x) => Ok(usize::try_from(x).ok()),
        _ => Err(bad(key, format!("`{key}` is {v}: give an integer from {lo} to {hi}"))),
    }
}

fn flag(body: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match present(body, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(key, format!("`{key}` is {v}: give true or false"))),
    }
}

fn stop(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let err = |v: &Value| bad("stop", format!("`stop` is {v}: give a string or an array of up to 4 non-empty strings"));
    match present(body, "stop") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if !s.is_empty() => Ok(vec![s.clone()]),
        Some(v @ Value::Array(a)) if a.len() <= 4 => a
            .iter()
            .map(|x| x.as_str().filter(|s| !s.is_empty()).map(str::to_string).ok_or_else(|| err(v)))
            .collect(),
        Some(v) => Err(err(v)),
    }
}

fn sampling(body: &Map<String, Value>) -> Result<Sampling, ApiError> {
    let seed = match present(body, "seed") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .map(|s| s as u64)
                .or_else(|| v.as_u64())
                .ok_or_else(|| bad("seed", format!("`seed` is {v}: give an integer")))?,
        ),
    };
    let top_p = number(body, "top_p", 0.0, 1.0, 1.0)?;
    if top_p <= 0.0 {
        return Err(bad("top_p", "`top_p` is 0: give a number above 0 and at most 1".into()));
    }
    let repetition_penalty = number(body, "repetition_penalty", 0.0, 10.0, 1.0)?;
    if repetition_penalty <= 0.0 {
        return Err(bad("repetition_penalty", "`repetition_penalty` must be above 0 (1 = off)".into()));
    }
    Ok(Sampling {
        temperature: number(body, "temperature", 0.0, 2.0, 1.0)?,
        top_k: count(body, "top_k", 0, 1 << 20)?.unwrap_or(0),
        top_p,
        min_p: number(body, "min_p", 0.0, 1.0, 0.0)?,
        repetition_penalty,
        frequency_penalty: number(body, "frequency_penalty", -2.0, 2.0, 0.0)?,
        presence_penalty: number(body, "presence_penalty", -2.0, 2.0, 0.0)?,
        seed,
    })
}

fn model(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("model") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None => Err(bad("model", "missing required field `model`: give a generation model's name (GET /v1/models)".into())),
        Some(v) => Err(bad("model", format!("`model` is {v}: give a model name string"))),
    }
}

fn params(body: &Map<String, Value>, chat: bool) -> Result<GenerationParams, ApiError> {
    let max_tokens = match (chat, present(body, "max_completion_tokens")) {
        (true, Some(_)) => count(body, "max_completion_tokens", 1, 1 << 24)?,
        _ => count(body, "max_tokens", 1, 1 << 24)?,
    };
    let stream = flag(body, "stream")?;
    let include_usage = match present(body, "stream_options") {
        None => false,
        Some(Value::Object(o)) if stream => {
            if let Some(k) = o.keys().find(|k| *k != "include_usage") {
                return Err(bad("stream_options", format!("unknown field `stream_options.{k}`; accepted is include_usage")));
            }
            flag(o, "include_usage")?
        }
        Some(v) if !stream => {
            return Err(bad("stream_options", format!("`stream_options` is {v} but `stream` is not true: stream options apply to streams only")));
        }
        Some(v) => return Err(bad("stream_options", format!("`stream_options` is {v}: give an object {{\"include_usage\": true}}"))),
    };
    let logprobs = if chat {
        let on = flag(body, "logprobs")?;
        let top = count(body, "top_logprobs", 0, 20)?;
        if top.is_some() && !on {
            return Err(bad("top_logprobs", "`top_logprobs` needs `logprobs: true`".into()));
        }
        on.then_some(top.unwrap_or(0))
    } else {
        count(body, "logprobs", 0, 5)?
    };
    let user = match present(body, "user") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(bad("user", format!("`user` is {v}: give a string"))),
    };
    Ok(GenerationParams {
        model: model(body)?,
        max_tokens,
        n: count(body, "n", 1, MAX_CHOICES as u64)?.unwrap_or(1),
        stop: stop(body)?,
        stream,
        include_usage,
        logprobs,
        user,
        sampling: sampling(body)?,
        constraint: None,
        shape: super::response::Shape::Text,
    })
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::invalid(None, format!("the request body must be a JSON object, got {}", crate::json::kind(body)))
    })
}

fn ids(v: &Value, at: &str) -> Result<Vec<u32>, ApiError> {
    v.as_array()
        .ok_or_else(|| bad("prompt", format!("{at} must be an array of token ids")))?
        .iter()
        .map(|x| {
            x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                bad("prompt", format!("{at} has {x}, which is not a token id (a non-negative integer)"))
            })
        })
        .collect()
}

fn prompts(v: Option<&Value>) -> Result<Vec<Prompt>, ApiError> {
    let accepted = "a string, an array of strings, an array of token ids, or an array of arrays of token ids";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Err(bad("prompt", format!("missing required field `prompt`: give {accepted}")));
    };
    let list = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(items) => match items.first() {
            None => return Err(bad("prompt", format!("`prompt` is an empty array: give {accepted}"))),
            Some(Value::Number(_)) => vec![Prompt::Ids(ids(v, "prompt")?)],
            Some(Value::String(_)) => items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_str().map(|s| Prompt::Text(s.to_string())).ok_or_else(|| {
                        bad("prompt", format!("prompt[{i}] is {x}, but prompt[0] is a string: every element must be a string"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => items
                .iter()
                .enumerate()
                .map(|(i, x)| ids(x, &format!("prompt[{i}]")).map(Prompt::Ids))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(bad("prompt", format!("prompt[0] is {other}: `prompt` must be {accepted}"))),
        },
        other => return Err(bad("prompt", format!("`prompt` is {other}: it must be {accepted}"))),
    };
    Ok(list)
}

fn content(v: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                (Some("text"), Some(t)) => Ok(t),
                _ => Err(bad("messages", format!("{at}.content has the part {p}: only {{\"type\": \"text\", \"text\": \"…\"}} parts are accepted"))),
            })
            .collect(),
        Some(other) => Err(bad("messages", format!("{at}.content is {other}: give a string or an array of text parts"))),
        None => Err(bad("messages", format!("{at} has no `content`"))),
    }
}

fn message(i: usize, m: &Value) -> Result<ChatMessage, ApiError> {
    let roles = ["system", "developer", "user", "assistant", "tool"];
    let at = format!("messages[{i}]");
    let m = m.as_object().ok_or_else(|| bad("messages", format!("{at} is {m}: give an object {{\"role\", \"content\"}}")))?;
    let role = m.get("role").and_then(Value::as_str).filter(|r| roles.contains(r)).ok_or_else(|| {
        bad("messages", format!("{at}.role is {}: accepted are {}", m.get("role").unwrap_or(&Value::Null), roles.join(", ")))
    })?;
    // `name` as OpenAI takes it on participants' messages (and as llmos's tool loop returns it
    // on tool messages, so its steps can be sent back as they came): accepted, not rendered.
    let fields: &[&str] = match role {
        "assistant" => &["role", "content", "tool_calls", "name"],
        "tool" => &["role", "content", "tool_call_id", "name"],
        _ => &["role", "content", "name"],
    };
    if let Some(k) = m.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(bad("messages", format!("{at} has the field `{k}`, which a {role} message does not take; accepted are {}", fields.join(", "))));
    }
    if let Some(n) = m.get("name").filter(|n| !n.is_string()) {
        return Err(bad("messages", format!("{at}.name is {n}: give a string")));
    }
    let calls = m.get("tool_calls").filter(|c| !c.is_null());
    let content = match (calls, m.get("content")) {
        (Some(c), None | Some(Value::Null)) => super::tools::calls_as_text(&at, c)?,
        (Some(c), Some(text)) => {
            let text = content(Some(text), &at)?;
            format!("{text}\n{}", super::tools::calls_as_text(&at, c)?).trim_start().to_string()
        }
        (None, c) => content(c, &at)?,
    };
    if role == "tool" && !m.get("tool_call_id").is_some_and(Value::is_string) {
        return Err(bad("messages", format!("{at} is a tool message without `tool_call_id`: give the id of the call it answers")));
    }
    let role = if role == "developer" { "system" } else { role };
    Ok(ChatMessage { role: role.to_string(), content })
}

fn messages(v: Option<&Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(Value::Array(items)) = v else {
        return Err(bad("messages", "missing required field `messages`: give an array of {\"role\", \"content\"} objects".into()));
    };
    if items.is_empty() {
        return Err(bad("messages", "`messages` is empty: give at least one message".into()));
    }
    items.iter().enumerate().map(|(i, m)| message(i, m)).collect()
}

impl CompletionRequest {
    /// Parses and checks a `/v1/completions` body.
    pub fn from_value(body: &Value) -> Result<Self, ApiError> {
        let body = object(body)?;
        check_fields(body, &["prompt"])?;
        let prompt = prompts(body.get("prompt"))?;
        let params = params(body, false)?;
        if prompt.len().saturating_mul(params.n) > MAX_CHOICES {
            return Err(bad("n", format!("{} prompts × n = {} gives more than {MAX_CHOICES} choices", prompt.len(), params.n)));
        }
        Ok(Self { params, prompt })
    }
}

impl ChatRequest {
    /// Parses and checks a `/v1/chat/completions` body.
    pub fn from_value(body: &Value) -> Result<Self, ApiError> {
        let body = object(body)?;
        let mut own = vec!["messages", "max_completion_tokens", "top_logprobs", "collection", "truncate", "llmos_max_steps"];
        own.extend(CHAT_ONLY);
        check_fields(body, &own)?;
        let grounding = present(body, "collection").map(super::grounded::Grounding::parse).transpose()?;
        let truncate = super::truncate::Truncate::parse(body.get("truncate"))?;
        Ok(Self { messages: messages(body.get("messages"))?, params: params(body, true)?, grounding, truncate })
    }
}
