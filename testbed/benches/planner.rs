//! `cargo bench --bench planner`: our planner against the algorithm of Kafka's own
//! `kafka-reassign-partitions --generate`, on the same generated clusters, judged by the same
//! metric code (`kafka_operator::planner::metrics::evaluate`) and the same lower bound.
//!
//! `--generate` needs a live cluster only to read the current assignment and broker racks; it
//! then calls the pure `ReassignPartitionsCommand.calculateAssignment`. The Java harness in
//! `bench/planner/KafkaGenerate.java` calls that method directly (compiled here with `javac`
//! into `.cache/planner-bench/`, against the Kafka jars that `hack/fetch-kafka.sh` fetches).
//! Without Java or the jars, only our side is measured.
//!
//! Starting clusters are laid out the way Kafka lays out new topics (round-robin over a
//! rack-alternating broker list, random start and replica shift per topic), i.e. balanced.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_operator::planner::json::{parse_reassignment, reassignment_json};
use kafka_operator::planner::metrics::{Metrics, evaluate};
use kafka_operator::planner::{Broker, PartitionAssignment, PlanRequest, plan, ratio};
use kafka_operator_testbed::kafka::ensure_jars;
use kafka_operator_testbed::process::project_root;

use kafka_operator::api::KAFKA_VERSION;

/// splitmix64, so every run benchmarks the same clusters.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Scenario {
    name: String,
    current: Vec<PartitionAssignment>,
    before: Vec<Broker>,
    after: Vec<Broker>,
}

/// Brokers in Kafka's rack-alternating order (a, b, c, a, b, c, ...).
fn rack_alternating(brokers: &[Broker]) -> Vec<i32> {
    let mut racks: Vec<(String, Vec<i32>)> = Vec::new();
    for b in brokers {
        let r = b.rack.clone().unwrap_or_default();
        match racks.iter_mut().find(|(name, _)| *name == r) {
            Some((_, ids)) => ids.push(b.id),
            None => racks.push((r, vec![b.id])),
        }
    }
    let mut out = Vec::new();
    for i in 0..brokers.len() {
        for (_, ids) in &racks {
            if let Some(&id) = ids.get(i) {
                out.push(id);
            }
        }
    }
    out
}

/// New topics as Kafka's `AdminUtils.assignReplicasToBrokers` places them (rack-aware when
/// brokers have racks): leaders round-robin from a random start over the rack-alternating
/// list, followers at a random shift, skipping racks and brokers already used.
fn kafka_layout(
    brokers: &[Broker],
    topics: &[(String, usize)],
    rf: usize,
    rng: &mut Rng,
) -> Vec<PartitionAssignment> {
    let ring = rack_alternating(brokers);
    let n = ring.len();
    let rack = |id: i32| {
        brokers
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.clone())
    };
    let racks = brokers
        .iter()
        .map(|b| b.rack.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut out = Vec::new();
    for (topic, partitions) in topics {
        let start = rng.below(n);
        let mut shift = rng.below(n);
        for p in 0..*partitions {
            if p > 0 && p % n == 0 {
                shift += 1;
            }
            let first = (p + start) % n;
            let mut replicas = vec![ring[first]];
            let mut used_racks = vec![rack(ring[first])];
            let mut k = 0;
            while replicas.len() < rf {
                let b = ring[(first + 1 + (shift * racks + k) % (n - 1)) % n];
                k += 1;
                let r = rack(b);
                if (!used_racks.contains(&r) || used_racks.len() == racks) && !replicas.contains(&b)
                {
                    replicas.push(b);
                    if !used_racks.contains(&r) {
                        used_racks.push(r);
                    }
                }
            }
            out.push(PartitionAssignment {
                topic: topic.clone(),
                partition: p as i32,
                replicas,
            });
        }
    }
    out
}

fn topics(total_partitions: usize, max_per_topic: usize, rng: &mut Rng) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut left = total_partitions;
    while left > 0 {
        let p = (1 + rng.below(max_per_topic)).min(left);
        out.push((format!("topic-{:04}", out.len()), p));
        left -= p;
    }
    out
}

fn plain(ids: std::ops::Range<i32>) -> Vec<Broker> {
    ids.map(Broker::new).collect()
}

