//! One round of partition moves: plan from Kafka's current assignment, throttle, submit the next
//! bounded batch, record progress. Shared by the drain, the rebalance and replication changes.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Operation, PartitionMove, Step};
use crate::kafka::throttle::LEADER_RATE;
use crate::kafka::{
    BrokerId, KafkaAdmin, KafkaError, OngoingReassignment, Throttle, TopicPartition,
};
use crate::operations::batch::{PendingMove, copying, next_batch};
use crate::operations::broker_config::await_reported;
use crate::planner::{self, PartitionAssignment, PlanRequest};

use super::throttles::{self, clear_throttles};
use super::{Notice, ScaleInput, list, notice, unavailable_brokers};

/// Rounds a submitted move may stay unlisted by Kafka without its target in the metadata
/// before it is taken for cancelled (metadata lags by a round or two, not by this many).
const UNLISTED_ROUNDS: u32 = 15;

/// Rounds a finished move stays recorded after the metadata first showed its target, so a read
/// from a broker whose metadata lags that far behind is recognised.
const SHOWN_ROUNDS: u32 = 4;

/// How long one round waits for brokers to apply a new throttle before trying again later.
const THROTTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One round of moving: plan from Kafka's current assignment, submit the next batch, record
/// progress; when nothing is left to move, go on to verifying. Moves in flight (per Kafka) are
/// never submitted twice.
pub(super) async fn move_partitions(
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
    //
    // A move the metadata has shown at its target stays recorded for a few rounds more: a read
    // from a broker that lags further may still show the move's transient replica set (old and
    // new replicas together), which must not be planned as the partition's replicas either.
    let mut unlisted = BTreeMap::new();
    let mut done: BTreeMap<TopicPartition, PartitionMove> = BTreeMap::new();
    for m in &op.in_flight {
        let tp = TopicPartition::new(m.topic.clone(), m.partition);
        if snapshot.reassignments.contains_key(&tp) {
            continue;
        }
        let shown: BTreeSet<i32> = snapshot
            .partition(&tp)
            .map(|p| p.replicas.iter().copied().collect())
            .unwrap_or_default();
        if shown == m.target.iter().copied().collect() {
            let rounds = m.shown_rounds + 1;
            if rounds < SHOWN_ROUNDS {
                done.insert(
                    tp,
                    PartitionMove {
                        shown_rounds: rounds,
                        ..m.clone()
                    },
                );
            }
            continue;
        }
        let rounds = m.unlisted_rounds + 1;
        if rounds > UNLISTED_ROUNDS {
            tracing::warn!(
                partition = %tp,
                "a move Kafka no longer runs never reached its target; planning it again"
            );
            continue;
        }
        unlisted.insert(tp.clone(), (rounds, m.shown_rounds));
        snapshot.reassignments.insert(
            tp,
            OngoingReassignment {
                replicas: m.target.clone(),
                adding: Vec::new(),
                removing: Vec::new(),
            },
        );
    }
    // Moves already done (seen at their target before) that this read shows otherwise: the
    // read lags; they count as done, and nothing is planned for them this round.
    let lagging: BTreeSet<TopicPartition> = unlisted
        .iter()
        .filter(|(_, (_, shown))| *shown > 0)
        .map(|(tp, _)| tp.clone())
        .collect();
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
        // A replica leaving a broker keeps to that broker's rack where it can.
        leaving_racks: snapshot
            .brokers
            .iter()
            .filter(|b| !targets.contains(&b.id))
            .filter_map(|b| Some((b.id, b.rack.clone()?)))
            .collect(),
        rebalance,
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
    if op.step == Step::Throttling && op.partitions_total == 0 {
        op.partitions_total = data_moves as i64;
        op.bytes_total = pending
            .iter()
            .filter(|m| !m.is_reorder_only())
            .map(|m| m.size as i64)
            .sum();
    }
    op.step = Step::Moving;
    let still_moving = || {
        snapshot
            .reassignments
            .keys()
            .filter(|tp| !lagging.contains(*tp))
    };
    let remaining_bytes: i64 = pending
        .iter()
        .filter(|m| !m.is_reorder_only())
        .map(|m| m.size as i64)
        .sum::<i64>()
        + still_moving()
            .map(|tp| snapshot.partition(tp).map(|p| p.size() as i64).unwrap_or(0))
            .sum::<i64>();
    let remaining = (data_moves + still_moving().count()) as i64;
    op.partitions_moved = (op.partitions_total - remaining).max(0);
    op.bytes_moved = (op.bytes_total - remaining_bytes).max(0);
    op.in_flight = snapshot
        .reassignments
        .iter()
        .map(|(tp, r)| {
            let (unlisted_rounds, shown_rounds) = unlisted.get(tp).copied().unwrap_or((0, 0));
            PartitionMove {
                topic: tp.topic.clone(),
                partition: tp.partition,
                target: r.target(),
                unlisted_rounds,
                shown_rounds,
            }
        })
        .chain(done.into_values())
        .collect();

    if pending.is_empty() && still_moving().next().is_none() {
        // Finished moves stay recorded (see above) until the operation ends.
        op.step = Step::Verifying;
        op.waiting_for = None;
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
        // Recorded (in the status) before it is set, so it is cleared even if the operator
        // dies right after setting it.
        let mut planned: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for m in &pending {
            planned
                .entry(m.partition.topic.clone())
                .or_default()
                .insert(m.partition.partition);
        }
        if throttles::record(admin, op, &throttle, &planned).await? {
            op.waiting_for = Some("recording the replication throttle before setting it".into());
            return Ok(());
        }
        // A user may have changed a throttle there since: theirs is recorded before ours
        // overwrites it.
        let brokers: Vec<BrokerId> = throttle.brokers.iter().copied().collect();
        let topics: Vec<String> = throttle.topics.keys().cloned().collect();
        if throttles::adopt_changes(admin, op, &brokers, &topics, &BTreeSet::new()).await? {
            op.waiting_for =
                Some("recording a throttle someone else set before overwriting it".into());
            return Ok(());
        }
        let throttle = throttle.keeping(&op.kept_topic_throttles);
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
        shown_rounds: 0,
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
    let brokers: Vec<BrokerId> = throttle.brokers.iter().copied().collect();
    let rate = throttle.rate.to_string();
    let differing = await_reported(admin, &brokers, &[(LEADER_RATE, &rate)], THROTTLE_WAIT).await?;
    Ok(differing.is_empty())
}

/// Cancels the operation's reassignments still in progress (not those of other tools) and
/// clears its throttles.
///
/// A move is recorded in `in_flight` by the status write after its submission, which can be
/// lost (a conflict with the user's own change of the spec, or the operator killed). Every
/// partition a move is submitted for is recorded as throttled before it is submitted, so
/// those records count as the operation's too.
pub(super) async fn cancel_moves(
    admin: &dyn KafkaAdmin,
    op: &Operation,
    lost: &BTreeSet<i32>,
) -> Result<(), KafkaError> {
    let ours: BTreeSet<TopicPartition> = op
        .in_flight
        .iter()
        .map(|m| TopicPartition::new(m.topic.clone(), m.partition))
        .chain(
            op.throttled_partitions
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .iter()
                        .map(|p| TopicPartition::new(topic.clone(), *p))
                }),
        )
        .collect();
    let in_progress = admin.list_reassignments().await?;
    let partitions: Vec<TopicPartition> = in_progress
        .into_keys()
        .filter(|tp| ours.contains(tp))
        .collect();
    if !partitions.is_empty() {
        admin.cancel_reassignments(&partitions).await?;
    }
    clear_throttles(admin, &mut op.clone(), lost).await
}
