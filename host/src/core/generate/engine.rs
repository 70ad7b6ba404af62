//! The engine thread of one generation model (`gen-<model>`): admits queued requests
//! between decode steps (prefill, then they join the running batch), runs one decode step
//! for every running sequence at once, and drops finished or cancelled ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use ort::session::Session;
use ort::value::{DynValue, Tensor};

use super::cache::{Geometry, RowCache, cut_row, join_rows};
use super::fair::{Fair, StepCost};
use super::tenant::{LOCAL_TENANT, Priority, Ticket};
use super::grammar::ConstraintState;
use super::lookup::{self, Gate};
use super::sampling::{History, Rng, log_sum_exp, sample, top_n};
use super::{
    Detokenizer, EventSender, FinishReason, GenEvent, GenerateRequest, StopMatcher,
    TokenLogprob, Usage,
};
use crate::core::engine::{Job, TaskError};
use crate::core::text::TextEncoder;
use crate::core::worker::{TPOT_BUCKETS, TTFT_BUCKETS, WorkerCtx, run_infer};

/// What the engine thread needs besides its session.
pub(crate) struct GenCtx {
    pub(crate) name: String,
    pub(crate) encoder: TextEncoder,
    /// `past_key_values.*` input names, and the `present.*` output each is fed from.
    pub(crate) cache: Vec<(String, String)>,
    pub(crate) geometry: Geometry,
    /// The graph takes [`super::LOGITS_TO_KEEP`]: a prefill asks for its last position only.
    pub(crate) keep_logits: bool,
    pub(crate) context_length: usize,
    pub(crate) max_batch: usize,
    pub(crate) eos: Vec<u32>,
    /// `[generation] scheduler`.
    pub(crate) scheduler: crate::config::Scheduler,
    /// `[generation] quantum`: decode steps between plans of the fair scheduler.
    pub(crate) quantum: usize,
    /// Most requests the fair scheduler holds in its queues (the model's queue bound).
    pub(crate) queue_capacity: usize,
    /// `[generation] fair_step_budget`: the cost-aware cap of the fair scheduler (0 = off).
    pub(crate) fair_step_budget: f64,
    /// `[generation] speculative`: prompt-lookup drafts for a lone running sequence.
    pub(crate) speculative: Option<Drafts>,
    /// For raw-tensor jobs (`/v2` infer) on the same session.
    pub(crate) raw: std::sync::Arc<WorkerCtx>,
}

/// `[generation] draft_tokens` and `draft_min_match`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drafts {
    pub(crate) tokens: usize,
    pub(crate) min_match: usize,
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
    /// Its own cache until it joins the batch (and while paused).
    cache: Option<RowCache>,
    done: bool,
    /// Its `Done` event, held until the gauges no longer count it ([`send_end`]).
    end: Option<GenEvent>,
    /// Its place in its tenant's counts; taken when it ends.
    ticket: Option<Ticket>,
    tenant: Arc<str>,
    weight: u64,
    /// When its request was queued (time to first token is measured from here).
    submitted: Instant,
    /// When its last token was sampled (time per output token).
    last_token: Option<Instant>,
    /// Prompt and generated tokens, in order (where drafts are looked up); empty while
    /// speculation is off.
    tokens: Vec<u32>,
    /// Whether its next step may draft (drafts that keep too little back off).
    gate: Gate,
}

/// The running batch: its sequences (row order) and cache tensors `[rows, kv, past, hd]`.
#[derive(Default)]
struct Batch {
    seqs: Vec<Seq>,
    values: Vec<DynValue>,
    past: usize,
}

/// The loop of the engine thread; returns when the model is dropped.
pub(crate) fn run(session: Session, ctx: &GenCtx, rx: &Receiver<Job>) {
    match ctx.scheduler {
        crate::config::Scheduler::Fifo => run_fifo(session, ctx, rx),
        crate::config::Scheduler::Fair => run_fair(session, ctx, rx),
    }
}

