//! How long `KafkaAdmin::snapshot` takes on a cluster with 1,000 partitions (3 brokers,
//! replication factor 2, some data in every partition so DescribeLogDirs has sizes to report).
//!
//! `cargo bench --bench kafka_snapshot` (or `cargo test --bench kafka_snapshot` for a debug
//! build). Prints the figures; asserts nothing about them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_operator::kafka::{KafkaAdmin, NewTopic};
use kafka_operator_testbed::kafka::{LocalKafka, LocalKafkaOptions};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPICS: usize = 10;
const PARTITIONS_PER_TOPIC: i32 = 100;
const RUNS: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let kafka = LocalKafka::start(LocalKafkaOptions::kraft(3)).await?;
    let admin = kafka.admin()?;
    let topics: Vec<NewTopic> = (0..TOPICS)
        .map(|i| NewTopic {
            name: format!("bench-{i}"),
            partitions: PARTITIONS_PER_TOPIC,
            replication_factor: 2,
            config: BTreeMap::new(),
        })
        .collect();
    admin.create_topics(&topics).await?;
    let total = TOPICS * PARTITIONS_PER_TOPIC as usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let snap = admin.snapshot().await?;
        let ready = snap
            .partitions()
            .filter(|(tp, p)| tp.topic.starts_with("bench-") && p.leader.is_some())
            .count();
        if ready == total {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {total} partitions got leaders"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // One message per partition, so every replica has a size.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("acks", "all")
        .create()?;
    let sends = (0..TOPICS).flat_map(|t| {
        let producer = &producer;
        (0..PARTITIONS_PER_TOPIC).map(move |p| async move {
            let topic = format!("bench-{t}");
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic).partition(p).payload("x"),
                    Duration::from_secs(60),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("{e}"))
        })
    });
    for r in futures::future::join_all(sends).await {
        r?;
    }

    let mut times = Vec::new();
    let mut replicas = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let snap = admin.snapshot().await?;
        times.push(start.elapsed());
        replicas = snap
            .partitions()
            .filter(|(tp, _)| tp.topic.starts_with("bench-"))
            .map(|(_, p)| p.size_bytes.len())
            .sum::<usize>();
    }
    times.sort();
    println!(
        "snapshot of {total} partitions ({replicas} replica sizes) on {} brokers, {RUNS} runs \
         ({} build): min {:.1} ms, median {:.1} ms, max {:.1} ms",
        kafka.cluster().broker_count,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        times[0].as_secs_f64() * 1e3,
        times[RUNS / 2].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
