//! End to end on the real node: the operator's own Deployment from `deploy/` (two replicas
//! sharing a Lease) manages a KafkaCluster whose brokers run as real pods of the `apache/kafka`
//! image on local volumes, with real probes, SIGTERM and grace periods; clients are Kafka's own
//! tools in pods, reaching the brokers by the names the cluster's DNS gives.
//!
//! One cluster serves the scenarios, in order (a cluster of JVMs is heavy on two cores): a
//! broker reached through `kubectl port-forward`, a deleted broker pod back with its data, a
//! drain 4 -> 3 with the operator's leader deleted five times and a broker's container killed,
//! a configuration change rolled with controlled shutdowns while messages flow, and the
//! cluster's delete keeping its volumes. Each failure is reported by its scenario's name.
//!
//! Needs root (the node makes a bridge, network namespaces, mounts and iptables rules).

#[path = "support/kafka_support.rs"]
mod kafka_support;
#[path = "support/node.rs"]
mod node_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use kafka_operator::api::{KafkaCluster, Phase, Step};

use kafka_support::Scenarios;
use node_support::{
    client_pod, cluster_running, exec_in_client, kubectl, namespace, operator_pods_ready,
    pod_ready, port_forward, testbed, wait,
};

const NS: &str = "node-life";
const NAME: &str = "life";
/// The cluster's bootstrap address as a client in the cluster has it: its headless Service.
const BOOTSTRAP: &str = "life.node-life.svc.cluster.local:9092";
/// Messages of the bulk topic, written once, so that a drain has data to move.
const BULK_RECORDS: usize = 30_000;
/// The verifiable producer's value prefixes (integers) of the scenarios that write `events`.
const ROLL_PREFIX: u32 = 1;
const DRAIN_PREFIX: u32 = 2;

/// Four brokers and one controller on local volumes, sized for a node of two cores: the
/// brokers' CPU (request and limit) leaves room for the controller's default request and the
/// operator's two replicas. A broker limited to a tenth of a core takes over a minute to start;
/// at 350m, about 20 s. A drain's copies are throttled so that it lasts long enough to be
/// interrupted.
const CLUSTER: &str = r#"apiVersion: krallistic.github.com/v1
kind: KafkaCluster
metadata:
  name: life
spec:
  brokerCount: 4
  resources:
    cpu: 350m
    memory: 1Gi
    diskSpace: 1Gi
  controllers:
    replicas: 1
    resources:
      memory: 768Mi
      diskSpace: 1Gi
  minimumGracePeriod: 30
  rebalance:
    throttleBytesPerSecond: 150000
  kafkaOptions:
    minInsyncReplicas: 2
    autoCreateTopics: false
    numNetworkThreads: 2
    numIoThreads: 2
    config:
      group.initial.rebalance.delay.ms: "0"
      offsets.topic.num.partitions: "3"
      transaction.state.log.num.partitions: "3"
  topics:
    - name: events
      partitions: 6
      replicationFactor: 3
    - name: bulk
      partitions: 6
      replicationFactor: 3
"#;

#[tokio::test]
async fn a_cluster_on_the_node_through_its_life() {
    let client = namespace(NS).await;
    let mut scenarios = Scenarios::new();
    let up = std::cell::Cell::new(false);
    scenarios
        .run(
            "the operator's Deployment brings 4 brokers to Running",
            Box::pin(async {
                bring_up(&client).await?;
                up.set(true);
                Ok(())
            }),
        )
        .await;
    if !up.get() {
        scenarios.finish();
        return;
    }
    scenarios
        .run(
            "kubectl port-forward reaches a broker",
            Box::pin(port_forward_to_a_broker()),
        )
        .await;
    scenarios
        .run(
            "a deleted broker pod comes back with its data",
            Box::pin(a_deleted_broker_pod_comes_back_with_its_data(&client)),
        )
        .await;
    scenarios
        .run(
            "drain 4 -> 3 with the operator deleted 5 times and a broker killed",
            Box::pin(a_drain_survives_operator_deletions_and_a_killed_broker(
                &client,
            )),
        )
        .await;
    scenarios
        .run(
            "a configuration change rolls with controlled shutdowns, nothing lost",
            Box::pin(a_configuration_change_rolls_with_controlled_shutdowns(
                &client,
            )),
        )
        .await;
    scenarios
        .run(
            "delete keeps the volumes (whenDeleted: Retain)",
            Box::pin(delete_keeps_the_volumes(&client)),
        )
        .await;
    scenarios.finish();
}

