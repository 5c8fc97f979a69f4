//! The admin layer against a real KRaft cluster (3 controllers, 4 brokers) whose nodes are
//! configured by the operator's own rendering.
//!
//! One cluster serves all scenarios (a JVM cluster takes ~20 s to start on two cores); each
//! scenario uses its own topics, and a failure names its scenario. Scenarios that stop or kill
//! brokers run last.

#[path = "support/kafka_support.rs"]
mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use kafka_operator::api::{TopicPhase, TopicSpec, TopicStatus};
use kafka_operator::kafka::throttle::{
    FOLLOWER_RATE, FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS,
};
use kafka_operator::kafka::{
    BrokerId, ClusterSnapshot, ConfigOp, ConfigResource, KafkaAdmin, KafkaClient,
    KafkaClientConfig, KafkaError, NewTopic, Throttle, TopicPartition,
};
use kafka_operator::operations::broker_config;
use kafka_operator::operations::topics::{plan_topics, reconcile_topics};
use kafka_operator::planner::PartitionAssignment;
use kafka_operator::planner::json::{parse_reassignment, reassignment_json};
use kafka_operator_testbed::kafka::{LocalKafka, LocalKafkaOptions};
use kafka_operator_testbed::process::{free_port, operator_binary};

use kafka_support::{Scenarios, assert_same_messages, consume_all, produce, wait_for};

const BROKERS: i32 = 4;
const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_admin_scenarios() {
    let started = Instant::now();
    let mut kafka = LocalKafka::start(LocalKafkaOptions::kraft(BROKERS))
        .await
        .expect("the local KRaft cluster starts");
    eprintln!("cluster up in {:.1}s", started.elapsed().as_secs_f64());
    let admin = kafka.admin().unwrap();

    let mut s = Scenarios::new();
    s.run(
        "snapshot lists brokers, partitions and sizes",
        Box::pin(snapshot(&kafka, &admin)),
    )
    .await;
    s.run(
        "a broker that cannot describe its log dirs is not taken to hold nothing",
        Box::pin(silent_log_dirs(&kafka, &admin)),
    )
    .await;
    s.run(
        "topics are created and grown",
        Box::pin(create_and_grow(&admin)),
    )
    .await;
    s.run("configs change incrementally", Box::pin(configs(&admin)))
        .await;
    s.run(
        "errors are typed and say what to do",
        Box::pin(errors(&kafka, &admin)),
    )
    .await;
    s.run(
        "address override is used",
        Box::pin(address_override(&kafka)),
    )
    .await;
    s.run(
        "reassignment under load keeps every message, throttled",
        Box::pin(reassign_under_load(&kafka, &admin)),
    )
    .await;
    s.run(
        "cancel restores the original replicas",
        Box::pin(cancel(&kafka, &admin)),
    )
    .await;
    s.run(
        "preferred leader election balances leaders",
        Box::pin(elect(&admin)),
    )
    .await;
    s.run("topic reconcile is idempotent", Box::pin(reconcile(&admin)))
        .await;
    s.run(
        "an existing topic adopted into the spec keeps the settings the spec does not name",
        Box::pin(adopt(&admin)),
    )
    .await;
    s.run(
        "the plan CLI's output runs with kafka-reassign-partitions --execute",
        Box::pin(plan_cli_round_trip(&kafka, &admin)),
    )
    .await;
    s.run(
        "broker killed mid-reassignment loses no message",
        Box::pin(kill_mid_reassignment(&mut kafka, &admin)),
    )
    .await;
    s.run(
        "broker settings Kafka changes live go live on every broker, read-only ones restart",
        Box::pin(live_settings(&kafka, &admin)),
    )
    .await;
    s.run(
        "a stopped broker's throttle is cleared, and it is unregistered",
        Box::pin(unregister(&mut kafka, &admin)),
    )
    .await;
    s.run(
        "the metadata quorum shows a restarted controller catching up",
        Box::pin(quorum(&mut kafka, &admin)),
    )
    .await;
    eprintln!("all scenarios in {:.1}s", started.elapsed().as_secs_f64());
    s.finish();
}

fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition::new(topic, p)
}

async fn create(admin: &KafkaClient, name: &str, partitions: i32, rf: i32) -> anyhow::Result<()> {
    create_with(admin, name, partitions, rf, &[]).await
}

async fn create_with(
    admin: &KafkaClient,
    name: &str,
    partitions: i32,
    rf: i32,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    admin
        .create_topics(&[NewTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }])
        .await?;
    // Creation returns when the controller committed it; wait until the brokers serve it.
    wait_for(&format!("topic {name} with leaders"), LONG, || async {
        let snap = admin.snapshot().await?;
        Ok(snap.topics.get(name).and_then(|t| {
            (t.partitions.len() == partitions as usize
                && t.partitions.iter().all(|p| p.leader.is_some()))
            .then_some(())
        }))
    })
    .await
}

/// Waits until no reassignment of `topic` is in progress, every partition is fully in sync,
/// and the metadata shows each partition in `target` with exactly those replicas. A broker's
/// metadata can lag the controller by a moment, so "not listed" alone does not mean "done".
async fn settled(
    admin: &KafkaClient,
    topic: &str,
    target: &BTreeMap<TopicPartition, Vec<BrokerId>>,
) -> anyhow::Result<ClusterSnapshot> {
    wait_for(
        &format!("reassignments of {topic} to finish"),
        LONG,
        || async {
            let snap = admin.snapshot().await?;
            let moving = snap.reassignments.keys().any(|tp| tp.topic == topic);
            let in_sync = snap
                .topics
                .get(topic)
                .map(|t| {
                    t.partitions
                        .iter()
                        .all(|p| p.fully_in_sync() && p.leader.is_some())
                })
                .unwrap_or(false);
            let at_target = target
                .iter()
                .all(|(tp, r)| snap.partition(tp).map(|p| &p.replicas) == Some(r));
            Ok((!moving && in_sync && at_target).then_some(snap))
        },
    )
    .await
}

fn config_value(
    configs: &BTreeMap<ConfigResource, BTreeMap<String, kafka_operator::kafka::ConfigValue>>,
    resource: &ConfigResource,
    key: &str,
) -> Option<String> {
    configs
        .get(resource)?
        .get(key)
        .filter(|v| !v.is_default)
        .and_then(|v| v.value.clone())
        .filter(|v| !v.is_empty())
}

