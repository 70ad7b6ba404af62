//! Pipelines: preprocessors → request policies → inference → response policies →
//! integrations, configured per model (and optionally per route).
//!
//! ```toml
//! [pipelines."*"]                      # every model without its own entry
//! preprocessors = ["normalize"]
//!
//! [pipelines.minilm]
//! preprocessors = ["normalize", "pii-redact"]
//! request_policies = ["content-policy"]
//! response_policies = ["content-policy"]
//! integrations = ["webhook"]
//!
//! [pipelines.minilm.routes."/v1/embeddings"]   # replaces the model's chain on this route
//! preprocessors = ["normalize"]
//! ```
//!
//! A failing preprocessor or policy fails the request (policies fail closed). Integrations
//! run after the result is final, on the plugin workers, and never delay or fail it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::host::PluginHost;
use super::{
    Event, PluginError, Request, RequestContext, RequestVerdict, Response, ResponseVerdict,
};
use crate::security::audit::now_ms;

/// One chain of plugins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chain {
    /// Preprocessor plugins, in order.
    pub preprocessors: Vec<String>,
    /// Policies asked about the request, in order; the first deny wins.
    pub request_policies: Vec<String>,
    /// Policies asked about the response, in order.
    pub response_policies: Vec<String>,
    /// Integrations told about the outcome.
    pub integrations: Vec<String>,
}

/// `[pipelines.<model>]`: a chain, with optional per-route replacements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelPipeline {
    /// See [`Chain::preprocessors`].
    pub preprocessors: Vec<String>,
    /// See [`Chain::request_policies`].
    pub request_policies: Vec<String>,
    /// See [`Chain::response_policies`].
    pub response_policies: Vec<String>,
    /// See [`Chain::integrations`].
    pub integrations: Vec<String>,
    /// Route → chain used instead on that route.
    pub routes: BTreeMap<String, Chain>,
}

impl ModelPipeline {
    /// The model's own chain.
    pub fn chain(&self) -> Chain {
        Chain {
            preprocessors: self.preprocessors.clone(),
            request_policies: self.request_policies.clone(),
            response_policies: self.response_policies.clone(),
            integrations: self.integrations.clone(),
        }
    }
}

/// `[pipelines]`: model name (or `*`) → pipeline.
pub type Pipelines = BTreeMap<String, ModelPipeline>;

/// The chain for `model` on `route`: the route's, else the model's, else `*`'s, else empty.
pub fn resolve(pipelines: &Pipelines, model: &str, route: &str) -> Chain {
    match pipelines.get(model).or_else(|| pipelines.get("*")) {
        Some(p) => p.routes.get(route).cloned().unwrap_or_else(|| p.chain()),
        None => Chain::default(),
    }
}

/// Why a pipeline did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A plugin failed (limits, traps, its own error): the request fails.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A plugin's answer broke the contract (e.g. a changed input count, invalid JSON).
    #[error("plugin {plugin}: {message}")]
    Contract {
        /// The plugin.
        plugin: String,
        /// What was wrong.
        message: String,
    },
    /// The inference step failed.
    #[error("inference: {0}")]
    Inference(String),
}

/// The result of a pipeline run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The response (possibly modified by policies) and the inputs the model saw.
    Completed {
        /// Inputs after preprocessing and policies.
        inputs: Vec<String>,
        /// The output JSON.
        output: serde_json::Value,
    },
    /// A policy refused.
    Denied {
        /// The policy plugin.
        plugin: String,
        /// Its reason.
        reason: String,
        /// `request` or `response`.
        stage: &'static str,
    },
}

/// What a request's pipeline is doing now: the plugin running, if any. The HTTP layer sets
/// one per request ([`PROGRESS`]) to name the plugin when the request times out.
#[derive(Debug, Default)]
pub struct Progress(Mutex<Option<String>>);

impl Progress {
    /// The plugin running now, if any.
    pub fn running(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

tokio::task_local! {
    /// The current request's [`Progress`], when its caller tracks one.
    pub static PROGRESS: Arc<Progress>;
}

fn note(plugin: Option<&str>) {
    let _ = PROGRESS.try_with(|p| {
        *p.0.lock().unwrap_or_else(|e| e.into_inner()) = plugin.map(str::to_string);
    });
}

/// Notes the plugin running for the duration of `call`.
async fn running<T>(plugin: &str, call: impl Future<Output = T>) -> T {
    note(Some(plugin));
    let out = call.await;
    note(None);
    out
}

/// Runs `chain` for one request, for callers that are not on an async executor (the CLI).
/// `infer` is the model step (the core's task); it runs on the caller's thread, plugins on the
/// plugin workers. Async callers (the HTTP server) use [`run_async`].
pub fn run(
    host: &PluginHost,
    chain: &Chain,
    context: RequestContext,
    inputs: Vec<String>,
    infer: impl FnOnce(&[String]) -> Result<serde_json::Value, String>,
) -> Result<Outcome, PipelineError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| PipelineError::Inference(format!("pipeline executor: {e}")))?;
    rt.block_on(run_async(
        host,
        chain,
        context,
        inputs,
        async |i: Vec<String>| infer(&i),
    ))
}