async fn bring_up(client: &Client) -> anyhow::Result<()> {
    // Both of the operator's replicas, as deploy/ runs them.
    operator_pods_ready(client, 2).await;
    apply(CLUSTER).await?;
    apply(&client_pod()).await?;
    cluster_running(client, NS, NAME, 4, Duration::from_secs(600)).await?;
    wait_pod("kafka-client", "Ready", pod_ready).await?;
    // Data for the drain to move, acknowledged by every in-sync replica, by Kafka's perf tool.
    let out = in_client(&format!(
        "/opt/kafka/bin/kafka-producer-perf-test.sh --topic bulk --num-records {BULK_RECORDS} \
         --record-size 1000 --throughput -1 \
         --producer-props bootstrap.servers={BOOTSTRAP} acks=all"
    ))
    .await?;
    ensure!(
        out.contains(&format!("{BULK_RECORDS} records sent")),
        "perf test: {out}"
    );
    ensure!(
        bulk_end_offsets().await? == BULK_RECORDS,
        "bulk not complete"
    );
    Ok(())
}

/// ApiVersions (v0) through `kubectl port-forward` to broker 0's client port, from the host.
async fn port_forward_to_a_broker() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut forward, port) = port_forward(NS, &format!("pod/{NAME}-0"), 9092);
    let answer = wait("an ApiVersions answer", Duration::from_secs(30), || async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        // Request header v1: api key 18, version 0, correlation id, client id; no body.
        let client_id = b"e2e-node";
        let mut request = Vec::new();
        request.extend_from_slice(&18i16.to_be_bytes());
        request.extend_from_slice(&0i16.to_be_bytes());
        request.extend_from_slice(&4242i32.to_be_bytes());
        request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
        request.extend_from_slice(client_id);
        let mut framed = (request.len() as i32).to_be_bytes().to_vec();
        framed.extend_from_slice(&request);
        stream.write_all(&framed).await.ok()?;
        let size = stream.read_i32().await.ok()?;
        let mut body = vec![0u8; usize::try_from(size).ok()?];
        stream.read_exact(&mut body).await.ok()?;
        Some(body)
    })
    .await;
    let _ = forward.kill().await;
    let body = answer?;
    ensure!(body.len() >= 10, "short answer {body:?}");
    let correlation = i32::from_be_bytes(body[0..4].try_into()?);
    let error = i16::from_be_bytes(body[4..6].try_into()?);
    let keys = i32::from_be_bytes(body[6..10].try_into()?);
    ensure!(correlation == 4242, "correlation id {correlation}");
    ensure!(error == 0, "ApiVersions error {error}");
    ensure!(keys > 10, "only {keys} API keys");
    Ok(())
}