fn scenarios() -> Vec<Scenario> {
    let mut rng = Rng(20_251_125);
    let mut list = Vec::new();
    let ten = plain(0..10);
    let small = topics(1_500, 60, &mut rng);
    let current = kafka_layout(&ten, &small, 3, &mut rng);
    list.push(Scenario {
        name: "decommission 1 of 10 (broker 9)".into(),
        current: current.clone(),
        before: ten.clone(),
        after: plain(0..9),
    });
    list.push(Scenario {
        name: "decommission 2 of 10 (brokers 8, 9)".into(),
        current: current.clone(),
        before: ten.clone(),
        after: plain(0..8),
    });
    list.push(Scenario {
        name: "add 2 to 10 (brokers 10, 11)".into(),
        current,
        before: ten,
        after: plain(0..12),
    });
    let racks = ["a", "a", "b", "b", "c", "c"];
    let six: Vec<Broker> = (0..6)
        .map(|i| Broker::with_rack(i, racks[i as usize]))
        .collect();
    for rf in [3, 2] {
        let current = kafka_layout(&six, &topics(600, 30, &mut rng), rf, &mut rng);
        list.push(Scenario {
            name: format!("3 racks x 2 brokers, RF {rf}: decommission broker 5 (rack c)"),
            current,
            before: six.clone(),
            after: six[..5].to_vec(),
        });
    }
    let large = topics(100_000, 200, &mut rng);
    let current = kafka_layout(&plain(0..45), &large, 3, &mut rng);
    list.push(Scenario {
        name: "large: add 5 to 45 -> 50 brokers, 100,000 partitions, RF 3".into(),
        current,
        before: plain(0..45),
        after: plain(0..50),
    });
    let current = kafka_layout(&plain(0..50), &large, 3, &mut rng);
    list.push(Scenario {
        name: "large: decommission 1 of 50, 100,000 partitions, RF 3".into(),
        current,
        before: plain(0..50),
        after: plain(0..49),
    });
    list
}

struct Row {
    metrics: Metrics,
    lower_bound: u64,
    time: Duration,
    note: String,
}

fn ours(s: &Scenario) -> (Row, u64) {
    let req = PlanRequest {
        current: s.current.clone(),
        brokers: s.after.clone(),
        leaving_racks: s
            .before
            .iter()
            .filter(|b| !s.after.iter().any(|a| a.id == b.id))
            .filter_map(|b| Some((b.id, b.rack.clone()?)))
            .collect(),
        ..Default::default()
    };
    // The first run is the one a user sees; later runs show the steady state.
    let mut times = Vec::new();
    let mut result = None;
    for _ in 0..5 {
        let started = Instant::now();
        let p = plan(&req).expect("benchmark scenarios are valid");
        times.push(started.elapsed());
        result.get_or_insert(p);
    }
    let p = result.unwrap();
    let first = times[0];
    times.sort();
    let lb = p.summary.lower_bound;
    (
        Row {
            metrics: p.summary.metrics,
            lower_bound: lb,
            time: first,
            note: format!("median of 5: {}", ms(times[2])),
        },
        lb,
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn root() -> PathBuf {
    project_root()
}

/// Compiles the harness if needed; `None` (with the reason printed) when Kafka's side cannot run.
fn kafka_harness() -> Option<(PathBuf, PathBuf)> {
    let root = root();
    let libs = match ensure_jars(KAFKA_VERSION) {
        Ok(home) => home.join("libs"),
        Err(e) => {
            eprintln!("could not fetch the Kafka jars ({e:#}): measuring our planner only");
            return None;
        }
    };
    let classes = root.join(".cache/planner-bench/classes");
    let source = root.join("testbed/bench/planner/KafkaGenerate.java");
    let class = classes.join("KafkaGenerate.class");
    let stale = match (std::fs::metadata(&source), std::fs::metadata(&class)) {
        (Ok(s), Ok(c)) => s.modified().ok() > c.modified().ok(),
        _ => true,
    };
    if stale {
        std::fs::create_dir_all(&classes).ok()?;
        let out = Command::new("javac")
            .arg("-cp")
            .arg(libs.join("*"))
            .arg("-d")
            .arg(&classes)
            .arg(&source)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!("javac failed: {}", String::from_utf8_lossy(&o.stderr));
                return None;
            }
            Err(e) => {
                eprintln!("javac not available ({e}): measuring our planner only");
                return None;
            }
        }
    }
    Some((classes, libs))
}

