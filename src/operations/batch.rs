//! Which partition moves to submit next: bounded per broker, so a drain never floods one broker
//! with more replica copies than it can serve. Pure.

use std::collections::BTreeMap;

use crate::kafka::{BrokerId, TopicPartition};

/// A partition move: the replicas it has and the replicas it should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMove {
    pub partition: TopicPartition,
    pub current: Vec<BrokerId>,
    pub target: Vec<BrokerId>,
    /// Bytes a new replica has to copy.
    pub size: u64,
}

impl PendingMove {
    /// Brokers that copy data in this move: every broker gaining a replica, and every broker
    /// of the current set (any of them may serve as the leader the new replicas fetch from).
    pub fn involved(&self) -> Vec<BrokerId> {
        let mut brokers: Vec<BrokerId> = self
            .current
            .iter()
            .chain(self.target.iter())
            .copied()
            .collect();
        brokers.sort_unstable();
        brokers.dedup();
        brokers
    }

    /// Whether only the order of replicas changes (no data moves).
    pub fn is_reorder_only(&self) -> bool {
        let mut a = self.current.clone();
        let mut b = self.target.clone();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }
}

/// Picks the moves to submit now. `in_flight` are the replica sets of moves already running
/// (every broker of each counts as busy). A move is taken when none of its brokers would then
/// exceed `max_per_broker` moves in flight; moves that copy no data are always taken. Larger
/// partitions go first, so the long copies start early and the tail of a drain is short.
pub fn next_batch(
    pending: &[PendingMove],
    in_flight: &[Vec<BrokerId>],
    max_per_broker: usize,
) -> Vec<PendingMove> {
    let mut load: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for replicas in in_flight {
        for b in replicas {
            *load.entry(*b).or_default() += 1;
        }
    }
    let mut order: Vec<&PendingMove> = pending.iter().collect();
    order.sort_by(|a, b| b.size.cmp(&a.size).then(a.partition.cmp(&b.partition)));
    let mut batch = Vec::new();
    for m in order {
        if m.is_reorder_only() {
            batch.push(m.clone());
            continue;
        }
        let involved = m.involved();
        if involved
            .iter()
            .all(|b| load.get(b).copied().unwrap_or(0) < max_per_broker)
        {
            for b in involved {
                *load.entry(b).or_default() += 1;
            }
            batch.push(m.clone());
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(topic: &str, p: i32, current: &[i32], target: &[i32], size: u64) -> PendingMove {
        PendingMove {
            partition: TopicPartition::new(topic, p),
            current: current.to_vec(),
            target: target.to_vec(),
            size,
        }
    }

    #[test]
    fn bounded_per_broker_largest_first() {
        let pending = vec![
            mv("a", 0, &[3, 0], &[1, 0], 10),
            mv("a", 1, &[3, 1], &[2, 1], 30),
            mv("a", 2, &[3, 2], &[0, 2], 20),
        ];
        // Broker 3 is in every move: at most 2 at once.
        let batch = next_batch(&pending, &[], 2);
        let picked: Vec<i32> = batch.iter().map(|m| m.partition.partition).collect();
        assert_eq!(picked, vec![1, 2]);
        // With one already in flight on broker 3, only one more.
        let batch = next_batch(&pending, &[vec![3, 4]], 2);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].partition.partition, 1);
    }

    #[test]
    fn reorders_are_free() {
        let pending = vec![mv("a", 0, &[1, 2], &[2, 1], 100)];
        let batch = next_batch(&pending, &[vec![1, 2]], 1);
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn nothing_when_saturated() {
        let pending = vec![mv("a", 0, &[1, 2], &[3, 2], 1)];
        assert!(next_batch(&pending, &[vec![2, 5]], 1).is_empty());
    }
}
