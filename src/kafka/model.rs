//! A deterministic in-memory model of a Kafka cluster behind [`KafkaAdmin`], so the operations'
//! state machines can run in unit tests against something that behaves like Kafka, with faults
//! a test injects at will (issue 9). The real-broker tests stay the proof; the model finds the
//! cases worth proving.
//!
//! What it models, and how closely:
//! - Brokers are running or stopped, registered or not. A stopped broker stays registered but
//!   fenced (KRaft) until it is unregistered; starting a broker registers it again.
//! - Partitions have replicas (preference order), an ISR and a leader, and a log per broker
//!   (bytes on disk). Data produced with `acks=all` goes to the leader and every in-sync
//!   follower, and only while the ISR holds `min.insync.replicas`. A broker that stops leaves
//!   the ISR (unless it is the last member, as in Kafka) and its leaderships move to another
//!   in-sync replica; no unclean election ever happens.
//! - Time moves only in [`KafkaModel::tick`]. A follower out of sync (a new replica of a move,
//!   or a broker back from a restart) copies from the leader at the replication rate, throttled
//!   where the topic lists its `partition:broker` pair and the broker has a rate: N bytes take
//!   ceil(N / rate) ticks (a rate is bytes per second, one tick is one second). Caught up, it
//!   joins the ISR.
//! - Reassignments follow KIP-455: the replica set during a move is the target followed by the
//!   replicas being removed; a move completes once every target replica is in sync, then the
//!   removed replicas leave and their logs linger `log_linger_ticks` more ticks before the
//!   brokers delete them. A new target for a partition already moving replaces the old one
//!   (from the original replicas); a cancel goes back to the original replicas.
//! - Configs per topic and broker, throttles as those configs (set and cleared the way the real
//!   client does), `min.insync.replicas` from the topic or the cluster-wide default.
//! - Topic creation places replicas round-robin over the live brokers, as Kafka would,
//!   including on a broker that is about to leave.
//! - A KRaft controller quorum whose restarted voters lag for a few ticks.
//!
//! Faults: a broker that does not answer DescribeLogDirs (its sizes are absent from the
//! snapshot, as the real client drops them), calls that fail with a retriable error (before or
//! after taking effect: a lost answer), stale snapshots (what the cluster looked like at the
//! start of the previous round, whole or only the topic metadata; in the latter the logs brokers
//! describe of partitions that metadata does not list are stray logs, as the real client reports
//! them), brokers killed and started.
//! Metadata asked of each broker ([`KafkaAdmin::metadata_by_broker`]) is stale in the same
//! reads, every broker lagging as far as Kafka lets it: to the stale round's start, but never
//! behind its own last start (a KRaft broker is unfenced only once its metadata has caught up
//! with its own registration).
//!
//! Every call is recorded ([`KafkaModel::calls`]), and what no operator may ever do is checked
//! as it happens and recorded as a violation ([`KafkaModel::violations`]): a move submitted for
//! a partition already moving, a configuration value set by someone else deleted, a running
//! broker unregistered, acknowledged data no replica holds any more.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::throttle::{FOLLOWER_RATE, FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS};
use super::{
    Broker, BrokerId, BrokerMetadata, ClusterSnapshot, ConfigOp, ConfigResource, ConfigValue,
    ElectionOutcome, KafkaAdmin, KafkaError, NewTopic, OngoingReassignment, PartitionState,
    QuorumState, Result, Throttle, TopicPartition, TopicState, VoterState,
};
use crate::operations::scale::CORDONED_LOG_DIRS;

pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// Kafka's default of the replication throttle rates: no limit.
const UNLIMITED_RATE: &str = "9223372036854775807";

/// Node id of the first KRaft controller.
const CONTROLLER_BASE: BrokerId = 9000;

/// How the model behaves where Kafka has a setting.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// KRaft mode (fenced brokers listed, unregistration and the quorum supported).
    pub kraft: bool,
    /// Bytes a follower copies per tick when nothing throttles it.
    pub unthrottled_bytes_per_tick: u64,
    /// Ticks a removed replica's log stays on its broker after the move completed.
    pub log_linger_ticks: u64,
    /// KRaft controllers (node ids 9000, 9001, ...).
    pub controllers: i32,
    /// Ticks a restarted controller takes to catch up with the metadata log.
    pub controller_catchup_ticks: u32,
    /// Brokers can be cordoned (`cordoned.log.dirs`, KIP-1066: Kafka 4.3+ in KRaft mode): a
    /// cordoned broker takes no new partition.
    pub cordoning: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kraft: true,
            unthrottled_bytes_per_tick: 1 << 20,
            log_linger_ticks: 1,
            controllers: 3,
            controller_catchup_ticks: 2,
            cordoning: true,
        }
    }
}

/// How stale a stale snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Everything as at the start of the previous round.
    Whole,
    /// Topic metadata (replicas, ISR, leaders, brokers) as at the start of the previous round,
    /// while reassignments (from the controller) and log dir sizes (from each broker) are
    /// current: the real client's snapshot when the broker answering Metadata lags.
    Metadata,
}

/// A call to fail: the next one of `call` (any call when None) after `skip` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFailure {
    pub call: Option<&'static str>,
    pub skip: u32,
    /// The call takes effect and only its answer is lost (a timeout after Kafka acted).
    pub applied: bool,
}

/// One call the operator made.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Snapshot,
    /// Metadata asked of each of these brokers.
    BrokerMetadata(Vec<BrokerId>),
    DescribeConfigs(Vec<ConfigResource>),
    CreateTopics(Vec<String>),
    DeleteTopics(Vec<String>),
    CreatePartitions(String, i32),
    AlterConfigs(ConfigResource, BTreeMap<String, ConfigOp>),
    AlterReassignments(BTreeMap<TopicPartition, Vec<BrokerId>>),
    ListReassignments,
    CancelReassignments(Vec<TopicPartition>),
    SetThrottle(Throttle),
    ClearThrottle(Vec<BrokerId>, Vec<String>),
    ElectPreferredLeaders(Option<Vec<TopicPartition>>),
    UnregisterBroker(BrokerId),
    Quorum,
}

impl Call {
    /// The name failures are targeted by.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Snapshot => "snapshot",
            Call::BrokerMetadata(_) => "broker_metadata",
            Call::DescribeConfigs(_) => "describe_configs",
            Call::CreateTopics(_) => "create_topics",
            Call::DeleteTopics(_) => "delete_topics",
            Call::CreatePartitions(..) => "create_partitions",
            Call::AlterConfigs(..) => "alter_configs",
            Call::AlterReassignments(_) => "alter_reassignments",
            Call::ListReassignments => "list_reassignments",
            Call::CancelReassignments(_) => "cancel_reassignments",
            Call::SetThrottle(_) => "set_throttle",
            Call::ClearThrottle(..) => "clear_throttle",
            Call::ElectPreferredLeaders(_) => "elect_preferred_leaders",
            Call::UnregisterBroker(_) => "unregister_broker",
            Call::Quorum => "quorum",
        }
    }
}

/// Every kind of call, for tests that pick one.
pub const CALL_KINDS: &[&str] = &[
    "snapshot",
    "broker_metadata",
    "describe_configs",
    "create_topics",
    "delete_topics",
    "create_partitions",
    "alter_configs",
    "alter_reassignments",
    "list_reassignments",
    "cancel_reassignments",
    "set_throttle",
    "clear_throttle",
    "elect_preferred_leaders",
    "unregister_broker",
    "quorum",
];

/// A recorded call: when, what, and whether it failed.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub round: u64,
    pub tick: u64,
    pub call: Call,
    pub failed: bool,
}

#[derive(Clone, Debug)]
struct Node {
    rack: Option<String>,
    running: bool,
    registered: bool,
    /// Does not answer DescribeLogDirs.
    silent: bool,
    /// The round it last started in and its metadata (topics, live brokers) then: the oldest view its own
    /// metadata cache can answer from since (a broker is unfenced only once caught up with the
    /// metadata log up to its registration).
    started: Option<(u64, BrokerMetadata)>,
}

/// A move in progress (KIP-455).
#[derive(Clone, Debug)]
struct Move {
    original: Vec<BrokerId>,
    target: Vec<BrokerId>,
}

impl Move {
    fn adding(&self) -> Vec<BrokerId> {
        self.target
            .iter()
            .copied()
            .filter(|b| !self.original.contains(b))
            .collect()
    }

    fn removing(&self) -> Vec<BrokerId> {
        self.original
            .iter()
            .copied()
            .filter(|b| !self.target.contains(b))
            .collect()
    }

    /// The replica set while moving: Kafka lists the target first, then what goes.
    fn replicas(&self) -> Vec<BrokerId> {
        let mut r = self.target.clone();
        r.extend(self.removing());
        r
    }
}

#[derive(Clone, Debug, Default)]
struct Part {
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    leader: Option<BrokerId>,
    /// Bytes on disk per broker holding a log of the partition.
    logs: BTreeMap<BrokerId, u64>,
    /// Logs of removed replicas and the tick their broker deletes them at.
    delete_at: BTreeMap<BrokerId, u64>,
    /// Bytes acknowledged to producers: some replica must always hold them.
    acked: u64,
    moving: Option<Move>,
    /// Data was lost already (reported once).
    lost: bool,
}

#[derive(Clone, Debug, Default)]
struct Topic {
    partitions: BTreeMap<i32, Part>,
}

