//! From the raw `KafkaCluster` to a validated model the builders work from.
//!
//! The CRD schema refuses most bad specs at `kubectl apply`. What it cannot know (which Kafka an
//! image runs, what a quantity means for the JVM heap) is checked here; the result is either a
//! [`Cluster`] with every default resolved, or an error that goes to the status, never a panic.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::quantity::parse_bytes;
use super::spec::{
    BrokerResources, BrokerServiceType, KafkaCluster, PvcRetention, RebalanceSpec, TopicSpec,
};
use super::{DEFAULT_IMAGE, DEFAULT_ZOOKEEPER_MODE_IMAGE};

/// Node ids of KRaft controllers start here, so they never collide with broker ids (which are
/// the broker pods' ordinals) and `brokerCount` keeps meaning broker ids `0..brokerCount`.
pub const CONTROLLER_NODE_ID_BASE: i32 = 9000;

const DEFAULT_BROKER_MEMORY: &str = "2Gi";
const DEFAULT_BROKER_CPU: &str = "500m";
pub(crate) const DEFAULT_BROKER_DISK: &str = "10Gi";
const DEFAULT_CONTROLLER_MEMORY: &str = "1Gi";
const DEFAULT_CONTROLLER_CPU: &str = "250m";
pub(crate) const DEFAULT_CONTROLLER_DISK: &str = "2Gi";
const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 120;
const MAX_HEAP_BYTES: u64 = 6 << 30;
const MIN_HEAP_BYTES: u64 = 256 << 20;
/// The last Confluent Platform release with ZooKeeper mode (7.9, Kafka 3.9): what an unpinned
/// `confluentinc/cp-kafka` image runs with `zookeeperConnect`.
pub const CONFLUENT_ZOOKEEPER_MODE_TAG: &str = "7.9.11";
pub const DEFAULT_JMX_EXPORTER_IMAGE: &str = "bitnamilegacy/jmx-exporter:1.1.0";

/// Longest cluster name: the broker StatefulSet is `<name>` and the StatefulSet controller labels
/// its pods `controller-revision-hash=<statefulset>-<hash of up to 10 characters>`, a label value
/// of at most 63 characters. (`<name>-broker-999`, the longest Service, fits as well.)
pub const MAX_NAME_LENGTH: usize = 52;
/// Longest name of a KRaft cluster: its controller StatefulSet is `<name>-controller`, which
/// must fit [`MAX_NAME_LENGTH`] itself.
pub const MAX_KRAFT_NAME_LENGTH: usize = MAX_NAME_LENGTH - "-controller".len();

/// A spec the operator can act on, with every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub namespace: String,
    pub uid: Option<String>,
    /// The value of the restart annotation, carried into the pod templates: a new value rolls
    /// the pods.
    pub restart: Option<String>,
    pub image: String,
    pub image_flavor: ImageFlavor,
    pub broker_count: i32,
    pub mode: Mode,
    /// The KRaft cluster id the spec asks for (adopting kept volumes), if any.
    pub cluster_id: Option<String>,
    pub broker: NodeResources,
    pub storage: Storage,
    /// Broker settings from the spec, as `server.properties` keys (typed options first, then
    /// the free `config` map, which wins).
    pub broker_settings: BTreeMap<String, String>,
    pub topics: Vec<TopicSpec>,
    /// Delete managed topics the spec dropped.
    pub delete_removed_topics: bool,
    pub grace_period_seconds: i64,
    pub jmx_exporter: Option<JmxExporter>,
    pub node_selector: BTreeMap<String, String>,
    /// The node label whose value is a broker's `broker.rack`, when rack awareness is on.
    pub rack_topology_key: Option<String>,
    pub rebalance: RebalanceSpec,
    pub pvc_retention: PvcRetention,
    pub broker_service_type: BrokerServiceType,
    /// Things that work but that an operator should hear about (as Warning events).
    pub warnings: Vec<SpecWarning>,
}

