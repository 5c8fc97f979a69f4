//! The replication throttles an operation sets, and clearing them.

use std::collections::BTreeSet;

use crate::api::Operation;
use crate::kafka::throttle::{FOLLOWER_REPLICAS, LEADER_REPLICAS};
use crate::kafka::{BrokerId, ConfigResource, KafkaAdmin, KafkaError};

/// Clears the replication throttle everywhere it may be: the brokers and topics the operation
/// recorded, every live broker, and every topic that has throttled replicas. Recording is done
/// before setting, but a status write can still fail after a throttle was set; a throttle left
/// behind would slow replication for good.
pub(super) async fn clear_throttles(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
) -> Result<(), KafkaError> {
    let snapshot = admin.snapshot().await?;
    let mut brokers: BTreeSet<BrokerId> = op.throttled_brokers.iter().copied().collect();
    brokers.extend(snapshot.broker_ids());
    let mut topics: BTreeSet<String> = op.throttled_topics.iter().cloned().collect();
    let resources: Vec<ConfigResource> = snapshot
        .topics
        .keys()
        .filter(|t| !topics.contains(*t))
        .map(|t| ConfigResource::Topic(t.clone()))
        .collect();
    if !resources.is_empty() {
        for (resource, entries) in admin.describe_configs(&resources).await? {
            let throttled = [LEADER_REPLICAS, FOLLOWER_REPLICAS].iter().any(|k| {
                entries.get(*k).is_some_and(|v| {
                    !v.is_default && v.value.as_deref().is_some_and(|v| !v.is_empty())
                })
            });
            if let (true, ConfigResource::Topic(t)) = (throttled, resource) {
                topics.insert(t);
            }
        }
    }
    let brokers: Vec<BrokerId> = brokers.into_iter().collect();
    let topics: Vec<String> = topics.into_iter().collect();
    admin.clear_throttle(&brokers, &topics).await?;
    op.throttled_brokers.clear();
    op.throttled_topics.clear();
    Ok(())
}
