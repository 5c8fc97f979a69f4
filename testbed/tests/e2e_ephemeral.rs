//! End to end with `storageClass: emptyDir`: a restarted pod gets a new, empty volume, so a
//! rolling restart may only restart a broker whose every partition has another in-sync copy.
//! The operator manages a KafkaCluster on the real API server while a stand-in kubelet runs its
//! pods as real brokers and wipes a broker's data whenever its pod is recreated.
//!
//! A configuration change rolls every pod except the broker holding the only replica of an
//! RF 1 topic (the original project's `test1`); the status says why and what to do. Raising
//! that topic's replication factor lets the roll finish. No acknowledged message is lost.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/kafka_support.rs"]
mod kafka_support;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use kafka_operator::api::{KafkaCluster, Phase, TopicPhase};
use kafka_operator::kafka::{KafkaAdmin, KafkaClient, KafkaClientConfig, NewTopic};

use kafka_support::{Scenarios, produce, wait_for};
use support::kube::namespace;

const NS: &str = "e2e-ephemeral";
const NAME: &str = "kafka";
const LONG: Duration = Duration::from_secs(300);

const SPEC: &str = "brokerCount: 3
controllers: {replicas: 3}
clusterId: Q2x1c3RlckVwaGVtZXJhbA
storageClass: emptyDir
resources: {memory: 1Gi, diskSpace: 1Gi}
topics:
  - {name: test1, partitions: 1, replicationFactor: 1}
  - {name: orders, partitions: 6, replicationFactor: 2}
";

struct Bed {
    client: Client,
    admin: KafkaClient,
    bootstrap: Vec<String>,
}

impl Bed {
    fn clusters(&self) -> Api<KafkaCluster> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn patch_spec(&self, spec: serde_json::Value) -> anyhow::Result<()> {
        e2e::patch_spec(&self.client, NS, NAME, spec).await
    }

    /// The reasons of the KafkaCluster's events, one per line.
    async fn events(&self) -> anyhow::Result<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NS);
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The Reconciling condition's message, if the operator is reconciling.
    async fn reconciling(&self) -> anyhow::Result<Option<String>> {
        let kc = self.clusters().get(NAME).await?;
        Ok(kc
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Reconciling" && c.status == "True")
            .map(|c| c.message))
    }

    /// Kafka pods by name with their UID, and the names of those that do not run their
    /// StatefulSet's current template.
    async fn pods(&self) -> anyhow::Result<(BTreeMap<String, String>, BTreeSet<String>)> {
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), NS);
        let mut revisions = BTreeMap::new();
        for name in [NAME.to_string(), format!("{NAME}-controller")] {
            let sts = statefulsets.get(&name).await?;
            let revision = sts.status.and_then(|s| s.update_revision);
            revisions.insert(name, revision.context("no update revision yet")?);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let list = pods
            .list(&ListParams::default().labels(&format!(
                "app.kubernetes.io/instance={NAME},app.kubernetes.io/managed-by=kafka-operator"
            )))
            .await?;
        let mut uids = BTreeMap::new();
        let mut outdated = BTreeSet::new();
        for p in list {
            let name = p.name_any();
            let sts = name.rsplit_once('-').map(|(s, _)| s.to_string());
            let revision = p.labels().get("controller-revision-hash").cloned();
            if sts.and_then(|s| revisions.get(&s).cloned()) != revision {
                outdated.insert(name.clone());
            }
            uids.insert(name, p.uid().unwrap_or_default());
        }
        Ok((uids, outdated))
    }

    async fn settled(&self) -> anyhow::Result<()> {
        self.settled_at(3).await
    }

    async fn settled_at(&self, brokers: i32) -> anyhow::Result<()> {
        wait_for("the cluster to settle", LONG, || async {
            let kc = self.clusters().get(NAME).await?;
            let st = kc.status.clone().unwrap_or_default();
            let (_, outdated) = self.pods().await?;
            ensure!(
                st.operation.is_none()
                    && st.phase == Some(Phase::Running)
                    && st.brokers == brokers
                    && st.ready_brokers == brokers
                    && st.observed_generation == kc.metadata.generation
                    && outdated.is_empty(),
                "phase {:?}, {} ready, operation {:?}, outdated pods {outdated:?}, conditions {:?}",
                st.phase,
                st.ready_brokers,
                st.operation.as_ref().map(|o| &o.step),
                st.conditions
                    .iter()
                    .map(|c| format!("{}={}: {}", c.type_, c.status, c.message))
                    .collect::<Vec<_>>()
            );
            Ok(Some(()))
        })
        .await
    }

    async fn all_readable(&self, sent: &BTreeMap<&str, HashSet<Vec<u8>>>) -> anyhow::Result<()> {
        e2e::all_readable(&self.admin, &self.bootstrap, sent, LONG).await
    }
}