/// How the brokers keep their metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// A dedicated KRaft controller quorum.
    Kraft {
        controllers: i32,
        resources: NodeResources,
    },
    /// An external ZooKeeper ensemble.
    ZooKeeper { connect: String },
}

/// Where Kafka lives inside an image; the start script finds its tools by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFlavor {
    /// `apache/kafka`: `/opt/kafka/bin/*.sh`.
    Apache,
    /// `confluentinc/cp-kafka`: `/usr/bin/kafka-*`.
    Confluent,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeResources {
    pub cpu: String,
    pub cpu_limit: Option<String>,
    pub memory: String,
    pub heap_bytes: u64,
    pub disk: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// `storageClass: emptyDir`: data lives as long as the pod.
    Ephemeral,
    /// PersistentVolumeClaims of this class (None: the cluster's default class).
    Persistent { class: Option<String> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct JmxExporter {
    pub image: String,
    pub rules: Option<String>,
}

/// Something in a spec that works but deserves attention.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecWarning {
    /// Event reason, e.g. `UnpinnedImage`.
    pub reason: &'static str,
    pub message: String,
}

/// Why a spec cannot be acted on, with what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        SpecError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl Cluster {
    pub fn is_kraft(&self) -> bool {
        matches!(self.mode, Mode::Kraft { .. })
    }

    pub fn controller_count(&self) -> i32 {
        match self.mode {
            Mode::Kraft { controllers, .. } => controllers,
            Mode::ZooKeeper { .. } => 0,
        }
    }
}

