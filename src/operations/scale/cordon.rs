//! Cordoning the brokers a drain removes (KIP-1066, Kafka 4.3+): `cordoned.log.dirs=*` on a
//! broker keeps Kafka from placing any new partition on it, while its partitions keep serving.
//! Without it, a topic created during a drain can land on a leaving broker; the drain then
//! checks, after the brokers stopped, and brings them back to drain them again, but on
//! ephemeral storage (emptyDir) a broker that stopped has lost what it held. So a drain cordons
//! the leaving brokers before it moves anything, and a cancelled drain uncordons them.
//!
//! As with throttles, the cordon is recorded in the status before it is set, and a value a user
//! had set on a leaving broker (one disk cordoned, say) is recorded and put back on cancel. A
//! broker that has gone keeps its dynamic configuration in the cluster metadata: a later broker
//! with the same id would start cordoned, so a scale-up clears leftover cordons of the brokers
//! it adds. Kafka versions without cordoning (before 4.3, ZooKeeper mode, or a metadata version
//! not raised yet) do not know the setting: the drain says so once and goes on without it.

use std::collections::BTreeMap;

use crate::api::{Operation, OperationKind};
use crate::kafka::{BrokerId, ConfigOp, ConfigResource, KafkaAdmin, KafkaError};

use super::{Notice, list, notice};

/// The broker setting that cordons log directories; `*` cordons all of a broker's.
pub const CORDONED_LOG_DIRS: &str = "cordoned.log.dirs";

