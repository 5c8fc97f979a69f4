//! End to end: the operator manages a KafkaCluster on a real kube-apiserver (with
//! kube-controller-manager) while its pods run as real Kafka brokers on loopback
//! ([`LocalKubelet`]), configured by the operator's own rendering. The operator reaches them
//! through a bootstrap override (`--kafka-bootstrap namespace/name=...`).
//!
//! One cluster serves all scenarios, in order (each JVM cluster is heavy on two cores):
//! drain 4 -> 3, refuse 3 -> 2 (a topic has RF 3), grow 3 -> 4 with rebalance, drain with the
//! operator killed at several points, drain with a broker down.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/kafka_support.rs"]
mod kafka_support;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use kafka_operator::api::Step;
use kafka_operator::api::{KafkaCluster, OperationKind, Phase, TopicPhase};
use kafka_operator::controller::{Context, Settings, reconcile};
use kafka_operator::kafka::throttle::{LEADER_RATE, LEADER_REPLICAS};
use kafka_operator::kafka::{
    ClusterSnapshot, ConfigOp, ConfigResource, KafkaAdmin, KafkaClient, NewTopic,
};
use kafka_operator::metrics::Metrics;
use kafka_operator::resources::pods::is_ready;
use kafka_operator_testbed::kubelet::LocalKubelet;

use kafka_support::{Scenarios, produce, wait_for};
use support::kube::{ForeignRelease, Operator, kubectl, namespace};

const NS: &str = "e2e-scale";
const NAME: &str = "kafka";
const LONG: Duration = Duration::from_secs(240);

/// The cluster: the same spec goes to the API server and configures the local brokers.
const SPEC: &str = "brokerCount: 4
controllers: {replicas: 3}
clusterId: Q2x1c3RlckUyZVNjYWxpbg
resources: {memory: 1Gi, diskSpace: 1Gi}
rebalance: {throttleBytesPerSecond: 400000, maxMovesPerBroker: 4}
topics:
  - {name: orders, partitions: 12, replicationFactor: 2}
  - {name: events, partitions: 6, replicationFactor: 2}
";

struct Bed {
    client: Client,
    kubelet: LocalKubelet,
    bootstrap: Vec<String>,
    admin: KafkaClient,
    operator: Option<Operator>,
    /// Messages acknowledged with acks=all, by topic.
    sent: BTreeMap<&'static str, HashSet<Vec<u8>>>,
}

impl Bed {
    async fn start_operator(&mut self) {
        self.operator = None;
        self.operator = Some(e2e::operator_for(NS, NAME, &self.bootstrap).await);
    }

    fn stop_operator(&mut self) {
        self.operator = None;
    }

    fn clusters(&self) -> Api<KafkaCluster> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn kc(&self) -> anyhow::Result<KafkaCluster> {
        Ok(self.clusters().get(NAME).await?)
    }

    async fn set_brokers(&self, n: i32) -> anyhow::Result<()> {
        self.patch_spec(serde_json::json!({"brokerCount": n})).await
    }

    async fn patch_spec(&self, spec: serde_json::Value) -> anyhow::Result<()> {
        e2e::patch_spec(&self.client, NS, NAME, spec).await
    }

    async fn sts_replicas(&self) -> anyhow::Result<i32> {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), NS);
        Ok(api
            .get(NAME)
            .await?
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(0))
    }

    /// Waits until no operation runs, the spec's broker count is what runs, and all is ready.
    async fn settled(&self, brokers: i32) -> anyhow::Result<KafkaCluster> {
        let result = wait_for(
            &format!("the cluster to settle at {brokers} brokers"),
            LONG,
            || async {
                let kc = self.kc().await?;
                let st = kc.status.clone().unwrap_or_default();
                let done = st.operation.is_none()
                    && st.phase == Some(Phase::Running)
                    && st.brokers == brokers
                    && st.ready_brokers == brokers
                    && st.observed_generation == kc.metadata.generation;
                Ok(done.then_some(kc))
            },
        )
        .await;
        if result.is_err() {
            let status = self.kc().await.ok().and_then(|kc| kc.status);
            eprintln!(
                "status at timeout: {}",
                serde_json::to_string_pretty(&status).unwrap_or_default()
            );
            eprintln!("events:\n{}", self.events().await);
        }
        result
    }

    async fn events(&self) -> String {
        let (_, out, _) = kubectl(
            &[
                "get",
                "events",
                "-n",
                NS,
                "-o",
                "custom-columns=REASON:.reason,MESSAGE:.message",
            ],
            None,
        )
        .await;
        out
    }

    /// From 4 settled brokers, lowers the count to 3 and waits until partitions move.
    async fn drain_from_4_to_3_started(&self) -> anyhow::Result<()> {
        self.set_brokers(4).await?;
        self.settled(4).await?;
        self.set_brokers(3).await?;
        wait_for("moves to start", LONG, || async {
            let st = self.kc().await?.status.unwrap_or_default();
            Ok(st.operation.filter(|o| !o.in_flight.is_empty()).map(|_| ()))
        })
        .await
    }

    /// Every broker reports `value` for the setting `key`.
    async fn every_broker_runs(&self, key: &str, value: &str) -> anyhow::Result<()> {
        for b in 0..4 {
            let configs = self
                .admin
                .describe_configs(&[ConfigResource::Broker(b)])
                .await?;
            let runs = configs
                .values()
                .next()
                .and_then(|c| c.get(key))
                .and_then(|v| v.value.clone());
            ensure!(
                runs.as_deref() == Some(value),
                "broker {b} runs {key} {runs:?}"
            );
        }
        Ok(())
    }

    /// Every message ever acknowledged is still there, each once.
    async fn all_messages_readable(&self) -> anyhow::Result<()> {
        e2e::all_readable(&self.admin, &self.bootstrap, &self.sent, LONG).await
    }
}

