//! The Kafka admin layer: [`KafkaAdmin`] is the only way the rest of the operator touches Kafka.
//!
//! The trait is object-safe (`async_trait`), so the controller can hold an
//! `Arc<dyn KafkaAdmin>` and tests can substitute a fake. The one real implementation,
//! [`client::KafkaClient`], uses librdkafka (rdkafka) for what it wraps (metadata, topic and
//! partition creation, describing configs) and `kafka-protocol` messages over a small connection
//! ([`protocol::Connection`]) for what librdkafka lacks (reassignments, incremental config
//! changes, leader elections, log dir sizes, cluster description, broker unregistration, and
//! Metadata asked of one given broker).
//!
//! Every call is bounded by the client's timeout and returns a [`KafkaError`] that says what to
//! do and whether a retry can help; none panics.

pub mod client;
pub mod error;
#[cfg(test)]
pub mod model;
pub mod protocol;
pub mod shared;
pub mod throttle;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use client::{AddressOverride, KafkaClient, KafkaClientConfig};
pub use error::{KafkaError, Result};
pub use shared::SharedSnapshot;
pub use throttle::Throttle;

/// A Kafka node id (brokers are their pod ordinal).
pub type BrokerId = i32;

/// A partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A broker as the cluster describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub id: BrokerId,
    /// Advertised address (before any address override).
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// One partition: its replicas (in preference order, the first is the preferred leader),
/// in-sync replicas, leader, and the size of each replica on disk where known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// None while the partition has no leader.
    pub leader: Option<BrokerId>,
    /// Bytes on disk per broker holding a log of the partition, from DescribeLogDirs: the
    /// replicas, and for a short while after a move the broker it left (until that broker deletes
    /// the stale log). Brokers that did not answer are absent.
    pub size_bytes: BTreeMap<BrokerId, u64>,
}

impl PartitionState {
    /// Whether every replica is in sync.
    pub fn fully_in_sync(&self) -> bool {
        self.replicas.iter().all(|r| self.isr.contains(r))
    }

    /// Largest replica size: what a new replica has to copy.
    pub fn size(&self) -> u64 {
        self.size_bytes.values().copied().max().unwrap_or(0)
    }
}

/// A topic and its partitions (sorted by partition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicState {
    pub name: String,
    /// Kafka's own topics (`__consumer_offsets`, ...). They hold data too: drains move them.
    pub internal: bool,
    pub partitions: Vec<PartitionState>,
}

impl TopicState {
    /// Replication factor: the most common replica count (during a reassignment a partition
    /// briefly has more).
    pub fn replication_factor(&self) -> i32 {
        let mut counts = BTreeMap::<usize, usize>::new();
        for p in &self.partitions {
            *counts.entry(p.replicas.len()).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(len, n)| (*n, *len))
            .map(|(len, _)| len as i32)
            .unwrap_or(0)
    }
}

/// A reassignment in progress (KIP-455).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OngoingReassignment {
    /// The full replica set during the move (old and new).
    pub replicas: Vec<BrokerId>,
    pub adding: Vec<BrokerId>,
    pub removing: Vec<BrokerId>,
}

impl OngoingReassignment {
    /// Replicas before the move started: the ones serving the new copies.
    pub fn source(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }

    /// Replicas after the move completes.
    pub fn target(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }
}

/// What Kafka says about the cluster, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    pub cluster_id: Option<String>,
    /// In ZooKeeper mode the controller broker; in KRaft mode the broker requests are forwarded
    /// through (the KRaft controllers are not brokers).
    pub controller_id: Option<BrokerId>,
    /// Live (registered, unfenced) brokers, sorted by id.
    pub brokers: Vec<Broker>,
    /// Brokers still registered but fenced (stopped, or not caught up). Listed only by brokers
    /// that can tell (Kafka 4.0+); empty otherwise.
    pub fenced_brokers: Vec<BrokerId>,
    pub topics: BTreeMap<String, TopicState>,
    pub reassignments: BTreeMap<TopicPartition, OngoingReassignment>,
    /// Live brokers that described every one of their log directories for this snapshot:
    /// only their `size_bytes` entries (and [`stray_logs`](Self::stray_logs)) are their own
    /// word on what they hold. A broker missing here said nothing.
    pub log_dirs_described: BTreeSet<BrokerId>,
    /// Logs brokers hold of partitions the metadata does not list (a topic deleted or created
    /// a moment ago, as the broker answering the metadata saw it).
    pub stray_logs: BTreeMap<BrokerId, BTreeSet<TopicPartition>>,
}

impl ClusterSnapshot {
    pub fn broker_ids(&self) -> BTreeSet<BrokerId> {
        self.brokers.iter().map(|b| b.id).collect()
    }

    /// Replica lists of every partition.
    pub fn assignment(&self) -> BTreeMap<TopicPartition, Vec<BrokerId>> {
        self.partitions()
            .map(|(tp, p)| (tp, p.replicas.clone()))
            .collect()
    }

