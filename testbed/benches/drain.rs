//! Drain wall time: the operator's drain of one broker against Kafka's own
//! `kafka-reassign-partitions --execute` run by hand, on the same local cluster, the same data,
//! the same plan and the same replication throttle, in one run.
//!
//! Ours: the operator's scale-down steps (`operations::scale::advance`) from "brokerCount
//! lowered" to "drain verified" (no partition on the broker, every partition in sync, throttles
//! cleared), polled every 2 s as the controller does. Theirs: `--execute --throttle` with the
//! plan our planner made for the same state, then `--verify` every 2 s until it reports every
//! move complete (which also clears the throttles). Between the two, the partitions are moved
//! back so both start from the same assignment.
//!
//! Run with a throttle that binds, and with one that does not (then the machine sets the pace),
//! each `DRAIN_RUNS` times (default 3) per side, alternating which side goes first; the medians
//! are printed. `cargo bench --bench drain`; `DRAIN_MB` (default 48) sets the data on the
//! drained broker, `DRAIN_RATE` (bytes/s, default 4000000) the binding throttle.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kafka_operator::api::RebalanceSpec;
use kafka_operator::api::Step;
use kafka_operator::kafka::{KafkaAdmin, NewTopic};
use kafka_operator::operations::scale::{self, ScaleInput};
use kafka_operator::planner::{self, PartitionAssignment, PlanRequest};
use kafka_operator_testbed::kafka::{LocalKafka, LocalKafkaOptions};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const POLL: Duration = Duration::from_secs(2);
const BROKERS: i32 = 4;
const LEAVING: i32 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mb: u64 = env_or("DRAIN_MB", 48);
    let rate: u64 = env_or("DRAIN_RATE", 4_000_000);
    let runs = env_or("DRAIN_RUNS", 3).max(1);
    eprintln!("starting a local cluster: 3 controllers, {BROKERS} brokers");
    let kafka = LocalKafka::start(LocalKafkaOptions::kraft(BROKERS)).await?;
    let admin = kafka.admin()?;
    let bootstrap = kafka.bootstrap_servers();

    // 16 partitions, RF 2: broker 3 holds about half of them.
    admin
        .create_topics(&[NewTopic {
            name: "drain-bench".into(),
            partitions: 16,
            replication_factor: 2,
            config: BTreeMap::new(),
        }])
        .await?;
    let total_bytes = mb * 1024 * 1024 * 2; // about half lands on broker 3
    fill(&bootstrap, "drain-bench", total_bytes).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let initial = admin.snapshot().await?;
    let on_leaving: u64 = initial
        .partitions()
        .filter(|(_, p)| p.replicas.contains(&LEAVING))
        .map(|(_, p)| p.size())
        .sum();
    let partitions_on_leaving = initial
        .partitions()
        .filter(|(_, p)| p.replicas.contains(&LEAVING))
        .count();
    let original = initial.assignment();

    // The plan both use: what our planner proposes for the original state.
    let current: Vec<PartitionAssignment> = original
        .iter()
        .map(|(tp, r)| PartitionAssignment {
            topic: tp.topic.clone(),
            partition: tp.partition,
            replicas: r.clone(),
        })
        .collect();
    let plan = planner::plan(&PlanRequest {
        current: current.clone(),
        brokers: (0..BROKERS - 1).map(planner::Broker::new).collect(),
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, planner::json::reassignment_json(&plan.target))?;

    // The throttle's own limit: every broker copies at most `rate` bytes/s out (as a leader)
    // and in (as a new follower), so the busiest broker sets the pace.
    let mut out_bytes: BTreeMap<i32, u64> = BTreeMap::new();
    let mut in_bytes: BTreeMap<i32, u64> = BTreeMap::new();
    for m in planner::moves(&current, &plan.target) {
        let tp = kafka_operator::kafka::TopicPartition::new(m.topic.clone(), m.partition);
        let Some(p) = initial.partition(&tp) else {
            continue;
        };
        let leader = p.leader.unwrap_or(m.current[0]);
        for added in m.added() {
            *out_bytes.entry(leader).or_default() += p.size();
            *in_bytes.entry(added).or_default() += p.size();
        }
    }
    let busiest = out_bytes
        .values()
        .chain(in_bytes.values())
        .copied()
        .max()
        .unwrap_or(0);

    println!(
        "drain of broker {LEAVING}: {partitions_on_leaving} partitions, {:.1} MiB on it; the busiest broker copies {:.1} MiB",
        on_leaving as f64 / 1048576.0,
        busiest as f64 / 1048576.0
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>7} {:>15}",
        "throttle", "ours", "theirs", "ratio", "throttle limit"
    );
    println!("  (medians of {runs} runs each)");
    for rate in [rate, UNTHROTTLED] {
        let label = if rate == UNTHROTTLED {
            "none (1 GB/s)".to_string()
        } else {
            format!("{:.1} MB/s", rate as f64 / 1e6)
        };
        // Several rounds, the order alternating, so neither side always runs on a fresher
        // cluster; the medians are compared.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..runs {
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    ours.push(drain_ours(&admin, rate).await?.as_secs_f64());
                } else {
                    theirs.push(
                        drain_theirs(&kafka, &admin, &plan_file, rate)
                            .await?
                            .as_secs_f64(),
                    );
                }
                restore(&admin, &original).await?;
            }
        }
        let (ours, theirs) = (median(&mut ours), median(&mut theirs));
        println!(
            "  {label:<22} {ours:>8.1}s {theirs:>8.1}s {:>7.2} {:>14.1}s",
            ours / theirs,
            busiest as f64 / rate as f64
        );
    }
    println!(
        "  ours: the operator's steps, to \"drain verified\", next round at once after a status change, else after 2 s"
    );
    println!(
        "  theirs: kafka-reassign-partitions --execute --throttle, then --verify every 2 s until complete"
    );
    kafka.shutdown().await;
    Ok(())
}

