//! The replication throttles an operation sets, and clearing them.
//!
//! What the operation throttles is recorded in its status before any throttle is set, so a
//! throttle is cleared even if the operator dies right after setting it. Clearing touches only
//! the brokers and topics the operation recorded: throttles that other tools or users set
//! elsewhere are theirs. Where the operation found such a throttle on a broker or topic it
//! throttles too, it records the value and puts it back at the end (a topic keeps its own
//! throttled replicas listed alongside the operation's meanwhile).

use std::collections::{BTreeMap, BTreeSet};

use crate::api::Operation;
use crate::kafka::throttle::{FOLLOWER_RATE, FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS};
use crate::kafka::{ConfigOp, ConfigResource, ConfigValue, KafkaAdmin, KafkaError, Throttle};

/// Records the brokers and topics `throttle` touches that `op` has not recorded yet, with the
/// throttle values others set on them. Returns whether anything was recorded: the caller then
/// sets nothing this round, so the record reaches the status before the throttle reaches Kafka.
///
/// The partitions the throttle lists are recorded too, with the `planned` ones (every partition
/// the operation still means to move, by topic), so later batches rarely wait for a record; and
/// so is the throttle's rate.
pub(super) async fn record(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
    throttle: &Throttle,
    planned: &BTreeMap<String, BTreeSet<i32>>,
) -> Result<bool, KafkaError> {
    let unlisted = throttle.topics.iter().any(|(t, tt)| {
        let recorded = op.throttled_partitions.get(t);
        tt.leader
            .iter()
            .chain(&tt.follower)
            .any(|(p, _)| !recorded.is_some_and(|r| r.contains(p)))
    });
    if unlisted {
        let mut partitions: BTreeMap<String, BTreeSet<i32>> = op
            .throttled_partitions
            .iter()
            .map(|(t, ps)| (t.clone(), ps.iter().copied().collect()))
            .collect();
        for (t, tt) in &throttle.topics {
            let ps = partitions.entry(t.clone()).or_default();
            ps.extend(tt.leader.iter().chain(&tt.follower).map(|(p, _)| *p));
        }
        for (t, planned) in planned {
            partitions.entry(t.clone()).or_default().extend(planned);
        }
        op.throttled_partitions = partitions
            .into_iter()
            .map(|(t, ps)| (t, ps.into_iter().collect()))
            .collect();
    }
    let brokers: Vec<i32> = throttle
        .brokers
        .iter()
        .copied()
        .filter(|b| !op.throttled_brokers.contains(b))
        .collect();
    let topics: Vec<String> = throttle
        .topics
        .keys()
        .filter(|t| !op.throttled_topics.contains(t))
        .cloned()
        .collect();
    let new_rate = !op.throttle_rates.contains(&(throttle.rate as i64));
    if new_rate {
        op.throttle_rates.push(throttle.rate as i64);
    }
    if brokers.is_empty() && topics.is_empty() {
        return Ok(unlisted || new_rate);
    }
    let resources: Vec<ConfigResource> = brokers
        .iter()
        .map(|b| ConfigResource::Broker(*b))
        .chain(topics.iter().cloned().map(ConfigResource::Topic))
        .collect();
    let found = admin.describe_configs(&resources).await?;
    for (resource, entries) in found {
        match resource {
            ConfigResource::Broker(b) => {
                let kept = set_here(&entries, &[LEADER_RATE, FOLLOWER_RATE]);
                if !kept.is_empty() {
                    op.kept_broker_throttles.insert(b.to_string(), kept);
                }
            }
            ConfigResource::Topic(t) => {
                let kept = set_here(&entries, &[LEADER_REPLICAS, FOLLOWER_REPLICAS]);
                if !kept.is_empty() {
                    op.kept_topic_throttles.insert(t, kept);
                }
            }
            ConfigResource::BrokerDefault => {}
        }
    }
    op.throttled_brokers.extend(brokers);
    op.throttled_brokers.sort_unstable();
    op.throttled_topics.extend(topics);
    op.throttled_topics.sort();
    Ok(true)
}

