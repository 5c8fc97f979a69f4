//! The admin layer against a ZooKeeper-mode cluster (Kafka 3.9: one ZooKeeper, 3 brokers
//! configured by the operator's ZooKeeper-mode rendering).

#[path = "support/kafka_support.rs"]
mod kafka_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use kafka_operator::kafka::{KafkaAdmin, KafkaError, NewTopic, TopicPartition};
use kafka_operator_testbed::kafka::{LocalKafka, LocalKafkaOptions};

use kafka_support::{Scenarios, assert_same_messages, consume_all, produce, wait_for};

const BROKERS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_zookeeper_mode_scenarios() {
    let started = Instant::now();
    let kafka = LocalKafka::start_zookeeper_mode(LocalKafkaOptions::zookeeper(BROKERS))
        .await
        .expect("the local ZooKeeper-mode cluster starts");
    eprintln!("cluster up in {:.1}s", started.elapsed().as_secs_f64());
    let mut s = Scenarios::new();
    s.run(
        "snapshot, create topic, reassign in ZooKeeper mode",
        Box::pin(scenario(&kafka)),
    )
    .await;
    s.finish();
}

async fn scenario(kafka: &LocalKafka) -> anyhow::Result<()> {
    ensure!(!kafka.cluster().is_kraft());
    let admin = kafka.admin()?;
    // Brokers answer before ZooKeeper has elected one of them controller (NO_ACTIVE_CONTROLLER
    // until then), as the operator's retries allow for.
    let snap = wait_for(
        "a controller and every broker",
        Duration::from_secs(60),
        || async {
            let snap = admin.snapshot().await?;
            Ok((snap.broker_ids() == (0..BROKERS).collect()).then_some(snap))
        },
    )
    .await?;
    // In ZooKeeper mode the controller is one of the brokers.
    ensure!(
        snap.controller_id
            .is_some_and(|c| (0..BROKERS).contains(&c))
    );

    admin
        .create_topics(&[NewTopic {
            name: "zk-topic".into(),
            partitions: 3,
            replication_factor: 2,
            config: BTreeMap::new(),
        }])
        .await?;
    let snap = wait_for("zk-topic with leaders", Duration::from_secs(60), || async {
        let snap = admin.snapshot().await?;
        let ready = snap.topics.get("zk-topic").is_some_and(|t| {
            t.partitions.len() == 3 && t.partitions.iter().all(|p| p.leader.is_some())
        });
        Ok(ready.then_some(snap))
    })
    .await?;
    let bootstrap = kafka.bootstrap_servers();
    let sent = produce(&bootstrap, "zk-topic", 0..2000, 200).await?;

    // Move every partition one broker along; reassignments go to the controller broker.
    let target: BTreeMap<TopicPartition, Vec<i32>> = snap
        .assignment()
        .into_iter()
        .filter(|(tp, _)| tp.topic == "zk-topic")
        .map(|(tp, r)| (tp, r.iter().map(|b| (b + 1) % BROKERS).collect()))
        .collect();
    admin.alter_reassignments(&target).await?;
    let done = wait_for(
        "the reassignment to finish",
        Duration::from_secs(120),
        || async {
            let snap = admin.snapshot().await?;
            let moving = !snap.reassignments.is_empty();
            let in_sync = snap.topics["zk-topic"]
                .partitions
                .iter()
                .all(|p| p.fully_in_sync());
            // The controller reports a move done before every broker's metadata shows it, and
            // the metadata may come from a broker that lags: done is when it shows the target.
            let shown = target
                .iter()
                .all(|(tp, r)| snap.partition(tp).is_some_and(|p| &p.replicas == r));
            Ok((!moving && in_sync && shown).then_some(snap))
        },
    )
    .await?;
    for (tp, replicas) in &target {
        let p = done.partition(tp).context("partition")?;
        ensure!(
            &p.replicas == replicas,
            "{tp}: {:?} != {replicas:?}",
            p.replicas
        );
    }
    // The snapshot that saw the move finish asked for log dirs concurrently with metadata, so a
    // new replica's log may postdate its broker's answer: a later snapshot must size every replica.
    wait_for(
        "DescribeLogDirs to size every replica in ZooKeeper mode too",
        Duration::from_secs(30),
        || async {
            let snap = admin.snapshot().await?;
            let sized = snap.topics["zk-topic"].partitions.iter().all(|p| {
                p.replicas
                    .iter()
                    .all(|b| p.size_bytes.get(b).is_some_and(|&n| n > 0))
            });
            Ok(sized.then_some(()))
        },
    )
    .await?;
    let got = consume_all(
        &bootstrap,
        "zk-topic",
        3,
        sent.len(),
        Duration::from_secs(60),
    )
    .await?;
    assert_same_messages(&sent, &got)?;

    // Unregistering is a KRaft operation: refused with an explanation, not a hang.
    match admin.unregister_broker(2).await {
        Err(e @ KafkaError::Unsupported(_)) => ensure!(e.to_string().contains("KRaft"), "{e}"),
        other => bail!("expected Unsupported, got {other:?}"),
    }
    Ok(())
}