/// Validates a KafkaCluster and resolves its defaults.
pub fn validate(kc: &KafkaCluster) -> Result<Cluster, SpecError> {
    let spec = &kc.spec;
    let mut warnings = Vec::new();
    let namespace = kc.namespace().unwrap_or_else(|| "default".to_string());

    // The CRD refuses such names at creation; a KafkaCluster created before that rule existed
    // is reported rather than half-built.
    check_name(&kc.name_any(), spec.zookeeper_connect.is_none())?;
    if spec.broker_count < 1 {
        return Err(SpecError::new("brokerCount", "must be at least 1"));
    }
    for topic in &spec.topics {
        if topic.replication_factor > spec.broker_count {
            return Err(SpecError::new(
                "topics",
                format!(
                    "replicationFactor {} of topic {} is above brokerCount {}; lower the replication factor or add brokers",
                    topic.replication_factor, topic.name, spec.broker_count
                ),
            ));
        }
    }

    let zookeeper = spec.zookeeper_connect.clone().filter(|s| !s.is_empty());
    let image = spec.image.clone().unwrap_or_else(|| {
        if zookeeper.is_some() {
            DEFAULT_ZOOKEEPER_MODE_IMAGE.to_string()
        } else {
            DEFAULT_IMAGE.to_string()
        }
    });
    let image_flavor = if image_repository(&image).ends_with("cp-kafka")
        || image_repository(&image).ends_with("cp-server")
    {
        ImageFlavor::Confluent
    } else {
        ImageFlavor::Apache
    };
    let image = resolve_image(image, image_flavor, zookeeper.is_some(), &mut warnings)?;

    let broker = node_resources(
        "resources",
        &spec.resources,
        DEFAULT_BROKER_CPU,
        DEFAULT_BROKER_MEMORY,
        DEFAULT_BROKER_DISK,
    )?;
    let mode = match zookeeper {
        Some(connect) => Mode::ZooKeeper { connect },
        None => {
            let controllers = spec.controllers.clone().unwrap_or_default();
            if controllers.replicas < 1 || controllers.replicas % 2 == 0 {
                return Err(SpecError::new(
                    "controllers.replicas",
                    "must be odd and at least 1 (3 tolerates one failure, 5 two)",
                ));
            }
            Mode::Kraft {
                controllers: controllers.replicas,
                resources: node_resources(
                    "controllers.resources",
                    &controllers.resources,
                    DEFAULT_CONTROLLER_CPU,
                    DEFAULT_CONTROLLER_MEMORY,
                    DEFAULT_CONTROLLER_DISK,
                )?,
            }
        }
    };

    let cluster_id = match (&spec.cluster_id, &mode) {
        (Some(_), Mode::ZooKeeper { .. }) => {
            return Err(SpecError::new(
                "clusterId",
                "applies to KRaft clusters only: in ZooKeeper mode the cluster id is kept in ZooKeeper",
            ));
        }
        (Some(id), _) if !is_cluster_id(id) => {
            return Err(SpecError::new(
                "clusterId",
                "must be a Kafka cluster id: 22 characters of base64url, as in the cluster.id line of a volume's meta.properties",
            ));
        }
        (id, _) => id.clone(),
    };

    let storage = match spec.storage_class.as_deref() {
        Some("emptyDir") => Storage::Ephemeral,
        Some("") | None => Storage::Persistent { class: None },
        Some(class) => Storage::Persistent {
            class: Some(class.to_string()),
        },
    };

    let jmx_exporter = spec.jmx_sidecar.then(|| {
        let cfg = spec.jmx_exporter.clone().unwrap_or_default();
        JmxExporter {
            image: cfg
                .image
                .unwrap_or_else(|| DEFAULT_JMX_EXPORTER_IMAGE.to_string()),
            rules: cfg.rules,
        }
    });

    if image.ends_with(":latest") || !image.contains(':') {
        warnings.push(SpecWarning {
            reason: "UnpinnedImage",
            message: format!(
                "image {image} is not pinned to a version: a pod restart can silently change the Kafka version; pin a tag"
            ),
        });
    }

    Ok(Cluster {
        name: kc.name_any(),
        namespace,
        uid: kc.metadata.uid.clone(),
        restart: kc
            .annotations()
            .get(crate::resources::names::RESTART_ANNOTATION)
            .cloned(),
        image,
        image_flavor,
        broker_count: spec.broker_count,
        mode,
        cluster_id,
        broker,
        storage,
        broker_settings: broker_settings(kc),
        topics: spec.topics.clone(),
        delete_removed_topics: spec.delete_removed_topics,
        grace_period_seconds: spec
            .minimum_grace_period
            .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS),
        jmx_exporter,
        node_selector: spec.node_selector.clone(),
        rack_topology_key: spec.rack.as_ref().map(|r| r.topology_key.clone()),
        rebalance: spec.rebalance.clone(),
        pvc_retention: spec.pvc_retention.clone(),
        broker_service_type: spec.broker_service_type,
        warnings,
    })
}