/// Watches the invariants while partitions move: the StatefulSet never runs fewer brokers than
/// hold data, and no partition is ever moved to two different places.
struct Watchdog {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Watchdog {
    fn start(client: Client, admin: Arc<KafkaClient>) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut violations = Vec::new();
            let mut targets: BTreeMap<String, BTreeSet<Vec<i32>>> = BTreeMap::new();
            let sts: Api<StatefulSet> = Api::namespaced(client, NS);
            let mut last_replicas = None;
            while !flag.load(Ordering::Relaxed) {
                let replicas = match sts.get(NAME).await {
                    Ok(s) => s.spec.and_then(|s| s.replicas).unwrap_or(0),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let shrunk = last_replicas.is_some_and(|r| replicas < r);
                last_replicas = Some(replicas);
                if let Ok(snap) = admin.snapshot().await {
                    // The brokers that stay were all in sync when the StatefulSet shrank.
                    if shrunk && let Some(tp) = snap.under_replicated().first() {
                        violations.push(format!(
                            "the StatefulSet shrank to {replicas} while {tp} was under-replicated"
                        ));
                    }
                    for (tp, p) in snap.partitions() {
                        if let Some(b) = p.replicas.iter().find(|b| **b >= replicas) {
                            violations.push(format!(
                                "StatefulSet runs {replicas} brokers while {tp} has a replica on broker {b}"
                            ));
                        }
                    }
                    for (tp, r) in &snap.reassignments {
                        let mut target = r.target();
                        target.sort_unstable();
                        targets.entry(tp.to_string()).or_default().insert(target);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for (tp, t) in targets {
                if t.len() > 1 {
                    violations.push(format!(
                        "{tp} was moved to {} different replica sets: {t:?}",
                        t.len()
                    ));
                }
            }
            violations
        });
        Watchdog { stop, task }
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let violations = self.task.await?;
        ensure!(
            violations.is_empty(),
            "invariants broken:\n{}",
            violations.join("\n")
        );
        Ok(())
    }
}

/// Every reassignment Kafka lists while it runs, by partition, with the moment it was first
/// seen: a partition whose move ends and then starts again to the same target was submitted
/// twice.
struct MoveLog {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl MoveLog {
    fn start(admin: Arc<KafkaClient>) -> MoveLog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut finished: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            let mut running: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            let mut twice = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(now) = admin.list_reassignments().await {
                    let now: BTreeMap<String, Vec<i32>> = now
                        .into_iter()
                        .map(|(tp, r)| {
                            let mut t = r.target();
                            t.sort_unstable();
                            (tp.to_string(), t)
                        })
                        .collect();
                    for (tp, target) in &now {
                        if !running.contains_key(tp) && finished.get(tp) == Some(target) {
                            twice.push(format!("{tp} was moved to {target:?} twice"));
                        }
                    }
                    for (tp, target) in std::mem::take(&mut running) {
                        if !now.contains_key(&tp) {
                            finished.insert(tp, target);
                        }
                    }
                    running = now;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            twice
        });
        MoveLog { stop, task }
    }