/// First come, first served: requests join the batch in arrival order while it has room.
fn run_fifo(mut session: Session, ctx: &GenCtx, rx: &Receiver<Job>) {
    let mut batch = Batch::default();
    loop {
        let mut pending = Vec::new();
        if batch.seqs.is_empty() {
            match rx.recv() {
                Ok(job) => admit(&mut session, ctx, job, &mut pending),
                Err(_) => return, // every sender dropped: the model was unloaded
            }
        }
        while batch.seqs.len().saturating_add(pending.len()) < ctx.max_batch {
            match rx.try_recv() {
                Ok(job) => admit(&mut session, ctx, job, &mut pending),
                Err(_) => break,
            }
        }
        let mut joined = Vec::new();
        prefill_all(&mut session, ctx, pending, &mut joined);
        let leaving = batch.seqs.iter().any(|s| s.done || s.tx.is_closed());
        let joining = joined.iter().any(|s: &Seq| !s.done);
        if (leaving || joining)
            && let Err(e) = relayout(ctx, &mut batch, joined, &[]).map(drop)
        {
            fail_all(ctx, &mut batch, &e);
            continue;
        }
        if batch.seqs.is_empty() {
            continue;
        }
        if let Err(e) = step(&mut session, ctx, &mut batch) {
            fail_all(ctx, &mut batch, &e);
        }
    }
}

/// What waits in the fair scheduler's queues.
enum Waiting {
    /// A request not started yet.
    New(Box<super::GenJob>),
    /// A sequence paused to give its slot to another tenant (its cache kept).
    Paused(Box<Seq>),
}

impl Waiting {
    fn gone(&self) -> bool {
        match self {
            Self::New(g) => g.tx.is_closed(),
            Self::Paused(s) => s.tx.is_closed(),
        }
    }
}

fn tenant_of(ticket: Option<&Ticket>) -> (Arc<str>, u64) {
    ticket.map_or_else(
        || (Arc::from(LOCAL_TENANT), Priority::Normal.weight()),
        |t| (t.tenant().clone(), t.weight()),
    )
}