/// The values of `keys` set on this very broker or topic (not inherited, not empty).
fn set_here(entries: &BTreeMap<String, ConfigValue>, keys: &[&str]) -> BTreeMap<String, String> {
    keys.iter()
        .filter_map(|k| {
            let v = entries.get(*k)?;
            let value = v.value.as_ref().filter(|s| !s.is_empty())?;
            v.overridden.then(|| (k.to_string(), value.clone()))
        })
        .collect()
}

/// Finds the throttle values someone else set on the brokers and topics the operation
/// throttles since it recorded them (a user changing a throttle while the operation runs): they
/// are recorded as theirs, to be put back at the end instead of what they had before. A broker
/// rate other than the operation's own (`throttle_rates`) is someone else's; so are the
/// entries of a topic's throttled replica list that are `*` or name a partition the operation
/// does not list. Returns whether anything was recorded: the caller then sets nothing this
/// round, so the record reaches the status before the operation's throttle overwrites theirs.
pub(super) async fn adopt_changes(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
    brokers: &[i32],
    topics: &[String],
    lost: &BTreeSet<i32>,
) -> Result<bool, KafkaError> {
    // A broker declared lost is read on its own: one that is not running describes nothing
    // (only a broker describes its own configuration), and has nothing of anyone's worth
    // keeping. Any other broker that is not running fails the call, so the caller waits for
    // it: what someone set on it cannot be seen until it runs again.
    let (lost_ones, kept): (Vec<i32>, Vec<i32>) =
        brokers.iter().copied().partition(|b| lost.contains(b));
    let resources: Vec<ConfigResource> = kept
        .iter()
        .map(|b| ConfigResource::Broker(*b))
        .chain(topics.iter().cloned().map(ConfigResource::Topic))
        .collect();
    let mut found = BTreeMap::new();
    if !resources.is_empty() {
        match admin.describe_configs(&resources).await {
            Ok(described) => found = described,
            // A topic deleted meanwhile has nothing of anyone's left.
            Err(KafkaError::UnknownTopic { .. }) if kept.is_empty() => {}
            Err(e) => return Err(e),
        }
    }
    for b in lost_ones {
        match admin.describe_configs(&[ConfigResource::Broker(b)]).await {
            Ok(described) => found.extend(described),
            Err(KafkaError::Kafka { name, .. }) if name == "BROKER_NOT_AVAILABLE" => {}
            Err(e) => return Err(e),
        }
    }
    let ours: Vec<String> = op.throttle_rates.iter().map(|r| r.to_string()).collect();
    let mut changed = false;
    for (resource, entries) in found {
        match resource {
            ConfigResource::Broker(b) => {
                let key = b.to_string();
                for (k, v) in set_here(&entries, &[LEADER_RATE, FOLLOWER_RATE]) {
                    let kept = op.kept_broker_throttles.get(&key).and_then(|m| m.get(&k));
                    if !ours.contains(&v) && kept != Some(&v) {
                        op.kept_broker_throttles
                            .entry(key.clone())
                            .or_default()
                            .insert(k, v);
                        changed = true;
                    }
                }
            }
            ConfigResource::Topic(t) => {
                let listed: BTreeSet<i32> = op
                    .throttled_partitions
                    .get(&t)
                    .map(|ps| ps.iter().copied().collect())
                    .unwrap_or_default();
                for (k, v) in set_here(&entries, &[LEADER_REPLICAS, FOLLOWER_REPLICAS]) {
                    let kept = op.kept_topic_throttles.get(&t).and_then(|m| m.get(&k));
                    let theirs = others_entries(&v, &listed);
                    let had = kept.map(|k| others_entries(k, &listed)).unwrap_or_default();
                    if theirs.is_empty() || theirs == had {
                        continue;
                    }
                    // What they had listed on the operation's partitions stays theirs too.
                    let mut now = theirs;
                    if !now.contains("*")
                        && let Some(kept) = kept
                    {
                        now.extend(
                            entries_of(kept)
                                .filter(|e| partition_of(e).is_some_and(|p| listed.contains(&p))),
                        );
                    }
                    let value = if now.contains("*") {
                        "*".to_string()
                    } else {
                        now.into_iter().collect::<Vec<_>>().join(",")
                    };
                    op.kept_topic_throttles
                        .entry(t.clone())
                        .or_default()
                        .insert(k, value);
                    changed = true;
                }
            }
            ConfigResource::BrokerDefault => {}
        }
    }
    Ok(changed)
}

