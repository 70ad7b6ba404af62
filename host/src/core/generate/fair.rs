//! The fair scheduler of an engine thread (`[generation] scheduler = "fair"`,
//! docs/generation.md "Scheduling"): per-tenant queues, and a plan of who holds the running
//! batch's `max_batch` slots.
//!
//! A slot is one sequence decoding one token per step, so a tenant's share of slots is its
//! share of the decode tokens. A plan divides the slots among the tenants with work by
//! weighted max-min fairness (each tenant's weight is its priority class): a tenant that
//! wants less than its share keeps what it wants and the rest is shared again among the
//! others. Slots that cannot be divided evenly go by deficit round-robin: each unsatisfied
//! tenant earns its weighted fraction of them as deficit, the largest deficits take them and
//! pay one slot each, so over successive plans every tenant gets exactly its share. The
//! engine plans again when a request arrives, a sequence ends, or every `quantum` decode
//! steps while requests wait (a slot holds for at most `quantum` tokens before the plan is
//! revised: the quantum of the round-robin, in tokens).
//!
//! The plan keeps running sequences first (a tenant over its share has its most recent
//! sequences paused, their cache rows kept aside), then resumes paused ones, then admits
//! queued requests, each tenant's in arrival order.

use std::collections::VecDeque;
use std::sync::Arc;

/// Deficit units per slot.
const UNIT: u64 = 1000;

struct Lane<T> {
    tenant: Arc<str>,
    weight: u64,
    waiting: VecDeque<T>,
    deficit: u64,
}

/// Per-tenant queues of `T` (a queued request or a paused sequence) in round-robin order.
pub(crate) struct Fair<T> {
    lanes: Vec<Lane<T>>,
}

impl<T> Default for Fair<T> {
    fn default() -> Self {
        Self { lanes: Vec::new() }
    }
}

/// What to change in the running batch.
pub(crate) struct Plan<T> {
    /// Per tenant, how many of its running sequences to pause.
    pub(crate) pause: Vec<(Arc<str>, usize)>,
    /// What joins the batch, in order (tenants interleaved, fewest running first).
    pub(crate) admit: Vec<T>,
}

impl<T> Fair<T> {
    fn with_lane(&mut self, tenant: &Arc<str>, weight: u64, f: impl FnOnce(&mut VecDeque<T>)) {
        let weight = weight.max(1);
        if let Some(l) = self.lanes.iter_mut().find(|l| l.tenant == *tenant) {
            l.weight = weight;
            f(&mut l.waiting);
            return;
        }
        let mut waiting = VecDeque::new();
        f(&mut waiting);
        self.lanes.push(Lane {
            tenant: tenant.clone(),
            weight,
            waiting,
            deficit: 0,
        });
    }

    /// Queues a new request of `tenant` behind its others.
    pub(crate) fn push(&mut self, tenant: &Arc<str>, weight: u64, item: T) {
        self.with_lane(tenant, weight, |q| q.push_back(item));
    }

    /// Puts a paused sequence of `tenant` before its queued requests.
    pub(crate) fn push_front(&mut self, tenant: &Arc<str>, weight: u64, item: T) {
        self.with_lane(tenant, weight, |q| q.push_front(item));
    }

    /// Tenants with work: those with items waiting and those in `running`.
    pub(crate) fn tenants(&self, running: &[(Arc<str>, u64, usize)]) -> usize {
        let waiting = self.lanes.iter().filter(|l| !l.waiting.is_empty());
        let extra = running
            .iter()
            .filter(|(t, _, n)| *n > 0 && !waiting.clone().any(|l| l.tenant == *t))
            .count();
        waiting.count().saturating_add(extra)
    }

    /// Items waiting, all tenants.
    pub(crate) fn waiting(&self) -> usize {
        self.lanes.iter().map(|l| l.waiting.len()).sum()
    }

