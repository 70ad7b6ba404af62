//! `/admin/train`: train a classifier in the background (docs/classification.md), scope
//! `admin`. `POST` starts a job (202 with its id), `GET /admin/train/{id}` says how far it is
//! and, once done, its figures; `DELETE /admin/train/{id}` cancels it. A finished model is
//! registered at once: `/v1/models` lists it, `/v1/classify` and `/v2` serve it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::{Extension, response::IntoResponse, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, delete, get, post};
use crate::api::{ApiJson, AppState, BodyLimit};
use crate::core::train::data::RawRow;
use crate::core::train::run::Progress;
use crate::core::train::{Bin, DataSource, Format, Recipe};
use crate::data::jobs::{JobRecord, JobState};
use crate::data::train::{self as train_data, Job, Rows};

/// Largest training upload (rows, CSV or JSONL inline).
pub const TRAIN_LIMIT: usize = 32 * 1024 * 1024;

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    let mut start = post("/admin/train", Access::Admin, start).body::<TrainRequest>();
    start.handler = start
        .handler
        .layer::<_, std::convert::Infallible>(Extension(BodyLimit(TRAIN_LIMIT)))
        .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(TRAIN_LIMIT));
    vec![
        start,
        get("/admin/train/{id}", Access::Admin, status),
        delete("/admin/train/{id}", Access::Admin, cancel),
    ]
}

/// `POST /admin/train`: the same choices as `llmos train classifier`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Name of the new model (a-z, 0-9, '.', '_', '-').
    pub name: String,
    /// Base embedding model [default minilm].
    pub base: Option<String>,
    /// The labelled data: exactly one of `rows`, `csv`, `jsonl`, `collection`.
    pub data: TrainData,
    /// Column or field of the text [default text].
    pub text_column: Option<String>,
    /// Column or field of the label (for a collection: the document metadata field) [default label].
    pub label_column: Option<String>,
    /// Whether the CSV's first line names the columns [default true].
    pub header: Option<bool>,
    /// Renames raw label values, e.g. `{"1": "spam"}`.
    pub label_names: Option<BTreeMap<String, String>>,
    /// Numeric labels into classes: `[{"label","above","below"}]` (exclusive bounds).
    #[schema(value_type = Option<Vec<Object>>)]
    pub bins: Option<Vec<Bin>>,
    /// Seed of the split and initial weights [default 42].
    pub seed: Option<u64>,
    /// Most epochs [default 1000].
    pub epochs: Option<usize>,
    /// Width of a hidden ReLU layer, 0 = none [default 0].
    pub hidden: Option<usize>,
    /// L2 strength [default 1e-4].
    pub l2: Option<f32>,
    /// Adam step size [default 0.05].
    pub learning_rate: Option<f32>,
    /// Share of each class held out [default 0.2].
    pub validation: Option<f32>,
    /// Epochs without improvement before stopping [default 20].
    pub patience: Option<usize>,
    /// Weight classes by inverse frequency [default true].
    pub class_weights: Option<bool>,
    /// One line for listings.
    pub description: Option<String>,
    /// SPDX licence of the result [default the base model's].
    pub license: Option<String>,
    /// Attribution of the data.
    pub attribution: Option<String>,
}

/// The labelled data of a training request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainData {
    /// Rows `{"text": ..., "label": ...}` (label a string, number or boolean).
    #[schema(value_type = Option<Vec<Object>>)]
    pub rows: Option<Vec<Value>>,
    /// A CSV file's text.
    pub csv: Option<String>,
    /// A JSONL file's text (one object per line).
    pub jsonl: Option<String>,
    /// A collection of the data store: its chunks, labelled by a document metadata field.
    pub collection: Option<String>,
}

/// Cancel flags of the running jobs, by job id.
fn flags() -> &'static Mutex<HashMap<String, Arc<AtomicBool>>> {
    static FLAGS: OnceLock<Mutex<HashMap<String, Arc<AtomicBool>>>> = OnceLock::new();
    FLAGS.get_or_init(Mutex::default)
}