async fn a_deleted_broker_pod_comes_back_with_its_data(client: &Client) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let claim = format!("data-{NAME}-1");
    let volume_before = claims
        .get(&claim)
        .await?
        .spec
        .and_then(|s| s.volume_name)
        .context("claim not bound")?;
    let uid_before = pods.get(&format!("{NAME}-1")).await?.uid();
    let path = local_path(&volume_before).await?;
    ensure!(
        walk_for(&path, "meta.properties"),
        "broker 1's volume {volume_before} holds no meta.properties at {}",
        path.display()
    );
    let (ok, _, err) = kubectl(
        &[
            "delete",
            "pod",
            "-n",
            NS,
            &format!("{NAME}-1"),
            "--wait=true",
        ],
        None,
    )
    .await;
    ensure!(ok, "{err}");
    // The StatefulSet makes it again, on the same claim and volume.
    wait(
        "the broker pod back and Ready",
        Duration::from_secs(300),
        || async {
            let pod = pods.get_opt(&format!("{NAME}-1")).await.ok()??;
            (pod.uid() != uid_before && pod_ready(&pod)).then_some(())
        },
    )
    .await?;
    let volume_after = claims.get(&claim).await?.spec.and_then(|s| s.volume_name);
    ensure!(
        volume_after.as_deref() == Some(volume_before.as_str()),
        "the claim moved from {volume_before} to {volume_after:?}"
    );
    // Its logs were there when it started, from a clean shutdown (SIGTERM within the grace
    // period): nothing had to be recovered or copied again.
    let log = pod_log(&format!("{NAME}-1")).await?;
    let loaded = clean_start_logs(&log).with_context(|| {
        format!(
            "broker 1 did not start from a clean shutdown; its volume {} holds {:?}\n{}",
            path.display(),
            std::fs::read_dir(&path)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
            log.lines().take(8).collect::<Vec<_>>().join("\n")
        )
    })?;
    ensure!(loaded > 0, "broker 1 found no logs on its volume");
    wait_in_sync().await?;
    ensure!(
        bulk_end_offsets().await? == BULK_RECORDS,
        "bulk lost messages"
    );
    Ok(())
}

