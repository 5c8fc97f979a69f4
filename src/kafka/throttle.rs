//! Replication throttles for a reassignment, built the way `kafka-reassign-partitions` does.
//!
//! A throttle has two halves. Brokers get a byte rate (`leader.replication.throttled.rate`,
//! `follower.replication.throttled.rate`); topics name which replicas the rate applies to
//! (`leader.replication.throttled.replicas`, `follower.replication.throttled.replicas`, as
//! `partition:broker` lists). Only moving partitions are listed, so normal replication of
//! everything else stays unthrottled: the leader side lists a moving partition's current
//! replicas (any of them may be the leader serving the new copies), the follower side the new
//! replicas that are not in the current set (the copies being built).

use std::collections::{BTreeMap, BTreeSet};

use super::{BrokerId, TopicPartition};

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// The throttle of one topic: `(partition, broker)` pairs of each side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicThrottle {
    pub leader: BTreeSet<(i32, BrokerId)>,
    pub follower: BTreeSet<(i32, BrokerId)>,
}

impl TopicThrottle {
    /// Config value of one side: `0:1,0:2,1:3`.
    pub fn render(pairs: &BTreeSet<(i32, BrokerId)>) -> String {
        pairs
            .iter()
            .map(|(p, b)| format!("{p}:{b}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Everything to set for a throttled reassignment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Throttle {
    /// Bytes per second, per broker and side.
    pub rate: u64,
    /// Brokers that get the rate: all current and new replicas of the moving partitions.
    pub brokers: BTreeSet<BrokerId>,
    pub topics: BTreeMap<String, TopicThrottle>,
    /// Throttled replica lists others set on these topics, by topic and key: listed alongside.
    pub kept: BTreeMap<String, BTreeMap<String, String>>,
}

impl Throttle {
    /// The throttle for moving partitions from `current` to `target` replica lists. Partitions
    /// whose target equals their current replicas (in any order: a reorder moves no data), or
    /// that are not in `current`, are not throttled.
    pub fn for_moves(
        current: &BTreeMap<TopicPartition, Vec<BrokerId>>,
        target: &BTreeMap<TopicPartition, Vec<BrokerId>>,
        rate: u64,
    ) -> Throttle {
        let mut throttle = Throttle {
            rate,
            ..Throttle::default()
        };
        for (tp, new) in target {
            let Some(old) = current.get(tp) else { continue };
            let old_set: BTreeSet<_> = old.iter().copied().collect();
            let adding: Vec<BrokerId> = new
                .iter()
                .copied()
                .filter(|b| !old_set.contains(b))
                .collect();
            if adding.is_empty() {
                continue;
            }
            let topic = throttle.topics.entry(tp.topic.clone()).or_default();
            for &b in old {
                topic.leader.insert((tp.partition, b));
            }
            for &b in &adding {
                topic.follower.insert((tp.partition, b));
            }
            throttle.brokers.extend(old.iter().copied());
            throttle.brokers.extend(new.iter().copied());
        }
        throttle
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The same throttle, with the replica lists others set on its topics kept in each list.
    pub fn keeping(mut self, kept: &BTreeMap<String, BTreeMap<String, String>>) -> Throttle {
        self.kept = kept
            .iter()
            .filter(|(t, _)| self.topics.contains_key(*t))
            .map(|(t, k)| (t.clone(), k.clone()))
            .collect();
        self
    }

    /// Dynamic broker configs to set on each throttled broker.
    pub fn broker_configs(&self) -> BTreeMap<String, String> {
        [LEADER_RATE, FOLLOWER_RATE]
            .into_iter()
            .map(|k| (k.to_string(), self.rate.to_string()))
            .collect()
    }

    /// Topic configs to set on each throttled topic.
    pub fn topic_configs(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.topics
            .iter()
            .map(|(topic, t)| {
                let kept = self.kept.get(topic);
                let value = |key: &str, ours: &BTreeSet<(i32, BrokerId)>| {
                    let ours = TopicThrottle::render(ours);
                    match kept.and_then(|k| k.get(key)).map(String::as_str) {
                        None | Some("") => ours,
                        // Every replica is throttled already.
                        Some("*") => "*".to_string(),
                        Some(theirs) => {
                            let mut all: BTreeSet<&str> =
                                theirs.split(',').map(str::trim).collect();
                            all.extend(ours.split(',').filter(|s| !s.is_empty()));
                            all.into_iter().collect::<Vec<_>>().join(",")
                        }
                    }
                };
                let configs = BTreeMap::from([
                    (
                        LEADER_REPLICAS.to_string(),
                        value(LEADER_REPLICAS, &t.leader),
                    ),
                    (
                        FOLLOWER_REPLICAS.to_string(),
                        value(FOLLOWER_REPLICAS, &t.follower),
                    ),
                ]);
                (topic.clone(), configs)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    #[test]
    fn leader_side_is_current_replicas_follower_side_the_new_ones() {
        let current = BTreeMap::from([(tp("a", 0), vec![1, 2]), (tp("a", 1), vec![2, 3])]);
        let target = BTreeMap::from([(tp("a", 0), vec![1, 4]), (tp("a", 1), vec![2, 3])]);
        let t = Throttle::for_moves(&current, &target, 1000);
        assert_eq!(t.brokers, BTreeSet::from([1, 2, 4]));
        let configs = t.topic_configs();
        assert_eq!(configs["a"][LEADER_REPLICAS], "0:1,0:2");
        assert_eq!(configs["a"][FOLLOWER_REPLICAS], "0:4");
        assert_eq!(t.broker_configs()[LEADER_RATE], "1000");
        assert_eq!(t.broker_configs()[FOLLOWER_RATE], "1000");
    }

    #[test]
    fn replica_lists_others_set_are_kept_alongside() {
        let current = BTreeMap::from([(tp("a", 0), vec![1, 2]), (tp("b", 0), vec![1])]);
        let target = BTreeMap::from([(tp("a", 0), vec![1, 4]), (tp("b", 0), vec![3])]);
        let kept = BTreeMap::from([
            (
                "a".to_string(),
                BTreeMap::from([(LEADER_REPLICAS.to_string(), "5:9,0:1".to_string())]),
            ),
            (
                "b".to_string(),
                BTreeMap::from([(FOLLOWER_REPLICAS.to_string(), "*".to_string())]),
            ),
            (
                "untouched".to_string(),
                BTreeMap::from([(LEADER_REPLICAS.to_string(), "*".to_string())]),
            ),
        ]);
        let t = Throttle::for_moves(&current, &target, 1000).keeping(&kept);
        let configs = t.topic_configs();
        assert_eq!(configs["a"][LEADER_REPLICAS], "0:1,0:2,5:9");
        assert_eq!(configs["a"][FOLLOWER_REPLICAS], "0:4");
        assert_eq!(configs["b"][FOLLOWER_REPLICAS], "*");
        assert_eq!(configs["b"][LEADER_REPLICAS], "0:1");
        assert!(!configs.contains_key("untouched"));
    }

    #[test]
    fn reorders_and_unknown_partitions_are_not_throttled() {
        let current = BTreeMap::from([(tp("a", 0), vec![1, 2])]);
        let target = BTreeMap::from([(tp("a", 0), vec![2, 1]), (tp("b", 0), vec![3])]);
        let t = Throttle::for_moves(&current, &target, 1);
        assert!(t.is_empty());
        assert!(t.brokers.is_empty());
    }

    #[test]
    fn several_topics_and_partitions_are_listed_sorted() {
        let current = BTreeMap::from([
            (tp("x", 1), vec![3, 1]),
            (tp("x", 0), vec![1]),
            (tp("y", 0), vec![2]),
        ]);
        let target = BTreeMap::from([
            (tp("x", 1), vec![3, 2]),
            (tp("x", 0), vec![5, 6]),
            (tp("y", 0), vec![2, 1]),
        ]);
        let t = Throttle::for_moves(&current, &target, 10);
        let configs = t.topic_configs();
        assert_eq!(configs["x"][LEADER_REPLICAS], "0:1,1:1,1:3");
        assert_eq!(configs["x"][FOLLOWER_REPLICAS], "0:5,0:6,1:2");
        assert_eq!(configs["y"][LEADER_REPLICAS], "0:2");
        assert_eq!(configs["y"][FOLLOWER_REPLICAS], "0:1");
        assert_eq!(t.brokers, BTreeSet::from([1, 2, 3, 5, 6]));
    }
}