#[derive(Clone, Debug)]
struct Setting {
    value: String,
    /// Set by the test (a user or another tool), not through the model's admin calls.
    by_user: bool,
    /// The value someone else had set before the operator overwrote it: gone for good once
    /// the operator deletes the key.
    replaced_user_value: Option<String>,
}

#[derive(Clone, Debug)]
struct Voter {
    running: bool,
    /// Ticks until caught up with the metadata log.
    lag: u32,
}

#[derive(Debug)]
struct State {
    config: ModelConfig,
    tick: u64,
    round: u64,
    nodes: BTreeMap<BrokerId, Node>,
    topics: BTreeMap<String, Topic>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, Setting>>,
    voters: BTreeMap<BrokerId, Voter>,
    /// Rotates the first broker of each topic's placement, as Kafka's random start would.
    placement: usize,
    // Faults.
    failures: Vec<CallFailure>,
    stale_skip: u32,
    stale_calls: u32,
    /// How many rounds back a stale snapshot is from.
    stale_rounds: usize,
    staleness: Staleness,
    /// Fresh snapshots taken at the start of the last rounds, with the round, oldest first.
    round_starts: Vec<(u64, ClusterSnapshot)>,
    // Records.
    calls: Vec<CallRecord>,
    violations: Vec<String>,
    /// Moves submitted per partition.
    submissions: BTreeMap<TopicPartition, u32>,
    /// Writes refused for lack of in-sync replicas or a leader.
    refused_writes: u64,
}

/// The model. Cheap to share behind an `Arc`; every call takes a lock briefly and never waits.
#[derive(Debug)]
pub struct KafkaModel {
    state: Mutex<State>,
}

fn injected(kind: &str) -> KafkaError {
    KafkaError::Timeout {
        operation: format!("{kind} (injected fault)"),
        after: Duration::from_secs(30),
    }
}

fn unreachable(kind: &str) -> KafkaError {
    KafkaError::Unreachable {
        tried: vec!["model".into()],
        reason: format!("{kind}: no broker is running"),
    }
}

fn broker_not_available(b: BrokerId) -> KafkaError {
    KafkaError::Kafka {
        request: format!("a connection to broker {b}"),
        code: 8,
        name: "BROKER_NOT_AVAILABLE".into(),
        message: Some(format!("broker {b} is not registered or is fenced")),
        retriable: true,
    }
}

fn refused(request: &str, reason: String) -> KafkaError {
    KafkaError::Refused {
        request: request.into(),
        reason,
    }
}

/// Whether a throttled replica list (`0:1,0:2` or `*`) names `partition:broker`.
fn lists(value: Option<&str>, partition: i32, broker: BrokerId) -> bool {
    let Some(value) = value else { return false };
    value.trim() == "*"
        || value
            .split(',')
            .any(|pair| pair.trim() == format!("{partition}:{broker}"))
}

impl State {
    fn live(&self, b: BrokerId) -> bool {
        self.nodes
            .get(&b)
            .is_some_and(|n| n.running && n.registered)
    }

    fn running(&self, b: BrokerId) -> bool {
        self.nodes.get(&b).is_some_and(|n| n.running)
    }

    fn any_live(&self) -> bool {
        self.nodes.values().any(|n| n.running && n.registered)
    }