/// Waits until a config key reads `expected` (None: unset/default). Changes reach the brokers
/// through the metadata log, so a read right after a write may still see the old value.
async fn config_becomes(
    admin: &KafkaClient,
    resource: &ConfigResource,
    key: &str,
    expected: Option<&str>,
) -> anyhow::Result<()> {
    wait_for(
        &format!("{key} of {resource} to be {expected:?}"),
        Duration::from_secs(30),
        || async {
            let c = admin
                .describe_configs(std::slice::from_ref(resource))
                .await?;
            let v = config_value(&c, resource, key);
            if v.as_deref() != expected {
                bail!("{key} is {v:?}");
            }
            Ok(Some(()))
        },
    )
    .await
}

/// Sets a throttle and waits until every broker involved applies it (configs travel through the
/// metadata log; a move submitted before they arrive starts unthrottled).
async fn throttle_applied(admin: &KafkaClient, throttle: &Throttle) -> anyhow::Result<()> {
    admin.set_throttle(throttle).await?;
    let rate = throttle.rate.to_string();
    for b in &throttle.brokers {
        for key in [LEADER_RATE, FOLLOWER_RATE] {
            config_becomes(admin, &ConfigResource::Broker(*b), key, Some(&rate)).await?;
        }
    }
    for (topic, configs) in throttle.topic_configs() {
        for (key, value) in configs {
            config_becomes(
                admin,
                &ConfigResource::Topic(topic.clone()),
                &key,
                Some(&value),
            )
            .await?;
        }
    }
    Ok(())
}

async fn silent_log_dirs(kafka: &LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    let all: BTreeSet<BrokerId> = (0..BROKERS).collect();
    let snap = admin.snapshot().await?;
    ensure!(
        snap.log_dirs_described == all,
        "every live broker describes its log dirs: {:?}",
        snap.log_dirs_described
    );
    // A client whose connections to broker 1 go nowhere: metadata (from the others) still
    // lists broker 1 and its replicas, but broker 1 answers no DescribeLogDirs.
    let dead = free_port()?;
    let cut_off = KafkaClient::new(
        KafkaClientConfig::new(kafka.bootstrap_list())
            .with_timeout(Duration::from_secs(5))
            .with_address_override(move |id, host, port| {
                if id == 1 {
                    ("127.0.0.1".into(), dead)
                } else {
                    (host.to_string(), port)
                }
            }),
    )?;
    let snap = cut_off.snapshot().await?;
    ensure!(snap.broker_ids() == all, "broker 1 is live: {snap:?}");
    ensure!(
        snap.log_dirs_described == all.iter().copied().filter(|b| *b != 1).collect(),
        "broker 1 said nothing, and the snapshot says so: {:?}",
        snap.log_dirs_described
    );
    let snap_topic = snap
        .partitions()
        .find(|(_, p)| p.replicas.contains(&1))
        .map(|(tp, _)| tp);
    if let Some(tp) = snap_topic {
        let p = snap.partition(&tp).context("partition")?;
        ensure!(
            !p.size_bytes.contains_key(&1),
            "no size for broker 1's replica of {tp}: {p:?}"
        );
    }
    Ok(())
}

async fn snapshot(kafka: &LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    create(admin, "snap", 6, 3).await?;
    produce(&kafka.bootstrap_servers(), "snap", 0..600, 500).await?;
    let snap = wait_for("log dir sizes of topic snap", LONG, || async {
        let snap = admin.snapshot().await?;
        let partitions = &snap.topics["snap"].partitions;
        let sized = partitions
            .iter()
            .all(|p| p.size_bytes.len() == 3 && p.size_bytes.values().all(|s| *s > 0));
        if !sized {
            let sizes: Vec<_> = partitions.iter().map(|p| &p.size_bytes).collect();
            bail!("sizes so far: {sizes:?}");
        }
        Ok(Some(snap))
    })
    .await?;
    ensure!(
        snap.broker_ids() == (0..BROKERS).collect::<BTreeSet<_>>(),
        "{snap:?}"
    );
    ensure!(snap.cluster_id.as_deref() == Some(kafka.cluster_id()));
    let topic = &snap.topics["snap"];
    ensure!(topic.replication_factor() == 3 && !topic.internal);
    for p in &topic.partitions {
        ensure!(p.replicas.len() == 3, "{p:?}");
        ensure!(p.fully_in_sync(), "{p:?}");
        ensure!(p.leader.is_some_and(|l| p.replicas.contains(&l)), "{p:?}");
        let replicas: BTreeSet<_> = p.replicas.iter().copied().collect();
        let sized: BTreeSet<_> = p.size_bytes.keys().copied().collect();
        ensure!(
            replicas == sized,
            "sizes come from the replicas' brokers: {p:?}"
        );
    }
    // 600 messages of 500 bytes: each replica holds its partition's share, all copies together
    // at least 3 x 300 kB.
    let total: u64 = topic
        .partitions
        .iter()
        .map(|p| p.size_bytes.values().sum::<u64>())
        .sum();
    ensure!(total >= 3 * 600 * 500, "total size {total}");
    ensure!(snap.reassignments.is_empty());
    ensure!(snap.under_replicated().is_empty());
    // Each broker's own metadata: every live one lists every broker as live and the topic as
    // the snapshot does, all in sync; an id that is no live broker has its error and does not
    // fail the others.
    let ask: Vec<i32> = (0..BROKERS).chain([42]).collect();
    wait_for(
        "every broker's own metadata of topic snap",
        LONG,
        || async {
            let answers = admin.metadata_by_broker(&ask).await?;
            ensure!(answers.len() == ask.len(), "{answers:?}");
            ensure!(answers[&42].is_err(), "{:?}", answers[&42]);
            for b in 0..BROKERS {
                let view = match &answers[&b] {
                    Ok(view) => view,
                    Err(e) => bail!("broker {b}: {e}"),
                };
                let live: BTreeSet<i32> = (0..BROKERS).collect();
                ensure!(
                    view.brokers == live,
                    "broker {b} lists brokers {:?} as live",
                    view.brokers
                );
                let Some(mine) = view.topics.get("snap") else {
                    bail!("broker {b} does not list topic snap yet");
                };
                for (p, q) in mine.partitions.iter().zip(&topic.partitions) {
                    ensure!(p.partition == q.partition, "broker {b}: {mine:?}");
                    ensure!(p.replicas == q.replicas, "broker {b}: {p:?} vs {q:?}");
                    ensure!(
                        p.fully_in_sync() && p.size_bytes.is_empty(),
                        "broker {b}: {p:?}"
                    );
                }
                ensure!(
                    mine.partitions.len() == topic.partitions.len(),
                    "broker {b}: {mine:?}"
                );
            }
            Ok(Some(()))
        },
    )
    .await?;
    Ok(())
}

