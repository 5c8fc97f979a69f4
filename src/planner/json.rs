//! Kafka's reassignment JSON (what `kafka-reassign-partitions` reads and writes) and partition
//! sizes (from `kafka-log-dirs --describe`, or a simple list).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PartitionAssignment;

/// `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentJson {
    pub version: i32,
    pub partitions: Vec<ReassignmentEntry>,
}

/// One partition of [`ReassignmentJson`]. `log_dirs` is accepted and ignored on input (the
/// planner does not place replicas on log directories) and never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentEntry {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    #[serde(default, skip_serializing)]
    pub log_dirs: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("not valid reassignment JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("unsupported reassignment JSON version {0}; only version 1 exists")]
    Version(i32),
    #[error(
        "partition {topic}-{partition} has {dirs} log_dirs for {replicas} replicas; give one per replica or leave log_dirs out"
    )]
    LogDirs {
        topic: String,
        partition: i32,
        dirs: usize,
        replicas: usize,
    },
    #[error("not a sizes file: {0}")]
    Sizes(String),
}

/// Parses reassignment JSON into assignments, in file order.
pub fn parse_reassignment(text: &str) -> Result<Vec<PartitionAssignment>, JsonError> {
    let doc: ReassignmentJson = serde_json::from_str(text)?;
    if doc.version != 1 {
        return Err(JsonError::Version(doc.version));
    }
    doc.partitions
        .into_iter()
        .map(|e| {
            if let Some(dirs) = &e.log_dirs
                && dirs.len() != e.replicas.len()
            {
                return Err(JsonError::LogDirs {
                    topic: e.topic,
                    partition: e.partition,
                    dirs: dirs.len(),
                    replicas: e.replicas.len(),
                });
            }
            Ok(PartitionAssignment {
                topic: e.topic,
                partition: e.partition,
                replicas: e.replicas,
            })
        })
        .collect()
}

/// Version-1 reassignment JSON for the given assignments (in the given order), one partition
/// per line so that large plans stay readable and diffable.
pub fn reassignment_json(assignments: &[PartitionAssignment]) -> String {
    let mut out = String::from("{\"version\":1,\"partitions\":[");
    for (i, p) in assignments.iter().enumerate() {
        // Written by hand (a JSON string for the topic) to keep Kafka's key order, which a
        // map-backed JSON value would sort.
        let replicas: Vec<String> = p.replicas.iter().map(|r| r.to_string()).collect();
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push_str(&format!(
            r#"{{"topic":{},"partition":{},"replicas":[{}]}}"#,
            serde_json::Value::String(p.topic.clone()),
            p.partition,
            replicas.join(",")
        ));
    }
    out.push_str("\n]}\n");
    out
}

/// Partition sizes in bytes, from either
/// * the output of `kafka-log-dirs --describe` (its leading non-JSON lines are skipped; a
///   partition's size is the largest over its replicas, i.e. what a new replica must copy), or
/// * `{"partitions":[{"topic":"t","partition":0,"size":123}]}`.
pub fn parse_sizes(text: &str) -> Result<BTreeMap<(String, i32), u64>, JsonError> {
    let start = text
        .lines()
        .scan(0usize, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, l)| l.trim_start().starts_with('{'))
        .map(|(at, _)| at)
        .ok_or_else(|| JsonError::Sizes("no JSON object found".into()))?;
    let doc: serde_json::Value = serde_json::from_str(&text[start..])?;
    let mut sizes = BTreeMap::new();
    if let Some(brokers) = doc.get("brokers").and_then(|b| b.as_array()) {
        let brokers: Vec<LogDirsBroker> =
            serde_json::from_value(serde_json::Value::Array(brokers.clone()))?;
        for broker in brokers {
            for dir in broker.log_dirs {
                for p in dir.partitions {
                    let (topic, partition) = p
                        .partition
                        .rsplit_once('-')
                        .and_then(|(t, n)| Some((t.to_string(), n.parse::<i32>().ok()?)))
                        .ok_or_else(|| {
                            JsonError::Sizes(format!("bad partition name {:?}", p.partition))
                        })?;
                    let e = sizes.entry((topic, partition)).or_insert(0);
                    *e = (*e).max(p.size);
                }
            }
        }
    } else if let Some(parts) = doc.get("partitions") {
        let list: Vec<SizeEntry> = serde_json::from_value(parts.clone())?;
        for p in list {
            sizes.insert((p.topic, p.partition), p.size);
        }
    } else {
        return Err(JsonError::Sizes(
            "expected kafka-log-dirs output (\"brokers\") or a \"partitions\" list".into(),
        ));
    }
    Ok(sizes)
}

