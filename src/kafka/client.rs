//! [`KafkaClient`]: the real [`KafkaAdmin`], librdkafka plus `kafka-protocol`.
//!
//! Routing of the protocol requests:
//! - cluster description, topic and cluster-wide config changes, unregistration: any broker
//!   (bootstrap addresses in order; KRaft brokers forward controller requests to the quorum);
//! - reassignments and leader elections: the controller DescribeCluster names. In ZooKeeper mode
//!   that is the controller broker, which must handle them itself; in KRaft mode it is a broker
//!   that forwards them;
//! - DescribeLogDirs: each broker (sizes are per broker);
//! - Metadata for [`KafkaAdmin::metadata_by_broker`]: each broker (its own cache's view);
//! - a broker's dynamic config: that broker (it validates its own reconfiguration).
//!
//! Broker addresses come from DescribeCluster (what the brokers advertise). An
//! [`AddressOverride`] can rewrite them, for an operator that cannot resolve the advertised names
//! (e.g. running outside the Kubernetes cluster with port-forwards). The override applies to the
//! protocol connections; librdkafka (rdkafka 0.39 has no address-rewrite hook) connects to the
//! bootstrap addresses and then to the advertised ones.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_quorum_request::{
    PartitionData as QuorumPartition, TopicData as QuorumTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, DescribeClusterRequest, DescribeClusterResponse,
    DescribeLogDirsRequest, DescribeQuorumRequest, DescribeQuorumResponse, ElectLeadersRequest,
    IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest, MetadataRequest, TopicName,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewPartitions, NewTopic as RdNewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;

use super::error::{KafkaError, Result, error_name};
use super::protocol::{CLIENT_ID, Connection};
use super::throttle::{FOLLOWER_RATE, FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS, Throttle};
use super::{
    Broker, BrokerId, BrokerMetadata, ClusterSnapshot, ConfigOp, ConfigResource, ConfigValue,
    ElectionOutcome, KafkaAdmin, NewTopic, OngoingReassignment, PartitionState, QuorumState,
    TopicPartition, TopicState, VoterState,
};

/// Rewrites a broker's advertised address: `(node id, host, port) -> (host, port)`.
pub type AddressOverride = Arc<dyn Fn(BrokerId, &str, u16) -> (String, u16) + Send + Sync>;

/// Default bound of every admin call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach a cluster.
#[derive(Clone)]
pub struct KafkaClientConfig {
    /// `host:port` of some brokers; the first that answers is used.
    pub bootstrap: Vec<String>,
    /// Bound of each admin call (connecting, sending, waiting included).
    pub timeout: Duration,
    pub address_override: Option<AddressOverride>,
}

impl fmt::Debug for KafkaClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaClientConfig")
            .field("bootstrap", &self.bootstrap)
            .field("timeout", &self.timeout)
            .field("address_override", &self.address_override.is_some())
            .finish()
    }
}