/// Runs Kafka's algorithm on every scenario in one JVM; `None` per scenario on failure.
fn kafka(scenarios: &[Scenario], dir: &Path) -> Vec<Option<(Vec<PartitionAssignment>, Duration)>> {
    let Some((classes, libs)) = kafka_harness() else {
        return scenarios.iter().map(|_| None).collect();
    };
    let mut args = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        let input = dir.join(format!("scenario-{i}.in.json"));
        let output = dir.join(format!("scenario-{i}.kafka.json"));
        let mut doc: serde_json::Value =
            serde_json::from_str(&reassignment_json(&s.current)).expect("our JSON parses");
        doc["brokers"] = serde_json::to_value(&s.after).expect("brokers serialize");
        std::fs::write(&input, doc.to_string()).expect("writing the benchmark input");
        let _ = std::fs::remove_file(&output);
        args.push(input);
        args.push(output);
    }
    let classpath = format!("{}:{}", classes.display(), libs.join("*").display());
    let out = Command::new("java")
        .arg("-cp")
        .arg(classpath)
        .arg("KafkaGenerate")
        .args(&args)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "Kafka harness failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("java not available: {e}"),
    }
    args.chunks(2)
        .map(|pair| {
            let text = std::fs::read_to_string(&pair[1]).ok()?;
            let nanos: u64 =
                serde_json::from_str::<serde_json::Value>(&text).ok()?["nanos"].as_u64()?;
            Some((parse_reassignment(&text).ok()?, Duration::from_nanos(nanos)))
        })
        .collect()
}

fn print_row(tool: &str, r: &Row) {
    let m = &r.metrics;
    println!(
        "  {tool:<6} {:>15} {:>6.2}  {:>7} ({:>3})  {:>7} ({:>3})  {:>10}  {}",
        format!("{} / {}", m.replicas_moved, r.lower_bound),
        ratio(m.replicas_moved, r.lower_bound),
        m.replica_spread,
        m.topic_replica_spread,
        m.leader_spread,
        m.topic_leader_spread,
        ms(r.time),
        r.note
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects scenarios by substring.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let list: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| filter.is_empty() || filter.iter().any(|f| s.name.contains(f.as_str())))
        .collect();
    let dir = root().join(".cache/planner-bench");
    std::fs::create_dir_all(&dir).expect("creating .cache/planner-bench");
    let theirs = kafka(&list, &dir);

    println!(
        "planner benchmark: ours vs Kafka {KAFKA_VERSION} `kafka-reassign-partitions --generate` (calculateAssignment)"
    );
    println!(
        "moved = replicas added to a broker that did not hold them; LB = our lower bound (same for both)"
    );
    println!(
        "spread = max-min per broker over the target brokers (largest within one topic in parentheses)"
    );
    for (s, kafka) in list.iter().zip(theirs) {
        let topics = s
            .current
            .iter()
            .map(|p| &p.topic)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        println!();
        println!(
            "{}: {} -> {} brokers, {} topics, {} partitions",
            s.name,
            s.before.len(),
            s.after.len(),
            topics,
            s.current.len()
        );
        println!(
            "  {:<6} {:>15} {:>6}  {:>13}  {:>13}  {:>10}",
            "tool", "moved / LB", "ratio", "replicas", "leaders", "time"
        );
        let ids: Vec<i32> = s.after.iter().map(|b| b.id).collect();
        let before_ids: Vec<i32> = s.before.iter().map(|b| b.id).collect();
        let start = evaluate(&s.current, &s.current, &before_ids, &Default::default());
        println!(
            "  {:<6} {:>15} {:>6}  {:>7} ({:>3})  {:>7} ({:>3})",
            "start",
            "",
            "",
            start.replica_spread,
            start.topic_replica_spread,
            start.leader_spread,
            start.topic_leader_spread
        );
        let (row, lb) = ours(s);
        print_row("ours", &row);
        let ours_moved = row.metrics.replicas_moved;
        match kafka {
            Some((target, time)) => {
                let metrics = evaluate(&s.current, &target, &ids, &Default::default());
                let kafka_moved = metrics.replicas_moved;
                print_row(
                    "kafka",
                    &Row {
                        metrics,
                        lower_bound: lb,
                        time,
                        note: "calculateAssignment only, JVM started".into(),
                    },
                );
                println!(
                    "  kafka moves {:.2}x the replicas ours moves",
                    ratio(kafka_moved, ours_moved)
                );
            }
            None => println!("  kafka  (not measured)"),
        }
    }
}
