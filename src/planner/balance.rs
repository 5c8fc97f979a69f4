//! Replica placement: dropping replicas for RF decreases, placing the replicas that must move,
//! and (in rebalance mode) moving replicas from brokers above their target to brokers below.
//!
//! Every choice of broker is a minimum over an explicit key ending in the broker index, so ties
//! always break the same way.

use std::cmp::Reverse;

use super::PlanError;
use super::model::{Model, UNPLACED};
use super::rack::{RackView, same_rack};
use super::targets;

/// Replica counts of the target brokers, overall and per topic (flattened `topic * n + broker`).
pub(crate) struct Counts {
    n: usize,
    pub topic: Vec<u32>,
    pub total: Vec<u32>,
}

impl Counts {
    /// Counts of the replicas currently on target brokers.
    pub fn new(model: &Model) -> Counts {
        let n = model.n;
        let mut c = Counts {
            n,
            topic: vec![0; model.topics.len() * n],
            total: vec![0; n],
        };
        for p in &model.parts {
            for &b in &p.replicas {
                if b != UNPLACED && model.is_target(b) {
                    c.add(p.topic, b);
                }
            }
        }
        c
    }

    pub fn of(&self, t: u32, b: u32) -> u32 {
        self.topic[t as usize * self.n + b as usize]
    }

    pub fn add(&mut self, t: u32, b: u32) {
        self.topic[t as usize * self.n + b as usize] += 1;
        self.total[b as usize] += 1;
    }

    pub fn remove(&mut self, t: u32, b: u32) {
        self.topic[t as usize * self.n + b as usize] -= 1;
        self.total[b as usize] -= 1;
    }
}

/// A replica that must be placed: slot `slot` of part `part`, which held `origin` (a leaving
/// broker) or nothing (a replica an RF increase adds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Homeless {
    pub part: usize,
    pub slot: usize,
    pub origin: Option<u32>,
}

/// Applies replication-factor decreases, one replica at a time. Dropped first: a replica on a
/// leaving broker (that saves a move), unless dropping it would cost the partition rack
/// diversity that dropping another would not; then the replica on the most loaded broker (per
/// topic, then overall). The preferred leader is never dropped unless it is leaving.
pub(crate) fn reduce_replication(model: &mut Model) -> Result<(), PlanError> {
    if model.parts.iter().all(|p| p.rf >= p.replicas.len()) {
        return Ok(());
    }
    let mut counts = Counts::new(model);
    for i in 0..model.parts.len() {
        while model.parts[i].replicas.len() > model.parts[i].rf {
            let p = &model.parts[i];
            let racks_without = |s: usize| {
                let mut r: Vec<u32> = (0..p.replicas.len())
                    .filter(|&j| j != s)
                    .filter_map(|j| model.rack[p.replicas[j] as usize])
                    .collect();
                r.sort_unstable();
                r.dedup();
                r.len()
            };
            let now = racks_without(usize::MAX);
            let need = now.min(p.replicas.len() - 1).min(model.rack_count);
            let slot = (0..p.replicas.len())
                .filter(|&s| s > 0 || !model.is_target(p.replicas[0]))
                .max_by_key(|&s| {
                    let b = p.replicas[s];
                    let (tc, c) = if model.is_target(b) {
                        (counts.of(p.topic, b), counts.total[b as usize])
                    } else {
                        (0, 0)
                    };
                    (
                        racks_without(s) >= need,
                        !model.is_target(b),
                        tc,
                        c,
                        Reverse(b),
                    )
                })
                .ok_or_else(|| {
                    PlanError::Internal(
                        "a replication factor decrease found no replica to drop".into(),
                    )
                })?;
            let (t, b) = (p.topic, p.replicas[slot]);
            if model.is_target(b) {
                counts.remove(t, b);
            }
            model.parts[i].replicas.remove(slot);
        }
    }
    Ok(())
}

