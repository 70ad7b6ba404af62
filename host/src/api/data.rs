//! Collections over HTTP: `/v1/collections…` (create, list, get, delete, ingest documents,
//! get and delete a document, search) and `/v1/jobs/{id}` (large uploads). Every store and
//! model step runs off the executor (`spawn_blocking`, or a job's own thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::security::audit::AuditEvent;
use crate::api::error::ApiError;
use crate::api::routes::{Access, ApiRoute, delete, get, post};
use crate::api::{ApiJson, AppState, BodyLimit, Caller, model};
use crate::data::Store;
use crate::data::collections::{CollectionRecord, Collections, DataError, Filter, check_id};
use crate::data::ingest::{self, Doc, Fields, IngestError, Prepared, Report};
use crate::data::jobs::{JobRecord, JobState, Jobs};
use crate::plugins::embedder::{CollectionEmbedder, SettingsUpdate, resolve_settings};
use crate::plugins::gateway::Gateway;

/// The largest upload to `/v1/collections/{name}/documents`, bytes.
pub const UPLOAD_LIMIT: usize = 32 * 1024 * 1024;
/// Uploads with more chunks than this run as a job.
pub const JOB_CHUNKS: usize = 256;
/// Uploads with more text than this (bytes) run as a job.
pub const JOB_BYTES: usize = 1024 * 1024;
/// The most results a search returns.
pub const MAX_TOP_K: usize = 1000;

/// Collections and jobs, shared by the handlers.
#[derive(Debug)]
pub struct DataState {
    /// The collections.
    pub collections: Arc<Collections>,
    /// Background jobs.
    pub jobs: Arc<Jobs>,
    /// Whether the start-up load of the collections' vectors is done (readiness).
    loaded: Arc<AtomicBool>,
}

impl DataState {
    /// Over the server's store. The vectors of every collection are loaded into memory in
    /// the background (see [`DataState::ready`]); on a shared store the chunks another
    /// replica writes or removes are applied to the collection they belong to, in the
    /// background, while searches keep using what is in memory
    /// ([`Collections::follow`]).
    pub fn new(store: Store) -> Self {
        let collections = Arc::new(Collections::new(store.clone()));
        // A collection deleted (or re-keyed) through another replica: its cached data key
        // goes too.
        store.follow_key_changes();
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let (weak, waker) = (Arc::downgrade(&collections), wake.clone());
        store.on_key_change(move |change| {
            if let Some(c) = weak.upgrade()
                && c.note_change(change)
            {
                // Full: the loader is already due to run; it will see this change too.
                let _ = waker.try_send(());
            }
        });
        let weak = Arc::downgrade(&collections);
        store.on_change(move |tree| {
            if tree == "*"
                && let Some(c) = weak.upgrade()
            {
                c.note_all();
                let _ = wake.try_send(());
            }
        });
        let busy = collections.any_chunks().unwrap_or(true);
        let loaded = Arc::new(AtomicBool::new(!busy));
        let (weak, flag) = (Arc::downgrade(&collections), loaded.clone());
        let spawned = std::thread::Builder::new()
            .name("llmos-collections".into())
            .spawn(move || load_loop(&weak, &flag, busy, &woken));
        if let Err(e) = spawned {
            // Searches load what they need, as before.
            tracing::warn!("collections are loaded on first search: {e}");
            loaded.store(true, Ordering::Relaxed);
        }
        Self {
            collections,
            jobs: Arc::new(Jobs::new(store)),
            loaded,
        }
    }

    /// Whether the collections' vectors are loaded (`/v2/health/ready` waits for it).
    pub fn ready(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }
}