/// Names of the models being trained by this process (a second job for one is refused).
fn training() -> &'static Mutex<std::collections::HashSet<String>> {
    static NAMES: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    NAMES.get_or_init(Mutex::default)
}

/// Holds a model name for one job; released when dropped.
struct NameClaim(String);

impl NameClaim {
    fn take(name: &str) -> Result<Self, ApiError> {
        let mut names = training().lock().unwrap_or_else(|e| e.into_inner());
        if !names.insert(name.to_string()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("a model named {name:?} is being trained already (GET /admin/train/{{id}} of that job); choose another name"),
            ));
        }
        Ok(Self(name.to_string()))
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        training()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::invalid(Some(param.to_string()), message)
}

impl TrainRequest {
    fn recipe(&self, data: DataSource, format: Format) -> Result<Recipe, ApiError> {
        let base = self.base.clone().unwrap_or_else(|| "minilm".into());
        let mut r: Recipe = toml::from_str(&format!(
            "base = {base:?}\nbase_sha256 = \"\"\n[data]\nkind = \"collection\"\nname = \"x\"\n"
        ))
        .map_err(|e| invalid("base", e.to_string()))?;
        r.data = data;
        r.format = format;
        r.text_column = self.text_column.clone();
        r.label_column = self.label_column.clone();
        r.header = self.header.unwrap_or(true);
        r.label_names = self.label_names.clone().unwrap_or_default();
        r.bins = self.bins.clone().unwrap_or_default();
        r.seed = self.seed.unwrap_or(r.seed);
        r.epochs = self.epochs.unwrap_or(r.epochs);
        r.hidden = self.hidden.unwrap_or(r.hidden);
        r.l2 = self.l2.unwrap_or(r.l2);
        r.learning_rate = self.learning_rate.unwrap_or(r.learning_rate);
        r.validation = self.validation.unwrap_or(r.validation);
        r.patience = self.patience.unwrap_or(r.patience);
        r.class_weights = self.class_weights.unwrap_or(r.class_weights);
        Ok(r)
    }
}

/// Rows given inline: `{"text", "label"}` objects, numbered from 1.
fn given_rows(rows: &[Value]) -> Result<Vec<RawRow>, ApiError> {
    rows.iter()
        .enumerate()
        .map(|(i, v)| {
            let at = format!("data.rows[{i}]");
            let text = v.get("text").and_then(Value::as_str).ok_or_else(|| {
                invalid(&at, format!("{at} has no string `text`: each row is {{\"text\": \"...\", \"label\": \"...\"}}"))
            })?;
            let label = v.get("label").cloned().ok_or_else(|| {
                invalid(&at, format!("{at} has no `label` (a string, number or boolean)"))
            })?;
            Ok(RawRow {
                line: i.saturating_add(1),
                text: text.to_string(),
                label,
            })
        })
        .collect()
}

/// The upload's format (collections ignore it).
fn format_of(d: &TrainData) -> Format {
    if d.csv.is_some() {
        Format::Csv
    } else {
        Format::Jsonl
    }
}