impl KafkaClientConfig {
    pub fn new<S: Into<String>>(bootstrap: impl IntoIterator<Item = S>) -> Self {
        KafkaClientConfig {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            timeout: DEFAULT_TIMEOUT,
            address_override: None,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_address_override(
        mut self,
        f: impl Fn(BrokerId, &str, u16) -> (String, u16) + Send + Sync + 'static,
    ) -> Self {
        self.address_override = Some(Arc::new(f));
        self
    }
}

/// The cluster as DescribeCluster tells it.
struct ClusterInfo {
    cluster_id: String,
    controller_id: Option<BrokerId>,
    live: Vec<Broker>,
    fenced: Vec<BrokerId>,
}

/// The real Kafka admin client. Cheap to share (`Arc`); holds one librdkafka admin client and
/// opens protocol connections per call.
pub struct KafkaClient {
    config: KafkaClientConfig,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl KafkaClient {
    /// Creates the client. librdkafka connects lazily, so this does not need the cluster up.
    pub fn new(config: KafkaClientConfig) -> Result<KafkaClient> {
        if config.bootstrap.is_empty() {
            return Err(KafkaError::Client(
                "no bootstrap address: give at least one broker host:port".into(),
            ));
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", config.bootstrap.join(","))
            .set("client.id", CLIENT_ID)
            // librdkafka retries connections forever on its own; keep its logs quiet about it.
            .set("log_level", "3")
            // The client lives as long as the operator. Requests for the controller (CreateTopics,
            // DeleteTopics, CreatePartitions) go to the broker the last metadata named, which in
            // KRaft is any live broker: with librdkafka's default of 5 minutes, one that has
            // since stopped (a drained broker) takes every such request until its timeout.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create()
            .map_err(|e| KafkaError::Client(format!("cannot create the librdkafka client: {e}")))?;
        Ok(KafkaClient {
            config,
            admin: Arc::new(admin),
        })
    }

    /// DescribeConfigs of resources librdkafka accepts in one request.
    async fn describe_config_batch(
        &self,
        resources: &[ConfigResource],
    ) -> Result<BTreeMap<ConfigResource, BTreeMap<String, ConfigValue>>> {
        self.bounded("DescribeConfigs", async {
            let mut specifiers = Vec::new();
            for r in resources {
                specifiers.push(match r {
                    ConfigResource::Topic(t) => ResourceSpecifier::Topic(t),
                    ConfigResource::Broker(b) => ResourceSpecifier::Broker(*b),
                    ConfigResource::BrokerDefault => {
                        return Err(KafkaError::Unsupported(
                            "describing the cluster-wide broker default is not supported; \
                             describe a broker instead"
                                .into(),
                        ));
                    }
                });
            }
            let results = self
                .admin
                .describe_configs(&specifiers, &self.admin_options())
                .await
                .map_err(|e| self.rd_error("DescribeConfigs", e))?;
            let mut out = BTreeMap::new();
            for (resource, result) in resources.iter().zip(results) {
                let subject = resource.to_string();
                let described = result.map_err(|code| match (resource, code) {
                    (ConfigResource::Topic(t), RDKafkaErrorCode::UnknownTopicOrPartition) => {
                        KafkaError::UnknownTopic { topic: t.clone() }
                    }
                    _ => self.rd_code("DescribeConfigs", code, Some(&subject)),
                })?;
                // librdkafka reports a topic that does not exist as one with no entries; every
                // real topic has entries (its defaults at least).
                if let ConfigResource::Topic(t) = resource {
                    if described.entries.is_empty() {
                        return Err(KafkaError::UnknownTopic { topic: t.clone() });
                    }
                }
                let entries = described
                    .entries
                    .into_iter()
                    .map(|e| {
                        (
                            e.name,
                            ConfigValue {
                                value: e.value,
                                is_default: e.is_default,
                                read_only: e.is_read_only,
                                // A topic's own setting, or a broker's own dynamic one: a
                                // value a topic inherits from a broker is not the topic's.
                                overridden: match resource {
                                    ConfigResource::Topic(_) => {
                                        matches!(e.source, ConfigSource::DynamicTopic)
                                    }
                                    ConfigResource::Broker(_) => {
                                        matches!(e.source, ConfigSource::DynamicBroker)
                                    }
                                    ConfigResource::BrokerDefault => {
                                        matches!(e.source, ConfigSource::DynamicDefaultBroker)
                                    }
                                },
                            },
                        )
                    })
                    .collect();
                out.insert(resource.clone(), entries);
            }
            Ok(out)
        })
        .await
    }

    pub fn config(&self) -> &KafkaClientConfig {
        &self.config
    }

    /// Runs `fut` within the client's timeout.
    async fn bounded<T>(&self, operation: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.config.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(KafkaError::timeout(operation, self.config.timeout)))
    }

    fn timeout_ms(&self) -> i32 {
        self.config.timeout.as_millis().min(i32::MAX as u128) as i32
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.config.timeout))
            .operation_timeout(Some(self.config.timeout))
    }

    /// The address to connect to for a broker, after the override.
    pub fn broker_address(&self, broker: &Broker) -> String {
        match &self.config.address_override {
            Some(f) => {
                let (host, port) = f(broker.id, &broker.host, broker.port);
                format!("{host}:{port}")
            }
            None => format!("{}:{}", broker.host, broker.port),
        }
    }

    /// A connection to the first bootstrap address that answers.
    async fn connect_any(&self) -> Result<Connection> {
        // Each attempt gets a share of the timeout, so a black-holed first address does not use
        // up the whole call before the others are tried.
        let per_attempt = (self.config.timeout / 3).max(Duration::from_secs(1));
        let mut reasons = Vec::new();
        for addr in &self.config.bootstrap {
            match tokio::time::timeout(per_attempt, Connection::connect(addr)).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => reasons.push(format!("{addr}: {e}")),
                Err(_) => reasons.push(format!("{addr}: no answer in {}s", per_attempt.as_secs())),
            }
        }
        Err(KafkaError::Unreachable {
            tried: self.config.bootstrap.clone(),
            reason: reasons.join("; "),
        })
    }

    async fn connect_to(&self, broker: &Broker) -> Result<Connection> {
        let addr = self.broker_address(broker);
        Connection::connect(&addr).await.map_err(|e| match e {
            KafkaError::Unreachable { reason, .. } => KafkaError::Unreachable {
                tried: vec![format!("broker {} at {addr}", broker.id)],
                reason,
            },
            e => e,
        })
    }

    async fn describe_cluster(&self, conn: &mut Connection) -> Result<ClusterInfo> {
        // Fenced brokers are listed on request from v2 (Kafka 4.0); older versions omit them.
        let version = conn.version_for::<DescribeClusterRequest>()?;
        let request = DescribeClusterRequest::default().with_include_fenced_brokers(version >= 2);
        let response: DescribeClusterResponse = conn.send(&request).await?;
        if response.error_code != 0 {
            return Err(KafkaError::from_code(
                "DescribeCluster",
                response.error_code,
                response.error_message.map(|m| m.to_string()),
            ));
        }
        let mut live = Vec::new();
        let mut fenced = Vec::new();
        for b in response.brokers {
            if b.is_fenced {
                fenced.push(b.broker_id.0);
                continue;
            }
            live.push(Broker {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: u16::try_from(b.port).unwrap_or(0),
                rack: b.rack.map(|r| r.to_string()),
            });
        }
        live.sort_by_key(|b| b.id);
        fenced.sort();
        let controller = response.controller_id.0;
        Ok(ClusterInfo {
            cluster_id: response.cluster_id.to_string(),
            controller_id: (controller >= 0).then_some(controller),
            live,
            fenced,
        })
    }

