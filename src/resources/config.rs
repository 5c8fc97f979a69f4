//! `server.properties` rendering: the one place broker and controller configuration is made.
//!
//! The same code renders the ConfigMap the pods read and the configuration of the local brokers
//! the tests run, so the tests prove Kafka accepts what the operator generates. The difference
//! between the two is only [`Environment`]: where nodes listen, how they are addressed, where
//! they keep data.

use std::collections::BTreeMap;

use crate::api::validate::CONTROLLER_NODE_ID_BASE;
use crate::api::{Cluster, Mode};

use super::names::{self, CLIENT_PORT, CONTROLLER_PORT, LOG_DIR, REPLICATION_PORT, Role};

/// `server.properties` as ordered key/value pairs.
pub type Properties = BTreeMap<String, String>;

/// Kafka listeners the operator configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Clients (producers, consumers, admin tools).
    Client,
    /// Broker-to-broker replication.
    Replication,
    /// The KRaft controller quorum.
    Controller,
}

impl Listener {
    pub fn name(self) -> &'static str {
        match self {
            Listener::Client => "CLIENT",
            Listener::Replication => "REPLICATION",
            Listener::Controller => "CONTROLLER",
        }
    }
}

/// Which node a configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A known ordinal (tests, and cluster-wide values such as the quorum voters).
    Ordinal(i32),
    /// Whatever pod reads the file: per-pod values are placeholders the start script fills in
    /// (`${NODE_ID}`, `${POD_NAME}`).
    FromPod,
}

/// Placeholder for the node id in a rendered ConfigMap.
pub const NODE_ID_PLACEHOLDER: &str = "${NODE_ID}";
/// Placeholder for the pod name in a rendered ConfigMap.
pub const POD_NAME_PLACEHOLDER: &str = "${POD_NAME}";

/// Where Kafka nodes run: addresses, ports and data directories.
pub trait Environment {
    /// Host name other nodes and clients use for a node.
    fn host(&self, role: Role, node: Node) -> String;
    /// Port of a listener of a node.
    fn port(&self, role: Role, node: Node, listener: Listener) -> u16;
    /// Address listeners bind to.
    fn bind_host(&self) -> String;
    /// Log directory of a node.
    fn log_dir(&self, role: Role, node: Node) -> String;
}

/// Pods of the cluster's StatefulSets, addressed through their headless Services.
pub struct Kubernetes<'a> {
    pub cluster: &'a Cluster,
}

impl Environment for Kubernetes<'_> {
    fn host(&self, role: Role, node: Node) -> String {
        let c = self.cluster;
        match node {
            Node::Ordinal(i) => names::pod_host(&c.name, &c.namespace, role, i),
            Node::FromPod => format!(
                "{POD_NAME_PLACEHOLDER}.{}.{}.svc.cluster.local",
                names::headless_service(&c.name, role),
                c.namespace
            ),
        }
    }

    fn port(&self, _role: Role, _node: Node, listener: Listener) -> u16 {
        match listener {
            Listener::Client => CLIENT_PORT,
            Listener::Replication => REPLICATION_PORT,
            Listener::Controller => CONTROLLER_PORT,
        }
    }

    fn bind_host(&self) -> String {
        "0.0.0.0".to_string()
    }

    fn log_dir(&self, _role: Role, _node: Node) -> String {
        LOG_DIR.to_string()
    }
}

/// Kafka node id of a node: brokers are their pod ordinal, controllers an offset above.
pub fn node_id(role: Role, ordinal: i32) -> i32 {
    match role {
        Role::Broker => ordinal,
        Role::Controller => CONTROLLER_NODE_ID_BASE + ordinal,
    }
}

fn node_id_value(role: Role, node: Node) -> String {
    match node {
        Node::Ordinal(i) => node_id(role, i).to_string(),
        Node::FromPod => NODE_ID_PLACEHOLDER.to_string(),
    }
}

/// Keys the operator owns; the CRD schema refuses them in `kafkaOptions.config`.
pub const OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.listener.names",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
    "log.dir",
    "metadata.log.dir",
    "zookeeper.connect",
    "broker.rack",
    "cluster.id",
];