async fn a_configuration_change_rolls_with_controlled_shutdowns(
    client: &Client,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let before = broker_pods(&pods).await?;
    let brokers = before.len();
    let uids_before: Vec<Option<String>> = before.iter().map(|p| p.uid()).collect();
    let producer = Producer::start(ROLL_PREFIX).await?;
    let rolled = async {
        // Read-only in Kafka, so it restarts the brokers (a setting Kafka changes live would
        // not).
        patch(serde_json::json!({"kafkaOptions": {"config": {"queued.max.requests": "600"}}}))
            .await?;
        // Until every broker pod is new and the cluster is Running again: never more than one
        // broker pod missing or not ready at a time.
        let started = Instant::now();
        loop {
            let current = broker_pods(&pods).await?;
            let ready = current.iter().filter(|p| pod_ready(p)).count();
            ensure!(
                ready + 1 >= brokers,
                "{ready} of {brokers} broker pods ready during the roll"
            );
            let all_new = current.len() == brokers
                && current
                    .iter()
                    .all(|p| !uids_before.contains(&p.uid()) && pod_ready(p));
            if all_new && phase(client).await? == Some(Phase::Running) {
                break;
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!("the roll did not end within 15 minutes");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "rolled {brokers} brokers in {:?}, never more than one not ready",
            started.elapsed()
        );
        for pod in broker_pods(&pods).await? {
            let name = pod.name_any();
            let log = pod_log(&name).await?;
            clean_start_logs(&log)
                .with_context(|| format!("{name} did not start from a clean shutdown"))?;
            // The broker runs the new configuration, as Kafka reports it (the first value
            // printed is the one in effect; its synonyms follow).
            let id = name.rsplit('-').next().unwrap_or_default().to_string();
            let config = in_client(&format!(
                "/opt/kafka/bin/kafka-configs.sh --bootstrap-server {BOOTSTRAP} --describe \
                 --entity-type brokers --entity-name {id} --all \
                 | grep -o 'queued.max.requests=[0-9]*' | head -n 1"
            ))
            .await?;
            ensure!(
                config.trim() == "queued.max.requests=600",
                "{name} reports {config:?}"
            );
        }
        anyhow::Ok(())
    }
    .await;
    let acked = producer.stop().await?;
    rolled?;
    ensure!(
        acked.len() > 50,
        "only {} messages acknowledged",
        acked.len()
    );
    all_read_back("events", ROLL_PREFIX, &acked).await
}

async fn a_drain_survives_operator_deletions_and_a_killed_broker(
    client: &Client,
) -> anyhow::Result<()> {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let restarts_before = restart_count(&pods, 1).await?;
    let producer = Producer::start(DRAIN_PREFIX).await?;
    let drained = async {
        patch(serde_json::json!({"brokerCount": 3})).await?;

        // Points of the drain at which the operator's leader is deleted: seconds after the
        // previous deletion (or the start), from a seed so a failure can be replayed.
        let seed: u64 = std::env::var("E2E_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let mut rng = seed;
        let mut next_delay = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Duration::from_secs(4 + (rng >> 33) % 10)
        };
        eprintln!("operator deletions from seed {seed} (E2E_SEED)");

        let started = Instant::now();
        let mut next_deletion = Instant::now() + next_delay();
        let mut deletions: Vec<String> = Vec::new();
        let mut killed: Option<String> = None;
        let mut replicas_seen = 4;
        loop {
            let kc = clusters.get(NAME).await?;
            let status = kc.status.clone().unwrap_or_default();
            let operation = status.operation.clone();
            let replicas = statefulsets
                .get(NAME)
                .await?
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(0);
            ensure!(
                replicas <= replicas_seen,
                "the StatefulSet grew back from {replicas_seen} to {replicas}"
            );
            replicas_seen = replicas;
            let step = operation.as_ref().map(|o| o.step.clone());
            if operation.is_none()
                && status.brokers == 3
                && replicas == 3
                && status.phase == Some(Phase::Running)
            {
                break;
            }
            if killed.is_none() && step == Some(Step::Moving) {
                kill_broker_container(&pods, 1).await?;
                killed = Some(format!("{:?}", started.elapsed()));
            }
            if deletions.len() < 5 && operation.is_some() && Instant::now() >= next_deletion {
                let deleted = delete_operator_leader(client).await?;
                deletions.push(format!(
                    "{deleted} at {:.0?} in {step:?}",
                    started.elapsed()
                ));
                next_deletion = Instant::now() + next_delay();
            }
            if started.elapsed() > Duration::from_secs(1200) {
                bail!(
                    "the drain did not end within 20 minutes: {:?}; deletions {deletions:?}",
                    operation.map(|o| (o.step, o.partitions_moved, o.partitions_total))
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "drained in {:?}; operator deleted: {deletions:?}; broker 1 killed at {killed:?}",
            started.elapsed()
        );
        ensure!(
            deletions.len() >= 5,
            "the drain ended after {} operator deletions: {deletions:?}",
            deletions.len()
        );
        ensure!(killed.is_some(), "the drain never reached Moving");
        ensure!(
            restart_count(&pods, 1).await? > restarts_before,
            "broker 1's container was not restarted"
        );
        ensure!(
            pods.get_opt(&format!("{NAME}-3")).await?.is_none(),
            "broker 3's pod is still there"
        );
        // whenScaled: Delete (the default): the removed broker's claim goes once its data moved.
        wait(
            "broker 3's claim deleted",
            Duration::from_secs(120),
            || async {
                claims
                    .get_opt(&format!("data-{NAME}-3"))
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            },
        )
        .await?;
        // No partition has a replica on broker 3, by Kafka's own tool.
        let described = in_client(&format!(
            "/opt/kafka/bin/kafka-topics.sh --bootstrap-server {BOOTSTRAP} --describe"
        ))
        .await?;
        for line in described.lines().filter(|l| l.contains("Replicas:")) {
            let replicas = line
                .split("Replicas:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_default();
            ensure!(
                !replicas.split(',').any(|r| r == "3"),
                "a replica on broker 3: {line}"
            );
        }
        wait_in_sync().await?;
        anyhow::Ok(())
    }
    .await;
    let acked = producer.stop().await?;
    drained?;
    ensure!(
        acked.len() > 50,
        "only {} messages acknowledged",
        acked.len()
    );
    all_read_back("events", DRAIN_PREFIX, &acked).await?;
    ensure!(
        bulk_end_offsets().await? == BULK_RECORDS,
        "bulk lost messages"
    );
    Ok(())
}

async fn delete_keeps_the_volumes(client: &Client) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let before: BTreeSet<String> = claims
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    let (ok, _, err) = kubectl(
        &[
            "delete",
            "kafkacluster",
            "-n",
            NS,
            NAME,
            "--wait=true",
            "--timeout=300s",
        ],
        None,
    )
    .await;
    ensure!(ok, "{err}");
    let selector = format!("app.kubernetes.io/instance={NAME}");
    wait(
        "the cluster's pods, StatefulSets and Services gone",
        Duration::from_secs(300),
        || async {
            let (_, out, _) = kubectl(
                &[
                    "get",
                    "pods,statefulsets,services,configmaps",
                    "-n",
                    NS,
                    "-l",
                    &selector,
                    "-o",
                    "name",
                ],
                None,
            )
            .await;
            out.trim().is_empty().then_some(())
        },
    )
    .await?;
    let after: BTreeSet<String> = claims
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    let expected: BTreeSet<String> = [
        format!("data-{NAME}-0"),
        format!("data-{NAME}-1"),
        format!("data-{NAME}-2"),
        format!("data-{NAME}-controller-0"),
    ]
    .into();
    ensure!(
        after == before && after == expected,
        "claims before {before:?}, after {after:?}"
    );
    // The data is still on the node's volumes.
    for claim in claims.list(&ListParams::default()).await?.items {
        let volume = claim
            .spec
            .and_then(|s| s.volume_name)
            .context("claim not bound")?;
        let path = local_path(&volume).await?;
        ensure!(
            walk_for(&path, "meta.properties"),
            "no meta.properties under {} ({volume})",
            path.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// A verifiable producer (Kafka's own) in a pod of its own, writing to `events` with acks=all
/// at a steady rate until stopped; what it reports acknowledged is what must be read back.
struct Producer {
    pod: String,
}

impl Producer {
    async fn start(prefix: u32) -> anyhow::Result<Producer> {
        let pod = format!("producer-{prefix}");
        let script = format!(
            "export LOG_DIR=/tmp/logs KAFKA_HEAP_OPTS=-Xmx128m\n\
             /opt/kafka/bin/kafka-verifiable-producer.sh --bootstrap-server {BOOTSTRAP} \
             --topic events --throughput 20 --max-messages -1 --acks -1 --value-prefix {prefix} \
             > /tmp/acks 2> /tmp/producer.err &\n\
             pid=$!\n\
             touch /tmp/ready\n\
             while [ ! -e /tmp/stop ]; do sleep 0.5; done\n\
             kill -TERM $pid\n\
             wait $pid\n\
             cat /tmp/acks\n\
             cat /tmp/producer.err >&2\n"
        );
        let manifest = node_support::restricted_pod(&pod, &script)
            .replace("spec:\n", "spec:\n  restartPolicy: Never\n");
        apply(&manifest).await?;
        wait_pod(&pod, "Ready", pod_ready).await?;
        // Until its first acknowledgement.
        let started = wait(
            "the producer's first acknowledgement",
            Duration::from_secs(120),
            || async {
                in_pod(&pod, "grep -c producer_send_success /tmp/acks")
                    .await
                    .ok()
                    .filter(|n| n.trim().parse::<u64>().unwrap_or(0) > 0)
                    .map(|_| ())
            },
        )
        .await;
        if let Err(e) = started {
            let stderr = in_pod(&pod, "cat /tmp/producer.err")
                .await
                .unwrap_or_default();
            bail!("{e:#}; the producer said:\n{stderr}");
        }
        Ok(Producer { pod })
    }

    /// Stops it and returns the values Kafka acknowledged.
    async fn stop(self) -> anyhow::Result<BTreeSet<String>> {
        in_pod(&self.pod, "touch /tmp/stop").await?;
        wait_pod(&self.pod, "finished", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        })
        .await?;
        let log = pod_log(&self.pod).await?;
        let mut acked = BTreeSet::new();
        let mut errors = 0;
        for line in log.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match event["name"].as_str() {
                Some("producer_send_success") => {
                    acked.insert(event["value"].as_str().unwrap_or_default().to_string());
                }
                Some("producer_send_error") => errors += 1,
                _ => {}
            }
        }
        eprintln!(
            "producer {}: {} acknowledged, {errors} send errors (retried or reported, never acknowledged)",
            self.pod,
            acked.len()
        );
        let _ = kubectl(
            &["delete", "pod", "-n", NS, &self.pod, "--wait=false"],
            None,
        )
        .await;
        Ok(acked)
    }
}

/// Every acknowledged value with `prefix` is in `topic`, read from the beginning by the console
/// consumer.
async fn all_read_back(topic: &str, prefix: u32, acked: &BTreeSet<String>) -> anyhow::Result<()> {
    // Up to the log end offsets as they are now (the acknowledged messages are below them),
    // so that a producer still writing does not keep the consumer going.
    let end = end_offsets(topic).await?;
    let out = in_client(&format!(
        "/opt/kafka/bin/kafka-console-consumer.sh --bootstrap-server {BOOTSTRAP} --topic {topic} \
         --from-beginning --max-messages {end} --timeout-ms 30000 2>/dev/null \
         | grep '^{prefix}\\.' ; true"
    ))
    .await?;
    let read: BTreeSet<String> = out.lines().map(str::to_string).collect();
    let missing: Vec<&String> = acked.difference(&read).take(10).collect();
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged messages not read back, e.g. {missing:?}",
        acked.difference(&read).count(),
        acked.len()
    );
    eprintln!(
        "{topic}: all {} acknowledged {prefix} messages read back",
        acked.len()
    );
    Ok(())
}

/// The sum of the bulk topic's log end offsets, by Kafka's own tool.
async fn bulk_end_offsets() -> anyhow::Result<usize> {
    end_offsets("bulk").await
}

/// The sum of `topic`'s log end offsets, by Kafka's own tool.
async fn end_offsets(topic: &str) -> anyhow::Result<usize> {
    let out = in_client(&format!(
        "/opt/kafka/bin/kafka-get-offsets.sh --bootstrap-server {BOOTSTRAP} --topic {topic} --time -1"
    ))
    .await?;
    let mut total = 0;
    for line in out.lines() {
        let offset = line.rsplit(':').next().unwrap_or_default().trim();
        total += offset
            .parse::<usize>()
            .with_context(|| format!("offset line {line:?}"))?;
    }
    Ok(total)
}

/// Until no partition is under-replicated, by Kafka's own tool.
async fn wait_in_sync() -> anyhow::Result<()> {
    wait(
        "every partition fully in sync",
        Duration::from_secs(300),
        || async {
            in_client(&format!(
                "/opt/kafka/bin/kafka-topics.sh --bootstrap-server {BOOTSTRAP} --describe \
                 --under-replicated-partitions"
            ))
            .await
            .ok()
            .filter(|out| out.trim().is_empty())
            .map(|_| ())
        },
    )
    .await
}

/// How many logs the broker found when it started, if it found them after a clean shutdown
/// (Kafka's LogManager says which).
fn clean_start_logs(log: &str) -> Option<usize> {
    if log.contains("since no clean shutdown file was found") {
        return None;
    }
    log.lines()
        .filter(|l| l.contains("since clean shutdown file was found"))
        .filter_map(|l| {
            l.split("Skipping recovery of ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .or_else(|| {
            log.contains("since clean shutdown file was found")
                .then_some(0)
        })
}

/// SIGKILL to broker `id`'s Kafka container through containerd, as an OOM kill or a crash
/// would end it; the kubelet restarts it in the same pod.
async fn kill_broker_container(pods: &Api<Pod>, id: i32) -> anyhow::Result<()> {
    let pod = pods.get(&format!("{NAME}-{id}")).await?;
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == "kafka"))
        .and_then(|c| c.container_id.clone())
        .context("no kafka container id")?;
    let container = container
        .strip_prefix("containerd://")
        .context("not a containerd container")?
        .to_string();
    let node = testbed().node.clone();
    let out = tokio::task::spawn_blocking(move || {
        let node = node.lock().unwrap_or_else(|e| e.into_inner());
        node.as_ref()
            .context("node stopped")?
            .ctr(&["tasks", "kill", "--signal", "SIGKILL", &container])
    })
    .await??;
    ensure!(
        out.status.success(),
        "ctr tasks kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("killed broker {id}'s container");
    Ok(())
}

async fn restart_count(pods: &Api<Pod>, id: i32) -> anyhow::Result<i32> {
    Ok(pods
        .get(&format!("{NAME}-{id}"))
        .await?
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().find(|c| c.name == "kafka"))
        .map(|c| c.restart_count)
        .unwrap_or(0))
}

/// Deletes the operator replica that holds the Lease (SIGTERM, as a rollout or an eviction
/// would) and waits for another replica to take it.
async fn delete_operator_leader(client: &Client) -> anyhow::Result<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kafka-operator");
    let holder = || async {
        leases
            .get_opt("kafka-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    };
    let leader = wait("an operator leader", Duration::from_secs(120), holder).await?;
    let (ok, _, err) = kubectl(
        &[
            "delete",
            "pod",
            "-n",
            "kafka-operator",
            &leader,
            "--wait=false",
        ],
        None,
    )
    .await;
    ensure!(ok, "{err}");
    wait(
        "another operator replica to lead",
        Duration::from_secs(120),
        || async { holder().await.filter(|h| *h != leader) },
    )
    .await?;
    Ok(leader)
}

/// Until pod `name` is `what` (as `done` says).
async fn wait_pod(name: &str, what: &str, done: fn(&Pod) -> bool) -> anyhow::Result<()> {
    let client = testbed().kube.admin_client().await?;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    wait(
        &format!("pod {name} {what}"),
        Duration::from_secs(120),
        || async {
            pods.get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(done)
                .map(|_| ())
        },
    )
    .await
}

async fn broker_pods(pods: &Api<Pod>) -> anyhow::Result<Vec<Pod>> {
    let list = pods
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={NAME},app.kubernetes.io/component=broker"
        )))
        .await?;
    Ok(list.items)
}