    async fn none_twice(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let twice = self.task.await?;
        ensure!(twice.is_empty(), "{}", twice.join("\n"));
        Ok(())
    }
}

/// Two replicas of the operator through a drain: the leader is killed mid-drain (its Lease runs
/// out, the other takes over), and after the drain a stale copy of the cluster (as a lagging
/// cache would hand it over) is reconciled.
async fn two_replicas_through_a_drain(bed: &Bed) -> anyhow::Result<()> {
    let mut replicas = BTreeMap::new();
    for id in ["replica-a", "replica-b"] {
        replicas.insert(id, e2e::replica_for(NS, NAME, &bed.bootstrap, id).await);
    }
    bed.set_brokers(4).await?;
    bed.settled(4).await?;
    // Watched from here: the drain's moves (the rebalance onto broker 3 is done).
    let watchdog = Watchdog::start(
        bed.client.clone(),
        Arc::new(bed.kubelet.kafka().lock().await.admin()?),
    );
    let moves = MoveLog::start(Arc::new(bed.kubelet.kafka().lock().await.admin()?));
    bed.drain_from_4_to_3_started().await?;
    // A copy of the cluster as it was mid-drain: what a stale cache would hand over.
    let stale = bed.kc().await?;
    let leases: Api<Lease> = Api::namespaced(bed.client.clone(), "kafka-operator");
    let lease = format!("kafka-operator-{NS}");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    let leader = holder(leases.get(&lease).await?).context("no Lease holder")?;
    ensure!(
        replicas.contains_key(leader.as_str()),
        "leader {leader} unknown"
    );
    // Killed: no clean shutdown, its Lease runs out and the other takes over.
    replicas.retain(|id, _| *id != leader);
    eprintln!("killed the leader {leader} mid-drain");
    let successor = wait_for("the other replica to take the Lease", LONG, || async {
        Ok(holder(leases.get(&lease).await?).filter(|h| *h != leader))
    })
    .await?;
    eprintln!("{successor} leads");
    bed.settled(3).await?;
    // The stale copy, reconciled as the controller would if its cache still had it:
    // the state is read afresh, so the finished drain is not taken back a step.
    let client = support::kube::testbed()
        .service_account_client("kafka-operator", "kafka-operator")
        .await?;
    let ctx = Context::new(
        client,
        &Settings {
            namespace: Some(NS.into()),
            kafka_bootstrap: BTreeMap::from([(format!("{NS}/{NAME}"), bed.bootstrap.clone())]),
            ..Default::default()
        },
        Arc::new(Metrics::default()),
    );
    ensure!(
        stale
            .status
            .as_ref()
            .and_then(|s| s.operation.as_ref())
            .is_some(),
        "the stale copy shows the drain"
    );
    reconcile::apply_cluster(Arc::new(stale), &ctx).await?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        ensure!(
            bed.sts_replicas().await? == 3,
            "the StatefulSet grew back after a stale read"
        );
        let st = bed.kc().await?.status.unwrap_or_default();
        ensure!(
            st.operation.is_none(),
            "the drain came back: {:?}",
            st.operation
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    watchdog.finish().await?;
    moves.none_twice().await?;
    check_drained(bed, 3).await?;
    drop(replicas);
    bed.all_messages_readable().await
}

/// Replicas per broker (every live broker listed), by topic.
fn topic_replica_counts(snap: &ClusterSnapshot) -> BTreeMap<String, BTreeMap<i32, usize>> {
    let mut by_topic = BTreeMap::new();
    for (tp, p) in snap.partitions() {
        let counts: &mut BTreeMap<i32, usize> = by_topic
            .entry(tp.topic.clone())
            .or_insert_with(|| snap.brokers.iter().map(|b| (b.id, 0)).collect());
        for r in &p.replicas {
            *counts.entry(*r).or_default() += 1;
        }
    }
    by_topic
}

fn replica_counts(snap: &ClusterSnapshot) -> BTreeMap<i32, usize> {
    let mut counts: BTreeMap<i32, usize> = snap.brokers.iter().map(|b| (b.id, 0)).collect();
    for (_, p) in snap.partitions() {
        for r in &p.replicas {
            *counts.entry(*r).or_default() += 1;
        }
    }
    counts
}

/// Replication throttles a user set by hand: a rate on broker 0 and every replica of `events`
/// throttled on the leader side.
struct UserThrottles;

impl UserThrottles {
    const RATE: &str = "50000000";

    async fn set(admin: &KafkaClient) -> anyhow::Result<UserThrottles> {
        let set = |k: &str, v: &str| BTreeMap::from([(k.to_string(), ConfigOp::Set(v.into()))]);
        admin
            .alter_configs(&ConfigResource::Broker(0), &set(LEADER_RATE, Self::RATE))
            .await?;
        admin
            .alter_configs(
                &ConfigResource::Topic("events".into()),
                &set(LEADER_REPLICAS, "*"),
            )
            .await?;
        Ok(UserThrottles)
    }

    /// Checks both are as the user left them, then removes them (the scenarios after this one
    /// start without throttles).
    async fn still_there_then_removed(&self, admin: &KafkaClient) -> anyhow::Result<()> {
        let broker = ConfigResource::Broker(0);
        let topic = ConfigResource::Topic("events".into());
        let value = |r: ConfigResource, k: &'static str| async move {
            let c = admin.describe_configs(std::slice::from_ref(&r)).await?;
            anyhow::Ok(
                c.get(&r)
                    .and_then(|c| c.get(k))
                    .and_then(|v| v.value.clone()),
            )
        };
        let result = async {
            let rate = value(broker.clone(), LEADER_RATE).await?;
            ensure!(
                rate.as_deref() == Some(Self::RATE),
                "the user's throttle rate on broker 0 is gone: {rate:?}"
            );
            let replicas = value(topic.clone(), LEADER_REPLICAS).await?;
            ensure!(
                replicas.as_deref() == Some("*"),
                "the user's throttled replicas of events are gone: {replicas:?}"
            );
            Ok(())
        }
        .await;
        let unset = |k: &str| BTreeMap::from([(k.to_string(), ConfigOp::Delete)]);
        wait_for("the user's throttles to be removed", LONG, || async {
            admin.alter_configs(&broker, &unset(LEADER_RATE)).await?;
            admin.alter_configs(&topic, &unset(LEADER_REPLICAS)).await?;
            Ok(Some(()))
        })
        .await?;
        result
    }
}

/// After a drain of broker `gone`: nothing on it, all in sync, it is unregistered, no
/// throttle is left, and the StatefulSet runs the rest. The test's snapshot may come from a
/// broker whose metadata trails the operator's by a moment, so the checks get a few seconds.
async fn check_drained(bed: &Bed, gone: i32) -> anyhow::Result<()> {
    wait_for(
        &format!("the end state of broker {gone}'s drain"),
        Duration::from_secs(20),
        || async { drained(bed, gone).await.map(Some) },
    )
    .await
}

async fn drained(bed: &Bed, gone: i32) -> anyhow::Result<()> {
    let snap = bed.admin.snapshot().await?;
    for (tp, p) in snap.partitions() {
        ensure!(
            !p.replicas.contains(&gone),
            "{tp} still has a replica on broker {gone}"
        );
        ensure!(
            p.fully_in_sync(),
            "{tp} is not fully in sync: {:?} of {:?}",
            p.isr,
            p.replicas
        );
    }
    ensure!(
        !snap.broker_ids().contains(&gone),
        "broker {gone} is still live"
    );
    ensure!(
        !snap.fenced_brokers.contains(&gone),
        "broker {gone} is still registered (fenced): not unregistered"
    );
    let resources: Vec<ConfigResource> = snap
        .broker_ids()
        .into_iter()
        .map(ConfigResource::Broker)
        .collect();
    for (r, c) in bed.admin.describe_configs(&resources).await? {
        let rate = c.get(LEADER_RATE).and_then(|v| v.value.clone());
        ensure!(
            c.get(LEADER_RATE).is_none_or(|v| v.is_default),
            "{r} still has a replication throttle: {rate:?}"
        );
    }
    ensure!(
        bed.sts_replicas().await? == gone,
        "StatefulSet not shrunk to {gone}"
    );
    Ok(())
}

#[tokio::test]
async fn scaling_moves_data_and_never_loses_it() {
    let client = namespace(NS).await;
    // The brokers: configured by the operator's rendering of this very spec.
    let e2e::Cluster {
        kubelet,
        admin,
        bootstrap,
    } = e2e::start_cluster(&client, NS, NAME, SPEC).await;
    let mut bed = Bed {
        client: client.clone(),
        kubelet,
        bootstrap,
        admin,
        operator: None,
        sent: BTreeMap::new(),
    };
    bed.start_operator().await;

    let mut scenarios = Scenarios::new();
    scenarios
        .run(
            "cluster comes up, topics created, data produced",
            Box::pin(async {
                bed.settled(4).await?;
                wait_for("the spec's topics to be Ready", LONG, || async {
                    let topics = bed.kc().await?.status.unwrap_or_default().topics;
                    Ok(
                        (topics.len() == 2 && topics.iter().all(|t| t.state == TopicPhase::Ready))
                            .then_some(()),
                    )
                })
                .await?;
                // A topic the operator does not manage holds data too: drains move it as well.
                bed.admin
                    .create_topics(&[NewTopic {
                        name: "audit".into(),
                        partitions: 4,
                        replication_factor: 3,
                        config: BTreeMap::new(),
                    }])
                    .await?;
                let bootstrap = bed.bootstrap.join(",");
                bed.sent.insert(
                    "orders",
                    produce(&bootstrap, "orders", 0..40_000, 200).await?,
                );
                bed.sent.insert(
                    "events",
                    produce(&bootstrap, "events", 0..10_000, 300).await?,
                );
                bed.sent
                    .insert("audit", produce(&bootstrap, "audit", 0..5_000, 300).await?);
                Ok(())
            }),
        )
        .await;

    scenarios
        .run(
            "scale 4 -> 3 drains broker 3, then removes it",
            Box::pin(async {
                let before = bed.admin.snapshot().await?;
                let on_leaving = replica_counts(&before).get(&3).copied().unwrap_or(0);
                ensure!(
                    on_leaving > 0,
                    "broker 3 holds nothing: the test needs data on it"
                );
                let watchdog = Watchdog::start(
                    bed.client.clone(),
                    Arc::new(bed.kubelet.kafka().lock().await.admin()?),
                );
                // Another release of the same name in the namespace (a Helm chart's broker and
                // its volume): the drain neither waits for it nor touches it.
                let foreign = ForeignRelease::create(&bed.client, NS, NAME, 7).await?;
                // Throttles a user set before the drain, on a broker and a topic the drain
                // throttles too: they are the user's, and the drain leaves them as it found them.
                let user = UserThrottles::set(&bed.admin).await?;
                bed.set_brokers(3).await?;
                // The drain shows in the status while it runs.
                wait_for("the drain to show in the status", LONG, || async {
                    let st = bed.kc().await?.status.unwrap_or_default();
                    Ok(st
                        .operation
                        .filter(|o| {
                            o.kind == OperationKind::ScaleDown && o.leaving_brokers == vec![3]
                        })
                        .map(|_| ()))
                })
                .await?;
                bed.settled(3).await?;
                watchdog.finish().await?;
                user.still_there_then_removed(&bed.admin).await?;
                check_drained(&bed, 3).await?;
                // pvcRetention.whenScaled: Delete (the default): the drained broker's volume goes.
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(bed.client.clone(), NS);
                wait_for(
                    "the drained broker's volume claim to be deleted",
                    LONG,
                    || async {
                        let claim = claims.get_opt("data-kafka-3").await?;
                        Ok(claim
                            .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
                            .then_some(()))
                    },
                )
                .await?;
                ensure!(
                    claims.get_opt("data-kafka-2").await?.is_some(),
                    "a staying broker lost its volume claim"
                );
                foreign.still_there(&bed.client).await?;
                // Exactly the replicas of broker 3 moved.
                let after = bed.admin.snapshot().await?;
                let moved = moved_replicas(&before, &after);
                ensure!(
                    moved == on_leaving,
                    "moved {moved} replicas, broker 3 held {on_leaving}"
                );
                let ev = bed.events().await;
                for reason in ["DrainStarted", "DrainVerified", "ScaledDown"] {
                    ensure!(ev.contains(reason), "no {reason} event in\n{ev}");
                }
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "scale below the largest replication factor is refused",
            Box::pin(async {
                bed.set_brokers(2).await?;
                let message = wait_for("ScaleDownBlocked", LONG, || async {
                    let kc = bed.kc().await?;
                    let st = kc.status.unwrap_or_default();
                    if st.observed_generation != kc.metadata.generation {
                        return Ok(None);
                    }
                    Ok(st
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "ScaleDownBlocked" && c.status == "True")
                        .map(|c| c.message.clone()))
                })
                .await?;
                // Topics the operator does not manage (and Kafka's own) count too.
                ensure!(message.contains("replication factor 3"), "{message}");
                ensure!(
                    message.contains("audit") || message.contains("__consumer_offsets"),
                    "{message}"
                );
                ensure!(
                    bed.kc().await?.status.unwrap().phase == Some(Phase::Blocked),
                    "phase"
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
                ensure!(bed.sts_replicas().await? == 3, "the StatefulSet changed");
                let ev = bed.events().await;
                ensure!(ev.contains("ScaleDownBlocked"), "no event in\n{ev}");
                bed.set_brokers(3).await?;
                bed.settled(3).await.map(|_| ())
            }),
        )
        .await;

    scenarios
        .run(
            "scale 3 -> 4 with rebalance gives broker 3 its share",
            Box::pin(async {
                let before = bed.admin.snapshot().await?;
                bed.set_brokers(4).await?;
                bed.settled(4).await?;
                let snap = bed.admin.snapshot().await?;
                // The physical bound: broker 3 needs a quarter of all replicas, and nothing
                // else has to move; the planner's bar is 1.05 x that.
                let total: usize = snap.partitions().map(|(_, p)| p.replicas.len()).sum();
                let moved = moved_replicas(&before, &snap);
                let bound = (total as f64 / 4.0 * 1.05).ceil() as usize;
                ensure!(
                    moved <= bound,
                    "moved {moved} replicas onto 4 brokers, bar {bound} (of {total})"
                );
                for (topic, counts) in topic_replica_counts(&snap) {
                    let spread =
                        counts.values().max().unwrap_or(&0) - counts.values().min().unwrap_or(&0);
                    ensure!(spread <= 1, "{topic} not balanced: {counts:?}");
                }
                let counts = replica_counts(&snap);
                let (min, max) = (
                    counts.values().min().copied().unwrap_or(0),
                    counts.values().max().copied().unwrap_or(0),
                );
                ensure!(
                    max - min <= 1,
                    "replicas per broker not balanced: {counts:?}"
                );
                let leaders = snap.leader_counts();
                let (lmin, lmax) = (
                    leaders.values().min().copied().unwrap_or(0),
                    leaders.values().max().copied().unwrap_or(0),
                );
                ensure!(
                    lmax - lmin <= 1,
                    "leaders per broker not balanced: {leaders:?}"
                );
                let ev = bed.events().await;
                ensure!(ev.contains("Rebalanced"), "no Rebalanced event in\n{ev}");
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "operator killed at 5 points of a drain resumes and loses nothing",
            Box::pin(async {
                // A slower throttle than the other scenarios, so the drain lasts through every
                // kill point.
                bed.patch_spec(
                    serde_json::json!({"rebalance": {"throttleBytesPerSecond": 150_000}}),
                )
                .await?;
                let before = bed.admin.snapshot().await?;
                let on_leaving = replica_counts(&before).get(&3).copied().unwrap_or(0);
                let watchdog = Watchdog::start(
                    bed.client.clone(),
                    Arc::new(bed.kubelet.kafka().lock().await.admin()?),
                );
                bed.set_brokers(3).await?;
                // Each kill comes a random moment after its point shows in the status, so it
                // also lands between a Kafka call and the status write that records it.
                let seed = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos() as u64;
                eprintln!("kill delays seeded with {seed}");
                let mut jitter = seed;
                let mut next_delay = move || {
                    jitter = jitter
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    Duration::from_millis((jitter >> 33) % 1_200)
                };
                wait_for("the drain to start", LONG, || async {
                    let st = bed.kc().await?.status.unwrap_or_default();
                    Ok(st
                        .operation
                        .filter(|o| o.kind == OperationKind::ScaleDown)
                        .map(|_| ()))
                })
                .await?;
                let kill_points: [(&str, KillPoint); 5] = [
                    ("recorded", |o| {
                        o.step == Step::Throttling || o.step == Step::Moving
                    }),
                    ("first moves submitted", |o| !o.in_flight.is_empty()),
                    ("a third moved", |o| {
                        o.partitions_moved * 3 >= o.partitions_total && o.partitions_moved > 0
                    }),
                    ("two thirds moved", |o| {
                        o.partitions_moved * 3 >= o.partitions_total * 2
                    }),
                    ("verifying or later", |o| {
                        o.step != Step::Throttling && o.step != Step::Moving
                    }),
                ];
                let mut killed = Vec::new();
                for (name, reached) in kill_points {
                    let point = wait_for(&format!("kill point {name}"), LONG, || async {
                        let st = bed.kc().await?.status.unwrap_or_default();
                        Ok(match st.operation {
                            Some(op) if reached(&op) => Some(Some(op.step.clone())),
                            Some(_) => None,
                            // Done before this point: nothing left to interrupt.
                            None => Some(None),
                        })
                    })
                    .await?;
                    let Some(at) = point else { break };
                    let delay = next_delay();
                    tokio::time::sleep(delay).await;
                    bed.stop_operator();
                    killed.push(format!("{name} ({at}, +{}ms)", delay.as_millis()));
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    bed.start_operator().await;
                }
                ensure!(
                    killed.len() == 5,
                    "the drain finished before every kill point: {killed:?}"
                );
                eprintln!("operator killed at: {killed:?}");
                bed.settled(3).await?;
                bed.patch_spec(
                    serde_json::json!({"rebalance": {"throttleBytesPerSecond": 400_000}}),
                )
                .await?;
                watchdog.finish().await?;
                check_drained(&bed, 3).await?;
                let after = bed.admin.snapshot().await?;
                let moved = moved_replicas(&before, &after);
                ensure!(
                    moved == on_leaving,
                    "moved {moved} replicas, broker 3 held {on_leaving}"
                );
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "two replicas through a drain: the leader killed, a stale read; nothing twice, nothing lost",
            Box::pin(async {
                bed.stop_operator();
                let result = two_replicas_through_a_drain(&bed).await;
                // The scenarios after this one run with the usual single operator.
                bed.start_operator().await;
                result
            }),
        )
        .await;

    scenarios
        .run(
            "a broker down during a drain: the operator waits, then finishes",
            Box::pin(async {
                bed.drain_from_4_to_3_started().await?;
                bed.kubelet.hold_down(1).await?;
                let waiting = wait_for("the operator to wait for broker 1", LONG, || async {
                    let st = bed.kc().await?.status.unwrap_or_default();
                    Ok(st.operation.and_then(|o| o.waiting_for).filter(|w| {
                        w.contains("broker(s) 1 down") || w.contains("not fully in sync")
                    }))
                })
                .await?;
                eprintln!("operator waits: {waiting}");
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(8) {
                    ensure!(
                        bed.sts_replicas().await? == 4,
                        "the StatefulSet shrank while broker 1 was down"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                bed.kubelet.release(1).await;
                bed.settled(3).await?;
                check_drained(&bed, 3).await?;
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "scale back up during a drain cancels the remaining moves",
            Box::pin(async {
                bed.drain_from_4_to_3_started().await?;
                bed.set_brokers(4).await?;
                bed.settled(4).await?;
                let ev = bed.events().await;
                ensure!(
                    ev.contains("DrainCancelled"),
                    "no DrainCancelled event in\n{ev}"
                );
                // The controller's own list: the operator cancelled what was left.
                let moving = bed.admin.list_reassignments().await?;
                ensure!(moving.is_empty(), "moves still running: {moving:?}");
                wait_for(
                    "every partition in sync",
                    Duration::from_secs(20),
                    || async {
                        let snap = bed.admin.snapshot().await?;
                        ensure!(
                            snap.under_replicated().is_empty(),
                            "under-replicated: {:?}",
                            snap.under_replicated()
                        );
                        Ok(Some(()))
                    },
                )
                .await?;
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "a scale-up undone before the new broker starts removes it again",
            Box::pin(async {
                // Broker 4's pod is created but its broker never starts (a node that cannot
                // run it): lowering the count again must not wait for it forever.
                bed.kubelet.hold_down(4).await?;
                bed.set_brokers(5).await?;
                wait_for("the scale-up to wait for broker 4", LONG, || async {
                    let st = bed.kc().await?.status.unwrap_or_default();
                    Ok(st
                        .operation
                        .filter(|o| o.kind == OperationKind::ScaleUp)
                        .and_then(|o| o.waiting_for))
                })
                .await?;
                ensure!(
                    bed.sts_replicas().await? == 5,
                    "the StatefulSet did not grow"
                );
                bed.set_brokers(4).await?;
                bed.settled(4).await?;
                bed.kubelet.release(4).await;
                let ev = bed.events().await;
                for said in ["RebalanceCancelled", "removed broker(s) 4 after"] {
                    ensure!(ev.contains(said), "no {said:?} event in\n{ev}");
                }
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(bed.client.clone(), NS);
                wait_for("broker 4's volume claim to be deleted", LONG, || async {
                    let claim = claims.get_opt("data-kafka-4").await?;
                    Ok(claim
                        .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
                        .then_some(()))
                })
                .await?;
                let snap = bed.admin.snapshot().await?;
                ensure!(
                    snap.partitions().all(|(_, p)| !p.replicas.contains(&4)),
                    "a partition lists broker 4"
                );
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "a replication factor change goes through reassignment",
            Box::pin(async {
                bed.patch_spec(serde_json::json!({"topics": [
                    {"name": "orders", "partitions": 12, "replicationFactor": 3},
                    {"name": "events", "partitions": 6, "replicationFactor": 2},
                ]}))
                .await?;
                wait_for("orders to have 3 replicas everywhere", LONG, || async {
                    let kc = bed.kc().await?;
                    let st = kc.status.unwrap_or_default();
                    let snap = bed.admin.snapshot().await?;
                    let orders = snap.topics.get("orders").context("orders")?;
                    let done = st.operation.is_none()
                        && st.observed_generation == kc.metadata.generation
                        && orders
                            .partitions
                            .iter()
                            .all(|p| p.replicas.len() == 3 && p.fully_in_sync())
                        && st.topics.iter().any(|t| {
                            t.name == "orders"
                                && t.state == TopicPhase::Ready
                                && t.replication_factor == 3
                        });
                    Ok(done.then_some(()))
                })
                .await?;
                let ev = bed.events().await;
                ensure!(
                    ev.contains("ReplicationFactorChanged"),
                    "no ReplicationFactorChanged event in\n{ev}"
                );
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "a topic removed from the spec is deleted only when asked",
            Box::pin(async {
                // Off (the default): removing `events` from the spec leaves the topic and its data.
                bed.patch_spec(serde_json::json!({
                    "deleteRemovedTopics": false,
                    "topics": [{"name": "orders", "partitions": 12, "replicationFactor": 3}],
                }))
                .await?;
                wait_for("the status to drop events", LONG, || async {
                    let kc = bed.kc().await?;
                    let st = kc.status.unwrap_or_default();
                    Ok((st.observed_generation == kc.metadata.generation
                        && !st.topics.iter().any(|t| t.name == "events"))
                    .then_some(()))
                })
                .await?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                ensure!(
                    bed.admin.snapshot().await?.topics.contains_key("events"),
                    "events was deleted without deleteRemovedTopics"
                );
                let ev = bed.events().await;
                ensure!(
                    ev.contains("topic events was removed from spec.topics"),
                    "no TopicUnmanaged event in\n{ev}"
                );
                // On: put events back under management, then remove it.
                bed.patch_spec(serde_json::json!({"topics": [
                    {"name": "orders", "partitions": 12, "replicationFactor": 3},
                    {"name": "events", "partitions": 6, "replicationFactor": 2},
                ]}))
                .await?;
                wait_for("events to be managed again", LONG, || async {
                    let st = bed.kc().await?.status.unwrap_or_default();
                    Ok(st
                        .topics
                        .iter()
                        .any(|t| t.name == "events" && t.state == TopicPhase::Ready)
                        .then_some(()))
                })
                .await?;
                bed.patch_spec(serde_json::json!({
                    "deleteRemovedTopics": true,
                    "topics": [{"name": "orders", "partitions": 12, "replicationFactor": 3}],
                }))
                .await?;
                wait_for("events to be deleted from Kafka", LONG, || async {
                    Ok((!bed.admin.snapshot().await?.topics.contains_key("events")).then_some(()))
                })
                .await?;
                let ev = bed.events().await;
                ensure!(
                    ev.contains("TopicDeleted"),
                    "no TopicDeleted event in\n{ev}"
                );
                // Topics the operator never managed are never deleted.
                ensure!(
                    bed.admin.snapshot().await?.topics.contains_key("audit"),
                    "audit was deleted"
                );
                bed.sent.remove("events");
                bed.all_messages_readable().await
            }),
        )
        .await;

    scenarios
        .run(
            "a setting Kafka changes live is applied to every broker, and no pod restarts",
            Box::pin(async {
                bed.settled(4).await?;
                let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
                let uids = || async {
                    let list = pods
                        .list(
                            &ListParams::default()
                                .labels("app.kubernetes.io/managed-by=kafka-operator"),
                        )
                        .await?;
                    anyhow::Ok(
                        list.iter()
                            .map(|p| (p.name_any(), p.uid()))
                            .collect::<BTreeMap<_, _>>(),
                    )
                };
                let before = uids().await?;
                let sts: Api<StatefulSet> = Api::namespaced(bed.client.clone(), NS);
                let template = |s: StatefulSet| s.spec.map(|s| s.template);
                let template_before = template(sts.get(NAME).await?);
                bed.patch_spec(
                    serde_json::json!({"kafkaOptions": {"logRetentionBytes": 1073741824}}),
                )
                .await?;
                wait_for("the setting to be recorded as live", LONG, || async {
                    let st = bed.kc().await?.status.unwrap_or_default();
                    let live = st.broker_config.map(|c| c.live).unwrap_or_default();
                    Ok(
                        (live.get("log.retention.bytes").map(String::as_str) == Some("1073741824"))
                            .then_some(()),
                    )
                })
                .await?;
                let kc = bed.settled(4).await?;
                let startup = kc
                    .status
                    .and_then(|s| s.broker_config)
                    .map(|c| c.startup)
                    .unwrap_or_default();
                ensure!(
                    startup.get("log.retention.bytes").map(String::as_str) != Some("1073741824"),
                    "the pods' template is keyed on the new value: {startup:?}"
                );
                ensure!(
                    template(sts.get(NAME).await?) == template_before,
                    "the broker template changed"
                );
                bed.every_broker_runs("log.retention.bytes", "1073741824")
                    .await?;
                // A pod that restarts for any reason starts with the spec's value.
                let cms: Api<ConfigMap> = Api::namespaced(bed.client.clone(), NS);
                let data = cms
                    .get(&kafka_operator::resources::names::config_map(NAME))
                    .await?
                    .data
                    .unwrap_or_default();
                ensure!(
                    data.get("broker.properties")
                        .is_some_and(|p| p.contains("log.retention.bytes=1073741824\n")),
                    "the ConfigMap does not carry the new value"
                );
                let ev = bed.events().await;
                ensure!(
                    ev.lines().any(|l| l.starts_with("ConfigAppliedLive")
                        && l.contains("log.retention.bytes=1073741824")),
                    "no ConfigAppliedLive event in\n{ev}"
                );
                // Settled once more: nothing restarted meanwhile either.
                tokio::time::sleep(Duration::from_secs(5)).await;
                let after = uids().await?;
                ensure!(after == before, "pods restarted: {before:?} -> {after:?}");
                Ok(())
            }),
        )
        .await;

    scenarios
        .run(
            "a configuration change rolls the brokers one at a time, every partition kept in sync",
            Box::pin(async {
                // orders: 3 replicas, at least 2 in sync for a write.
                bed.patch_spec(serde_json::json!({"topics": [{
                    "name": "orders", "partitions": 12, "replicationFactor": 3,
                    "config": {"min.insync.replicas": "2"},
                }]}))
                .await?;
                wait_for("orders to require 2 in-sync replicas", LONG, || async {
                    let configs = bed
                        .admin
                        .describe_configs(&[ConfigResource::Topic("orders".into())])
                        .await?;
                    let value = configs
                        .values()
                        .next()
                        .and_then(|c| c.get("min.insync.replicas"))
                        .and_then(|v| v.value.clone());
                    Ok((value.as_deref() == Some("2")).then_some(()))
                })
                .await?;
                let sts: Api<StatefulSet> = Api::namespaced(bed.client.clone(), NS);
                let old_revision = sts
                    .get(NAME)
                    .await?
                    .status
                    .and_then(|s| s.update_revision)
                    .context("no revision")?;

                let watch = RollWatch::start(
                    bed.client.clone(),
                    Arc::new(bed.kubelet.kafka().lock().await.admin()?),
                );
                let stop = Arc::new(AtomicBool::new(false));
                let producing = tokio::spawn({
                    let bootstrap = bed.bootstrap.join(",");
                    let stop = stop.clone();
                    async move {
                        let mut sent = HashSet::new();
                        let mut next = 1_000_000;
                        while !stop.load(Ordering::Relaxed) {
                            sent.extend(
                                produce(&bootstrap, "orders", next..next + 200, 200).await?,
                            );
                            next += 200;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        anyhow::Ok(sent)
                    }
                });
                // Read-only in Kafka: only a restart applies it.
                bed.patch_spec(
                    serde_json::json!({"kafkaOptions": {"config": {"queued.max.requests": "600"}}}),
                )
                .await?;
                let new_revision = wait_for("a new broker template", LONG, || async {
                    let revision = sts.get(NAME).await?.status.and_then(|s| s.update_revision);
                    Ok(revision.filter(|r| *r != old_revision))
                })
                .await?;
                let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
                // The roll keeps no state of its own: an operator killed once the first broker
                // runs the new template picks the roll up from the pods.
                wait_for("the first broker to restart", LONG, || async {
                    let list = pods
                        .list(&ListParams::default().labels("app.kubernetes.io/component=broker,app.kubernetes.io/managed-by=kafka-operator"))
                        .await?;
                    Ok(list
                        .iter()
                        .any(|p| p.labels().get("controller-revision-hash") == Some(&new_revision))
                        .then_some(()))
                })
                .await?;
                bed.stop_operator();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                bed.start_operator().await;
                let roll = wait_for(
                    "every broker pod to run the new template",
                    Duration::from_secs(600),
                    || async {
                        let list = pods
                            .list(
                                &ListParams::default().labels("app.kubernetes.io/component=broker,app.kubernetes.io/managed-by=kafka-operator"),
                            )
                            .await?;
                        let current = list
                            .iter()
                            .filter(|p| {
                                p.labels().get("controller-revision-hash") == Some(&new_revision)
                            })
                            .count();
                        Ok((current == 4).then_some(()))
                    },
                )
                .await;
                let settled = match roll {
                    Ok(()) => bed.settled(4).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                stop.store(true, Ordering::Relaxed);
                let sent_during_roll = producing.await??;
                let violations = watch.finish().await?;
                settled?;
                ensure!(
                    violations.is_empty(),
                    "unsafe moments during the roll:\n{}",
                    violations.join("\n")
                );
                ensure!(
                    !sent_during_roll.is_empty(),
                    "nothing was produced during the roll"
                );
                bed.sent
                    .get_mut("orders")
                    .context("orders")?
                    .extend(sent_during_roll);

                // Each broker restarted, and runs the new setting. The controllers get the
                // spec's settings too, so they rolled as well, the active one last.
                let ev = bed.events().await;
                let restarts: Vec<&str> =
                    ev.lines().filter(|l| l.starts_with("Restarting")).collect();
                let pods = (0..4)
                    .map(|b| format!("{NAME}-{b}"))
                    .chain((0..3).map(|c| format!("{NAME}-controller-{c}")));
                for pod in pods {
                    ensure!(
                        restarts.iter().any(|l| l.contains(&format!("pod {pod} "))),
                        "no Restarting event for {pod} in\n{}",
                        restarts.join("\n")
                    );
                }
                ensure!(
                    restarts
                        .last()
                        .is_some_and(|l| l.contains("active controller")),
                    "the active controller was not restarted last:\n{}",
                    restarts.join("\n")
                );
                // Leaders went back to their preferred replicas when the roll ended (the broker
                // restarted last would otherwise lead nothing until Kafka's own rebalancing).
                ensure!(
                    ev.lines().any(|l| l.starts_with("RolledOut")),
                    "no RolledOut event in\n{ev}"
                );
                let snap = bed.admin.snapshot().await?;
                let off: Vec<String> = snap
                    .partitions()
                    .filter(|(_, p)| p.leader != p.replicas.first().copied())
                    .map(|(tp, p)| format!("{tp} led by {:?} of {:?}", p.leader, p.replicas))
                    .collect();
                ensure!(
                    off.is_empty(),
                    "leaders not preferred after the roll: {off:?}"
                );
                let leaders = snap.leader_counts();
                ensure!(
                    leaders.get(&3).copied().unwrap_or(0) > 0,
                    "broker 3 leads nothing after the roll: {leaders:?}"
                );
                bed.every_broker_runs("queued.max.requests", "600").await?;
                bed.all_messages_readable().await
            }),
        )
        .await;

    bed.stop_operator();
    scenarios.finish();
}

/// Watches a rolling restart: at most one Kafka pod is down at any moment, and no partition
/// with several replicas drops below 2 in sync (orders needs 2 to take writes).
struct RollWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<String>, usize)>,
}

impl RollWatch {
    fn start(client: Client, admin: Arc<KafkaClient>) -> RollWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut violations = Vec::new();
            let mut samples = 0;
            let pods: Api<Pod> = Api::namespaced(client, NS);
            let selector = format!(
                "app.kubernetes.io/instance={NAME},app.kubernetes.io/managed-by=kafka-operator"
            );
            while !flag.load(Ordering::Relaxed) {
                if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                    let ready = list.iter().filter(|p| is_ready(p)).count();
                    // 4 brokers and 3 controllers; a deleted pod not yet recreated is down too.
                    if ready + 1 < 7 {
                        let down: Vec<String> = list
                            .iter()
                            .filter(|p| !is_ready(p))
                            .map(|p| p.name_any())
                            .collect();
                        violations.push(format!(
                            "{} of 7 Kafka pods ready (not ready: {down:?})",
                            ready
                        ));
                    }
                }
                if let Ok(snap) = admin.snapshot().await {
                    samples += 1;
                    for (tp, p) in snap.partitions() {
                        if p.replicas.len() >= 2 && p.isr.len() < 2 {
                            violations.push(format!(
                                "{tp}: in sync {:?} of replicas {:?}",
                                p.isr, p.replicas
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (violations, samples)
        });
        RollWatch { stop, task }
    }

    /// The violations seen; an error when Kafka could never be sampled.
    async fn finish(self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, Ordering::Relaxed);
        let (violations, samples) = self.task.await?;
        ensure!(
            samples > 10,
            "only {samples} snapshots taken during the roll"
        );
        Ok(violations)
    }
}

/// Whether a drain has reached a point where the operator is killed.
type KillPoint = fn(&kafka_operator::api::Operation) -> bool;

/// Replicas in `after` that their broker did not hold in `before`.
fn moved_replicas(before: &ClusterSnapshot, after: &ClusterSnapshot) -> usize {
    let old = before.assignment();
    after
        .assignment()
        .iter()
        .map(|(tp, replicas)| {
            let was = old.get(tp).cloned().unwrap_or_default();
            replicas.iter().filter(|r| !was.contains(r)).count()
        })
        .sum()
}