/// The background loader: the start-up load (when there is something to load), then the
/// changes other replicas announced, gathered for 50 ms and applied collection by
/// collection.
fn load_loop(
    collections: &std::sync::Weak<Collections>,
    loaded: &AtomicBool,
    first: bool,
    woken: &std::sync::mpsc::Receiver<()>,
) {
    let load = |why: &str| {
        let Some(c) = collections.upgrade() else {
            return false;
        };
        let t = std::time::Instant::now();
        match c.load_all() {
            Ok(n) => tracing::info!(
                "{why}: {n} collections loaded in {} ms",
                t.elapsed().as_millis()
            ),
            Err(e) => tracing::warn!("{why}: collections not loaded: {e}"),
        }
        true
    };
    if first {
        load("start");
    }
    loaded.store(true, Ordering::Relaxed);
    while woken.recv().is_ok() {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let Some(c) = collections.upgrade() else {
                return;
            };
            let t = std::time::Instant::now();
            let done = c.follow();
            if done.applied > 0 || done.loaded > 0 {
                tracing::debug!(
                    "followed another replica: {} chunk changes applied, {} collections loaded, in {} ms",
                    done.applied,
                    done.loaded,
                    t.elapsed().as_millis()
                );
            }
            // Changes for a collection a search is loading wait for that load.
            if !done.waiting {
                break;
            }
        }
    }
}

/// The routes of this module.
pub(crate) fn routes() -> Vec<ApiRoute> {
    let (r, w) = (Access::Data { write: false }, Access::Data { write: true });
    let mut upload = post("/v1/collections/{name}/documents", w, add_documents).body::<DocumentsRequest>();
    upload.handler = upload
        .handler
        .layer::<_, std::convert::Infallible>(Extension(BodyLimit(UPLOAD_LIMIT)))
        .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(UPLOAD_LIMIT));
    vec![
        get("/v1/collections", Access::Key, list),
        post("/v1/collections/{name}", w, upsert).body::<CollectionRequest>(),
        get("/v1/collections/{name}", r, get_collection),
        delete("/v1/collections/{name}", w, delete_collection),
        upload,
        get("/v1/collections/{name}/documents/{id}", r, get_document),
        delete("/v1/collections/{name}/documents/{id}", w, delete_document),
        post("/v1/collections/{name}/search", r, search).body::<SearchRequest>(),
        get("/v1/jobs/{id}", Access::Key, get_job),
    ]
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> Self {
        let msg = e.to_string();
        match e {
            DataError::BadName { what, .. } => {
                let param = if what == "document id" { "id" } else { "name" };
                ApiError::invalid(Some(param.into()), msg)
            }
            DataError::BadSettings(_) | DataError::BadQuery(_) => ApiError::invalid(None, msg),
            DataError::NoCollection(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", msg)
                    .with_code("collection_not_found")
            }
            DataError::NoDocument { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", msg)
                    .with_code("document_not_found")
            }
            DataError::Store(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", msg),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Data(d) => d.into(),
            IngestError::Model(m) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                format!("ingest stopped (what was acknowledged before is stored): {m}"),
            )
            .with_code("ingest_failed"),
        }
    }
}

/// Runs store and model work off the executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string())
    })?
}

fn key_id(caller: &Option<Extension<Caller>>) -> Option<String> {
    caller.as_ref().map(|c| c.0.0.id.clone())
}

fn collection_json(c: &CollectionRecord) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("collection"));
    }
    v
}

/// Records who changed which collection, and the outcome.
pub(crate) async fn audit_write(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET {
        return next.run(req).await;
    }
    let who = req
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "open-mode".to_string(), |c| c.0.id.clone());
    let path = req.uri().path().to_string();
    let target = path
        .strip_prefix("/v1/collections/")
        .and_then(|rest| rest.split('/').next())
        .map_or_else(|| path.clone(), |name| format!("collection:{name}"));
    let what = format!("{} {path}", req.method());
    let resp = next.run(req).await;
    let status = resp.status();
    let event = AuditEvent::new("data-write", &target)
        .by(&who)
        .outcome(if status.is_success() { "ok" } else { "failed" })
        .detail(format!("{what} -> {}", status.as_u16()));
    let log = s.gateway.host.audit().clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = log.event(event) {
            tracing::error!("audit log: {e}");
        }
    })
    .await;
    resp
}