    /// Replica lists as they will be once the reassignments in progress complete.
    pub fn target_assignment(&self) -> BTreeMap<TopicPartition, Vec<BrokerId>> {
        self.partitions()
            .map(|(tp, p)| {
                let replicas = match self.reassignments.get(&tp) {
                    Some(r) => r.target(),
                    None => p.replicas.clone(),
                };
                (tp, replicas)
            })
            .collect()
    }

    /// Brokers that some partition lists as a replica, or will once its move completes.
    pub fn holding_brokers(&self) -> BTreeSet<BrokerId> {
        self.partitions()
            .flat_map(|(_, p)| p.replicas.iter().copied())
            .chain(self.reassignments.values().flat_map(|r| r.target()))
            .collect()
    }

    /// Every partition with its topic.
    pub fn partitions(&self) -> impl Iterator<Item = (TopicPartition, &PartitionState)> {
        self.topics.values().flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (TopicPartition::new(t.name.clone(), p.partition), p))
        })
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.topics
            .get(&tp.topic)?
            .partitions
            .iter()
            .find(|p| p.partition == tp.partition)
    }

    /// Partitions whose in-sync replicas are fewer than their replicas.
    pub fn under_replicated(&self) -> Vec<TopicPartition> {
        self.partitions()
            .filter(|(_, p)| !p.fully_in_sync())
            .map(|(tp, _)| tp)
            .collect()
    }

    /// Number of partitions each broker leads.
    pub fn leader_counts(&self) -> BTreeMap<BrokerId, usize> {
        let mut counts: BTreeMap<BrokerId, usize> =
            self.brokers.iter().map(|b| (b.id, 0)).collect();
        for (_, p) in self.partitions() {
            if let Some(l) = p.leader {
                *counts.entry(l).or_default() += 1;
            }
        }
        counts
    }
}

/// One broker's own answer to a Metadata request, from its own metadata cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// The brokers it lists as live: in KRaft mode the registered, unfenced ones; in ZooKeeper
    /// mode those the controller last told it are up. A broker that stopped leaves this list
    /// only once the answering broker's cache has caught up with the stop.
    pub brokers: BTreeSet<BrokerId>,
    /// Every topic (partitions without sizes).
    pub topics: BTreeMap<String, TopicState>,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub config: BTreeMap<String, String>,
}

/// What a config change does to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    /// Back to the default (removes the dynamic/topic override).
    Delete,
}

/// Whose configuration to read or change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigResource {
    Topic(String),
    /// One broker's dynamic configuration.
    Broker(BrokerId),
    /// The cluster-wide dynamic broker default.
    BrokerDefault,
}

impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigResource::Topic(t) => write!(f, "topic {t}"),
            ConfigResource::Broker(b) => write!(f, "broker {b}"),
            ConfigResource::BrokerDefault => write!(f, "the cluster-wide broker default"),
        }
    }
}

/// One configuration entry as Kafka describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigValue {
    /// None for sensitive values.
    pub value: Option<String>,
    /// Whether the value is Kafka's default (not set on the topic/broker or in the cluster).
    pub is_default: bool,
    /// Whether the value is set on this topic or broker itself (a dynamic override), rather
    /// than inherited from the broker's configuration or Kafka's defaults.
    pub overridden: bool,
    /// Whether Kafka can change the setting only by a restart (it says so per setting).
    pub read_only: bool,
}

/// Outcome of a preferred leader election.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElectionOutcome {
    /// Partitions whose leader moved to the preferred replica.
    pub elected: Vec<TopicPartition>,
    /// Partitions already led by their preferred replica.
    pub not_needed: usize,
    /// Partitions where the election failed, with why (e.g. the preferred replica is out of sync).
    pub failed: Vec<(TopicPartition, String)>,
}

/// The operator's access to Kafka. See the module documentation.
#[async_trait::async_trait]
pub trait KafkaAdmin: Send + Sync {
    /// Brokers with racks, every partition's replicas/ISR/leader, replica sizes on disk and the
    /// reassignments in progress.
    async fn snapshot(&self) -> Result<ClusterSnapshot>;

    /// Topic metadata (replicas, ISR, leaders; no sizes) and the live brokers as each of
    /// `brokers` answers them from its own metadata cache, by broker: a Metadata request sent to that broker itself, not to
    /// whichever broker a client picks. A broker that is not live, cannot be reached or does not
    /// answer has its error. Every broker's cache may trail the controller's (a KRaft broker
    /// replays the metadata log), but never by more than its own last registration: a broker is
    /// unfenced only once it has caught up with the log up to that point (in ZooKeeper mode its
    /// cache is filled by the controller once it has registered).
    async fn metadata_by_broker(
        &self,
        brokers: &[BrokerId],
    ) -> Result<BTreeMap<BrokerId, Result<BrokerMetadata>>>;

    /// Configuration entries of topics or brokers, by resource.
    async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<BTreeMap<ConfigResource, BTreeMap<String, ConfigValue>>>;

