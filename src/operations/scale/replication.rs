//! Replication factor changes of `spec.topics`, by reassignment.

use std::collections::BTreeMap;

use crate::api::{Operation, OperationKind, Step, TopicSpec};
use crate::kafka::{ClusterSnapshot, KafkaAdmin, KafkaError};

use super::mover::move_partitions;
use super::{ScaleInput, ScaleOutcome, finish, notice, settle, wait_for_kafka};

/// Replication factors of `spec.topics` that differ from Kafka's, by topic.
fn replication_changes(topics: &[TopicSpec], snapshot: &ClusterSnapshot) -> BTreeMap<String, i32> {
    topics
        .iter()
        .filter_map(|t| {
            let current = snapshot.topics.get(&t.name)?;
            (current.replication_factor() != t.replication_factor)
                .then(|| (t.name.clone(), t.replication_factor))
        })
        .collect()
}

/// No broker count change: start a replication factor change if the spec asks for one.
pub(super) async fn start_replication_change(
    admin: Option<&dyn KafkaAdmin>,
    input: &ScaleInput,
    running: i32,
) -> Result<ScaleOutcome, KafkaError> {
    let mut out = ScaleOutcome {
        broker_replicas: running,
        ..Default::default()
    };
    let Some(admin) = admin else {
        return Ok(out);
    };
    if input.topics.is_empty() || input.ready_brokers < running {
        return Ok(out);
    }
    let snapshot = admin.snapshot().await?;
    let changes = replication_changes(&input.topics, &snapshot);
    if changes.is_empty() {
        return Ok(out);
    }
    let described: Vec<String> = changes
        .iter()
        .map(|(t, rf)| {
            let from = snapshot
                .topics
                .get(t)
                .map(|s| s.replication_factor())
                .unwrap_or(0);
            format!("{t} {from} -> {rf}")
        })
        .collect();
    out.notices.push(notice(
        false,
        "ReplicationFactorChanging",
        format!(
            "changing replication factors by reassignment: {}",
            described.join(", ")
        ),
    ));
    out.operation = Some(Operation {
        kind: OperationKind::ReplicationFactorChange,
        step: Step::Throttling,
        target_brokers: running,
        replication_factors: changes,
        started_at: Some(input.now.clone()),
        ..Default::default()
    });
    out.busy = true;
    Ok(out)
}

/// The replication factor change state machine: move (add or drop replicas), verify, done.
pub(super) async fn change_replication(
    admin: Option<&dyn KafkaAdmin>,
    input: &ScaleInput,
    running: i32,
    mut op: Operation,
) -> Result<ScaleOutcome, KafkaError> {
    let mut out = ScaleOutcome {
        broker_replicas: running,
        busy: true,
        ..Default::default()
    };
    let Some(admin) = admin else {
        return Ok(wait_for_kafka(op, out));
    };
    match op.step {
        Step::Throttling | Step::Moving => {
            let targets: Vec<i32> = (0..running).collect();
            move_partitions(admin, &mut op, &targets, false, input, &mut out.notices).await?;
            out.operation = Some(op);
        }
        _ => {
            let snapshot = admin.snapshot().await?;
            if !snapshot.reassignments.is_empty() || !snapshot.under_replicated().is_empty() {
                op.waiting_for = Some("every partition to be in sync with its new replicas".into());
                out.operation = Some(op);
                return Ok(out);
            }
            settle(admin, input, &mut op, &mut out).await?;
            let done: Vec<String> = op
                .replication_factors
                .iter()
                .map(|(t, rf)| format!("{t} -> {rf}"))
                .collect();
            finish(
                &mut out,
                "ReplicationFactorChanged",
                format!("replication factors changed: {}", done.join(", ")),
            );
        }
    }
    Ok(out)
}
