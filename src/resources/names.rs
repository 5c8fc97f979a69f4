//! Names, labels and ports of everything the operator creates, in one place.

use std::collections::BTreeMap;

use crate::api::Cluster;

/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "kafka-operator";
/// Finalizer that lets the operator clean up (PVCs, throttles) before the cluster goes away.
pub const FINALIZER: &str = "krallistic.github.com/cleanup";

/// `"true"` on a KafkaCluster stops every action on it (the status says so); removing the
/// annotation, or any other value, resumes.
pub const PAUSE_ANNOTATION: &str = "krallistic.github.com/pause-reconciliation";
/// Any new value on a KafkaCluster (a timestamp, say) restarts its pods, one at a time and with
/// the safety rules of every rolling restart.
pub const RESTART_ANNOTATION: &str = "krallistic.github.com/restart";
/// Broker ids whose node and volumes are gone for good (`"3"`, `"3,4"`): a drain no longer waits
/// for their own word that they hold nothing, since they cannot give it. Kafka's metadata must
/// still show every partition fully in sync on the other brokers.
pub const LOST_BROKERS_ANNOTATION: &str = "krallistic.github.com/lost-brokers";

/// On a broker pod of a rack-aware cluster: the rack of the pod's node (the value of the
/// cluster's `rack.topologyKey` label there), written by the operator once the pod is scheduled
/// and read by the pod through the downward API as its `broker.rack`.
pub const RACK_ANNOTATION: &str = "krallistic.github.com/rack";
/// Where a broker pod's downward-API volume (`pod-info`) is mounted.
pub const POD_INFO_DIR: &str = "/etc/kafka-operator-pod";
/// The file in [`POD_INFO_DIR`] holding the pod's [`RACK_ANNOTATION`].
pub const RACK_FILE: &str = "rack";

/// Client listener: what applications connect to.
pub const CLIENT_PORT: u16 = 9092;
/// Replication listener: broker-to-broker traffic.
pub const REPLICATION_PORT: u16 = 9091;
/// KRaft controller quorum listener.
pub const CONTROLLER_PORT: u16 = 9093;
/// Broker JMX, bound to the pod's loopback for the exporter sidecar.
pub const JMX_PORT: u16 = 9999;
/// Prometheus metrics of the JMX exporter sidecar.
pub const METRICS_PORT: u16 = 5556;

/// The container that runs Kafka in every broker and controller pod.
pub const KAFKA_CONTAINER: &str = "kafka";

/// Where the data volume is mounted: exactly the path the official `apache/kafka` and
/// `confluentinc/cp-kafka` images declare as a `VOLUME`. The container runtime gives every
/// image volume that no mount of the pod covers exactly an anonymous directory of the
/// container's own; a volume mounted on a parent of that path would leave the log directory
/// on it, and a restarted or rescheduled pod would start empty.
pub const DATA_DIR: &str = "/var/lib/kafka/data";
/// The log directory inside the data volume (a subdirectory, so `lost+found` on a fresh
/// filesystem is not taken for a partition).
pub const LOG_DIR: &str = "/var/lib/kafka/data/kafka-log";
/// Where the rendered configuration is mounted.
pub const CONFIG_DIR: &str = "/etc/kafka-operator";
/// Writable scratch space (the root filesystem is read-only).
pub const SCRATCH_DIR: &str = "/tmp";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";

/// Which kind of Kafka node a pod runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Broker,
    Controller,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Broker => "broker",
            Role::Controller => "controller",
        }
    }
}

/// The broker StatefulSet, and the prefix of its pods (`<cluster>-0`, ...), as in the original.
pub fn broker_statefulset(cluster: &str) -> String {
    cluster.to_string()
}

pub fn controller_statefulset(cluster: &str) -> String {
    format!("{cluster}-controller")
}

pub fn statefulset(cluster: &str, role: Role) -> String {
    match role {
        Role::Broker => broker_statefulset(cluster),
        Role::Controller => controller_statefulset(cluster),
    }
}

/// Headless Service of the brokers: pod DNS names and a bootstrap address.
pub fn broker_headless_service(cluster: &str) -> String {
    cluster.to_string()
}

/// Headless Service of the controllers.
pub fn controller_headless_service(cluster: &str) -> String {
    format!("{cluster}-controllers")
}

pub fn headless_service(cluster: &str, role: Role) -> String {
    match role {
        Role::Broker => broker_headless_service(cluster),
        Role::Controller => controller_headless_service(cluster),
    }
}

/// Per-broker Service, as in the original project.
pub fn broker_service(cluster: &str, ordinal: i32) -> String {
    format!("{cluster}-broker-{ordinal}")
}

pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

pub fn pod_disruption_budget(cluster: &str, role: Role) -> String {
    statefulset(cluster, role)
}

pub fn pod(cluster: &str, role: Role, ordinal: i32) -> String {
    format!("{}-{ordinal}", statefulset(cluster, role))
}

/// Name of the data volume claim template; PVCs are `<template>-<pod>`.
pub const DATA_VOLUME: &str = "data";

pub fn data_pvc(cluster: &str, role: Role, ordinal: i32) -> String {
    format!("{DATA_VOLUME}-{}", pod(cluster, role, ordinal))
}

/// DNS name of a pod under its headless Service.
pub fn pod_host(cluster: &str, namespace: &str, role: Role, ordinal: i32) -> String {
    format!(
        "{}.{}.{namespace}.svc.cluster.local",
        pod(cluster, role, ordinal),
        headless_service(cluster, role)
    )
}

/// Labels every object of a cluster carries. They also select them: `name` and `instance`
/// alone are what a Helm release of the same name carries too (a Kafka chart's pods and volume
/// claims among them), so every list, watch and delete also names the operator (`managed-by`).
pub fn cluster_labels(cluster: &Cluster) -> BTreeMap<String, String> {
    cluster_selector(&cluster.name)
}

/// Selects every object the operator made for cluster `cluster`, and nothing of anyone else's.
pub fn cluster_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "kafka".to_string()),
        (LABEL_INSTANCE.to_string(), cluster.to_string()),
        (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
    ])
}

/// Selects the pods of one role: what Services, disruption budgets and anti-affinity match.
pub fn pod_selector(cluster: &str, role: Role) -> BTreeMap<String, String> {
    let mut labels = cluster_selector(cluster);
    labels.insert(LABEL_COMPONENT.to_string(), role.as_str().to_string());
    labels
}

/// The StatefulSets' own `spec.selector`, which Kubernetes does not let change: it stays as
/// the first clusters were created with (without `managed-by`). A StatefulSet only adopts pods
/// that no other controller owns, so a foreign release's pods are never taken over.
pub fn statefulset_selector(cluster: &str, role: Role) -> BTreeMap<String, String> {
    let mut labels = pod_selector(cluster, role);
    labels.remove(LABEL_MANAGED_BY);
    labels
}

/// Labels of the objects of one role.
pub fn role_labels(cluster: &Cluster, role: Role) -> BTreeMap<String, String> {
    pod_selector(&cluster.name, role)
}

/// A label selector string, e.g. for the scale subresource's status.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
