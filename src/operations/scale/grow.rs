//! The scale-up state machine: wait for the new brokers, then move partitions onto them.

use std::collections::BTreeSet;

use crate::api::{Operation, Step};
use crate::kafka::{KafkaAdmin, KafkaError};

use super::cordon;
use super::mover::{cancel_moves, move_partitions};
use super::{ScaleInput, ScaleOutcome, finish, list, notice, settle, start, wait_for_kafka};

/// The scale-up state machine.
pub(super) async fn grow(
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
            cancel_moves(admin, &op, &input.lost_brokers).await?;
        } else if op.step != Step::WaitingForBrokers {
            op.waiting_for = Some("Kafka to be reachable to cancel the rebalance".into());
            out.operation = Some(op);
            return Ok(out);
        }
        // The new brokers may have come back with the cordon of an earlier broker of their id.
        // The scale-up lifts it once all of them registered (below); one cancelled before that
        // lifts it from those the cluster keeps before it ends, and tells the drain that
        // follows which of the others may carry it. Else a drain or rebalance plans moves onto
        // a broker Kafka refuses them for (INELIGIBLE_REPLICA), round after round.
        let inherited = if op.step == Step::WaitingForBrokers {
            op.arriving_brokers.clone()
        } else {
            Vec::new()
        };
        let lifted =
            match cordon::lift_inherited_from_kept(admin, &inherited, input.desired).await? {
                Ok(lifted) => lifted,
                Err(why) => {
                    op.waiting_for = Some(why);
                    out.operation = Some(op);
                    return Ok(out);
                }
            };
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
        cordon::hand_over(&mut next.operation, &inherited);
        next.notices.insert(0, cancelled);
        if !lifted.is_empty() {
            next.notices.insert(1, cordon::lifted_notice(lifted));
        }
        return Ok(next);
    }
    match op.step {
        Step::WaitingForBrokers => {
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
            // A broker id used before may come back cordoned (see `cordon`): lifted before
            // anything moves onto it.
            let cleared = match admin {
                Some(admin) => cordon::clear_inherited(admin, &op.arriving_brokers).await?,
                None => Vec::new(),
            };
            if !cleared.is_empty() {
                out.notices.push(cordon::lifted_notice(cleared));
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
            op.step = Step::Throttling;
            op.waiting_for = None;
            out.operation = Some(op);
        }
        Step::Throttling | Step::Moving => {
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
            settle(admin, input, &mut op, &mut out).await?;
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