/// Every object name derived from the cluster's is valid: a DNS-1035 label (Service names must
/// be), short enough for the StatefulSets' pod labels.
fn check_name(name: &str, kraft: bool) -> Result<(), SpecError> {
    let dns1035 = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let max = if kraft {
        MAX_KRAFT_NAME_LENGTH
    } else {
        MAX_NAME_LENGTH
    };
    if !dns1035 || name.len() > max {
        return Err(SpecError::new(
            "metadata.name",
            format!(
                "{name:?} cannot name the cluster's objects: it must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit) of at most {max} characters{}; recreate the cluster under a shorter name",
                if kraft { " in KRaft mode" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// The image reference without tag or digest.
fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

/// The leading version number of an image tag (`4.1.1` -> 4, `7.9.0-1-ubi8` -> 7).
fn image_major_version(image: &str) -> Option<u32> {
    let repo = image_repository(image);
    let tag = image.get(repo.len() + 1..)?.split('@').next()?;
    tag.split(['.', '-']).next()?.parse().ok()
}

/// The image the pods run: the spec's, or for an unpinned Confluent image in ZooKeeper mode the
/// last Confluent Platform line that has ZooKeeper (its `latest` is Kafka 4, which cannot run
/// the spec as written). Refuses images that cannot run the spec's mode.
fn resolve_image(
    image: String,
    flavor: ImageFlavor,
    zookeeper: bool,
    warnings: &mut Vec<SpecWarning>,
) -> Result<String, SpecError> {
    let major = image_major_version(&image);
    // Kafka 4 dropped ZooKeeper; Confluent Platform 8 ships Kafka 4.
    let kafka4 = match (flavor, major) {
        (ImageFlavor::Apache, Some(m)) => m >= 4,
        (ImageFlavor::Confluent, Some(m)) => m >= 8,
        (_, None) => false,
    };
    if zookeeper && kafka4 {
        return Err(SpecError::new(
            "image",
            format!(
                "{image} runs Kafka 4 or newer, which has no ZooKeeper mode; with zookeeperConnect use a Kafka 3.x image such as {DEFAULT_ZOOKEEPER_MODE_IMAGE} or {}:{CONFLUENT_ZOOKEEPER_MODE_TAG}, or remove zookeeperConnect to run KRaft",
                image_repository(&image)
            ),
        ));
    }
    if zookeeper && major.is_none() && flavor == ImageFlavor::Confluent {
        if image.contains('@') {
            // Pinned by digest: run exactly that, whatever version it is.
            warnings.push(SpecWarning {
                reason: "ImageMayLackZooKeeper",
                message: format!(
                    "{image}: Confluent Platform 8 and newer run Kafka 4 without ZooKeeper support; with zookeeperConnect the digest must be of a 7.x image"
                ),
            });
            return Ok(image);
        }
        let resolved = format!(
            "{}:{CONFLUENT_ZOOKEEPER_MODE_TAG}",
            image_repository(&image)
        );
        warnings.push(SpecWarning {
            reason: "ImageResolved",
            message: format!(
                "{image} is Confluent Platform 8 or newer (Kafka 4, no ZooKeeper mode), which cannot run zookeeperConnect; the brokers run {resolved}, the last Confluent Platform release with ZooKeeper. Pin a 7.x tag to choose another, or remove zookeeperConnect and the image to run KRaft"
            ),
        });
        return Ok(resolved);
    }
    Ok(image)
}

fn node_resources(
    field: &str,
    res: &BrokerResources,
    default_cpu: &str,
    default_memory: &str,
    default_disk: &str,
) -> Result<NodeResources, SpecError> {
    let memory = res.memory.clone().unwrap_or_else(|| default_memory.into());
    let memory_bytes =
        parse_bytes(&memory).map_err(|e| SpecError::new(&format!("{field}.memory"), e))?;
    let heap_bytes = (memory_bytes / 2).clamp(MIN_HEAP_BYTES, MAX_HEAP_BYTES);
    if heap_bytes + (256 << 20) > memory_bytes {
        return Err(SpecError::new(
            &format!("{field}.memory"),
            format!(
                "{memory} leaves no room for a Kafka heap of at least 256Mi plus page cache; give at least 512Mi"
            ),
        ));
    }
    let disk = res
        .disk_space
        .clone()
        .unwrap_or_else(|| default_disk.into());
    parse_bytes(&disk).map_err(|e| SpecError::new(&format!("{field}.diskSpace"), e))?;
    Ok(NodeResources {
        cpu: res.cpu.clone().unwrap_or_else(|| default_cpu.into()),
        cpu_limit: res.cpu.clone(),
        memory,
        heap_bytes,
        disk,
    })
}

/// The spec's broker settings as `server.properties` keys.
fn broker_settings(kc: &KafkaCluster) -> BTreeMap<String, String> {
    let spec = &kc.spec;
    let o = &spec.kafka_options;
    let mut props = BTreeMap::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            props.insert(key.to_string(), v);
        }
    };
    set(
        "log.retention.hours",
        o.log_retention_hours.map(|v| v.to_string()),
    );
    set(
        "log.retention.bytes",
        o.log_retention_bytes.map(|v| v.to_string()),
    );
    set(
        "log.segment.bytes",
        o.log_segment_bytes.map(|v| v.to_string()),
    );
    set(
        "auto.create.topics.enable",
        o.auto_create_topics.map(|v| v.to_string()),
    );
    set(
        "compression.type",
        o.compression_type.map(|v| v.as_str().to_string()),
    );
    set(
        "delete.topic.enable",
        o.delete_topic_enable.map(|v| v.to_string()),
    );
    set("num.partitions", o.num_partitions.map(|v| v.to_string()));
    set(
        "default.replication.factor",
        o.default_replication_factor.map(|v| v.to_string()),
    );
    set(
        "min.insync.replicas",
        o.min_insync_replicas.map(|v| v.to_string()),
    );
    set(
        "message.max.bytes",
        o.message_max_bytes.map(|v| v.to_string()),
    );
    set(
        "unclean.leader.election.enable",
        o.unclean_leader_election.map(|v| v.to_string()),
    );
    set(
        "auto.leader.rebalance.enable",
        o.auto_leader_rebalance.map(|v| v.to_string()),
    );
    set(
        "num.network.threads",
        o.num_network_threads.map(|v| v.to_string()),
    );
    set("num.io.threads", o.num_io_threads.map(|v| v.to_string()));
    set(
        "num.replica.fetchers",
        o.num_replica_fetchers.map(|v| v.to_string()),
    );
    set(
        "leader.imbalance.per.broker.percentage",
        spec.leader_imbalance_ratio
            .map(|r| ((r * 100.0).round() as i64).max(1).to_string()),
    );
    set(
        "leader.imbalance.check.interval.seconds",
        spec.leader_imbalance_interval.map(|v| v.to_string()),
    );
    for (k, v) in &o.config {
        props.insert(k.clone(), v.clone());
    }
    props
}

/// Whether `id` looks like a Kafka cluster id: 16 bytes in unpadded base64url.
fn is_cluster_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::spec::KafkaClusterSpec;

    fn cluster(yaml: &str) -> KafkaCluster {
        let spec: KafkaClusterSpec = serde_yaml::from_str(yaml).unwrap();
        let mut kc = KafkaCluster::new("c", spec);
        kc.metadata.namespace = Some("ns".into());
        kc
    }

    #[test]
    fn defaults_to_kraft_with_the_pinned_image() {
        let c = validate(&cluster("brokerCount: 3")).unwrap();
        assert_eq!(c.image, DEFAULT_IMAGE);
        assert_eq!(
            c.mode,
            Mode::Kraft {
                controllers: 3,
                resources: c.mode_resources().clone()
            }
        );
        assert_eq!(c.broker.heap_bytes, 1 << 30);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn a_cluster_id_to_adopt_must_be_kafkas_and_kraft() {
        let c = validate(&cluster(
            "brokerCount: 1\nclusterId: Q2x1c3RlckJlZm9yZU5vdw",
        ))
        .unwrap();
        assert_eq!(c.cluster_id.as_deref(), Some("Q2x1c3RlckJlZm9yZU5vdw"));
        let e = validate(&cluster("brokerCount: 1\nclusterId: short")).unwrap_err();
        assert_eq!(e.field, "clusterId");
        let e = validate(&cluster(
            "brokerCount: 1\nzookeeperConnect: zk:2181\nclusterId: Q2x1c3RlckJlZm9yZU5vdw",
        ))
        .unwrap_err();
        assert!(e.message.contains("KRaft clusters only"), "{e}");
    }

    #[test]
    fn zookeeper_mode_defaults_to_a_3x_image() {
        let c = validate(&cluster("brokerCount: 1\nzookeeperConnect: zk:2181")).unwrap();
        assert_eq!(c.image, DEFAULT_ZOOKEEPER_MODE_IMAGE);
        assert!(!c.is_kraft());
    }

    #[test]
    fn zookeeper_mode_refuses_kafka_4_images() {
        let err = validate(&cluster(
            "brokerCount: 1\nzookeeperConnect: zk:2181\nimage: apache/kafka:4.1.1",
        ))
        .unwrap_err();
        assert_eq!(err.field, "image");
        assert!(err.message.contains("no ZooKeeper mode"), "{err}");
        let err = validate(&cluster(
            "brokerCount: 1\nzookeeperConnect: zk:2181\nimage: confluentinc/cp-kafka:8.0.0",
        ))
        .unwrap_err();
        assert_eq!(err.field, "image");
    }

    /// The images the testbed builds are the ones the operator renders by default.
    #[test]
    fn the_testbed_pins_the_versions_the_operator_defaults_to() {
        let pins: BTreeMap<&str, &str> = include_str!("../../hack/versions.sh")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        assert_eq!(
            format!("apache/kafka:{}", pins["KAFKA_VERSION"]),
            DEFAULT_IMAGE
        );
        assert_eq!(
            format!("apache/kafka:{}", pins["KAFKA_ZK_VERSION"]),
            DEFAULT_ZOOKEEPER_MODE_IMAGE
        );
        assert_eq!(pins["CP_ZK_TAG"], CONFLUENT_ZOOKEEPER_MODE_TAG);
    }

    #[test]
    fn unpinned_confluent_image_in_zookeeper_mode_runs_the_last_release_with_zookeeper() {
        for image in [
            "confluentinc/cp-kafka:latest",
            "confluentinc/cp-kafka",
            "registry.example:5000/confluentinc/cp-kafka:latest",
        ] {
            let c = validate(&cluster(&format!(
                "brokerCount: 1\nzookeeperConnect: zk:2181\nimage: {image}"
            )))
            .unwrap();
            assert_eq!(c.image_flavor, ImageFlavor::Confluent);
            let repository = image_repository(image);
            assert_eq!(c.image, format!("{repository}:7.9.11"));
            let reasons: Vec<_> = c.warnings.iter().map(|w| w.reason).collect();
            assert_eq!(reasons, ["ImageResolved"], "{image}");
            assert!(
                c.warnings[0].message.contains(&c.image),
                "{}",
                c.warnings[0].message
            );
        }
        // In KRaft mode `latest` is what the user asked for: run it, say it is unpinned.
        let c = validate(&cluster(
            "brokerCount: 1\nimage: confluentinc/cp-kafka:latest",
        ))
        .unwrap();
        assert_eq!(c.image, "confluentinc/cp-kafka:latest");
        let reasons: Vec<_> = c.warnings.iter().map(|w| w.reason).collect();
        assert_eq!(reasons, ["UnpinnedImage"]);
        // A digest is run as it is, with a word of caution.
        let digest = format!("confluentinc/cp-kafka@sha256:{}", "a".repeat(64));
        let c = validate(&cluster(&format!(
            "brokerCount: 1\nzookeeperConnect: zk:2181\nimage: {digest}"
        )))
        .unwrap();
        assert_eq!(c.image, digest);
        let reasons: Vec<_> = c.warnings.iter().map(|w| w.reason).collect();
        assert_eq!(reasons, ["ImageMayLackZooKeeper"]);
    }

    #[test]
    fn heap_is_half_the_memory_capped() {
        let c = validate(&cluster("brokerCount: 1\nresources: {memory: 1Gi}")).unwrap();
        assert_eq!(c.broker.heap_bytes, 512 << 20);
        let c = validate(&cluster("brokerCount: 1\nresources: {memory: 64Gi}")).unwrap();
        assert_eq!(c.broker.heap_bytes, 6 << 30);
        let err = validate(&cluster("brokerCount: 1\nresources: {memory: 300Mi}")).unwrap_err();
        assert_eq!(err.field, "resources.memory");
    }

    #[test]
    fn options_become_properties_and_config_wins() {
        let c = validate(&cluster(
            "brokerCount: 1\nleaderImbalanceRatio: 0.1\nleaderImbalanceInterval: 600\nkafkaOptions:\n  logRetentionHours: 24\n  autoCreateTopics: false\n  compressionType: gzip\n  config:\n    log.retention.hours: \"48\"",
        ))
        .unwrap();
        let p = &c.broker_settings;
        assert_eq!(p["log.retention.hours"], "48");
        assert_eq!(p["auto.create.topics.enable"], "false");
        assert_eq!(p["compression.type"], "gzip");
        assert_eq!(p["leader.imbalance.per.broker.percentage"], "10");
        assert_eq!(p["leader.imbalance.check.interval.seconds"], "600");
    }

    #[test]
    fn topic_above_broker_count_is_refused() {
        let err = validate(&cluster(
            "brokerCount: 2\ntopics: [{name: orders, partitions: 1, replicationFactor: 3}]",
        ))
        .unwrap_err();
        assert!(err.message.contains("orders"), "{err}");
    }

    #[test]
    fn names_must_fit_every_derived_object() {
        let named = |name: &str, yaml: &str| {
            let mut kc = cluster(yaml);
            kc.metadata.name = Some(name.to_string());
            validate(&kc)
        };
        let kraft = "brokerCount: 1";
        let zookeeper = "brokerCount: 1\nzookeeperConnect: zk:2181";
        assert!(named(&"a".repeat(41), kraft).is_ok());
        let err = named(&"a".repeat(42), kraft).unwrap_err();
        assert_eq!(err.field, "metadata.name");
        assert!(err.message.contains("at most 41"), "{err}");
        assert!(named(&"a".repeat(52), zookeeper).is_ok());
        assert!(named(&"a".repeat(53), zookeeper).is_err());
        for bad in ["1kafka", "kafka-", "my.kafka", "Kafka", "-kafka", ""] {
            assert!(named(bad, kraft).is_err(), "{bad:?} accepted");
        }
        assert!(named("k", kraft).is_ok());
        assert!(named("kafka-2", kraft).is_ok());

        // The longest names give valid names for everything the operator creates.
        use crate::resources::names::{self, Role};
        let longest = "a".repeat(MAX_KRAFT_NAME_LENGTH);
        let revision_label = |sts: &str| format!("{sts}-{}", "1".repeat(10));
        assert_eq!(
            revision_label(&names::statefulset(&longest, Role::Controller)).len(),
            63
        );
        assert!(names::pod(&longest, Role::Controller, 8).len() <= 63);
        assert!(names::headless_service(&longest, Role::Controller).len() <= 63);
        let longest = "a".repeat(MAX_NAME_LENGTH);
        assert_eq!(
            revision_label(&names::statefulset(&longest, Role::Broker)).len(),
            63
        );
        assert!(names::broker_service(&longest, 999).len() <= 63);
        assert!(names::pod(&longest, Role::Broker, 999).len() <= 63);
    }

    #[test]
    fn image_version_parsing() {
        assert_eq!(image_major_version("apache/kafka:4.1.1"), Some(4));
        assert_eq!(
            image_major_version("registry:5000/apache/kafka:3.9.1"),
            Some(3)
        );
        assert_eq!(
            image_major_version("confluentinc/cp-kafka:7.9.0-1-ubi8"),
            Some(7)
        );
        assert_eq!(image_major_version("confluentinc/cp-kafka:latest"), None);
        assert_eq!(image_major_version("apache/kafka"), None);
        assert_eq!(
            image_repository("registry:5000/apache/kafka"),
            "registry:5000/apache/kafka"
        );
    }

    impl Cluster {
        fn mode_resources(&self) -> &NodeResources {
            match &self.mode {
                Mode::Kraft { resources, .. } => resources,
                Mode::ZooKeeper { .. } => &self.broker,
            }
        }
    }
}
