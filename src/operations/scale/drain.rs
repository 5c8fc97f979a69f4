//! The scale-down state machine: move every replica off the leaving brokers, verify from Kafka
//! that they hold nothing, shrink the StatefulSet, unregister them, delete their volumes.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Operation, Step};
use crate::kafka::{BrokerId, ClusterSnapshot, KafkaAdmin, KafkaError};
use crate::operations::roll::BrokerAnswers;
use crate::resources::names::LOST_BROKERS_ANNOTATION;

use super::cordon;
use super::mover::{cancel_moves, move_partitions};
use super::{ScaleInput, ScaleOutcome, finish, list, notice, settle, start, wait_for_kafka};

/// The scale-down state machine.
pub(super) async fn drain(
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
    let undoable = matches!(op.step, Step::Throttling | Step::Moving | Step::Verifying);

    // The user changed their mind before any broker went: stop moving, keep what moved.
    if undoable && input.desired != target {
        let Some(admin) = admin else {
            op.waiting_for = Some("Kafka to be reachable to cancel the drain".into());
            out.operation = Some(op);
            return Ok(out);
        };
        cancel_moves(admin, &op, &input.lost_brokers).await?;
        cordon::uncordon(admin, &op).await?;
        // A leaving broker that joined with a cancelled scale-up and is kept now may still
        // carry an inherited cordon this drain did not set (it had not registered): lifted
        // before anything else is done with it.
        let lifted = match cordon::lift_inherited_from_kept(
            Some(admin),
            &op.inherited_cordons,
            input.desired,
        )
        .await?
        {
            Ok(lifted) => lifted,
            Err(why) => {
                op.waiting_for = Some(why);
                out.operation = Some(op);
                return Ok(out);
            }
        };
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
        cordon::hand_over(&mut next.operation, &op.inherited_cordons);
        next.notices.insert(0, cancelled);
        if !lifted.is_empty() {
            next.notices.insert(1, cordon::lifted_notice(lifted));
        }
        return Ok(next);
    }

    match op.step {
        Step::Throttling | Step::Moving => {
            let Some(admin) = admin else {
                return Ok(wait_for_kafka(op, out));
            };
            // No new partition on the leaving brokers before anything moves off them.
            if !op.cordoned && !op.cordon_unsupported {
                let live: Vec<BrokerId> =
                    admin.snapshot().await?.broker_ids().into_iter().collect();
                if cordon::cordon_leaving(admin, &mut op, &live, &mut out.notices).await? {
                    out.operation = Some(op);
                    return Ok(out);
                }
            }
            let targets: Vec<i32> = (0..target).collect();
            move_partitions(admin, &mut op, &targets, false, input, &mut out.notices).await?;
            out.operation = Some(op);
        }
        Step::Verifying => {
            let Some(admin) = admin else {
                return Ok(wait_for_kafka(op, out));
            };
            let leaving: BTreeSet<i32> = op.leaving_brokers.iter().copied().collect();
            let view = drain_view(admin, input, &leaving, false).await?;
            let snapshot = &view.merged;
            let still_on_leaving: Vec<String> = snapshot
                .partitions()
                .filter(|(_, p)| p.replicas.iter().any(|r| leaving.contains(r)))
                .map(|(tp, _)| tp.to_string())
                .collect();
            if !still_on_leaving.is_empty() && !view.placed_per_snapshot(&leaving) {
                // Only some broker's own metadata lists them: wait until the snapshot, which
                // the moves are planned from, does too (or until that broker catches up).
                op.waiting_for = Some(format!(
                    "{} partition(s) (e.g. {}) listed on leaving brokers by some broker's metadata",
                    still_on_leaving.len(),
                    still_on_leaving[0]
                ));
                out.operation = Some(op);
                return Ok(out);
            }
            if !still_on_leaving.is_empty() {
                // Something (another tool, a cancelled move) put replicas back: move them again.
                op.step = Step::Moving;
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
            if let Some(why) = view
                .unanswered()
                .or_else(|| unconfirmed(snapshot, &leaving, input.kraft, &input.lost_brokers))
            {
                op.waiting_for = Some(why);
                out.operation = Some(op);
                return Ok(out);
            }
            settle(admin, input, &mut op, &mut out).await?;
            out.notices.push(notice(
                false,
                "DrainVerified",
                format!(
                    "broker(s) {} hold no replicas and every partition is in sync; removing them",
                    list(op.leaving_brokers.iter().copied())
                ),
            ));
            op.step = Step::Shrinking;
            op.reverified = false;
            op.waiting_for =
                Some("the verification to hold once more before the brokers go".into());
            op.in_flight.clear();
            op.partitions_moved = op.partitions_total;
            op.bytes_moved = op.bytes_total;
            out.operation = Some(op);
        }
        // A second, fresh look at Kafka before the StatefulSet shrinks: the verification may
        // have read the metadata of a broker that lags, a topic may have been created since
        // (on a Kafka that cannot cordon, on a leaving broker), and an operator restarted after
        // recording this step verified nothing in this run. It reads every live broker's own
        // metadata ([`drain_view`]). The StatefulSet is only ever shrunk in a round whose own
        // check passed: a shrink recorded (`reverified`) that the StatefulSet does not show yet
        // (the operator was killed between the two writes) is checked again, since Kafka may
        // have placed a partition on the leaving brokers since. (With the leaving pods gone,
        // the StatefulSet shrank already, as an earlier version did at once.)
        Step::Shrinking
            if input.broker_pods.iter().any(|o| *o >= target)
                && !(op.reverified && input.statefulset_replicas.is_some_and(|r| r <= target)) =>
        {
            let Some(admin) = admin else {
                return Ok(wait_for_kafka(op, out));
            };
            let leaving: BTreeSet<i32> = op.leaving_brokers.iter().copied().collect();
            let view = drain_view(admin, input, &leaving, false).await?;
            let snapshot = &view.merged;
            let placed = placed_on(snapshot, &leaving);
            let why = if let Some(first) = placed.first() {
                Some(format!(
                    "{} partition(s) (e.g. {first}) are on leaving brokers again",
                    placed.len()
                ))
            } else if !snapshot.reassignments.is_empty() {
                Some(format!(
                    "{} reassignment(s) in progress",
                    snapshot.reassignments.len()
                ))
            } else {
                view.unanswered()
                    .or_else(|| unconfirmed(snapshot, &leaving, input.kraft, &input.lost_brokers))
            };
            if let Some(why) = why {
                // Back to moving only on the snapshot's word, which the moves are planned from;
                // a partition only some broker's metadata shows is verified again first.
                op.step = if view.placed_per_snapshot(&leaving) {
                    Step::Moving
                } else {
                    Step::Verifying
                };
                op.reverified = false;
                op.waiting_for = Some(format!("verifying the drain again: {why}"));
                out.operation = Some(op);
                return Ok(out);
            }
            op.reverified = true;
            op.waiting_for = None;
            out.broker_replicas = target;
            out.operation = Some(op);
        }
        Step::Shrinking => {
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
            if let Some(held) = hold_unless_gone_clean(admin, input, op.clone(), &out).await? {
                return Ok(held);
            }
            op.step = if input.kraft {
                Step::Unregistering
            } else {
                Step::CleaningUp
            };
            op.waiting_for = None;
            out.operation = Some(op);
        }
        Step::Unregistering => {
            out.broker_replicas = target;
            let Some(admin) = admin else {
                op.waiting_for =
                    Some("Kafka to be reachable to unregister the removed brokers".into());
                out.operation = Some(op);
                return Ok(out);
            };
            if let Some(held) = hold_unless_gone_clean(admin, input, op.clone(), &out).await? {
                return Ok(held);
            }
            for broker in &op.leaving_brokers {
                match admin.unregister_broker(*broker).await {
                    Ok(()) => {}
                    // Already gone (a restart after a partial run): nothing to do.
                    Err(KafkaError::Kafka { name, .. }) if name == "BROKER_ID_NOT_REGISTERED" => {}
                    Err(e) => return Err(e),
                }
            }
            op.step = Step::CleaningUp;
            out.operation = Some(op);
        }
        Step::CleaningUp => {
            out.broker_replicas = target.min(running);
            // The volumes go only once Kafka confirms, this very round, that no partition has
            // a replica on the removed brokers: a deleted volume cannot be brought back.
            if input.delete_drained_volumes {
                let Some(admin) = admin else {
                    op.waiting_for = Some(
                        "Kafka to be reachable to check the removed brokers' volumes hold nothing"
                            .into(),
                    );
                    out.operation = Some(op);
                    return Ok(out);
                };
                if let Some(held) = hold_unless_gone_clean(admin, input, op.clone(), &out).await? {
                    return Ok(held);
                }
            }
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
        Step::WaitingForBrokers | Step::Unknown(_) => {
            // A step this version does not know (a newer operator's, or a hand edit): nothing
            // is removed on its word; verify from Kafka and go on from there.
            op.waiting_for = Some(format!(
                "unknown step {}: verifying the drain from Kafka's state",
                op.step
            ));
            op.step = Step::Verifying;
            out.operation = Some(op);
        }
    }
    Ok(out)
}

/// Partitions that have (or, once their move completes, will have) a replica on a leaving
/// broker.
fn placed_on(snapshot: &ClusterSnapshot, leaving: &BTreeSet<BrokerId>) -> Vec<String> {
    snapshot
        .target_assignment()
        .into_iter()
        .filter(|(_, r)| r.iter().any(|b| leaving.contains(b)))
        .map(|(tp, _)| tp.to_string())
        .collect()
}

/// The cluster as the drain's checks before an irreversible step read it ([`drain_view`]).
struct DrainView {
    /// The snapshot as Kafka answered it (who is live, sizes, log directories, moves).
    snapshot: ClusterSnapshot,
    /// The snapshot with its topics replaced by [`crate::operations::roll::merge_metadata`] of its own and every
    /// answering broker's own metadata: every partition any of them lists, with every replica
    /// any of them lists.
    merged: ClusterSnapshot,
    /// Brokers the snapshot lists as live that did not answer Metadata, with why.
    silent: BTreeMap<BrokerId, String>,
    /// Once the leaving brokers stopped: answers that still list some of them as live (whose,
    /// and which).
    behind: Vec<(String, Vec<BrokerId>)>,
}

impl DrainView {
    /// Why the answers cannot vouch for the check yet: a live broker did not answer (silence
    /// is no answer), or one's metadata predates the leaving brokers' stop (once they stopped).
    fn unanswered(&self) -> Option<String> {
        if !self.silent.is_empty() {
            return Some(format!(
                "every live broker's own metadata is read before brokers are removed, and {} did not answer Metadata",
                self.silent
                    .iter()
                    .map(|(b, why)| format!("broker {b} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let (who, listed) = self.behind.first()?;
        Some(format!(
            "{who} still lists broker(s) {} as live: it may not show yet every partition placed on them before they stopped",
            list(listed.iter().copied())
        ))
    }

    /// Whether the snapshot itself (not only some broker's metadata) lists a partition on a
    /// leaving broker, now or once its move completes.
    fn placed_per_snapshot(&self, leaving: &BTreeSet<BrokerId>) -> bool {
        !placed_on(&self.snapshot, leaving).is_empty()
    }
}

/// Reads the cluster for a check before an irreversible step of the drain: one snapshot, then
/// Metadata from every broker it lists as live, every broker pod and every leaving broker, each
/// asked directly (one request per broker per check). `departed`: the leaving brokers have
/// stopped, and an answer counts only once it no longer lists them as live.
///
/// Why not one snapshot: its topics are one broker's metadata cache, and every cache may trail
/// the controller. In ZooKeeper mode the controller sends LeaderAndIsr to a new partition's
/// replicas and UpdateMetadata to every live broker, to each on its own, asynchronously; in
/// KRaft each broker replays the metadata log at its own pace. A topic created a moment ago is
/// known to some brokers before others, so one answer can miss a partition Kafka placed on a
/// leaving broker (a Kafka that cannot cordon places new partitions there until it stops).
///
/// Before the StatefulSet shrinks, the leaving brokers still run. A partition any broker lists
/// on one of them holds the shrink (the union, never the intersection), and each leaving
/// broker's own word counts twice: its own Metadata, and its own DescribeLogDirs
/// ([`unconfirmed`]): a replica can only hold data once its broker has learned of the
/// partition (from LeaderAndIsr in ZooKeeper mode, by replaying the record in KRaft), and then
/// the broker describes that log, listed or stray. What no check before the stop can see is a
/// partition placed on a leaving broker that no broker has learned of yet, or placed after the
/// check (the broker is still a candidate until it stops): it holds no data on that broker,
/// but it lists it.
///
/// That window is closed after the stop, before anything that cannot be undone (unregistering,
/// deleting volumes): there every answer must no longer list the leaving brokers as live. Such
/// an answer is at least as new as their stop: in KRaft their fencing (or unregistration) is a
/// record of the metadata log after every partition record placing a replica on them, since a
/// fenced broker gets none; in ZooKeeper mode the controller queues its UpdateMetadata for a
/// broker's stop to each broker after those for the partitions it had told the stopped broker
/// of. So such an answer lists every partition the leaving brokers could hold data of, and the
/// union of them (with the snapshot's) is checked; a partition found brings the brokers back
/// ([`hold_unless_gone_clean`]).
///
/// No state is kept between rounds: each check reads its answers afresh, so an operator killed
/// at any instant checks the same way when it comes back, and a broker that does not answer, or
/// lags, holds the step until it does not.
async fn drain_view(
    admin: &dyn KafkaAdmin,
    input: &ScaleInput,
    leaving: &BTreeSet<BrokerId>,
    departed: bool,
) -> Result<DrainView, KafkaError> {
    let read = BrokerAnswers::read(
        admin,
        input.broker_pods.iter().chain(leaving.iter()).copied(),
    )
    .await?;
    let mut silent = read.silent();
    let mut behind = Vec::new();
    if departed {
        // Once they stopped, the leaving brokers cannot answer; a snapshot or an answer that
        // still lists them as live is from before their stop.
        silent.retain(|b, _| !leaving.contains(b));
        let still = |brokers: &BTreeSet<BrokerId>| -> Vec<BrokerId> {
            brokers.intersection(leaving).copied().collect()
        };
        let listed = still(&read.snapshot.broker_ids());
        if !listed.is_empty() {
            behind.push(("the cluster description".to_string(), listed));
        }
        for (b, answer) in &read.answers {
            if let Ok(answer) = answer {
                let listed = still(&answer.brokers);
                if !listed.is_empty() {
                    behind.push((format!("the metadata of broker {b}"), listed));
                }
            }
        }
    }
    let merged = read.merged();
    Ok(DrainView {
        snapshot: read.snapshot,
        merged,
        silent,
        behind,
    })
}

/// After the StatefulSet shrank, before the next step: the check of [`drain_view`] once the
/// leaving brokers have stopped. If Kafka placed a partition on them (before they were
/// cordoned, or on a Kafka that cannot cordon), their volumes are still there: bring them back
/// and drain them again rather than lose that partition. If the answers cannot vouch yet (a
/// broker silent, or lagging from before the stop), wait. None when the step may go on.
async fn hold_unless_gone_clean(
    admin: &dyn KafkaAdmin,
    input: &ScaleInput,
    mut op: Operation,
    out: &ScaleOutcome,
) -> Result<Option<ScaleOutcome>, KafkaError> {
    let target = op.target_brokers;
    let leaving: BTreeSet<i32> = op.leaving_brokers.iter().copied().collect();
    let view = drain_view(admin, input, &leaving, true).await?;
    let mut out = out.clone();
    if let Some(why) = view.unanswered() {
        op.waiting_for = Some(format!(
            "checking that no partition was placed on the removed broker(s): {why}"
        ));
        out.operation = Some(op);
        return Ok(Some(out));
    }
    let placed = placed_on(&view.merged, &leaving);
    let Some(first) = placed.first() else {
        return Ok(None);
    };
    let restore = op.leaving_brokers.iter().max().map_or(target, |b| b + 1);
    out.broker_replicas = restore.max(target);
    out.notices.push(notice(
        true,
        "DrainReopened",
        format!(
            "{} partition(s) (e.g. {first}) were placed on broker(s) {} while they stopped; bringing them back to move them off",
            placed.len(),
            list(op.leaving_brokers.iter().copied())
        ),
    ));
    op.step = Step::Moving;
    op.reverified = false;
    op.waiting_for = Some(format!(
        "broker(s) {} to come back: {} partition(s) were placed on them",
        list(op.leaving_brokers.iter().copied()),
        placed.len()
    ));
    out.operation = Some(op);
    Ok(Some(out))
}

/// Why the drained brokers may not go yet, or None once Kafka confirms they may: every
/// partition fully in sync, and each leaving broker's own word that its log directories hold
/// no partition. A live broker that did not describe its log directories has said nothing, and
/// silence is not an answer; nor can a broker that is registered but stopped (fenced) answer.
/// A broker Kafka does not know at all (never started, or unregistered) holds nothing the
/// cluster can lose once no partition lists it. (In ZooKeeper mode Kafka cannot tell a stopped
/// broker from an unknown one; a stopped leaving broker that no partition lists is taken as
/// holding nothing of the cluster's.) A broker the user declared `lost` (its node and volumes
/// gone for good) is not asked for a word it cannot give while it is not running; every
/// partition must still be in sync without it, and one that runs is asked as any other.
pub(super) fn unconfirmed(
    snapshot: &ClusterSnapshot,
    leaving: &BTreeSet<BrokerId>,
    kraft: bool,
    lost: &BTreeSet<BrokerId>,
) -> Option<String> {
    let under = snapshot.under_replicated();
    if let Some(first) = under.first() {
        return Some(format!(
            "{} partition(s) not fully in sync (e.g. {first}); brokers are kept until every replica is in sync",
            under.len()
        ));
    }
    let live = snapshot.broker_ids();
    let stopped: Vec<BrokerId> = leaving
        .iter()
        .copied()
        .filter(|b| kraft && snapshot.fenced_brokers.contains(b) && !lost.contains(b))
        .collect();
    if !stopped.is_empty() {
        return Some(format!(
            "leaving broker(s) {ids} are registered but not running, so they cannot confirm that they hold no partition; they are removed once they run again and do (if their node and volumes are gone for good, annotate the cluster {LOST_BROKERS_ANNOTATION}={ids})",
            ids = list(stopped)
        ));
    }
    let silent: Vec<BrokerId> = leaving
        .iter()
        .copied()
        .filter(|b| live.contains(b) && !snapshot.log_dirs_described.contains(b))
        .collect();
    if !silent.is_empty() {
        return Some(format!(
            "leaving broker(s) {} did not describe their log directories (DescribeLogDirs); they are kept until they confirm that they hold no partition",
            list(silent)
        ));
    }
    let mut logs_left: Vec<String> = snapshot
        .partitions()
        .filter(|(_, p)| p.size_bytes.keys().any(|b| leaving.contains(b)))
        .map(|(tp, _)| tp.to_string())
        .collect();
    logs_left.extend(
        snapshot
            .stray_logs
            .iter()
            .filter(|(b, _)| leaving.contains(b))
            .flat_map(|(_, logs)| logs.iter().map(|tp| tp.to_string())),
    );
    logs_left.first().map(|first| {
        format!(
            "leaving broker(s) to delete {} moved partition log(s) (e.g. {first})",
            logs_left.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::kafka::{Broker, PartitionState, TopicPartition, TopicState};

    /// Brokers 0..3 live, a topic with one partition on 0 and 1; broker 2 is leaving.
    fn drained() -> ClusterSnapshot {
        let broker = |id| Broker {
            id,
            host: "localhost".into(),
            port: 9092,
            rack: None,
        };
        ClusterSnapshot {
            brokers: (0..3).map(broker).collect(),
            topics: BTreeMap::from([(
                "t".to_string(),
                TopicState {
                    name: "t".into(),
                    internal: false,
                    partitions: vec![PartitionState {
                        partition: 0,
                        replicas: vec![0, 1],
                        isr: vec![0, 1],
                        leader: Some(0),
                        size_bytes: BTreeMap::from([(0, 10), (1, 10)]),
                    }],
                },
            )]),
            log_dirs_described: BTreeSet::from([0, 1, 2]),
            ..Default::default()
        }
    }

    #[test]
    fn a_drained_broker_that_said_so_may_go() {
        assert_eq!(
            unconfirmed(&drained(), &BTreeSet::from([2]), true, &BTreeSet::new()),
            None
        );
    }

    #[test]
    fn a_leaving_broker_that_does_not_describe_its_log_dirs_holds_the_shrink() {
        let mut snapshot = drained();
        snapshot.log_dirs_described.remove(&2);
        let why = unconfirmed(&snapshot, &BTreeSet::from([2]), true, &BTreeSet::new())
            .expect("must wait");
        assert!(
            why.contains("did not describe their log directories"),
            "{why}"
        );
        // Brokers that stay need not answer for the leaving ones.
        let mut snapshot = drained();
        snapshot.log_dirs_described.remove(&1);
        assert_eq!(
            unconfirmed(&snapshot, &BTreeSet::from([2]), true, &BTreeSet::new()),
            None
        );
    }

    #[test]
    fn a_stopped_leaving_broker_cannot_answer() {
        let mut snapshot = drained();
        snapshot.brokers.retain(|b| b.id != 2);
        snapshot.log_dirs_described.remove(&2);
        snapshot.fenced_brokers = vec![2];
        let why = unconfirmed(&snapshot, &BTreeSet::from([2]), true, &BTreeSet::new())
            .expect("must wait");
        assert!(why.contains("not running"), "{why}");
        // Unknown to Kafka: holds nothing of the cluster's.
        snapshot.fenced_brokers.clear();
        assert_eq!(
            unconfirmed(&snapshot, &BTreeSet::from([2]), true, &BTreeSet::new()),
            None
        );
    }

    #[test]
    fn a_lost_broker_is_not_asked_for_its_word_but_the_cluster_must_be_in_sync_without_it() {
        let lost = BTreeSet::from([2]);
        let mut stopped = drained();
        stopped.brokers.retain(|b| b.id != 2);
        stopped.log_dirs_described.remove(&2);
        stopped.fenced_brokers = vec![2];
        let why = unconfirmed(&stopped, &lost, true, &BTreeSet::new()).expect("must wait");
        assert!(
            why.contains("krallistic.github.com/lost-brokers=2"),
            "{why}"
        );
        assert_eq!(unconfirmed(&stopped, &lost, true, &lost), None);
        // One that runs is asked as any other (a broker of that id may have been added since).
        let mut silent = drained();
        silent.log_dirs_described.remove(&2);
        assert!(unconfirmed(&silent, &lost, true, &lost).is_some());
        let mut answering = drained();
        answering
            .stray_logs
            .insert(2, BTreeSet::from([TopicPartition::new("t", 0)]));
        assert!(unconfirmed(&answering, &lost, true, &lost).is_some());
        // Declaring a broker lost never excuses a partition out of sync.
        let mut under = stopped.clone();
        for topic in under.topics.values_mut() {
            for p in topic.partitions.iter_mut() {
                p.isr.truncate(1);
            }
        }
        let why = unconfirmed(&under, &lost, true, &lost).expect("must wait");
        assert!(why.contains("not fully in sync"), "{why}");
    }

    #[test]
    fn logs_left_on_a_leaving_broker_hold_the_shrink() {
        let mut snapshot = drained();
        snapshot
            .stray_logs
            .insert(2, BTreeSet::from([TopicPartition::new("new", 0)]));
        let why = unconfirmed(&snapshot, &BTreeSet::from([2]), true, &BTreeSet::new())
            .expect("must wait");
        assert!(why.contains("new-0"), "{why}");
        let mut snapshot = drained();
        if let Some(t) = snapshot.topics.get_mut("t") {
            t.partitions[0].size_bytes.insert(2, 10);
        }
        assert!(unconfirmed(&snapshot, &BTreeSet::from([2]), true, &BTreeSet::new()).is_some());
    }
}
