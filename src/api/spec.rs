//! The `KafkaCluster` spec: every field of the original 2017 spec, plus what production needs.
//!
//! Validation that the API server can do lives here, as OpenAPI constraints and CEL rules, so a
//! bad spec is refused by `kubectl apply` with a message naming the field. What the schema cannot
//! express is checked in [`super::validate`] and reported in status.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::status::KafkaClusterStatus;
use super::validate::{
    DEFAULT_BROKER_DISK, DEFAULT_CONTROLLER_DISK, MAX_KRAFT_NAME_LENGTH, MAX_NAME_LENGTH,
};

/// Desired state of a Kafka cluster.
// The printer columns repeat `type_`, which this lint mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "krallistic.github.com",
    version = "v1",
    kind = "KafkaCluster",
    plural = "kafkaclusters",
    singular = "kafkacluster",
    shortname = "kc",
    category = "kafka",
    namespaced,
    status = "KafkaClusterStatus",
    derive = "PartialEq",
    doc = "A Kafka cluster managed by kafka-operator",
    scale(
        spec_replicas_path = ".spec.brokerCount",
        status_replicas_path = ".status.brokers",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Brokers",
        type_ = "integer",
        json_path = ".spec.brokerCount",
        description = "Desired number of brokers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyBrokers",
        description = "Brokers that are ready"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "What the operator is doing"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    // The cluster's name is the stem of every object the operator makes (see
    // `resources::names`): StatefulSets `<name>` and `<name>-controller`, Services `<name>`,
    // `<name>-controllers` and `<name>-broker-<n>` (n up to 999), ConfigMap `<name>-config`,
    // PDBs, PVCs `data-<pod>`. Service names must be DNS-1035 labels (a letter first), and the
    // StatefulSet controller labels every pod `controller-revision-hash=<statefulset>-<hash>`, the
    // hash being up to 10 characters; a label value is at most 63 characters, so a StatefulSet
    // name longer than 52 characters gets pods Kubernetes refuses to create. Hence:
    // - every cluster: `<name>` <= 52 (also covers `<name>-broker-999` = name + 11 <= 63);
    // - KRaft: `<name>-controller` <= 52, so `<name>` <= 41.
    // A name is immutable, so the rules run on creation only (`oldSelf.hasValue()` on any update):
    // an existing object is never made unwritable (status updates, finalizer removal) by them.
    validation = Rule::new(format!(
        "oldSelf.hasValue() || (self.metadata.name.size() <= {MAX_NAME_LENGTH} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))"
    )).optional_old_self(true).message(Message::Message(format!(
        "metadata.name must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit): it names the cluster's Services and StatefulSets, and the StatefulSet <name> labels its pods <name>-<revision hash of up to 10 characters>, which must fit in 63 characters"
    ))),
    validation = Rule::new(format!(
        "oldSelf.hasValue() || has(self.spec.zookeeperConnect) || self.metadata.name.size() <= {MAX_KRAFT_NAME_LENGTH}"
    )).optional_old_self(true).message(Message::Message(format!(
        "metadata.name of a KRaft cluster can be at most {MAX_KRAFT_NAME_LENGTH} characters: its controller StatefulSet <name>-controller labels its pods <name>-controller-<revision hash of up to 10 characters>, which must fit in 63 characters; choose a shorter name"
    )))
)]
#[x_kube(validation = Rule::new(
    "!has(self.topics) || self.topics.all(t, t.replicationFactor <= self.brokerCount)"
).message(
    "topics: every topic's replicationFactor must be at most brokerCount; lower the topic's replication factor or add brokers"
).field_path(".topics").reason(::kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new(
    "!has(self.kafkaOptions) || !has(self.kafkaOptions.minInsyncReplicas) || self.kafkaOptions.minInsyncReplicas <= self.brokerCount"
).message(
    "kafkaOptions.minInsyncReplicas is above brokerCount: no write with acks=all could succeed; lower minInsyncReplicas or add brokers"
).field_path(".kafkaOptions.minInsyncReplicas"))]
#[x_kube(validation = Rule::new(
    "!has(self.kafkaOptions) || !has(self.kafkaOptions.defaultReplicationFactor) || self.kafkaOptions.defaultReplicationFactor <= self.brokerCount"
).message(
    "kafkaOptions.defaultReplicationFactor is above brokerCount; lower it or add brokers"
).field_path(".kafkaOptions.defaultReplicationFactor"))]
#[x_kube(validation = Rule::new(
    "has(self.zookeeperConnect) == has(oldSelf.zookeeperConnect)"
).message(
    "zookeeperConnect cannot be added or removed on an existing cluster: moving between ZooKeeper and KRaft mode is a migration the operator does not perform"
).field_path(".zookeeperConnect"))]
#[x_kube(validation = Rule::new(
    "(has(self.storageClass) ? self.storageClass : '') == (has(oldSelf.storageClass) ? oldSelf.storageClass : '')"
).message(
    "storageClass cannot be changed on an existing cluster: broker volumes cannot move to another storage class in place"
).field_path(".storageClass"))]
#[x_kube(validation = Rule::new(format!(
    "self.?controllers.?replicas.orValue({0}) == oldSelf.?controllers.?replicas.orValue({0})",
    default_controller_replicas()
)).message(
    "controllers.replicas cannot be changed on an existing cluster: the KRaft controller quorum is static (every node's controller.quorum.voters lists each voter) and the operator cannot add or remove voters; keep the current value, or create a new cluster with the quorum size you want and move the topics to it"
).field_path(".controllers.replicas"))]
// A PVC-backed cluster's disk size is in its StatefulSets' volumeClaimTemplates, which
// Kubernetes does not let change; on emptyDir it is the pods' sizeLimit, changed by a restart.
// Absent means the operator's default; a quantity that does not parse is left to the field's
// own rule.
#[x_kube(validation = Rule::new(disk_space_unchanged("resources.diskSpace", DEFAULT_BROKER_DISK)).message(
    "resources.diskSpace cannot be changed on a cluster with persistent volumes (storageClass is not emptyDir): a StatefulSet's volumeClaimTemplates cannot be changed and this operator cannot resize volumes yet; keep diskSpace at its current value, and to grow the disks expand each broker's PersistentVolumeClaim (data-<cluster>-<n>) by hand if its StorageClass allows volume expansion"
).field_path(".resources.diskSpace"))]
#[x_kube(validation = Rule::new(disk_space_unchanged("controllers.resources.diskSpace", DEFAULT_CONTROLLER_DISK)).message(
    "controllers.resources.diskSpace cannot be changed on a cluster with persistent volumes (storageClass is not emptyDir): a StatefulSet's volumeClaimTemplates cannot be changed and this operator cannot resize volumes yet; keep diskSpace at its current value, and to grow the disks expand each controller's PersistentVolumeClaim (data-<cluster>-controller-<n>) by hand if its StorageClass allows volume expansion"
).field_path(".controllers.resources.diskSpace"))]
#[x_kube(validation = Rule::new(
    "!has(self.zookeeperConnect) || !has(self.clusterId)"
).message(
    "clusterId applies to KRaft clusters only: in ZooKeeper mode the cluster id is kept in ZooKeeper"
).field_path(".clusterId"))]
#[x_kube(validation = Rule::new(
    "!has(self.zookeeperConnect) || !has(self.controllers)"
).message(
    "controllers configures the KRaft quorum and cannot be used with zookeeperConnect (ZooKeeper mode)"
).field_path(".controllers"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Number of brokers. Raising it adds brokers (and rebalances onto them when
    /// `rebalance.onScaleUp` is on); lowering it drains the highest-numbered brokers by partition
    /// reassignment before they are removed.
    #[schemars(range(min = 1, max = 1000))]
    pub broker_count: i32,

    /// Kafka container image. Default: the official `apache/kafka` image of the Kafka version this
    /// operator is tested with (a 3.9 image in ZooKeeper mode). Official `apache/kafka` and
    /// `confluentinc/cp-kafka` images are supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(IMAGE_RULE).message("image must be an image reference such as apache/kafka:4.1.1 or registry:5000/kafka@sha256:<digest>: letters, digits and . _ - / : @ + only"))]
    pub image: Option<String>,

    /// ZooKeeper connection string (`host:port[,host:port][/chroot]`). When set, the brokers run
    /// in ZooKeeper mode (needs a Kafka 3.x image); when absent, in KRaft mode with a dedicated
    /// controller quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9.-]+(:[0-9]+)?(,[A-Za-z0-9.-]+(:[0-9]+)?)*(/[A-Za-z0-9._/-]*)?$')").message("zookeeperConnect must look like host:port[,host:port][/chroot]"))]
    pub zookeeper_connect: Option<String>,

    /// KRaft only: the cluster id new volumes are formatted with and existing ones must carry.
    /// Absent, the operator chooses one when the cluster is created (`status.clusterId`). Set
    /// it to the id of volumes kept from an earlier cluster of the same name to start from
    /// their data (a pod that refuses such a volume prints its id); the operator takes it only
    /// while no running Kafka cluster reports another id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_-]{22}$')").message("clusterId must be a Kafka cluster id: 22 characters of base64url (letters, digits, '-' and '_'), as in the cluster.id line of a volume's meta.properties"))]
    pub cluster_id: Option<String>,

    /// Broker configuration.
    #[serde(default)]
    pub kafka_options: KafkaOptions,

    /// Topics the operator creates and keeps in shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub topics: Vec<TopicSpec>,

    /// Delete a topic from Kafka, with its data, when it is removed from `topics`. Off by
    /// default: a line gone from a manifest is not reason enough to lose data. Only topics the
    /// operator manages (listed in `status.topics`) are ever deleted.
    #[serde(default)]
    pub delete_removed_topics: bool,

    /// Share of leaders a broker may be off its preferred count before the controller moves
    /// leadership back (`leader.imbalance.per.broker.percentage` = ratio x 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("leaderImbalanceRatio must be in (0, 1], e.g. 0.1 for 10%"))]
    pub leader_imbalance_ratio: Option<f64>,

    /// Seconds between leader imbalance checks (`leader.imbalance.check.interval.seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub leader_imbalance_interval: Option<i32>,

    /// `emptyDir` for ephemeral broker storage; otherwise the storage class of the brokers'
    /// PersistentVolumeClaims (absent: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == 'emptyDir' || self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("storageClass must be emptyDir or the name of a StorageClass"))]
    pub storage_class: Option<String>,

    /// CPU, memory (the JVM heap is derived from it) and disk per broker.
    #[serde(default)]
    pub resources: BrokerResources,

    /// Seconds a broker gets to shut down cleanly, and how long a broker pod stays on a node
    /// that is not ready or unreachable before Kubernetes evicts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub minimum_grace_period: Option<i64>,

    /// Run a Prometheus JMX exporter next to each broker.
    #[serde(default)]
    pub jmx_sidecar: bool,

    /// JMX exporter image and rules, used when `jmxSidecar` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jmx_exporter: Option<JmxExporterSpec>,

    /// Node labels broker and controller pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 50, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    // They go to the pods' nodeSelector, which Kubernetes validates as labels: a bad one would
    // make every StatefulSet update fail.
    #[x_kube(validation = Rule::new(
        "self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!k.contains('/') || k.indexOf('/') <= 253))"
    ).message(
        "nodeSelector keys must be label keys such as topology.kubernetes.io/zone: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    ))]
    #[x_kube(validation = Rule::new(
        "self.all(k, self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'))"
    ).message(
        "nodeSelector values must be label values: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    ))]
    pub node_selector: BTreeMap<String, String>,

    /// The KRaft controller quorum (KRaft mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers: Option<ControllerSpec>,

    /// Rack awareness: each broker's `broker.rack` is the value of this label on the node its
    /// pod runs on, brokers and controllers spread evenly over its values, and partition moves
    /// keep every partition's replicas in as many racks as they can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,

    /// How partitions are moved when brokers are added or removed.
    #[serde(default)]
    pub rebalance: RebalanceSpec,

    /// What happens to broker volumes when brokers are removed or the cluster is deleted.
    #[serde(default)]
    pub pvc_retention: PvcRetention,

    /// Type of the per-broker Services (`<cluster>-broker-<n>`).
    #[serde(default)]
    pub broker_service_type: BrokerServiceType,
}

/// CEL: the quantity at `path` (e.g. `controllers.resources.diskSpace`) of `obj` (`self` or
/// `oldSelf`), or `default` when it or any field on the way is absent. (`has()` and a ternary
/// rather than optional chaining with `orValue`: the API server's cost estimate keeps the
/// field's maxLength through a ternary, not through `orValue`, and would refuse the rule.)
fn cel_quantity_or(obj: &str, path: &str, default: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let present = (1..=parts.len())
        .map(|n| format!("has({obj}.{})", parts[..n].join(".")))
        .collect::<Vec<_>>()
        .join(" && ");
    format!("({present} ? {obj}.{path} : '{default}')")
}

/// CEL transition rule: on PVC-backed storage (anything but `storageClass: emptyDir`) the disk
/// size at `path` keeps its quantity (absent meaning `default`). A value that is not a quantity
/// is left to the field's own rule.
fn disk_space_unchanged(path: &str, default: &str) -> String {
    let new = cel_quantity_or("self", path, default);
    let old = cel_quantity_or("oldSelf", path, default);
    format!(
        "(has(self.storageClass) && self.storageClass == 'emptyDir') || !isQuantity({new}) || !isQuantity({old}) || quantity({new}).compareTo(quantity({old})) == 0"
    )
}

/// Broker options. The common ones are typed; `config` takes further `server.properties` keys.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOptions {
    /// `log.retention.hours`; -1 keeps data forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == -1 || self >= 1").message("logRetentionHours must be -1 (keep forever) or at least 1"))]
    pub log_retention_hours: Option<i32>,
    /// `log.retention.bytes` per partition; -1 for no size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == -1 || self >= 1").message("logRetentionBytes must be -1 (no limit) or positive"))]
    pub log_retention_bytes: Option<i64>,
    /// `log.segment.bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 14))]
    pub log_segment_bytes: Option<i32>,
    /// `auto.create.topics.enable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_topics: Option<bool>,
    /// `compression.type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<CompressionType>,
    /// `delete.topic.enable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_topic_enable: Option<bool>,
    /// `num.partitions`: partitions of auto-created topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_partitions: Option<i32>,
    /// `default.replication.factor` of auto-created topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub default_replication_factor: Option<i32>,
    /// `min.insync.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_insync_replicas: Option<i32>,
    /// `message.max.bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub message_max_bytes: Option<i32>,
    /// `unclean.leader.election.enable`. Leave off unless losing acknowledged data is acceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclean_leader_election: Option<bool>,
    /// `auto.leader.rebalance.enable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_leader_rebalance: Option<bool>,
    /// `num.network.threads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_network_threads: Option<i32>,
    /// `num.io.threads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_io_threads: Option<i32>,
    /// `num.replica.fetchers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_replica_fetchers: Option<i32>,
    /// Further `server.properties` keys, applied after the typed options. Keys the operator
    /// owns (identity, listeners, quorum, storage paths) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(
        "self.all(k, !(k in ['node.id', 'broker.id', 'process.roles', 'listeners', 'advertised.listeners', 'listener.security.protocol.map', 'inter.broker.listener.name', 'controller.listener.names', 'controller.quorum.voters', 'controller.quorum.bootstrap.servers', 'log.dirs', 'log.dir', 'metadata.log.dir', 'zookeeper.connect', 'broker.rack', 'cluster.id']))"
    ).message(
        "kafkaOptions.config cannot set keys the operator owns (node.id, broker.id, process.roles, listeners, advertised.listeners, listener.security.protocol.map, inter.broker.listener.name, controller.listener.names, controller.quorum.voters, controller.quorum.bootstrap.servers, log.dirs, log.dir, metadata.log.dir, zookeeper.connect, broker.rack, cluster.id); remove them"
    ))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-z0-9][a-z0-9._-]*$'))").message("kafkaOptions.config keys must be Kafka property names such as log.cleaner.threads"))]
    // Each value is one line of server.properties. The rendering escapes whatever it gets, but a
    // control character in a Kafka setting is a mistake (a pasted newline, a tab), not a value.
    #[x_kube(validation = Rule::new(NO_CONTROL_CHARACTERS_IN_VALUES).message("kafkaOptions.config values must not contain control characters (newlines, carriage returns, tabs, ...): each value is a single server.properties value"))]
    #[schemars(extend("maxProperties" = 200, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub config: BTreeMap<String, String>,
}

