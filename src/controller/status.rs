//! From what the operator observed to the status it reports: phase and conditions. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{Operation, OperationKind, Phase, Step};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const DEGRADED: &str = "Degraded";
pub const SCALE_DOWN_BLOCKED: &str = "ScaleDownBlocked";
pub const PAUSED: &str = "Paused";
pub const STUCK: &str = "Stuck";

/// What the operator saw of the cluster's workloads after applying them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Brokers the spec asks for.
    pub desired_brokers: i32,
    /// Brokers the StatefulSet runs (can exceed the spec while brokers are drained).
    pub broker_replicas: i32,
    pub ready_brokers: i32,
    pub desired_controllers: i32,
    pub ready_controllers: i32,
    /// Whether every Kafka pod runs its current template.
    pub rolled_out: bool,
    /// Where a rolling restart stands, while one is due.
    pub rollout: Option<String>,
    /// Why a requested scale-down is not carried out, when it is not.
    pub scale_down_blocked: Option<String>,
    /// Why the spec cannot be acted on, when it cannot.
    pub invalid_spec: Option<String>,
    /// The long-running operation in progress.
    pub operation: Option<Operation>,
    /// Why Kafka could not be asked or changed in this reconcile, when it could not.
    pub kafka_problem: Option<String>,
    /// Why an operation or a rolling restart counts as stuck, when it does.
    pub stuck: Option<String>,
}

/// Phase of a cluster while an operation runs.
fn operation_phase(op: &Operation) -> Phase {
    match op.kind {
        OperationKind::ScaleDown => Phase::Draining,
        OperationKind::ScaleUp if op.step == Step::WaitingForBrokers => Phase::ScalingUp,
        OperationKind::ScaleUp | OperationKind::ReplicationFactorChange => Phase::Rebalancing,
    }
}

/// One line on where an operation stands.
pub fn operation_summary(op: &Operation) -> String {
    let what = match op.kind {
        OperationKind::ScaleDown => format!(
            "draining broker(s) {} to scale to {}",
            op.leaving_brokers
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            op.target_brokers
        ),
        OperationKind::ScaleUp => format!("scaling up to {} brokers", op.target_brokers),
        OperationKind::ReplicationFactorChange => "changing replication factors".to_string(),
    };
    let mut line = format!(
        "{what}: step {}, {}/{} partitions and {}/{} bytes moved",
        op.step, op.partitions_moved, op.partitions_total, op.bytes_moved, op.bytes_total
    );
    if let Some(waiting) = &op.waiting_for {
        line.push_str(&format!("; waiting for {waiting}"));
    }
    line
}

/// Phase and conditions for the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub phase: Phase,
    pub conditions: Vec<NewCondition>,
}

/// A condition without its timestamps, which [`merge_conditions`] fills in.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

pub(crate) fn condition(
    type_: &'static str,
    status: bool,
    reason: &str,
    message: String,
) -> NewCondition {
    NewCondition {
        type_,
        status,
        reason: reason.to_string(),
        message,
    }
}

/// Decides phase and conditions. `previous` is the phase the status had before.
pub fn assess(observed: &Observed, previous: Option<Phase>) -> Assessment {
    let o = observed;
    if let Some(message) = &o.invalid_spec {
        return Assessment {
            phase: Phase::Blocked,
            conditions: vec![
                condition(READY, false, "InvalidSpec", message.clone()),
                condition(
                    RECONCILING,
                    false,
                    "InvalidSpec",
                    "nothing is changed until the spec is fixed".into(),
                ),
            ],
        };
    }

    let all_brokers_ready = o.ready_brokers >= o.broker_replicas && o.broker_replicas > 0;
    let controllers_ready = o.ready_controllers >= o.desired_controllers;
    let all_ready = all_brokers_ready && controllers_ready;
    let scaling_up = o.broker_replicas > o.ready_brokers
        && (previous == Some(Phase::ScalingUp)
            || matches!(previous, Some(Phase::Running) | Some(Phase::Degraded))
                && o.broker_replicas == o.desired_brokers);
    let never_ready = matches!(previous, None | Some(Phase::Creating));

    let phase = if let Some(op) = &o.operation {
        operation_phase(op)
    } else if o.scale_down_blocked.is_some() {
        Phase::Blocked
    } else if all_ready && o.rolled_out {
        Phase::Running
    } else if never_ready {
        Phase::Creating
    } else if !o.rolled_out {
        Phase::Restarting
    } else if scaling_up && controllers_ready {
        Phase::ScalingUp
    } else {
        Phase::Degraded
    };

    let readiness = format!(
        "{}/{} brokers ready{}",
        o.ready_brokers,
        o.broker_replicas,
        if o.desired_controllers > 0 {
            format!(
                ", {}/{} controllers ready",
                o.ready_controllers, o.desired_controllers
            )
        } else {
            String::new()
        }
    );
    let mut conditions = vec![if all_ready {
        condition(READY, true, "AllNodesReady", readiness.clone())
    } else {
        condition(READY, false, "NodesNotReady", readiness.clone())
    }];
    conditions.push(match (&o.operation, phase) {
        (Some(op), _) => {
            let mut summary = operation_summary(op);
            if let Some(problem) = &o.kafka_problem {
                summary.push_str(&format!("; Kafka: {problem}"));
            }
            condition(
                RECONCILING,
                true,
                // A reason must be CamelCase; an unknown step's own value may not be.
                match &op.step {
                    Step::Unknown(_) => "UnknownStep",
                    step => step.as_str(),
                },
                summary,
            )
        }
        (None, _) if o.kafka_problem.is_some() => condition(
            RECONCILING,
            true,
            "WaitingForKafka",
            o.kafka_problem.clone().unwrap_or_default(),
        ),
        (None, Phase::Creating) => condition(RECONCILING, true, "Creating", readiness.clone()),
        (None, Phase::ScalingUp) => condition(RECONCILING, true, "ScalingUp", readiness.clone()),
        _ if !o.rolled_out => condition(
            RECONCILING,
            true,
            "RollingUpdate",
            o.rollout
                .clone()
                .unwrap_or_else(|| "pods restart one at a time with their new template".into()),
        ),
        _ => condition(
            RECONCILING,
            false,
            "Reconciled",
            "objects match the spec".into(),
        ),
    });
    conditions.push(if phase == Phase::Degraded {
        condition(DEGRADED, true, "NodesNotReady", readiness)
    } else {
        condition(DEGRADED, false, "AsExpected", readiness)
    });
    conditions.push(match &o.stuck {
        Some(message) => condition(STUCK, true, "NoProgress", message.clone()),
        None => condition(
            STUCK,
            false,
            "Progressing",
            "nothing waits past its bound".into(),
        ),
    });
    conditions.push(match &o.scale_down_blocked {
        Some(message) => condition(
            SCALE_DOWN_BLOCKED,
            true,
            "ScaleDownBlocked",
            message.clone(),
        ),
        None => condition(
            SCALE_DOWN_BLOCKED,
            false,
            "NoScaleDownPending",
            "no broker waits to be removed".into(),
        ),
    });
    Assessment { phase, conditions }
}