/// The replicas that must move: those on leaving brokers, and the slots an RF increase adds
/// (appended as [`UNPLACED`], after the existing replicas, so leadership is unchanged).
pub(crate) fn homeless(model: &mut Model) -> Vec<Homeless> {
    let mut out = Vec::new();
    for (i, p) in model.parts.iter_mut().enumerate() {
        for (slot, &b) in p.replicas.iter().enumerate() {
            if (b as usize) >= model.n {
                out.push(Homeless {
                    part: i,
                    slot,
                    origin: Some(b),
                });
            }
        }
        while p.replicas.len() < p.rf {
            out.push(Homeless {
                part: i,
                slot: p.replicas.len(),
                origin: None,
            });
            p.replicas.push(UNPLACED);
        }
    }
    out
}

fn holds(replicas: &[u32], slot: usize, b: u32) -> bool {
    replicas
        .iter()
        .enumerate()
        .any(|(i, &r)| i != slot && r == b)
}

/// The best broker for a slot under `key` (smaller is better) among target brokers that do not
/// hold the partition and keep its rack diversity; if none keeps it (cannot happen when the RF
/// fits the brokers, but a plan is better than a panic), among all that do not hold it.
fn best_broker<K: Ord>(
    model: &Model,
    part: usize,
    slot: usize,
    view: &RackView,
    mut key: impl FnMut(u32) -> K,
) -> Option<u32> {
    let replicas = &model.parts[part].replicas;
    let free = |b: &u32| !holds(replicas, slot, *b);
    (0..model.n as u32)
        .filter(free)
        .filter(|&b| view.allows(model, b))
        .min_by_key(|&b| key(b))
        .or_else(|| (0..model.n as u32).filter(free).min_by_key(|&b| key(b)))
}

/// Placement-only mode: water-fills the homeless replicas onto the target brokers, then
/// re-places them while that makes the counts strictly more balanced (see the module
/// documentation for the exact guarantee): single re-placements (`water_fill`), then chains of
/// them, per topic (`balance_topics`) and for the cluster totals (`balance_totals`). Replicas on
/// staying brokers are never touched.
pub(crate) fn place_only(model: &mut Model, homeless: &[Homeless]) -> Result<(), PlanError> {
    let before: Vec<Vec<u32>> = model.parts.iter().map(|p| p.replicas.clone()).collect();
    let mut counts = Counts::new(model);
    for h in homeless {
        let p = &model.parts[h.part];
        let view = RackView::new(model, &p.replicas, h.slot, h.origin, p.rf);
        let t = p.topic;
        let b = best_broker(model, h.part, h.slot, &view, |b| {
            (
                Reverse(view.score(model, b)),
                counts.of(t, b),
                counts.total[b as usize],
                !h.origin.is_some_and(|o| same_rack(model, o, b)),
                b,
            )
        })
        .ok_or_else(no_broker_fits)?;
        model.parts[h.part].replicas[h.slot] = b;
        counts.add(t, b);
    }
    // Every step below lowers (sum of squared topic counts, sum of squared counts, minus the
    // racks spanned, moved replicas outside their origin's rack) lexicographically, so this
    // terminates.
    let mut chains = Chains::new(model, homeless);
    loop {
        let mut changed = water_fill(model, homeless, &mut counts);
        changed |= chains.balance_topics(model, homeless, &mut counts);
        changed |= chains.balance_totals(model, homeless, &mut counts);
        changed |= rack_swaps(model, &before, &mut counts);
        if !changed {
            break;
        }
    }
    Ok(())
}