async fn create_and_grow(admin: &KafkaClient) -> anyhow::Result<()> {
    create_with(admin, "grow", 2, 2, &[("retention.ms", "3600000")]).await?;
    // Creating again is not an error.
    create(admin, "grow", 2, 2).await?;
    admin.create_partitions("grow", 5).await?;
    wait_for("5 partitions", LONG, || async {
        let snap = admin.snapshot().await?;
        Ok((snap.topics["grow"].partitions.len() == 5).then_some(()))
    })
    .await?;
    let snap = admin.snapshot().await?;
    ensure!(snap.topics["grow"].replication_factor() == 2);
    let configs = admin
        .describe_configs(&[ConfigResource::Topic("grow".into())])
        .await?;
    ensure!(
        config_value(
            &configs,
            &ConfigResource::Topic("grow".into()),
            "retention.ms"
        )
        .as_deref()
            == Some("3600000")
    );
    match admin.create_partitions("grow", 3).await {
        Err(e @ KafkaError::Refused { .. }) => ensure!(!e.is_retriable()),
        other => bail!("shrinking partitions must be refused, got {other:?}"),
    }
    Ok(())
}

async fn configs(admin: &KafkaClient) -> anyhow::Result<()> {
    create_with(
        admin,
        "configs",
        1,
        1,
        &[("retention.ms", "1000000"), ("cleanup.policy", "compact")],
    )
    .await?;
    let topic = ConfigResource::Topic("configs".into());
    admin
        .alter_configs(
            &topic,
            &BTreeMap::from([("retention.ms".into(), ConfigOp::Set("2000000".into()))]),
        )
        .await?;
    config_becomes(admin, &topic, "retention.ms", Some("2000000")).await?;
    // Incremental: the key not named keeps its value.
    config_becomes(admin, &topic, "cleanup.policy", Some("compact")).await?;
    admin
        .alter_configs(
            &topic,
            &BTreeMap::from([("retention.ms".into(), ConfigOp::Delete)]),
        )
        .await?;
    config_becomes(admin, &topic, "retention.ms", None).await?;

    // A broker's dynamic config, sent to that broker.
    let broker = ConfigResource::Broker(1);
    admin
        .alter_configs(
            &broker,
            &BTreeMap::from([(
                "log.cleaner.backoff.ms".into(),
                ConfigOp::Set("20000".into()),
            )]),
        )
        .await?;
    config_becomes(admin, &broker, "log.cleaner.backoff.ms", Some("20000")).await?;
    admin
        .alter_configs(
            &broker,
            &BTreeMap::from([("log.cleaner.backoff.ms".into(), ConfigOp::Delete)]),
        )
        .await?;
    config_becomes(admin, &broker, "log.cleaner.backoff.ms", None).await?;

    // A bad value is refused, not retried.
    match admin
        .alter_configs(
            &topic,
            &BTreeMap::from([("retention.ms".into(), ConfigOp::Set("soon".into()))]),
        )
        .await
    {
        Err(e @ KafkaError::Refused { .. }) => ensure!(e.to_string().contains("retention.ms")),
        other => bail!("a bad config value must be refused, got {other:?}"),
    }
    Ok(())
}

async fn errors(kafka: &LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    match admin
        .describe_configs(&[ConfigResource::Topic("no-such-topic".into())])
        .await
    {
        Err(KafkaError::UnknownTopic { topic }) => ensure!(topic == "no-such-topic"),
        other => bail!("expected UnknownTopic, got {other:?}"),
    }
    match admin.create_partitions("no-such-topic", 3).await {
        Err(KafkaError::UnknownTopic { .. }) => {}
        other => bail!("expected UnknownTopic, got {other:?}"),
    }
    create(admin, "errors", 1, 1).await?;
    match admin
        .alter_reassignments(&BTreeMap::from([(tp("errors", 0), vec![42])]))
        .await
    {
        Err(e @ KafkaError::Refused { .. }) => ensure!(!e.is_retriable(), "{e}"),
        other => bail!("a reassignment to a missing broker must be refused, got {other:?}"),
    }
    match admin
        .create_topics(&[NewTopic {
            name: "too-replicated".into(),
            partitions: 1,
            replication_factor: BROKERS + 1,
            config: BTreeMap::new(),
        }])
        .await
    {
        Err(e @ KafkaError::Refused { .. }) => {
            ensure!(e.to_string().contains("INVALID_REPLICATION_FACTOR"), "{e}")
        }
        other => bail!("RF above the broker count must be refused, got {other:?}"),
    }
    // Every call is bounded by the client's timeout.
    let hasty = KafkaClient::new(
        KafkaClientConfig::new(kafka.bootstrap_list()).with_timeout(Duration::from_millis(1)),
    )?;
    match hasty.snapshot().await {
        Err(e @ KafkaError::Timeout { .. }) => ensure!(e.is_retriable()),
        other => bail!("expected a timeout, got {other:?}"),
    }
    Ok(())
}