async fn list(State(state): State<Arc<AppState>>, caller: Option<Extension<Caller>>) -> Result<Json<Value>, ApiError> {
    let colls = state.data.collections.clone();
    let all = blocking(move || Ok(colls.list()?)).await?;
    let data: Vec<Value> = all
        .iter()
        .filter(|c| caller.as_ref().is_none_or(|k| k.0.0.can_read_data(&c.name)))
        .map(collection_json)
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `POST /v1/collections/{name}`: creates a collection or changes its settings.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionRequest {
    /// Embedding model [default `minilm`].
    pub model: Option<String>,
    /// Tokens per chunk, special tokens included [default: the model's maximum].
    pub chunk_tokens: Option<usize>,
    /// Tokens shared by consecutive chunks [default 32].
    pub overlap_tokens: Option<usize>,
    /// Installed preprocessor plugins each chunk and text query runs through, in order.
    pub preprocessors: Option<Vec<String>>,
}

async fn upsert(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CollectionRequest>,
) -> Result<Response, ApiError> {
    let st = state.clone();
    let (rec, created) = blocking(move || {
        let colls = &st.data.collections;
        let old = colls.get(&name)?;
        let update = SettingsUpdate {
            model: body.model,
            chunk_tokens: body.chunk_tokens,
            overlap_tokens: body.overlap_tokens,
            preprocessors: body.preprocessors,
        };
        let rec = resolve_settings(&st.core, colls.store(), &name, old.as_ref(), &update)?;
        colls.save(&rec)?;
        Ok((colls.require(&name)?, old.is_none()))
    })
    .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(collection_json(&rec))).into_response())
}

async fn get_collection(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let colls = state.data.collections.clone();
    let (rec, memory) = blocking(move || Ok((colls.require(&name)?, colls.memory(&name)))).await?;
    let mut v = collection_json(&rec);
    // What this replica holds in memory (each replica answers for itself).
    if let Some(o) = v.as_object_mut() {
        o.insert("memory".into(), json!(memory));
    }
    Ok(Json(v))
}

async fn delete_collection(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let colls = state.data.collections.clone();
    let rec = blocking(move || Ok(colls.delete(&name)?)).await?;
    Ok(Json(json!({
        "object": "collection", "name": rec.name, "deleted": true,
        "documents": rec.documents, "chunks": rec.chunks,
    })))
}

async fn get_document(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let colls = state.data.collections.clone();
    blocking(move || {
        colls.require(&name)?;
        let doc = colls.document(&name, &id)?.ok_or_else(|| DataError::NoDocument {
            collection: name.clone(),
            id: id.clone(),
        })?;
        let chunks: Vec<Value> = colls
            .chunks(&name, &id)?
            .iter()
            .map(|c| json!({"id": c.id(), "seq": c.seq, "text": c.text}))
            .collect();
        Ok(Json(json!({
            "object": "document", "id": doc.id, "collection": name, "metadata": doc.metadata,
            "source": doc.source, "chunk_count": doc.chunks, "duplicates": doc.duplicates,
            "created_ms": doc.created_ms, "chunks": chunks,
        })))
    })
    .await
}

async fn delete_document(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let colls = state.data.collections.clone();
    let doc = blocking(move || Ok(colls.delete_document(&name, &id)?)).await?;
    Ok(Json(json!({"object": "document", "id": doc.id, "deleted": true})))
}

/// `POST /v1/collections/{name}/documents` as JSON (multipart uploads send files instead).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentsRequest {
    /// The documents.
    pub documents: Vec<DocumentInput>,
}

/// One document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// Its id [default: a keyed fingerprint of the text]; sending an id again replaces that
    /// document when its text or metadata changed.
    pub id: Option<String>,
    /// The text.
    pub text: String,
    /// Metadata, returned with search results and matched by search filters.
    #[schema(value_type = Object)]
    pub metadata: Option<Map<String, Value>>,
}

/// Reads the documents of an upload: JSON, or multipart files (`.txt`, `.md`, `.html`,
/// `.csv`, `.jsonl`) with optional text fields `text_field`/`text_column` and `id_field`.
async fn read_upload(state: &Arc<AppState>, req: Request) -> Result<(Vec<Doc>, Vec<ingest::BadRecord>), ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        let mp = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid(None, format!("cannot read the multipart upload: {}", e.body_text())))?;
        return read_multipart(mp).await;
    }
    let ApiJson(body) = ApiJson::<DocumentsRequest>::from_request(req, state).await?;
    if body.documents.is_empty() {
        return Err(ApiError::invalid(Some("documents".into()), "`documents` is empty: send at least one {\"text\": …}"));
    }
    let mut docs = Vec::with_capacity(body.documents.len());
    for (i, d) in body.documents.into_iter().enumerate() {
        if let Some(id) = &d.id {
            check_id(id).map_err(|e| ApiError::invalid(Some(format!("documents[{i}].id")), e.to_string()))?;
        }
        if d.text.trim().is_empty() {
            return Err(ApiError::invalid(Some(format!("documents[{i}].text")), "the text is empty"));
        }
        docs.push(Doc {
            id: d.id,
            text: d.text,
            metadata: d.metadata.unwrap_or_default(),
            source: None,
        });
    }
    Ok((docs, Vec::new()))
}