    /// Drops the waiting items `gone` says are gone (callers that went away); returns them.
    pub(crate) fn remove_if(&mut self, gone: impl Fn(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for l in &mut self.lanes {
            let (drop, keep): (VecDeque<T>, VecDeque<T>) =
                std::mem::take(&mut l.waiting).into_iter().partition(&gone);
            l.waiting = keep;
            out.extend(drop);
        }
        out
    }

    /// Divides `slots` among the tenants: `running` gives each tenant's running sequences
    /// (tenant, weight, count). Returns what to pause and what to admit.
    pub(crate) fn plan(&mut self, running: &[(Arc<str>, u64, usize)], slots: usize) -> Plan<T> {
        for (t, w, _) in running {
            self.with_lane(t, *w, |_| ());
        }
        let run = |t: &Arc<str>| {
            running
                .iter()
                .filter(|(r, _, _)| r == t)
                .map(|(_, _, n)| *n)
                .sum::<usize>()
        };
        let demand: Vec<usize> = self
            .lanes
            .iter()
            .map(|l| run(&l.tenant).saturating_add(l.waiting.len()))
            .collect();
        let weights: Vec<u64> = self.lanes.iter().map(|l| l.weight).collect();
        let mut deficits: Vec<u64> = self.lanes.iter().map(|l| l.deficit).collect();
        let alloc = shares(&demand, &weights, &mut deficits, slots);
        for (l, d) in self.lanes.iter_mut().zip(deficits) {
            l.deficit = d;
        }
        let mut pause = Vec::new();
        let mut want: Vec<(usize, usize, usize)> = Vec::new(); // (lane, running, to admit)
        for (i, (l, a)) in self.lanes.iter().zip(&alloc).enumerate() {
            let r = run(&l.tenant);
            if r > *a {
                pause.push((l.tenant.clone(), r.saturating_sub(*a)));
            } else if *a > r {
                want.push((i, r, a.saturating_sub(r)));
            }
        }
        // Interleave: the tenant with fewest running goes first, then the one admitting
        // fewest (a single request's first token comes before a flood's).
        want.sort_by_key(|&(i, r, n)| (r, n, i));
        let mut admit = Vec::new();
        let mut left = true;
        while left {
            left = false;
            for (i, _, n) in &mut want {
                if *n == 0 {
                    continue;
                }
                if let Some(item) = self.lanes.get_mut(*i).and_then(|l| l.waiting.pop_front()) {
                    admit.push(item);
                    *n = n.saturating_sub(1);
                    left = true;
                }
            }
        }
        // Tenants with nothing left leave the ring; the ring turns so that ties go to
        // another tenant next time.
        let busy: Vec<bool> = self
            .lanes
            .iter()
            .map(|l| !l.waiting.is_empty() || run(&l.tenant) > 0)
            .collect();
        let mut keep = busy.into_iter();
        self.lanes.retain(|_| keep.next().unwrap_or(false));
        if !self.lanes.is_empty() {
            self.lanes.rotate_left(1);
        }
        Plan { pause, admit }
    }
}

/// Weighted max-min shares of `slots` for `demand` (see the module doc); `deficits` (in
/// 1/1000 slot) carry the round-robin of the slots left over between plans.
fn shares(demand: &[usize], weights: &[u64], deficits: &mut [u64], slots: usize) -> Vec<usize> {
    let mut alloc = vec![0usize; demand.len()];
    let mut remaining = slots;
    let active = |alloc: &[usize]| -> Vec<usize> {
        (0..demand.len())
            .filter(|&i| alloc.get(i) < demand.get(i))
            .collect()
    };
    loop {
        let act = active(&alloc);
        let total: u64 = act.iter().filter_map(|&i| weights.get(i)).sum();
        if act.is_empty() || remaining == 0 || total == 0 {
            break;
        }
        let mut gave = 0usize;
        for &i in &act {
            let w = weights.get(i).copied().unwrap_or(1);
            let share = (remaining as u64).saturating_mul(w).checked_div(total).unwrap_or(0);
            let (Some(a), Some(d)) = (alloc.get_mut(i), demand.get(i)) else {
                continue;
            };
            let g = usize::try_from(share).unwrap_or(usize::MAX).min(d.saturating_sub(*a));
            *a = a.saturating_add(g);
            gave = gave.saturating_add(g);
        }
        remaining = remaining.saturating_sub(gave);
        if gave == 0 {
            break;
        }
    }
    let act = active(&alloc);
    if remaining > 0 && !act.is_empty() {
        let total: u64 = act.iter().filter_map(|&i| weights.get(i)).sum::<u64>().max(1);
        for &i in &act {
            let w = weights.get(i).copied().unwrap_or(1);
            if let Some(d) = deficits.get_mut(i) {
                let earned = (remaining as u64)
                    .saturating_mul(w)
                    .saturating_mul(UNIT)
                    .checked_div(total)
                    .unwrap_or(0);
                *d = d.saturating_add(earned);
            }
        }
        let mut order = act;
        // Largest deficit first; ties in ring order (the sort is stable).
        order.sort_by_key(|&i| std::cmp::Reverse(deficits.get(i).copied().unwrap_or(0)));
        for i in order.into_iter().take(remaining) {
            if let Some(a) = alloc.get_mut(i) {
                *a = a.saturating_add(1);
            }
            if let Some(d) = deficits.get_mut(i) {
                *d = d.saturating_sub(UNIT);
            }
        }
    }
    for (i, d) in deficits.iter_mut().enumerate() {
        if alloc.get(i) >= demand.get(i) {
            *d = 0; // a tenant without backlog keeps no credit (as in DRR)
        }
    }
    alloc
}

/// Weight of a new measurement in a batch size's moving average.
const EWMA_ALPHA: f64 = 0.25;

/// The time of a decode step per batch size (rows), measured online by the engine thread of
/// one model: an exponentially weighted moving average per size. Sizes not measured yet are
/// predicted from the measured ones: interpolated between the nearest below and above,
/// extrapolated along the line through the two nearest on one side, and with one size
/// measured, proportional to the rows (which overstates a large step against a small one,
/// so the cap starts low and grows as smaller steps are measured).
#[derive(Debug, Clone, Default)]
pub(crate) struct StepCost {
    /// Seconds per step, by rows − 1.
    ewma: Vec<Option<f64>>,
}

impl StepCost {
    /// Records one step of `rows` rows that took `secs` seconds.
    pub(crate) fn record(&mut self, rows: usize, secs: f64) {
        let Some(i) = rows.checked_sub(1) else { return };
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        if self.ewma.len() <= i {
            self.ewma.resize(i.saturating_add(1), None);
        }
        if let Some(slot) = self.ewma.get_mut(i) {
            *slot = Some(match *slot {
                Some(old) => old + EWMA_ALPHA * (secs - old),
                None => secs,
            });
        }
    }