async fn address_override(kafka: &LocalKafka) -> anyhow::Result<()> {
    // Brokers advertise 127.0.0.1; the override sends protocol connections to "localhost"
    // instead, except broker 2, which it maps to a closed port.
    let config = KafkaClientConfig::new(kafka.bootstrap_list())
        .with_timeout(Duration::from_secs(10))
        .with_address_override(|id, _host, port| {
            if id == 2 {
                ("127.0.0.1".into(), 1)
            } else {
                ("localhost".into(), port)
            }
        });
    let admin = KafkaClient::new(config)?;
    let reset = BTreeMap::from([("log.cleaner.backoff.ms".into(), ConfigOp::Delete)]);
    admin
        .alter_configs(&ConfigResource::Broker(1), &reset)
        .await?;
    match admin
        .alter_configs(&ConfigResource::Broker(2), &reset)
        .await
    {
        Err(e @ KafkaError::Unreachable { .. }) => {
            ensure!(e.to_string().contains("broker 2 at 127.0.0.1:1"), "{e}");
            ensure!(e.is_retriable());
        }
        other => bail!("broker 2 must be unreachable through the override, got {other:?}"),
    }
    Ok(())
}

/// Moves every replica of a partition to the next broker(s).
fn shifted(replicas: &[BrokerId], by: i32) -> Vec<BrokerId> {
    replicas
        .iter()
        .map(|b| (b + by).rem_euclid(BROKERS))
        .collect()
}

async fn reassign_under_load(kafka: &LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    const TOPIC: &str = "moving";
    const COUNT: usize = 10_000;
    create_with(admin, TOPIC, 4, 2, &[("min.insync.replicas", "2")]).await?;
    let bootstrap = kafka.bootstrap_servers();
    let first = produce(&bootstrap, TOPIC, 0..COUNT / 2, 200).await?;

    let before = admin.snapshot().await?;
    let current: BTreeMap<_, _> = before
        .assignment()
        .into_iter()
        .filter(|(tp, _)| tp.topic == TOPIC)
        .collect();
    let target: BTreeMap<_, _> = current
        .iter()
        .map(|(tp, r)| (tp.clone(), shifted(r, 2)))
        .collect();
    let throttle = Throttle::for_moves(&current, &target, 10_000_000);
    ensure!(throttle.brokers.len() == BROKERS as usize);
    admin.set_throttle(&throttle).await?;

    // The second half is produced while the replicas move.
    let producer = tokio::spawn({
        let bootstrap = bootstrap.clone();
        async move { produce(&bootstrap, TOPIC, COUNT / 2..COUNT, 200).await }
    });
    admin.alter_reassignments(&target).await?;

    let topic = ConfigResource::Topic(TOPIC.into());
    let expected = throttle.topic_configs();
    for key in [LEADER_REPLICAS, FOLLOWER_REPLICAS] {
        config_becomes(
            admin,
            &topic,
            key,
            expected[TOPIC].get(key).map(String::as_str),
        )
        .await?;
    }
    for b in &throttle.brokers {
        for key in [LEADER_RATE, FOLLOWER_RATE] {
            config_becomes(admin, &ConfigResource::Broker(*b), key, Some("10000000")).await?;
        }
    }
    let second = producer.await??;
    settled(admin, TOPIC, &target).await?;

    let brokers: Vec<BrokerId> = throttle.brokers.iter().copied().collect();
    admin.clear_throttle(&brokers, &[TOPIC.to_string()]).await?;
    for key in [LEADER_REPLICAS, FOLLOWER_REPLICAS] {
        config_becomes(admin, &topic, key, None).await?;
    }
    for b in &throttle.brokers {
        for key in [LEADER_RATE, FOLLOWER_RATE] {
            config_becomes(admin, &ConfigResource::Broker(*b), key, None).await?;
        }
    }

    let sent: std::collections::HashSet<Vec<u8>> = first.union(&second).cloned().collect();
    ensure!(sent.len() == COUNT);
    let got = consume_all(&bootstrap, TOPIC, 4, COUNT, LONG).await?;
    assert_same_messages(&sent, &got)
}

async fn cancel(kafka: &LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    const TOPIC: &str = "cancelled";
    create(admin, TOPIC, 1, 1).await?;
    // 6 MB at a 100 kB/s throttle: the copy would take a minute.
    let sent = produce(&kafka.bootstrap_servers(), TOPIC, 0..1500, 4096).await?;
    let snap = admin.snapshot().await?;
    let original = snap
        .partition(&tp(TOPIC, 0))
        .context("partition")?
        .replicas
        .clone();
    let target = vec![(original[0] + 1).rem_euclid(BROKERS)];
    let current = BTreeMap::from([(tp(TOPIC, 0), original.clone())]);
    let targets = BTreeMap::from([(tp(TOPIC, 0), target.clone())]);
    let throttle = Throttle::for_moves(&current, &targets, 100_000);
    throttle_applied(admin, &throttle).await?;
    admin.alter_reassignments(&targets).await?;

    let ongoing = admin.list_reassignments().await?;
    let r = ongoing
        .get(&tp(TOPIC, 0))
        .context("the throttled reassignment is listed as in progress")?;
    ensure!(r.adding == target && r.removing == original, "{r:?}");
    ensure!(r.target() == target);
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        admin
            .list_reassignments()
            .await?
            .contains_key(&tp(TOPIC, 0)),
        "the move finished before the cancel: the scenario needs more data or a lower throttle"
    );

    admin.cancel_reassignments(&[tp(TOPIC, 0)]).await?;
    // Cancelling again (nothing in progress) is not an error.
    settled(admin, TOPIC, &current).await?;
    admin.cancel_reassignments(&[tp(TOPIC, 0)]).await?;
    let brokers: Vec<BrokerId> = throttle.brokers.iter().copied().collect();
    admin.clear_throttle(&brokers, &[TOPIC.to_string()]).await?;
    let got = consume_all(&kafka.bootstrap_servers(), TOPIC, 1, sent.len(), LONG).await?;
    assert_same_messages(&sent, &got)
}

