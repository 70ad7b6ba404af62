//! Inference threads: continuous batching of text requests, grouped by length.
//!
//! A worker takes the next job from its model's queue. For a text job it also takes every
//! text job of the same kind already waiting (up to `max_batch` texts; optionally waiting
//! up to `max_wait` for more), tokenises each request on its own (so one bad request fails
//! alone), sorts all texts by token count and runs them in sub-batches of similar length,
//! so padding costs little. Answers are split back per request, in order. Under no load a
//! request runs alone at once; under load, batches form from what queued meanwhile.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ort::session::Session;
use tokenizers::Encoding;

use crate::core::engine::{Bounds, Classes, Embeddings, Entities, Job, TaskError};
use crate::core::manifest::Pooling;
use crate::core::tensor::{self, NamedTensor};
use crate::core::text::{self, Entity, LabelScore, TextEncoder, TextError, TokenBatch};

/// Batching limits of one model.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most texts run in one `Session::run`.
    pub max_batch: usize,
    /// Most padded tokens (rows × longest row) in one `Session::run`.
    pub max_tokens: usize,
    /// How long to wait for more requests once one arrived (0 = take only what queued).
    pub max_wait: Duration,
    /// Most inputs in one request.
    pub max_request_inputs: usize,
    /// Most tokens (all inputs together) in one request.
    pub max_request_tokens: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_tokens: 8192,
            max_wait: Duration::ZERO,
            max_request_inputs: 2048,
            max_request_tokens: 262_144,
        }
    }
}

/// Counters of one model, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct ModelStats {
    /// Jobs waiting in the queue.
    pub queued: AtomicUsize,
    /// Tokens processed.
    pub tokens: AtomicU64,
    /// `Session::run` calls, by rows: counts for <=1, <=2, <=4, … <=128, more.
    pub batch_rows: [AtomicU64; BATCH_BUCKETS.len() + 1],
    /// Sum of rows over all runs.
    pub rows: AtomicU64,
    /// Generation: decode steps run (one per batch of running sequences).
    pub gen_steps: AtomicU64,
    /// Generation: tokens generated.
    pub gen_tokens: AtomicU64,
    /// Generation: tokens drafted by prompt lookup (speculative decoding).
    pub gen_draft_tokens: AtomicU64,
    /// Generation: drafted tokens the sampler kept.
    pub gen_draft_accepted: AtomicU64,
    /// Generation: prompts prefilled (sequences started).
    pub gen_prefills: AtomicU64,
    /// Generation: prefill runs (prompts that queued together are prefilled as one batch).
    pub gen_prefill_runs: AtomicU64,
    /// Generation: sequences dropped because their caller went away.
    pub gen_cancelled: AtomicU64,
    /// Generation: sequences in the running batch now (`llmos_generate_running_requests`).
    pub gen_running: AtomicUsize,
    /// Generation: sequences paused by the fair scheduler, waiting to resume with their cache
    /// (counted as queued by `llmos_generate_queued_requests`).
    pub gen_paused: AtomicUsize,
    /// Generation: KV-cache positions held now: the running batch's rows × cached length
    /// (padding included: it is allocated) plus the rows of paused sequences.
    pub gen_kv_used: AtomicU64,
    /// Generation: KV-cache positions the engine may hold: `max_batch` × context length
    /// (0 for other tasks).
    pub gen_kv_capacity: AtomicU64,
    /// Generation: time to first token (submission to first sampled token).
    pub gen_ttft: LatencyHistogram,
    /// Generation: time per output token after the first (between two tokens of a sequence).
    pub gen_tpot: LatencyHistogram,
}