/// [`run`] for async callers: waits for the plugin workers without blocking the executor.
/// `infer` receives the final inputs. Dropping the future stops the pipeline: no further
/// stage starts, and plugin calls not yet picked up by a worker are skipped.
pub async fn run_async(
    host: &PluginHost,
    chain: &Chain,
    context: RequestContext,
    mut inputs: Vec<String>,
    infer: impl AsyncFnOnce(Vec<String>) -> Result<serde_json::Value, String>,
) -> Result<Outcome, PipelineError> {
    for p in &chain.preprocessors {
        let req = Request {
            context: context.clone(),
            inputs: inputs.clone(),
        };
        let out = running(p, host.preprocess_async(p, req)).await?;
        if out.len() != inputs.len() {
            return Err(PipelineError::Contract {
                plugin: p.clone(),
                message: format!("returned {} inputs for {}", out.len(), inputs.len()),
            });
        }
        inputs = out;
    }
    for p in &chain.request_policies {
        let req = Request {
            context: context.clone(),
            inputs: inputs.clone(),
        };
        let verdict = running(p, host.check_request_async(p, req)).await?;
        match verdict {
            RequestVerdict::Allow => {}
            RequestVerdict::Deny(reason) => {
                let payload =
                    serde_json::json!({ "plugin": p, "reason": reason, "stage": "request" });
                notify(host, chain, "request.denied", &context, payload);
                return Ok(Outcome::Denied {
                    plugin: p.clone(),
                    reason,
                    stage: "request",
                });
            }
            RequestVerdict::Modify(new) => {
                if new.is_empty() || new.len() > inputs.len() {
                    return Err(PipelineError::Contract {
                        plugin: p.clone(),
                        message: format!("modified {} inputs into {}", inputs.len(), new.len()),
                    });
                }
                inputs = new;
            }
        }
    }
    let mut output = infer(inputs.clone())
        .await
        .map_err(PipelineError::Inference)?;
    for p in &chain.response_policies {
        let resp = Response {
            context: context.clone(),
            inputs: inputs.clone(),
            output_json: output.to_string(),
        };
        let verdict = running(p, host.check_response_async(p, resp)).await?;
        match verdict {
            ResponseVerdict::Allow => {}
            ResponseVerdict::Deny(reason) => {
                let payload =
                    serde_json::json!({ "plugin": p, "reason": reason, "stage": "response" });
                notify(host, chain, "request.denied", &context, payload);
                return Ok(Outcome::Denied {
                    plugin: p.clone(),
                    reason,
                    stage: "response",
                });
            }
            ResponseVerdict::Modify(json) => {
                output = serde_json::from_str(&json).map_err(|e| PipelineError::Contract {
                    plugin: p.clone(),
                    message: format!("modified the response into invalid JSON: {e}"),
                })?;
            }
        }
    }
    let payload = serde_json::json!({
        "input_count": inputs.len(),
        "output_bytes": output.to_string().len(),
    });
    notify(host, chain, "inference.finished", &context, payload);
    Ok(Outcome::Completed { inputs, output })
}

fn notify(
    host: &PluginHost,
    chain: &Chain,
    kind: &str,
    context: &RequestContext,
    payload: serde_json::Value,
) {
    for p in &chain.integrations {
        host.notify(
            p,
            Event {
                kind: kind.into(),
                context: context.clone(),
                timestamp_ms: now_ms(),
                payload_json: payload.to_string(),
            },
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_override_models_and_star_is_the_fallback() {
        let p: Pipelines = toml::from_str(
            r#"
["*"]
preprocessors = ["normalize"]
[minilm]
preprocessors = ["normalize", "pii-redact"]
[minilm.routes."/v1/embeddings"]
preprocessors = []
"#,
        )
        .unwrap();
        assert_eq!(resolve(&p, "other", "cli").preprocessors, ["normalize"]);
        assert_eq!(resolve(&p, "minilm", "cli").preprocessors.len(), 2);
        assert!(
            resolve(&p, "minilm", "/v1/embeddings")
                .preprocessors
                .is_empty()
        );
        assert!(toml::from_str::<Pipelines>("[m]\npreprocesors = []\n").is_err());
    }
}