#[tokio::test]
async fn emptydir_rolls_never_delete_the_last_copy() {
    let client = namespace(NS).await;
    let cluster = e2e::start_cluster(&client, NS, NAME, SPEC).await;
    let _operator = e2e::operator_for(NS, NAME, &cluster.bootstrap).await;
    let bed = Bed {
        client: client.clone(),
        admin: cluster.admin,
        bootstrap: cluster.bootstrap,
    };
    let _kubelet = cluster.kubelet;

    let mut scenarios = Scenarios::new();
    scenarios
        .run(
            "a roll on emptyDir keeps the only copy of an RF 1 topic until a second one exists",
            Box::pin(scenario(&bed)),
        )
        .await;
    scenarios
        .run(
            "a drain on emptyDir while topics are created loses nothing",
            Box::pin(drain_while_topics_are_created(&bed)),
        )
        .await;
    scenarios.finish();
}

/// Drains broker 3 (4 -> 3) while new single-replica topics keep being created and written.
/// On ephemeral storage a broker that stops has lost what it held, so a partition Kafka placed
/// on it during its shutdown would be gone: the drain cordons the leaving broker first, and no
/// new topic lands there.
async fn drain_while_topics_are_created(bed: &Bed) -> anyhow::Result<()> {
    bed.settled().await?;
    // Four brokers, so that one can go (Kafka's own topics have three replicas).
    bed.patch_spec(serde_json::json!({"brokerCount": 4}))
        .await?;
    bed.settled_at(4).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let creating = tokio::spawn({
        // A client creating topics while a broker goes sees requests time out when they were
        // routed to it; it tries again, as Kafka's own clients do (an existing topic is fine).
        let admin = KafkaClient::new(KafkaClientConfig {
            timeout: Duration::from_secs(10),
            ..KafkaClientConfig::new(bed.bootstrap.clone())
        })?;
        let bootstrap = bed.bootstrap.join(",");
        let stop = stop.clone();
        async move {
            let mut sent: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let topic = format!("burst-{n}");
                n += 1;
                let new = [NewTopic {
                    name: topic.clone(),
                    partitions: 3,
                    replication_factor: 1,
                    config: BTreeMap::new(),
                }];
                let mut attempt = 1;
                while let Err(e) = admin.create_topics(&new).await {
                    ensure!(
                        e.is_retriable() && attempt < 6,
                        "creating {topic} (attempt {attempt}): {e}"
                    );
                    eprintln!("creating {topic} again after: {e}");
                    attempt += 1;
                }
                let written = produce(&bootstrap, &topic, 0..60, 200)
                    .await
                    .with_context(|| format!("writing {topic}"))?;
                sent.insert(topic, written);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok(sent)
        }
    });
    bed.patch_spec(serde_json::json!({"brokerCount": 3}))
        .await?;
    // The drain's end: the new broker count changes broker settings sized by it, and the roll
    // that follows keeps the brokers holding the only copy of a burst topic (the first
    // scenario shows that part), so the drain is done when the operation is.
    let drained = wait_for("the drain to end at 3 brokers", LONG, || async {
        let st = bed.clusters().get(NAME).await?.status.unwrap_or_default();
        Ok((st.operation.is_none() && st.brokers == 3 && st.ready_brokers == 3).then_some(()))
    })
    .await;
    // A little longer: topics created right after the broker went.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = creating.await??;
    drained?;
    ensure!(
        sent.len() >= 2,
        "only {} topic(s) were created during the drain",
        sent.len()
    );
    let snap = bed.admin.snapshot().await?;
    for (tp, p) in snap.partitions() {
        ensure!(
            !p.replicas.contains(&3),
            "{tp} has a replica on the removed broker 3"
        );
    }
    let events = bed.events().await?;
    ensure!(
        events.contains("BrokersCordoned"),
        "the leaving broker was not cordoned: {events}"
    );
    let sent: BTreeMap<&str, HashSet<Vec<u8>>> =
        sent.iter().map(|(t, m)| (t.as_str(), m.clone())).collect();
    eprintln!("{} topics created and written during the drain", sent.len());
    bed.all_readable(&sent).await
}