/// `controller.quorum.voters` of a KRaft cluster.
pub fn quorum_voters(cluster: &Cluster, env: &dyn Environment) -> String {
    (0..cluster.controller_count())
        .map(|i| {
            let node = Node::Ordinal(i);
            format!(
                "{}@{}:{}",
                node_id(Role::Controller, i),
                env.host(Role::Controller, node),
                env.port(Role::Controller, node, Listener::Controller)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Defaults an experienced operator sets, sized to the cluster: internal topics replicated
/// as much as the brokers allow (up to 3), writable with one broker down.
fn sized_defaults(cluster: &Cluster) -> Properties {
    let rf = cluster.broker_count.min(3);
    let min_isr = (rf - 1).max(1);
    [
        ("offsets.topic.replication.factor", rf),
        ("transaction.state.log.replication.factor", rf),
        ("transaction.state.log.min.isr", min_isr),
        ("share.coordinator.state.topic.replication.factor", rf),
        ("share.coordinator.state.topic.min.isr", min_isr),
        ("default.replication.factor", rf),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The spec's settings on top of the defaults; owned keys never come from the user.
fn user_settings(cluster: &Cluster, props: &mut Properties) {
    for (k, v) in &cluster.broker_settings {
        if !OWNED_KEYS.contains(&k.as_str()) {
            props.insert(k.clone(), v.clone());
        }
    }
}

fn listener(env: &dyn Environment, role: Role, node: Node, l: Listener, host: &str) -> String {
    format!("{}://{host}:{}", l.name(), env.port(role, node, l))
}

/// Configuration of a broker.
pub fn broker_properties(cluster: &Cluster, env: &dyn Environment, node: Node) -> Properties {
    let role = Role::Broker;
    let mut props = sized_defaults(cluster);
    user_settings(cluster, &mut props);

    let bind = env.bind_host();
    let host = env.host(role, node);
    let mut owned = Properties::new();
    let listeners = [Listener::Client, Listener::Replication];
    owned.insert(
        "listeners".into(),
        listeners
            .iter()
            .map(|l| listener(env, role, node, *l, &bind))
            .collect::<Vec<_>>()
            .join(","),
    );
    owned.insert(
        "advertised.listeners".into(),
        listeners
            .iter()
            .map(|l| listener(env, role, node, *l, &host))
            .collect::<Vec<_>>()
            .join(","),
    );
    owned.insert(
        "inter.broker.listener.name".into(),
        Listener::Replication.name().into(),
    );
    owned.insert("log.dirs".into(), env.log_dir(role, node));
    match &cluster.mode {
        Mode::Kraft { .. } => {
            owned.insert("process.roles".into(), "broker".into());
            owned.insert("node.id".into(), node_id_value(role, node));
            owned.insert(
                "controller.quorum.voters".into(),
                quorum_voters(cluster, env),
            );
            owned.insert(
                "controller.listener.names".into(),
                Listener::Controller.name().into(),
            );
            owned.insert(
                "listener.security.protocol.map".into(),
                "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            );
        }
        Mode::ZooKeeper { connect } => {
            owned.insert("broker.id".into(), node_id_value(role, node));
            owned.insert("zookeeper.connect".into(), connect.clone());
            owned.insert(
                "listener.security.protocol.map".into(),
                "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT".into(),
            );
        }
    }
    props.extend(owned);
    props
}

/// Configuration of a KRaft controller.
pub fn controller_properties(cluster: &Cluster, env: &dyn Environment, node: Node) -> Properties {
    let role = Role::Controller;
    let mut props = sized_defaults(cluster);
    // Leader balancing, topic defaults and min.insync.replicas are decided by the controllers
    // in KRaft, so they get the spec's settings too.
    user_settings(cluster, &mut props);
    let l = Listener::Controller;
    props.extend([
        ("process.roles".to_string(), "controller".to_string()),
        ("node.id".to_string(), node_id_value(role, node)),
        (
            "controller.quorum.voters".to_string(),
            quorum_voters(cluster, env),
        ),
        (
            "controller.listener.names".to_string(),
            l.name().to_string(),
        ),
        (
            "listeners".to_string(),
            listener(env, role, node, l, &env.bind_host()),
        ),
        (
            "advertised.listeners".to_string(),
            listener(env, role, node, l, &env.host(role, node)),
        ),
        (
            "listener.security.protocol.map".to_string(),
            "CONTROLLER:PLAINTEXT".to_string(),
        ),
        ("log.dirs".to_string(), env.log_dir(role, node)),
    ]);
    props
}

/// Renders properties as a `server.properties` file.
pub fn render(props: &Properties) -> String {
    let mut out = String::new();
    for (k, v) in props {
        out.push_str(k);
        out.push('=');
        // Backslashes are escapes in Java properties files.
        out.push_str(&v.replace('\\', "\\\\"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KafkaCluster, validate};

    fn cluster(yaml: &str) -> Cluster {
        let mut kc = KafkaCluster::new("kafka", serde_yaml::from_str(yaml).unwrap());
        kc.metadata.namespace = Some("prod".into());
        validate(&kc).unwrap()
    }

    #[test]
    fn broker_in_kraft_mode() {
        let c = cluster(
            "brokerCount: 3\nkafkaOptions: {logRetentionHours: 24, config: {num.io.threads: '16'}}",
        );
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::FromPod);
        assert_eq!(p["process.roles"], "broker");
        assert_eq!(p["node.id"], "${NODE_ID}");
        assert_eq!(
            p["advertised.listeners"],
            "CLIENT://${POD_NAME}.kafka.prod.svc.cluster.local:9092,REPLICATION://${POD_NAME}.kafka.prod.svc.cluster.local:9091"
        );
        assert_eq!(
            p["listeners"],
            "CLIENT://0.0.0.0:9092,REPLICATION://0.0.0.0:9091"
        );
        assert_eq!(
            p["controller.quorum.voters"],
            "9000@kafka-controller-0.kafka-controllers.prod.svc.cluster.local:9093,\
             9001@kafka-controller-1.kafka-controllers.prod.svc.cluster.local:9093,\
             9002@kafka-controller-2.kafka-controllers.prod.svc.cluster.local:9093"
        );
        assert_eq!(p["log.retention.hours"], "24");
        assert_eq!(p["num.io.threads"], "16");
        assert_eq!(p["offsets.topic.replication.factor"], "3");
        assert!(!p.contains_key("zookeeper.connect"));
    }

    #[test]
    fn internal_topics_fit_small_clusters() {
        let c = cluster("brokerCount: 1");
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(0));
        assert_eq!(p["offsets.topic.replication.factor"], "1");
        assert_eq!(p["transaction.state.log.min.isr"], "1");
        assert_eq!(p["node.id"], "0");
    }

    #[test]
    fn broker_in_zookeeper_mode() {
        let c = cluster("brokerCount: 3\nzookeeperConnect: zk-headless.default.svc.cluster.local");
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(2));
        assert_eq!(p["broker.id"], "2");
        assert_eq!(
            p["zookeeper.connect"],
            "zk-headless.default.svc.cluster.local"
        );
        assert!(!p.contains_key("process.roles"));
        assert!(!p.contains_key("controller.quorum.voters"));
    }

    #[test]
    fn controller_configuration() {
        let c = cluster("brokerCount: 3\ncontrollers: {replicas: 1}\nleaderImbalanceRatio: 0.2");
        let p = controller_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(0));
        assert_eq!(p["process.roles"], "controller");
        assert_eq!(p["node.id"], "9000");
        assert_eq!(p["listeners"], "CONTROLLER://0.0.0.0:9093");
        assert_eq!(p["leader.imbalance.per.broker.percentage"], "20");
    }

    #[test]
    fn owned_keys_cannot_be_overridden() {
        let mut c = cluster("brokerCount: 1");
        c.broker_settings
            .insert("log.dirs".into(), "/elsewhere".into());
        c.broker_settings.insert("node.id".into(), "7".into());
        let p = broker_properties(&c, &Kubernetes { cluster: &c }, Node::Ordinal(0));
        assert_eq!(p["log.dirs"], LOG_DIR);
        assert_eq!(p["node.id"], "0");
    }

    #[test]
    fn renders_sorted_properties() {
        let p = Properties::from([("b".into(), "2".into()), ("a".into(), "x\\y".into())]);
        assert_eq!(render(&p), "a=x\\\\y\nb=2\n");
    }
}
