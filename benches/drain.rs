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
//! `cargo bench --bench drain`; `DRAIN_MB` (default 48) sets the data on the drained broker,
//! `DRAIN_RATE` (bytes/s, default 4000000) the throttle.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kafka_operator::api::RebalanceSpec;
use kafka_operator::kafka::{KafkaAdmin, NewTopic};
use kafka_operator::operations::scale::{self, ScaleInput, step};
use kafka_operator::planner::{self, PartitionAssignment, PlanRequest};
use kafka_operator::testbed::kafka::{LocalKafka, LocalKafkaOptions, ensure_jars};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const POLL: Duration = Duration::from_secs(2);
const BROKERS: i32 = 4;
const LEAVING: i32 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mb: u64 = env_or("DRAIN_MB", 48);
    let rate: u64 = env_or("DRAIN_RATE", 4_000_000);
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

    // Ours.
    let t0 = Instant::now();
    let mut input = ScaleInput {
        desired: BROKERS - 1,
        running: Some(BROKERS),
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
    };
    loop {
        let outcome = scale::advance(Some(&admin), &input).await?;
        let op = outcome
            .operation
            .context("the drain ended before it was verified")?;
        if op.step == step::SHRINKING {
            break;
        }
        input.operation = Some(op);
        tokio::time::sleep(POLL).await;
    }
    let ours = t0.elapsed();
    let after_ours = admin.snapshot().await?;
    if after_ours
        .partitions()
        .any(|(_, p)| p.replicas.contains(&LEAVING))
    {
        bail!("our drain left replicas on broker {LEAVING}");
    }

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

    // Back to the original assignment, unthrottled, so theirs starts where ours did.
    admin.alter_reassignments(&original).await?;
    wait_idle(&admin).await?;

    let dir = tempfile::tempdir()?;
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, planner::json::reassignment_json(&plan.target))?;
    let t1 = Instant::now();
    let out = tool(
        &bootstrap,
        &[
            "--execute",
            "--reassignment-json-file",
            &plan_file.display().to_string(),
            "--throttle",
            &rate.to_string(),
        ],
    )
    .await?;
    if !out.contains("Successfully started") {
        bail!("kafka-reassign-partitions --execute: {out}");
    }
    loop {
        tokio::time::sleep(POLL).await;
        let out = tool(
            &bootstrap,
            &[
                "--verify",
                "--reassignment-json-file",
                &plan_file.display().to_string(),
            ],
        )
        .await?;
        if !out.contains("still in progress") {
            break;
        }
    }
    let theirs = t1.elapsed();
    let after_theirs = admin.snapshot().await?;
    if after_theirs
        .partitions()
        .any(|(_, p)| p.replicas.contains(&LEAVING))
    {
        bail!("the tool's drain left replicas on broker {LEAVING}");
    }

    println!(
        "drain of broker {LEAVING}: {partitions_on_leaving} partitions, {:.1} MiB on it, throttle {:.1} MB/s",
        on_leaving as f64 / 1048576.0,
        rate as f64 / 1e6
    );
    println!(
        "  ours (operator steps, poll 2 s)                  {:>7.1} s",
        ours.as_secs_f64()
    );
    println!(
        "  kafka-reassign-partitions --execute/--verify 2 s {:>7.1} s",
        theirs.as_secs_f64()
    );
    println!(
        "  ratio ours / theirs                               {:>7.2}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    println!(
        "  physical limit (bytes on broker / throttle)       {:>7.1} s",
        on_leaving as f64 / rate as f64
    );
    kafka.shutdown().await;
    Ok(())
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

/// Runs `kafka-reassign-partitions` from the test jars.
async fn tool(bootstrap: &str, args: &[&str]) -> anyhow::Result<String> {
    let libs = ensure_jars(kafka_operator::api::KAFKA_VERSION)?.join("libs");
    let out = tokio::process::Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(format!("{}/*", libs.display()))
        .arg("org.apache.kafka.tools.reassign.ReassignPartitionsCommand")
        .args(["--bootstrap-server", bootstrap])
        .args(args)
        .output()
        .await?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
