//! One snapshot for the parts of a reconcile that only look.
//!
//! A reconcile reads the cluster several times: to start an operation, to manage topics, to
//! record the brokers Kafka knows. Asking Kafka each time costs a Metadata round, a
//! DescribeLogDirs to every broker and a ListPartitionReassignments, and a cluster of 100,000
//! partitions pays it three times per reconcile. [`SharedSnapshot`] answers `snapshot` with the
//! one it took first, as long as nothing was changed or asked since that a later step could
//! combine with it:
//! - a change made through it (topics, configs, reassignments, throttles, elections,
//!   registrations) drops the kept snapshot: the next step sees what the change did;
//! - so do the reads whose answer a step combines with a snapshot and expects it to be at least
//!   as new (reassignments in progress, each broker's own metadata): a reassignment finished
//!   between an old snapshot and a newer list would look neither done nor in flight.
//!
//! It is handed only to the steps whose decisions may rest on what the cluster was at the start
//! of the reconcile; an operation in progress and the roll's checks take their own reads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{
    BrokerId, BrokerMetadata, ClusterSnapshot, ConfigOp, ConfigResource, ConfigValue,
    ElectionOutcome, KafkaAdmin, NewTopic, OngoingReassignment, QuorumState, Result, Throttle,
    TopicPartition,
};

/// A [`KafkaAdmin`] that keeps its first snapshot until a change or a fresher read.
pub struct SharedSnapshot {
    inner: Arc<dyn KafkaAdmin>,
    kept: Mutex<Option<ClusterSnapshot>>,
}

impl SharedSnapshot {
    pub fn new(inner: Arc<dyn KafkaAdmin>) -> Self {
        SharedSnapshot {
            inner,
            kept: Mutex::new(None),
        }
    }

    /// The admin without the kept snapshot, for steps that need fresh reads.
    pub fn fresh(&self) -> &dyn KafkaAdmin {
        self.inner.as_ref()
    }

    fn forget(&self) {
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn kept(&self) -> Option<ClusterSnapshot> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl KafkaAdmin for SharedSnapshot {
    async fn snapshot(&self) -> Result<ClusterSnapshot> {
        if let Some(kept) = self.kept() {
            return Ok(kept);
        }
        let snapshot = self.inner.snapshot().await?;
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }

    async fn metadata_by_broker(
        &self,
        brokers: &[BrokerId],
    ) -> Result<BTreeMap<BrokerId, Result<BrokerMetadata>>> {
        self.forget();
        self.inner.metadata_by_broker(brokers).await
    }

    async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<BTreeMap<ConfigResource, BTreeMap<String, ConfigValue>>> {
        self.inner.describe_configs(resources).await
    }

    async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        self.forget();
        self.inner.create_topics(topics).await
    }

    async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        self.forget();
        self.inner.delete_topics(topics).await
    }

    async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        self.forget();
        self.inner.create_partitions(topic, total).await
    }

    async fn alter_configs(
        &self,
        resource: &ConfigResource,
        changes: &BTreeMap<String, ConfigOp>,
    ) -> Result<()> {
        self.forget();
        self.inner.alter_configs(resource, changes).await
    }

    async fn alter_reassignments(
        &self,
        targets: &BTreeMap<TopicPartition, Vec<BrokerId>>,
    ) -> Result<()> {
        self.forget();
        self.inner.alter_reassignments(targets).await
    }

    async fn list_reassignments(&self) -> Result<BTreeMap<TopicPartition, OngoingReassignment>> {
        self.forget();
        self.inner.list_reassignments().await
    }

    async fn cancel_reassignments(&self, partitions: &[TopicPartition]) -> Result<()> {
        self.forget();
        self.inner.cancel_reassignments(partitions).await
    }

    async fn set_throttle(&self, throttle: &Throttle) -> Result<()> {
        self.forget();
        self.inner.set_throttle(throttle).await
    }

    async fn clear_throttle(&self, brokers: &[BrokerId], topics: &[String]) -> Result<()> {
        self.forget();
        self.inner.clear_throttle(brokers, topics).await
    }

    async fn elect_preferred_leaders(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<ElectionOutcome> {
        self.forget();
        self.inner.elect_preferred_leaders(partitions).await
    }

    async fn unregister_broker(&self, broker: BrokerId) -> Result<()> {
        self.forget();
        self.inner.unregister_broker(broker).await
    }

    async fn quorum(&self) -> Result<QuorumState> {
        self.inner.quorum().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::model::{Call, KafkaModel, ModelConfig};

    fn snapshots(model: &KafkaModel) -> usize {
        model
            .calls()
            .iter()
            .filter(|c| c.call == Call::Snapshot)
            .count()
    }

    #[tokio::test]
    async fn looks_share_one_snapshot_and_a_change_is_seen() {
        let model = Arc::new(KafkaModel::new(ModelConfig::default(), 3));
        model.create_topic("a", 3, 2).unwrap();
        let shared = SharedSnapshot::new(model.clone());
        let first = shared.snapshot().await.unwrap();
        shared
            .describe_configs(&[ConfigResource::Topic("a".into())])
            .await
            .unwrap();
        // A topic made by someone else meanwhile: the kept view is the reconcile's start.
        model.create_topic("by-a-user", 1, 1).unwrap();
        assert_eq!(shared.snapshot().await.unwrap(), first);
        assert_eq!(snapshots(&model), 1);

        shared
            .create_topics(&[NewTopic {
                name: "b".into(),
                partitions: 1,
                replication_factor: 1,
                config: BTreeMap::new(),
            }])
            .await
            .unwrap();
        let after = shared.snapshot().await.unwrap();
        assert!(after.topics.contains_key("b") && after.topics.contains_key("by-a-user"));
        assert_eq!(snapshots(&model), 2);
    }

    #[tokio::test]
    async fn a_fresher_read_drops_the_kept_snapshot() {
        let model = Arc::new(KafkaModel::new(ModelConfig::default(), 3));
        let shared = SharedSnapshot::new(model.clone());
        shared.snapshot().await.unwrap();
        shared.list_reassignments().await.unwrap();
        shared.snapshot().await.unwrap();
        shared.metadata_by_broker(&[0, 1]).await.unwrap();
        shared.snapshot().await.unwrap();
        assert_eq!(snapshots(&model), 3);
        shared.fresh().snapshot().await.unwrap();
        assert_eq!(snapshots(&model), 4);
    }
}
