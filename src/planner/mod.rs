//! Partition reassignment planning: pure and deterministic (no I/O, no clocks, no hashing).
//!
//! [`plan`] takes the current assignment and the broker set *after* the change and returns a
//! target assignment for every input partition. Brokers leaving are those in the current
//! assignment but not in the target set; brokers arriving are target brokers that hold no
//! replica yet.
//!
//! # Cost model
//! Moving a replica copies a whole partition over the network, so a plan is measured by
//! *replicas moved*: replicas in the target that the broker did not hold before
//! ([`metrics::Metrics::replicas_moved`]). Reordering a partition's replicas (which changes its
//! preferred leader) moves no data and is free.
//!
//! # Modes and what each guarantees
//! "Balanced" below means: every target broker's replica count is within 1 of every other's,
//! both over the whole cluster and within every topic; likewise for preferred-leader counts.
//!
//! * **Placement only** ([`Mode::PlaceOnly`]: brokers only leave and/or replication factors
//!   change, `rebalance == false`). Only the replicas that must move do: those on leaving
//!   brokers and those a replication-factor increase adds. That number is the exact lower bound
//!   ([`PlanSummary::lower_bound`], and [`PlanSummary::lower_bound_bytes`] in bytes). Replicas
//!   on staying brokers never move, so an unbalanced start stays unbalanced. The moved replicas
//!   are water-filled: no moved replica could be re-placed on another eligible broker so that
//!   its topic's counts get closer (`count_t[from] >= count_t[to] + 2`), or its topic's counts
//!   stay as close and the cluster counts get closer (`count_t[from] == count_t[to] + 1` and
//!   `count[from] >= count[to] + 2`); nor could a chain of re-placements (each moved replica
//!   taking the place another leaves) bring a topic's counts closer, or the cluster counts
//!   within 1 while keeping every balanced topic balanced. Without racks the result is
//!   therefore balanced whenever some placement of the replicas that must move is. That is not
//!   always the case, even from a balanced start: a leaving replica cannot go to a broker that
//!   already holds its partition, and the staying replicas are fixed, so one topic's balance
//!   can force a cluster spread of 2.
//! * **Rebalance** ([`Mode::Rebalance`]: brokers arrive, or `rebalance == true`). Without racks
//!   the result is always balanced, with the fewest moves possible for that.
//!   [`PlanSummary::lower_bound`] is that minimum, computed exactly (see `targets.rs`): per
//!   topic `t` with `R_t` replicas
//!   on `n` brokers every broker ends with `q_t = R_t / n` or `q_t + 1`; which brokers get the
//!   `+1` is chosen by a min-cost flow so that the cluster totals are within 1 too and as many
//!   `+1`s as possible land on brokers that already hold more than `q_t` (each such saves a
//!   move). The lower bound is `sum_t (homeless_t + sum_b max(0, count_t[b] - target_t[b]))`,
//!   where homeless replicas are those on leaving brokers or added by a replication-factor
//!   increase. It is never below the simpler bounds `sum_b max(0, count[b] - target[b])` over
//!   the cluster totals (with the `ceil` targets given to the brokers that hold most) or the same
//!   sum per topic. Without racks the plan reaches this bound exactly whenever no broker
//!   leaves and no RF grows (a broker above its target holds more partitions of the topic than
//!   one below it, so some partition can always move directly between them); a homeless
//!   replica whose partition already sits on every broker below target costs one extra move.
//!   With an RF decrease the bound counts from the replicas left after the drops.
//!   Against the physical bound `k / (N + k)` of the replicas for `k` brokers added to `N`
//!   balanced ones: with one or two topics the minimum is at most that; with three or more,
//!   balance per topic and overall can need more (1.5x in `tests.rs`'
//!   `balance_can_cost_more_than_the_physical_bound`), and balance comes first.
//! * **Racks** (when brokers have racks, all target brokers must have one). Rack diversity is a
//!   hard constraint: no partition the plan touches ends with fewer distinct racks than
//!   `min(its racks before, RF, racks in the target set)`, and every replica placed raises the
//!   partition to that many racks where it can (in placement-only mode before balance, in
//!   rebalance mode among the brokers the balance allows). A replica leaving a broker prefers a
//!   broker in its own rack among equally balanced choices. Finally every moved replica is
//!   swapped to another broker when that costs nothing (the other broker holds one fewer of
//!   the topic and one fewer overall, so every count stays as balanced and as many replicas
//!   move) and spans more racks or, spanning as many, returns the replica to the rack of the
//!   broker it left. With racks, balance is best effort (uneven racks can make it impossible,
//!   e.g. RF 3 over three racks of which one has a single broker); with a single rack, racks
//!   change nothing.
//! * **Leaders** (both modes): preferred leaders are rebalanced by reordering replicas only,
//!   changing leaders only along the paths the balancing needs (if the leaders are balanced
//!   already, no partition is reordered). Whatever the replication factors, each topic's
//!   preferred leaders end balanced whenever some choice among its partitions' replicas is,
//!   and the cluster's too whenever a choice balanced per topic and overall exists: the
//!   balancing uses augmenting paths, which find one. When every partition has the same
//!   replication factor and replica counts are balanced, such a choice always exists. A
//!   replaced replica's slot is kept, so a partition whose leader moves keeps leadership with
//!   the replica that took its place.
//! * **Replication factor**: an increase adds replicas to the least loaded eligible brokers (rack
//!   aware); a decrease first drops replicas on leaving brokers (unless that would cost rack
//!   diversity that dropping another replica would not), then the replicas on the most loaded
//!   brokers, never the current preferred leader unless it is leaving.
//!
//! Everything is deterministic: inputs are indexed through sorted structures and every choice
//! breaks ties by broker id, so the same request always yields the same plan.