/// Upper bounds (seconds) of the time-to-first-token histogram (those of vLLM).
pub const TTFT_BUCKETS: [f64; 15] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of the time-per-output-token histogram (those of vLLM).
pub const TPOT_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with 15 fixed bounds (the bounds live with its reader): counts per
/// bucket, then the count above the last bound, and the sum in microseconds.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    pub buckets: [AtomicU64; 16],
    /// Sum of the observations, microseconds.
    pub sum_us: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation against `bounds`.
    pub fn observe(&self, bounds: &[f64; 15], d: Duration) {
        let secs = d.as_secs_f64();
        let i = bounds.iter().position(|&b| secs <= b).unwrap_or(bounds.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Upper bounds of the batch-size histogram.
pub const BATCH_BUCKETS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

impl ModelStats {
    pub(crate) fn record_run(&self, rows: usize) {
        let i = BATCH_BUCKETS
            .iter()
            .position(|&b| rows <= b)
            .unwrap_or(BATCH_BUCKETS.len());
        if let Some(bucket) = self.batch_rows.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }
}

/// What every worker of a model needs besides its session.
pub(crate) struct WorkerCtx {
    pub(crate) name: String,
    pub(crate) pooling: Pooling,
    pub(crate) normalize: bool,
    pub(crate) encoder: Option<TextEncoder>,
    pub(crate) labels: Option<Vec<String>>,
    pub(crate) input_names: Vec<String>,
    pub(crate) limits: BatchLimits,
    pub(crate) stats: Arc<ModelStats>,
    /// Nanoseconds per padded token of recent runs (a moving average; 0 until the first run):
    /// a sub-batch holding a request with a deadline is sized to end by that deadline.
    pub(crate) ns_per_token: AtomicU64,
}

impl WorkerCtx {
    fn fail(&self, e: impl std::fmt::Display) -> TaskError {
        TaskError::Runtime {
            model: self.name.clone(),
            message: e.to_string(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embed,
    Classify,
    Entities,
}

fn text_job(job: &Job) -> Option<(Kind, usize)> {
    match job {
        Job::Embed(t, ..) => Some((Kind::Embed, t.len())),
        Job::Classify(t, ..) => Some((Kind::Classify, t.len())),
        Job::Entities(t, ..) => Some((Kind::Entities, t.len())),
        Job::Infer(..) | Job::Generate(..) => None,
    }
}

/// The loop of one inference thread; returns when the model is dropped.
pub(crate) fn worker(mut session: Session, ctx: &WorkerCtx, rx: &Mutex<Receiver<Job>>) {
    let mut held: Option<Job> = None;
    loop {
        let (first, group) = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            let first = match held.take() {
                Some(j) => j,
                None => match rx.recv() {
                    Ok(j) => {
                        ctx.stats.queued.fetch_sub(1, Ordering::Relaxed);
                        j
                    }
                    Err(_) => return, // every sender dropped: the model was unloaded
                },
            };
            let Some((kind, mut texts)) = text_job(&first) else {
                drop(rx);
                run_infer(&mut session, ctx, first);
                continue;
            };
            let mut group = Vec::new();
            let now = Instant::now();
            let deadline = now.checked_add(ctx.limits.max_wait).unwrap_or(now);
            while texts < ctx.limits.max_batch {
                let next = match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => rx
                        .recv_timeout(left)
                        .map_err(|e| e == RecvTimeoutError::Disconnected),
                    _ => rx.try_recv().map_err(|e| e == TryRecvError::Disconnected),
                };
                if next.is_ok() {
                    ctx.stats.queued.fetch_sub(1, Ordering::Relaxed);
                }
                match next {
                    Ok(j) => match text_job(&j) {
                        Some((k, n))
                            if k == kind && texts.saturating_add(n) <= ctx.limits.max_batch =>
                        {
                            texts = texts.saturating_add(n);
                            group.push(j);
                        }
                        _ => {
                            held = Some(j);
                            break;
                        }
                    },
                    Err(_) => break,
                }
            }
            (first, group)
        };
        let mut jobs = vec![first];
        jobs.extend(group);
        run_text_jobs(&mut session, ctx, jobs);
    }
}

/// One request's texts, tokenised.
struct Request {
    texts: Vec<String>,
    encs: Vec<Encoding>,
    out: Vec<Option<Out>>,
    fate: Fate,
    deadline: Option<Instant>,
}

/// Whether a request is still wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Run it.
    Wanted,
    /// Its deadline passed: answer [`TaskError::Expired`], run nothing more of it.
    Expired,
    /// Its caller has gone (receiver dropped): run nothing more, answer nobody.
    Gone,
}

fn bounds_of(job: &Job) -> Bounds {
    match job {
        Job::Embed(_, _, b, _) | Job::Classify(_, _, b, _) | Job::Entities(_, _, b, _) => *b,
        Job::Infer(..) | Job::Generate(..) => Bounds::default(),
    }
}

fn caller_gone(job: &Job) -> bool {
    match job {
        Job::Embed(.., r) => r.is_closed(),
        Job::Classify(.., r) => r.is_closed(),
        Job::Entities(.., r) => r.is_closed(),
        Job::Infer(.., r) => r.is_closed(),
        Job::Generate(g) => g.tx.is_closed(),
    }
}

/// Whether the job is still wanted now.
fn fate(job: &Job, now: Instant) -> Fate {
    if caller_gone(job) {
        Fate::Gone
    } else if bounds_of(job).deadline.is_some_and(|d| now >= d) {
        Fate::Expired
    } else {
        Fate::Wanted
    }
}

/// Tokens allowed to a request: the model's per-request limit, or the caller's cap.
fn check_size(
    encs: Vec<Encoding>,
    limits: &BatchLimits,
    bounds: Bounds,
    model: &str,
) -> Result<Vec<Encoding>, TaskError> {
    // The input count was checked before tokenising (`run_text_jobs`).
    let tokens: usize = encs.iter().map(Encoding::len).sum();
    if tokens > limits.max_request_tokens {
        return Err(TextError::TooManyTokens {
            tokens,
            max: limits.max_request_tokens,
        }
        .into());
    }
    match bounds.max_tokens {
        Some(max) if tokens > max => Err(TaskError::TokenBudget {
            model: model.to_string(),
            tokens,
            max,
        }),
        _ => Ok(encs),
    }
}

enum Out {
    Vector(Vec<f32>),
    Scores(Vec<LabelScore>),
    Entities(Vec<Entity>),
}

fn run_text_jobs(session: &mut Session, ctx: &WorkerCtx, jobs: Vec<Job>) {
    let Some(encoder) = ctx.encoder.as_ref() else {
        for j in jobs {
            reply_err(j, ctx.fail("model has no tokenizer"));
        }
        return;
    };
    // Tokenise each request on its own: a bad request fails alone. A request whose caller
    // has gone or whose deadline passed while it queued is dropped before tokenising.
    let mut ok_jobs = Vec::new();
    let mut requests = Vec::new();
    let now = Instant::now();
    for job in jobs {
        match fate(&job, now) {
            Fate::Gone => continue,
            Fate::Expired => {
                reply_err(job, expired(ctx));
                continue;
            }
            Fate::Wanted => {}
        }
        // Count the inputs before tokenising any: an oversized request costs nothing.
        let count = match &job {
            Job::Embed(input, ..) | Job::Classify(input, ..) => input.len(),
            Job::Entities(t, ..) => t.len(),
            Job::Infer(..) | Job::Generate(..) => 0,
        };
        let encoded = if count > ctx.limits.max_request_inputs {
            Err(TaskError::from(TextError::TooManyInputs {
                count,
                max: ctx.limits.max_request_inputs,
            }))
        } else {
            match &job {
                Job::Embed(input, p, ..) | Job::Classify(input, p, ..) => {
                    encoder.encode_input(input, *p).map_err(TaskError::from)
                }
                Job::Entities(t, p, ..) => encoder.encode(t, *p, true).map_err(TaskError::from),
                Job::Infer(..) | Job::Generate(..) => {
                    Err(ctx.fail("a graph job reached the text batcher"))
                }
            }
        };
        let bounds = bounds_of(&job);
        let encoded = encoded.and_then(|encs| check_size(encs, &ctx.limits, bounds, &ctx.name));
        match encoded {
            Ok(encs) => {
                requests.push(Request {
                    // Entities need the original texts for their offsets.
                    texts: match &job {
                        Job::Entities(t, ..) => t.clone(),
                        _ => Vec::new(),
                    },
                    out: (0..encs.len()).map(|_| None).collect(),
                    encs,
                    fate: Fate::Wanted,
                    deadline: bounds.deadline,
                });
                ok_jobs.push(job);
            }
            Err(e) => reply_err(job, e),
        }
    }
    let Some((kind, _)) = ok_jobs.first().and_then(text_job) else {
        return;
    };
    if let Err(e) = run_sorted(session, ctx, encoder, kind, &ok_jobs, &mut requests) {
        for j in ok_jobs {
            reply_err(j, e.clone());
        }
        return;
    }
    for (job, req) in ok_jobs.into_iter().zip(requests) {
        match req.fate {
            Fate::Gone => continue,
            Fate::Expired => {
                reply_err(job, expired(ctx));
                continue;
            }
            Fate::Wanted => {}
        }
        let tokens = req.encs.iter().map(Encoding::len).sum();
        match req.out.into_iter().collect::<Option<Vec<Out>>>() {
            Some(outs) => reply_outs(ctx, job, outs, tokens),
            None => reply_err(job, ctx.fail("a text of the batch did not run")),
        }
    }
}

/// Answers a text job with its outputs (one per text, of the job's kind).
fn reply_outs(ctx: &WorkerCtx, job: Job, outs: Vec<Out>, tokens: usize) {
    let wrong = || ctx.fail("an output of another kind than the request's");
    // A dropped receiver means the caller gave up; nothing to tell it.
    match job {
        Job::Embed(.., reply) => {
            let vectors = outs.into_iter().map(|o| match o {
                Out::Vector(v) => Some(v),
                _ => None,
            });
            let vectors = vectors.collect::<Option<Vec<_>>>().ok_or_else(wrong);
            let _ = reply.send(vectors.map(|vectors| Embeddings { vectors, tokens }));
        }
        Job::Classify(.., reply) => {
            let scores = outs.into_iter().map(|o| match o {
                Out::Scores(s) => Some(s),
                _ => None,
            });
            let scores = scores.collect::<Option<Vec<_>>>().ok_or_else(wrong);
            let _ = reply.send(scores.map(|scores| Classes { scores, tokens }));
        }
        Job::Entities(.., reply) => {
            let entities = outs.into_iter().map(|o| match o {
                Out::Entities(e) => Some(e),
                _ => None,
            });
            let entities = entities.collect::<Option<Vec<_>>>().ok_or_else(wrong);
            let _ = reply.send(entities.map(|entities| Entities { entities, tokens }));
        }
        job @ (Job::Infer(..) | Job::Generate(..)) => reply_err(job, wrong()),
    }
}

fn expired(ctx: &WorkerCtx) -> TaskError {
    TaskError::Expired {
        model: ctx.name.clone(),
    }
}

/// Marks requests whose caller has gone or whose deadline passed; returns whether any
/// request changed its fate.
fn refresh_fates(jobs: &[Job], requests: &mut [Request]) -> bool {
    let now = Instant::now();
    let mut changed = false;
    for (job, req) in jobs.iter().zip(requests.iter_mut()) {
        if req.fate == Fate::Wanted {
            let f = fate(job, now);
            if f != Fate::Wanted {
                req.fate = f;
                changed = true;
            }
        }
    }
    changed
}

pub(crate) fn reply_err(job: Job, e: TaskError) {
    // A dropped receiver means the caller gave up; nothing to tell it.
    match job {
        Job::Embed(.., r) => drop(r.send(Err(e))),
        Job::Classify(.., r) => drop(r.send(Err(e))),
        Job::Entities(.., r) => drop(r.send(Err(e))),
        Job::Infer(.., r) => drop(r.send(Err(e))),
        Job::Generate(g) => drop(g.tx.send(Err(e))),
    }
}

/// Sorts every text of every request by token count and runs them in sub-batches. Before
/// each sub-batch, requests whose caller has gone or whose deadline passed are dropped, so
/// an abandoned or late request costs at most the sub-batch already running.
fn run_sorted(
    session: &mut Session,
    ctx: &WorkerCtx,
    encoder: &TextEncoder,
    kind: Kind,
    jobs: &[Job],
    requests: &mut [Request],
) -> Result<(), TaskError> {
    let mut order: Vec<(usize, usize)> = requests
        .iter()
        .enumerate()
        .flat_map(|(r, req)| (0..req.encs.len()).map(move |t| (r, t)))
        .collect();
    order.sort_by_key(|&rt| enc_of(requests, rt).map_or(0, Encoding::len));
    let mut start = 0usize;
    while start < order.len() {
        if refresh_fates(jobs, requests) {
            let rest: Vec<(usize, usize)> = order
                .split_off(start)
                .into_iter()
                .filter(|&(r, _)| requests.get(r).is_some_and(|q| q.fate == Fate::Wanted))
                .collect();
            order.extend(rest);
            if start >= order.len() {
                break;
            }
        }
        let pending = order.get(start..).unwrap_or_default();
        let pace = Pace {
            ns_per_token: ctx.ns_per_token.load(Ordering::Relaxed),
            now: Instant::now(),
        };
        let rows = pending
            .get(..sub_batch(pending, requests, &ctx.limits, pace))
            .unwrap_or(pending);
        let encs: Vec<Encoding> = rows
            .iter()
            .filter_map(|&rt| enc_of(requests, rt).cloned())
            .collect();
        let batch = encoder.pad(&encs);
        let started = Instant::now();
        let (shape, data) = run_tokens(session, ctx, &batch)?;
        ctx.record_pace(started.elapsed(), batch.batch.saturating_mul(batch.seq));
        ctx.stats.record_run(batch.batch);
        ctx.stats
            .tokens
            .fetch_add(batch.tokens as u64, Ordering::Relaxed);
        let outs = postprocess(ctx, kind, &batch, &shape, &data, rows, requests)?;
        for (&(r, t), o) in rows.iter().zip(outs) {
            if let Some(slot) = requests.get_mut(r).and_then(|q| q.out.get_mut(t)) {
                *slot = Some(o);
            }
        }
        start = start.saturating_add(rows.len().max(1));
    }
    Ok(())
}

/// Text `t` of request `r`.
fn enc_of(requests: &[Request], (r, t): (usize, usize)) -> Option<&Encoding> {
    requests.get(r).and_then(|q| q.encs.get(t))
}

/// How many of `pending` (sorted by length) the next sub-batch takes: at least one, then
/// more while it stays within the limits. Sorted, so the newest row is the longest and sets
/// the padded width; stop when padding would exceed a quarter of the real tokens (on CPUs,
/// padded tokens cost as much as real ones).
fn sub_batch(
    pending: &[(usize, usize)],
    requests: &[Request],
    limits: &BatchLimits,
    pace: Pace,
) -> usize {
    let deadline_of = |&(r, _): &(usize, usize)| requests.get(r).and_then(|q| q.deadline);
    let mut rows_of = pending
        .iter()
        .map(|rt| (enc_of(requests, *rt).map_or(0, Encoding::len), deadline_of(rt)));
    let Some((first, mut deadline)) = rows_of.next() else {
        return 0;
    };
    let (mut rows, mut real) = (1usize, first);
    for (width, d) in rows_of {
        if rows >= limits.max_batch {
            break;
        }
        let next = rows.saturating_add(1);
        let padded = next.saturating_mul(width);
        if padded > limits.max_tokens
            || padded.saturating_mul(4) > real.saturating_add(width).saturating_mul(5)
        {
            break;
        }
        // The earliest deadline of the rows so far must still be met with this row in.
        let earliest = match (deadline, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if earliest.is_some_and(|e| !pace.ends_by(padded, e)) {
            break;
        }
        deadline = earliest;
        real = real.saturating_add(width);
        rows = next;
    }
    rows
}

/// How fast the model has been running, to size sub-batches that hold requests with a
/// deadline: such a sub-batch grows only while its estimated run ends by the earliest of
/// them, so a request stopped at its deadline leaves at most about its own budget of work
/// behind (a plugin's inference calls cannot keep the model busy long after it was stopped).
#[derive(Clone, Copy)]
struct Pace {
    ns_per_token: u64,
    now: Instant,
}

impl Pace {
    fn ends_by(self, padded_tokens: usize, deadline: Instant) -> bool {
        if self.ns_per_token == 0 {
            return true; // no run measured yet
        }
        let ns = self
            .ns_per_token
            .saturating_mul(u64::try_from(padded_tokens).unwrap_or(u64::MAX));
        self.now
            .checked_add(Duration::from_nanos(ns))
            .is_some_and(|end| end <= deadline)
    }
}

impl WorkerCtx {
    /// Folds one run's time per padded token into the moving average (weight 1/8).
    fn record_pace(&self, took: Duration, padded_tokens: usize) {
        let Ok(tokens) = u64::try_from(padded_tokens) else {
            return;
        };
        if tokens == 0 {
            return;
        }
        let sample = u64::try_from(took.as_nanos())
            .unwrap_or(u64::MAX)
            .checked_div(tokens)
            .unwrap_or(0);
        let old = self.ns_per_token.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old.saturating_mul(7).saturating_add(sample) / 8
        };
        self.ns_per_token.store(new, Ordering::Relaxed);
    }
}

fn postprocess(
    ctx: &WorkerCtx,
    kind: Kind,
    batch: &TokenBatch,
    shape: &[usize],
    data: &[f32],
    rows: &[(usize, usize)],
    requests: &[Request],
) -> Result<Vec<Out>, TaskError> {
    let labels = || {
        ctx.labels
            .as_deref()
            .ok_or_else(|| ctx.fail("model has no labels"))
    };
    Ok(match kind {
        Kind::Embed => {
            let vectors = if let &[_, dim] = shape {
                // Already pooled by the graph: [batch, dim].
                data.chunks(dim.max(1))
                    .map(|c| {
                        let mut v = c.to_vec();
                        if ctx.normalize {
                            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                            v.iter_mut().for_each(|x| *x /= n);
                        }
                        v
                    })
                    .collect()
            } else {
                text::pool(
                    data,
                    &batch.mask,
                    batch.batch,
                    batch.seq,
                    ctx.pooling == Pooling::Cls,
                    ctx.normalize,
                )
            };
            vectors.into_iter().map(Out::Vector).collect()
        }
        Kind::Classify => {
            let labels = labels()?;
            let &[_, n] = shape else {
                return Err(ctx.fail(format!(
                    "expected logits [batch, {}], got {shape:?}",
                    labels.len()
                )));
            };
            if n != labels.len() {
                return Err(ctx.fail(format!(
                    "expected logits [batch, {}], got {shape:?}",
                    labels.len()
                )));
            }
            data.chunks(n.max(1))
                .map(|row| Out::Scores(text::label_scores(row, labels)))
                .collect()
        }
        Kind::Entities => {
            let labels = labels()?;
            let wrong = || {
                ctx.fail(format!(
                    "expected logits [batch, seq, {}], got {shape:?}",
                    labels.len()
                ))
            };
            let &[_, seq, n] = shape else {
                return Err(wrong());
            };
            if n != labels.len() {
                return Err(wrong());
            }
            let row = seq.saturating_mul(n).max(1);
            rows.iter()
                .zip(data.chunks(row))
                .map(|(&(r, t), logits)| {
                    let req = requests.get(r);
                    match (req.and_then(|q| q.texts.get(t)), enc_of(requests, (r, t))) {
                        (Some(text), Some(enc)) => Ok(Out::Entities(text::merge_entities(
                            text, enc, logits, labels,
                        ))),
                        _ => Err(ctx.fail("a row of the batch has no text")),
                    }
                })
                .collect::<Result<_, _>>()?
        }
    })
}

/// Runs the text model on a padded batch; returns the first output as (shape, data).
fn run_tokens(
    session: &mut Session,
    ctx: &WorkerCtx,
    batch: &TokenBatch,
) -> Result<(Vec<usize>, Vec<f32>), TaskError> {
    let shape = vec![batch.batch as i64, batch.seq as i64];
    let mut inputs: Vec<(String, ort::value::DynValue)> = Vec::with_capacity(3);
    for name in &ctx.input_names {
        let data = match name.as_str() {
            "input_ids" => batch.ids.clone(),
            "attention_mask" => batch.mask.clone(),
            "token_type_ids" => batch.type_ids.clone(),
            other => {
                return Err(ctx.fail(format!(
                    "text models take input_ids, attention_mask, token_type_ids; the graph also needs {other}"
                )));
            }
        };
        let v = ort::value::Tensor::from_array((shape.clone(), data)).map_err(|e| ctx.fail(e))?;
        inputs.push((name.clone(), v.into_dyn()));
    }
    let outputs = session.run(inputs).map_err(|e| ctx.fail(e))?;
    let (_, first) = outputs
        .iter()
        .next()
        .ok_or_else(|| ctx.fail("the graph has no outputs"))?;
    let (shape, data) = first
        .try_extract_tensor::<f32>()
        .map_err(|e| ctx.fail(e))?;
    let shape = shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| ctx.fail(format!("the graph's output has shape {shape:?}")))?;
    Ok((shape, data.to_vec()))
}

pub(crate) fn run_infer(session: &mut Session, ctx: &WorkerCtx, job: Job) {
    let (inputs, wanted, reply) = match job {
        Job::Infer(inputs, wanted, reply) => (inputs, wanted, reply),
        other => return reply_err(other, ctx.fail("a text job reached the graph runner")),
    };
    if reply.is_closed() {
        return; // the caller has gone: spend nothing on it
    }
    let _ = reply.send(run_raw(session, ctx, &inputs, wanted.as_deref()));
}

fn run_raw(
    session: &mut Session,
    ctx: &WorkerCtx,
    inputs: &[NamedTensor],
    wanted: Option<&[String]>,
) -> Result<Vec<NamedTensor>, TaskError> {
    let values = inputs
        .iter()
        .map(|t| Ok((t.name.clone(), tensor::to_ort(t).map_err(|e| ctx.fail(e))?)))
        .collect::<Result<Vec<_>, TaskError>>()?;
    let outputs = session.run(values).map_err(|e| ctx.fail(e))?;
    let mut result = Vec::new();
    for (name, value) in outputs.iter() {
        if wanted.is_none_or(|w| w.iter().any(|n| n == name)) {
            result.push(tensor::from_ort(name, &value)?);
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::Token;

    fn request(tokens: usize, deadline: Option<Instant>) -> Request {
        let toks = (0..tokens)
            .map(|i| Token::new(1, "a".into(), (i, i.saturating_add(1))))
            .collect();
        Request {
            texts: Vec::new(),
            encs: vec![Encoding::from_tokens(toks, 0)],
            out: vec![None],
            fate: Fate::Wanted,
            deadline,
        }
    }

    fn rows(requests: &[Request], pace: Pace) -> usize {
        let pending: Vec<(usize, usize)> = (0..requests.len()).map(|r| (r, 0)).collect();
        let limits = BatchLimits {
            max_batch: 32,
            max_tokens: 8192,
            ..BatchLimits::default()
        };
        sub_batch(&pending, requests, &limits, pace)
    }

    #[test]
    fn a_sub_batch_with_a_deadline_is_sized_to_end_by_it() {
        let now = Instant::now();
        let pace = Pace {
            ns_per_token: 1_000, // 100 tokens: 100 µs
            now,
        };
        let soon = Some(now + Duration::from_micros(250));
        // No deadline: all four rows of 100 tokens run together.
        let free: Vec<Request> = (0..4).map(|_| request(100, None)).collect();
        assert_eq!(rows(&free, pace), 4);
        // One row due in 250 µs: two rows (200 µs) fit, a third would not.
        let mut due = free;
        due[2] = request(100, soon);
        assert_eq!(rows(&due, pace), 2);
        // Before any run was measured nothing is known, so nothing is cut.
        assert_eq!(rows(&due, Pace { ns_per_token: 0, now }), 4);
        // A deadline too close for even one row still runs that row (it cannot be split).
        let tight: Vec<Request> = (0..4).map(|_| request(100, Some(now))).collect();
        assert_eq!(rows(&tight, pace), 1);
    }

    #[test]
    fn the_pace_is_a_moving_average_of_time_per_padded_token() {
        let ctx = WorkerCtx {
            name: "m".into(),
            pooling: Pooling::Mean,
            normalize: false,
            encoder: None,
            labels: None,
            input_names: Vec::new(),
            limits: BatchLimits::default(),
            stats: Arc::default(),
            ns_per_token: AtomicU64::new(0),
        };
        ctx.record_pace(Duration::from_micros(800), 100); // 8,000 ns
        assert_eq!(ctx.ns_per_token.load(Ordering::Relaxed), 8_000);
        ctx.record_pace(Duration::from_micros(1600), 100); // 16,000 ns: 1/8 of the way
        assert_eq!(ctx.ns_per_token.load(Ordering::Relaxed), 9_000);
        ctx.record_pace(Duration::from_micros(5), 0); // no tokens: ignored
        assert_eq!(ctx.ns_per_token.load(Ordering::Relaxed), 9_000);
    }
}