/// The rows and their data source, from the request's `data`, read with `recipe` (its columns
/// and header). Uploads are parsed in memory: llmos does not write them anywhere.
fn rows_of(
    st: &AppState,
    req: &TrainRequest,
    recipe: &Recipe,
) -> Result<(Rows, DataSource), ApiError> {
    let d = &req.data;
    let given = [d.rows.is_some(), d.csv.is_some(), d.jsonl.is_some(), d.collection.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(invalid(
            "data",
            "give exactly one of data.rows, data.csv, data.jsonl or data.collection".into(),
        ));
    }
    let upload = |bytes: &[u8]| DataSource::Upload {
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
    };
    let given = |rows: Vec<RawRow>, origin: &str| Rows::Given {
        rows,
        origin: origin.into(),
    };
    if let Some(rows) = &d.rows {
        let bytes = serde_json::to_vec(rows).unwrap_or_default();
        return Ok((given(given_rows(rows)?, "data.rows"), upload(&bytes)));
    }
    if let Some(name) = &d.collection {
        let label = req.label_column.as_deref().unwrap_or("label");
        let rows = train_data::collection_rows(&st.data.collections, name, label)
            .map_err(|e| invalid("data.collection", e.to_string()))?;
        let origin = format!("collection {name}");
        return Ok((given(rows, &origin), DataSource::Collection { name: name.clone() }));
    }
    let (text, origin) = match (&d.csv, &d.jsonl) {
        (Some(t), _) => (t, "data.csv"),
        (_, Some(t)) => (t, "data.jsonl"),
        _ => return Err(invalid("data", "no data".into())),
    };
    let rows = crate::core::train::data::read_bytes(text.as_bytes(), origin, recipe)
        .map_err(|e| invalid(origin, e.to_string()))?;
    Ok((given(rows, origin), upload(text.as_bytes())))
}

fn server_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string())
}

fn progress_json(p: &Progress) -> Value {
    match p {
        Progress::Embedding {
            done,
            total,
            cached,
        } => json!({"stage": "embedding", "done": done, "total": total, "cached": cached}),
        Progress::Fitting {
            epoch,
            epochs,
            train_loss,
            validation_loss,
        } => json!({"stage": "fitting", "epoch": epoch, "epochs": epochs,
                    "train_loss": train_loss, "validation_loss": validation_loss}),
    }
}

async fn start(
    State(st): State<Arc<AppState>>,
    ApiJson(req): ApiJson<TrainRequest>,
) -> Result<Response, ApiError> {
    let st2 = st.clone();
    let job = tokio::task::spawn_blocking(move || start_blocking(&st2, req))
        .await
        .map_err(server_err)??;
    let mut v = serde_json::to_value(&job).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("job"));
        o.insert("url".into(), json!(format!("/admin/train/{}", job.id)));
    }
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

fn start_blocking(st: &Arc<AppState>, req: TrainRequest) -> Result<JobRecord, ApiError> {
    let core = st.core.clone();
    let Some(manifest_dir) = core.paths().manifest_dirs(core.config()).into_iter().next() else {
        return Err(server_err("no manifest folder is configured ([models] manifests)"));
    };
    if core.store.manifest(&req.name).is_ok() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!("a model named {:?} exists already; choose another name", req.name),
        ));
    }
    crate::core::manifest::check_name(&req.name).map_err(|m| invalid("name", m))?;
    let claim = NameClaim::take(&req.name)?;
    let base_name = req.base.clone().unwrap_or_else(|| "minilm".into());
    let base = core.store.manifest(&base_name).map_err(|e| invalid("base", e.to_string()))?;
    let pending = DataSource::Upload {
        sha256: String::new(),
    };
    let mut recipe = req.recipe(pending, format_of(&req.data))?;
    let (rows, source) = rows_of(st, &req, &recipe)?;
    recipe.data = source;
    // Bad rows are a 400 now, not a failed job later.
    if let Rows::Given { rows, origin } = &rows {
        crate::core::train::build::dataset(rows.clone(), origin, &recipe)
            .map_err(|e| invalid("data", e.to_string()))?;
    }
    let origin = match &req.data {
        TrainData { collection: Some(c), .. } => format!("collection {c}"),
        _ => "rows sent to /admin/train".into(),
    };
    let describe = train_data::describe(
        &req.name,
        &base,
        &origin,
        req.description.clone(),
        req.license.clone(),
        req.attribution.clone(),
    );
    let jobs = st.data.jobs.clone();
    let job = jobs
        .create("train", &req.name)
        .map_err(|e| server_err(e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "{} jobs are running: retry when one has finished",
                    crate::data::jobs::MAX_RUNNING
                ),
            )
            .with_code("jobs_busy")
        })?;
    let flag = Arc::new(AtomicBool::new(false));
    flags()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(job.id.clone(), flag.clone());
    let out = core.store.model_dir(&req.name);
    let (st, mut rec) = (st.clone(), job.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("train-{}", job.id))
        .spawn(move || {
            let _claim = claim;
            rec.state = JobState::Running;
            let _ = jobs.update(&mut rec);
            let store = st.gateway.host.store().clone();
            let job = Job {
                core: &st.core,
                store: Some(&store),
                describe,
                recipe,
                rows,
                out: out.clone(),
            };
            let last = Mutex::new(std::time::Instant::now());
            let rec_cell = Mutex::new(rec.clone());
            let progress = |p: &Progress| {
                // One record write per second at most.
                let mut t = last.lock().unwrap_or_else(|e| e.into_inner());
                if t.elapsed().as_millis() < 1000 {
                    return;
                }
                *t = std::time::Instant::now();
                let mut r = rec_cell.lock().unwrap_or_else(|e| e.into_inner());
                r.progress = progress_json(p);
                let _ = jobs.update(&mut r);
            };
            let result = train_data::run(job, &progress, &flag);
            rec = rec_cell.into_inner().unwrap_or_else(|e| e.into_inner());
            finish(&st, &manifest_dir, &mut rec, result, &out);
            let _ = jobs.update(&mut rec);
            flags()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&rec.id);
        });
    spawned.map_err(|e| server_err(format!("cannot start the job: {e}")))?;
    Ok(job)
}