async fn elect(admin: &KafkaClient) -> anyhow::Result<()> {
    const TOPIC: &str = "leaders";
    create(admin, TOPIC, 8, 2).await?;
    let snap = admin.snapshot().await?;
    // Reverse every replica list: the same brokers (no data moves) but the preferred leader is
    // now the other replica, so every partition is led by a non-preferred replica.
    let reversed: BTreeMap<_, _> = snap
        .assignment()
        .into_iter()
        .filter(|(tp, _)| tp.topic == TOPIC)
        .map(|(tp, mut r)| {
            r.reverse();
            (tp, r)
        })
        .collect();
    admin.alter_reassignments(&reversed).await?;
    let snap = settled(admin, TOPIC, &reversed).await?;
    let misled = snap.topics[TOPIC]
        .partitions
        .iter()
        .filter(|p| p.leader != p.replicas.first().copied())
        .count();
    ensure!(
        misled == 8,
        "{misled} of 8 partitions led by a non-preferred replica"
    );

    let partitions: Vec<TopicPartition> = (0..8).map(|p| tp(TOPIC, p)).collect();
    let outcome = admin.elect_preferred_leaders(Some(&partitions)).await?;
    ensure!(outcome.elected == partitions, "{outcome:?}");
    ensure!(outcome.failed.is_empty(), "{outcome:?}");
    // The brokers learn the new leaders a moment after the election returns.
    let snap = wait_for("the elected leaders", Duration::from_secs(30), || async {
        let snap = admin.snapshot().await?;
        for p in &snap.topics[TOPIC].partitions {
            ensure!(p.leader == p.replicas.first().copied(), "{p:?}");
        }
        Ok(Some(snap))
    })
    .await?;
    let mut leaders = BTreeMap::<BrokerId, usize>::new();
    for p in &snap.topics[TOPIC].partitions {
        *leaders.entry(p.leader.unwrap_or(-1)).or_default() += 1;
    }
    let (min, max) = (
        leaders.values().min().copied().unwrap_or(0),
        leaders.values().max().copied().unwrap_or(0),
    );
    ensure!(
        leaders.len() == BROKERS as usize && max - min <= 1,
        "leaders per broker {leaders:?}"
    );
    // A second election has nothing to do.
    let again = admin.elect_preferred_leaders(Some(&partitions)).await?;
    ensure!(
        again.elected.is_empty() && again.not_needed == 8,
        "{again:?}"
    );
    Ok(())
}

async fn reconcile(admin: &KafkaClient) -> anyhow::Result<()> {
    let mut spec = vec![
        TopicSpec {
            name: "managed-a".into(),
            partitions: 3,
            replication_factor: 2,
            config: BTreeMap::from([("retention.ms".into(), "7200000".into())]),
        },
        TopicSpec {
            name: "managed-b".into(),
            partitions: 2,
            replication_factor: 1,
            config: BTreeMap::new(),
        },
    ];
    // The previous round's statuses, as the controller keeps them in the KafkaCluster status.
    let last = std::cell::RefCell::new(Vec::new());
    let first = round(admin, &spec, &last).await?;
    ensure!(
        first.iter().all(|s| s.state == TopicPhase::Creating),
        "{first:?}"
    );
    let second = wait_for("topics Ready", LONG, || async {
        let st = round(admin, &spec, &last).await?;
        Ok(st
            .iter()
            .all(|s| s.state == TopicPhase::Ready)
            .then_some(st))
    })
    .await?;
    ensure!(second[0].partitions == 3 && second[0].replication_factor == 2);
    // Idempotent: the plan against what Kafka now reports is empty.
    let snap = admin.snapshot().await?;
    let configs = admin
        .describe_configs(&[
            ConfigResource::Topic("managed-a".into()),
            ConfigResource::Topic("managed-b".into()),
        ])
        .await?
        .into_iter()
        .filter_map(|(r, c)| match r {
            ConfigResource::Topic(t) => Some((t, c)),
            _ => None,
        })
        .collect();
    let plan = plan_topics(&spec, &snap, &configs, &last.borrow());
    ensure!(plan.is_empty(), "second plan not empty: {plan:?}");

    // Grow and change a config; then refuse a shrink; then ask for a higher RF.
    spec[0].partitions = 5;
    spec[0]
        .config
        .insert("retention.ms".into(), "3600000".into());
    let grown = round(admin, &spec, &last).await?;
    ensure!(
        grown[0].state == TopicPhase::Ready && grown[0].partitions == 5,
        "{grown:?}"
    );
    let managed_a = ConfigResource::Topic("managed-a".into());
    config_becomes(admin, &managed_a, "retention.ms", Some("3600000")).await?;
    // A key dropped from the spec goes back to its default: no longer set on the topic.
    spec[0].config.clear();
    round(admin, &spec, &last).await?;
    wait_for("retention.ms of managed-a to be reset", LONG, || async {
        let c = admin
            .describe_configs(std::slice::from_ref(&managed_a))
            .await?;
        let entry = c[&managed_a].get("retention.ms").context("retention.ms")?;
        Ok((!entry.overridden).then_some(()))
    })
    .await?;
    spec[0].partitions = 2;
    let shrink = round(admin, &spec, &last).await?;
    ensure!(shrink[0].state == TopicPhase::Error, "{shrink:?}");
    ensure!(
        shrink[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("cannot remove partitions")),
        "{shrink:?}"
    );
    spec[0].partitions = 5;
    spec[1].replication_factor = 2;
    let rf = round(admin, &spec, &last).await?;
    ensure!(
        rf[1].state == TopicPhase::Reassigning && rf[1].replication_factor == 1,
        "{rf:?}"
    );
    // A value Kafka refuses puts only that topic in Error.
    spec[1].replication_factor = 1;
    spec[1]
        .config
        .insert("cleanup.policy".into(), "sometimes".into());
    let bad = round(admin, &spec, &last).await?;
    ensure!(
        bad[0].state == TopicPhase::Ready && bad[1].state == TopicPhase::Error,
        "{bad:?}"
    );
    Ok(())
}

