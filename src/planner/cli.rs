//! `kafka-operator plan`: the planner on files, for people and scripts.
//!
//! Prints the proposed assignment of every input partition as reassignment JSON on stdout (for
//! `kafka-reassign-partitions --execute --reassignment-json-file`) and a summary on stderr.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Instant;

use anyhow::{Context, bail};

use super::json::{parse_reassignment, parse_sizes, reassignment_json};
use super::{Broker, Mode, Plan, PlanRequest, plan};

/// Propose a partition reassignment for a broker set change or replication-factor change.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Current assignment in Kafka's reassignment JSON (`{"version":1,"partitions":[...]}`, as
    /// printed by `kafka-reassign-partitions --generate`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub assignment: String,
    /// The broker ids AFTER the change, comma-separated (e.g. `0,1,2`). Brokers in the
    /// assignment but not here are drained; brokers here holding nothing get replicas.
    #[arg(long, value_name = "IDS", value_delimiter = ',', required = true, num_args = 1..)]
    pub brokers: Vec<i32>,
    /// Racks as `id:rack`, comma-separated (e.g. `0:a,1:b,2:c`). Give one for every broker in
    /// --brokers, or none; racks of leaving brokers are optional.
    #[arg(long, value_name = "ID:RACK", value_delimiter = ',', value_parser = parse_rack)]
    pub racks: Vec<(i32, String)>,
    /// Partition sizes: the output of `kafka-log-dirs --describe`, or
    /// `{"partitions":[{"topic":"t","partition":0,"size":123}]}`.
    #[arg(long, value_name = "FILE")]
    pub sizes: Option<String>,
    /// New replication factor for a topic, as `topic=N`; repeat for more topics.
    #[arg(long = "replication-factor", value_name = "TOPIC=N", value_parser = parse_replication_factor)]
    pub replication_factors: Vec<(String, usize)>,
    /// Also move replicas to balance the cluster when no broker is added (adding brokers always
    /// rebalances).
    #[arg(long)]
    pub rebalance: bool,
}

