//! The end-to-end testbed: a KafkaCluster on the real API server whose pods run as real brokers
//! on loopback ([`LocalKubelet`]), configured from the very spec applied, and the operator
//! reaching them through a bootstrap override. Used with `support/kafka_support.rs` and
//! `support/mod.rs`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use kafka_operator::api::KafkaCluster;
use kafka_operator::controller::{LeaderElection, Settings};
use kafka_operator::kafka::{KafkaAdmin, KafkaClient};
use kafka_operator_testbed::kafka::{LocalKafka, LocalKafkaOptions};
use kafka_operator_testbed::kubelet::LocalKubelet;

use crate::kafka_support::{assert_same_messages, consume_all};
use crate::support::kube::{Operator, kubectl};

/// Broker settings that make a small cluster fast on two cores, appended to every spec here.
const FAST: &str = "kafkaOptions:
  config:
    group.initial.rebalance.delay.ms: '0'
    offsets.topic.num.partitions: '5'
    transaction.state.log.num.partitions: '5'
    num.network.threads: '2'
    num.io.threads: '2'
";

/// A running KafkaCluster `name` in `namespace`: its brokers, and a client of them.
pub struct Cluster {
    pub kubelet: LocalKubelet,
    pub admin: KafkaClient,
    pub bootstrap: Vec<String>,
}

/// Applies KafkaCluster `name` with `spec` (the spec's YAML body, without `kafkaOptions`) and
/// starts local brokers configured from the same spec, their pods run by a [`LocalKubelet`].
pub async fn start_cluster(client: &Client, namespace: &str, name: &str, spec: &str) -> Cluster {
    let spec = format!("{spec}{FAST}");
    let body: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let yaml = format!(
        "apiVersion: krallistic.github.com/v1\nkind: KafkaCluster\nmetadata: {{name: {name}}}\nspec:\n{body}"
    );
    let (ok, _, err) = kubectl(&["apply", "-n", namespace, "-f", "-"], Some(&yaml)).await;
    assert!(ok, "{err}");
    let options = LocalKafkaOptions::from_yaml(&spec).expect("spec");
    let kafka = LocalKafka::start(options).await.expect("local Kafka");
    let bootstrap = kafka.bootstrap_list();
    let admin = kafka.admin().expect("admin");
    let kubelet = LocalKubelet::start(client.clone(), namespace, name, kafka);
    Cluster {
        kubelet,
        admin,
        bootstrap,
    }
}

/// The operator for KafkaCluster `name`, reaching its brokers at `bootstrap`.
pub async fn operator_for(namespace: &str, name: &str, bootstrap: &[String]) -> Operator {
    Operator::start_with(settings_for(namespace, name, bootstrap)).await
}

/// One replica of the operator for KafkaCluster `name`, acting only while it holds the
/// Lease its replicas share (in the operator's namespace, one Lease per test namespace), as the
/// Deployment's replicas do.
pub async fn replica_for(
    namespace: &str,
    name: &str,
    bootstrap: &[String],
    identity: &str,
) -> Operator {
    let mut election = LeaderElection::new("kafka-operator", identity);
    election.lease_name = format!("kafka-operator-{namespace}");
    Operator::start_with(Settings {
        leader_election: Some(election),
        ..settings_for(namespace, name, bootstrap)
    })
    .await
}

fn settings_for(namespace: &str, name: &str, bootstrap: &[String]) -> Settings {
    Settings {
        namespace: Some(namespace.into()),
        kafka_bootstrap: BTreeMap::from([(format!("{namespace}/{name}"), bootstrap.to_vec())]),
        kafka_timeout: Duration::from_secs(20),
        leader_election: None,
    }
}

/// Merges `spec` into the KafkaCluster's spec (lists are replaced whole).
pub async fn patch_spec(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), namespace);
    clusters
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await?;
    Ok(())
}

/// Every message in `sent` (by topic) is still there, each once.
pub async fn all_readable(
    admin: &KafkaClient,
    bootstrap: &[String],
    sent: &BTreeMap<&str, HashSet<Vec<u8>>>,
    within: Duration,
) -> anyhow::Result<()> {
    let bootstrap = bootstrap.join(",");
    for (topic, messages) in sent {
        let partitions = admin
            .snapshot()
            .await?
            .topics
            .get(*topic)
            .map(|t| t.partitions.len() as i32)
            .context("topic missing")?;
        let got = consume_all(&bootstrap, topic, partitions, messages.len(), within).await?;
        assert_same_messages(messages, &got).with_context(|| format!("topic {topic}"))?;
    }
    Ok(())
}
