//! Helpers of the Kafka integration tests: a scenario runner that shares one cluster between
//! scenarios yet reports each failure by scenario name, and data helpers (produce unique
//! payloads with acks=all, consume everything back).
#![allow(dead_code)]

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::FutureExt as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub type Scenario<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// Runs scenarios in order, each isolated from the others' panics, and fails at the end with
/// the names and errors of the failed ones.
pub struct Scenarios {
    failures: Vec<String>,
    timings: Vec<(String, Duration, bool)>,
}

impl Scenarios {
    pub fn new() -> Self {
        Scenarios {
            failures: Vec::new(),
            timings: Vec::new(),
        }
    }

    /// Runs a scenario, unless `KAFKA_SCENARIOS` (comma-separated parts of names) excludes it.
    pub async fn run(&mut self, name: &str, scenario: Scenario<'_>) {
        if let Ok(filter) = std::env::var("KAFKA_SCENARIOS") {
            if !filter.split(',').any(|f| name.contains(f.trim())) {
                eprintln!("=== scenario {name}: skipped (KAFKA_SCENARIOS)");
                return;
            }
        }
        eprintln!("=== scenario {name}");
        let start = Instant::now();
        let result = AssertUnwindSafe(scenario).catch_unwind().await;
        let elapsed = start.elapsed();
        let ok = match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.failures.push(format!("{name}: {e:#}"));
                false
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                self.failures.push(format!("{name}: panicked: {msg}"));
                false
            }
        };
        eprintln!(
            "=== scenario {name}: {} in {:.1}s",
            if ok { "ok" } else { "FAILED" },
            elapsed.as_secs_f64()
        );
        self.timings.push((name.to_string(), elapsed, ok));
    }

    /// Prints the timings and panics if any scenario failed.
    pub fn finish(self) {
        eprintln!("scenario timings:");
        for (name, t, ok) in &self.timings {
            eprintln!(
                "  {:<50} {:>6.1}s {}",
                name,
                t.as_secs_f64(),
                if *ok { "ok" } else { "FAILED" }
            );
        }
        if !self.failures.is_empty() {
            panic!(
                "{} scenario(s) failed:\n{}",
                self.failures.len(),
                self.failures.join("\n")
            );
        }
    }
}

/// Polls `check` until it returns Some, or fails after `within` with `what` and the last state.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {}s waiting for {what} (last error: {last})",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A unique payload: its index, padded to `size` bytes with a pattern derived from it.
pub fn payload(topic: &str, i: usize, size: usize) -> Vec<u8> {
    let mut p = format!("{topic}:{i}:").into_bytes();
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while p.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(b'a' + (x % 26) as u8);
    }
    p
}

pub fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5")
        .create()?)
}

/// Produces `count` unique payloads with acks=all; every send must be acknowledged.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    range: std::ops::Range<usize>,
    size: usize,
) -> anyhow::Result<HashSet<Vec<u8>>> {
    let producer = producer(bootstrap)?;
    let mut sent = HashSet::new();
    // Keep a bounded number in flight so the producer's queue never overflows.
    let mut in_flight = futures::stream::FuturesUnordered::new();
    use futures::StreamExt as _;
    for i in range {
        let value = payload(topic, i, size);
        let key = i.to_string();
        let p = &producer;
        let v = value.clone();
        in_flight.push(async move {
            p.send(
                FutureRecord::to(topic).key(&key).payload(&v),
                Duration::from_secs(120),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("message {i} not acknowledged: {e}"))
        });
        sent.insert(value);
        if in_flight.len() >= 500 {
            in_flight.next().await.context("producer stream")??;
        }
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    Ok(sent)
}

/// Reads every partition of `topic` from the beginning until `expected` messages arrived (or
/// `within` passed), returning all payloads read.
pub async fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    within: Duration,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    // BaseConsumer polls block: keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("verify-{topic}"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + within;
        let mut out = Vec::with_capacity(expected);
        while out.len() < expected && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => {}
            }
        }
        // Anything beyond `expected` would be a duplicate: read a little more to see it.
        let extra_deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < extra_deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push(m.payload().unwrap_or_default().to_vec());
            }
        }
        Ok(out)
    })
    .await?
}

/// Checks that `got` is exactly `sent`, byte for byte, each message once.
pub fn assert_same_messages(sent: &HashSet<Vec<u8>>, got: &[Vec<u8>]) -> anyhow::Result<()> {
    let got_set: HashSet<&Vec<u8>> = got.iter().collect();
    let missing = sent.iter().filter(|m| !got_set.contains(m)).count();
    let unexpected = got.iter().filter(|m| !sent.contains(*m)).count();
    if missing > 0 || unexpected > 0 || got.len() != sent.len() {
        bail!(
            "sent {} messages, read {} ({} distinct): {missing} missing, {unexpected} unexpected",
            sent.len(),
            got.len(),
            got_set.len()
        );
    }
    Ok(())
}

pub fn ids(v: &[i32]) -> BTreeSet<i32> {
    v.iter().copied().collect()
}