/// Swaps that cost no balance: a moved replica on `a` goes to `b` instead when `b` holds one
/// fewer of its topic and one fewer overall than `a` (so every count multiset, per topic and
/// overall, stays the same, and so does the number of replicas moved), and that either spans
/// more racks or, spanning as many, puts the replica back in the rack of the broker it left.
/// `before[part][slot]` is the broker a slot held before the plan ([`UNPLACED`] for a
/// replica an RF increase adds). Returns whether anything moved.
fn rack_swaps(model: &mut Model, before: &[Vec<u32>], counts: &mut Counts) -> bool {
    if model.rack_count == 0 {
        return false;
    }
    let mut any = false;
    for (i, was) in before.iter().enumerate() {
        for (slot, &origin) in was.iter().enumerate() {
            let p = &model.parts[i];
            let (t, a) = (p.topic, p.replicas[slot]);
            if a == origin {
                continue;
            }
            let origin = (origin != UNPLACED).then_some(origin);
            let home = |b: u32| origin.is_some_and(|o| same_rack(model, o, b));
            let view = RackView::new(model, &p.replicas, slot, Some(a), p.rf);
            let now = view.score(model, a);
            let best = (0..model.n as u32)
                .filter(|&b| {
                    counts.of(t, b) + 1 == counts.of(t, a)
                        && counts.total[b as usize] + 1 == counts.total[a as usize]
                        && !holds(&p.replicas, slot, b)
                })
                .filter(|&b| {
                    let score = view.score(model, b);
                    score > now || (score == now && home(b) && !home(a))
                })
                .min_by_key(|&b| (Reverse(view.score(model, b)), !home(b), b));
            if let Some(b) = best {
                counts.remove(t, a);
                counts.add(t, b);
                model.parts[i].replicas[slot] = b;
                any = true;
            }
        }
    }
    any
}

/// Re-places single homeless replicas while that makes their topic's counts closer
/// (`count_t[from] >= count_t[to] + 2`), or keeps them as close and brings the cluster counts
/// closer. Returns whether anything moved.
fn water_fill(model: &mut Model, homeless: &[Homeless], counts: &mut Counts) -> bool {
    let mut any = false;
    loop {
        let mut changed = false;
        for h in homeless {
            let p = &model.parts[h.part];
            let (t, a) = (p.topic, p.replicas[h.slot]);
            let view = RackView::new(model, &p.replicas, h.slot, Some(a), p.rf);
            let Some(b) = best_broker(model, h.part, h.slot, &view, |b| {
                (counts.of(t, b), counts.total[b as usize], b)
            }) else {
                continue;
            };
            if !view.allows(model, b) {
                continue;
            }
            let (ta, tb) = (counts.of(t, a), counts.of(t, b));
            let (ca, cb) = (counts.total[a as usize], counts.total[b as usize]);
            if ta >= tb + 2 || (ta == tb + 1 && ca >= cb + 2) {
                counts.remove(t, a);
                counts.add(t, b);
                model.parts[h.part].replicas[h.slot] = b;
                changed = true;
            }
        }
        if !changed {
            return any;
        }
        any = true;
    }
}

/// Chains of re-placements of homeless replicas (augmenting paths of the placement flow:
/// homeless replica -> (topic, broker) -> broker). A chain moves replica `r1` from `a` to `x1`,
/// `r2` (of another partition) from `x1` to `x2`, ..., so only its two ends change counts; each
/// partition appears at most once in a chain, so every step is checked (free broker, rack
/// diversity) against the partition as it is. Without racks these searches are complete (they
/// are augmenting paths): if some placement of the homeless replicas is balanced per topic
/// (and overall), they find chains until the counts are.
struct Chains {
    n: usize,
    /// Homeless replicas by topic (indexes into the homeless list).
    by_topic: Vec<Vec<usize>>,
    /// Replicas of each topic, for its balanced `floor` and `ceil`.
    replicas: Vec<usize>,
    /// Partitions already in the chain being searched: `stamp[part] == round`.
    stamp: Vec<u32>,
    round: u32,
}

impl Chains {
    fn new(model: &Model, homeless: &[Homeless]) -> Chains {
        let mut by_topic = vec![Vec::new(); model.topics.len()];
        for (i, h) in homeless.iter().enumerate() {
            by_topic[model.parts[h.part].topic as usize].push(i);
        }
        Chains {
            n: model.n,
            by_topic,
            replicas: model
                .topic_parts
                .iter()
                .map(|r| model.parts[r.clone()].iter().map(|p| p.rf).sum())
                .collect(),
            stamp: vec![0; model.parts.len()],
            round: 0,
        }
    }

    fn bounds(&self, t: usize) -> (u32, u32) {
        let r = self.replicas[t];
        ((r / self.n) as u32, r.div_ceil(self.n) as u32)
    }

    fn next_round(&mut self) {
        self.round += 1;
        if self.round == u32::MAX {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.round = 1;
        }
    }