    /// Creates topics. A topic that already exists is not an error (creation is idempotent).
    async fn create_topics(&self, topics: &[NewTopic]) -> Result<()>;

    /// Deletes topics and their data. A topic that does not exist is not an error.
    async fn delete_topics(&self, topics: &[String]) -> Result<()>;

    /// Grows a topic to `total` partitions (Kafka cannot shrink them).
    async fn create_partitions(&self, topic: &str, total: i32) -> Result<()>;

    /// Changes configuration keys incrementally; keys not named keep their values.
    async fn alter_configs(
        &self,
        resource: &ConfigResource,
        changes: &BTreeMap<String, ConfigOp>,
    ) -> Result<()>;

    /// Starts moving partitions to the given replica lists (first = preferred leader).
    async fn alter_reassignments(
        &self,
        targets: &BTreeMap<TopicPartition, Vec<BrokerId>>,
    ) -> Result<()>;

    /// Reassignments in progress.
    async fn list_reassignments(&self) -> Result<BTreeMap<TopicPartition, OngoingReassignment>>;

    /// Cancels reassignments: the partitions return to their original replicas. Partitions with
    /// no reassignment in progress are ignored.
    async fn cancel_reassignments(&self, partitions: &[TopicPartition]) -> Result<()>;

    /// Sets a reassignment throttle (broker rates and topic replica lists).
    async fn set_throttle(&self, throttle: &Throttle) -> Result<()>;

    /// Removes throttles from these brokers and topics.
    async fn clear_throttle(&self, brokers: &[BrokerId], topics: &[String]) -> Result<()>;

    /// Moves leadership to the preferred (first) replica; all partitions when `partitions` is
    /// None.
    async fn elect_preferred_leaders(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<ElectionOutcome>;

    /// Removes a broker's registration from the KRaft metadata (after it was drained and
    /// stopped). Fails with [`KafkaError::Unsupported`] in ZooKeeper mode.
    async fn unregister_broker(&self, broker: BrokerId) -> Result<()>;

    /// The KRaft metadata quorum: its leader (the active controller) and how far each voter
    /// has replicated the metadata log. Fails with [`KafkaError::Unsupported`] in ZooKeeper
    /// mode.
    async fn quorum(&self) -> Result<QuorumState>;
}

/// The KRaft metadata quorum, as its leader describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumState {
    /// Node id of the active controller; None while the quorum has no leader.
    pub leader: Option<BrokerId>,
    pub high_watermark: i64,
    pub voters: Vec<VoterState>,
}

/// One voter of the quorum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoterState {
    pub id: BrokerId,
    pub log_end_offset: i64,
    /// When the leader last saw it caught up, in the leader's clock (ms); None if not known.
    pub last_caught_up_ms: Option<i64>,
}

impl QuorumState {
    /// Voters that are not caught up with the leader: last caught up more than `max_lag_ms`
    /// before the leader itself (both in the leader's clock, so no clock skew enters), or,
    /// where timestamps are not reported, with a log ending below the high watermark.
    pub fn lagging(&self, max_lag_ms: i64) -> Vec<BrokerId> {
        let leader_ts = self
            .voters
            .iter()
            .find(|v| Some(v.id) == self.leader)
            .and_then(|v| v.last_caught_up_ms);
        self.voters
            .iter()
            .filter(|v| Some(v.id) != self.leader)
            .filter(|v| match (leader_ts, v.last_caught_up_ms) {
                (Some(l), Some(f)) => l - f > max_lag_ms,
                _ => v.log_end_offset < self.high_watermark,
            })
            .map(|v| v.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(id: BrokerId, log_end_offset: i64, last_caught_up_ms: Option<i64>) -> VoterState {
        VoterState {
            id,
            log_end_offset,
            last_caught_up_ms,
        }
    }

    #[test]
    fn lagging_voters_are_measured_against_the_leader() {
        let quorum = QuorumState {
            leader: Some(9000),
            high_watermark: 500,
            voters: vec![
                voter(9000, 510, Some(10_000)),
                voter(9001, 505, Some(9_500)),
                voter(9002, 120, Some(4_000)),
            ],
        };
        assert_eq!(quorum.lagging(2_000), vec![9002]);
        assert_eq!(quorum.lagging(10_000), Vec::<BrokerId>::new());
        // Without timestamps the log end offsets decide.
        let quorum = QuorumState {
            leader: Some(9000),
            high_watermark: 500,
            voters: vec![
                voter(9000, 510, None),
                voter(9001, 500, None),
                voter(9002, 499, None),
            ],
        };
        assert_eq!(quorum.lagging(2_000), vec![9002]);
    }

    #[test]
    fn moves_in_progress_count_with_their_target() {
        let r = OngoingReassignment {
            replicas: vec![1, 2, 3, 4],
            adding: vec![4],
            removing: vec![1],
        };
        assert_eq!(r.source(), vec![1, 2, 3]);
        assert_eq!(r.target(), vec![2, 3, 4]);
    }
}