async fn read_multipart(mut mp: Multipart) -> Result<(Vec<Doc>, Vec<ingest::BadRecord>), ApiError> {
    let mut fields = Fields::default();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::invalid(None, format!("cannot read the multipart upload: {}", e.body_text()))
    };
    while let Some(part) = mp.next_field().await.map_err(bad)? {
        let name = part.name().unwrap_or("").to_string();
        match part.file_name().map(str::to_string) {
            Some(file) => files.push((file, part.bytes().await.map_err(bad)?.to_vec())),
            None => {
                let v = part.text().await.map_err(bad)?;
                match name.as_str() {
                    "text_field" | "text_column" => fields.text = v,
                    "id_field" | "id_column" => fields.id = v,
                    other => {
                        return Err(ApiError::invalid(
                            Some(other.to_string()),
                            format!("unknown form field {other:?}: accepted are files and text_field, text_column, id_field"),
                        ));
                    }
                }
            }
        }
    }
    if files.is_empty() {
        return Err(ApiError::invalid(Some("file".into()), "the upload holds no file part"));
    }
    let (mut docs, mut errors) = (Vec::new(), Vec::new());
    for (name, bytes) in files {
        let (d, e) = ingest::formats::parse(&name, &bytes, &fields);
        docs.extend(d);
        errors.extend(e);
    }
    Ok((docs, errors))
}

async fn add_documents(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    req: Request,
) -> Result<Response, ApiError> {
    let colls = state.data.collections.clone();
    let n = name.clone();
    let coll = blocking(move || Ok(colls.require(&n)?)).await?;
    let (docs, errors) = read_upload(&state, req).await?;
    let m = model(&state, &coll.model).await?;
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    let (st, key) = (state.clone(), key_id(&caller));
    let route = format!("/v1/collections/{name}/documents");
    blocking(move || {
        let gw: Arc<Gateway> = st.gateway.clone();
        let mut emb = CollectionEmbedder::new(&gw.host, m.clone(), &coll.preprocessors, &route, key.clone());
        let mut report = Report {
            errors,
            ..Report::default()
        };
        let colls = &st.data.collections;
        let prepared = ingest::prepare(colls, &coll, &emb, docs, &mut report)?;
        let chunks: usize = prepared.iter().map(Prepared::chunk_count).sum();
        if chunks > JOB_CHUNKS || bytes > JOB_BYTES {
            let job = start_job(&st, coll, m, key, route, prepared, report)?;
            let mut v = serde_json::to_value(&job).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("object".into(), json!("job"));
                o.insert("url".into(), json!(format!("/v1/jobs/{}", job.id)));
            }
            return Ok((StatusCode::ACCEPTED, Json(v)).into_response());
        }
        ingest::store(colls, &coll, &mut emb, prepared, &mut report, &mut |_, _| {})?;
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("object".into(), json!("ingest"));
            o.insert("collection".into(), json!(coll.name));
        }
        Ok(Json(v).into_response())
    })
    .await
}