    fn live_ids(&self) -> Vec<BrokerId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.running && n.registered)
            .map(|(id, _)| *id)
            .collect()
    }

    fn violation(&mut self, what: String) {
        let line = format!("round {} tick {}: {what}", self.round, self.tick);
        self.violations.push(line);
    }

    fn setting(&self, resource: &ConfigResource, key: &str) -> Option<&str> {
        self.configs
            .get(resource)
            .and_then(|c| c.get(key))
            .map(|s| s.value.as_str())
    }

    fn min_isr(&self, topic: &str) -> usize {
        self.setting(&ConfigResource::Topic(topic.into()), MIN_INSYNC_REPLICAS)
            .or_else(|| self.setting(&ConfigResource::BrokerDefault, MIN_INSYNC_REPLICAS))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// Records the call; fails it if a failure is due. `Err` before the call takes effect;
    /// `Ok(Some(err))` when it takes effect and then answers `err`.
    fn enter(&mut self, call: Call) -> Result<Option<KafkaError>> {
        let kind = call.kind();
        let mut due = None;
        for (i, f) in self.failures.iter_mut().enumerate() {
            if f.call.is_some_and(|c| c != kind) {
                continue;
            }
            if f.skip == 0 {
                due = Some(i);
                break;
            }
            f.skip -= 1;
        }
        let failure = due.map(|i| self.failures.remove(i));
        let no_broker = !self.any_live();
        self.calls.push(CallRecord {
            round: self.round,
            tick: self.tick,
            call,
            failed: failure.is_some() || no_broker,
        });
        if no_broker {
            return Err(unreachable(kind));
        }
        match failure {
            Some(f) if f.applied => Ok(Some(injected(kind))),
            Some(_) => Err(injected(kind)),
            None => Ok(None),
        }
    }

    fn fresh_snapshot(&self, all_sizes: bool) -> ClusterSnapshot {
        let brokers: Vec<Broker> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.running && n.registered)
            .map(|(id, n)| Broker {
                id: *id,
                host: format!("broker-{id}"),
                port: 9092,
                rack: n.rack.clone(),
            })
            .collect();
        let fenced_brokers = if self.config.kraft {
            self.nodes
                .iter()
                .filter(|(_, n)| n.registered && !n.running)
                .map(|(id, _)| *id)
                .collect()
        } else {
            Vec::new()
        };
        let answering = |b: &BrokerId| {
            all_sizes
                || self
                    .nodes
                    .get(b)
                    .is_some_and(|n| n.running && n.registered && !n.silent)
        };
        let mut reassignments = BTreeMap::new();
        let topics = self
            .topics
            .iter()
            .map(|(name, t)| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|(p, part)| {
                        if let Some(m) = &part.moving {
                            reassignments.insert(
                                TopicPartition::new(name.clone(), *p),
                                OngoingReassignment {
                                    replicas: m.replicas(),
                                    adding: m.adding(),
                                    removing: m.removing(),
                                },
                            );
                        }
                        PartitionState {
                            partition: *p,
                            replicas: part.replicas.clone(),
                            isr: part.isr.clone(),
                            leader: part.leader,
                            size_bytes: part
                                .logs
                                .iter()
                                .filter(|(b, _)| answering(b))
                                .map(|(b, n)| (*b, *n))
                                .collect(),
                        }
                    })
                    .collect();
                let state = TopicState {
                    name: name.clone(),
                    internal: name.starts_with("__"),
                    partitions,
                };
                (name.clone(), state)
            })
            .collect();
        let log_dirs_described = brokers
            .iter()
            .map(|b| b.id)
            .filter(|b| answering(b))
            .collect();
        ClusterSnapshot {
            cluster_id: Some("model-cluster-id".into()),
            controller_id: if self.config.kraft {
                Some(CONTROLLER_BASE)
            } else {
                self.live_ids().first().copied()
            },
            brokers,
            fenced_brokers,
            topics,
            reassignments,
            log_dirs_described,
            stray_logs: BTreeMap::new(),
        }
    }

    /// The round start a stale read is due from (with its round), or None when this read is
    /// fresh. Each call of [`snapshot`](KafkaAdmin::snapshot) or
    /// [`metadata_by_broker`](KafkaAdmin::metadata_by_broker) is one read.
    fn stale_read_due(&mut self) -> Option<(u64, ClusterSnapshot)> {
        if self.stale_calls == 0 {
            return None;
        }
        if self.stale_skip > 0 {
            self.stale_skip -= 1;
            return None;
        }
        self.stale_calls -= 1;
        // The last entry is the start of this round; `stale_rounds` before it, or the oldest.
        let n = self.round_starts.len();
        let back = n.saturating_sub(1 + self.stale_rounds);
        self.round_starts.get(back).cloned()
    }

    /// The snapshot the operator gets: fresh, or stale when a stale read is due. It is what one
    /// broker answers, and that broker may be one that lags further than its own last start.
    fn served_snapshot(&mut self) -> ClusterSnapshot {
        let fresh = self.fresh_snapshot(false);
        let Some((_, old)) = self.stale_read_due() else {
            return fresh;
        };
        match self.staleness {
            Staleness::Whole => old,
            Staleness::Metadata => {
                let mut stale = old;
                stale.reassignments = fresh.reassignments.clone();
                for (name, topic) in stale.topics.iter_mut() {
                    for p in topic.partitions.iter_mut() {
                        p.size_bytes = fresh
                            .topics
                            .get(name)
                            .and_then(|t| t.partitions.iter().find(|f| f.partition == p.partition))
                            .map(|f| f.size_bytes.clone())
                            .unwrap_or_default();
                    }
                }
                // As the real client does: a log a broker describes of a partition the
                // (lagging) metadata does not list is a stray log, not dropped.
                let asked = stale.broker_ids();
                for (tp, p) in fresh.partitions() {
                    if stale.partition(&tp).is_some() {
                        continue;
                    }
                    for b in p.size_bytes.keys().filter(|b| asked.contains(b)) {
                        stale.stray_logs.entry(*b).or_default().insert(tp.clone());
                    }
                }
                stale
            }
        }
    }

    /// What each of `brokers` answers to Metadata: its own view of the topics. When a stale
    /// read is due, every live broker lags as far as it can: to the stale round's start, or
    /// to its own last start when that came later (a broker's cache never trails its own
    /// registration). A broker that is not live does not answer.
    fn served_metadata(
        &mut self,
        brokers: &[BrokerId],
    ) -> BTreeMap<BrokerId, Result<BrokerMetadata>> {
        let strip = |snapshot: &ClusterSnapshot| {
            let mut topics = snapshot.topics.clone();
            for t in topics.values_mut() {
                for p in t.partitions.iter_mut() {
                    p.size_bytes.clear();
                }
            }
            BrokerMetadata {
                brokers: snapshot.broker_ids(),
                topics,
            }
        };
        let fresh = strip(&self.fresh_snapshot(false));
        let stale = self.stale_read_due();
        brokers
            .iter()
            .map(|b| {
                let answer = match (self.nodes.get(b), &stale) {
                    (Some(n), _) if !(n.running && n.registered) => Err(broker_not_available(*b)),
                    (None, _) => Err(broker_not_available(*b)),
                    (Some(n), Some((round, old))) => Ok(match &n.started {
                        Some((started, view)) if started >= round => view.clone(),
                        _ => strip(old),
                    }),
                    (Some(_), None) => Ok(fresh.clone()),
                };
                (*b, answer)
            })
            .collect()
    }

    /// Whether `b` already holds a replica of `tp` (a move may keep it where it is).
    fn part_listed_on(&self, tp: &TopicPartition, b: BrokerId) -> bool {
        self.topics
            .get(&tp.topic)
            .and_then(|t| t.partitions.get(&tp.partition))
            .is_some_and(|p| p.replicas.contains(&b))
    }

    fn part_mut(&mut self, tp: &TopicPartition) -> Option<&mut Part> {
        self.topics
            .get_mut(&tp.topic)?
            .partitions
            .get_mut(&tp.partition)
    }

    /// Replicas for a new partition: round-robin over the live brokers that are not cordoned,
    /// from `start`.
    fn place(&self, start: usize, rf: usize) -> Vec<BrokerId> {
        let live = self.eligible_ids();
        (0..rf).map(|i| live[(start + i) % live.len()]).collect()
    }

    /// Live brokers a new replica may be placed on.
    fn eligible_ids(&self) -> Vec<BrokerId> {
        self.live_ids()
            .into_iter()
            .filter(|b| !self.cordoned(*b))
            .collect()
    }

    fn cordoned(&self, b: BrokerId) -> bool {
        self.config.cordoning
            && self
                .setting(&ConfigResource::Broker(b), CORDONED_LOG_DIRS)
                .is_some_and(|v| !v.is_empty())
    }

    fn new_part(replicas: Vec<BrokerId>) -> Part {
        Part {
            isr: replicas.clone(),
            leader: replicas.first().copied(),
            logs: replicas.iter().map(|b| (*b, 0)).collect(),
            replicas,
            ..Part::default()
        }
    }

    fn create_topic(&mut self, t: &NewTopic) -> Result<()> {
        if self.topics.contains_key(&t.name) {
            return Ok(());
        }
        let live = self.eligible_ids().len();
        if t.replication_factor < 1 || t.replication_factor as usize > live {
            return Err(refused(
                "CreateTopics",
                format!(
                    "INVALID_REPLICATION_FACTOR: replication factor {} with {live} live broker(s) that are not cordoned",
                    t.replication_factor
                ),
            ));
        }
        if t.partitions < 1 {
            return Err(refused(
                "CreateTopics",
                "INVALID_PARTITIONS: at least one partition".into(),
            ));
        }
        let start = self.placement;
        self.placement += 1;
        let mut topic = Topic::default();
        for p in 0..t.partitions {
            let replicas = self.place(start + p as usize, t.replication_factor as usize);
            topic.partitions.insert(p, Self::new_part(replicas));
        }
        self.topics.insert(t.name.clone(), topic);
        let resource = ConfigResource::Topic(t.name.clone());
        for (k, v) in &t.config {
            self.configs.entry(resource.clone()).or_default().insert(
                k.clone(),
                Setting {
                    value: v.clone(),
                    by_user: false,
                    replaced_user_value: None,
                },
            );
        }
        Ok(())
    }

    /// Applies one config change; `by_user` marks changes made by the test, not the operator.
    fn alter(
        &mut self,
        resource: &ConfigResource,
        changes: &BTreeMap<String, ConfigOp>,
        by_user: bool,
    ) -> Result<()> {
        match resource {
            ConfigResource::Topic(t) if !self.topics.contains_key(t) => {
                return Err(KafkaError::UnknownTopic { topic: t.clone() });
            }
            // A KRaft controller takes the change of a broker that is not running (the real
            // client sends it there); in ZooKeeper mode only the broker itself does.
            ConfigResource::Broker(b) if !self.live(*b) && !self.config.kraft => {
                return Err(broker_not_available(*b));
            }
            ConfigResource::Broker(_)
                if !self.config.cordoning && changes.contains_key(CORDONED_LOG_DIRS) =>
            {
                return Err(refused(
                    "IncrementalAlterConfigs",
                    format!("INVALID_CONFIG: unknown broker config {CORDONED_LOG_DIRS}"),
                ));
            }
            _ => {}
        }
        let mut deleted_foreign = Vec::new();
        let entries = self.configs.entry(resource.clone()).or_default();
        for (key, op) in changes {
            match op {
                // Putting back the value someone else had (or keeping theirs as it is): the
                // setting is theirs again.
                ConfigOp::Set(v)
                    if !by_user
                        && entries.get(key).is_some_and(|old| {
                            if old.by_user {
                                old.value == *v
                            } else {
                                old.replaced_user_value.as_ref() == Some(v)
                            }
                        }) =>
                {
                    entries.insert(
                        key.clone(),
                        Setting {
                            value: v.clone(),
                            by_user: true,
                            replaced_user_value: None,
                        },
                    );
                }
                ConfigOp::Set(v) => {
                    let replaced_user_value = match entries.get(key) {
                        _ if by_user => None,
                        Some(old) if old.by_user => Some(old.value.clone()),
                        Some(old) => old.replaced_user_value.clone(),
                        None => None,
                    };
                    entries.insert(
                        key.clone(),
                        Setting {
                            value: v.clone(),
                            by_user,
                            replaced_user_value,
                        },
                    );
                }
                ConfigOp::Delete => {
                    let Some(old) = entries.remove(key) else {
                        continue;
                    };
                    if by_user {
                        continue;
                    }
                    if old.by_user {
                        deleted_foreign.push(format!("{key}={}", old.value));
                    } else if let Some(theirs) = old.replaced_user_value {
                        deleted_foreign.push(format!("{key}={theirs} (overwritten first)"));
                    }
                }
            }
        }
        for what in deleted_foreign {
            self.violation(format!(
                "the operator deleted {what} on {resource}, which it did not set"
            ));
        }
        Ok(())
    }

    /// Follower copy rate of `broker` for `tp` fetching from `leader`, per tick.
    fn copy_rate(&self, topic: &str, partition: i32, broker: BrokerId, leader: BrokerId) -> u64 {
        let mut rate = self.config.unthrottled_bytes_per_tick;
        let t = ConfigResource::Topic(topic.into());
        let rate_of = |b: BrokerId, key: &str| -> Option<u64> {
            self.setting(&ConfigResource::Broker(b), key)
                .and_then(|v| v.parse().ok())
        };
        if lists(self.setting(&t, FOLLOWER_REPLICAS), partition, broker)
            && let Some(r) = rate_of(broker, FOLLOWER_RATE)
        {
            rate = rate.min(r);
        }
        if lists(self.setting(&t, LEADER_REPLICAS), partition, leader)
            && let Some(r) = rate_of(leader, LEADER_RATE)
        {
            rate = rate.min(r);
        }
        rate.max(1)
    }

    /// Completes a move whose target replicas are all in sync.
    fn try_complete(part: &mut Part, now: u64, linger: u64, running: &BTreeSet<BrokerId>) {
        let done = part
            .moving
            .as_ref()
            .is_some_and(|m| m.target.iter().all(|b| part.isr.contains(b)));
        if !done {
            return;
        }
        let Some(m) = part.moving.take() else { return };
        for b in m.removing() {
            part.delete_at.insert(b, now + linger);
        }
        part.replicas = m.target.clone();
        part.isr.retain(|b| m.target.contains(b));
        if part.leader.is_none_or(|l| !m.target.contains(&l)) {
            part.leader = m
                .target
                .iter()
                .copied()
                .find(|b| part.isr.contains(b) && running.contains(b));
        }
    }

    fn running_set(&self) -> BTreeSet<BrokerId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.running)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Acknowledged data that no replica holds any more is lost: said once per partition.
    fn audit(&mut self) {
        let mut lost = Vec::new();
        for (name, t) in self.topics.iter_mut() {
            for (p, part) in t.partitions.iter_mut() {
                if part.lost {
                    continue;
                }
                let best = part
                    .replicas
                    .iter()
                    .filter_map(|b| part.logs.get(b))
                    .copied()
                    .max()
                    .unwrap_or(0);
                if best < part.acked {
                    part.lost = true;
                    lost.push(format!(
                        "data lost: {name}-{p} acknowledged {} bytes, its replicas {:?} hold at most {best}",
                        part.acked, part.replicas
                    ));
                }
            }
        }
        for l in lost {
            self.violation(l);
        }
    }

    fn stop(&mut self, b: BrokerId) {
        let Some(node) = self.nodes.get_mut(&b) else {
            return;
        };
        if !node.running {
            return;
        }
        node.running = false;
        let running = self.running_set();
        for t in self.topics.values_mut() {
            for part in t.partitions.values_mut() {
                if !part.replicas.contains(&b) {
                    continue;
                }
                // Kafka never shrinks the ISR below one member: the last one stays, offline.
                if part.isr.len() > 1 {
                    part.isr.retain(|r| *r != b);
                }
                if part.leader == Some(b) {
                    part.leader = part
                        .isr
                        .iter()
                        .copied()
                        .find(|r| *r != b && running.contains(r));
                }
            }
        }
    }

    fn start(&mut self, b: BrokerId, rack: Option<String>) {
        let node = self.nodes.entry(b).or_insert(Node {
            rack: rack.clone(),
            running: false,
            registered: false,
            silent: false,
            started: None,
        });
        if rack.is_some() {
            node.rack = rack;
        }
        node.running = true;
        node.registered = true;
        for t in self.topics.values_mut() {
            for part in t.partitions.values_mut() {
                if !part.replicas.contains(&b) {
                    continue;
                }
                part.logs.entry(b).or_insert(0);
                if part.leader.is_none() && part.isr.contains(&b) {
                    part.leader = Some(b);
                }
            }
        }
        let fresh = self.fresh_snapshot(false);
        let view = BrokerMetadata {
            brokers: fresh.broker_ids(),
            topics: fresh.topics,
        };
        let round = self.round;
        if let Some(n) = self.nodes.get_mut(&b) {
            n.started = Some((round, view));
        }
        self.audit();
    }

    fn tick(&mut self) {
        self.tick += 1;
        let now = self.tick;
        let linger = self.config.log_linger_ticks;
        let running = self.running_set();
        // Rates first: they read the configs while the partitions are borrowed below.
        let mut rates: BTreeMap<(String, i32, BrokerId), u64> = BTreeMap::new();
        for (name, t) in &self.topics {
            for (p, part) in &t.partitions {
                let Some(leader) = part.leader else { continue };
                for r in &part.replicas {
                    if *r != leader && !part.isr.contains(r) {
                        rates.insert((name.clone(), *p, *r), self.copy_rate(name, *p, *r, leader));
                    }
                }
            }
        }
        for (name, t) in self.topics.iter_mut() {
            for (p, part) in t.partitions.iter_mut() {
                let due: Vec<BrokerId> = part
                    .delete_at
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(b, _)| *b)
                    .collect();
                for b in due {
                    part.delete_at.remove(&b);
                    // A broker deletes a stale log only while it runs; a stopped one at start.
                    if running.contains(&b) && !part.replicas.contains(&b) {
                        part.logs.remove(&b);
                    } else if !part.replicas.contains(&b) {
                        part.delete_at.insert(b, now + 1);
                    }
                }
                let Some(leader) = part.leader.filter(|l| running.contains(l)) else {
                    continue;
                };
                let end = part.logs.get(&leader).copied().unwrap_or(0);
                for r in part.replicas.clone() {
                    if r == leader || part.isr.contains(&r) || !running.contains(&r) {
                        continue;
                    }
                    let rate = rates
                        .get(&(name.clone(), *p, r))
                        .copied()
                        .unwrap_or(u64::MAX);
                    let log = part.logs.entry(r).or_insert(0);
                    *log = (*log + rate).min(end);
                    if *log >= end {
                        part.isr.push(r);
                    }
                }
                Self::try_complete(part, now, linger, &running);
            }
        }
        for v in self.voters.values_mut() {
            if v.running && v.lag > 0 {
                v.lag -= 1;
            }
        }
        self.audit();
    }

    fn produce(&mut self, tp: &TopicPartition, bytes: u64) -> bool {
        let min_isr = self.min_isr(&tp.topic);
        let running = self.running_set();
        let Some(part) = self.part_mut(tp) else {
            return false;
        };
        let writable =
            part.leader.is_some_and(|l| running.contains(&l)) && part.isr.len() >= min_isr;
        if !writable {
            self.refused_writes += 1;
            return false;
        }
        for b in part.isr.clone() {
            *part.logs.entry(b).or_insert(0) += bytes;
        }
        part.acked += bytes;
        true
    }

    fn quorum_leader(&self) -> Option<BrokerId> {
        let up = self.voters.values().filter(|v| v.running).count();
        if up * 2 <= self.voters.len() {
            return None;
        }
        self.voters
            .iter()
            .find(|(_, v)| v.running && v.lag == 0)
            .or_else(|| self.voters.iter().find(|(_, v)| v.running))
            .map(|(id, _)| *id)
    }
}

