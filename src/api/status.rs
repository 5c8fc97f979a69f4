//! What the operator observed and what it is doing, written to the KafkaCluster status.
//!
//! Long-running operations keep their whole state here, so an operator restarted at any instant
//! resumes the operation from the status alone.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::{Deserialize, Serialize};

/// Observed state of a Kafka cluster.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the cluster is doing, in one word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Brokers the broker StatefulSet currently runs (its replicas).
    #[serde(default)]
    pub brokers: i32,
    /// Brokers whose pods are ready.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Label selector of the broker pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// KRaft cluster id, chosen once when the cluster is created; every log directory is
    /// formatted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Node ids of the brokers registered with the cluster, as Kafka reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_ids: Vec<i32>,
    /// Conditions: Ready, Reconciling, Degraded, ScaleDownBlocked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The long-running operation in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// State of each topic of `spec.topics`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicStatus>,
    /// While a rolling restart runs: when it started or last restarted a pod (RFC 3339), the
    /// clock of its stuck detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll_progressed_at: Option<String>,
    /// How the brokers' settings reached them: in the pods' configuration, or live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_config: Option<BrokerConfigStatus>,
}

/// The brokers' settings (those the operator does not own, such as `log.retention.hours`), as
/// the brokers got them. Every value is in the rendered `server.properties` too, so a pod that
/// restarts starts with the spec's configuration.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerConfigStatus {
    /// The settings the broker pods' template is keyed on: a change here restarts the pods
    /// (one at a time, with the safe roll). A setting Kafka changes at run time is applied
    /// live instead, and this keeps the value the pods started with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub startup: BTreeMap<String, String>,
    /// Settings applied live as cluster-wide broker defaults (IncrementalAlterConfigs),
    /// verified on every running broker with DescribeConfigs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub live: BTreeMap<String, String>,
}

/// What the cluster is doing, in one word (the PHASE column of `kubectl get kafkacluster`).
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Objects are being created; brokers are not ready yet.
    Creating,
    /// All brokers ready and nothing in progress.
    Running,
    /// New brokers are starting.
    ScalingUp,
    /// Partitions are moving onto new brokers.
    Rebalancing,
    /// Partitions are moving off brokers that will be removed.
    Draining,
    /// A requested change cannot be carried out safely; see the conditions.
    Blocked,
    /// Pods restart one at a time with a new template (configuration, image, resources).
    Restarting,
    /// Some brokers are not ready.
    Degraded,
    /// The pause annotation stops every action; see the `Paused` condition.
    Paused,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "Creating",
            Phase::Running => "Running",
            Phase::ScalingUp => "ScalingUp",
            Phase::Rebalancing => "Rebalancing",
            Phase::Draining => "Draining",
            Phase::Blocked => "Blocked",
            Phase::Restarting => "Restarting",
            Phase::Degraded => "Degraded",
            Phase::Paused => "Paused",
        }
    }
}

/// A long-running operation, with everything needed to resume it.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What the operation does.
    pub kind: OperationKind,
    /// The step it is at.
    pub step: Step,
    /// Broker count the operation leads to.
    pub target_brokers: i32,
    /// Brokers being drained and removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaving_brokers: Vec<i32>,
    /// Brokers partitions are moved onto.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arriving_brokers: Vec<i32>,
    /// Replication factors being changed, by topic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replication_factors: BTreeMap<String, i32>,
    /// Partitions the plan moves, and how many have finished moving.
    #[serde(default)]
    pub partitions_total: i64,
    #[serde(default)]
    pub partitions_moved: i64,
    /// Bytes the plan moves (from the partitions' sizes on disk), and how many have moved.
    #[serde(default)]
    pub bytes_total: i64,
    #[serde(default)]
    pub bytes_moved: i64,
    /// Partition moves submitted to Kafka and not yet seen complete everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<PartitionMove>,
    /// Brokers a replication throttle was set on, so it is cleared even after a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttled_brokers: Vec<i32>,
    /// Topics whose throttled replica lists were set, likewise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttled_topics: Vec<String>,
    /// Throttle rates another tool or a user had set on brokers the operation throttles too,
    /// by broker id: put back when the operation ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kept_broker_throttles: BTreeMap<String, BTreeMap<String, String>>,
    /// Throttled replica lists another tool or a user had set on topics the operation
    /// throttles too, by topic: kept listed meanwhile, and put back when the operation ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kept_topic_throttles: BTreeMap<String, BTreeMap<String, String>>,
    /// Partitions of each throttled topic the operation lists in its throttled replica lists
    /// (recorded before they are listed): entries of other partitions, or `*`, found there are
    /// someone else's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub throttled_partitions: BTreeMap<String, Vec<i32>>,
    /// The replication throttle rates the operation sets on its brokers (recorded before they
    /// are set; more than one if `rebalance.throttleBytesPerSecond` changed meanwhile): another
    /// rate found there is someone else's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_rates: Vec<i64>,
    /// Whether the drain's verification held a second time, from a fresh look at Kafka, at the
    /// start of step Shrinking: only then does the StatefulSet shrink (one read, possibly from
    /// a broker whose metadata lags, is not enough to remove a broker).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverified: bool,
    /// Leaving brokers a drain cordons (`cordoned.log.dirs=*`, Kafka 4.3+), recorded before the
    /// cordon is set, so a cancelled drain lifts it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cordoned_brokers: Vec<i32>,
    /// Whether the cordon is set on every leaving broker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cordoned: bool,
    /// Whether Kafka cannot cordon brokers (older versions, ZooKeeper mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cordon_unsupported: bool,
    /// `cordoned.log.dirs` values a user had set on leaving brokers, by broker id: put back
    /// if the drain is cancelled.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kept_cordons: BTreeMap<String, String>,
    /// Leaving brokers that joined with a scale-up cancelled before they registered: their id
    /// may still carry the cordon a drain left on an earlier broker of the same id. That cordon
    /// is the operator's, never recorded as a user's, and lifted if the cluster keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherited_cordons: Vec<i32>,
    /// When the operation started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Why the operation is waiting, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// When the operation last made progress (a new step, more moved): the clock of stuck
    /// detection (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressed_at: Option<String>,
}

