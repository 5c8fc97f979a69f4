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

mod cordon;
mod drain;
mod grow;
mod mover;
mod replication;
mod throttles;

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Operation, OperationKind, RebalanceSpec, Step, TopicSpec};
use crate::kafka::{ClusterSnapshot, KafkaAdmin, KafkaError};

use super::roll::min_insync_replicas;
pub use cordon::CORDONED_LOG_DIRS;
use drain::drain;
use grow::grow;
use replication::{change_replication, start_replication_change};
use throttles::clear_throttles;

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
    /// The broker StatefulSet's replicas as Kubernetes has them (None before it exists): whether
    /// a shrink recorded in the status was also written to the StatefulSet (the operator may be
    /// killed between the two writes).
    pub statefulset_replicas: Option<i32>,
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
    /// Brokers the user declared lost for good ([`LOST_BROKERS_ANNOTATION`]).
    ///
    /// [`LOST_BROKERS_ANNOTATION`]: crate::resources::names::LOST_BROKERS_ANNOTATION
    pub lost_brokers: BTreeSet<i32>,
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

pub(super) fn notice(warning: bool, reason: &'static str, message: String) -> Notice {
    Notice {
        warning,
        reason,
        message,
    }
}

/// The operation is complete: nothing in progress any more, and an event says what was done.
pub(super) fn finish(out: &mut ScaleOutcome, reason: &'static str, message: String) {
    out.notices.push(notice(false, reason, message));
    out.operation = None;
    out.busy = false;
}

/// The operation waits: Kafka cannot be asked (no broker ready yet).
pub(super) fn wait_for_kafka(mut op: Operation, mut out: ScaleOutcome) -> ScaleOutcome {
    op.waiting_for = Some("Kafka to be reachable".into());
    out.operation = Some(op);
    out
}

pub(super) fn list(ids: impl IntoIterator<Item = i32>) -> String {
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
pub(super) async fn start(
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
            step: Step::WaitingForBrokers,
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
        step: Step::Throttling,
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
pub(super) fn unavailable_brokers(snapshot: &ClusterSnapshot, needed: BTreeSet<i32>) -> Vec<i32> {
    let live = snapshot.broker_ids();
    let mut wanted = needed;
    wanted.extend(snapshot.holding_brokers());
    wanted.into_iter().filter(|b| !live.contains(b)).collect()
}

/// After the last move: no throttle left behind, leaders back on their preferred replicas.
pub(super) async fn settle(
    admin: &dyn KafkaAdmin,
    input: &ScaleInput,
    op: &mut Operation,
    out: &mut ScaleOutcome,
) -> Result<(), KafkaError> {
    clear_throttles(admin, op, &input.lost_brokers).await?;
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