/// Starts a large upload's ingest on its own thread; its record says how far it is.
fn start_job(
    st: &Arc<AppState>,
    coll: CollectionRecord,
    m: Arc<crate::core::engine::Model>,
    key: Option<String>,
    route: String,
    prepared: Vec<Prepared>,
    mut report: Report,
) -> Result<JobRecord, ApiError> {
    let jobs = st.data.jobs.clone();
    let job = jobs
        .create("ingest", &coll.name)
        .map_err(|e| ApiError::from(DataError::from(e)))?
        .ok_or_else(|| {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "{} ingest jobs are running: retry when one has finished (GET /v1/jobs/{{id}}), or send smaller uploads (up to {JOB_CHUNKS} chunks and {JOB_BYTES} bytes are stored at once)",
                    crate::data::jobs::MAX_RUNNING
                ),
            )
            .with_code("jobs_busy");
            e.retry_after = Some(5);
            e
        })?;
    let (st, mut rec) = (st.clone(), job.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("ingest-{}", job.id))
        .spawn(move || {
            let gw = st.gateway.clone();
            let mut emb = CollectionEmbedder::new(&gw.host, m, &coll.preprocessors, &route, key);
            rec.state = JobState::Running;
            let _ = jobs.update(&mut rec);
            let mut on_batch = |p: &ingest::Progress, _: &[String]| {
                rec.progress = serde_json::to_value(p).unwrap_or_default();
                if let Err(e) = jobs.update(&mut rec) {
                    tracing::warn!("job {}: {e}", rec.id);
                }
            };
            let r = ingest::store(&st.data.collections, &coll, &mut emb, prepared, &mut report, &mut on_batch);
            match r {
                Ok(()) => rec.state = JobState::Succeeded,
                Err(e) => {
                    rec.state = JobState::Failed;
                    rec.error = Some(e.to_string());
                }
            }
            rec.result = serde_json::to_value(&report).ok();
            if let Err(e) = jobs.update(&mut rec) {
                tracing::error!("job {}: {e}", rec.id);
            }
        });
    spawned.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("cannot start the job: {e}")))?;
    Ok(job)
}

/// `POST /v1/collections/{name}/search`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Query text (embedded by the collection's model, after its preprocessors).
    pub query: Option<String>,
    /// Or a query vector of the model's size (L2-normalised: scores are dot products).
    pub vector: Option<Vec<f32>>,
    /// Results [default 10, at most 1000].
    pub top_k: Option<usize>,
    /// Metadata filter: `{"field": value}` or `{"field": {"gte": 1, "lt": 5, "in": [..]}}`.
    #[schema(value_type = Object)]
    pub filter: Option<Value>,
}

async fn search(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<SearchRequest>,
) -> Result<Json<Value>, ApiError> {
    let top_k = body.top_k.unwrap_or(10);
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(ApiError::invalid(Some("top_k".into()), format!("top_k {top_k}: accepted 1 to {MAX_TOP_K}")));
    }
    let filter = Filter::parse(body.filter.as_ref().unwrap_or(&Value::Null))
        .map_err(|e| ApiError::invalid(Some("filter".into()), e.to_string()))?;
    let colls = state.data.collections.clone();
    let n = name.clone();
    let coll = blocking(move || Ok(colls.require(&n)?)).await?;
    let query = match (body.query, body.vector) {
        (Some(q), None) if !q.trim().is_empty() => {
            let m = model(&state, &coll.model).await?;
            let (st, key, pre) = (state.clone(), key_id(&caller), coll.preprocessors.clone());
            let route = format!("/v1/collections/{name}/search");
            blocking(move || {
                CollectionEmbedder::new(&st.gateway.host, m, &pre, &route, key)
                    .query(&q)
                    .map_err(|e| ApiError::from(IngestError::Model(e)))
            })
            .await?
        }
        (None, Some(v)) => v,
        _ => {
            return Err(ApiError::invalid(
                Some("query".into()),
                "give exactly one of `query` (a non-empty text) or `vector` (numbers)",
            ));
        }
    };
    let colls = state.data.collections.clone();
    let hits = blocking(move || Ok(colls.search(&name, &query, top_k, &filter)?)).await?;
    Ok(Json(json!({"object": "list", "collection": coll.name, "model": coll.model, "data": hits})))
}

async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<Value>, ApiError> {
    let jobs = state.data.jobs.clone();
    let i = id.clone();
    let job = blocking(move || jobs.get(&i).map_err(|e| DataError::from(e).into())).await?;
    let not_found = || {
        ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("no job {id:?}"))
            .with_code("job_not_found")
    };
    let job = job.ok_or_else(not_found)?;
    // Training jobs (`/admin/train`) name a model, not a collection: they are the admin's.
    if job.kind != "ingest" && caller.as_ref().is_some_and(|k| !k.0.0.is_admin()) {
        return Err(not_found());
    }
    if let Some(k) = &caller
        && !k.0.0.can_read_data(&job.collection)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("key {} lacks the scope data:{} to read this job", k.0.0.id, job.collection),
        )
        .with_code("missing_scope"));
    }
    let mut v = serde_json::to_value(&job).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), json!("job"));
    }
    Ok(Json(v))
}
