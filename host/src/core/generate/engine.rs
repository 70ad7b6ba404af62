//! The engine thread of one generation model (`gen-<model>`): admits queued requests
//! between decode steps (prefill, then they join the running batch), runs one decode step
//! for every running sequence at once, and drops finished or cancelled ones.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use ort::session::Session;
use ort::value::{DynValue, Tensor};

use super::cache::{Geometry, RowCache, cut_row, join_rows};
use super::grammar::ConstraintState;
use super::sampling::{History, Rng, log_sum_exp, sample, top_n};
use super::{
    Detokenizer, EventSender, FinishReason, GenEvent, GenerateRequest, StopMatcher,
    TokenLogprob, Usage,
};
use crate::core::engine::{Job, TaskError};
use crate::core::text::TextEncoder;
use crate::core::worker::{WorkerCtx, run_infer};

/// What the engine thread needs besides its session.
pub(crate) struct GenCtx {
    pub(crate) name: String,
    pub(crate) encoder: TextEncoder,
    /// `past_key_values.*` input names, and the `present.*` output each is fed from.
    pub(crate) cache: Vec<(String, String)>,
    pub(crate) geometry: Geometry,
    pub(crate) context_length: usize,
    pub(crate) max_batch: usize,
    pub(crate) eos: Vec<u32>,
    /// For raw-tensor jobs (`/v2` infer) on the same session.
    pub(crate) raw: std::sync::Arc<WorkerCtx>,
}

impl GenCtx {
    fn fail(&self, e: impl std::fmt::Display) -> TaskError {
        TaskError::Runtime {
            model: self.name.clone(),
            message: e.to_string(),
        }
    }
}

/// One running sequence.
struct Seq {
    tx: EventSender,
    req: GenerateRequest,
    history: History,
    rng: Rng,
    detok: Detokenizer,
    stop: StopMatcher,
    /// Its state under the request's constraint (a grammar), if any.
    constraint: Option<Box<dyn ConstraintState>>,
    generated: usize,
    /// The token fed at the next step.
    next: u32,
    /// Positions in the cache.
    len: usize,
    /// Its own cache until it joins the batch.
    cache: Option<RowCache>,
    done: bool,
}

/// The running batch: its sequences (row order) and cache tensors `[rows, kv, past, hd]`.
#[derive(Default)]
struct Batch {
    seqs: Vec<Seq>,
    values: Vec<DynValue>,
    past: usize,
}

/// The loop of the engine thread; returns when the model is dropped.
pub(crate) fn run(mut session: Session, ctx: &GenCtx, rx: &Receiver<Job>) {
    let mut batch = Batch::default();
    loop {
        let mut joined = Vec::new();
        if batch.seqs.is_empty() {
            match rx.recv() {
                Ok(job) => admit(&mut session, ctx, job, &mut joined),
                Err(_) => return, // every sender dropped: the model was unloaded
            }
        }
        while batch.seqs.len().saturating_add(joined.len()) < ctx.max_batch {
            match rx.try_recv() {
                Ok(job) => admit(&mut session, ctx, job, &mut joined),
                Err(_) => break,
            }
        }
        let leaving = batch.seqs.iter().any(|s| s.done || s.tx.is_closed());
        let joining = joined.iter().any(|s: &Seq| !s.done);
        if (leaving || joining)
            && let Err(e) = relayout(ctx, &mut batch, joined)
        {
            fail_all(&mut batch, &e);
            continue;
        }
        if batch.seqs.is_empty() {
            continue;
        }
        if let Err(e) = step(&mut session, ctx, &mut batch) {
            fail_all(&mut batch, &e);
        }
    }
}

fn fail_all(batch: &mut Batch, e: &TaskError) {
    for s in batch.seqs.drain(..) {
        let _ = s.tx.send(Err(e.clone()));
    }
    *batch = Batch::default();
}

