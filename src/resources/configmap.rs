//! The ConfigMap every Kafka pod mounts: rendered `server.properties` per role, the start
//! script, and the JMX exporter's configuration.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::Cluster;

use super::config::{self, Environment, Kubernetes, Node};
use super::names::{self, JMX_PORT};
use super::owner_reference;

const START_SCRIPT: &str = include_str!("start.sh");

/// Prometheus rules for the broker's own metrics: request rates and latencies, replication
/// health (under-replicated and offline partitions), log sizes.
const DEFAULT_JMX_RULES: &str = r#"rules:
  - pattern: 'kafka.server<type=(.+), name=(.+)PerSec\w*, topic=(.+)><>Count'
    name: kafka_server_$1_$2_total
    type: COUNTER
    labels: {topic: "$3"}
  - pattern: 'kafka.server<type=(.+), name=(.+)PerSec\w*><>Count'
    name: kafka_server_$1_$2_total
    type: COUNTER
  - pattern: 'kafka.server<type=(.+), name=(.+)><>Value'
    name: kafka_server_$1_$2
    type: GAUGE
  - pattern: 'kafka.controller<type=(.+), name=(.+)><>Value'
    name: kafka_controller_$1_$2
    type: GAUGE
  - pattern: 'kafka.network<type=RequestMetrics, name=(.+), request=(.+)><>(Count|99thPercentile)'
    name: kafka_network_request_$1
    labels: {request: "$2", quantile: "$3"}
  - pattern: 'kafka.log<type=Log, name=Size, topic=(.+), partition=(.+)><>Value'
    name: kafka_log_size_bytes
    type: GAUGE
    labels: {topic: "$1", partition: "$2"}
  - pattern: 'java.lang<type=(.+), name=(.+)><>(\w+)'
    name: jvm_$1_$3
    labels: {name: "$2"}
"#;

/// The ConfigMap's data.
pub fn config_data(cluster: &Cluster) -> BTreeMap<String, String> {
    config_data_in(cluster, &Kubernetes { cluster })
}

/// The ConfigMap's data for nodes that run in `env` (the testbed starts local nodes from it
/// with the same start script).
pub fn config_data_in(cluster: &Cluster, env: &dyn Environment) -> BTreeMap<String, String> {
    data(cluster, env, None)
}

/// The ConfigMap's data as a restart is decided on: the settings as the pods started with
/// them (`startup`, see [`BrokerConfigStatus`](crate::api::BrokerConfigStatus)), which
/// differ from the spec's by the settings applied live.
pub fn keyed_data(cluster: &Cluster, startup: &config::Properties) -> BTreeMap<String, String> {
    data(cluster, &Kubernetes { cluster }, Some(startup))
}

fn data(
    cluster: &Cluster,
    env: &dyn Environment,
    settings: Option<&config::Properties>,
) -> BTreeMap<String, String> {
    let render = |props: config::Properties| match settings {
        Some(settings) => config::render(&config::with_settings(&props, settings)),
        None => config::render(&props),
    };
    let mut data = BTreeMap::new();
    data.insert(
        "broker.properties".to_string(),
        render(config::broker_properties(cluster, env, Node::FromPod)),
    );
    if cluster.is_kraft() {
        data.insert(
            "controller.properties".to_string(),
            render(config::controller_properties(cluster, env, Node::FromPod)),
        );
    }
    data.insert("start.sh".to_string(), START_SCRIPT.to_string());
    if let Some(jmx) = &cluster.jmx_exporter {
        let rules = jmx.rules.as_deref().unwrap_or(DEFAULT_JMX_RULES);
        data.insert(
            "jmx-exporter.yaml".to_string(),
            format!("hostPort: 127.0.0.1:{JMX_PORT}\nlowercaseOutputName: true\n{rules}"),
        );
    }
    data
}

pub fn config_map(cluster: &Cluster, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(names::config_map(&cluster.name)),
            namespace: Some(cluster.namespace.clone()),
            labels: Some(names::cluster_labels(cluster)),
            owner_references: owner_reference(cluster).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// A stable hash of the configuration (FNV-1a), the same for the same data on every operator
/// version, so an operator upgrade alone never rolls the brokers.
pub fn config_hash(data: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in data {
        for byte in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