    /// A connection to the node that handles controller requests (see the module docs).
    async fn connect_controller(&self) -> Result<Connection> {
        let mut conn = self.connect_any().await?;
        let info = self.describe_cluster(&mut conn).await?;
        let Some(controller) = info.controller_id else {
            return Err(KafkaError::Kafka {
                request: "DescribeCluster".into(),
                code: 15,
                name: "NO_ACTIVE_CONTROLLER".into(),
                message: Some("the cluster has no active controller right now".into()),
                retriable: true,
            });
        };
        match info.live.iter().find(|b| b.id == controller) {
            Some(b) if self.broker_address(b) != conn.addr() => match self.connect_to(b).await {
                Ok(c) => Ok(c),
                // The named node may have just died (still listed until its session expires).
                // A KRaft broker forwards controller requests anyway; a ZooKeeper-mode broker
                // answers NOT_CONTROLLER, which is retriable.
                Err(e) => {
                    tracing::debug!(error = %e, "controller unreachable, using {}", conn.addr());
                    Ok(conn)
                }
            },
            _ => Ok(conn),
        }
    }

    async fn connect_broker(&self, id: BrokerId) -> Result<Connection> {
        let mut conn = self.connect_any().await?;
        let info = self.describe_cluster(&mut conn).await?;
        let broker = info
            .live
            .iter()
            .find(|b| b.id == id)
            .ok_or_else(|| broker_not_available(id, &info.live))?;
        if self.broker_address(broker) == conn.addr() {
            return Ok(conn);
        }
        self.connect_to(broker).await
    }