fn parse_rack(s: &str) -> Result<(i32, String), String> {
    let (id, rack) = s
        .split_once(':')
        .ok_or_else(|| format!("expected ID:RACK, got {s:?}"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| format!("broker id {id:?} in {s:?} is not a number"))?;
    if rack.is_empty() {
        return Err(format!("rack of broker {id} is empty"));
    }
    Ok((id, rack.to_string()))
}

fn parse_replication_factor(s: &str) -> Result<(String, usize), String> {
    let (topic, rf) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected TOPIC=N, got {s:?}"))?;
    if topic.is_empty() {
        return Err(format!("topic is empty in {s:?}"));
    }
    let rf = rf.parse().map_err(|_| {
        format!("replication factor {rf:?} for topic {topic} is not a whole number")
    })?;
    Ok((topic.to_string(), rf))
}

/// Runs `plan` with the process's stdin, stdout and stderr.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    run_with(
        args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

/// [`run`] with explicit streams (for tests).
pub fn run_with(
    args: &PlanArgs,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<()> {
    let text = if args.assignment == "-" {
        let mut s = String::new();
        stdin
            .read_to_string(&mut s)
            .context("reading the assignment from stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.assignment)
            .with_context(|| format!("reading --assignment {}", args.assignment))?
    };
    let current = parse_reassignment(&text)
        .with_context(|| format!("in --assignment {}", args.assignment))?;
    let sizes = match &args.sizes {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading --sizes {path}"))?;
            parse_sizes(&text).with_context(|| format!("in --sizes {path}"))?
        }
        None => BTreeMap::new(),
    };
    let req = request(args, current, sizes)?;
    let started = Instant::now();
    let plan = plan(&req)?;
    let elapsed = started.elapsed();
    stdout.write_all(reassignment_json(&plan.target).as_bytes())?;
    stdout.flush()?;
    write_summary(stderr, &plan, args.sizes.is_some(), elapsed)?;
    Ok(())
}

fn request(
    args: &PlanArgs,
    current: Vec<super::PartitionAssignment>,
    sizes: BTreeMap<(String, i32), u64>,
) -> anyhow::Result<PlanRequest> {
    let mut racks = BTreeMap::new();
    for (id, rack) in &args.racks {
        if racks.insert(*id, rack.clone()).is_some() {
            bail!("--racks gives broker {id} twice");
        }
    }
    let known =
        |id: &i32| args.brokers.contains(id) || current.iter().any(|p| p.replicas.contains(id));
    if let Some(id) = racks.keys().find(|id| !known(id)) {
        bail!("--racks names broker {id}, which is neither in --brokers nor in the assignment");
    }
    let mut replication_factors = BTreeMap::new();
    for (topic, rf) in &args.replication_factors {
        if replication_factors.insert(topic.clone(), *rf).is_some() {
            bail!("--replication-factor is given twice for topic {topic}");
        }
    }
    let brokers = args
        .brokers
        .iter()
        .map(|&id| Broker {
            id,
            rack: racks.get(&id).cloned(),
        })
        .collect();
    let leaving_racks = racks
        .into_iter()
        .filter(|(id, _)| !args.brokers.contains(id))
        .collect();
    Ok(PlanRequest {
        current,
        brokers,
        leaving_racks,
        sizes,
        replication_factors,
        rebalance: args.rebalance,
    })
}

fn write_summary(
    out: &mut dyn Write,
    plan: &Plan,
    with_sizes: bool,
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    let s = &plan.summary;
    let m = &s.metrics;
    let list = |ids: &[i32]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let mode = match s.mode {
        Mode::PlaceOnly => "place only (only replicas that must move do)",
        Mode::Rebalance => "rebalance (fewest moves to a balanced cluster)",
    };
    writeln!(out, "brokers leaving:  {}", list(&s.leaving))?;
    writeln!(out, "brokers arriving: {}", list(&s.arriving))?;
    writeln!(out, "mode:             {mode}")?;
    writeln!(
        out,
        "replicas moved:   {} (lower bound {}, ratio {:.2})",
        m.replicas_moved,
        s.lower_bound,
        s.ratio()
    )?;
    writeln!(
        out,
        "partitions:       {} ({} get new replicas, {} only change preferred leader)",
        plan.target.len(),
        m.partitions_moved,
        m.partitions_reordered
    )?;
    if with_sizes {
        match s.lower_bound_bytes {
            Some(lb) => writeln!(
                out,
                "bytes moved:      {} (lower bound {})",
                human_bytes(m.bytes_moved),
                human_bytes(lb)
            )?,
            None => writeln!(out, "bytes moved:      {}", human_bytes(m.bytes_moved))?,
        }
    }
    writeln!(
        out,
        "replica spread:   {} (max-min replicas per broker; largest within a topic: {})",
        m.replica_spread, m.topic_replica_spread
    )?;
    writeln!(
        out,
        "leader spread:    {} (max-min preferred leaders per broker; largest within a topic: {})",
        m.leader_spread, m.topic_leader_spread
    )?;
    let ms = elapsed.as_secs_f64() * 1e3;
    if ms < 10.0 {
        writeln!(out, "planning time:    {ms:.2} ms")
    } else {
        writeln!(out, "planning time:    {ms:.0} ms")
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {} ({b} bytes)", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PlanArgs,
    }

    fn args(list: &[&str]) -> Result<PlanArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("plan").chain(list.iter().copied())).map(|c| c.args)
    }

    fn run_stdin(a: &PlanArgs, input: &str) -> (anyhow::Result<()>, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = run_with(a, &mut input.as_bytes(), &mut out, &mut err);
        (
            r,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    const CURRENT: &str = r#"{"version":1,"partitions":[
        {"topic":"orders","partition":0,"replicas":[0,1,2]},
        {"topic":"orders","partition":1,"replicas":[1,2,3]},
        {"topic":"orders","partition":2,"replicas":[2,3,0]},
        {"topic":"orders","partition":3,"replicas":[3,0,1]}]}"#;

    #[test]
    fn plans_a_decommission_from_stdin() {
        let a = args(&["--assignment", "-", "--brokers", "0,1,2"]).unwrap();
        let (r, out, err) = run_stdin(&a, CURRENT);
        r.unwrap();
        let target = parse_reassignment(&out).unwrap();
        assert_eq!(target.len(), 4);
        assert!(target.iter().all(|p| !p.replicas.contains(&3)));
        assert!(err.contains("brokers leaving:  3"), "{err}");
        assert!(
            err.contains("replicas moved:   3 (lower bound 3, ratio 1.00)"),
            "{err}"
        );
        assert!(err.contains("planning time:"), "{err}");
    }

    #[test]
    fn parses_racks_and_replication_factors() {
        let a = args(&[
            "--assignment",
            "x.json",
            "--brokers",
            "0,1",
            "--racks",
            "0:a,1:b,2:c",
            "--replication-factor",
            "orders=2",
            "--replication-factor",
            "a=b=1",
        ])
        .unwrap();
        assert_eq!(a.brokers, vec![0, 1]);
        assert_eq!(a.racks[2], (2, "c".to_string()));
        assert_eq!(a.replication_factors[1], ("a=b".to_string(), 1));
        assert!(args(&["--assignment", "-", "--brokers", "0,x"]).is_err());
        assert!(args(&["--assignment", "-", "--brokers", "0", "--racks", "0"]).is_err());
        assert!(
            args(&[
                "--assignment",
                "-",
                "--brokers",
                "0",
                "--replication-factor",
                "t=x"
            ])
            .is_err()
        );
        assert!(args(&["--assignment", "-"]).is_err());
    }

    #[test]
    fn explains_bad_input() {
        let a = args(&["--assignment", "-", "--brokers", "0,1"]).unwrap();
        let (r, out, _) = run_stdin(&a, CURRENT);
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains("topic orders has replication factor 3 but only 2 brokers remain"),
            "{e}"
        );
        assert!(out.is_empty());

        let (r, _, _) = run_stdin(&a, "{\"version\":1");
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains("in --assignment -") && e.contains("not valid reassignment JSON"),
            "{e}"
        );

        let a = args(&["--assignment", "/nonexistent/x.json", "--brokers", "0"]).unwrap();
        let (r, _, _) = run_stdin(&a, "");
        assert!(
            format!("{:#}", r.unwrap_err()).contains("reading --assignment /nonexistent/x.json")
        );

        let a = args(&["--assignment", "-", "--brokers", "0,1,2", "--racks", "9:a"]).unwrap();
        let (r, _, _) = run_stdin(&a, CURRENT);
        assert!(format!("{:#}", r.unwrap_err()).contains("--racks names broker 9"));
    }

    #[test]
    fn reports_bytes_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = dir.path().join("sizes.json");
        std::fs::write(
            &sizes,
            r#"{"partitions":[{"topic":"orders","partition":0,"size":1048576},
                {"topic":"orders","partition":1,"size":2048}]}"#,
        )
        .unwrap();
        let a = args(&[
            "--assignment",
            "-",
            "--brokers",
            "0,1,2",
            "--sizes",
            sizes.to_str().unwrap(),
        ])
        .unwrap();
        let (r, _, err) = run_stdin(&a, CURRENT);
        r.unwrap();
        // Broker 3 holds partitions 1, 2 and 3: 2048 bytes + 0 + 0.
        assert!(
            err.contains(
                "bytes moved:      2.0 KiB (2048 bytes) (lower bound 2.0 KiB (2048 bytes))"
            ),
            "{err}"
        );
    }
}