/// Deficit round-robin across tenants (`fair.rs`): requests wait in per-tenant queues; the
/// batch's slots are planned again when a request arrives, a sequence ends, or every
/// `quantum` steps while requests wait. A tenant over its share has sequences paused
/// (their cache rows kept aside, resumed later without a new prefill).
fn run_fair(mut session: Session, ctx: &GenCtx, rx: &Receiver<Job>) {
    let mut batch = Batch::default();
    let mut queues: Fair<Waiting> = Fair::default();
    let mut since_plan = 0usize;
    // Step time per batch size (the cost-aware cap), and whether the last plan was capped.
    let mut cost = StepCost::default();
    let mut capped = false;
    loop {
        let mut arrived = false;
        if batch.seqs.is_empty() && queues.waiting() == 0 {
            match rx.recv() {
                Ok(job) => arrived |= enqueue(&mut session, ctx, job, &mut queues),
                Err(_) => return, // every sender dropped: the model was unloaded
            }
        }
        while queues.waiting() < ctx.queue_capacity {
            match rx.try_recv() {
                Ok(job) => arrived |= enqueue(&mut session, ctx, job, &mut queues),
                Err(_) => break,
            }
        }
        for w in queues.remove_if(Waiting::gone) {
            if let Waiting::New(_) = w {
                ctx.raw.stats.queued.fetch_sub(1, Ordering::Relaxed);
            } else {
                ctx.raw.stats.gen_paused.fetch_sub(1, Ordering::Relaxed);
                ctx.raw.stats.gen_cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        let leaving = batch.seqs.iter().any(|s| s.done || s.tx.is_closed());
        // Also when nothing runs (a prefill failed): what waits must get the free slots.
        // While capped, the plan follows the measured step times every quantum too.
        let due = (since_plan >= ctx.quantum || batch.seqs.is_empty())
            && (queues.waiting() > 0 || capped);
        if arrived || leaving || due {
            since_plan = 0;
            match replan(&mut session, ctx, &mut batch, &mut queues, &cost) {
                Ok(c) => capped = c,
                Err(e) => {
                    fail_all(ctx, &mut batch, &e);
                    continue;
                }
            }
        }
        if batch.seqs.is_empty() {
            continue;
        }
        let rows = batch.seqs.len();
        let started = Instant::now();
        match step(&mut session, ctx, &mut batch) {
            // A speculative step is not what the cost-aware cap predicts (a 1-token step).
            Ok(false) => cost.record(rows, started.elapsed().as_secs_f64()),
            Ok(true) => {}
            Err(e) => fail_all(ctx, &mut batch, &e),
        }
        since_plan = since_plan.saturating_add(1);
    }
}

/// Takes a job off the model's queue: generation requests into their tenant's queue (true),
/// raw-tensor jobs run at once.
fn enqueue(session: &mut Session, ctx: &GenCtx, job: Job, queues: &mut Fair<Waiting>) -> bool {
    match job {
        Job::Generate(g) => {
            let (tenant, weight) = tenant_of(g.ticket.as_ref());
            queues.push(&tenant, weight, Waiting::New(g));
            true
        }
        other => {
            admit(session, ctx, other, &mut Vec::new());
            false
        }
    }
}

/// Plans the batch's slots and applies the plan: pauses, resumes, prefills, one relayout.
/// Returns whether the cost-aware cap held the plan below `max_batch`.
fn replan(
    session: &mut Session,
    ctx: &GenCtx,
    batch: &mut Batch,
    queues: &mut Fair<Waiting>,
    cost: &StepCost,
) -> Result<bool, TaskError> {
    let mut running: Vec<(Arc<str>, u64, usize)> = Vec::new();
    for s in batch.seqs.iter().filter(|s| !s.done && !s.tx.is_closed()) {
        match running.iter_mut().find(|(t, _, _)| *t == s.tenant) {
            Some(r) => r.2 = r.2.saturating_add(1),
            None => running.push((s.tenant.clone(), s.weight, 1)),
        }
    }
    let tenants = queues.tenants(&running);
    let slots = super::fair::slots(cost, ctx.fair_step_budget, tenants, ctx.max_batch);
    let capped = slots < ctx.max_batch;
    let plan = queues.plan(&running, slots);
    // The most recent rows of a tenant over its share are paused.
    let mut pause = Vec::new();
    for (tenant, n) in &plan.pause {
        let rows = batch
            .seqs
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, s)| s.tenant == *tenant && !s.done && !s.tx.is_closed())
            .map(|(i, _)| i)
            .take(*n);
        pause.extend(rows);
    }
    let mut joined = Vec::new();
    let mut pending = Vec::new();
    for w in plan.admit {
        match w {
            Waiting::New(g) => admit(session, ctx, Job::Generate(g), &mut pending),
            Waiting::Paused(s) => {
                ctx.raw.stats.gen_paused.fetch_sub(1, Ordering::Relaxed);
                joined.push(*s);
            }
        }
    }
    prefill_all(session, ctx, pending, &mut joined);
    let leaving = batch.seqs.iter().any(|s| s.done || s.tx.is_closed());
    if !leaving && pause.is_empty() && joined.iter().all(|s| s.done) {
        return Ok(capped);
    }
    for s in relayout(ctx, batch, joined, &pause)? {
        ctx.raw.stats.gen_paused.fetch_add(1, Ordering::Relaxed);
        let (tenant, weight) = (s.tenant.clone(), s.weight);
        queues.push_front(&tenant, weight, Waiting::Paused(Box::new(s)));
    }
    Ok(capped)
}

fn fail_all(ctx: &GenCtx, batch: &mut Batch, e: &TaskError) {
    for s in batch.seqs.drain(..) {
        let _ = s.tx.send(Err(e.clone()));
    }
    *batch = Batch::default();
    publish(ctx, batch);
}