fn finish(
    st: &AppState,
    manifest_dir: &std::path::Path,
    rec: &mut JobRecord,
    result: Result<crate::core::train::build::Built, crate::core::train::build::BuildError>,
    out: &std::path::Path,
) {
    let built = match result {
        Ok(b) => b,
        Err(e) => {
            rec.state = JobState::Failed;
            rec.error = Some(e.to_string());
            // Nothing half-written stays: the model's folder held only this job's files.
            if st.core.store.manifest(&rec.collection).is_err() {
                let _ = std::fs::remove_dir_all(out);
            }
            return;
        }
    };
    match train_data::register(&st.core, manifest_dir, &built) {
        Ok(path) => {
            rec.state = JobState::Succeeded;
            rec.result = Some(train_data::report(&built, Some(&path)));
            let log = st.gateway.host.audit().clone();
            let _ = log.record(
                "model-trained",
                &built.manifest.name,
                None,
                format!("classifier, job {}", rec.id),
            );
        }
        Err(e) => {
            rec.state = JobState::Failed;
            rec.error = Some(e.to_string());
        }
    }
}


async fn find(st: &Arc<AppState>, id: String) -> Result<JobRecord, ApiError> {
    let jobs = st.data.jobs.clone();
    let i = id.clone();
    let rec = tokio::task::spawn_blocking(move || jobs.get(&i))
        .await
        .map_err(server_err)?
        .map_err(|e| server_err(e.to_string()))?;
    match rec {
        Some(r) if r.kind == "train" => Ok(r),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no training job {id:?}"),
        )
        .with_code("job_not_found")),
    }
}

fn job_json(rec: &JobRecord) -> Value {
    let mut v = serde_json::to_value(rec).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("job"));
        o.insert("model".into(), json!(rec.collection));
    }
    v
}

async fn status(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&find(&st, id).await?)))
}

async fn cancel(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = find(&st, id.clone()).await?;
    let flag = flags()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    let mut v = job_json(&rec);
    if let Some(o) = v.as_object_mut() {
        o.insert("cancel_requested".into(), json!(flag.is_some()));
    }
    match flag {
        Some(f) => {
            f.store(true, Ordering::Relaxed);
            Ok(Json(v))
        }
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!(
                "training job {id} is {}, not running: nothing to cancel",
                serde_json::to_value(rec.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        )),
    }
}