    fn measured(&self) -> impl DoubleEndedIterator<Item = (f64, f64)> + '_ {
        self.ewma
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|c| ((i as f64) + 1.0, c)))
    }

    /// The predicted time of a step of `rows` rows; `None` before any step was measured.
    pub(crate) fn predict(&self, rows: usize) -> Option<f64> {
        if let Some(Some(c)) = rows.checked_sub(1).and_then(|i| self.ewma.get(i)) {
            return Some(*c);
        }
        let n = rows as f64;
        let below: Vec<(f64, f64)> = self.measured().filter(|&(r, _)| r < n).collect();
        let above: Vec<(f64, f64)> = self.measured().filter(|&(r, _)| r > n).collect();
        let line = |(r1, c1): (f64, f64), (r2, c2): (f64, f64)| {
            let slope = (c2 - c1) / (r2 - r1);
            c1 + slope * (n - r1)
        };
        let p = match (below.last(), above.first()) {
            (Some(&l), Some(&u)) => line(l, u),
            (Some(&l), None) => match below.len().checked_sub(2).and_then(|i| below.get(i)) {
                Some(&l2) => line(l2, l),
                None => l.1 * n / l.0,
            },
            (None, Some(&u)) => match above.get(1) {
                Some(&u2) => line(u, u2),
                None => u.1 * n / u.0,
            },
            (None, None) => return None,
        };
        // A line may reach zero or below far from its points: a step never costs less
        // than a proportional share of the smallest measured one.
        let floor = self.measured().next().map_or(0.0, |(r, c)| c * n.min(r) / r);
        Some(p.max(floor))
    }

    /// The most rows, between `floor` and `max`, whose predicted step time stays within
    /// `budget` × that of a 1-row step (sizes tried upwards, stopping at the first over);
    /// `max` while nothing is measured.
    pub(crate) fn cap(&self, budget: f64, floor: usize, max: usize) -> usize {
        let Some(one) = self.predict(1) else { return max };
        let limit = one * budget;
        let mut n = 1usize;
        while n < max && self.predict(n.saturating_add(1)).is_some_and(|c| c <= limit) {
            n = n.saturating_add(1);
        }
        n.max(floor).min(max)
    }
}