async fn phase(client: &Client) -> anyhow::Result<Option<Phase>> {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    Ok(clusters.get(NAME).await?.status.and_then(|s| s.phase))
}

async fn apply(manifest: &str) -> anyhow::Result<()> {
    let (ok, _, err) = kubectl(&["apply", "-n", NS, "-f", "-"], Some(manifest)).await;
    ensure!(ok, "kubectl apply: {err}");
    Ok(())
}

async fn patch(spec: serde_json::Value) -> anyhow::Result<()> {
    let patch = serde_json::json!({ "spec": spec }).to_string();
    let (ok, _, err) = kubectl(
        &[
            "patch",
            "kafkacluster",
            "-n",
            NS,
            NAME,
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    )
    .await;
    ensure!(ok, "kubectl patch: {err}");
    Ok(())
}

async fn pod_log(pod: &str) -> anyhow::Result<String> {
    let (ok, out, err) = kubectl(&["logs", "-n", NS, pod], None).await;
    ensure!(ok, "kubectl logs {pod}: {err}");
    Ok(out)
}

async fn in_client(script: &str) -> anyhow::Result<String> {
    let (ok, out, err) = exec_in_client(NS, script).await;
    ensure!(ok, "{script}: {err}");
    Ok(out)
}

async fn in_pod(pod: &str, script: &str) -> anyhow::Result<String> {
    let (ok, out, err) = kubectl(&["exec", "-n", NS, pod, "--", "bash", "-c", script], None).await;
    ensure!(ok, "{script} in {pod}: {err}");
    Ok(out)
}

/// The node directory of local volume `volume`.
async fn local_path(volume: &str) -> anyhow::Result<std::path::PathBuf> {
    let (ok, path, err) = kubectl(
        &["get", "pv", volume, "-o", "jsonpath={.spec.local.path}"],
        None,
    )
    .await;
    ensure!(ok && !path.trim().is_empty(), "volume {volume}: {err}");
    Ok(path.trim().into())
}

fn walk_for(dir: &std::path::Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        path.file_name().is_some_and(|n| n == name) || (path.is_dir() && walk_for(&path, name))
    })
}