fn admit(session: &mut Session, ctx: &GenCtx, job: Job, joined: &mut Vec<Seq>) {
    ctx.raw.stats.queued.fetch_sub(1, Ordering::Relaxed);
    match job {
        Job::Generate(g) => {
            if g.tx.is_closed() {
                return; // the caller has gone: spend nothing on it
            }
            let tx = g.tx.clone();
            match prefill(session, ctx, *g) {
                Ok(seq) => joined.push(seq),
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        }
        Job::Infer(..) => run_infer(session, &ctx.raw, job),
        other => crate::core::worker::reply_err(
            other,
            TaskError::WrongTask {
                model: ctx.name.clone(),
                task: "generate",
                wanted: "a text task",
            },
        ),
    }
}

fn tensor_i64(shape: [usize; 2], data: Vec<i64>, ctx: &GenCtx) -> Result<DynValue, TaskError> {
    Tensor::from_array((shape.map(|d| d as i64).to_vec(), data))
        .map(|t| t.into_dyn())
        .map_err(|e| ctx.fail(e))
}

fn cache_value(data: Vec<f32>, rows: usize, past: usize, ctx: &GenCtx) -> Result<DynValue, TaskError> {
    let g = ctx.geometry;
    let shape = vec![rows as i64, g.heads as i64, past as i64, g.head_dim as i64];
    Tensor::from_array((shape, data))
        .map(|t| t.into_dyn())
        .map_err(|e| ctx.fail(e))
}

/// Runs the prompt alone (no cache), keeps its cache, and picks its first token.
fn prefill(session: &mut Session, ctx: &GenCtx, job: super::GenJob) -> Result<Seq, TaskError> {
    let req = job.request;
    let n = req.prompt.len();
    let ids: Vec<i64> = req.prompt.iter().map(|&t| i64::from(t)).collect();
    let positions: Vec<i64> = (0..n).map(|p| p as i64).collect();
    let mut inputs = vec![
        ("input_ids".to_string(), tensor_i64([1, n], ids, ctx)?),
        ("attention_mask".to_string(), tensor_i64([1, n], vec![1; n], ctx)?),
        ("position_ids".to_string(), tensor_i64([1, n], positions, ctx)?),
    ];
    for (past, _) in &ctx.cache {
        inputs.push((past.clone(), cache_value(Vec::new(), 1, 0, ctx)?));
    }
    let mut out = session.run(inputs).map_err(|e| ctx.fail(e))?;
    let mut data = Vec::with_capacity(ctx.cache.len());
    for (_, present) in &ctx.cache {
        let v = out
            .get(present)
            .ok_or_else(|| ctx.fail(format!("the graph has no output {present}")))?;
        let (_, d) = v.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?;
        data.push(d.to_vec());
    }
    let logits = out
        .remove("logits")
        .ok_or_else(|| ctx.fail("the graph has no output logits"))?;
    let (_, logits) = logits.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?;
    let vocab = logits.len().checked_div(n).unwrap_or(0);
    let last = logits
        .chunks_exact(vocab.max(1))
        .next_back()
        .ok_or_else(|| ctx.fail("the model returned no logits"))?;
    ctx.raw.stats.tokens.fetch_add(n as u64, Ordering::Relaxed);
    ctx.raw.stats.gen_prefills.fetch_add(1, Ordering::Relaxed);
    let mut history = History::default();
    history.prompt.extend(req.prompt.iter().copied());
    let rng = req.sampling.seed.map_or_else(Rng::from_time, Rng::new);
    let mut seq = Seq {
        tx: job.tx,
        stop: StopMatcher::new(&req.stop),
        constraint: req.constraint.as_ref().map(|c| c.start()),
        req,
        history,
        rng,
        detok: Detokenizer::default(),
        generated: 0,
        next: 0,
        len: n,
        cache: Some(RowCache { len: n, data }),
        done: false,
    };
    advance(ctx, &mut seq, last);
    Ok(seq)
}

/// Rebuilds the batch cache for the sequences that stay plus those that join.
fn relayout(ctx: &GenCtx, batch: &mut Batch, joined: Vec<Seq>) -> Result<(), TaskError> {
    let old = std::mem::take(batch);
    let mut stay = Vec::new();
    let mut tensors = Vec::with_capacity(old.values.len());
    for v in &old.values {
        tensors.push(v.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?.1);
    }
    for (row, mut s) in old.seqs.into_iter().enumerate() {
        if s.done {
            continue;
        }
        if s.tx.is_closed() {
            ctx.raw.stats.gen_cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let pad = old.past.saturating_sub(s.len);
        let data = tensors
            .iter()
            .map(|t| cut_row(t, ctx.geometry, old.past, row, pad))
            .collect();
        s.cache = Some(RowCache { len: s.len, data });
        stay.push(s);
    }
    stay.extend(joined.into_iter().filter(|s| !s.done));
    let rows: Vec<&RowCache> = stay.iter().filter_map(|s| s.cache.as_ref()).collect();
    let (joined_tensors, past) = join_rows(&rows, ctx.cache.len(), ctx.geometry);
    let n = stay.len();
    for data in joined_tensors {
        batch.values.push(cache_value(data, n, past, ctx)?);
    }
    for s in &mut stay {
        s.cache = None;
    }
    batch.seqs = stay;
    batch.past = past;
    Ok(())
}

/// One decode step for every running sequence; the outputs' `present.*` become the cache.
fn step(session: &mut Session, ctx: &GenCtx, batch: &mut Batch) -> Result<(), TaskError> {
    let rows = batch.seqs.len();
    let total = batch.past.saturating_add(1);
    let ids = batch.seqs.iter().map(|s| i64::from(s.next)).collect();
    let positions = batch.seqs.iter().map(|s| s.len as i64).collect();
    let mut mask = Vec::with_capacity(rows.saturating_mul(total));
    for s in &batch.seqs {
        let pad = batch.past.saturating_sub(s.len);
        mask.extend((0..total).map(|i| i64::from(i >= pad)));
    }
    let mut inputs = vec![
        ("input_ids".to_string(), tensor_i64([rows, 1], ids, ctx)?),
        ("attention_mask".to_string(), tensor_i64([rows, total], mask, ctx)?),
        ("position_ids".to_string(), tensor_i64([rows, 1], positions, ctx)?),
    ];
    for ((past, _), v) in ctx.cache.iter().zip(std::mem::take(&mut batch.values)) {
        inputs.push((past.clone(), v));
    }
    let mut out = session.run(inputs).map_err(|e| ctx.fail(e))?;
    let stats = &ctx.raw.stats;
    stats.gen_steps.fetch_add(1, Ordering::Relaxed);
    stats.tokens.fetch_add(rows as u64, Ordering::Relaxed);
    stats.record_run(rows);
    for (_, present) in &ctx.cache {
        let v = out
            .remove(present)
            .ok_or_else(|| ctx.fail(format!("the graph has no output {present}")))?;
        batch.values.push(v);
    }
    batch.past = total;
    let logits = out
        .remove("logits")
        .ok_or_else(|| ctx.fail("the graph has no output logits"))?;
    let (_, logits) = logits.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?;
    let vocab = logits.len().checked_div(rows).unwrap_or(0).max(1);
    for (s, row) in batch.seqs.iter_mut().zip(logits.chunks_exact(vocab)) {
        s.len = s.len.saturating_add(1);
        advance(ctx, s, row);
    }
    Ok(())
}

/// Picks a sequence's next token from its logits and sends what it adds.
fn advance(ctx: &GenCtx, s: &mut Seq, logits: &[f32]) {
    let token = match s.constraint.as_mut() {
        // Tokens the grammar refuses get −∞ before the draw; log-probabilities stay the model's.
        Some(c) => {
            let mut masked = logits.to_vec();
            c.mask(&mut masked, &ctx.eos);
            let token = sample(&masked, &s.req.sampling, &s.history, &mut s.rng);
            c.accept(token);
            token
        }
        None => sample(logits, &s.req.sampling, &s.history, &mut s.rng),
    };
    s.generated = s.generated.saturating_add(1);
    ctx.raw.stats.gen_tokens.fetch_add(1, Ordering::Relaxed);
    let seen = s.history.generated.entry(token).or_insert(0);
    *seen = seen.saturating_add(1);
    s.next = token;
    let (logprob, top) = match s.req.logprobs {
        Some(n) => logprobs(ctx, logits, token, n),
        None => (None, Vec::new()),
    };
    let usage = Usage {
        prompt_tokens: s.req.prompt.len(),
        completion_tokens: s.generated,
    };
    let event = |text: String, logprob, top_logprobs| GenEvent::Token {
        text,
        token_id: token,
        logprob,
        top_logprobs,
    };
    if ctx.eos.contains(&token) {
        // The end-of-sequence token is not text: only what was held back goes out.
        let mut rest = s.detok.flush(&ctx.encoder).unwrap_or_default();
        let (mut out, hit) = s.stop.push(&rest);
        if !hit {
            out.push_str(&s.stop.flush());
        }
        rest = out;
        if !rest.is_empty() {
            let _ = s.tx.send(Ok(event(rest, None, Vec::new())));
        }
        return finish(s, FinishReason::Stop, usage);
    }
    let mut piece = match s.detok.push(&ctx.encoder, token) {
        Ok(p) => p,
        Err(e) => {
            let _ = s.tx.send(Err(e.into()));
            s.done = true;
            return;
        }
    };
    let full = s.generated >= s.req.max_tokens || s.len.saturating_add(1) >= ctx.context_length;
    if full {
        piece.push_str(&s.detok.flush(&ctx.encoder).unwrap_or_default());
    }
    let (mut out, hit) = s.stop.push(&piece);
    if full && !hit {
        out.push_str(&s.stop.flush());
    }
    let _ = s.tx.send(Ok(event(out, logprob, top)));
    if hit {
        finish(s, FinishReason::Stop, usage);
    } else if full {
        finish(s, FinishReason::Length, usage);
    }
}

fn finish(s: &mut Seq, finish_reason: FinishReason, usage: Usage) {
    let _ = s.tx.send(Ok(GenEvent::Done {
        finish_reason,
        usage,
    }));
    s.done = true;
}

fn token_logprob(ctx: &GenCtx, logits: &[f32], lse: f32, id: u32) -> TokenLogprob {
    TokenLogprob {
        token_id: id,
        token: ctx.encoder.decode(&[id], false).unwrap_or_default(),
        logprob: logits.get(id as usize).map_or(f32::NEG_INFINITY, |l| l - lse),
    }
}

fn logprobs(
    ctx: &GenCtx,
    logits: &[f32],
    token: u32,
    n: usize,
) -> (Option<TokenLogprob>, Vec<TokenLogprob>) {
    let lse = log_sum_exp(logits);
    let top = top_n(logits, n)
        .into_iter()
        .filter_map(|i| u32::try_from(i).ok())
        .map(|i| token_logprob(ctx, logits, lse, i))
        .collect();
    (Some(token_logprob(ctx, logits, lse, token)), top)
}
