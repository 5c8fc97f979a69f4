//! Replica placement: dropping replicas for RF decreases, placing the replicas that must move,
//! and (in rebalance mode) moving replicas from brokers above their target to brokers below.
//!
//! Every choice of broker is a minimum over an explicit key ending in the broker index, so ties
//! always break the same way.

use std::cmp::Reverse;

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
pub(crate) fn reduce_replication(model: &mut Model) {
    if model.parts.iter().all(|p| p.rf >= p.replicas.len()) {
        return;
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
                .expect("an RF decrease leaves the leader and drops another replica");
            let (t, b) = (p.topic, p.replicas[slot]);
            if model.is_target(b) {
                counts.remove(t, b);
            }
            model.parts[i].replicas.remove(slot);
        }
    }
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
/// re-places any of them while that makes the counts strictly more balanced (see the module
/// documentation for the exact guarantee). Replicas on staying brokers are never touched.
pub(crate) fn place_only(model: &mut Model, homeless: &[Homeless]) {
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
        .expect("the RF fits the target brokers");
        model.parts[h.part].replicas[h.slot] = b;
        counts.add(t, b);
    }
    // Each re-placement lowers (sum of squared topic counts, sum of squared counts)
    // lexicographically, so this terminates.
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
            break;
        }
    }
}

/// Rebalance mode: chooses per-topic target counts (see `targets`), places the homeless
/// replicas on brokers below target, then moves replicas from brokers above target to brokers
/// below. Returns the lower bound on replicas moved.
pub(crate) fn rebalance(model: &mut Model, homeless: &[Homeless]) -> u64 {
    let n = model.n;
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
        .expect("the RF fits the target brokers");
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
    lower_bound
}
