//! Rack diversity: how many distinct racks a partition's replicas span.
//!
//! A partition should span `min(RF, racks)` racks so that losing a rack loses at most one
//! replica. Every placement asks a [`RackView`] of the partition *without* the slot being filled
//! what each candidate broker would give, and refuses candidates that would leave the partition
//! spanning fewer racks than it needs.

use super::model::{Model, UNPLACED};

/// The racks of a partition's other replicas, seen from the slot being filled.
pub(crate) struct RackView {
    /// Distinct racks of the other target replicas, sorted.
    racks: Vec<u32>,
    /// How many racks the partition should span: `min(RF, racks in the target set)`.
    goal: usize,
    /// The fewest racks a candidate may leave the partition with.
    need: usize,
}

impl RackView {
    /// `replicas` without `slot`; `origin` is the broker the slot held before (a leaving or
    /// staying broker), or `None` for a replica a replication-factor increase adds. The need is
    /// `min(racks before, goal)`, where a new replica counts as bringing a new rack: placing
    /// never lowers a partition's diversity and raises it when the partition lacks racks.
    pub fn new(
        model: &Model,
        replicas: &[u32],
        slot: usize,
        origin: Option<u32>,
        rf: usize,
    ) -> Self {
        let goal = rf.min(model.rack_count);
        if goal == 0 {
            return RackView {
                racks: Vec::new(),
                goal,
                need: 0,
            };
        }
        let mut racks: Vec<u32> = replicas
            .iter()
            .enumerate()
            .filter(|&(i, &b)| i != slot && b != UNPLACED && model.is_target(b))
            .filter_map(|(_, &b)| model.rack[b as usize])
            .collect();
        racks.sort_unstable();
        racks.dedup();
        let before = match origin {
            None => racks.len() + 1,
            Some(o) => {
                racks.len()
                    + model.rack[o as usize].is_some_and(|r| racks.binary_search(&r).is_err())
                        as usize
            }
        };
        RackView {
            need: before.min(goal),
            racks,
            goal,
        }
    }

    /// The racks (capped at the goal) the partition spans with `b` in the slot.
    pub fn score(&self, model: &Model, b: u32) -> usize {
        if self.goal == 0 {
            return 0;
        }
        let new = model.rack[b as usize].is_some_and(|r| self.racks.binary_search(&r).is_err());
        (self.racks.len() + new as usize).min(self.goal)
    }

    /// Whether `b` in the slot keeps the partition's rack diversity.
    pub fn allows(&self, model: &Model, b: u32) -> bool {
        self.score(model, b) >= self.need
    }
}

/// Whether brokers `a` and `b` are in the same known rack.
pub(crate) fn same_rack(model: &Model, a: u32, b: u32) -> bool {
    matches!((model.rack[a as usize], model.rack[b as usize]), (Some(x), Some(y)) if x == y)
}