/// Applies new conditions to the existing ones, keeping `lastTransitionTime` of a condition
/// whose status did not change, as the Kubernetes convention asks.
pub fn merge_conditions(
    existing: &[Condition],
    new: &[NewCondition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    new.iter()
        .map(|n| {
            let status = if n.status { "True" } else { "False" }.to_string();
            let previous = existing.iter().find(|c| c.type_ == n.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: n.type_.to_string(),
                status,
                reason: n.reason.clone(),
                message: n.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(replicas: i32, ready: i32) -> Observed {
        Observed {
            desired_brokers: replicas,
            broker_replicas: replicas,
            ready_brokers: ready,
            desired_controllers: 3,
            ready_controllers: 3,
            rolled_out: true,
            ..Default::default()
        }
    }

    fn status_of(a: &Assessment, type_: &str) -> (bool, String) {
        let c = a.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status, c.reason.clone())
    }

    #[test]
    fn new_cluster_is_creating_until_ready() {
        let a = assess(&observed(3, 1), None);
        assert_eq!(a.phase, Phase::Creating);
        assert_eq!(status_of(&a, READY), (false, "NodesNotReady".into()));
        let a = assess(&observed(3, 3), Some(Phase::Creating));
        assert_eq!(a.phase, Phase::Running);
        assert_eq!(status_of(&a, READY), (true, "AllNodesReady".into()));
        assert!(!status_of(&a, DEGRADED).0);
    }

    #[test]
    fn lost_broker_is_degraded() {
        let a = assess(&observed(3, 2), Some(Phase::Running));
        // Same replicas as desired and fewer ready: a scale-up in progress looks the same, so
        // it is only ScalingUp when the replicas grew (see next test).
        assert!(matches!(a.phase, Phase::ScalingUp | Phase::Degraded));
        let mut o = observed(3, 2);
        o.desired_brokers = 4;
        let a = assess(&o, Some(Phase::Running));
        assert_eq!(a.phase, Phase::Degraded);
        assert_eq!(status_of(&a, DEGRADED), (true, "NodesNotReady".into()));
    }

    #[test]
    fn blocked_scale_down_is_reported() {
        let mut o = observed(5, 5);
        o.desired_brokers = 3;
        o.scale_down_blocked = Some("brokers 3, 4 hold data".into());
        let a = assess(&o, Some(Phase::Running));
        assert_eq!(a.phase, Phase::Blocked);
        assert_eq!(
            status_of(&a, SCALE_DOWN_BLOCKED),
            (true, "ScaleDownBlocked".into())
        );
    }

    #[test]
    fn invalid_spec_blocks() {
        let o = Observed {
            invalid_spec: Some("image: bad".into()),
            ..Default::default()
        };
        let a = assess(&o, Some(Phase::Running));
        assert_eq!(a.phase, Phase::Blocked);
        assert_eq!(status_of(&a, READY), (false, "InvalidSpec".into()));
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let first = merge_conditions(&[], &assess(&observed(3, 1), None).conditions, Some(1), t0);
        let second = merge_conditions(
            &first,
            &assess(&observed(3, 2), Some(Phase::Creating)).conditions,
            Some(1),
            t1,
        );
        let ready = second.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.last_transition_time, Time(t0));
        assert_eq!(ready.message, "2/3 brokers ready, 3/3 controllers ready");
        let third = merge_conditions(
            &second,
            &assess(&observed(3, 3), Some(Phase::Creating)).conditions,
            Some(2),
            t1,
        );
        let ready = third.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.last_transition_time, Time(t1));
        assert_eq!(ready.observed_generation, Some(2));
    }

    #[test]
    fn a_rolling_restart_is_not_degraded() {
        let mut o = observed(3, 2);
        o.rolled_out = false;
        o.rollout = Some("restarting pod kafka-1".into());
        let a = assess(&o, Some(Phase::Running));
        assert_eq!(a.phase, Phase::Restarting);
        assert_eq!(status_of(&a, RECONCILING), (true, "RollingUpdate".into()));
        assert!(!status_of(&a, DEGRADED).0);
    }
}