    /// Where the homeless replica `i` may go next in a chain: target brokers that do not hold
    /// its partition and keep the partition's rack diversity, if the partition is not in the
    /// chain yet (it is then added).
    fn steps(&mut self, model: &Model, homeless: &[Homeless], i: usize) -> Vec<u32> {
        let h = homeless[i];
        if self.stamp[h.part] == self.round {
            return Vec::new();
        }
        self.stamp[h.part] = self.round;
        let p = &model.parts[h.part];
        let from = p.replicas[h.slot];
        let view = RackView::new(model, &p.replicas, h.slot, Some(from), p.rf);
        (0..self.n as u32)
            .filter(|&y| !holds(&p.replicas, h.slot, y) && view.allows(model, y))
            .collect()
    }

    /// The homeless replicas of topic `t`, by the broker that holds them.
    fn on_brokers(&self, model: &Model, homeless: &[Homeless], t: usize) -> Vec<Vec<usize>> {
        let mut on = vec![Vec::new(); self.n];
        for &i in &self.by_topic[t] {
            let h = homeless[i];
            on[model.parts[h.part].replicas[h.slot] as usize].push(i);
        }
        on
    }

    /// Per topic: while a chain leads from a broker to one holding at least two fewer of the
    /// topic, follows it (the nearest such broker, the least loaded among equally near ones).
    fn balance_topics(
        &mut self,
        model: &mut Model,
        homeless: &[Homeless],
        counts: &mut Counts,
    ) -> bool {
        let n = self.n;
        let mut any = false;
        for t in 0..model.topics.len() {
            if self.by_topic[t].is_empty() {
                continue;
            }
            let tt = t as u32;
            'topic: loop {
                let min = (0..n as u32).map(|b| counts.of(tt, b)).min().unwrap_or(0);
                let mut sources: Vec<u32> = (0..n as u32)
                    .filter(|&b| counts.of(tt, b) >= min + 2)
                    .collect();
                sources.sort_by_key(|&b| (Reverse(counts.of(tt, b)), b));
                for a in sources {
                    let on = self.on_brokers(model, homeless, t);
                    self.next_round();
                    let mut parent = vec![(usize::MAX, u32::MAX); n];
                    let mut seen = vec![false; n];
                    seen[a as usize] = true;
                    let mut level = vec![a];
                    let mut found = None;
                    while !level.is_empty() && found.is_none() {
                        let mut next = Vec::new();
                        for &x in &level {
                            for &i in &on[x as usize] {
                                for y in self.steps(model, homeless, i) {
                                    if !seen[y as usize] {
                                        seen[y as usize] = true;
                                        parent[y as usize] = (i, x);
                                        next.push(y);
                                    }
                                }
                            }
                        }
                        found = next
                            .iter()
                            .copied()
                            .filter(|&y| counts.of(tt, y) + 2 <= counts.of(tt, a))
                            .min_by_key(|&y| (counts.of(tt, y), counts.total[y as usize], y));
                        level = next;
                    }
                    if let Some(mut y) = found {
                        while y != a {
                            let (i, x) = parent[y as usize];
                            let h = homeless[i];
                            model.parts[h.part].replicas[h.slot] = y;
                            counts.remove(tt, x);
                            counts.add(tt, y);
                            y = x;
                        }
                        any = true;
                        continue 'topic;
                    }
                }
                break;
            }
        }
        any
    }

    /// Cluster totals: while a broker holds more than `ceil` (or, once none does, some broker
    /// less than `floor`), follows a chain from a broker above that bound to one below it. A
    /// chain may pass from one topic to another at a broker (the broker takes one replica of
    /// the first and gives one of the second) only if both topics are balanced and stay so
    /// there; topics that are not balanced are left alone. Topic counts thus never get worse.
    fn balance_totals(
        &mut self,
        model: &mut Model,
        homeless: &[Homeless],
        counts: &mut Counts,
    ) -> bool {
        let n = self.n;
        let topics = model.topics.len();
        let all: usize = self.replicas.iter().sum();
        let (floor, ceil) = ((all / n) as u32, all.div_ceil(n) as u32);
        // Nodes: brokers `0..n`, then (topic, broker) `n + t * n + b`.
        const NONE: usize = usize::MAX;
        let mut any = false;
        loop {
            let over: Vec<u32> = (0..n as u32)
                .filter(|&b| counts.total[b as usize] > ceil)
                .collect();
            let (sources, limit) = if !over.is_empty() {
                (over, ceil)
            } else if (0..n).any(|b| counts.total[b] < floor) {
                let above = (0..n as u32)
                    .filter(|&b| counts.total[b as usize] > floor)
                    .collect();
                (above, floor)
            } else {
                return any;
            };
            let open: Vec<bool> = (0..topics)
                .map(|t| {
                    let (lo, hi) = self.bounds(t);
                    !self.by_topic[t].is_empty()
                        && (0..n as u32).all(|b| (lo..=hi).contains(&counts.of(t as u32, b)))
                })
                .collect();
            let on: Vec<Vec<Vec<usize>>> = (0..topics)
                .map(|t| {
                    if open[t] {
                        self.on_brokers(model, homeless, t)
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            self.next_round();
            // parent[node]: for a (topic, broker) node, the homeless replica moved into it and
            // the node it came from, or (NONE, broker node) when entered from its broker; for
            // a broker node, (NONE, the (topic, broker) node it was entered from).
            let mut parent = vec![(NONE, NONE); n + topics * n];
            let mut seen = vec![false; n + topics * n];
            let mut queue = std::collections::VecDeque::new();
            for &a in &sources {
                seen[a as usize] = true;
                queue.push_back(a as usize);
            }
            let mut found = None;
            'search: while let Some(u) = queue.pop_front() {
                if u < n {
                    for t in (0..topics).filter(|&t| open[t] && !on[t][u].is_empty()) {
                        let v = n + t * n + u;
                        if !seen[v] && counts.of(t as u32, u as u32) > self.bounds(t).0 {
                            seen[v] = true;
                            parent[v] = (NONE, u);
                            queue.push_back(v);
                        }
                    }
                    continue;
                }
                let (t, x) = ((u - n) / n, (u - n) % n);
                for &i in &on[t][x] {
                    for y in self.steps(model, homeless, i) {
                        let v = n + t * n + y as usize;
                        if seen[v] {
                            continue;
                        }
                        seen[v] = true;
                        parent[v] = (i, u);
                        queue.push_back(v);
                        let y = y as usize;
                        if !seen[y] && counts.of(t as u32, y as u32) < self.bounds(t).1 {
                            seen[y] = true;
                            parent[y] = (NONE, v);
                            if counts.total[y] < limit {
                                found = Some(y);
                                break 'search;
                            }
                            queue.push_back(y);
                        }
                    }
                }
            }
            let Some(end) = found else { return any };
            // Walk back: broker <- (topic, broker) <- ... <- (topic, broker) <- source broker.
            let mut node = end;
            loop {
                let (i, from) = parent[node];
                if node < n {
                    if from == NONE {
                        break;
                    }
                    node = from;
                    continue;
                }
                if i != NONE {
                    let h = homeless[i];
                    let (t, y) = ((node - n) / n, (node - n) % n);
                    let x = (from - n) % n;
                    model.parts[h.part].replicas[h.slot] = y as u32;
                    counts.remove(t as u32, x as u32);
                    counts.add(t as u32, y as u32);
                }
                node = from;
            }
            any = true;
        }
    }
}

/// Rebalance mode: chooses per-topic target counts (see `targets`), places the homeless
/// replicas on brokers below target, then moves replicas from brokers above target to brokers
/// below. Returns the lower bound on replicas moved.
pub(crate) fn rebalance(model: &mut Model, homeless: &[Homeless]) -> Result<u64, PlanError> {
    let n = model.n;
    let before: Vec<Vec<u32>> = model.parts.iter().map(|p| p.replicas.clone()).collect();
    let mut counts = Counts::new(model);
    let replicas: Vec<usize> = model
        .topic_parts
        .iter()
        .map(|r| model.parts[r.clone()].iter().map(|p| p.rf).sum())
        .collect();
    let target = targets::choose(n, &replicas, &counts.topic);
    let excess: u64 = counts
        .topic
        .iter()
        .zip(&target)
        .map(|(&c, &t)| c.saturating_sub(t) as u64)
        .sum();
    let lower_bound = homeless.len() as u64 + excess;

    let below = |counts: &Counts, t: u32, b: u32| {
        target[t as usize * n + b as usize].saturating_sub(counts.of(t, b))
    };
    for h in homeless {
        let p = &model.parts[h.part];
        let view = RackView::new(model, &p.replicas, h.slot, h.origin, p.rf);
        let t = p.topic;
        // Below-target brokers first; if all of them hold the partition, the least loaded other
        // broker takes it and passes a replica on in the loop below.
        let b = best_broker(model, h.part, h.slot, &view, |b| {
            let deficit = below(&counts, t, b);
            (
                Reverse(view.score(model, b)),
                deficit == 0,
                !h.origin.is_some_and(|o| same_rack(model, o, b)),
                Reverse(deficit),
                counts.of(t, b),
                counts.total[b as usize],
                b,
            )
        })
        .ok_or_else(no_broker_fits)?;
        model.parts[h.part].replicas[h.slot] = b;
        counts.add(t, b);
    }

    for t in 0..model.topics.len() as u32 {
        let range = model.topic_parts[t as usize].clone();
        for s in 0..n as u32 {
            if counts.of(t, s) <= target[t as usize * n + s as usize] {
                continue;
            }
            // Smaller partitions first (fewer bytes), then replicas that are not the leader.
            let mut candidates: Vec<(u64, bool, usize, usize)> = range
                .clone()
                .filter_map(|i| {
                    let slot = model.parts[i].replicas.iter().position(|&b| b == s)?;
                    Some((model.parts[i].size, slot == 0, i, slot))
                })
                .collect();
            candidates.sort_unstable();
            for (_, _, i, slot) in candidates {
                if counts.of(t, s) <= target[t as usize * n + s as usize] {
                    break;
                }
                let p = &model.parts[i];
                let view = RackView::new(model, &p.replicas, slot, Some(s), p.rf);
                let best = (0..n as u32)
                    .filter(|&d| below(&counts, t, d) > 0 && !holds(&p.replicas, slot, d))
                    .filter(|&d| view.allows(model, d))
                    .min_by_key(|&d| {
                        (
                            Reverse(view.score(model, d)),
                            !same_rack(model, s, d),
                            Reverse(below(&counts, t, d)),
                            counts.total[d as usize],
                            d,
                        )
                    });
                if let Some(d) = best {
                    counts.remove(t, s);
                    counts.add(t, d);
                    model.parts[i].replicas[slot] = d;
                }
            }
        }
    }
    // Each swap spans more racks, or as many with one more replica back in its rack.
    while rack_swaps(model, &before, &mut counts) {}
    Ok(lower_bound)
}

/// Validation refuses a replication factor above the target broker count, so some broker
/// always fits a replica; should that ever not hold, the plan fails instead of guessing.
fn no_broker_fits() -> PlanError {
    PlanError::Internal("no target broker can take a replica".into())
}

#[cfg(test)]
mod tests {
    use super::super::{Broker, PartitionAssignment, PlanRequest};
    use super::*;

    #[test]
    fn a_broken_invariant_is_an_error_not_a_panic() {
        let req = PlanRequest {
            current: vec![PartitionAssignment {
                topic: "t".into(),
                partition: 0,
                replicas: vec![0, 1],
            }],
            brokers: (0..3).map(Broker::new).collect(),
            ..Default::default()
        };
        let mut model = Model::build(&req).unwrap();
        // More replicas than target brokers: validation refuses such a request, so only a bug
        // could lead here. The planner says so instead of taking the operator down.
        model.parts[0].rf = 5;
        let lost = homeless(&mut model);
        assert!(matches!(
            place_only(&mut model, &lost),
            Err(PlanError::Internal(_))
        ));
        let mut model = Model::build(&req).unwrap();
        model.parts[0].rf = 5;
        let lost = homeless(&mut model);
        assert!(matches!(
            rebalance(&mut model, &lost),
            Err(PlanError::Internal(_))
        ));
    }
}