mod balance;
pub mod cli;
pub mod json;
mod leaders;
pub mod metrics;
mod model;
mod rack;
mod targets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use metrics::Metrics;

/// The replicas of one partition, in order: the first is the preferred leader.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// A broker of the target set, with its rack (`broker.rack`) if racks are used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub id: i32,
    pub rack: Option<String>,
}

impl Broker {
    pub fn new(id: i32) -> Self {
        Broker { id, rack: None }
    }

    pub fn with_rack(id: i32, rack: impl Into<String>) -> Self {
        Broker {
            id,
            rack: Some(rack.into()),
        }
    }
}

/// What to plan. Only `current` and `brokers` are required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRequest {
    /// The current assignment of every partition to plan for.
    pub current: Vec<PartitionAssignment>,
    /// The broker set after the change.
    pub brokers: Vec<Broker>,
    /// Racks of brokers that leave (they are not in `brokers`). Optional: used only so that a
    /// replica leaving a broker prefers that broker's rack and so that rack diversity is judged
    /// with the leaving replica's rack.
    pub leaving_racks: BTreeMap<i32, String>,
    /// Partition sizes in bytes, by (topic, partition). Missing partitions count as 0 bytes.
    /// Used to report bytes moved and, among equally good moves, to move the smaller partitions.
    pub sizes: BTreeMap<(String, i32), u64>,
    /// New replication factors by topic.
    pub replication_factors: BTreeMap<String, usize>,
    /// Also move replicas to balance the cluster when no broker arrives (implied when one does).
    pub rebalance: bool,
}

/// How the plan was made; see the module documentation for what each guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Only replicas that must move (on leaving brokers, or added by an RF increase) move.
    PlaceOnly,
    /// Replicas move to balance the cluster, with the fewest moves possible.
    Rebalance,
}

/// A plan: the target assignment, in the order of the request's `current`, and its summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub target: Vec<PartitionAssignment>,
    pub summary: PlanSummary,
}

/// What a plan costs and how balanced its result is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub mode: Mode,
    /// Brokers in the current assignment that are not in the target set.
    pub leaving: Vec<i32>,
    /// Target brokers that hold no replica in the current assignment.
    pub arriving: Vec<i32>,
    /// The fewest replica moves any plan that meets the mode's goal needs.
    pub lower_bound: u64,
    /// In [`Mode::PlaceOnly`], the bytes of the replicas that must move (a lower bound that the
    /// plan meets). `None` in [`Mode::Rebalance`], where the planner minimises replicas moved
    /// and only prefers smaller partitions among equally good moves.
    pub lower_bound_bytes: Option<u64>,
    /// The measured cost and balance of the target.
    pub metrics: Metrics,
}

impl PlanSummary {
    /// Replicas moved divided by the lower bound (1.0 when both are 0).
    pub fn ratio(&self) -> f64 {
        ratio(self.metrics.replicas_moved, self.lower_bound)
    }
}

/// `moved / bound`, with 0/0 = 1.
pub fn ratio(moved: u64, bound: u64) -> f64 {
    if bound == 0 {
        if moved == 0 { 1.0 } else { f64::INFINITY }
    } else {
        moved as f64 / bound as f64
    }
}