/// CEL: no value of a string map contains a control character (Unicode category Cc: U+0000 to
/// U+001F, U+007F to U+009F). CEL's `matches` is an unanchored RE2 search.
const NO_CONTROL_CHARACTERS_IN_VALUES: &str = r"self.all(k, !self[k].matches('\\p{Cc}'))";

/// CEL: the characters an image reference (`[registry[:port]/]repository[:tag][@digest]`) is
/// made of; a newline or space in it would reach the pod spec.
const IMAGE_RULE: &str = r"self.matches('^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$')";

/// `compression.type` of the brokers.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// A topic the operator manages.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name: letters, digits, `.`, `_` and `-`, at most 249 characters.
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z0-9._-]+$') && self != '.' && self != '..'").message("topic names may only contain letters, digits, '.', '_' and '-', and cannot be '.' or '..'"))]
    #[schemars(length(min = 1, max = 249))]
    pub name: String,
    /// Number of partitions. Can grow; Kafka cannot shrink a topic's partitions.
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// Replicas of each partition; a change is carried out by partition reassignment.
    #[schemars(range(min = 1, max = 1000))]
    pub replication_factor: i32,
    /// Topic configuration (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // No control characters in values: an OpenAPI pattern (RE2 in the API server), since the
    // CEL rule of `kafkaOptions.config`, run for each of 200 topics, would exceed the API
    // server's cost budget. The refusal names the value (`spec.topics[0].config.retention.ms`).
    #[schemars(extend("maxProperties" = 100, "additionalProperties" = {"type": "string", "maxLength": 4096, "pattern": "^[^\\p{Cc}]*$"}))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-z0-9][a-z0-9._-]*$'))").message("topics[].config keys must be Kafka topic config names such as retention.ms"))]
    pub config: BTreeMap<String, String>,
}