    /// A connection to a KRaft controller, the quorum's leader first: the one node that takes a
    /// change of a broker's configuration while that broker is not running (brokers refuse
    /// changes of another broker's; controllers answer admin clients since Kafka 3.7, KIP-919).
    /// The controllers' endpoints are the ones DescribeQuorum lists (v2, Kafka 3.9).
    async fn connect_quorum(&self) -> Result<Connection> {
        let mut conn = self.connect_any().await?;
        let response = describe_quorum(&mut conn).await?;
        let leader = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .map(|p| p.leader_id.0);
        let mut nodes: Vec<_> = response.nodes.iter().collect();
        nodes.sort_by_key(|n| Some(n.node_id.0) != leader);
        let mut reasons = Vec::new();
        for node in nodes {
            for listener in &node.listeners {
                let controller = Broker {
                    id: node.node_id.0,
                    host: listener.host.to_string(),
                    port: listener.port,
                    rack: None,
                };
                match self.connect_to(&controller).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
        }
        Err(KafkaError::Unreachable {
            tried: vec!["the KRaft controllers DescribeQuorum lists".into()],
            reason: if reasons.is_empty() {
                "DescribeQuorum listed no controller endpoint (Kafka 3.9 or newer lists them)"
                    .into()
            } else {
                reasons.join("; ")
            },
        })
    }

    /// Topic metadata from librdkafka (a blocking call, so on the blocking pool).
    async fn topic_metadata(&self) -> Result<BTreeMap<String, TopicState>> {
        let admin = self.admin.clone();
        let timeout = self.config.timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, timeout).map(|m| {
                m.topics()
                    .iter()
                    .map(|t| {
                        let mut partitions: Vec<PartitionState> = t
                            .partitions()
                            .iter()
                            .map(|p| PartitionState {
                                partition: p.id(),
                                replicas: p.replicas().to_vec(),
                                isr: p.isr().to_vec(),
                                leader: (p.leader() >= 0).then_some(p.leader()),
                                size_bytes: BTreeMap::new(),
                            })
                            .collect();
                        partitions.sort_by_key(|p| p.partition);
                        let topic = TopicState {
                            name: t.name().to_string(),
                            internal: t.name().starts_with("__"),
                            partitions,
                        };
                        (topic.name.clone(), topic)
                    })
                    .collect::<BTreeMap<_, _>>()
            })
        })
        .await
        .map_err(|e| KafkaError::Client(format!("metadata task failed: {e}")))?;
        metadata.map_err(|e| self.rd_error("Metadata", e))
    }

    /// Every topic and the live brokers as `broker`'s own metadata cache has them: Metadata
    /// (all topics) sent to that broker. Partitions are kept whatever their error code (LEADER_NOT_AVAILABLE,
    /// REPLICA_NOT_AVAILABLE still list the replicas and the ISR the broker knows); a topic
    /// the broker answers with an error and no partitions is as good as absent from its view.
    async fn broker_topic_metadata(&self, broker: &Broker) -> Result<BrokerMetadata> {
        let mut conn = self.connect_to(broker).await?;
        let version = conn.version_for::<MetadataRequest>()?;
        // All topics: null from v1 (an empty list means none), an empty list in v0. Before v4
        // auto-creation cannot be turned off, and does not apply to a request for all topics.
        let request = MetadataRequest::default()
            .with_topics(if version >= 1 { None } else { Some(Vec::new()) })
            .with_allow_auto_topic_creation(version < 4);
        let response = conn.send(&request).await?;
        if response.error_code != 0 {
            return Err(KafkaError::from_code(
                format!("Metadata from broker {}", broker.id),
                response.error_code,
                None,
            ));
        }
        let brokers = response.brokers.iter().map(|b| b.node_id.0).collect();
        let mut topics = BTreeMap::new();
        for t in response.topics {
            let Some(name) = t.name.map(|n| n.to_string()) else {
                continue;
            };
            if t.partitions.is_empty() {
                continue;
            }
            let mut partitions: Vec<PartitionState> = t
                .partitions
                .iter()
                .map(|p| PartitionState {
                    partition: p.partition_index,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                    size_bytes: BTreeMap::new(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            topics.insert(
                name.clone(),
                TopicState {
                    internal: t.is_internal || name.starts_with("__"),
                    name,
                    partitions,
                },
            );
        }
        Ok(BrokerMetadata { brokers, topics })
    }

    /// Bytes on disk of each partition replica a broker holds. Fails when any of its log
    /// directories cannot be described (offline): then the broker has not said what it holds.
    async fn log_dir_sizes(&self, broker: &Broker) -> Result<BTreeMap<TopicPartition, u64>> {
        let mut conn = self.connect_to(broker).await?;
        // No topic list (null) means all topics; the default is an empty list, meaning none.
        let request = DescribeLogDirsRequest::default().with_topics(None);
        let response = conn.send(&request).await?;
        if response.error_code != 0 {
            return Err(KafkaError::from_code(
                format!("DescribeLogDirs on broker {}", broker.id),
                response.error_code,
                None,
            ));
        }
        let mut sizes = BTreeMap::new();
        for dir in response.results {
            if dir.error_code != 0 {
                return Err(KafkaError::from_code(
                    format!(
                        "DescribeLogDirs on broker {}: log directory {}",
                        broker.id, dir.log_dir
                    ),
                    dir.error_code,
                    None,
                ));
            }
            for topic in dir.topics {
                for p in topic.partitions {
                    // Future replicas are intra-broker moves between log dirs: not a second copy.
                    if p.is_future_key {
                        continue;
                    }
                    *sizes
                        .entry(TopicPartition::new(
                            topic.name.to_string(),
                            p.partition_index,
                        ))
                        .or_insert(0) += p.partition_size.max(0) as u64;
                }
            }
        }
        Ok(sizes)
    }

    async fn list_reassignments_inner(
        &self,
    ) -> Result<BTreeMap<TopicPartition, OngoingReassignment>> {
        let mut conn = self.connect_controller().await?;
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(None);
        let response = conn.send(&request).await?;
        if response.error_code != 0 {
            return Err(KafkaError::from_code(
                "ListPartitionReassignments",
                response.error_code,
                response.error_message.map(|m| m.to_string()),
            ));
        }
        let mut out = BTreeMap::new();
        for t in response.topics {
            for p in t.partitions {
                out.insert(
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    OngoingReassignment {
                        replicas: p.replicas.iter().map(|b| b.0).collect(),
                        adding: p.adding_replicas.iter().map(|b| b.0).collect(),
                        removing: p.removing_replicas.iter().map(|b| b.0).collect(),
                    },
                );
            }
        }
        Ok(out)
    }

    /// Sends AlterPartitionReassignments; `None` replicas cancel.
    async fn reassign(
        &self,
        request_name: &str,
        targets: BTreeMap<TopicPartition, Option<Vec<BrokerId>>>,
        ignore_not_in_progress: bool,
    ) -> Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let mut topics: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
        for (tp, replicas) in targets {
            topics.entry(tp.topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(tp.partition)
                    .with_replicas(replicas.map(|r| r.into_iter().map(Into::into).collect())),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(&name))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let mut conn = self.connect_controller().await?;
        let response = conn.send(&request).await?;
        if response.error_code != 0 {
            return Err(KafkaError::from_code(
                request_name,
                response.error_code,
                response.error_message.map(|m| m.to_string()),
            ));
        }
        let failures: Vec<(String, i16, Option<String>)> = response
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().filter_map(move |p| {
                    let ignorable = ignore_not_in_progress && p.error_code == NO_REASSIGNMENT;
                    (p.error_code != 0 && !ignorable).then(|| {
                        (
                            format!("{}-{}", t.name.as_str(), p.partition_index),
                            p.error_code,
                            p.error_message.as_ref().map(|m| m.to_string()),
                        )
                    })
                })
            })
            .collect();
        partition_failures(request_name, failures)
    }

    fn rd_error(&self, request: &str, e: RdError) -> KafkaError {
        match e {
            RdError::AdminOp(code)
            | RdError::MetadataFetch(code)
            | RdError::Global(code)
            | RdError::MockCluster(code) => self.rd_code(request, code, None),
            other => KafkaError::Client(format!("{request}: {other}")),
        }
    }

    /// Maps a librdkafka error code: its positive codes are Kafka's, its negative ones local.
    fn rd_code(&self, request: &str, code: RDKafkaErrorCode, subject: Option<&str>) -> KafkaError {
        let request = match subject {
            Some(s) => format!("{request} of {s}"),
            None => request.to_string(),
        };
        match code {
            RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut => {
                KafkaError::timeout(request, self.config.timeout)
            }
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve => KafkaError::Unreachable {
                tried: self.config.bootstrap.clone(),
                reason: format!("{request}: {code}"),
            },
            RDKafkaErrorCode::UnknownTopicOrPartition if subject.is_some() => {
                KafkaError::UnknownTopic {
                    topic: subject.unwrap_or_default().to_string(),
                }
            }
            c if (c as i32) > 0 && (c as i32) < i16::MAX as i32 => {
                KafkaError::from_code(request, c as i32 as i16, None)
            }
            c => KafkaError::Client(format!("{request}: {c}")),
        }
    }

    async fn incremental_alter(
        &self,
        resource: &ConfigResource,
        changes: &BTreeMap<String, ConfigOp>,
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let (resource_type, name) = match resource {
            ConfigResource::Topic(t) => (RESOURCE_TOPIC, t.clone()),
            ConfigResource::Broker(b) => (RESOURCE_BROKER, b.to_string()),
            ConfigResource::BrokerDefault => (RESOURCE_BROKER, String::new()),
        };
        let configs = changes
            .iter()
            .map(|(k, op)| {
                let (operation, value) = match op {
                    ConfigOp::Set(v) => (OP_SET, Some(StrBytes::from_string(v.clone()))),
                    ConfigOp::Delete => (OP_DELETE, None),
                };
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(operation)
                    .with_value(value)
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name))
                .with_configs(configs),
        ]);
        let mut conn = match resource {
            ConfigResource::Broker(b) => match self.connect_broker(*b).await {
                Ok(conn) => conn,
                // A broker that is not running (fenced, or its node lost) cannot take its own
                // change, nor will another broker; a KRaft controller does, and keeps it in
                // the metadata log for that broker id (so a broker of that id starting later
                // has it). ZooKeeper mode has no such node: the error stands.
                Err(KafkaError::Kafka { name, .. }) if name == "BROKER_NOT_AVAILABLE" => {
                    match self.connect_quorum().await {
                        Ok(conn) => conn,
                        Err(KafkaError::Unsupported(_)) => {
                            return Err(not_available(
                                format!("IncrementalAlterConfigs of broker {b}"),
                                format!(
                                    "broker {b} is not running, and in ZooKeeper mode only that broker takes a change of its configuration"
                                ),
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            },
            _ => self.connect_any().await?,
        };
        let response = conn.send(&request).await?;
        let request_name = format!("IncrementalAlterConfigs of {resource}");
        for r in response.responses {
            if r.error_code == UNKNOWN_TOPIC {
                if let ConfigResource::Topic(t) = resource {
                    return Err(KafkaError::UnknownTopic { topic: t.clone() });
                }
            }
            if r.error_code != 0 {
                return Err(KafkaError::from_code(
                    request_name,
                    r.error_code,
                    r.error_message.map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }
}

/// The metadata quorum as DescribeQuorum describes it (a KRaft broker forwards the request to
/// the controllers), with the partition's own error checked.
async fn describe_quorum(conn: &mut Connection) -> Result<DescribeQuorumResponse> {
    let request = DescribeQuorumRequest::default().with_topics(vec![
        QuorumTopic::default()
            .with_topic_name(topic_name("__cluster_metadata"))
            .with_partitions(vec![QuorumPartition::default().with_partition_index(0)]),
    ]);
    let response = match conn.send(&request).await {
        Err(KafkaError::Unsupported(_)) => {
            return Err(KafkaError::Unsupported(
                "the cluster has no KRaft quorum to describe (ZooKeeper mode)".into(),
            ));
        }
        other => other?,
    };
    if response.error_code != 0 {
        return Err(KafkaError::from_code(
            "DescribeQuorum".to_string(),
            response.error_code,
            response.error_message.map(|m| m.to_string()),
        ));
    }
    if let Some(partition) = response.topics.first().and_then(|t| t.partitions.first())
        && partition.error_code != 0
    {
        return Err(KafkaError::from_code(
            "DescribeQuorum".to_string(),
            partition.error_code,
            partition.error_message.as_ref().map(|m| m.to_string()),
        ));
    }
    Ok(response)
}

/// A broker that DescribeCluster does not list as live: it cannot be asked anything.
fn broker_not_available(id: BrokerId, live: &[Broker]) -> KafkaError {
    not_available(
        format!("a connection to broker {id}"),
        format!(
            "broker {id} is not registered or is fenced (live brokers: {:?})",
            live.iter().map(|b| b.id).collect::<Vec<_>>()
        ),
    )
}

fn not_available(request: String, message: String) -> KafkaError {
    KafkaError::Kafka {
        request,
        code: 8,
        name: "BROKER_NOT_AVAILABLE".into(),
        message: Some(message),
        retriable: true,
    }
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const UNKNOWN_TOPIC: i16 = 3;
const ELECTION_NOT_NEEDED: i16 = 84;
const NO_REASSIGNMENT: i16 = 85;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One error for the partitions a request failed on: refused if any was refused (the request
/// must change), else retriable only if all were.
fn partition_failures(request: &str, failures: Vec<(String, i16, Option<String>)>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let errors: Vec<KafkaError> = failures
        .iter()
        .map(|(p, code, msg)| {
            KafkaError::from_code(format!("{request} of {p}"), *code, msg.clone())
        })
        .collect();
    let shown: Vec<String> = errors.iter().take(5).map(|e| e.to_string()).collect();
    let more = if errors.len() > 5 {
        format!(" (and {} more)", errors.len() - 5)
    } else {
        String::new()
    };
    let summary = format!("{}{more}", shown.join("; "));
    if errors.len() == 1 {
        return Err(errors
            .into_iter()
            .next()
            .unwrap_or(KafkaError::Client(summary)));
    }
    if errors
        .iter()
        .any(|e| matches!(e, KafkaError::Refused { .. }))
    {
        return Err(KafkaError::Refused {
            request: request.to_string(),
            reason: summary,
        });
    }
    let (_, code, _) = &failures[0];
    Err(KafkaError::Kafka {
        request: request.to_string(),
        code: *code,
        name: error_name(*code),
        message: Some(summary),
        retriable: errors.iter().all(KafkaError::is_retriable),
    })
}

#[async_trait::async_trait]
impl KafkaAdmin for KafkaClient {
    async fn snapshot(&self) -> Result<ClusterSnapshot> {
        self.bounded("cluster snapshot", async {
            let mut conn = self.connect_any().await?;
            let info = self.describe_cluster(&mut conn).await?;
            drop(conn);
            let (topics, reassignments, sizes) = tokio::join!(
                self.topic_metadata(),
                self.list_reassignments_inner(),
                join_all(info.live.iter().map(|b| self.log_dir_sizes(b))),
            );
            let mut topics = topics?;
            let reassignments = reassignments?;
            let mut log_dirs_described = BTreeSet::new();
            let mut stray_logs: BTreeMap<BrokerId, BTreeSet<TopicPartition>> = BTreeMap::new();
            for (broker, sizes) in info.live.iter().zip(sizes) {
                // A broker that cannot describe its log dirs costs the plans only the sizes it
                // holds, but it has not said what it holds: the snapshot says so, and no check
                // that removes a broker takes its silence for an answer.
                let sizes = match sizes {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(broker = broker.id, error = %e, "no log dir sizes");
                        continue;
                    }
                };
                log_dirs_described.insert(broker.id);
                for (tp, bytes) in sizes {
                    match topics.get_mut(&tp.topic).and_then(|t| {
                        t.partitions
                            .iter_mut()
                            .find(|p| p.partition == tp.partition)
                    }) {
                        Some(p) => {
                            p.size_bytes.insert(broker.id, bytes);
                        }
                        None => {
                            stray_logs.entry(broker.id).or_default().insert(tp);
                        }
                    }
                }
            }
            Ok(ClusterSnapshot {
                cluster_id: Some(info.cluster_id).filter(|c| !c.is_empty()),
                controller_id: info.controller_id,
                brokers: info.live,
                fenced_brokers: info.fenced,
                topics,
                reassignments,
                log_dirs_described,
                stray_logs,
            })
        })
        .await
    }

    async fn metadata_by_broker(
        &self,
        brokers: &[BrokerId],
    ) -> Result<BTreeMap<BrokerId, Result<BrokerMetadata>>> {
        self.bounded("Metadata from each broker", async {
            let mut conn = self.connect_any().await?;
            let info = self.describe_cluster(&mut conn).await?;
            drop(conn);
            // Each broker within half the call's bound, all at once: one that hangs has its own
            // timeout as its answer instead of costing the others theirs.
            let per_broker = (self.config.timeout / 2).max(Duration::from_secs(1));
            let answers = join_all(brokers.iter().map(|id| {
                let info = &info;
                async move {
                    let answer = match info.live.iter().find(|b| b.id == *id) {
                        Some(b) => {
                            let operation = format!("Metadata from broker {id}");
                            tokio::time::timeout(per_broker, self.broker_topic_metadata(b))
                                .await
                                .unwrap_or_else(|_| Err(KafkaError::timeout(operation, per_broker)))
                        }
                        None => Err(broker_not_available(*id, &info.live)),
                    };
                    (*id, answer)
                }
            }))
            .await;
            Ok(answers.into_iter().collect())
        })
        .await
    }

    async fn describe_configs(
        &self,
        resources: &[ConfigResource],
    ) -> Result<BTreeMap<ConfigResource, BTreeMap<String, ConfigValue>>> {
        // librdkafka takes at most one broker resource per request (a broker's configuration is
        // answered by that broker): topics go together, each broker on its own.
        let (brokers, topics): (Vec<ConfigResource>, Vec<ConfigResource>) = resources
            .iter()
            .cloned()
            .partition(|r| matches!(r, ConfigResource::Broker(_)));
        // librdkafka waits out its whole timeout for a broker that is not running: say so at
        // once instead.
        if !brokers.is_empty() {
            let info = self
                .describe_cluster(&mut self.connect_any().await?)
                .await?;
            for resource in &brokers {
                if let ConfigResource::Broker(b) = resource
                    && !info.live.iter().any(|l| l.id == *b)
                {
                    return Err(broker_not_available(*b, &info.live));
                }
            }
        }
        let mut batches: Vec<Vec<ConfigResource>> = brokers.into_iter().map(|b| vec![b]).collect();
        if !topics.is_empty() {
            batches.push(topics);
        }
        let mut out = BTreeMap::new();
        for described in try_join_all(batches.iter().map(|b| self.describe_config_batch(b))).await?
        {
            out.extend(described);
        }
        Ok(out)
    }

    async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        self.bounded("CreateTopics", async {
            let new: Vec<RdNewTopic> = topics
                .iter()
                .map(|t| {
                    t.config.iter().fold(
                        RdNewTopic::new(
                            &t.name,
                            t.partitions,
                            TopicReplication::Fixed(t.replication_factor),
                        ),
                        |nt, (k, v)| nt.set(k, v),
                    )
                })
                .collect();
            let results = self
                .admin
                .create_topics(&new, &self.admin_options())
                .await
                .map_err(|e| self.rd_error("CreateTopics", e))?;
            let failures: Vec<(String, i16, Option<String>)> = results
                .into_iter()
                .filter_map(|r| match r {
                    Ok(_) => None,
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                    Err((topic, code)) => Some((topic, code as i32 as i16, None)),
                })
                .collect();
            partition_failures("CreateTopics", failures)
        })
        .await
    }

    async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        self.bounded("DeleteTopics", async {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let results = self
                .admin
                .delete_topics(&names, &self.admin_options())
                .await
                .map_err(|e| self.rd_error("DeleteTopics", e))?;
            let failures: Vec<(String, i16, Option<String>)> = results
                .into_iter()
                .filter_map(|r| match r {
                    Ok(_) => None,
                    Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => None,
                    Err((topic, code)) => Some((topic, code as i32 as i16, None)),
                })
                .collect();
            partition_failures("DeleteTopics", failures)
        })
        .await
    }

    async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        self.bounded("CreatePartitions", async {
            let count = usize::try_from(total).map_err(|_| KafkaError::Refused {
                request: format!("CreatePartitions of {topic}"),
                reason: format!("{total} is not a partition count"),
            })?;
            let results = self
                .admin
                .create_partitions(&[NewPartitions::new(topic, count)], &self.admin_options())
                .await
                .map_err(|e| self.rd_error("CreatePartitions", e))?;
            for r in results {
                if let Err((t, code)) = r {
                    return Err(self.rd_code("CreatePartitions", code, Some(&t)));
                }
            }
            Ok(())
        })
        .await
    }

    async fn alter_configs(
        &self,
        resource: &ConfigResource,
        changes: &BTreeMap<String, ConfigOp>,
    ) -> Result<()> {
        self.bounded(
            &format!("IncrementalAlterConfigs of {resource}"),
            self.incremental_alter(resource, changes),
        )
        .await
    }

    async fn alter_reassignments(
        &self,
        targets: &BTreeMap<TopicPartition, Vec<BrokerId>>,
    ) -> Result<()> {
        let targets = targets
            .iter()
            .map(|(tp, r)| (tp.clone(), Some(r.clone())))
            .collect();
        self.bounded(
            "AlterPartitionReassignments",
            self.reassign("AlterPartitionReassignments", targets, false),
        )
        .await
    }

    async fn list_reassignments(&self) -> Result<BTreeMap<TopicPartition, OngoingReassignment>> {
        self.bounded(
            "ListPartitionReassignments",
            self.list_reassignments_inner(),
        )
        .await
    }

    async fn cancel_reassignments(&self, partitions: &[TopicPartition]) -> Result<()> {
        let targets = partitions.iter().map(|tp| (tp.clone(), None)).collect();
        self.bounded(
            "cancelling reassignments",
            self.reassign("AlterPartitionReassignments (cancel)", targets, true),
        )
        .await
    }

    async fn set_throttle(&self, throttle: &Throttle) -> Result<()> {
        self.bounded("setting replication throttles", async {
            let rates: BTreeMap<String, ConfigOp> = throttle
                .broker_configs()
                .into_iter()
                .map(|(k, v)| (k, ConfigOp::Set(v)))
                .collect();
            // Independent changes, sent at once: each is a round trip to its own broker.
            let changes: Vec<(ConfigResource, BTreeMap<String, ConfigOp>)> = throttle
                .brokers
                .iter()
                .map(|b| (ConfigResource::Broker(*b), rates.clone()))
                .chain(
                    throttle
                        .topic_configs()
                        .into_iter()
                        .map(|(topic, configs)| {
                            let ops = configs
                                .into_iter()
                                .map(|(k, v)| (k, ConfigOp::Set(v)))
                                .collect();
                            (ConfigResource::Topic(topic), ops)
                        }),
                )
                .collect();
            try_join_all(
                changes
                    .iter()
                    .map(|(r, ops)| self.incremental_alter(r, ops)),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn clear_throttle(&self, brokers: &[BrokerId], topics: &[String]) -> Result<()> {
        self.bounded("clearing replication throttles", async {
            let delete = |keys: [&str; 2]| -> BTreeMap<String, ConfigOp> {
                keys.into_iter()
                    .map(|k| (k.to_string(), ConfigOp::Delete))
                    .collect()
            };
            let rates = delete([LEADER_RATE, FOLLOWER_RATE]);
            let replicas = delete([LEADER_REPLICAS, FOLLOWER_REPLICAS]);
            let resources: Vec<(ConfigResource, &BTreeMap<String, ConfigOp>)> = brokers
                .iter()
                .map(|b| (ConfigResource::Broker(*b), &rates))
                .chain(
                    topics
                        .iter()
                        .map(|t| (ConfigResource::Topic(t.clone()), &replicas)),
                )
                .collect();
            let results = join_all(
                resources
                    .iter()
                    .map(|(r, ops)| self.incremental_alter(r, ops)),
            )
            .await;
            for result in results {
                match result {
                    // A deleted topic has no throttle left to clear.
                    Err(KafkaError::UnknownTopic { .. }) => {}
                    other => other?,
                }
            }
            Ok(())
        })
        .await
    }

    async fn elect_preferred_leaders(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<ElectionOutcome> {
        self.bounded("ElectLeaders", async {
            let topic_partitions = partitions.map(|ps| {
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for tp in ps {
                    by_topic.entry(&tp.topic).or_default().push(tp.partition);
                }
                by_topic
                    .into_iter()
                    .map(|(t, p)| {
                        TopicPartitions::default()
                            .with_topic(topic_name(t))
                            .with_partitions(p)
                    })
                    .collect()
            });
            let request = ElectLeadersRequest::default()
                .with_election_type(0) // preferred
                .with_topic_partitions(topic_partitions)
                .with_timeout_ms(self.timeout_ms());
            let mut conn = self.connect_controller().await?;
            let response = conn.send(&request).await?;
            if response.error_code != 0 {
                return Err(KafkaError::from_code(
                    "ElectLeaders",
                    response.error_code,
                    None,
                ));
            }
            let mut outcome = ElectionOutcome::default();
            for r in response.replica_election_results {
                for p in r.partition_result {
                    let tp = TopicPartition::new(r.topic.to_string(), p.partition_id);
                    match p.error_code {
                        0 => outcome.elected.push(tp),
                        ELECTION_NOT_NEEDED => outcome.not_needed += 1,
                        code => {
                            let reason = match p.error_message {
                                Some(m) => format!("{}: {m}", error_name(code)),
                                None => error_name(code),
                            };
                            outcome.failed.push((tp, reason));
                        }
                    }
                }
            }
            outcome.elected.sort();
            outcome.failed.sort();
            Ok(outcome)
        })
        .await
    }

    async fn unregister_broker(&self, broker: BrokerId) -> Result<()> {
        self.bounded("UnregisterBroker", async {
            let mut conn = self.connect_any().await?;
            let request = UnregisterBrokerRequest::default().with_broker_id(broker.into());
            let response = match conn.send(&request).await {
                Err(KafkaError::Unsupported(_)) => {
                    return Err(KafkaError::Unsupported(format!(
                        "cannot unregister broker {broker}: the cluster does not support \
                         UnregisterBroker, which only exists in KRaft mode (in ZooKeeper mode a \
                         stopped broker leaves the cluster by itself)"
                    )));
                }
                other => other?,
            };
            if response.error_code != 0 {
                return Err(KafkaError::from_code(
                    format!("UnregisterBroker of broker {broker}"),
                    response.error_code,
                    response.error_message.map(|m| m.to_string()),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn quorum(&self) -> Result<QuorumState> {
        self.bounded("DescribeQuorum", async {
            let mut conn = self.connect_any().await?;
            let response = describe_quorum(&mut conn).await?;
            let Some(partition) = response.topics.first().and_then(|t| t.partitions.first()) else {
                return Ok(QuorumState::default());
            };
            Ok(QuorumState {
                leader: Some(partition.leader_id.0).filter(|id| *id >= 0),
                high_watermark: partition.high_watermark,
                voters: partition
                    .current_voters
                    .iter()
                    .map(|v| VoterState {
                        id: v.replica_id.0,
                        log_end_offset: v.log_end_offset,
                        last_caught_up_ms: Some(v.last_caught_up_timestamp).filter(|t| *t >= 0),
                    })
                    .collect(),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_rewrites_advertised_addresses() {
        let config = KafkaClientConfig::new(["127.0.0.1:1"])
            .with_address_override(|id, _host, port| ("localhost".into(), port + id as u16));
        let client = KafkaClient::new(config).unwrap();
        let broker = Broker {
            id: 2,
            host: "kafka-2.kafka.ns.svc".into(),
            port: 9092,
            rack: None,
        };
        assert_eq!(client.broker_address(&broker), "localhost:9094");
    }

    #[test]
    fn partition_failures_are_summarised() {
        assert!(partition_failures("X", vec![]).is_ok());
        let one = partition_failures("X", vec![("t-0".into(), 39, None)]).unwrap_err();
        assert!(matches!(one, KafkaError::Refused { .. }), "{one}");
        let many = partition_failures(
            "X",
            vec![
                ("t-0".into(), 6, None),
                ("t-1".into(), 39, Some("dup".into())),
            ],
        )
        .unwrap_err();
        assert!(matches!(many, KafkaError::Refused { .. }));
        assert!(many.to_string().contains("t-1"), "{many}");
        let busy = partition_failures("X", vec![("a".into(), 6, None), ("b".into(), 5, None)])
            .unwrap_err();
        assert!(busy.is_retriable(), "{busy}");
    }

    #[tokio::test]
    async fn unreachable_cluster_names_the_addresses_tried() {
        let config = KafkaClientConfig::new(["127.0.0.1:1", "127.0.0.1:2"])
            .with_timeout(Duration::from_secs(5));
        let client = KafkaClient::new(config).unwrap();
        let err = client.list_reassignments().await.unwrap_err();
        assert!(matches!(err, KafkaError::Unreachable { .. }), "{err}");
        assert!(err.is_retriable());
        assert!(
            err.to_string().contains("127.0.0.1:1, 127.0.0.1:2"),
            "{err}"
        );
    }
}
