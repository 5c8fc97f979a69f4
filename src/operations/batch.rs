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
    /// The partition's leader now: the broker the new replicas fetch from.
    pub leader: Option<BrokerId>,
}

impl PendingMove {
    /// Brokers that copy data in this move: every broker gaining a replica, and the leader
    /// serving them (any current replica when the leader is not known).
    pub fn involved(&self) -> Vec<BrokerId> {
        let adding = self.target.iter().filter(|b| !self.current.contains(b));
        copying(self.leader, &self.current, adding)
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

/// Brokers busy with a copy: those `adding` a replica and the `leader` they fetch from, or
/// every one of `current` when the leader is not known.
pub fn copying<'a>(
    leader: Option<BrokerId>,
    current: &[BrokerId],
    adding: impl Iterator<Item = &'a BrokerId>,
) -> Vec<BrokerId> {
    let sources: Vec<BrokerId> = match leader {
        Some(l) => vec![l],
        None => current.to_vec(),
    };
    let mut brokers: Vec<BrokerId> = sources.into_iter().chain(adding.copied()).collect();
    brokers.sort_unstable();
    brokers.dedup();
    brokers
}

/// Picks the moves to submit now. `in_flight` are the brokers busy with each move already
/// running (see [`copying`]). A move is taken when none of its brokers would then
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
            leader: current.first().copied(),
        }
    }

    #[test]
    fn bounded_per_broker_largest_first() {
        let pending = vec![
            mv("a", 0, &[3, 0], &[1, 0], 10),
            mv("a", 1, &[3, 1], &[2, 1], 30),
            mv("a", 2, &[3, 2], &[0, 2], 20),
        ];
        // Broker 3 leads every move: at most 2 at once.
        let batch = next_batch(&pending, &[], 2);
        let picked: Vec<i32> = batch.iter().map(|m| m.partition.partition).collect();
        assert_eq!(picked, vec![1, 2]);
        // With one already in flight on broker 3, only one more.
        let batch = next_batch(&pending, &[vec![3, 4]], 2);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].partition.partition, 1);
    }

    #[test]
    fn only_the_leader_and_the_new_replicas_are_busy() {
        // Broker 3 leaves but leads none of these: it serves no copy, so all go at once, each
        // receiving broker and each leader taking one.
        let pending = vec![
            mv("a", 0, &[0, 3], &[0, 1], 10),
            mv("a", 1, &[1, 3], &[1, 2], 30),
            mv("a", 2, &[2, 3], &[2, 0], 20),
        ];
        assert_eq!(next_batch(&pending, &[], 2).len(), 3);
        // The leader unknown: every current replica counts, broker 3 among them.
        let unknown: Vec<PendingMove> = pending
            .into_iter()
            .map(|m| PendingMove { leader: None, ..m })
            .collect();
        assert_eq!(next_batch(&unknown, &[], 2).len(), 2);
        assert_eq!(copying(None, &[1, 3], [2].iter()), vec![1, 2, 3]);
        assert_eq!(copying(Some(1), &[1, 3], [2].iter()), vec![1, 2]);
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
        // The leader (1) already serves a copy.
        assert!(next_batch(&pending, &[vec![1, 5]], 1).is_empty());
        // A follower (2) that only stays costs nothing.
        assert_eq!(next_batch(&pending, &[vec![2, 5]], 1).len(), 1);
    }
}