/// Resources of one broker, in Kubernetes quantities.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerResources {
    /// CPU request and limit, e.g. `"1"` or `"500m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Bounded so the API server can bound the cost of the CEL rules parsing it.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("resources.cpu must be a positive quantity such as \"1\" or \"500m\""))]
    pub cpu: Option<String>,
    /// Memory request and limit, e.g. `"4Gi"`; the JVM heap is half of it, at most 6Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Bounded so the API server can bound the cost of the CEL rules parsing it.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('512Mi')) >= 0").message("resources.memory must be a quantity of at least 512Mi, such as \"4Gi\""))]
    pub memory: Option<String>,
    /// Size of the broker's volume, e.g. `"50G"` (a size limit with `storageClass: emptyDir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Bounded so the API server can bound the cost of the CEL rules parsing it.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('1Mi')) >= 0").message("resources.diskSpace must be a quantity of at least 1Mi, such as \"50Gi\""))]
    pub disk_space: Option<String>,
}

/// The KRaft controller quorum.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSpec {
    /// Controllers in the quorum; odd, so a majority survives the loss of (replicas-1)/2.
    #[serde(default = "default_controller_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 9 && self % 2 == 1").message("controllers.replicas must be odd and between 1 and 9 (3 tolerates one failure, 5 two)"))]
    pub replicas: i32,
    /// CPU, memory and disk per controller.
    #[serde(default)]
    pub resources: BrokerResources,
}