impl KafkaModel {
    /// A cluster with brokers `0..brokers`, all running, no topics.
    pub fn new(config: ModelConfig, brokers: i32) -> KafkaModel {
        let voters = if config.kraft {
            (0..config.controllers)
                .map(|o| {
                    (
                        CONTROLLER_BASE + o,
                        Voter {
                            running: true,
                            lag: 0,
                        },
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        let nodes = (0..brokers)
            .map(|b| {
                (
                    b,
                    Node {
                        rack: None,
                        running: true,
                        registered: true,
                        silent: false,
                        started: None,
                    },
                )
            })
            .collect();
        KafkaModel {
            state: Mutex::new(State {
                config,
                tick: 0,
                round: 0,
                nodes,
                topics: BTreeMap::new(),
                configs: BTreeMap::new(),
                voters,
                placement: 0,
                failures: Vec::new(),
                stale_skip: 0,
                stale_calls: 0,
                stale_rounds: 1,
                staleness: Staleness::Whole,
                round_starts: Vec::new(),
                calls: Vec::new(),
                violations: Vec::new(),
                submissions: BTreeMap::new(),
                refused_writes: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; its state is still
        // what it was, and reading it helps the report.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // --- Setting up -------------------------------------------------------------------------

    /// Creates a topic as Kafka would place it (round-robin over the live brokers), outside
    /// the operator: a user, an application with auto-creation, another tool.
    pub fn create_topic(&self, name: &str, partitions: i32, rf: i32) -> Result<()> {
        let mut s = self.lock();
        s.create_topic(&NewTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            config: BTreeMap::new(),
        })
    }

    /// Creates a topic with these replica lists (all in sync, each holding `bytes`).
    pub fn create_topic_with(&self, name: &str, replicas: &[(&[BrokerId], u64)]) {
        let mut s = self.lock();
        let mut topic = Topic::default();
        for (p, (r, bytes)) in replicas.iter().enumerate() {
            let mut part = State::new_part(r.to_vec());
            for log in part.logs.values_mut() {
                *log = *bytes;
            }
            part.acked = *bytes;
            topic.partitions.insert(p as i32, part);
        }
        s.topics.insert(name.into(), topic);
    }

    /// Sets a config value as a user would (with kafka-configs): the operator must not
    /// delete it.
    pub fn set_user_config(&self, resource: ConfigResource, key: &str, value: &str) {
        let mut s = self.lock();
        let changes = BTreeMap::from([(key.to_string(), ConfigOp::Set(value.into()))]);
        // A user sets broker configs through the controller even with the broker down.
        if let ConfigResource::Broker(b) = &resource
            && !s.live(*b)
        {
            s.configs.entry(resource).or_default().insert(
                key.into(),
                Setting {
                    value: value.into(),
                    by_user: true,
                    replaced_user_value: None,
                },
            );
            return;
        }
        let _ = s.alter(&resource, &changes, true);
    }

    /// Sets the rack of a broker.
    pub fn set_rack(&self, b: BrokerId, rack: &str) {
        if let Some(n) = self.lock().nodes.get_mut(&b) {
            n.rack = Some(rack.into());
        }
    }

    // --- Time and the world -----------------------------------------------------------------

    /// One second of Kafka: copies progress, moves complete, stale logs are deleted.
    pub fn tick(&self) {
        self.lock().tick();
    }

    /// The operator starts a round: stale snapshots are taken from the start of the previous.
    pub fn begin_round(&self, round: u64) {
        let mut s = self.lock();
        s.round = round;
        let fresh = s.fresh_snapshot(false);
        s.round_starts.push((round, fresh));
        if s.round_starts.len() > 4 {
            s.round_starts.remove(0);
        }
    }

    /// Produces `bytes` to every partition with `acks=all`; returns how many writes succeeded.
    pub fn produce_everywhere(&self, bytes: u64) -> usize {
        let mut s = self.lock();
        let tps: Vec<TopicPartition> = s
            .topics
            .iter()
            .flat_map(|(n, t)| {
                t.partitions
                    .keys()
                    .map(|p| TopicPartition::new(n.clone(), *p))
            })
            .collect();
        tps.iter().filter(|tp| s.produce(tp, bytes)).count()
    }

    /// Produces `bytes` to one partition with `acks=all`; whether the write succeeded.
    pub fn produce(&self, tp: &TopicPartition, bytes: u64) -> bool {
        self.lock().produce(tp, bytes)
    }

    /// A broker stops (a clean shutdown or a crash look the same here: it leaves the ISR, its
    /// leaderships move to in-sync replicas, it is fenced).
    pub fn stop_broker(&self, b: BrokerId) {
        self.lock().stop(b);
    }

    /// A broker starts (a new one joins): it registers, and catches up where it is behind.
    pub fn start_broker(&self, b: BrokerId) {
        self.lock().start(b, None);
    }

    /// The broker's storage is gone (its volume deleted, or an emptyDir with its pod).
    pub fn wipe_broker(&self, b: BrokerId) {
        let mut s = self.lock();
        for t in s.topics.values_mut() {
            for part in t.partitions.values_mut() {
                part.logs.remove(&b);
                part.delete_at.remove(&b);
                // Its copy is gone: it is no longer in sync (unless it is the last member,
                // which Kafka keeps listed, offline).
                if part.isr.len() > 1 {
                    part.isr.retain(|r| *r != b);
                }
            }
        }
        s.audit();
    }

    pub fn stop_controller(&self, ordinal: i32) {
        if let Some(v) = self.lock().voters.get_mut(&(CONTROLLER_BASE + ordinal)) {
            v.running = false;
        }
    }

    pub fn start_controller(&self, ordinal: i32) {
        let mut s = self.lock();
        let lag = s.config.controller_catchup_ticks;
        if let Some(v) = s.voters.get_mut(&(CONTROLLER_BASE + ordinal)) {
            v.running = true;
            v.lag = lag;
        }
    }

    // --- Faults -----------------------------------------------------------------------------

    /// The broker answers DescribeLogDirs (or not).
    pub fn set_silent(&self, b: BrokerId, silent: bool) {
        if let Some(n) = self.lock().nodes.get_mut(&b) {
            n.silent = silent;
        }
    }

    /// Fails a coming call.
    pub fn fail(&self, failure: CallFailure) {
        self.lock().failures.push(failure);
    }

    /// After `skip` fresh snapshot calls, the next `calls` are as the cluster was at the start
    /// of the previous round.
    pub fn stale_snapshots(&self, skip: u32, calls: u32, staleness: Staleness) {
        self.stale_snapshots_from(1, skip, calls, staleness);
    }

    /// Stale snapshots from the start of the round `rounds` before this one (at most 3).
    pub fn stale_snapshots_from(&self, rounds: usize, skip: u32, calls: u32, staleness: Staleness) {
        let mut s = self.lock();
        s.stale_rounds = rounds.clamp(1, 3);
        s.stale_skip = skip;
        s.stale_calls = calls;
        s.staleness = staleness;
    }

    /// No more injected faults (brokers stay as they are).
    pub fn clear_faults(&self) {
        let mut s = self.lock();
        s.failures.clear();
        s.stale_calls = 0;
        s.stale_skip = 0;
        for n in s.nodes.values_mut() {
            n.silent = false;
        }
    }

    // --- What tests check -------------------------------------------------------------------

    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Moves submitted per partition (each AlterPartitionReassignments entry counts).
    pub fn submissions(&self) -> BTreeMap<TopicPartition, u32> {
        self.lock().submissions.clone()
    }

    /// The cluster as it is: no fault applies, every broker's logs are listed (stopped ones
    /// too).
    pub fn truth(&self) -> ClusterSnapshot {
        self.lock().fresh_snapshot(true)
    }

    /// Partitions that list `b` as a replica (moves in progress included).
    pub fn listed_on(&self, b: BrokerId) -> Vec<TopicPartition> {
        self.truth()
            .partitions()
            .filter(|(_, p)| p.replicas.contains(&b))
            .map(|(tp, _)| tp)
            .collect()
    }

    /// Partitions with a log on `b`'s disk, stale ones included.
    pub fn logs_on(&self, b: BrokerId) -> Vec<TopicPartition> {
        self.truth()
            .partitions()
            .filter(|(_, p)| p.size_bytes.contains_key(&b))
            .map(|(tp, _)| tp)
            .collect()
    }

    /// Why stopping `b` now would leave a partition it is in sync on with fewer in-sync
    /// replicas than its `min.insync.replicas`, or None. Partitions with no more replicas than
    /// that cannot stay above it through any restart and are left out.
    pub fn stop_would_break_min_isr(&self, b: BrokerId) -> Option<String> {
        let s = self.lock();
        for (name, t) in &s.topics {
            let min_isr = s.min_isr(name);
            for (p, part) in &t.partitions {
                if !part.isr.contains(&b) || part.replicas.len() <= min_isr {
                    continue;
                }
                if part.isr.len() - 1 < min_isr {
                    return Some(format!(
                        "{name}-{p}: in-sync replicas {:?} with min.insync.replicas {min_isr}",
                        part.isr
                    ));
                }
            }
        }
        None
    }

    pub fn min_isr(&self, topic: &str) -> usize {
        self.lock().min_isr(topic)
    }

    /// Registered brokers (running or fenced).
    pub fn registered(&self) -> BTreeSet<BrokerId> {
        self.lock()
            .nodes
            .iter()
            .filter(|(_, n)| n.registered)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn is_running(&self, b: BrokerId) -> bool {
        self.lock().running(b)
    }

    /// Config values the operator set that are still there, by resource and key.
    pub fn operator_configs(&self) -> BTreeMap<ConfigResource, BTreeMap<String, String>> {
        self.lock()
            .configs
            .iter()
            .map(|(r, c)| {
                let mine: BTreeMap<String, String> = c
                    .iter()
                    .filter(|(_, s)| !s.by_user)
                    .map(|(k, s)| (k.clone(), s.value.clone()))
                    .collect();
                (r.clone(), mine)
            })
            .filter(|(_, c)| !c.is_empty())
            .collect()
    }

    /// The value of a config key on a resource, whoever set it.
    pub fn config(&self, resource: &ConfigResource, key: &str) -> Option<String> {
        self.lock().setting(resource, key).map(str::to_string)
    }

    pub fn now(&self) -> u64 {
        self.lock().tick
    }

    /// Controllers that are not running.
    pub fn controllers_down(&self) -> usize {
        self.lock().voters.values().filter(|v| !v.running).count()
    }

    pub fn controller_running(&self, ordinal: i32) -> bool {
        self.lock()
            .voters
            .get(&(CONTROLLER_BASE + ordinal))
            .is_some_and(|v| v.running)
    }

    pub fn controllers(&self) -> usize {
        self.lock().voters.len()
    }
}

#[async_trait::async_trait]
impl KafkaAdmin for KafkaModel {
    async fn snapshot(&self) -> Result<ClusterSnapshot> {
        let mut s = self.lock();
        let lost_answer = s.enter(Call::Snapshot)?;
        let snapshot = s.served_snapshot();
        match lost_answer {
            Some(e) => Err(e),
            None => Ok(snapshot),
        }
    }

    async fn metadata_by_broker(
        &self,
        brokers: &[BrokerId],
    ) -> Result<BTreeMap<BrokerId, Result<BrokerMetadata>>> {
        let mut s = self.lock();
        let lost_answer = s.enter(Call::BrokerMetadata(brokers.to_vec()))?;
        let answers = s.served_metadata(brokers);
        lost_answer.map_or(Ok(answers), Err)
    }

    async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<BTreeMap<ConfigResource, BTreeMap<String, ConfigValue>>> {
        let mut s = self.lock();
        if let Some(e) = s.enter(Call::DescribeConfigs(resources.to_vec()))? {
            return Err(e);
        }
        let default_min_isr = s
            .setting(&ConfigResource::BrokerDefault, MIN_INSYNC_REPLICAS)
            .map(str::to_string);
        let mut out = BTreeMap::new();
        for r in resources {
            let defaults: Vec<(&str, String, bool)> = match r {
                ConfigResource::Topic(t) => {
                    if !s.topics.contains_key(t) {
                        return Err(KafkaError::UnknownTopic { topic: t.clone() });
                    }
                    vec![
                        (
                            MIN_INSYNC_REPLICAS,
                            default_min_isr.clone().unwrap_or_else(|| "1".into()),
                            default_min_isr.is_none(),
                        ),
                        (LEADER_REPLICAS, String::new(), true),
                        (FOLLOWER_REPLICAS, String::new(), true),
                    ]
                }
                ConfigResource::Broker(b) => {
                    if !s.live(*b) {
                        return Err(broker_not_available(*b));
                    }
                    let mut defaults = vec![
                        (LEADER_RATE, UNLIMITED_RATE.into(), true),
                        (FOLLOWER_RATE, UNLIMITED_RATE.into(), true),
                    ];
                    if s.config.cordoning {
                        defaults.push((CORDONED_LOG_DIRS, String::new(), true));
                    }
                    defaults
                }
                ConfigResource::BrokerDefault => {
                    return Err(KafkaError::Unsupported(
                        "describing the cluster-wide broker default is not supported".into(),
                    ));
                }
            };
            let mut entries: BTreeMap<String, ConfigValue> = defaults
                .into_iter()
                .map(|(k, v, is_default)| {
                    (
                        k.to_string(),
                        ConfigValue {
                            value: Some(v),
                            is_default,
                            overridden: false,
                            read_only: false,
                        },
                    )
                })
                .collect();
            for (k, setting) in s.configs.get(r).into_iter().flatten() {
                entries.insert(
                    k.clone(),
                    ConfigValue {
                        value: Some(setting.value.clone()),
                        is_default: false,
                        overridden: true,
                        read_only: false,
                    },
                );
            }
            out.insert(r.clone(), entries);
        }
        Ok(out)
    }

    async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::CreateTopics(
            topics.iter().map(|t| t.name.clone()).collect(),
        ))?;
        for t in topics {
            s.create_topic(t)?;
        }
        lost.map_or(Ok(()), Err)
    }

    async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::DeleteTopics(topics.to_vec()))?;
        for t in topics {
            s.topics.remove(t);
            s.configs.remove(&ConfigResource::Topic(t.clone()));
        }
        lost.map_or(Ok(()), Err)
    }

    async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::CreatePartitions(topic.into(), total))?;
        let Some(t) = s.topics.get(topic) else {
            return Err(KafkaError::UnknownTopic {
                topic: topic.into(),
            });
        };
        let current = t.partitions.len() as i32;
        if total <= current {
            return Err(refused(
                "CreatePartitions",
                format!("INVALID_PARTITIONS: topic {topic} has {current} partitions"),
            ));
        }
        let rf = t
            .partitions
            .values()
            .map(|p| {
                p.moving
                    .as_ref()
                    .map_or(p.replicas.len(), |m| m.target.len())
            })
            .max()
            .unwrap_or(1);
        let start = s.placement;
        s.placement += 1;
        for p in current..total {
            let replicas = s.place(start + p as usize, rf);
            if let Some(t) = s.topics.get_mut(topic) {
                t.partitions.insert(p, State::new_part(replicas));
            }
        }
        lost.map_or(Ok(()), Err)
    }

    async fn alter_configs(
        &self,
        resource: &ConfigResource,
        changes: &BTreeMap<String, ConfigOp>,
    ) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::AlterConfigs(resource.clone(), changes.clone()))?;
        s.alter(resource, changes, false)?;
        lost.map_or(Ok(()), Err)
    }