/// Why no plan could be made. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the target broker set is empty; give at least one broker")]
    NoBrokers,
    #[error("broker id {0} is invalid; broker ids are 0 or more")]
    InvalidBrokerId(i32),
    #[error("broker {0} is listed twice in the target broker set")]
    DuplicateBroker(i32),
    #[error("partition {topic}-{partition} appears twice in the current assignment")]
    DuplicatePartition { topic: String, partition: i32 },
    #[error("partition {topic}-{partition} has no replicas")]
    NoReplicas { topic: String, partition: i32 },
    #[error("partition {topic}-{partition} lists broker {broker} twice in its replicas")]
    DuplicateReplica {
        topic: String,
        partition: i32,
        broker: i32,
    },
    #[error(
        "topic {topic} has replication factor {replication_factor} but only {}; lower the topic's replication factor first",
        remain(*brokers)
    )]
    ReplicationFactorAboveBrokers {
        topic: String,
        replication_factor: usize,
        brokers: usize,
    },
    #[error(
        "cannot raise topic {topic} to replication factor {replication_factor}: only {}",
        remain(*brokers)
    )]
    RequestedFactorAboveBrokers {
        topic: String,
        replication_factor: usize,
        brokers: usize,
    },
    #[error(
        "replication factor {replication_factor} requested for topic {topic}; it must be at least 1"
    )]
    RequestedFactorBelowOne {
        topic: String,
        replication_factor: usize,
    },
    #[error("a replication factor is given for topic {0}, which is not in the current assignment")]
    UnknownTopic(String),
    #[error(
        "broker {0} has no rack but other brokers do; give every target broker a rack, or none"
    )]
    MissingRack(i32),
    /// An invariant the planner relies on did not hold: no plan rather than a wrong one.
    #[error(
        "the planner could not finish ({0}); nothing was moved; please report this with the input"
    )]
    Internal(String),
}

fn remain(n: usize) -> String {
    if n == 1 {
        "1 broker remains".to_string()
    } else {
        format!("{n} brokers remain")
    }
}

/// Plans the target assignment. Pure: same request, same plan.
pub fn plan(req: &PlanRequest) -> Result<Plan, PlanError> {
    let mut model = model::Model::build(req)?;
    let mode = if req.rebalance || !model.arriving.is_empty() {
        Mode::Rebalance
    } else {
        Mode::PlaceOnly
    };
    balance::reduce_replication(&mut model)?;
    let homeless = balance::homeless(&mut model);
    let lower_bound_bytes = homeless.iter().map(|h| model.parts[h.part].size).sum();
    let lower_bound = match mode {
        Mode::PlaceOnly => {
            balance::place_only(&mut model, &homeless)?;
            homeless.len() as u64
        }
        Mode::Rebalance => balance::rebalance(&mut model, &homeless)?,
    };
    leaders::balance(&mut model);
    let target = model.target();
    let ids: Vec<i32> = req.brokers.iter().map(|b| b.id).collect();
    let metrics = metrics::evaluate(&req.current, &target, &ids, &req.sizes);
    Ok(Plan {
        target,
        summary: PlanSummary {
            mode,
            leaving: model.leaving.clone(),
            arriving: model.arriving.clone(),
            lower_bound,
            lower_bound_bytes: (mode == Mode::PlaceOnly).then_some(lower_bound_bytes),
            metrics,
        },
    })
}

/// One partition whose replica list differs between two assignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub current: Vec<i32>,
    pub target: Vec<i32>,
}

impl Move {
    /// Brokers that get a replica they did not have (each is one replica moved).
    pub fn added(&self) -> Vec<i32> {
        self.target
            .iter()
            .copied()
            .filter(|b| !self.current.contains(b))
            .collect()
    }

    /// Brokers that lose their replica.
    pub fn removed(&self) -> Vec<i32> {
        self.current
            .iter()
            .copied()
            .filter(|b| !self.target.contains(b))
            .collect()
    }

    /// Only the order changed (a preferred-leader change), no data moves.
    pub fn is_reorder_only(&self) -> bool {
        self.added().is_empty() && self.removed().is_empty()
    }
}

/// The partitions whose replica set or order differs, in the order of `target`. Partitions of
/// `target` missing from `current` count as moves from no replicas.
pub fn moves(current: &[PartitionAssignment], target: &[PartitionAssignment]) -> Vec<Move> {
    let before: BTreeMap<(&str, i32), &Vec<i32>> = current
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), &p.replicas))
        .collect();
    target
        .iter()
        .filter_map(|t| {
            let cur = before
                .get(&(t.topic.as_str(), t.partition))
                .map(|r| r.to_vec())
                .unwrap_or_default();
            (cur != t.replicas).then(|| Move {
                topic: t.topic.clone(),
                partition: t.partition,
                current: cur,
                target: t.replicas.clone(),
            })
        })
        .collect()
}
