//! The replication throttles an operation sets, and clearing them.
//!
//! What the operation throttles is recorded in its status before any throttle is set, so a
//! throttle is cleared even if the operator dies right after setting it. Clearing touches only
//! the brokers and topics the operation recorded: throttles that other tools or users set
//! elsewhere are theirs. Where the operation found such a throttle on a broker or topic it
//! throttles too, it records the value and puts it back at the end (a topic keeps its own
//! throttled replicas listed alongside the operation's meanwhile).

use std::collections::BTreeMap;

use crate::api::Operation;
use crate::kafka::throttle::{FOLLOWER_RATE, FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS};
use crate::kafka::{ConfigOp, ConfigResource, ConfigValue, KafkaAdmin, KafkaError, Throttle};

/// Records the brokers and topics `throttle` touches that `op` has not recorded yet, with the
/// throttle values others set on them. Returns whether anything was recorded: the caller then
/// sets nothing this round, so the record reaches the status before the throttle reaches Kafka.
pub(super) async fn record(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
    throttle: &Throttle,
) -> Result<bool, KafkaError> {
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
    if brokers.is_empty() && topics.is_empty() {
        return Ok(false);
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

/// Clears the throttles the operation recorded and puts back what others had set there: a
/// broker or topic with a value of someone else's gets that value back in the same change
/// (never a moment without it), the others lose the keys.
pub(super) async fn clear_throttles(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
) -> Result<(), KafkaError> {
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
    if !brokers.is_empty() || !topics.is_empty() {
        admin.clear_throttle(&brokers, &topics).await?;
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
    Ok(())
}