    async fn alter_reassignments(
        &self,
        targets: &BTreeMap<TopicPartition, Vec<BrokerId>>,
    ) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::AlterReassignments(targets.clone()))?;
        // Kafka validates each partition on its own; the first refusal is the answer, the
        // valid ones go ahead.
        let mut failure = None;
        let now = s.tick;
        let linger = s.config.log_linger_ticks;
        let running = s.running_set();
        for (tp, target) in targets {
            let distinct: BTreeSet<BrokerId> = target.iter().copied().collect();
            if target.is_empty() || distinct.len() != target.len() {
                failure.get_or_insert(refused(
                    "AlterPartitionReassignments",
                    format!("INVALID_REPLICA_ASSIGNMENT: {tp} to {target:?}"),
                ));
                continue;
            }
            if let Some(b) = target
                .iter()
                .find(|b| s.cordoned(**b) && !s.part_listed_on(tp, **b))
            {
                failure.get_or_insert(refused(
                    "AlterPartitionReassignments",
                    format!("INELIGIBLE_REPLICA: {tp}: broker {b} is cordoned"),
                ));
                continue;
            }
            if let Some(b) = target.iter().find(|b| !s.live(**b)) {
                failure.get_or_insert(refused(
                    "AlterPartitionReassignments",
                    format!(
                        "INVALID_REPLICA_ASSIGNMENT: {tp}: broker {b} is not registered or fenced"
                    ),
                ));
                continue;
            }
            if s.part_mut(tp).is_none() {
                failure.get_or_insert(KafkaError::from_code(
                    format!("AlterPartitionReassignments of {tp}"),
                    3,
                    None,
                ));
                continue;
            }
            *s.submissions.entry(tp.clone()).or_default() += 1;
            let already = s
                .part_mut(tp)
                .and_then(|p| p.moving.as_ref().map(|m| m.target.clone()));
            if let Some(moving_to) = already {
                s.violation(format!(
                    "a move of {tp} to {target:?} was submitted while it was moving to {moving_to:?}"
                ));
            }
            let Some(part) = s.part_mut(tp) else { continue };
            let original = match &part.moving {
                Some(m) => m.original.clone(),
                None => part.replicas.clone(),
            };
            let m = Move {
                original,
                target: target.clone(),
            };
            let replicas = m.replicas();
            // Replicas of an earlier target that are in neither set go at once.
            for b in part.replicas.clone() {
                if !replicas.contains(&b) {
                    part.delete_at.insert(b, now + linger);
                }
            }
            for b in &replicas {
                part.delete_at.remove(b);
                part.logs.entry(*b).or_insert(0);
            }
            part.isr.retain(|b| replicas.contains(b));
            part.replicas = replicas;
            part.moving = Some(m);
            State::try_complete(part, now, linger, &running);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        lost.map_or(Ok(()), Err)
    }

    async fn list_reassignments(&self) -> Result<BTreeMap<TopicPartition, OngoingReassignment>> {
        let mut s = self.lock();
        let lost = s.enter(Call::ListReassignments)?;
        let listed = s.fresh_snapshot(false).reassignments;
        lost.map_or(Ok(listed), Err)
    }

    async fn cancel_reassignments(&self, partitions: &[TopicPartition]) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::CancelReassignments(partitions.to_vec()))?;
        let now = s.tick;
        let linger = s.config.log_linger_ticks;
        let running = s.running_set();
        let mut failure = None;
        for tp in partitions {
            let Some(part) = s.part_mut(tp) else { continue };
            // Kafka refuses a revert that leaves no in-sync replica (every one in sync is being
            // added): that would be an unclean leader election.
            let unclean = part
                .moving
                .as_ref()
                .is_some_and(|m| !part.isr.iter().any(|b| m.original.contains(b)));
            if unclean {
                failure.get_or_insert(refused(
                    "AlterPartitionReassignments (cancel)",
                    format!(
                        "INVALID_REPLICA_ASSIGNMENT: unable to revert partition assignment for {tp} because it would require an unclean leader election"
                    ),
                ));
                continue;
            }
            let Some(m) = part.moving.take() else {
                continue;
            };
            for b in m.adding() {
                part.delete_at.insert(b, now + linger);
            }
            part.replicas = m.original.clone();
            part.isr.retain(|b| m.original.contains(b));
            if part.leader.is_none_or(|l| !m.original.contains(&l)) {
                part.leader = m
                    .original
                    .iter()
                    .copied()
                    .find(|b| part.isr.contains(b) && running.contains(b));
            }
        }
        s.audit();
        if let Some(e) = failure {
            return Err(e);
        }
        lost.map_or(Ok(()), Err)
    }

    async fn set_throttle(&self, throttle: &Throttle) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::SetThrottle(throttle.clone()))?;
        // As the real client: every change sent at once, the first failure answered.
        let mut failure = None;
        let rates: BTreeMap<String, ConfigOp> = throttle
            .broker_configs()
            .into_iter()
            .map(|(k, v)| (k, ConfigOp::Set(v)))
            .collect();
        for b in &throttle.brokers {
            if let Err(e) = s.alter(&ConfigResource::Broker(*b), &rates, false) {
                failure.get_or_insert(e);
            }
        }
        for (topic, configs) in throttle.topic_configs() {
            let ops = configs
                .into_iter()
                .map(|(k, v)| (k, ConfigOp::Set(v)))
                .collect();
            if let Err(e) = s.alter(&ConfigResource::Topic(topic), &ops, false) {
                failure.get_or_insert(e);
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        lost.map_or(Ok(()), Err)
    }

    async fn clear_throttle(&self, brokers: &[BrokerId], topics: &[String]) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::ClearThrottle(brokers.to_vec(), topics.to_vec()))?;
        let delete = |keys: [&str; 2]| -> BTreeMap<String, ConfigOp> {
            keys.into_iter()
                .map(|k| (k.to_string(), ConfigOp::Delete))
                .collect()
        };
        let mut failure = None;
        for b in brokers {
            if let Err(e) = s.alter(
                &ConfigResource::Broker(*b),
                &delete([LEADER_RATE, FOLLOWER_RATE]),
                false,
            ) {
                failure.get_or_insert(e);
            }
        }
        for t in topics {
            match s.alter(
                &ConfigResource::Topic(t.clone()),
                &delete([LEADER_REPLICAS, FOLLOWER_REPLICAS]),
                false,
            ) {
                // A deleted topic has no throttle left to clear (as the real client).
                Ok(()) | Err(KafkaError::UnknownTopic { .. }) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        lost.map_or(Ok(()), Err)
    }

    async fn elect_preferred_leaders(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<ElectionOutcome> {
        let mut s = self.lock();
        let lost = s.enter(Call::ElectPreferredLeaders(partitions.map(|p| p.to_vec())))?;
        let running = s.running_set();
        let all: Vec<TopicPartition> = match partitions {
            Some(p) => p.to_vec(),
            None => s
                .topics
                .iter()
                .flat_map(|(n, t)| {
                    t.partitions
                        .keys()
                        .map(|p| TopicPartition::new(n.clone(), *p))
                })
                .collect(),
        };
        let mut outcome = ElectionOutcome::default();
        for tp in all {
            let Some(part) = s.part_mut(&tp) else {
                outcome
                    .failed
                    .push((tp, "UNKNOWN_TOPIC_OR_PARTITION".into()));
                continue;
            };
            let Some(preferred) = part.replicas.first().copied() else {
                continue;
            };
            if part.leader == Some(preferred) {
                outcome.not_needed += 1;
            } else if running.contains(&preferred) && part.isr.contains(&preferred) {
                part.leader = Some(preferred);
                outcome.elected.push(tp);
            } else {
                outcome
                    .failed
                    .push((tp, "PREFERRED_LEADER_NOT_AVAILABLE".into()));
            }
        }
        lost.map_or(Ok(outcome), Err)
    }

    async fn unregister_broker(&self, broker: BrokerId) -> Result<()> {
        let mut s = self.lock();
        let lost = s.enter(Call::UnregisterBroker(broker))?;
        if !s.config.kraft {
            return Err(KafkaError::Unsupported(format!(
                "cannot unregister broker {broker}: ZooKeeper mode"
            )));
        }
        match s.nodes.get(&broker).map(|n| (n.registered, n.running)) {
            Some((true, running)) => {
                if running {
                    s.violation(format!("broker {broker} was unregistered while running"));
                }
                if let Some(n) = s.nodes.get_mut(&broker) {
                    n.registered = false;
                }
            }
            _ => {
                return Err(KafkaError::from_code(
                    format!("UnregisterBroker of broker {broker}"),
                    102,
                    None,
                ));
            }
        }
        lost.map_or(Ok(()), Err)
    }

    async fn quorum(&self) -> Result<QuorumState> {
        let mut s = self.lock();
        let lost = s.enter(Call::Quorum)?;
        if !s.config.kraft {
            return Err(KafkaError::Unsupported(
                "DescribeQuorum: ZooKeeper mode".into(),
            ));
        }
        let now_ms = s.tick as i64 * 1000;
        let high_watermark = 1000 + s.tick as i64;
        let state = QuorumState {
            leader: s.quorum_leader(),
            high_watermark,
            voters: s
                .voters
                .iter()
                .map(|(id, v)| {
                    let caught_up = v.running && v.lag == 0;
                    VoterState {
                        id: *id,
                        log_end_offset: if caught_up {
                            high_watermark
                        } else {
                            high_watermark - 100
                        },
                        last_caught_up_ms: Some(if caught_up { now_ms } else { now_ms - 60_000 }),
                    }
                })
                .collect(),
        };
        lost.map_or(Ok(state), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    fn part(m: &KafkaModel, t: &str, p: i32) -> PartitionState {
        m.truth().partition(&tp(t, p)).cloned().unwrap_or_default()
    }

    #[test]
    fn a_move_copies_at_the_throttled_rate_then_drops_the_old_replica_a_tick_later() {
        let m = KafkaModel::new(ModelConfig::default(), 4);
        m.create_topic_with("t", &[(&[3, 1], 250)]);
        let throttle = Throttle::for_moves(
            &BTreeMap::from([(tp("t", 0), vec![3, 1])]),
            &BTreeMap::from([(tp("t", 0), vec![0, 1])]),
            100,
        );
        block(m.set_throttle(&throttle)).unwrap();
        block(m.alter_reassignments(&BTreeMap::from([(tp("t", 0), vec![0, 1])]))).unwrap();
        let moving = block(m.list_reassignments()).unwrap();
        assert_eq!(moving[&tp("t", 0)].replicas, vec![0, 1, 3]);
        assert_eq!(moving[&tp("t", 0)].adding, vec![0]);
        assert_eq!(moving[&tp("t", 0)].removing, vec![3]);
        // 250 bytes at 100 a tick: three ticks.
        m.tick();
        m.tick();
        assert_eq!(part(&m, "t", 0).size_bytes[&0], 200);
        assert!(!block(m.list_reassignments()).unwrap().is_empty());
        m.tick();
        let p = part(&m, "t", 0);
        assert_eq!(p.replicas, vec![0, 1]);
        assert_eq!(p.isr, vec![1, 0]);
        assert_eq!(p.leader, Some(0), "the leader left with broker 3");
        // Broker 3 still has the log for one tick.
        assert_eq!(m.logs_on(3), vec![tp("t", 0)]);
        m.tick();
        assert!(m.logs_on(3).is_empty());
        assert!(m.violations().is_empty(), "{:?}", m.violations());
    }

    #[test]
    fn unthrottled_copies_use_the_network_rate() {
        let m = KafkaModel::new(
            ModelConfig {
                unthrottled_bytes_per_tick: 1000,
                ..ModelConfig::default()
            },
            3,
        );
        m.create_topic_with("t", &[(&[0], 2500)]);
        block(m.alter_reassignments(&BTreeMap::from([(tp("t", 0), vec![0, 1])]))).unwrap();
        for _ in 0..2 {
            m.tick();
        }
        assert!(!part(&m, "t", 0).isr.contains(&1));
        m.tick();
        assert_eq!(part(&m, "t", 0).isr, vec![0, 1]);
    }

    #[test]
    fn a_second_move_of_a_moving_partition_is_a_violation_and_replaces_the_first() {
        let m = KafkaModel::new(ModelConfig::default(), 4);
        m.create_topic_with("t", &[(&[0, 1], 10 << 20)]);
        block(m.alter_reassignments(&BTreeMap::from([(tp("t", 0), vec![2, 1])]))).unwrap();
        block(m.alter_reassignments(&BTreeMap::from([(tp("t", 0), vec![3, 1])]))).unwrap();
        let r = &block(m.list_reassignments()).unwrap()[&tp("t", 0)];
        assert_eq!((r.adding.clone(), r.removing.clone()), (vec![3], vec![0]));
        assert_eq!(r.replicas, vec![3, 1, 0]);
        assert_eq!(m.violations().len(), 1, "{:?}", m.violations());
        assert_eq!(m.submissions()[&tp("t", 0)], 2);
    }

    #[test]
    fn cancel_returns_to_the_original_replicas() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 10 << 20)]);
        block(m.alter_reassignments(&BTreeMap::from([(tp("t", 0), vec![2, 1])]))).unwrap();
        m.tick();
        block(m.cancel_reassignments(&[tp("t", 0), tp("t", 1)])).unwrap();
        let p = part(&m, "t", 0);
        assert_eq!((p.replicas, p.leader), (vec![0, 1], Some(0)));
        assert!(block(m.list_reassignments()).unwrap().is_empty());
        m.tick();
        m.tick();
        assert!(m.logs_on(2).is_empty(), "the partial copy is deleted");
    }

    #[test]
    fn a_cancel_that_would_leave_no_in_sync_replica_is_refused() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0], 100)]);
        block(m.alter_reassignments(&BTreeMap::from([(tp("t", 0), vec![1, 2])]))).unwrap();
        // 1 catches up, 2 is down: the move cannot complete, and only 1 is in sync once 0 stops.
        m.stop_broker(2);
        m.tick();
        m.stop_broker(0);
        let e = block(m.cancel_reassignments(&[tp("t", 0)])).unwrap_err();
        assert!(matches!(e, KafkaError::Refused { .. }), "{e:?}");
        assert_eq!(block(m.list_reassignments()).unwrap().len(), 1);
        assert!(m.violations().is_empty(), "{:?}", m.violations());
    }

    #[test]
    fn a_stopped_broker_leaves_the_isr_and_its_leaderships_move() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 100), (&[0], 100)]);
        m.stop_broker(0);
        let p = part(&m, "t", 0);
        assert_eq!((p.isr, p.leader), (vec![1], Some(1)));
        // The last in-sync replica stays listed, offline.
        let p = part(&m, "t", 1);
        assert_eq!((p.isr, p.leader), (vec![0], None));
        let s = block(m.snapshot()).unwrap();
        assert_eq!(s.fenced_brokers, vec![0]);
        assert_eq!(s.broker_ids(), BTreeSet::from([1, 2]));
        // Writes go on where min.insync.replicas allows, and 0 catches up when back.
        assert_eq!(m.produce_everywhere(50), 1);
        m.start_broker(0);
        assert_eq!(part(&m, "t", 1).leader, Some(0));
        m.tick();
        let p = part(&m, "t", 0);
        assert_eq!(p.isr, vec![1, 0]);
        assert_eq!(p.size_bytes[&0], 150);
        assert!(m.violations().is_empty(), "{:?}", m.violations());
    }

    #[test]
    fn wiping_the_only_copy_is_reported_as_data_loss() {
        let m = KafkaModel::new(ModelConfig::default(), 2);
        m.create_topic_with("t", &[(&[1], 100)]);
        m.stop_broker(1);
        m.wipe_broker(1);
        assert_eq!(m.violations().len(), 1);
        assert!(m.violations()[0].contains("data lost: t-0"));
    }

    #[test]
    fn silent_brokers_and_stale_snapshots() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 100)]);
        m.set_silent(1, true);
        let s = block(m.snapshot()).unwrap();
        assert_eq!(
            s.partition(&tp("t", 0)).unwrap().size_bytes,
            BTreeMap::from([(0, 100)])
        );
        m.begin_round(1);
        block(m.alter_reassignments(&BTreeMap::from([(tp("t", 0), vec![2, 1])]))).unwrap();
        m.tick();
        m.begin_round(2);
        m.stale_snapshots(0, 1, Staleness::Whole);
        let stale = block(m.snapshot()).unwrap();
        assert!(stale.reassignments.is_empty(), "as before the move");
        assert_eq!(stale.partition(&tp("t", 0)).unwrap().replicas, vec![0, 1]);
        let fresh = block(m.snapshot()).unwrap();
        assert_eq!(fresh.partition(&tp("t", 0)).unwrap().replicas, vec![2, 1]);
        m.stale_snapshots(0, 1, Staleness::Metadata);
        let lagging = block(m.snapshot()).unwrap();
        assert_eq!(lagging.partition(&tp("t", 0)).unwrap().replicas, vec![0, 1]);
        assert!(lagging.reassignments.is_empty());
    }

    #[test]
    fn a_lagging_read_lists_the_logs_of_partitions_it_does_not_know_as_stray() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.begin_round(1);
        m.create_topic_with("new", &[(&[2], 100)]);
        m.stop_broker(1);
        m.stale_snapshots(0, 2, Staleness::Metadata);
        let lagging = block(m.snapshot()).unwrap();
        assert!(lagging.partition(&tp("new", 0)).is_none());
        assert_eq!(
            lagging.stray_logs.get(&2),
            Some(&BTreeSet::from([tp("new", 0)]))
        );
        // Every broker's own cache lags as far: to before the topic, and before broker 1 stopped.
        let answers = block(m.metadata_by_broker(&[0, 2])).unwrap();
        for b in [0, 2] {
            let view = answers[&b].as_ref().unwrap();
            assert!(!view.topics.contains_key("new"));
            assert_eq!(view.brokers, BTreeSet::from([0, 1, 2]));
        }
    }

    #[test]
    fn each_broker_answers_metadata_no_older_than_its_own_start() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 100)]);
        m.begin_round(1);
        // Broker 0 restarts within round 1 and catches up.
        m.stop_broker(0);
        m.start_broker(0);
        m.tick();
        assert_eq!(part(&m, "t", 0).isr, vec![1, 0]);
        m.begin_round(2);
        m.stale_snapshots(0, 1, Staleness::Metadata);
        let isr = |answers: &BTreeMap<BrokerId, Result<BrokerMetadata>>, b: BrokerId| {
            let view = answers[&b].as_ref().unwrap();
            view.topics["t"].partitions[0].isr.clone()
        };
        let answers = block(m.metadata_by_broker(&[0, 1, 2, 5])).unwrap();
        // Brokers 1 and 2 lag to the start of round 1, before the restart; broker 0 no further
        // than its own start, when it was out of the ISR.
        assert_eq!(isr(&answers, 1), vec![0, 1]);
        assert_eq!(isr(&answers, 2), vec![0, 1]);
        assert_eq!(isr(&answers, 0), vec![1]);
        assert!(answers[&5].is_err(), "no such broker");
        assert!(
            answers[&1].as_ref().unwrap().topics["t"].partitions[0]
                .size_bytes
                .is_empty()
        );
        // The next read is fresh everywhere; a stopped broker does not answer.
        m.stop_broker(2);
        let answers = block(m.metadata_by_broker(&[0, 1, 2])).unwrap();
        assert_eq!(isr(&answers, 0), vec![1, 0]);
        assert_eq!(isr(&answers, 1), vec![1, 0]);
        assert!(answers[&2].is_err());
        let brokers = |b: BrokerId| answers[&b].as_ref().unwrap().brokers.clone();
        assert_eq!(brokers(0), BTreeSet::from([0, 1]), "broker 2 stopped");
        assert_eq!(brokers(1), BTreeSet::from([0, 1]));
        assert!(matches!(
            m.calls().last().map(|c| &c.call),
            Some(Call::BrokerMetadata(b)) if b == &vec![0, 1, 2]
        ));
    }

    #[test]
    fn failures_fire_once_before_or_after_the_effect() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 100)]);
        m.fail(CallFailure {
            call: Some("alter_reassignments"),
            skip: 0,
            applied: true,
        });
        m.fail(CallFailure {
            call: Some("snapshot"),
            skip: 1,
            applied: false,
        });
        let target = BTreeMap::from([(tp("t", 0), vec![2, 1])]);
        let e = block(m.alter_reassignments(&target)).unwrap_err();
        assert!(e.is_retriable());
        assert_eq!(
            block(m.list_reassignments()).unwrap().len(),
            1,
            "it took effect"
        );
        assert!(block(m.snapshot()).is_ok());
        assert!(block(m.snapshot()).is_err());
        assert!(block(m.snapshot()).is_ok());
        let failed: Vec<&str> = m
            .calls()
            .iter()
            .filter(|c| c.failed)
            .map(|c| c.call.kind())
            .collect();
        assert_eq!(failed, vec!["alter_reassignments", "snapshot"]);
    }

    #[test]
    fn throttles_are_configs_and_clearing_a_users_value_is_a_violation() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 100)]);
        m.create_topic_with("u", &[(&[0, 1], 100)]);
        m.set_user_config(ConfigResource::Topic("u".into()), LEADER_REPLICAS, "*");
        let throttle = Throttle::for_moves(
            &BTreeMap::from([(tp("t", 0), vec![0, 1])]),
            &BTreeMap::from([(tp("t", 0), vec![2, 1])]),
            500,
        );
        block(m.set_throttle(&throttle)).unwrap();
        let c = block(
            m.describe_configs(&[ConfigResource::Broker(2), ConfigResource::Topic("t".into())]),
        )
        .unwrap();
        assert_eq!(
            c[&ConfigResource::Broker(2)][LEADER_RATE].value.as_deref(),
            Some("500")
        );
        assert_eq!(
            c[&ConfigResource::Topic("t".into())][FOLLOWER_REPLICAS]
                .value
                .as_deref(),
            Some("0:2")
        );
        block(m.clear_throttle(&[0, 1, 2], &["t".into(), "gone".into()])).unwrap();
        assert!(m.operator_configs().is_empty());
        assert!(m.violations().is_empty());
        block(m.clear_throttle(&[], &["u".into()])).unwrap();
        assert_eq!(m.violations().len(), 1, "{:?}", m.violations());
    }

    #[test]
    fn overwriting_then_deleting_a_users_value_is_a_violation() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 100)]);
        m.set_user_config(ConfigResource::Broker(0), LEADER_RATE, "1000");
        let throttle = Throttle::for_moves(
            &BTreeMap::from([(tp("t", 0), vec![0, 1])]),
            &BTreeMap::from([(tp("t", 0), vec![2, 1])]),
            500,
        );
        block(m.set_throttle(&throttle)).unwrap();
        assert!(m.violations().is_empty());
        block(m.clear_throttle(&[0, 1, 2], &["t".into()])).unwrap();
        assert_eq!(m.violations().len(), 1, "{:?}", m.violations());
        assert!(m.violations()[0].contains("leader.replication.throttled.rate=1000"));
    }

    #[test]
    fn putting_a_users_value_back_makes_it_theirs_again() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        let broker = ConfigResource::Broker(0);
        m.set_user_config(broker.clone(), LEADER_RATE, "1000");
        let set = |v: &str| BTreeMap::from([(LEADER_RATE.to_string(), ConfigOp::Set(v.into()))]);
        block(m.alter_configs(&broker, &set("500"))).unwrap();
        assert_eq!(m.operator_configs().len(), 1);
        // Another value than theirs stays the operator's, and deleting it deletes theirs.
        block(m.alter_configs(&broker, &set("700"))).unwrap();
        assert_eq!(m.operator_configs().len(), 1);
        block(m.alter_configs(&broker, &set("1000"))).unwrap();
        assert!(m.operator_configs().is_empty());
        assert_eq!(m.config(&broker, LEADER_RATE).as_deref(), Some("1000"));
        // Theirs, so deleting it is a violation.
        block(m.clear_throttle(&[0], &[])).unwrap();
        assert_eq!(m.violations().len(), 1, "{:?}", m.violations());
    }

    #[test]
    fn unregistering_and_the_quorum() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.stop_broker(2);
        block(m.unregister_broker(2)).unwrap();
        let e = block(m.unregister_broker(2)).unwrap_err();
        // What the operator matches on to take "already gone" for done.
        assert!(
            matches!(&e, KafkaError::Kafka { name, .. } if name == "BROKER_ID_NOT_REGISTERED"),
            "{e:?}"
        );
        assert!(block(m.snapshot()).unwrap().fenced_brokers.is_empty());
        block(m.unregister_broker(1)).unwrap();
        assert_eq!(m.violations().len(), 1, "a running broker unregistered");

        m.stop_controller(0);
        let q = block(m.quorum()).unwrap();
        assert_eq!(q.leader, Some(9001));
        m.start_controller(0);
        assert_eq!(block(m.quorum()).unwrap().lagging(2_000), vec![9000]);
        m.tick();
        m.tick();
        assert!(block(m.quorum()).unwrap().lagging(2_000).is_empty());
    }

    #[test]
    fn topics_are_placed_round_robin_over_live_brokers() {
        let m = KafkaModel::new(ModelConfig::default(), 4);
        m.stop_broker(1);
        m.create_topic("t", 3, 2).unwrap();
        let s = m.truth();
        let placed: Vec<Vec<BrokerId>> = s.topics["t"]
            .partitions
            .iter()
            .map(|p| p.replicas.clone())
            .collect();
        assert_eq!(placed, vec![vec![0, 2], vec![2, 3], vec![3, 0]]);
        assert!(m.create_topic("u", 1, 4).is_err());
        block(m.create_partitions("t", 4)).unwrap();
        assert_eq!(m.truth().topics["t"].partitions.len(), 4);
    }

    #[test]
    fn preferred_leaders_are_elected_where_in_sync() {
        let m = KafkaModel::new(ModelConfig::default(), 3);
        m.create_topic_with("t", &[(&[0, 1], 100), (&[2, 1], 100), (&[1, 0], 100)]);
        m.stop_broker(0);
        m.start_broker(0);
        // Broker 0 is back but not in sync yet on t-0.
        let o = block(m.elect_preferred_leaders(None)).unwrap();
        assert_eq!(o.failed.len(), 1);
        m.tick();
        let o = block(m.elect_preferred_leaders(None)).unwrap();
        assert_eq!(o.elected, vec![tp("t", 0)]);
        assert_eq!(o.not_needed, 2);
    }
}