async fn adopt(admin: &KafkaClient) -> anyhow::Result<()> {
    const TOPIC: &str = "adopted";
    // A compacted topic that never expires, made before anyone wrote it into a spec.
    create_with(
        admin,
        TOPIC,
        2,
        2,
        &[("cleanup.policy", "compact"), ("retention.ms", "-1")],
    )
    .await?;
    // Broker-level dynamic settings the topic inherits: the cluster-wide default and every
    // broker's own. They are not the topic's, and no reconcile touches them on the topic.
    let brokers: Vec<ConfigResource> = admin
        .snapshot()
        .await?
        .broker_ids()
        .into_iter()
        .map(ConfigResource::Broker)
        .collect();
    let set = |key: &str, value: &str| {
        BTreeMap::from([(key.to_string(), ConfigOp::Set(value.to_string()))])
    };
    admin
        .alter_configs(
            &ConfigResource::BrokerDefault,
            &set("log.cleaner.delete.retention.ms", "86400001"),
        )
        .await?;
    for b in &brokers {
        admin
            .alter_configs(b, &set("log.cleaner.min.compaction.lag.ms", "1"))
            .await?;
    }
    let topic = ConfigResource::Topic(TOPIC.into());
    wait_for(
        "the topic to inherit the brokers' settings",
        LONG,
        || async {
            let c = admin.describe_configs(std::slice::from_ref(&topic)).await?;
            let value = |k: &str| c[&topic].get(k).and_then(|v| v.value.clone());
            Ok((value("delete.retention.ms").as_deref() == Some("86400001")
                && value("min.compaction.lag.ms").as_deref() == Some("1"))
            .then_some(()))
        },
    )
    .await?;

    let mut spec = vec![TopicSpec {
        name: TOPIC.into(),
        partitions: 2,
        replication_factor: 2,
        config: BTreeMap::new(),
    }];
    let last = std::cell::RefCell::new(Vec::new());
    let adopted = round(admin, &spec, &last).await?;
    ensure!(adopted[0].state == TopicPhase::Ready, "{adopted:?}");
    config_becomes(admin, &topic, "cleanup.policy", Some("compact")).await?;
    config_becomes(admin, &topic, "retention.ms", Some("-1")).await?;
    // Even a status that claims the spec once set the inherited keys (a hand edit) resets
    // nothing: they are not set on the topic.
    last.borrow_mut()[0].config_keys =
        vec!["delete.retention.ms".into(), "min.compaction.lag.ms".into()];
    let snap = admin.snapshot().await?;
    let configs = BTreeMap::from([(
        TOPIC.to_string(),
        admin.describe_configs(std::slice::from_ref(&topic)).await?[&topic].clone(),
    )]);
    let plan = plan_topics(&spec, &snap, &configs, &last.borrow());
    ensure!(
        plan.is_empty(),
        "adopting the topic would change it: {plan:?}"
    );

    // A key the spec names is the spec's; dropped from the spec, it goes back to its default,
    // and the key the spec never named stays.
    spec[0]
        .config
        .insert("retention.ms".into(), "86400000".into());
    round(admin, &spec, &last).await?;
    config_becomes(admin, &topic, "retention.ms", Some("86400000")).await?;
    spec[0].config.clear();
    round(admin, &spec, &last).await?;
    wait_for("retention.ms of the topic to be reset", LONG, || async {
        let c = admin.describe_configs(std::slice::from_ref(&topic)).await?;
        let entry = c[&topic].get("retention.ms").context("retention.ms")?;
        Ok((!entry.overridden).then_some(()))
    })
    .await?;
    config_becomes(admin, &topic, "cleanup.policy", Some("compact")).await?;

    let unset = |key: &str| BTreeMap::from([(key.to_string(), ConfigOp::Delete)]);
    admin
        .alter_configs(
            &ConfigResource::BrokerDefault,
            &unset("log.cleaner.delete.retention.ms"),
        )
        .await?;
    for b in &brokers {
        admin
            .alter_configs(b, &unset("log.cleaner.min.compaction.lag.ms"))
            .await?;
    }
    Ok(())
}

/// One reconcile of `spec`'s topics after the statuses in `last`, which it replaces.
async fn round(
    admin: &KafkaClient,
    spec: &[TopicSpec],
    last: &std::cell::RefCell<Vec<TopicStatus>>,
) -> anyhow::Result<Vec<TopicStatus>> {
    let previous = last.borrow().clone();
    let statuses = reconcile_topics(admin, spec, &previous).await?;
    *last.borrow_mut() = statuses.clone();
    Ok(statuses)
}

async fn kill_mid_reassignment(kafka: &mut LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    const TOPIC: &str = "crash";
    create_with(admin, TOPIC, 3, 3, &[("min.insync.replicas", "2")]).await?;
    let bootstrap = kafka.bootstrap_servers();
    // ~3 MB per partition: a throttled copy takes several seconds (the first fetch of up to
    // 1 MB passes before the quota measures anything).
    let first = produce(&bootstrap, TOPIC, 0..2400, 4096).await?;
    let snap = admin.snapshot().await?;
    let current: BTreeMap<_, _> = snap
        .assignment()
        .into_iter()
        .filter(|(tp, _)| tp.topic == TOPIC)
        .collect();
    // Each partition swaps one replica for the broker it lacks.
    let target: BTreeMap<_, _> = current
        .iter()
        .map(|(tp, r)| {
            let missing = (0..BROKERS).find(|b| !r.contains(b)).unwrap_or(0);
            let mut t = r.clone();
            t[2] = missing;
            (tp.clone(), t)
        })
        .collect();
    // Slow enough that the move is still running when a broker dies.
    let throttle = Throttle::for_moves(&current, &target, 300_000);
    throttle_applied(admin, &throttle).await?;
    admin.alter_reassignments(&target).await?;
    let victim = 1;
    let more = tokio::spawn({
        let bootstrap = bootstrap.clone();
        async move { produce(&bootstrap, TOPIC, 2400..4000, 1024).await }
    });
    ensure!(
        !admin.list_reassignments().await?.is_empty(),
        "the reassignment finished before the kill; the scenario needs a slower throttle"
    );
    kafka.kill_broker(victim).await?;
    let second = more.await??;
    kafka.start_broker(victim).await?;
    let brokers: Vec<BrokerId> = throttle.brokers.iter().copied().collect();
    // Lift the throttle so the move (and the victim's catch-up) finishes quickly.
    admin.clear_throttle(&brokers, &[TOPIC.to_string()]).await?;
    settled(admin, TOPIC, &target).await?;
    let sent: std::collections::HashSet<Vec<u8>> = first.union(&second).cloned().collect();
    let got = consume_all(&bootstrap, TOPIC, 3, sent.len(), LONG).await?;
    assert_same_messages(&sent, &got)
}