/// The slots of the next plan: `max_batch`, or with the cost-aware cap on (`budget` > 0,
/// `[generation] fair_step_budget`) and more than one tenant with work, the rows whose
/// predicted step stays within `budget` × a 1-row step, never fewer than the tenants (each
/// gets its row).
pub(crate) fn slots(cost: &StepCost, budget: f64, tenants: usize, max_batch: usize) -> usize {
    if budget > 0.0 && tenants > 1 {
        cost.cap(budget, tenants, max_batch)
    } else {
        max_batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Arc<str> {
        s.into()
    }

    #[test]
    fn a_single_stream_is_admitted_before_a_flood_and_gets_its_slot() {
        let mut f: Fair<(char, u32)> = Fair::default();
        for i in 0..16 {
            f.push(&t("heavy"), 2, ('h', i));
        }
        f.push(&t("light"), 2, ('l', 0));
        let p = f.plan(&[], 8);
        assert!(p.pause.is_empty());
        // Light (no running stream) goes first; then heavy's oldest seven.
        let order = p.admit.clone();
        assert_eq!(order[0], ('l', 0));
        assert_eq!(order[1..], [('h', 0), ('h', 1), ('h', 2), ('h', 3), ('h', 4), ('h', 5), ('h', 6)]);
        assert_eq!(f.waiting(), 9);
    }

    #[test]
    fn a_newcomer_preempts_the_tenant_over_its_share() {
        let mut f: Fair<u32> = Fair::default();
        f.push(&t("light"), 2, 1);
        // Heavy holds all 8 slots and has 8 more queued.
        for i in 0..8 {
            f.push(&t("heavy"), 2, 100 + i);
        }
        let p = f.plan(&[(t("heavy"), 2, 8)], 8);
        assert_eq!(p.pause, vec![(t("heavy"), 1)]);
        assert_eq!(p.admit, vec![1]);
    }

    #[test]
    fn weights_and_leftover_slots_follow_the_deficits() {
        // 7 slots, two equal backlogged tenants: 3.5 each; the odd slot alternates.
        let mut d = vec![0, 0];
        let a = shares(&[10, 10], &[2, 2], &mut d, 7);
        let b = shares(&[10, 10], &[2, 2], &mut d, 7);
        assert_eq!(a.iter().sum::<usize>(), 7);
        assert_ne!(a, b, "the odd slot goes to the other tenant the next time");
        assert_eq!(a[0] + b[0], 7);
        // Priority: high (4) against low (1) on 10 slots is 8:2.
        let mut d = vec![0, 0];
        assert_eq!(shares(&[20, 20], &[4, 1], &mut d, 10), vec![8, 2]);
        // A tenant wanting less keeps what it wants; the rest goes to the others.
        let mut d = vec![0, 0, 0];
        assert_eq!(shares(&[1, 30, 30], &[2, 2, 2], &mut d, 9), vec![1, 4, 4]);
        // Room for all: everyone runs everything.
        let mut d = vec![0, 0];
        assert_eq!(shares(&[3, 16], &[1, 4], &mut d, 32), vec![3, 16]);
        assert_eq!(d, vec![0, 0]);
    }

    #[test]
    fn over_many_plans_shares_are_exact() {
        // Three equal tenants always backlogged on 8 slots: 8/3 each on average.
        let mut d = vec![0, 0, 0];
        let mut got = [0usize; 3];
        for _ in 0..300 {
            for (g, a) in got.iter_mut().zip(shares(&[50, 50, 50], &[2, 2, 2], &mut d, 8)) {
                *g += a;
            }
        }
        assert_eq!(got, [800, 800, 800]);
    }

    #[test]
    fn idle_tenants_leave_the_ring_and_gone_items_are_removed() {
        let mut f: Fair<u32> = Fair::default();
        f.push(&t("a"), 2, 1);
        f.push(&t("b"), 2, 2);
        f.push(&t("b"), 2, 3);
        assert_eq!(f.remove_if(|&x| x == 2), vec![2]);
        let p = f.plan(&[], 4);
        assert_eq!(p.admit.len(), 2);
        assert_eq!(f.waiting(), 0);
        let _ = f.plan(&[], 4);
        assert!(f.lanes.is_empty());
    }

    /// A synthetic machine: a step of n rows costs 10 + 2n ms.
    fn linear(n: usize) -> f64 {
        (10.0 + 2.0 * n as f64) / 1000.0
    }

    #[test]
    fn step_costs_are_averaged_interpolated_and_extrapolated() {
        let mut c = StepCost::default();
        assert_eq!(c.predict(4), None);
        assert_eq!(c.cap(1.8, 2, 32), 32, "nothing measured: no cap");
        // One size known: proportional (a large step's relative cost overstated).
        c.record(16, linear(16));
        let p = c.predict(1).unwrap();
        assert!((p - 0.042 / 16.0).abs() < 1e-12);
        c.record(1, linear(1));
        // Between two measured sizes: on the line.
        assert!((c.predict(8).unwrap() - linear(8)).abs() < 1e-12);
        // Past the largest: along the line through the two largest.
        c.record(4, linear(4));
        assert!((c.predict(30).unwrap() - linear(30)).abs() < 1e-12);
        // The moving average follows a change of speed.
        for _ in 0..40 {
            c.record(1, 0.024);
        }
        assert!((c.predict(1).unwrap() - 0.024).abs() < 1e-4);
        // Nonsense is ignored.
        let before = c.predict(2);
        c.record(0, 1.0);
        c.record(2, f64::NAN);
        c.record(2, -1.0);
        assert_eq!(c.predict(2), before);
    }

    #[test]
    fn the_cap_keeps_the_predicted_step_within_the_budget() {
        let mut c = StepCost::default();
        for n in [1, 2, 17] {
            c.record(n, linear(n));
        }
        // 1.8 × 12 ms = 21.6 ms: 5 rows (20 ms) fit, 6 (22 ms) do not.
        assert_eq!(c.cap(1.8, 2, 32), 5);
        assert_eq!(slots(&c, 1.8, 2, 32), 5);
        // Alone, a tenant has the whole batch; off (0) means no cap.
        assert_eq!(slots(&c, 1.8, 1, 32), 32);
        assert_eq!(slots(&c, 0.0, 2, 32), 32);
        // Never fewer slots than tenants, never more than max_batch.
        assert_eq!(slots(&c, 1.8, 8, 32), 8);
        assert_eq!(slots(&c, 100.0, 2, 32), 32);
        assert_eq!(slots(&c, 1.8, 2, 3), 3);
        // Learning from the top down: only 17 rows measured, the cap starts low (the
        // proportional guess), the smaller step it runs is measured, and the cap grows.
        let mut c = StepCost::default();
        c.record(17, linear(17));
        let first = slots(&c, 1.8, 2, 32);
        assert_eq!(first, 2);
        c.record(first, linear(first));
        assert_eq!(slots(&c, 1.8, 2, 32), 5);
    }

    #[test]
    fn under_the_cap_the_light_tenant_keeps_its_row_and_the_heavy_one_the_rest() {
        let mut c = StepCost::default();
        for n in [1, 2, 17] {
            c.record(n, linear(n));
        }
        let mut f: Fair<u32> = Fair::default();
        // Heavy runs 16 rows alone: no cap.
        assert_eq!(f.tenants(&[(t("heavy"), 2, 16)]), 1);
        assert_eq!(slots(&c, 1.8, 1, 32), 32);
        // The light tenant's request arrives: two tenants, 5 slots, heavy pauses 12.
        f.push(&t("light"), 2, 1);
        let running = [(t("heavy"), 2, 16)];
        let n = slots(&c, 1.8, f.tenants(&running), 32);
        assert_eq!(n, 5);
        let p = f.plan(&running, n);
        assert_eq!(p.pause, vec![(t("heavy"), 12)]);
        assert_eq!(p.admit, vec![1]);
        // Heavy's paused rows wait; once light is done, heavy alone gets all 32 again.
        for i in 0..12 {
            f.push_front(&t("heavy"), 2, 100 + i);
        }
        let running = [(t("heavy"), 2, 4)];
        assert_eq!(f.tenants(&running), 1);
        let p = f.plan(&running, slots(&c, 1.8, 1, 32));
        assert!(p.pause.is_empty());
        assert_eq!(p.admit.len(), 12);
    }
}