#[derive(Deserialize)]
struct LogDirsBroker {
    #[serde(rename = "logDirs")]
    log_dirs: Vec<LogDir>,
}

#[derive(Deserialize)]
struct LogDir {
    #[serde(default)]
    partitions: Vec<LogDirPartition>,
}

#[derive(Deserialize)]
struct LogDirPartition {
    partition: String,
    size: u64,
}

#[derive(Deserialize)]
struct SizeEntry {
    topic: String,
    partition: i32,
    size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_log_dirs() {
        let text = r#"{"version":1,"partitions":[
            {"topic":"orders","partition":0,"replicas":[1,2,3],"log_dirs":["any","any","any"]},
            {"topic":"orders","partition":1,"replicas":[2,3,1]}]}"#;
        let parsed = parse_reassignment(text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].replicas, vec![1, 2, 3]);
        let out = reassignment_json(&parsed);
        assert!(!out.contains("log_dirs"));
        assert_eq!(parse_reassignment(&out).unwrap(), parsed);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(
            doc["partitions"][1]["replicas"],
            serde_json::json!([2, 3, 1])
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            parse_reassignment(r#"{"version":2,"partitions":[]}"#),
            Err(JsonError::Version(2))
        ));
        assert!(matches!(
            parse_reassignment(r#"{"version":1,"partitions":[{"topic":"t","partition":0}]}"#),
            Err(JsonError::Syntax(_))
        ));
        let e = parse_reassignment(
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2],"log_dirs":["any"]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("t-0 has 1 log_dirs for 2 replicas"),
            "{e}"
        );
    }

    #[test]
    fn empty_assignment_round_trips() {
        let out = reassignment_json(&[]);
        assert_eq!(parse_reassignment(&out).unwrap(), vec![]);
    }

    #[test]
    fn parses_log_dirs_output() {
        let text = "Querying brokers for log directories information\n\
            Received log directory information from brokers 1,2\n\
            {\"version\":1,\"brokers\":[{\"broker\":1,\"logDirs\":[{\"logDir\":\"/data\",\"error\":null,\"partitions\":[\
            {\"partition\":\"my-topic-0\",\"size\":100,\"offsetLag\":0,\"isFuture\":false}]}]},\
            {\"broker\":2,\"logDirs\":[{\"logDir\":\"/data\",\"error\":null,\"partitions\":[\
            {\"partition\":\"my-topic-0\",\"size\":120,\"offsetLag\":0,\"isFuture\":false},\
            {\"partition\":\"other-3\",\"size\":7,\"offsetLag\":0,\"isFuture\":false}]}]}]}\n";
        let sizes = parse_sizes(text).unwrap();
        assert_eq!(sizes[&("my-topic".to_string(), 0)], 120);
        assert_eq!(sizes[&("other".to_string(), 3)], 7);
    }

    #[test]
    fn parses_simple_sizes() {
        let sizes =
            parse_sizes(r#"{"partitions":[{"topic":"a","partition":2,"size":5}]}"#).unwrap();
        assert_eq!(sizes[&("a".to_string(), 2)], 5);
        assert!(parse_sizes("{\"x\":1}").is_err());
        assert!(parse_sizes("nothing here").is_err());
    }
}