async fn unregister(kafka: &mut LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    let new = BROKERS;
    kafka.add_broker(new).await?;
    wait_for(
        "the new broker to be registered",
        Duration::from_secs(30),
        || async {
            let snap = admin.snapshot().await?;
            ensure!(snap.broker_ids().contains(&new), "{:?}", snap.broker_ids());
            Ok(Some(()))
        },
    )
    .await?;
    // A throttle rate on a broker that then stops for good (its node lost): no broker takes a
    // change of another's configuration, so clearing it goes to a KRaft controller (found by
    // DescribeQuorum), and a broker of the same id that starts later does not inherit it.
    let rate: BTreeMap<String, ConfigOp> = [LEADER_RATE, FOLLOWER_RATE]
        .into_iter()
        .map(|k| (k.to_string(), ConfigOp::Set("1048576".into())))
        .collect();
    let resource = ConfigResource::Broker(new);
    admin.alter_configs(&resource, &rate).await?;
    config_becomes(admin, &resource, LEADER_RATE, Some("1048576")).await?;
    kafka.stop_broker(new).await?;
    wait_for("the stopped broker to be fenced", LONG, || async {
        let snap = admin.snapshot().await?;
        Ok(snap.fenced_brokers.contains(&new).then_some(()))
    })
    .await?;
    admin.clear_throttle(&[new], &[]).await?;
    kafka.start_broker(new).await?;
    wait_for("the restarted broker to be live", LONG, || async {
        let snap = admin.snapshot().await?;
        Ok(snap.broker_ids().contains(&new).then_some(()))
    })
    .await?;
    wait_for(
        "the restarted broker to describe its rates",
        LONG,
        || async {
            let c = admin
                .describe_configs(std::slice::from_ref(&resource))
                .await?;
            let rates = [LEADER_RATE, FOLLOWER_RATE].map(|k| config_value(&c, &resource, k));
            ensure!(rates == [None, None], "broker {new} still has {rates:?}");
            Ok(Some(()))
        },
    )
    .await?;
    kafka.stop_broker(new).await?;
    wait_for("the stopped broker to be fenced again", LONG, || async {
        let snap = admin.snapshot().await?;
        Ok(snap.fenced_brokers.contains(&new).then_some(()))
    })
    .await?;
    admin.unregister_broker(new).await?;
    // The controller has removed it; the broker answering the snapshot learns it a moment later.
    wait_for(
        "the unregistered broker to be gone",
        Duration::from_secs(30),
        || async {
            let snap = admin.snapshot().await?;
            ensure!(
                !snap.broker_ids().contains(&new) && !snap.fenced_brokers.contains(&new),
                "broker {new} still registered: {:?} fenced {:?}",
                snap.broker_ids(),
                snap.fenced_brokers
            );
            Ok(Some(()))
        },
    )
    .await
}

/// `kafka-operator plan` on the live assignment, executed by Kafka's own tool: the tool accepts
/// the JSON, the partitions end exactly where the plan says, nothing is lost.
async fn plan_cli_round_trip(kafka: &LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    let topic = "plan-cli";
    create(admin, topic, 8, 2).await?;
    let sent = produce(&kafka.bootstrap_servers(), topic, 0..4_000, 100).await?;
    let snap = admin.snapshot().await?;
    let current: Vec<PartitionAssignment> = snap.topics[topic]
        .partitions
        .iter()
        .map(|p| PartitionAssignment {
            topic: topic.into(),
            partition: p.partition,
            replicas: p.replicas.clone(),
        })
        .collect();
    ensure!(
        current.iter().any(|p| p.replicas.contains(&3)),
        "broker 3 holds no replica of {topic}: nothing to drain"
    );
    let dir = tempfile::tempdir()?;
    let current_file = dir.path().join("current.json");
    std::fs::write(&current_file, reassignment_json(&current))?;

    let out = tokio::process::Command::new(operator_binary(false)?)
        .args(["plan", "--assignment"])
        .arg(&current_file)
        .args(["--brokers", "0,1,2"])
        .output()
        .await?;
    let summary = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "kafka-operator plan failed: {summary}"
    );
    ensure!(
        summary.contains("ratio 1.00"),
        "not the lower bound:\n{summary}"
    );
    let target_json = String::from_utf8(out.stdout)?;
    let target = parse_reassignment(&target_json)?;
    let target_file = dir.path().join("target.json");
    std::fs::write(&target_file, &target_json)?;
    let plan = target_file.display().to_string();

    let out = kafka
        .reassign_partitions(&["--execute", "--reassignment-json-file", &plan])
        .await?;
    ensure!(out.contains("Successfully started"), "--execute: {out}");
    wait_for("the tool's reassignment to complete", LONG, || async {
        let out = kafka
            .reassign_partitions(&["--verify", "--reassignment-json-file", &plan])
            .await?;
        Ok((!out.contains("still in progress")).then_some(()))
    })
    .await?;

    let after = admin.snapshot().await?;
    for want in &target {
        let got = &after.topics[topic].partitions[want.partition as usize];
        ensure!(
            got.replicas == want.replicas,
            "{topic}-{}: replicas {:?}, the plan said {:?}",
            want.partition,
            got.replicas,
            want.replicas
        );
    }
    let got = consume_all(&kafka.bootstrap_servers(), topic, 8, sent.len(), LONG).await?;
    assert_same_messages(&sent, &got)
}

