//! Changing the number of brokers without losing data.
//!
//! Scale-down (N -> M) drains brokers M..N-1 before the StatefulSet shrinks:
//! check feasibility -> record the operation -> throttle -> move partitions in bounded batches ->
//! verify from Kafka (no partition lists a leaving broker, every partition fully in sync) ->
//! clear throttles, elect preferred leaders -> shrink the StatefulSet -> unregister the removed
//! brokers (KRaft) -> delete their volumes (per `pvcRetention.whenScaled`).
//!
//! Scale-up (N -> M) grows the StatefulSet, waits until the new brokers are registered and
//! ready, then (with `rebalance.onScaleUp`) moves partitions onto them the same way.
//!
//! Every step is idempotent and the whole state lives in the KafkaCluster status
//! ([`Operation`]); what is in flight is read back from Kafka, never trusted from memory. An
//! operator killed at any instant resumes from the status: moves already done are not planned
//! again (the plan is recomputed from Kafka's current assignment, and the planner moves only what
//! still has to move), moves in flight are waited for, throttles recorded are cleared.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Operation, OperationKind, PartitionMove, RebalanceSpec, TopicSpec};
use crate::kafka::throttle::{FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS};
use crate::kafka::{
    BrokerId, ClusterSnapshot, ConfigResource, KafkaAdmin, KafkaError, OngoingReassignment,
    Throttle, TopicPartition,
};
use crate::planner::{self, PartitionAssignment, PlanRequest};

use super::batch::{PendingMove, copying, next_batch};
use super::roll::min_insync_replicas;

/// Rounds a submitted move may stay unlisted by Kafka without its target in the metadata
/// before it is taken for cancelled (metadata lags by a round or two, not by this many).
const UNLISTED_ROUNDS: u32 = 15;

/// How long one round waits for brokers to apply a new throttle before trying again later.
const THROTTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Steps of an operation, as written to `status.operation.step`.
pub mod step {
    /// Scale-up: new brokers are starting.
    pub const WAITING_FOR_BROKERS: &str = "WaitingForBrokers";
    /// Recorded; the replication throttle is being set.
    pub const THROTTLING: &str = "Throttling";
    /// Partitions are moving.
    pub const MOVING: &str = "Moving";
    /// Moves are done; checking Kafka's state before anything is removed.
    pub const VERIFYING: &str = "Verifying";
    /// The StatefulSet is shrinking; waiting for the drained brokers' pods to stop.
    pub const SHRINKING: &str = "Shrinking";
    /// Removing the drained brokers' registrations (KRaft).
    pub const UNREGISTERING: &str = "Unregistering";
    /// Deleting the drained brokers' volumes.
    pub const CLEANING_UP: &str = "CleaningUp";
}

/// What the scale logic needs to know about the cluster.
#[derive(Clone, Debug)]
pub struct ScaleInput {
    /// `spec.brokerCount`.
    pub desired: i32,
    /// Brokers that run or may hold data (the StatefulSet's replicas, or more per the status).
    /// None for a cluster not created yet.
    pub running: Option<i32>,
    /// Broker pods that are ready.
    pub ready_brokers: i32,
    /// Ordinals of broker pods that still exist.
    pub broker_pods: BTreeSet<i32>,
    /// The operation in progress, from the status.
    pub operation: Option<Operation>,
    pub rebalance: RebalanceSpec,
    pub kraft: bool,
    /// Delete the volumes of drained brokers.
    pub delete_drained_volumes: bool,
    /// RFC 3339 time, for `startedAt`.
    pub now: String,
    /// `spec.topics`: their replication factors are changed by reassignment.
    pub topics: Vec<TopicSpec>,
}

/// Something worth an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What the controller should do now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleOutcome {
    /// Replicas of the broker StatefulSet.
    pub broker_replicas: i32,
    /// The operation to write to the status (None: nothing in progress).
    pub operation: Option<Operation>,
    /// Why a lower broker count is not acted on (the ScaleDownBlocked condition).
    pub blocked: Option<String>,
    pub notices: Vec<Notice>,
    /// Ordinals of brokers whose volumes are to be deleted now.
    pub delete_volumes_of: Vec<i32>,
    /// Something is moving: look again soon.
    pub busy: bool,
}

fn notice(warning: bool, reason: &'static str, message: String) -> Notice {
    Notice {
        warning,
        reason,
        message,
    }
}

/// The operation is complete: nothing in progress any more, and an event says what was done.
fn finish(out: &mut ScaleOutcome, reason: &'static str, message: String) {
    out.notices.push(notice(false, reason, message));
    out.operation = None;
    out.busy = false;
}

