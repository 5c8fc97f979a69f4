//! Measuring an assignment change: what it moves and how balanced the result is. Used for every
//! plan's summary and by the benchmark to judge any tool's output the same way.

use std::collections::BTreeMap;

use serde::Serialize;

use super::PartitionAssignment;

/// The cost and balance of going from one assignment to another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Replicas added to a broker that did not hold that partition.
    pub replicas_moved: u64,
    /// Sum of the sizes of the moved replicas' partitions.
    pub bytes_moved: u64,
    /// Partitions whose replica set changed.
    pub partitions_moved: u64,
    /// Partitions whose replica set is the same but whose order (preferred leader) changed.
    pub partitions_reordered: u64,
    /// Max minus min replicas per broker over the broker set.
    pub replica_spread: u64,
    /// Max minus min preferred leaders per broker over the broker set.
    pub leader_spread: u64,
    /// The largest replica spread within one topic.
    pub topic_replica_spread: u64,
    /// The largest preferred-leader spread within one topic.
    pub topic_leader_spread: u64,
}

/// Compares `target` to `current` (matched by topic and partition) and measures `target`'s
/// balance over `brokers` (brokers holding nothing count as 0). Replicas on brokers outside
/// `brokers` are not counted in the spreads.
pub fn evaluate(
    current: &[PartitionAssignment],
    target: &[PartitionAssignment],
    brokers: &[i32],
    sizes: &BTreeMap<(String, i32), u64>,
) -> Metrics {
    let before: BTreeMap<(&str, i32), &[i32]> = current
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.replicas.as_slice()))
        .collect();
    let mut ids = brokers.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let pos = |b: i32| ids.binary_search(&b).ok();
    let n = ids.len();

    let mut m = Metrics::default();
    let mut replicas = vec![0u64; n];
    let mut leaders = vec![0u64; n];
    // Per topic counts, in topic order.
    let mut per_topic: BTreeMap<&str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for p in target {
        let old = before
            .get(&(p.topic.as_str(), p.partition))
            .copied()
            .unwrap_or(&[]);
        let added = p.replicas.iter().filter(|b| !old.contains(b)).count() as u64;
        m.replicas_moved += added;
        m.bytes_moved += added
            * sizes
                .get(&(p.topic.clone(), p.partition))
                .copied()
                .unwrap_or(0);
        let same_set = added == 0 && old.len() == p.replicas.len();
        if !same_set {
            m.partitions_moved += 1;
        } else if old != p.replicas.as_slice() {
            m.partitions_reordered += 1;
        }
        let (tr, tl) = per_topic
            .entry(p.topic.as_str())
            .or_insert_with(|| (vec![0; n], vec![0; n]));
        for (slot, &b) in p.replicas.iter().enumerate() {
            if let Some(i) = pos(b) {
                replicas[i] += 1;
                tr[i] += 1;
                if slot == 0 {
                    leaders[i] += 1;
                    tl[i] += 1;
                }
            }
        }
    }
    m.replica_spread = spread(&replicas);
    m.leader_spread = spread(&leaders);
    for (tr, tl) in per_topic.values() {
        m.topic_replica_spread = m.topic_replica_spread.max(spread(tr));
        m.topic_leader_spread = m.topic_leader_spread.max(spread(tl));
    }
    m
}

/// Max minus min (0 for no values).
pub fn spread(values: &[u64]) -> u64 {
    let max = values.iter().max().copied().unwrap_or(0);
    let min = values.iter().min().copied().unwrap_or(0);
    max - min
}