/// Publishes the running batch's size and KV-cache positions (`/metrics`).
fn publish(ctx: &GenCtx, batch: &Batch) {
    let stats = &ctx.raw.stats;
    let running = batch.seqs.iter().filter(|s| !s.done).count();
    stats.gen_running.store(running, Ordering::Relaxed);
    // Rows of ended sequences are dropped at the next relayout: not counted as in use.
    let held = running.saturating_mul(batch.past);
    stats
        .gen_kv_used
        .store(u64::try_from(held).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Takes a job off the queue: a generation request waits in `pending` for the prefill of
/// everything admitted with it ([`prefill_all`]); a raw-tensor job runs at once.
fn admit(session: &mut Session, ctx: &GenCtx, job: Job, pending: &mut Vec<super::GenJob>) {
    ctx.raw.stats.queued.fetch_sub(1, Ordering::Relaxed);
    match job {
        Job::Generate(mut g) => {
            if g.tx.is_closed() {
                return; // the caller has gone: spend nothing on it
            }
            if let Some(t) = g.ticket.as_mut() {
                t.admitted();
            }
            pending.push(*g);
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

fn tensor_i64<const N: usize>(shape: [usize; N], data: Vec<i64>, ctx: &GenCtx) -> Result<DynValue, TaskError> {
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

/// Most positions (rows × longest prompt) one prefill run may hold: its activations, and for
/// a graph without [`super::LOGITS_TO_KEEP`] its logits `[rows, longest, vocab]` f32 (1024 ×
/// 49,152 × 4 B = 201 MB for smollm2; `[rows, 1, vocab]` with it). A longer prompt runs alone.
const PREFILL_POSITIONS: usize = 1024;

/// Splits prompts (by length) into prefill groups: ascending length, a prompt joins the
/// group while the padded positions stay within [`PREFILL_POSITIONS`] and at most half of
/// them are padding. Returns groups of indices into `lens`.
fn prefill_groups(lens: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens.get(i).copied().unwrap_or(0));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut sum = 0usize;
    for i in order {
        let len = lens.get(i).copied().unwrap_or(0);
        let fits = groups.last().is_some_and(|g| {
            let rows = g.len().saturating_add(1);
            let padded = len.saturating_mul(rows);
            padded <= PREFILL_POSITIONS && padded <= sum.saturating_add(len).saturating_mul(2)
        });
        match groups.last_mut() {
            Some(g) if fits => {
                g.push(i);
                sum = sum.saturating_add(len);
            }
            _ => {
                groups.push(vec![i]);
                sum = len;
            }
        }
    }
    groups
}

/// Prefills the requests admitted together: prompts of similar length run as one
/// left-padded batch ([`prefill_groups`]); each sequence keeps its own cache rows (without
/// the padding) and picks its first token. A failed run fails the requests of its group.
fn prefill_all(
    session: &mut Session,
    ctx: &GenCtx,
    jobs: Vec<super::GenJob>,
    joined: &mut Vec<Seq>,
) {
    if jobs.is_empty() {
        return;
    }
    let lens: Vec<usize> = jobs.iter().map(|j| j.request.prompt.len()).collect();
    let groups = prefill_groups(&lens);
    let mut slots: Vec<Option<super::GenJob>> = jobs.into_iter().map(Some).collect();
    for group in groups {
        let group: Vec<super::GenJob> = group
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect();
        let txs: Vec<EventSender> = group.iter().map(|j| j.tx.clone()).collect();
        match prefill(session, ctx, group) {
            Ok(seqs) => joined.extend(seqs),
            Err(e) => {
                for tx in txs {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Runs the prompts of `jobs` as one batch `[rows, longest]` (left-padded, no cache), keeps
/// each one's cache and picks its first token. A single prompt runs `[1, prompt]`, unpadded.
fn prefill(
    session: &mut Session,
    ctx: &GenCtx,
    jobs: Vec<super::GenJob>,
) -> Result<Vec<Seq>, TaskError> {
    let rows = jobs.len();
    let width = jobs.iter().map(|j| j.request.prompt.len()).max().unwrap_or(0);
    let cells = rows.saturating_mul(width);
    let (mut ids, mut mask, mut positions) = (
        Vec::with_capacity(cells),
        Vec::with_capacity(cells),
        Vec::with_capacity(cells),
    );
    for j in &jobs {
        let n = j.request.prompt.len();
        let pad = width.saturating_sub(n);
        ids.extend(std::iter::repeat_n(0i64, pad));
        ids.extend(j.request.prompt.iter().map(|&t| i64::from(t)));
        mask.extend(std::iter::repeat_n(0i64, pad));
        mask.extend(std::iter::repeat_n(1i64, n));
        positions.extend(std::iter::repeat_n(0i64, pad));
        positions.extend((0..n).map(|p| p as i64));
    }
    let mut inputs = vec![
        ("input_ids".to_string(), tensor_i64([rows, width], ids, ctx)?),
        ("attention_mask".to_string(), tensor_i64([rows, width], mask, ctx)?),
        ("position_ids".to_string(), tensor_i64([rows, width], positions, ctx)?),
    ];
    for (past, _) in &ctx.cache {
        inputs.push((past.clone(), cache_value(Vec::new(), rows, 0, ctx)?));
    }
    // Only each row's last position is sampled (padding is on the left, so it is the run's
    // last position): a graph that can, computes the head for that position alone.
    let kept = if ctx.keep_logits {
        inputs.push((super::LOGITS_TO_KEEP.to_string(), tensor_i64([1], vec![1], ctx)?));
        1
    } else {
        width
    };
    let mut out = session.run(inputs).map_err(|e| ctx.fail(e))?;
    let mut presents = Vec::with_capacity(ctx.cache.len());
    for (_, present) in &ctx.cache {
        let v = out
            .remove(present)
            .ok_or_else(|| ctx.fail(format!("the graph has no output {present}")))?;
        presents.push(v);
    }
    let mut tensors = Vec::with_capacity(presents.len());
    for v in &presents {
        tensors.push(v.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?.1);
    }
    let logits = out
        .remove("logits")
        .ok_or_else(|| ctx.fail("the graph has no output logits"))?;
    let (_, logits) = logits.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?;
    let logit_rows = rows.saturating_mul(kept);
    let vocab = logits.len().checked_div(logit_rows).unwrap_or(0);
    if vocab == 0 || vocab.checked_mul(logit_rows) != Some(logits.len()) {
        return Err(ctx.fail(format!(
            "the model returned {} logits for {rows} prompts of {width} positions ({kept} kept per prompt)",
            logits.len()
        )));
    }
    let stats = &ctx.raw.stats;
    stats.gen_prefill_runs.fetch_add(1, Ordering::Relaxed);
    let mut seqs = Vec::with_capacity(rows);
    // Row r's last position (the prompt's last token: padding is on the left) is at
    // r × kept + kept − 1.
    let lasts = logits.chunks_exact(vocab).skip(kept.saturating_sub(1)).step_by(kept.max(1));
    for (row, (job, last)) in jobs.into_iter().zip(lasts).enumerate() {
        let n = job.request.prompt.len();
        let pad = width.saturating_sub(n);
        let data = tensors
            .iter()
            .map(|t| cut_row(t, ctx.geometry, width, row, pad))
            .collect();
        stats.tokens.fetch_add(n as u64, Ordering::Relaxed);
        stats.gen_prefills.fetch_add(1, Ordering::Relaxed);
        let mut seq = start(job, RowCache { len: n, data }, ctx.speculative.is_some());
        advance(ctx, &mut seq, last);
        // Not in the running batch yet, so no gauge counts it.
        send_end(&mut seq);
        seqs.push(seq);
    }
    Ok(seqs)
}

/// A sequence of `job` with its prefilled cache, before its first token.
/// `drafts`: whether drafts are looked up (speculation on), so its tokens are kept in order.
fn start(job: super::GenJob, cache: RowCache, drafts: bool) -> Seq {
    let req = job.request;
    let mut tokens = Vec::new();
    if drafts {
        tokens.reserve(req.prompt.len().saturating_add(req.max_tokens.min(4096)));
        tokens.extend_from_slice(&req.prompt);
    }
    let (tenant, weight) = tenant_of(job.ticket.as_ref());
    let mut history = History::default();
    history.prompt.extend(req.prompt.iter().copied());
    let rng = req.sampling.seed.map_or_else(Rng::from_time, Rng::new);
    Seq {
        tx: job.tx,
        stop: StopMatcher::new(&req.stop),
        constraint: req.constraint.as_ref().map(|c| c.start()),
        len: cache.len,
        cache: Some(cache),
        req,
        history,
        rng,
        detok: Detokenizer::default(),
        generated: 0,
        next: 0,
        done: false,
        end: None,
        ticket: job.ticket,
        tenant,
        weight,
        submitted: job.submitted,
        last_token: None,
        tokens,
        gate: Gate::default(),
    }
}

/// Rebuilds the batch cache for the sequences that stay plus those that join; the rows in
/// `pause` leave with their cache and are returned.
fn relayout(
    ctx: &GenCtx,
    batch: &mut Batch,
    joined: Vec<Seq>,
    pause: &[usize],
) -> Result<Vec<Seq>, TaskError> {
    let old = std::mem::take(batch);
    let mut stay = Vec::new();
    let mut paused = Vec::new();
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
        if pause.contains(&row) {
            paused.push(s);
        } else {
            stay.push(s);
        }
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
    publish(ctx, batch);
    Ok(paused)
}

/// One decode step for every running sequence; the outputs' `present.*` become the cache.
/// A lone sequence with a draft runs a speculative step instead ([`spec_step`]); returns
/// whether it did.
fn step(session: &mut Session, ctx: &GenCtx, batch: &mut Batch) -> Result<bool, TaskError> {
    if let Some(draft) = draft_of(ctx, batch) {
        spec_step(session, ctx, batch, &draft)?;
        return Ok(true);
    }
    plain_step(session, ctx, batch)?;
    Ok(false)
}

/// The draft of the batch's only sequence, if speculation is on, the batch holds one row
/// and a draft fits within its token and context limits.
fn draft_of(ctx: &GenCtx, batch: &mut Batch) -> Option<Vec<u32>> {
    let drafts = ctx.speculative?;
    let [s] = batch.seqs.as_mut_slice() else {
        return None;
    };
    if s.done || s.tx.is_closed() || !s.gate.ready() {
        return None;
    }
    // The step emits up to 1 + k tokens at positions len..=len + k: both must stay within
    // max_tokens and the context.
    let by_tokens = s.req.max_tokens.saturating_sub(s.generated).saturating_sub(1);
    let by_context = ctx.context_length.saturating_sub(s.len.saturating_add(2));
    let k = drafts.tokens.min(by_tokens).min(by_context);
    let draft = lookup::draft(&s.tokens, drafts.min_match, k);
    (!draft.is_empty()).then_some(draft)
}

/// A speculative step of the lone sequence: its next token and `draft` run together; the
/// sampler picks a token from each position's logits in turn (as one step each would), and
/// the drafted tokens it picked are kept — the first it did not pick ends the step and is
/// the next token. Cache positions of the drafted tokens not kept are cut off.
fn spec_step(
    session: &mut Session,
    ctx: &GenCtx,
    batch: &mut Batch,
    draft: &[u32],
) -> Result<(), TaskError> {
    let Some(s) = batch.seqs.first() else {
        return Ok(());
    };
    let width = draft.len().saturating_add(1);
    let total = batch.past.saturating_add(width);
    let pad = batch.past.saturating_sub(s.len);
    let ids = std::iter::once(s.next)
        .chain(draft.iter().copied())
        .map(i64::from)
        .collect();
    let positions = (s.len..s.len.saturating_add(width)).map(|p| p as i64).collect();
    let mask = (0..total).map(|i| i64::from(i >= pad)).collect();
    let (mut presents, logits) = run_step(session, ctx, batch, [1, width], ids, positions, mask)?;
    let Some(s) = batch.seqs.first_mut() else {
        return Ok(());
    };
    let stats = &ctx.raw.stats;
    stats.gen_draft_tokens.fetch_add(draft.len() as u64, Ordering::Relaxed);
    let (_, logits) = logits.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?;
    let vocab = logits.len().checked_div(width).unwrap_or(0).max(1);
    let mut kept = 0usize;
    for (i, row) in logits.chunks_exact(vocab).enumerate() {
        s.len = s.len.saturating_add(1);
        advance(ctx, s, row);
        if s.done || draft.get(i) != Some(&s.next) {
            break;
        }
        kept = kept.saturating_add(1);
    }
    stats.gen_draft_accepted.fetch_add(kept as u64, Ordering::Relaxed);
    s.gate.update(kept);
    // Valid positions: the past, the token fed, and the drafted tokens kept.
    let valid = batch.past.saturating_add(1).saturating_add(kept);
    if valid < total {
        for v in &mut presents {
            let (_, t) = v.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?;
            *v = cache_value(cut_positions(t, ctx.geometry, total, valid), 1, valid, ctx)?;
        }
    }
    batch.values = presents;
    batch.past = valid;
    publish(ctx, batch);
    for s in &mut batch.seqs {
        send_end(s);
    }
    Ok(())
}

/// The first `keep` positions of a one-row cache tensor `[1, heads, past, head_dim]`.
fn cut_positions(t: &[f32], g: Geometry, past: usize, keep: usize) -> Vec<f32> {
    let line = past.saturating_mul(g.head_dim);
    let want = keep.min(past).saturating_mul(g.head_dim);
    let mut out = Vec::with_capacity(want.saturating_mul(g.heads));
    for head in t.chunks_exact(line.max(1)).take(g.heads) {
        out.extend_from_slice(head.get(..want).unwrap_or_default());
    }
    out
}

/// Runs one decode step on the batch cache (moved in as `past_key_values.*`): `ids` and
/// `positions` `[rows, width]`, `mask` `[rows, past + width]`; counts it. Returns the
/// `present.*` values (graph input order) and the logits.
fn run_step(
    session: &mut Session,
    ctx: &GenCtx,
    batch: &mut Batch,
    [rows, width]: [usize; 2],
    ids: Vec<i64>,
    positions: Vec<i64>,
    mask: Vec<i64>,
) -> Result<(Vec<DynValue>, DynValue), TaskError> {
    let total = batch.past.saturating_add(width);
    let mut inputs = vec![
        ("input_ids".to_string(), tensor_i64([rows, width], ids, ctx)?),
        ("attention_mask".to_string(), tensor_i64([rows, total], mask, ctx)?),
        ("position_ids".to_string(), tensor_i64([rows, width], positions, ctx)?),
    ];
    for ((past, _), v) in ctx.cache.iter().zip(std::mem::take(&mut batch.values)) {
        inputs.push((past.clone(), v));
    }
    let mut out = session.run(inputs).map_err(|e| ctx.fail(e))?;
    let stats = &ctx.raw.stats;
    stats.gen_steps.fetch_add(1, Ordering::Relaxed);
    stats
        .tokens
        .fetch_add(rows.saturating_mul(width) as u64, Ordering::Relaxed);
    stats.record_run(rows);
    let mut presents = Vec::with_capacity(ctx.cache.len());
    for (_, present) in &ctx.cache {
        let v = out
            .remove(present)
            .ok_or_else(|| ctx.fail(format!("the graph has no output {present}")))?;
        presents.push(v);
    }
    let logits = out
        .remove("logits")
        .ok_or_else(|| ctx.fail("the graph has no output logits"))?;
    Ok((presents, logits))
}

/// One decode step for every running sequence, one token each.
fn plain_step(session: &mut Session, ctx: &GenCtx, batch: &mut Batch) -> Result<(), TaskError> {
    let rows = batch.seqs.len();
    let total = batch.past.saturating_add(1);
    let ids = batch.seqs.iter().map(|s| i64::from(s.next)).collect();
    let positions = batch.seqs.iter().map(|s| s.len as i64).collect();
    let mut mask = Vec::with_capacity(rows.saturating_mul(total));
    for s in &batch.seqs {
        let pad = batch.past.saturating_sub(s.len);
        mask.extend((0..total).map(|i| i64::from(i >= pad)));
    }
    let (presents, logits) = run_step(session, ctx, batch, [rows, 1], ids, positions, mask)?;
    batch.values = presents;
    batch.past = total;
    let (_, logits) = logits.try_extract_tensor::<f32>().map_err(|e| ctx.fail(e))?;
    let vocab = logits.len().checked_div(rows).unwrap_or(0).max(1);
    for (s, row) in batch.seqs.iter_mut().zip(logits.chunks_exact(vocab)) {
        s.len = s.len.saturating_add(1);
        advance(ctx, s, row);
    }
    // A sequence that ended in this step no longer counts as running before its caller
    // learns that it ended (a scrape right after the answer sees it gone).
    publish(ctx, batch);
    for s in &mut batch.seqs {
        send_end(s);
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
    let now = Instant::now();
    let stats = &ctx.raw.stats;
    match s.last_token {
        None => stats.gen_ttft.observe(&TTFT_BUCKETS, now.saturating_duration_since(s.submitted)),
        Some(t) => stats.gen_tpot.observe(&TPOT_BUCKETS, now.saturating_duration_since(t)),
    }
    s.last_token = Some(now);
    s.generated = s.generated.saturating_add(1);
    stats.gen_tokens.fetch_add(1, Ordering::Relaxed);
    if let Some(t) = s.ticket.as_mut() {
        t.token();
    }
    let seen = s.history.generated.entry(token).or_insert(0);
    *seen = seen.saturating_add(1);
    s.next = token;
    if ctx.speculative.is_some() {
        s.tokens.push(token);
    }
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
            s.ticket = None;
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

/// Ends `s`; its `Done` event goes out with [`send_end`], once the gauges are published.
fn finish(s: &mut Seq, finish_reason: FinishReason, usage: Usage) {
    // The stream stops counting against its tenant before the caller can see it ended.
    s.ticket = None;
    s.end = Some(GenEvent::Done {
        finish_reason,
        usage,
    });
    s.done = true;
}

/// Sends the `Done` event of a sequence that ended, if it has not gone out yet.
fn send_end(s: &mut Seq) {
    if let Some(end) = s.end.take() {
        let _ = s.tx.send(Ok(end));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_draft_is_cut_out_of_the_cache() {
        let g = Geometry {
            heads: 2,
            head_dim: 2,
        };
        // [1, 2 heads, 3 positions, 2]: keep the first 2 positions of each head.
        let t: Vec<f32> = (0..12).map(|x| x as f32).collect();
        assert_eq!(
            cut_positions(&t, g, 3, 2),
            vec![0.0, 1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0]
        );
        assert_eq!(cut_positions(&t, g, 3, 3), t);
        assert!(cut_positions(&t, g, 3, 0).is_empty());
    }

    #[test]
    fn prompts_of_similar_length_share_a_prefill() {
        // Equal lengths: one group.
        assert_eq!(prefill_groups(&[39; 16]), vec![(0..16).collect::<Vec<_>>()]);
        // Shortest first; a prompt whose padding would be more than half of the run starts
        // a new group, and so does one past the positions bound.
        assert_eq!(
            prefill_groups(&[10, 300, 12, 11, 600]),
            vec![vec![0, 3, 2], vec![1], vec![4]]
        );
        assert_eq!(prefill_groups(&[200; 8]), vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7]]);
        assert_eq!(prefill_groups(&[10, 10, 10, 100]), vec![vec![0, 1, 2], vec![3]]);
        assert!(prefill_groups(&[]).is_empty());
    }
}