/// A throttle so high it never binds.
const UNTHROTTLED: u64 = 1_000_000_000;

/// The operator's drain of broker 3, to "verified" (the step before the StatefulSet shrinks).
async fn drain_ours(admin: &dyn KafkaAdmin, rate: u64) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut input = ScaleInput {
        desired: BROKERS - 1,
        running: Some(BROKERS),
        statefulset_replicas: Some(BROKERS),
        ready_brokers: BROKERS,
        broker_pods: (0..BROKERS).collect(),
        operation: None,
        rebalance: RebalanceSpec {
            throttle_bytes_per_second: rate as i64,
            ..RebalanceSpec::default()
        },
        kraft: true,
        delete_drained_volumes: false,
        now: "2026-01-01T00:00:00Z".into(),
        topics: Vec::new(),
        lost_brokers: Default::default(),
    };
    loop {
        let outcome = scale::advance(Some(admin), &input).await?;
        let op = outcome
            .operation
            .context("the drain ended before it was verified")?;
        if op.step == Step::Shrinking {
            break;
        }
        // As in the controller: a status change triggers the next round at once, otherwise
        // the operation is looked at again after the poll interval.
        let changed = input.operation.as_ref() != Some(&op);
        if input
            .operation
            .as_ref()
            .map(|o| (&o.step, &o.waiting_for, o.in_flight.len()))
            != Some((&op.step, &op.waiting_for, op.in_flight.len()))
        {
            eprintln!(
                "    {:>5.1}s {} {} in flight{}",
                t0.elapsed().as_secs_f64(),
                op.step,
                op.in_flight.len(),
                op.waiting_for
                    .as_deref()
                    .map(|w| format!(", waiting for {w}"))
                    .unwrap_or_default()
            );
        }
        input.operation = Some(op);
        if !changed {
            tokio::time::sleep(POLL).await;
        }
    }
    let elapsed = t0.elapsed();
    if admin
        .snapshot()
        .await?
        .partitions()
        .any(|(_, p)| p.replicas.contains(&LEAVING))
    {
        bail!("our drain left replicas on broker {LEAVING}");
    }
    Ok(elapsed)
}

/// Kafka's tool by hand: execute with the throttle, verify every 2 s until complete.
async fn drain_theirs(
    kafka: &LocalKafka,
    admin: &dyn KafkaAdmin,
    plan_file: &std::path::Path,
    rate: u64,
) -> anyhow::Result<Duration> {
    let plan = plan_file.display().to_string();
    let t1 = Instant::now();
    let out = kafka
        .reassign_partitions(&[
            "--execute",
            "--reassignment-json-file",
            &plan,
            "--throttle",
            &rate.to_string(),
        ])
        .await?;
    if !out.contains("Successfully started") {
        bail!("kafka-reassign-partitions --execute: {out}");
    }
    loop {
        tokio::time::sleep(POLL).await;
        let out = kafka
            .reassign_partitions(&["--verify", "--reassignment-json-file", &plan])
            .await?;
        if !out.contains("still in progress") {
            break;
        }
    }
    let elapsed = t1.elapsed();
    if admin
        .snapshot()
        .await?
        .partitions()
        .any(|(_, p)| p.replicas.contains(&LEAVING))
    {
        bail!("the tool's drain left replicas on broker {LEAVING}");
    }
    Ok(elapsed)
}

/// Moves everything back to the original assignment, unthrottled, and waits.
async fn restore(
    admin: &dyn KafkaAdmin,
    original: &BTreeMap<kafka_operator::kafka::TopicPartition, Vec<i32>>,
) -> anyhow::Result<()> {
    admin.alter_reassignments(original).await?;
    wait_idle(admin).await
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes about `bytes` of data to `topic` with acks=all.
async fn fill(bootstrap: &str, topic: &str, bytes: u64) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "none")
        .create()?;
    let value = vec![b'x'; 10_000];
    let count = bytes / value.len() as u64;
    let mut pending = futures::stream::FuturesUnordered::new();
    use futures::StreamExt as _;
    for i in 0..count {
        let key = i.to_string();
        let p = &producer;
        let v = &value;
        pending.push(async move {
            p.send(
                FutureRecord::to(topic).key(&key).payload(v),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))
        });
        if pending.len() >= 200 {
            pending.next().await.context("producer")??;
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(())
}

async fn wait_idle(admin: &dyn KafkaAdmin) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let snap = admin.snapshot().await?;
        if snap.reassignments.is_empty() && snap.under_replicated().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("reassignments did not finish");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