impl Default for ControllerSpec {
    fn default() -> Self {
        ControllerSpec {
            replicas: default_controller_replicas(),
            resources: BrokerResources::default(),
        }
    }
}

fn default_controller_replicas() -> i32 {
    3
}

/// Where the brokers' racks come from.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// The node label whose value is a broker's rack, e.g. `topology.kubernetes.io/zone`.
    #[schemars(length(max = 317))]
    #[x_kube(validation = Rule::new(
        "self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!self.contains('/') || self.indexOf('/') <= 253)"
    ).message(
        "rack.topologyKey must be a node label key such as topology.kubernetes.io/zone: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    ))]
    pub topology_key: String,
}

/// How partitions move when brokers are added or removed.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.stuckAfterSeconds) || self.stuckAfterSeconds.all(k, k in ['default', 'WaitingForBrokers', 'Throttling', 'Moving', 'Verifying', 'Shrinking', 'Unregistering', 'CleaningUp', 'RollingRestart'])"
).message("rebalance.stuckAfterSeconds takes the keys default, WaitingForBrokers, Throttling, Moving, Verifying, Shrinking, Unregistering, CleaningUp and RollingRestart"))]
pub struct RebalanceSpec {
    /// Move partitions onto new brokers after a scale-up.
    #[serde(default = "default_true")]
    pub on_scale_up: bool,
    /// Replication throttle during moves, bytes per second per broker
    /// (`leader/follower.replication.throttled.rate`).
    #[serde(default = "default_throttle")]
    #[schemars(range(min = 1024))]
    pub throttle_bytes_per_second: i64,
    /// Most partition moves in flight at once that involve any one broker.
    #[serde(default = "default_moves_per_broker")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_moves_per_broker: i32,
    /// Seconds a step of an operation (a key per step, or `default` for all;
    /// `RollingRestart` for a roll between two restarts) may go without progress before the
    /// cluster is reported `Stuck` (a condition and a Warning event saying what it waits for).
    /// Nothing is forced when it is: the operator keeps waiting safely. Default 1800.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 9, "additionalProperties" = {"type": "integer", "format": "int64", "minimum": 1}))]
    pub stuck_after_seconds: BTreeMap<String, i64>,
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        RebalanceSpec {
            on_scale_up: true,
            throttle_bytes_per_second: default_throttle(),
            max_moves_per_broker: default_moves_per_broker(),
            stuck_after_seconds: BTreeMap::new(),
        }
    }
}