/// The operation waits: Kafka cannot be asked (no broker ready yet).
fn wait_for_kafka(mut op: Operation, mut out: ScaleOutcome) -> ScaleOutcome {
    op.waiting_for = Some("Kafka to be reachable".into());
    out.operation = Some(op);
    out
}

fn list(ids: impl IntoIterator<Item = i32>) -> String {
    ids.into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Advances scaling by one step. `admin` is None when Kafka cannot be reached yet (no broker
/// ready); then nothing that needs Kafka is started.
pub async fn advance(
    admin: Option<&dyn KafkaAdmin>,
    input: &ScaleInput,
) -> Result<ScaleOutcome, KafkaError> {
    let Some(running) = input.running else {
        // A new cluster: create it as asked.
        return Ok(ScaleOutcome {
            broker_replicas: input.desired,
            ..Default::default()
        });
    };
    match input.operation.clone() {
        None => start(admin, input, running).await,
        Some(op) => match op.kind {
            OperationKind::ScaleDown => drain(admin, input, running, op).await,
            OperationKind::ScaleUp => grow(admin, input, running, op).await,
            OperationKind::ReplicationFactorChange => {
                change_replication(admin, input, running, op).await
            }
        },
    }
}

/// No operation in progress: start one if the broker count changed.
async fn start(
    admin: Option<&dyn KafkaAdmin>,
    input: &ScaleInput,
    running: i32,
) -> Result<ScaleOutcome, KafkaError> {
    let desired = input.desired;
    if desired == running {
        return start_replication_change(admin, input, running).await;
    }
    if desired > running {
        let op = Operation {
            kind: OperationKind::ScaleUp,
            step: step::WAITING_FOR_BROKERS.into(),
            target_brokers: desired,
            arriving_brokers: (running..desired).collect(),
            started_at: Some(input.now.clone()),
            waiting_for: Some(format!(
                "brokers {} to start and register",
                list(running..desired)
            )),
            ..Default::default()
        };
        return Ok(ScaleOutcome {
            broker_replicas: desired,
            operation: Some(op),
            notices: vec![notice(
                false,
                "ScalingUp",
                format!(
                    "adding brokers {}: {running} -> {desired}",
                    list(running..desired)
                ),
            )],
            busy: true,
            ..Default::default()
        });
    }

    // A scale-down. Nothing is removed until the leaving brokers hold no replica.
    let leaving: Vec<i32> = (desired..running).collect();
    let hold = |why: String| ScaleOutcome {
        broker_replicas: running,
        blocked: Some(why),
        busy: true,
        ..Default::default()
    };
    let Some(admin) = admin else {
        return Ok(hold(format!(
            "brokerCount lowered from {running} to {desired}: broker(s) {} may hold partition replicas and are kept until they are drained; the drain starts when Kafka is reachable",
            list(leaving.iter().copied())
        )));
    };
    let snapshot = admin.snapshot().await?;
    // Every staying broker must be up to take replicas, and every leaving broker that holds
    // any to hand them over. A leaving broker that never joined (a scale-up undone before its
    // pod started) holds nothing and needs no drain.
    let missing = unavailable_brokers(&snapshot, (0..desired).collect());
    if !missing.is_empty() {
        return Ok(hold(format!(
            "brokerCount lowered from {running} to {desired}: waiting for broker(s) {} to be up before draining broker(s) {}",
            list(missing),
            list(leaving.iter().copied())
        )));
    }
    if let Some(why) = feasibility(admin, &snapshot, desired).await? {
        // Reported through the ScaleDownBlocked condition and its event.
        return Ok(ScaleOutcome {
            broker_replicas: running,
            blocked: Some(why),
            ..Default::default()
        });
    }
    let leaving_set: BTreeSet<i32> = leaving.iter().copied().collect();
    // Each replica on a leaving broker is one copy of the partition to build elsewhere.
    let (partitions_total, bytes_total) = snapshot
        .partitions()
        .map(|(_, p)| {
            let copies = p
                .replicas
                .iter()
                .filter(|r| leaving_set.contains(r))
                .count();
            (p, copies as i64)
        })
        .filter(|(_, copies)| *copies > 0)
        .fold((0i64, 0i64), |(n, bytes), (p, copies)| {
            (n + 1, bytes + copies * p.size() as i64)
        });
    let op = Operation {
        kind: OperationKind::ScaleDown,
        step: step::THROTTLING.into(),
        target_brokers: desired,
        leaving_brokers: leaving.clone(),
        partitions_total,
        bytes_total,
        started_at: Some(input.now.clone()),
        ..Default::default()
    };
    Ok(ScaleOutcome {
        broker_replicas: running,
        operation: Some(op),
        notices: vec![notice(
            false,
            "DrainStarted",
            format!(
                "draining broker(s) {} before scaling {running} -> {desired}: {partitions_total} partition(s), {bytes_total} bytes to move",
                list(leaving)
            ),
        )],
        busy: true,
        ..Default::default()
    })
}

/// Whether the remaining brokers can hold every topic; Some(reason) when they cannot.
async fn feasibility(
    admin: &dyn KafkaAdmin,
    snapshot: &ClusterSnapshot,
    remaining: i32,
) -> Result<Option<String>, KafkaError> {
    for (topic, rf) in largest_replication_factors(snapshot) {
        if rf > remaining {
            return Ok(Some(format!(
                "cannot scale to {remaining} broker(s): topic {topic} has replication factor {rf}; lower the topic's replication factor to at most {remaining} first (spec.topics, or kafka-reassign-partitions for topics the operator does not manage), or keep at least {rf} brokers"
            )));
        }
    }
    for (topic, min_isr) in min_insync_replicas(admin, snapshot).await? {
        if min_isr > remaining {
            return Ok(Some(format!(
                "cannot scale to {remaining} broker(s): topic {topic} has min.insync.replicas {min_isr}, so no write with acks=all could succeed; lower min.insync.replicas to at most {remaining} first, or keep at least {min_isr} brokers"
            )));
        }
    }
    Ok(None)
}

/// The largest replica count of each topic's partitions, counting moves in progress with their
/// target: the planner has to place that many replicas on distinct brokers.
fn largest_replication_factors(snapshot: &ClusterSnapshot) -> BTreeMap<String, i32> {
    let mut rf = BTreeMap::<String, i32>::new();
    for (tp, replicas) in snapshot.target_assignment() {
        let n = rf.entry(tp.topic).or_default();
        *n = (*n).max(replicas.len() as i32);
    }
    rf
}

/// Brokers a move needs that Kafka does not count as live: the `needed` ones (those receiving
/// replicas) and any broker some partition lists as a replica.
fn unavailable_brokers(snapshot: &ClusterSnapshot, needed: BTreeSet<i32>) -> Vec<i32> {
    let live = snapshot.broker_ids();
    let mut wanted = needed;
    wanted.extend(snapshot.holding_brokers());
    wanted.into_iter().filter(|b| !live.contains(b)).collect()
}

/// The scale-down state machine.
async fn drain(
    admin: Option<&dyn KafkaAdmin>,
    input: &ScaleInput,
    running: i32,
    mut op: Operation,
) -> Result<ScaleOutcome, KafkaError> {
    let target = op.target_brokers;
    let mut out = ScaleOutcome {
        broker_replicas: running,
        busy: true,
        ..Default::default()
    };
    // Until the StatefulSet shrinks, a changed broker count can still be acted on.
    let undoable = [step::THROTTLING, step::MOVING, step::VERIFYING].contains(&op.step.as_str());

    // The user changed their mind before any broker went: stop moving, keep what moved.
    if undoable && input.desired != target {
        let Some(admin) = admin else {
            op.waiting_for = Some("Kafka to be reachable to cancel the drain".into());
            out.operation = Some(op);
            return Ok(out);
        };
        cancel_moves(admin, &op).await?;
        let cancelled = notice(
            false,
            "DrainCancelled",
            format!(
                "brokerCount changed to {} during the drain to {target}: remaining moves cancelled, moved partitions stay where they are",
                input.desired
            ),
        );
        // The new count is acted on at once.
        let mut next = start(Some(admin), input, running).await?;
        next.notices.insert(0, cancelled);
        return Ok(next);
    }

    match op.step.as_str() {
        step::THROTTLING | step::MOVING => {
            let Some(admin) = admin else {
                return Ok(wait_for_kafka(op, out));
            };
            let targets: Vec<i32> = (0..target).collect();
            move_partitions(admin, &mut op, &targets, false, input, &mut out.notices).await?;
            out.operation = Some(op);
        }
        step::VERIFYING => {
            let Some(admin) = admin else {
                return Ok(wait_for_kafka(op, out));
            };
            let snapshot = admin.snapshot().await?;
            let leaving: BTreeSet<i32> = op.leaving_brokers.iter().copied().collect();
            let still_on_leaving: Vec<String> = snapshot
                .partitions()
                .filter(|(_, p)| p.replicas.iter().any(|r| leaving.contains(r)))
                .map(|(tp, _)| tp.to_string())
                .collect();
            if !still_on_leaving.is_empty() {
                // Something (another tool, a cancelled move) put replicas back: move them again.
                op.step = step::MOVING.into();
                op.waiting_for = Some(format!(
                    "{} partition(s) still have replicas on leaving brokers",
                    still_on_leaving.len()
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            if !snapshot.reassignments.is_empty() {
                op.waiting_for = Some(format!(
                    "{} reassignment(s) still in progress",
                    snapshot.reassignments.len()
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            let under = snapshot.under_replicated();
            if !under.is_empty() {
                op.waiting_for = Some(format!(
                    "{} partition(s) not fully in sync (e.g. {}); brokers are kept until every replica is in sync",
                    under.len(),
                    under[0]
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            // The leaving brokers' own word: their log directories hold no partition any more.
            let logs_left: Vec<String> = snapshot
                .partitions()
                .filter(|(_, p)| p.size_bytes.keys().any(|b| leaving.contains(b)))
                .map(|(tp, _)| tp.to_string())
                .collect();
            if !logs_left.is_empty() {
                op.waiting_for = Some(format!(
                    "leaving broker(s) to delete {} moved partition log(s) (e.g. {})",
                    logs_left.len(),
                    logs_left[0]
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            settle(admin, &mut op, &mut out).await?;
            out.notices.push(notice(
                false,
                "DrainVerified",
                format!(
                    "broker(s) {} hold no replicas and every partition is in sync; removing them",
                    list(op.leaving_brokers.iter().copied())
                ),
            ));
            op.step = step::SHRINKING.into();
            op.waiting_for = None;
            op.in_flight.clear();
            op.partitions_moved = op.partitions_total;
            op.bytes_moved = op.bytes_total;
            out.broker_replicas = target;
            out.operation = Some(op);
        }
        step::SHRINKING => {
            out.broker_replicas = target;
            let mut left: Vec<i32> = input
                .broker_pods
                .iter()
                .copied()
                .filter(|o| *o >= target)
                .collect();
            // A pod can be gone before its broker process has stopped: wait until Kafka no
            // longer counts the broker as live, so it is not unregistered while it runs.
            if left.is_empty()
                && let Some(admin) = admin
            {
                let live = admin.snapshot().await?.broker_ids();
                left = op
                    .leaving_brokers
                    .iter()
                    .copied()
                    .filter(|b| live.contains(b))
                    .collect();
            }
            if !left.is_empty() {
                op.waiting_for = Some(format!("broker(s) {} to stop", list(left)));
                out.operation = Some(op);
                return Ok(out);
            }
            let Some(admin) = admin else {
                op.waiting_for =
                    Some("Kafka to be reachable to check the removed brokers hold nothing".into());
                out.operation = Some(op);
                return Ok(out);
            };
            // Between the verification and the brokers' shutdown Kafka may still have placed a
            // new partition on them. Their volumes are still there: bring them back and drain
            // again rather than lose that partition.
            let snapshot = admin.snapshot().await?;
            let leaving: BTreeSet<i32> = op.leaving_brokers.iter().copied().collect();
            let placed: Vec<String> = snapshot
                .target_assignment()
                .into_iter()
                .filter(|(_, r)| r.iter().any(|b| leaving.contains(b)))
                .map(|(tp, _)| tp.to_string())
                .collect();
            if !placed.is_empty() {
                let restore = op.leaving_brokers.iter().max().map_or(target, |b| b + 1);
                out.broker_replicas = restore.max(target);
                out.notices.push(notice(
                    true,
                    "DrainReopened",
                    format!(
                        "{} partition(s) (e.g. {}) were placed on broker(s) {} while they stopped; bringing them back to move them off",
                        placed.len(),
                        placed[0],
                        list(op.leaving_brokers.iter().copied())
                    ),
                ));
                op.step = step::MOVING.into();
                op.waiting_for = Some(format!(
                    "broker(s) {} to come back: {} partition(s) were placed on them",
                    list(op.leaving_brokers.iter().copied()),
                    placed.len()
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            op.step = if input.kraft {
                step::UNREGISTERING
            } else {
                step::CLEANING_UP
            }
            .into();
            op.waiting_for = None;
            out.operation = Some(op);
        }
        step::UNREGISTERING => {
            out.broker_replicas = target;
            let Some(admin) = admin else {
                op.waiting_for =
                    Some("Kafka to be reachable to unregister the removed brokers".into());
                out.operation = Some(op);
                return Ok(out);
            };
            for broker in &op.leaving_brokers {
                match admin.unregister_broker(*broker).await {
                    Ok(()) => {}
                    // Already gone (a restart after a partial run): nothing to do.
                    Err(KafkaError::Kafka { name, .. }) if name == "BROKER_ID_NOT_REGISTERED" => {}
                    Err(e) => return Err(e),
                }
            }
            op.step = step::CLEANING_UP.into();
            out.operation = Some(op);
        }
        step::CLEANING_UP => {
            out.broker_replicas = target.min(running);
            // The controller deletes the volumes before it records the end of the operation,
            // so a failed or interrupted delete is tried again.
            if input.delete_drained_volumes {
                out.delete_volumes_of = op.leaving_brokers.clone();
            }
            finish(
                &mut out,
                "ScaledDown",
                format!(
                    "removed broker(s) {} after moving {} partition(s) off them",
                    list(op.leaving_brokers.iter().copied()),
                    op.partitions_total
                ),
            );
        }
        unknown => {
            // A step this version does not know (a newer operator's, or a hand edit): nothing
            // is removed on its word; verify from Kafka and go on from there.
            op.waiting_for = Some(format!(
                "unknown step {unknown}: verifying the drain from Kafka's state"
            ));
            op.step = step::VERIFYING.into();
            out.operation = Some(op);
        }
    }
    Ok(out)
}

/// The scale-up state machine.
async fn grow(
    admin: Option<&dyn KafkaAdmin>,
    input: &ScaleInput,
    running: i32,
    mut op: Operation,
) -> Result<ScaleOutcome, KafkaError> {
    let target = op.target_brokers;
    let mut out = ScaleOutcome {
        broker_replicas: running.max(target),
        busy: true,
        ..Default::default()
    };
    if input.desired < target {
        // Lowered again before the rebalance finished: stop moving; the next reconcile drains
        // whatever landed on the new brokers.
        if let Some(admin) = admin {
            cancel_moves(admin, &op).await?;
        } else if op.step != step::WAITING_FOR_BROKERS {
            op.waiting_for = Some("Kafka to be reachable to cancel the rebalance".into());
            out.operation = Some(op);
            return Ok(out);
        }
        let cancelled = notice(
            false,
            "RebalanceCancelled",
            format!(
                "brokerCount changed to {} during the scale-up to {target}",
                input.desired
            ),
        );
        // The new count is acted on at once: brokers that joined are drained before they go.
        let mut next = start(admin, input, running.max(target)).await?;
        next.notices.insert(0, cancelled);
        return Ok(next);
    }
    match op.step.as_str() {
        step::WAITING_FOR_BROKERS => {
            let registered = match admin {
                Some(admin) => admin.snapshot().await?.broker_ids(),
                None => BTreeSet::new(),
            };
            let not_registered: Vec<i32> =
                (0..target).filter(|b| !registered.contains(b)).collect();
            if input.ready_brokers < target || !not_registered.is_empty() {
                op.waiting_for = Some(format!(
                    "{}/{target} broker pods ready{}",
                    input.ready_brokers,
                    if not_registered.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", broker(s) {} not registered with Kafka",
                            list(not_registered)
                        )
                    }
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            if !input.rebalance.on_scale_up {
                finish(
                    &mut out,
                    "ScaledUp",
                    format!(
                        "broker(s) {} joined; rebalance.onScaleUp is off, no partition moves",
                        list(op.arriving_brokers.iter().copied())
                    ),
                );
                return Ok(out);
            }
            op.step = step::THROTTLING.into();
            op.waiting_for = None;
            out.operation = Some(op);
        }
        step::THROTTLING | step::MOVING => {
            let Some(admin) = admin else {
                return Ok(wait_for_kafka(op, out));
            };
            let targets: Vec<i32> = (0..target).collect();
            move_partitions(admin, &mut op, &targets, true, input, &mut out.notices).await?;
            out.operation = Some(op);
        }
        _ => {
            // Verifying: every move done and in sync, then clear throttles and balance leaders.
            let Some(admin) = admin else {
                return Ok(wait_for_kafka(op, out));
            };
            let snapshot = admin.snapshot().await?;
            if !snapshot.reassignments.is_empty() {
                op.waiting_for = Some(format!(
                    "{} reassignment(s) still in progress",
                    snapshot.reassignments.len()
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            settle(admin, &mut op, &mut out).await?;
            finish(
                &mut out,
                "Rebalanced",
                format!(
                    "broker(s) {} joined and took their share: {} partition(s) moved",
                    list(op.arriving_brokers.iter().copied()),
                    op.partitions_total
                ),
            );
        }
    }
    Ok(out)
}

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
async fn start_replication_change(
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
        step: step::THROTTLING.into(),
        target_brokers: running,
        replication_factors: changes,
        started_at: Some(input.now.clone()),
        ..Default::default()
    });
    out.busy = true;
    Ok(out)
}

/// The replication factor change state machine: move (add or drop replicas), verify, done.
async fn change_replication(
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
    match op.step.as_str() {
        step::THROTTLING | step::MOVING => {
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
            settle(admin, &mut op, &mut out).await?;
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

/// One round of moving: plan from Kafka's current assignment, submit the next batch, record
/// progress; when nothing is left to move, go on to verifying. Moves in flight (per Kafka) are
/// never submitted twice.
async fn move_partitions(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
    targets: &[i32],
    rebalance: bool,
    input: &ScaleInput,
    notices: &mut Vec<Notice>,
) -> Result<(), KafkaError> {
    // Moves in flight are read before the metadata: a move that ends in between is then seen
    // as in flight (and waited for), never as a partition with its old and new replicas.
    let moving_before = admin.list_reassignments().await?;
    let mut snapshot = admin.snapshot().await?;
    for (tp, r) in moving_before {
        snapshot.reassignments.entry(tp).or_insert(r);
    }
    // The controller knows a move is complete before every broker's metadata does, and the
    // metadata may come from a broker that lags: a submitted move stays in flight until the
    // metadata shows its target. Planning from a lagging view would see the old and new
    // replicas together and move a partition twice.
    let mut unlisted = BTreeMap::new();
    for m in &op.in_flight {
        let tp = TopicPartition::new(m.topic.clone(), m.partition);
        if snapshot.reassignments.contains_key(&tp) {
            continue;
        }
        let shown: BTreeSet<i32> = snapshot
            .partition(&tp)
            .map(|p| p.replicas.iter().copied().collect())
            .unwrap_or_default();
        if shown != m.target.iter().copied().collect() {
            let rounds = m.unlisted_rounds + 1;
            if rounds > UNLISTED_ROUNDS {
                tracing::warn!(
                    partition = %tp,
                    "a move Kafka no longer runs never reached its target; planning it again"
                );
                continue;
            }
            unlisted.insert(tp.clone(), rounds);
            snapshot.reassignments.insert(
                tp,
                OngoingReassignment {
                    replicas: m.target.clone(),
                    adding: Vec::new(),
                    removing: Vec::new(),
                },
            );
        }
    }
    let down = unavailable_brokers(&snapshot, targets.iter().copied().collect());
    if !down.is_empty() {
        op.waiting_for = Some(format!(
            "broker(s) {} down or fenced; the moves continue when they are back",
            list(down)
        ));
        return Ok(());
    }

    // Partitions moving now count with the replicas they are moving to.
    let mut current: Vec<PartitionAssignment> = Vec::new();
    let mut sizes = BTreeMap::new();
    for (tp, p) in snapshot.partitions() {
        let replicas = match snapshot.reassignments.get(&tp) {
            Some(r) => r.target(),
            None => p.replicas.clone(),
        };
        sizes.insert((tp.topic.clone(), tp.partition), p.size());
        current.push(PartitionAssignment {
            topic: tp.topic.clone(),
            partition: tp.partition,
            replicas,
        });
    }
    let request = PlanRequest {
        current: current.clone(),
        brokers: targets
            .iter()
            .map(|id| planner::Broker {
                id: *id,
                rack: snapshot
                    .brokers
                    .iter()
                    .find(|b| b.id == *id)
                    .and_then(|b| b.rack.clone()),
            })
            .collect(),
        sizes: sizes.clone(),
        replication_factors: op
            .replication_factors
            .iter()
            .filter(|(t, _)| snapshot.topics.contains_key(*t))
            .map(|(t, rf)| (t.clone(), (*rf).max(1) as usize))
            .collect(),
        rebalance,
        ..Default::default()
    };
    let plan = match planner::plan(&request) {
        Ok(plan) => plan,
        Err(e) => {
            // Something changed under the operation (say a topic created with a replication
            // factor the target brokers cannot hold): it waits, and says what to fix.
            let why = format!("a feasible plan: {e}");
            if op.waiting_for.as_deref() != Some(why.as_str()) {
                notices.push(notice(
                    true,
                    "PlanFailed",
                    format!("cannot plan the remaining moves: {e}"),
                ));
            }
            op.waiting_for = Some(why);
            return Ok(());
        }
    };
    let pending: Vec<PendingMove> = planner::moves(&current, &plan.target)
        .into_iter()
        .filter(|m| {
            !snapshot
                .reassignments
                .contains_key(&TopicPartition::new(m.topic.clone(), m.partition))
        })
        .map(|m| {
            let size = sizes
                .get(&(m.topic.clone(), m.partition))
                .copied()
                .unwrap_or(0);
            let partition = TopicPartition::new(m.topic, m.partition);
            let leader = snapshot.partition(&partition).and_then(|p| p.leader);
            PendingMove {
                partition,
                current: m.current,
                target: m.target,
                size,
                leader,
            }
        })
        .collect();
    let data_moves = pending.iter().filter(|m| !m.is_reorder_only()).count();

    // The first plan sets the totals; later rounds only count down.
    if op.step == step::THROTTLING && op.partitions_total == 0 {
        op.partitions_total = data_moves as i64;
        op.bytes_total = pending
            .iter()
            .filter(|m| !m.is_reorder_only())
            .map(|m| m.size as i64)
            .sum();
    }
    op.step = step::MOVING.into();
    let remaining_bytes: i64 = pending
        .iter()
        .filter(|m| !m.is_reorder_only())
        .map(|m| m.size as i64)
        .sum::<i64>()
        + snapshot
            .reassignments
            .keys()
            .map(|tp| snapshot.partition(tp).map(|p| p.size() as i64).unwrap_or(0))
            .sum::<i64>();
    let remaining = (data_moves + snapshot.reassignments.len()) as i64;
    op.partitions_moved = (op.partitions_total - remaining).max(0);
    op.bytes_moved = (op.bytes_total - remaining_bytes).max(0);
    op.in_flight = snapshot
        .reassignments
        .iter()
        .map(|(tp, r)| PartitionMove {
            topic: tp.topic.clone(),
            partition: tp.partition,
            target: r.target(),
            unlisted_rounds: unlisted.get(tp).copied().unwrap_or(0),
        })
        .collect();

    if pending.is_empty() && snapshot.reassignments.is_empty() {
        op.step = step::VERIFYING.into();
        op.waiting_for = None;
        op.in_flight.clear();
        return Ok(());
    }

    let in_flight: Vec<Vec<BrokerId>> = snapshot
        .reassignments
        .iter()
        .map(|(tp, r)| {
            let leader = snapshot.partition(tp).and_then(|p| p.leader);
            copying(leader, &r.replicas, r.adding.iter())
        })
        .collect();
    let batch = next_batch(
        &pending,
        &in_flight,
        input.rebalance.max_moves_per_broker.max(1) as usize,
    );
    if batch.is_empty() {
        op.waiting_for = Some(format!(
            "{} move(s) in flight, {} queued",
            snapshot.reassignments.len(),
            data_moves
        ));
        return Ok(());
    }

    // Throttle every move in flight and about to start, then submit. A move in flight is
    // throttled from the replicas it started from: Kafka already lists its new ones.
    let mut assignment = snapshot.assignment();
    for (tp, r) in &snapshot.reassignments {
        if !r.adding.is_empty() {
            assignment.insert(tp.clone(), r.source());
        }
    }
    let mut throttle_targets: BTreeMap<TopicPartition, Vec<BrokerId>> = snapshot
        .reassignments
        .iter()
        .map(|(tp, r)| (tp.clone(), r.target()))
        .collect();
    let mut batch_targets = BTreeMap::new();
    for m in &batch {
        throttle_targets.insert(m.partition.clone(), m.target.clone());
        batch_targets.insert(m.partition.clone(), m.target.clone());
    }
    let throttle = Throttle::for_moves(
        &assignment,
        &throttle_targets,
        input.rebalance.throttle_bytes_per_second.max(1) as u64,
    );
    if !throttle.is_empty() {
        // Recorded before it is set, so it is cleared even if the operator dies right after.
        for b in &throttle.brokers {
            if !op.throttled_brokers.contains(b) {
                op.throttled_brokers.push(*b);
            }
        }
        for t in throttle.topics.keys() {
            if !op.throttled_topics.contains(t) {
                op.throttled_topics.push(t.clone());
            }
        }
        admin.set_throttle(&throttle).await?;
        // Brokers learn of config changes through the metadata log: a move submitted before
        // they did would start unthrottled. Submit once every involved broker has the rate.
        if !throttle_in_effect(admin, &throttle).await? {
            op.waiting_for = Some("the replication throttle to reach every broker".into());
            return Ok(());
        }
    }
    admin.alter_reassignments(&batch_targets).await?;
    op.in_flight.extend(batch.iter().map(|m| PartitionMove {
        topic: m.partition.topic.clone(),
        partition: m.partition.partition,
        target: m.target.clone(),
        unlisted_rounds: 0,
    }));
    op.waiting_for = None;
    Ok(())
}

/// Whether every broker of `throttle` reports its rate, waiting a few seconds for the
/// metadata log to carry it there.
async fn throttle_in_effect(
    admin: &dyn KafkaAdmin,
    throttle: &Throttle,
) -> Result<bool, KafkaError> {
    let resources: Vec<ConfigResource> = throttle
        .brokers
        .iter()
        .map(|b| ConfigResource::Broker(*b))
        .collect();
    let rate = throttle.rate.to_string();
    let deadline = std::time::Instant::now() + THROTTLE_WAIT;
    loop {
        let configs = admin.describe_configs(&resources).await?;
        let applied = resources.iter().all(|r| {
            configs
                .get(r)
                .and_then(|c| c.get(LEADER_RATE))
                .and_then(|v| v.value.as_deref())
                == Some(rate.as_str())
        });
        if applied || std::time::Instant::now() > deadline {
            return Ok(applied);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Cancels the operation's reassignments still in progress (not those of other tools) and
/// clears its throttles.
async fn cancel_moves(admin: &dyn KafkaAdmin, op: &Operation) -> Result<(), KafkaError> {
    let ours: BTreeSet<TopicPartition> = op
        .in_flight
        .iter()
        .map(|m| TopicPartition::new(m.topic.clone(), m.partition))
        .collect();
    let in_progress = admin.list_reassignments().await?;
    let partitions: Vec<TopicPartition> = in_progress
        .into_keys()
        .filter(|tp| ours.contains(tp))
        .collect();
    if !partitions.is_empty() {
        admin.cancel_reassignments(&partitions).await?;
    }
    clear_throttles(admin, &mut op.clone()).await
}

/// Clears the replication throttle everywhere it may be: the brokers and topics the operation
/// recorded, every live broker, and every topic that has throttled replicas. Recording is done
/// before setting, but a status write can still fail after a throttle was set; a throttle left
/// behind would slow replication for good.
async fn clear_throttles(admin: &dyn KafkaAdmin, op: &mut Operation) -> Result<(), KafkaError> {
    let snapshot = admin.snapshot().await?;
    let mut brokers: BTreeSet<BrokerId> = op.throttled_brokers.iter().copied().collect();
    brokers.extend(snapshot.broker_ids());
    let mut topics: BTreeSet<String> = op.throttled_topics.iter().cloned().collect();
    let resources: Vec<ConfigResource> = snapshot
        .topics
        .keys()
        .filter(|t| !topics.contains(*t))
        .map(|t| ConfigResource::Topic(t.clone()))
        .collect();
    if !resources.is_empty() {
        for (resource, entries) in admin.describe_configs(&resources).await? {
            let throttled = [LEADER_REPLICAS, FOLLOWER_REPLICAS].iter().any(|k| {
                entries.get(*k).is_some_and(|v| {
                    !v.is_default && v.value.as_deref().is_some_and(|v| !v.is_empty())
                })
            });
            if let (true, ConfigResource::Topic(t)) = (throttled, resource) {
                topics.insert(t);
            }
        }
    }
    let brokers: Vec<BrokerId> = brokers.into_iter().collect();
    let topics: Vec<String> = topics.into_iter().collect();
    admin.clear_throttle(&brokers, &topics).await?;
    op.throttled_brokers.clear();
    op.throttled_topics.clear();
    Ok(())
}

/// After the last move: no throttle left behind, leaders back on their preferred replicas.
async fn settle(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
    out: &mut ScaleOutcome,
) -> Result<(), KafkaError> {
    clear_throttles(admin, op).await?;
    elect_leaders(admin, out).await;
    Ok(())
}

/// Moves leadership back to preferred replicas; a failure is reported, not fatal (Kafka's own
/// leader rebalancing catches up).
async fn elect_leaders(admin: &dyn KafkaAdmin, out: &mut ScaleOutcome) {
    match admin.elect_preferred_leaders(None).await {
        Ok(outcome) if !outcome.failed.is_empty() => out.notices.push(notice(
            true,
            "LeaderElectionIncomplete",
            format!(
                "{} partition(s) kept a non-preferred leader (e.g. {}: {})",
                outcome.failed.len(),
                outcome.failed[0].0,
                outcome.failed[0].1
            ),
        )),
        Ok(_) => {}
        Err(e) => out.notices.push(notice(
            true,
            "LeaderElectionFailed",
            format!("preferred leader election failed: {e}"),
        )),
    }
}