async fn scenario(bed: &Bed) -> anyhow::Result<()> {
    bed.settled().await?;
    wait_for("the spec's topics to be Ready", LONG, || async {
        let kc = bed.clusters().get(NAME).await?;
        let topics = kc.status.unwrap_or_default().topics;
        Ok(
            (topics.len() == 2 && topics.iter().all(|t| t.state == TopicPhase::Ready))
                .then_some(()),
        )
    })
    .await?;
    let mut sent = BTreeMap::new();
    sent.insert(
        "test1",
        produce(&bed.bootstrap.join(","), "test1", 0..300, 500).await?,
    );
    sent.insert(
        "orders",
        produce(&bed.bootstrap.join(","), "orders", 0..1200, 500).await?,
    );

    let snap = bed.admin.snapshot().await?;
    let only = snap
        .topics
        .get("test1")
        .and_then(|t| t.partitions.first())
        .and_then(|p| p.replicas.first().copied())
        .context("test1-0 has no replica")?;
    let keeper = format!("{NAME}-{only}");
    let (before, _) = bed.pods().await?;

    // A configuration change: every pod gets a new template.
    bed.patch_spec(serde_json::json!({
        "kafkaOptions": {"config": {"log.retention.hours": "200"}}
    }))
    .await?;
    let why = wait_for(
        &format!("every pod but {keeper} to be restarted, and the roll to wait on it"),
        Duration::from_secs(600),
        || async {
            let (_, outdated) = bed.pods().await?;
            let message = bed.reconciling().await?.unwrap_or_default();
            // Not there yet: the state goes into the timeout's message.
            ensure!(
                outdated == BTreeSet::from([keeper.clone()])
                    && message.contains("the only replica of test1-0"),
                "outdated pods {outdated:?}; Reconciling: {message}"
            );
            Ok(Some(message))
        },
    )
    .await?;
    ensure!(
        why.contains("replication factor"),
        "the status does not say what to do: {why}"
    );
    let (during, _) = bed.pods().await?;
    ensure!(
        during.get(&keeper) == before.get(&keeper),
        "{keeper} was restarted although it holds the only copy of test1-0"
    );
    for (pod, uid) in &during {
        ensure!(
            pod == &keeper || before.get(pod) != Some(uid),
            "{pod} was not restarted"
        );
    }
    // The wiped brokers got their copies back, and nothing acknowledged is missing.
    wait_for("every partition in sync", LONG, || async {
        let snap = bed.admin.snapshot().await?;
        Ok(snap.under_replicated().is_empty().then_some(()))
    })
    .await?;
    bed.all_readable(&sent).await?;

    // The way out the status names: a second copy of test1, then the roll finishes.
    bed.patch_spec(serde_json::json!({
        "topics": [
            {"name": "test1", "partitions": 1, "replicationFactor": 2},
            {"name": "orders", "partitions": 6, "replicationFactor": 2},
        ]
    }))
    .await?;
    bed.settled().await?;
    let (after, _) = bed.pods().await?;
    ensure!(
        after.get(&keeper) != before.get(&keeper),
        "{keeper} was never restarted"
    );
    let snap = bed.admin.snapshot().await?;
    let test1 = snap
        .topics
        .get("test1")
        .and_then(|t| t.partitions.first())
        .context("test1-0")?;
    ensure!(
        test1.replicas.len() == 2,
        "test1-0 replicas {:?}",
        test1.replicas
    );
    bed.all_readable(&sent).await
}