/// Seconds without progress after which a step counts as stuck, unless the spec says.
pub const DEFAULT_STUCK_AFTER_SECONDS: i64 = 1800;

impl RebalanceSpec {
    /// How long `step` may go without progress before it is reported stuck.
    pub fn stuck_after(&self, step: &str) -> std::time::Duration {
        let seconds = self
            .stuck_after_seconds
            .get(step)
            .or_else(|| self.stuck_after_seconds.get("default"))
            .copied()
            .unwrap_or(DEFAULT_STUCK_AFTER_SECONDS);
        std::time::Duration::from_secs(seconds.max(1) as u64)
    }
}

fn default_true() -> bool {
    true
}

fn default_throttle() -> i64 {
    50 * 1024 * 1024
}

fn default_moves_per_broker() -> i32 {
    5
}

/// What happens to broker volumes.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PvcRetention {
    /// Volumes of brokers removed by a scale-down, after their data was moved away. `Delete`
    /// (default) keeps a later scale-up from attaching a stale log directory.
    #[serde(default = "default_when_scaled")]
    pub when_scaled: RetentionPolicy,
    /// Volumes when the KafkaCluster is deleted. `Retain` (default) keeps the data.
    #[serde(default = "default_when_deleted")]
    pub when_deleted: RetentionPolicy,
}

impl Default for PvcRetention {
    fn default() -> Self {
        PvcRetention {
            when_scaled: default_when_scaled(),
            when_deleted: default_when_deleted(),
        }
    }
}

fn default_when_scaled() -> RetentionPolicy {
    RetentionPolicy::Delete
}

fn default_when_deleted() -> RetentionPolicy {
    RetentionPolicy::Retain
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionPolicy {
    Retain,
    Delete,
}

#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum BrokerServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl BrokerServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerServiceType::ClusterIP => "ClusterIP",
            BrokerServiceType::NodePort => "NodePort",
            BrokerServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The Prometheus JMX exporter sidecar.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JmxExporterSpec {
    /// Image of the standalone JMX exporter (`jmx_prometheus_standalone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(IMAGE_RULE).message("jmxExporter.image must be an image reference such as bitnamilegacy/jmx-exporter:1.1.0: letters, digits and . _ - / : @ + only"))]
    pub image: Option<String>,
    /// Exporter rules (YAML `rules:` list); default: Kafka's broker, request and log metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub rules: Option<String>,
}
