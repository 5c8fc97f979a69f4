//! Stuck detection: an operation step, or a rolling restart, that goes without progress for
//! longer than its bound (`rebalance.stuckAfterSeconds`) is reported, with what it waits for
//! and what the user can do. Nothing is forced: the operator keeps waiting safely. Pure.

use k8s_openapi::jiff::Timestamp;

use crate::api::{Operation, RebalanceSpec, Step};

/// Records progress on `next` (the operation after this round) against `previous`: a new
/// operation, a new step, or more partitions or bytes moved.
pub fn track(previous: Option<&Operation>, next: &mut Operation, now: Timestamp) {
    let progressed = match previous {
        None => true,
        Some(p) => {
            p.kind != next.kind
                || p.step != next.step
                || next.partitions_moved > p.partitions_moved
                || next.bytes_moved > p.bytes_moved
                || p.progressed_at.is_none()
        }
    };
    if progressed {
        next.progressed_at = Some(now.to_string());
    } else {
        next.progressed_at = previous.and_then(|p| p.progressed_at.clone());
    }
}

/// Why the operation is stuck, when it is.
pub fn operation(op: &Operation, spec: &RebalanceSpec, now: Timestamp) -> Option<String> {
    let since: Timestamp = op.progressed_at.as_deref()?.parse().ok()?;
    let bound = spec.stuck_after(op.step.as_str());
    let idle = now.duration_since(since);
    if idle.as_secs_f64() < bound.as_secs_f64() {
        return None;
    }
    let waiting = op
        .waiting_for
        .as_deref()
        .map(|w| format!(": waiting for {w}"))
        .unwrap_or_default();
    Some(format!(
        "step {} has made no progress for {} minute(s){waiting}. The operator keeps waiting and does nothing unsafe meanwhile; {}",
        op.step,
        (idle.as_secs_f64() / 60.0).floor() as i64,
        hint(&op.step)
    ))
}

/// Why a rolling restart is stuck, when it is: no pod restarted for longer than the bound.
pub fn roll(
    since: Option<&str>,
    waiting: Option<&str>,
    spec: &RebalanceSpec,
    now: Timestamp,
) -> Option<String> {
    let since: Timestamp = since?.parse().ok()?;
    let bound = spec.stuck_after("RollingRestart");
    let idle = now.duration_since(since);
    if idle.as_secs_f64() < bound.as_secs_f64() {
        return None;
    }
    Some(format!(
        "the rolling restart has restarted no pod for {} minute(s){}. The operator restarts a pod only when that is safe; check the pods and partitions named above (kubectl describe pod, the brokers' logs), and raise the replication factor of topics whose only copy holds the roll",
        (idle.as_secs_f64() / 60.0).floor() as i64,
        waiting.map(|w| format!(": {w}")).unwrap_or_default()
    ))
}

fn hint(step: &Step) -> &'static str {
    match step {
        Step::WaitingForBrokers => {
            "check why the new broker pods are not ready (kubectl describe pod, their logs); lowering brokerCount again undoes the scale-up"
        }
        Step::Throttling | Step::Moving => {
            "check the brokers named above and the replication throttle (rebalance.throttleBytesPerSecond); setting brokerCount back cancels the remaining moves and keeps what moved"
        }
        Step::Verifying | Step::Shrinking => {
            "every partition must be in sync and each leaving broker must confirm it holds nothing before it is removed; check the brokers named above"
        }
        Step::Unregistering | Step::CleaningUp => {
            "check that Kafka and the Kubernetes API are reachable from the operator"
        }
        Step::Unknown(_) => {
            "the step was written by another version or by hand; check the operator's version"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OperationKind;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn moving(moved: i64, progressed_at: Option<&str>) -> Operation {
        Operation {
            kind: OperationKind::ScaleDown,
            step: Step::Moving,
            partitions_total: 10,
            partitions_moved: moved,
            waiting_for: Some("2 move(s) in flight, 0 queued".into()),
            progressed_at: progressed_at.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn progress_resets_the_clock_and_idleness_keeps_it() {
        let t0 = "2026-12-04T10:00:00Z";
        let mut next = moving(3, None);
        track(None, &mut next, at(t0));
        assert_eq!(next.progressed_at.as_deref(), Some(t0));
        // Nothing moved since: the clock stays.
        let previous = next.clone();
        let mut next = moving(3, None);
        track(Some(&previous), &mut next, at("2026-12-04T10:20:00Z"));
        assert_eq!(next.progressed_at.as_deref(), Some(t0));
        // One more partition moved: progress.
        let mut next = moving(4, None);
        track(Some(&previous), &mut next, at("2026-12-04T10:25:00Z"));
        assert_eq!(next.progressed_at.as_deref(), Some("2026-12-04T10:25:00Z"));
    }

    #[test]
    fn a_step_idle_past_its_bound_is_stuck_and_says_what_to_do() {
        let spec = RebalanceSpec::default();
        let op = moving(3, Some("2026-12-04T10:00:00Z"));
        assert_eq!(operation(&op, &spec, at("2026-12-04T10:29:00Z")), None);
        let why = operation(&op, &spec, at("2026-12-04T10:31:00Z")).expect("stuck");
        assert!(
            why.contains("step Moving has made no progress for 31 minute(s)"),
            "{why}"
        );
        assert!(
            why.contains("2 move(s) in flight") && why.contains("brokerCount back"),
            "{why}"
        );
        // A bound per step.
        let spec = RebalanceSpec {
            stuck_after_seconds: [("Moving".to_string(), 7200)].into(),
            ..Default::default()
        };
        assert_eq!(operation(&op, &spec, at("2026-12-04T10:31:00Z")), None);
    }

    #[test]
    fn a_roll_that_restarts_nothing_for_too_long_is_stuck() {
        let spec = RebalanceSpec {
            stuck_after_seconds: [("default".to_string(), 600)].into(),
            ..Default::default()
        };
        let since = Some("2026-12-04T10:00:00Z");
        assert_eq!(roll(since, None, &spec, at("2026-12-04T10:05:00Z")), None);
        let why = roll(
            since,
            Some("waiting: broker 1 holds the only replica of t-0"),
            &spec,
            at("2026-12-04T10:11:00Z"),
        )
        .expect("stuck");
        assert!(
            why.contains("no pod for 11 minute(s)") && why.contains("only replica"),
            "{why}"
        );
    }
}