async fn quorum(kafka: &mut LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    use kafka_operator::resources::config::node_id;
    use kafka_operator::resources::names::Role;
    let voters: BTreeSet<i32> = (0..3).map(|o| node_id(Role::Controller, o)).collect();
    let settled = wait_for("every voter caught up", LONG, || async {
        let q = admin.quorum().await?;
        let ids: BTreeSet<i32> = q.voters.iter().map(|v| v.id).collect();
        ensure!(ids == voters, "voters {ids:?}, expected {voters:?}");
        Ok((q.leader.is_some() && q.lagging(2_000).is_empty()).then_some(q))
    })
    .await?;
    let leader = settled.leader.context("a leader")?;
    ensure!(voters.contains(&leader), "leader {leader} is not a voter");
    ensure!(settled.high_watermark > 0, "{settled:?}");

    // A follower stopped for longer than the lag bound is reported lagging while it is down,
    // and caught up again once it runs.
    let follower = (0..3)
        .find(|o| node_id(Role::Controller, *o) != leader)
        .context("a follower")?;
    let follower_id = node_id(Role::Controller, follower);
    kafka.stop_controller(follower).await?;
    wait_for("the stopped controller to lag", LONG, || async {
        let q = admin.quorum().await?;
        Ok(q.lagging(2_000).contains(&follower_id).then_some(()))
    })
    .await?;
    kafka.start_controller(follower).await?;
    wait_for("the restarted controller to catch up", LONG, || async {
        let q = admin.quorum().await?;
        Ok((q.leader.is_some() && q.lagging(2_000).is_empty()).then_some(()))
    })
    .await?;
    Ok(())
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The cluster-wide broker defaults as Kafka's own `kafka-configs` lists them.
async fn broker_defaults(kafka: &LocalKafka) -> anyhow::Result<String> {
    kafka
        .configs(&["--describe", "--entity-type", "brokers", "--entity-default"])
        .await
}

async fn live_settings(kafka: &LocalKafka, admin: &KafkaClient) -> anyhow::Result<()> {
    // What Kafka says of each setting decides: none of it is a list kept here.
    let described = admin
        .describe_configs(&[ConfigResource::Broker(0)])
        .await?
        .remove(&ConfigResource::Broker(0))
        .context("broker 0 described nothing")?;
    // What the README says of the named kafkaOptions, checked against Kafka. Kafka changes
    // retention live only by its milliseconds; hours are read at start.
    let mut wrong = Vec::new();
    for (key, read_only) in [
        ("log.retention.ms", false),
        ("log.retention.bytes", false),
        ("log.segment.bytes", false),
        ("compression.type", false),
        ("min.insync.replicas", false),
        ("message.max.bytes", false),
        ("unclean.leader.election.enable", false),
        ("num.network.threads", false),
        ("num.io.threads", false),
        ("num.replica.fetchers", false),
        ("log.retention.hours", true),
        ("auto.create.topics.enable", true),
        ("delete.topic.enable", true),
        ("num.partitions", true),
        ("default.replication.factor", true),
        ("auto.leader.rebalance.enable", true),
        ("queued.max.requests", true),
    ] {
        match described.get(key) {
            None => wrong.push(format!("{key}: not described")),
            Some(e) if e.read_only != read_only => {
                wrong.push(format!("{key}: read-only {}", e.read_only))
            }
            Some(_) => {}
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));

    let started = broker_config::initial(&props(&[
        ("log.retention.ms", "604800000"),
        ("queued.max.requests", "500"),
    ]));
    let desired = props(&[
        ("log.retention.ms", "720000000"),
        ("queued.max.requests", "500"),
        ("message.max.bytes", "2000000"),
    ]);
    let live = broker_config::settle(Some(admin), true, &desired, Some(&started)).await?;
    ensure!(live.restart.is_empty(), "{live:?}");
    ensure!(live.waiting.is_none(), "{live:?}");
    ensure!(
        live.config.startup == started.startup,
        "the template would change: {live:?}"
    );
    ensure!(
        live.config.live
            == props(&[
                ("log.retention.ms", "720000000"),
                ("message.max.bytes", "2000000")
            ]),
        "{live:?}"
    );
    // Every broker, asked by Kafka's own tool, has the values.
    for b in 0..BROKERS {
        let all = kafka
            .configs(&[
                "--describe",
                "--entity-type",
                "brokers",
                "--entity-name",
                &b.to_string(),
                "--all",
            ])
            .await?;
        for want in ["log.retention.ms=720000000", "message.max.bytes=2000000"] {
            ensure!(
                all.lines().any(|l| l.trim_start().starts_with(want)),
                "broker {b} does not report {want}:\n{all}"
            );
        }
    }
    let defaults = broker_defaults(kafka).await?;
    ensure!(
        defaults.contains("log.retention.ms=720000000")
            && defaults.contains("message.max.bytes=2000000"),
        "{defaults}"
    );

    // Round two, from what round one recorded: a read-only setting restarts, with the whole
    // spec; a live setting removed from the spec that the pods never started with is deleted.
    let desired = props(&[
        ("log.retention.ms", "720000000"),
        ("queued.max.requests", "600"),
    ]);
    let restart = broker_config::settle(Some(admin), true, &desired, Some(&live.config)).await?;
    ensure!(
        restart.restart == ["queued.max.requests (read-only in Kafka)"],
        "{restart:?}"
    );
    ensure!(restart.config.startup == desired, "{restart:?}");
    ensure!(
        restart.config.live == props(&[("log.retention.ms", "720000000")]),
        "{restart:?}"
    );
    let defaults = broker_defaults(kafka).await?;
    ensure!(
        !defaults.contains("message.max.bytes"),
        "message.max.bytes is still a default:\n{defaults}"
    );

    // A value Kafka refuses is an error naming it; nothing is set, nothing restarts.
    let bad = props(&[
        ("log.retention.ms", "720000000"),
        ("queued.max.requests", "600"),
        ("message.max.bytes", "-5"),
    ]);
    match broker_config::settle(Some(admin), true, &bad, Some(&restart.config)).await {
        Err(KafkaError::Refused { reason, .. }) if reason.contains("message.max.bytes") => {}
        other => bail!("a bad value was not refused with its name: {other:?}"),
    }
    ensure!(
        !broker_defaults(kafka).await?.contains("message.max.bytes"),
        "a refused value was set"
    );
    // A setting Kafka changes per broker only, never as a cluster-wide default, restarts.
    let per_broker = props(&[
        ("log.retention.ms", "720000000"),
        ("queued.max.requests", "600"),
        ("ssl.client.auth", "none"),
    ]);
    let fallback =
        broker_config::settle(Some(admin), true, &per_broker, Some(&restart.config)).await?;
    ensure!(
        fallback.restart.len() == 1
            && fallback.restart[0].starts_with("ssl.client.auth (Kafka refused to change it live"),
        "{fallback:?}"
    );
    ensure!(fallback.config.startup == per_broker, "{fallback:?}");

    admin
        .alter_configs(
            &ConfigResource::BrokerDefault,
            &BTreeMap::from([("log.retention.ms".to_string(), ConfigOp::Delete)]),
        )
        .await?;
    Ok(())
}