fn entries_of(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// The partition a `partition:broker` entry names.
fn partition_of(entry: &str) -> Option<i32> {
    entry.split_once(':')?.0.trim().parse().ok()
}

/// The entries of a throttled replica list that are not the operation's: `*`, and those of
/// partitions it does not list.
fn others_entries(value: &str, listed: &BTreeSet<i32>) -> BTreeSet<String> {
    entries_of(value)
        .filter(|e| !partition_of(e).is_some_and(|p| listed.contains(&p)))
        .collect()
}

/// Clears the throttles the operation recorded and puts back what others had set there: a
/// broker or topic with a value of someone else's gets that value back in the same change
/// (never a moment without it), the others lose the keys.
///
/// A value someone set since the operation last looked is theirs too: it is kept, not deleted
/// (putting back what is there already overwrites nothing, so no record comes first).
///
/// A throttled broker that is not running cannot be read, so the clearing waits for it, unless
/// it is declared `lost` (gone for good): then its rates are deleted unread, through a KRaft
/// controller, so a broker of the same id added later starts unthrottled.
pub(super) async fn clear_throttles(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
    lost: &BTreeSet<i32>,
) -> Result<(), KafkaError> {
    let (brokers, topics) = (op.throttled_brokers.clone(), op.throttled_topics.clone());
    adopt_changes(admin, op, &brokers, &topics, lost).await?;
    let brokers: Vec<i32> = op
        .throttled_brokers
        .iter()
        .copied()
        .filter(|b| !op.kept_broker_throttles.contains_key(&b.to_string()))
        .collect();
    let topics: Vec<String> = op
        .throttled_topics
        .iter()
        .filter(|t| !op.kept_topic_throttles.contains_key(*t))
        .cloned()
        .collect();
    let (lost_ones, brokers): (Vec<i32>, Vec<i32>) =
        brokers.into_iter().partition(|b| lost.contains(b));
    if !brokers.is_empty() || !topics.is_empty() {
        admin.clear_throttle(&brokers, &topics).await?;
    }
    for b in lost_ones {
        match admin.clear_throttle(&[b], &[]).await {
            Ok(()) => {}
            // ZooKeeper mode: only the broker itself takes a change of its configuration, and
            // a lost one never will. Its rate stays in ZooKeeper, inert without a topic's
            // throttled replica list naming it; the drain does not wait for a broker that is gone.
            Err(KafkaError::Kafka { name, .. }) if name == "BROKER_NOT_AVAILABLE" => {
                tracing::warn!(
                    broker = b,
                    "the throttle rate of lost broker {b} cannot be cleared (ZooKeeper mode: only that broker takes it); left as it is"
                );
            }
            Err(e) => return Err(e),
        }
    }
    let restore = op
        .kept_broker_throttles
        .iter()
        .filter_map(|(b, kept)| {
            let resource = ConfigResource::Broker(b.parse().ok()?);
            Some((resource, kept, [LEADER_RATE, FOLLOWER_RATE]))
        })
        .chain(op.kept_topic_throttles.iter().map(|(t, kept)| {
            (
                ConfigResource::Topic(t.clone()),
                kept,
                [LEADER_REPLICAS, FOLLOWER_REPLICAS],
            )
        }));
    for (resource, kept, keys) in restore {
        let changes = keys
            .iter()
            .map(|k| {
                let change = match kept.get(*k) {
                    Some(v) => ConfigOp::Set(v.clone()),
                    None => ConfigOp::Delete,
                };
                (k.to_string(), change)
            })
            .collect();
        match admin.alter_configs(&resource, &changes).await {
            // A topic deleted meanwhile has nothing to put back.
            Ok(()) | Err(KafkaError::UnknownTopic { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    op.throttled_brokers.clear();
    op.throttled_topics.clear();
    op.kept_broker_throttles.clear();
    op.kept_topic_throttles.clear();
    op.throttled_partitions.clear();
    op.throttle_rates.clear();
    Ok(())
}