/// The steps of the operations, as written to `status.operation.step`.
///
/// A value this version does not know (a newer operator's, or a hand edit) reads as
/// [`Step::Unknown`] with the value kept: it is never taken as permission to remove a broker.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(from = "String", into = "String")]
#[schemars(with = "String")]
pub enum Step {
    /// Scale-up: new brokers are starting.
    WaitingForBrokers,
    /// Recorded; the replication throttle is being set.
    #[default]
    Throttling,
    /// Partitions are moving.
    Moving,
    /// Moves are done; checking Kafka's state before anything is removed.
    Verifying,
    /// The StatefulSet is shrinking; waiting for the drained brokers' pods to stop.
    Shrinking,
    /// Removing the drained brokers' registrations (KRaft).
    Unregistering,
    /// Deleting the drained brokers' volumes.
    CleaningUp,
    /// A step this version does not know.
    Unknown(String),
}

impl Step {
    const KNOWN: [(Step, &'static str); 7] = [
        (Step::WaitingForBrokers, "WaitingForBrokers"),
        (Step::Throttling, "Throttling"),
        (Step::Moving, "Moving"),
        (Step::Verifying, "Verifying"),
        (Step::Shrinking, "Shrinking"),
        (Step::Unregistering, "Unregistering"),
        (Step::CleaningUp, "CleaningUp"),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Step::Unknown(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(step, _)| step == known)
                .map_or("Unknown", |(_, name)| name),
        }
    }
}

impl From<String> for Step {
    fn from(s: String) -> Step {
        Self::KNOWN
            .iter()
            .find(|(_, name)| *name == s)
            .map_or(Step::Unknown(s), |(step, _)| step.clone())
    }
}

impl From<Step> for String {
    fn from(step: Step) -> String {
        step.as_str().to_string()
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A partition on its way to new replicas.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionMove {
    pub topic: String,
    pub partition: i32,
    /// The replicas it moves to (the first is the preferred leader).
    pub target: Vec<i32>,
    /// Rounds since Kafka stopped listing the move while its metadata did not show the target
    /// yet. A lagging broker catches up within a few; a move cancelled by another tool never
    /// does, and is planned again once this passes a bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted_rounds: u32,
    /// Rounds the metadata has shown the move at its target: a finished move stays listed for
    /// a few, so a read from a broker that lags behind it is recognised as such.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shown_rounds: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum OperationKind {
    /// Drain brokers by partition reassignment, then remove them.
    #[default]
    ScaleDown,
    /// Add brokers, then move partitions onto them.
    ScaleUp,
    /// Change topics' replication factor by reassignment.
    ReplicationFactorChange,
}

/// State of one managed topic.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    pub name: String,
    pub state: TopicPhase,
    #[serde(default)]
    pub partitions: i32,
    #[serde(default)]
    pub replication_factor: i32,
    /// Why the topic is not as the spec asks, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The configuration keys `spec.topics` set on the topic. A key the spec names no longer
    /// goes back to its default only if it is listed here; keys the spec never named (those of
    /// a topic that existed before it was added to the spec, say `cleanup.policy: compact`) are
    /// left as they are, as `kubectl apply` leaves fields it never set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_keys: Vec<String>,
}

/// Where a managed topic stands.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum TopicPhase {
    /// As the spec asks.
    Ready,
    /// Being created.
    #[default]
    Creating,
    /// Its partitions are moving (a replication factor change, a drain).
    Reassigning,
    /// Kafka refused a change, or the spec asks for what Kafka cannot do; see the message.
    Error,
    /// A value this version does not know (written by a newer version, or by hand).
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_or_topic_state_this_version_does_not_know_reads_as_unknown_and_is_kept() {
        for (step, name) in Step::KNOWN {
            assert_eq!(Step::from(name.to_string()), step);
            assert_eq!(String::from(step), name);
        }
        let newer: Step = serde_json::from_value(serde_json::json!("RemovingBrokers")).unwrap();
        assert_eq!(newer, Step::Unknown("RemovingBrokers".into()));
        // Written back as it was read: a newer operator finds its own step again.
        assert_eq!(serde_json::to_value(&newer).unwrap(), "RemovingBrokers");
        let state: TopicPhase = serde_json::from_value(serde_json::json!("Compacting")).unwrap();
        assert_eq!(state, TopicPhase::Unknown);
    }
}