/// One round of cordoning the leaving brokers. Returns whether the drain must stop this round:
/// the brokers to cordon were just recorded (the record reaches the status before the cordon
/// reaches Kafka).
pub(super) async fn cordon_leaving(
    admin: &dyn KafkaAdmin,
    op: &mut Operation,
    live: &[BrokerId],
    notices: &mut Vec<Notice>,
) -> Result<bool, KafkaError> {
    if op.cordon_unsupported || op.cordoned {
        return Ok(false);
    }
    // Brokers that are not running take no partitions, and hold none a drain must move.
    let leaving: Vec<BrokerId> = op
        .leaving_brokers
        .iter()
        .copied()
        .filter(|b| live.contains(b))
        .collect();
    if leaving.is_empty() {
        return Ok(false);
    }
    let unrecorded: Vec<BrokerId> = leaving
        .iter()
        .copied()
        .filter(|b| !op.cordoned_brokers.contains(b))
        .collect();
    if !unrecorded.is_empty() {
        let resources: Vec<ConfigResource> = unrecorded
            .iter()
            .map(|b| ConfigResource::Broker(*b))
            .collect();
        let found = admin.describe_configs(&resources).await?;
        for (resource, entries) in found {
            let ConfigResource::Broker(b) = resource else {
                continue;
            };
            let Some(entry) = entries.get(CORDONED_LOG_DIRS) else {
                // A Kafka that lists no such setting cannot cordon.
                unsupported(op, notices, "this Kafka version has no broker cordoning");
                return Ok(false);
            };
            // An inherited cordon is the operator's own, not a value to put back.
            if let Some(value) = entry.value.as_ref().filter(|v| !v.is_empty())
                && entry.overridden
                && !op.inherited_cordons.contains(&b)
            {
                op.kept_cordons.insert(b.to_string(), value.clone());
            }
        }
        op.cordoned_brokers.extend(unrecorded);
        op.cordoned_brokers.sort_unstable();
        op.waiting_for = Some("recording the leaving brokers' cordon before setting it".into());
        return Ok(true);
    }
    let cordon = BTreeMap::from([(CORDONED_LOG_DIRS.to_string(), ConfigOp::Set("*".into()))]);
    for b in &leaving {
        match admin
            .alter_configs(&ConfigResource::Broker(*b), &cordon)
            .await
        {
            Ok(()) => {}
            // Known but refused: the metadata version does not support it yet.
            Err(KafkaError::Kafka { name, message, .. }) if name == "INVALID_CONFIG" => {
                let why = message.unwrap_or_else(|| "refused as an invalid config".into());
                unsupported(op, notices, &format!("Kafka refused the cordon: {why}"));
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
    op.cordoned = true;
    notices.push(notice(
        false,
        "BrokersCordoned",
        format!(
            "broker(s) {} cordoned: Kafka places no new partition on them while they are drained",
            list(leaving)
        ),
    ));
    Ok(false)
}

fn unsupported(op: &mut Operation, notices: &mut Vec<Notice>, why: &str) {
    op.cordon_unsupported = true;
    op.cordoned_brokers.clear();
    op.kept_cordons.clear();
    notices.push(notice(
        true,
        "CordonUnsupported",
        format!(
            "the leaving brokers cannot be cordoned ({why}; cordoning needs Kafka 4.3 or later in KRaft mode): a partition created during the drain may be placed on them; the drain checks for that after they stop and brings them back to move it, and with ephemeral storage (emptyDir) such a partition starts empty"
        ),
    ));
}

/// Lifts the operation's cordon from the brokers that stay (a cancelled drain), putting back
/// what a user had set there.
pub(super) async fn uncordon(admin: &dyn KafkaAdmin, op: &Operation) -> Result<(), KafkaError> {
    for b in &op.cordoned_brokers {
        let change = match op.kept_cordons.get(&b.to_string()) {
            Some(value) => ConfigOp::Set(value.clone()),
            None => ConfigOp::Delete,
        };
        admin
            .alter_configs(
                &ConfigResource::Broker(*b),
                &BTreeMap::from([(CORDONED_LOG_DIRS.to_string(), change)]),
            )
            .await?;
    }
    Ok(())
}

/// Before a cancelled operation hands over to the next: lifts the cordon that brokers of
/// `inherited` may have inherited (see [`clear_inherited`]) from those the cluster keeps (below
/// `desired`), for nothing after it knows that cordon is the operator's. A broker's own config
/// is altered through that very broker (a broker refuses IncrementalAlterConfigs of another
/// broker's id), so this waits for them to register: `Err(why)` while it waits, else the
/// brokers it lifted a cordon from.
pub(super) async fn lift_inherited_from_kept(
    admin: Option<&dyn KafkaAdmin>,
    inherited: &[BrokerId],
    desired: i32,
) -> Result<Result<Vec<BrokerId>, String>, KafkaError> {
    let kept: Vec<BrokerId> = inherited.iter().copied().filter(|b| *b < desired).collect();
    if kept.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let Some(admin) = admin else {
        return Ok(Err(format!(
            "Kafka to be reachable to lift the cordon broker(s) {} may have inherited, before acting on brokerCount {desired}",
            list(kept)
        )));
    };
    let registered = admin.snapshot().await?.broker_ids();
    let unregistered: Vec<BrokerId> = kept
        .iter()
        .copied()
        .filter(|b| !registered.contains(b))
        .collect();
    if !unregistered.is_empty() {
        return Ok(Err(format!(
            "broker(s) {} to register, to lift the cordon they may have inherited before acting on brokerCount {desired}",
            list(unregistered)
        )));
    }
    Ok(Ok(clear_inherited(admin, &kept).await?))
}

/// The operation that follows a cancelled one inherits what it still has to know: which of its
/// leaving brokers may carry an inherited cordon.
pub(super) fn hand_over(next: &mut Option<Operation>, inherited: &[BrokerId]) {
    if let Some(op) = next.as_mut()
        && op.kind == OperationKind::ScaleDown
    {
        op.inherited_cordons = inherited
            .iter()
            .copied()
            .filter(|b| op.leaving_brokers.contains(b))
            .collect();
        op.inherited_cordons.sort_unstable();
        op.inherited_cordons.dedup();
    }
}

/// The event of a cordon lifted from brokers that inherited it.
pub(super) fn lifted_notice(brokers: Vec<BrokerId>) -> Notice {
    notice(
        false,
        "CordonLifted",
        format!(
            "broker(s) {} joined with the cordon of an earlier broker of the same id; lifted",
            list(brokers)
        ),
    )
}

/// Clears a cordon that brokers joining the cluster inherited from an earlier broker with the
/// same id (drained and removed while cordoned). A Kafka without cordoning has none to clear.
pub(super) async fn clear_inherited(
    admin: &dyn KafkaAdmin,
    arriving: &[BrokerId],
) -> Result<Vec<BrokerId>, KafkaError> {
    if arriving.is_empty() {
        return Ok(Vec::new());
    }
    let resources: Vec<ConfigResource> = arriving
        .iter()
        .map(|b| ConfigResource::Broker(*b))
        .collect();
    let mut cleared = Vec::new();
    for (resource, entries) in admin.describe_configs(&resources).await? {
        let ConfigResource::Broker(b) = resource else {
            continue;
        };
        let cordoned = entries
            .get(CORDONED_LOG_DIRS)
            .is_some_and(|v| v.overridden && v.value.as_ref().is_some_and(|v| !v.is_empty()));
        if cordoned {
            admin
                .alter_configs(
                    &ConfigResource::Broker(b),
                    &BTreeMap::from([(CORDONED_LOG_DIRS.to_string(), ConfigOp::Delete)]),
                )
                .await?;
            cleared.push(b);
        }
    }
    Ok(cleared)
}
