//! Topic reconciliation: `spec.topics` -> Kafka.
//!
//! [`plan_topics`] is a pure diff of the spec against what Kafka reports; [`reconcile_topics`]
//! carries out the cheap changes (create, grow partitions, topic configs) and reports each
//! topic's state for the status. Replication factor changes move data, so they are only
//! emitted here ([`TopicAction::ChangeReplicationFactor`]) and carried out by the operations
//! layer with the planner.
//!
//! A topic's configuration keys are the spec's where the spec names them. A key the spec named
//! before and no longer names goes back to its default; a key the spec never named is left as
//! it is: adding an existing topic to the spec (a compacted topic, or one that never expires)
//! must not turn it into a topic that deletes its data after the default retention. What the
//! spec named is remembered in the status (`configKeys`), as `kubectl apply` remembers its last
//! configuration. Topics the spec no longer names are left alone unless the user opts in
//! (`deleteRemovedTopics`): deleting data because a line disappeared from a manifest is not a
//! risk to take by default.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{TopicPhase, TopicSpec, TopicStatus};
use crate::kafka::{
    ClusterSnapshot, ConfigOp, ConfigResource, ConfigValue, KafkaAdmin, KafkaError, NewTopic,
};

/// One change (or refusal) for one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicAction {
    Create(NewTopic),
    GrowPartitions {
        topic: String,
        from: i32,
        to: i32,
    },
    /// Set the keys the spec names, and return to their defaults the keys the spec named
    /// before (and set on the topic) that it no longer names.
    AlterConfig {
        topic: String,
        set: BTreeMap<String, String>,
        reset: Vec<String>,
    },
    /// Carried out by partition reassignment, outside this module.
    ChangeReplicationFactor {
        topic: String,
        from: i32,
        to: i32,
    },
    /// The spec asks for fewer partitions than the topic has, which Kafka cannot do.
    RefuseShrink {
        topic: String,
        current: i32,
        requested: i32,
    },
}

impl TopicAction {
    pub fn topic(&self) -> &str {
        match self {
            TopicAction::Create(t) => &t.name,
            TopicAction::GrowPartitions { topic, .. }
            | TopicAction::AlterConfig { topic, .. }
            | TopicAction::ChangeReplicationFactor { topic, .. }
            | TopicAction::RefuseShrink { topic, .. } => topic,
        }
    }

    /// What to tell the user about this action, for actions that need telling.
    pub fn message(&self) -> Option<String> {
        match self {
            TopicAction::RefuseShrink {
                topic,
                current,
                requested,
            } => Some(format!(
                "topic {topic} has {current} partitions, the spec asks for {requested}: Kafka \
                 cannot remove partitions; raise the spec back to {current} or recreate the topic"
            )),
            TopicAction::ChangeReplicationFactor { topic, from, to } => Some(format!(
                "replication factor of topic {topic} changes from {from} to {to} by partition \
                 reassignment"
            )),
            _ => None,
        }
    }
}

/// The changes that bring Kafka's topics to the spec. Pure.
///
/// `configs` holds the current configuration of the spec's topics that exist (topics missing
/// from it are treated as having no value for any key); `previous` is the last status, whose
/// `configKeys` say which keys the spec set before. Topics with a reassignment in progress
/// get no replication factor change (their replica counts are in flux); topics not in the spec
/// get nothing.
pub fn plan_topics(
    spec: &[TopicSpec],
    snapshot: &ClusterSnapshot,
    configs: &BTreeMap<String, BTreeMap<String, ConfigValue>>,
    previous: &[TopicStatus],
) -> Vec<TopicAction> {
    let mut actions = Vec::new();
    for want in spec {
        let Some(have) = snapshot.topics.get(&want.name) else {
            actions.push(TopicAction::Create(NewTopic {
                name: want.name.clone(),
                partitions: want.partitions,
                replication_factor: want.replication_factor,
                config: want.config.clone(),
            }));
            continue;
        };
        let current = have.partitions.len() as i32;
        if want.partitions > current {
            actions.push(TopicAction::GrowPartitions {
                topic: want.name.clone(),
                from: current,
                to: want.partitions,
            });
        } else if want.partitions < current {
            actions.push(TopicAction::RefuseShrink {
                topic: want.name.clone(),
                current,
                requested: want.partitions,
            });
        }
        let empty = BTreeMap::new();
        let current_config = configs.get(&want.name).unwrap_or(&empty);
        // A key the spec names is set on the topic itself, even where the value it inherits
        // (from a broker default) is the same: a later change of that default must not change
        // the topic.
        let set: BTreeMap<String, String> = want
            .config
            .iter()
            .filter(|(k, v)| {
                current_config
                    .get(*k)
                    .is_none_or(|c| !c.overridden || c.value.as_deref() != Some(v.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Only what the spec itself set before comes off; never the throttles of a partition
        // move in progress, which the operations set on the topics they move.
        let named_before: BTreeSet<&str> = previous
            .iter()
            .filter(|t| t.name == want.name)
            .flat_map(|t| t.config_keys.iter().map(String::as_str))
            .collect();
        let reset: Vec<String> = current_config
            .iter()
            .filter(|(k, v)| {
                v.overridden
                    && named_before.contains(k.as_str())
                    && !want.config.contains_key(*k)
                    && !k.ends_with(".replication.throttled.replicas")
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !set.is_empty() || !reset.is_empty() {
            actions.push(TopicAction::AlterConfig {
                topic: want.name.clone(),
                set,
                reset,
            });
        }
        let reassigning = snapshot
            .reassignments
            .keys()
            .any(|tp| tp.topic == want.name);
        let rf = have.replication_factor();
        if !reassigning && rf != want.replication_factor {
            actions.push(TopicAction::ChangeReplicationFactor {
                topic: want.name.clone(),
                from: rf,
                to: want.replication_factor,
            });
        }
    }
    actions
}

/// Brings the spec's topics about (create, grow, configs) and returns each topic's status.
///
/// Fails as a whole only when Kafka cannot be asked (unreachable, timeout): then nothing is
/// known and the controller backs off. A change Kafka refuses for one topic (a bad config
/// value, a replication factor above the broker count) becomes that topic's `Error` state with
/// Kafka's reason, and the other topics go on.
/// Topics the operator managed (listed in the previous status) that the spec no longer names.
pub fn removed_topics(previous: &[TopicStatus], spec: &[TopicSpec]) -> Vec<String> {
    previous
        .iter()
        .filter(|t| !spec.iter().any(|s| s.name == t.name))
        .map(|t| t.name.clone())
        .collect()
}

/// Deletes the topics the spec dropped (only those the operator managed); returns their names.
/// Called only when the user opted in (`deleteRemovedTopics`).
pub async fn delete_removed_topics(
    admin: &dyn KafkaAdmin,
    previous: &[TopicStatus],
    spec: &[TopicSpec],
) -> Result<Vec<String>, KafkaError> {
    let removed = removed_topics(previous, spec);
    admin.delete_topics(&removed).await?;
    Ok(removed)
}

pub async fn reconcile_topics(
    admin: &dyn KafkaAdmin,
    spec: &[TopicSpec],
    previous: &[TopicStatus],
) -> Result<Vec<TopicStatus>, KafkaError> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    let snapshot = admin.snapshot().await?;
    let existing: Vec<ConfigResource> = spec
        .iter()
        .filter(|t| snapshot.topics.contains_key(&t.name))
        .map(|t| ConfigResource::Topic(t.name.clone()))
        .collect();
    let configs = if existing.is_empty() {
        BTreeMap::new()
    } else {
        admin
            .describe_configs(&existing)
            .await?
            .into_iter()
            .filter_map(|(r, c)| match r {
                ConfigResource::Topic(t) => Some((t, c)),
                _ => None,
            })
            .collect()
    };
    let actions = plan_topics(spec, &snapshot, &configs, previous);

    let mut outcome: BTreeMap<String, (TopicPhase, Option<String>)> = BTreeMap::new();
    let mut fail = |topic: &str, e: KafkaError| -> Result<(), KafkaError> {
        if matches!(
            e,
            KafkaError::Unreachable { .. } | KafkaError::Timeout { .. }
        ) {
            return Err(e);
        }
        outcome.insert(topic.to_string(), (TopicPhase::Error, Some(e.to_string())));
        Ok(())
    };
    let creates: Vec<NewTopic> = actions
        .iter()
        .filter_map(|a| match a {
            TopicAction::Create(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    // One topic at a time: a refused topic must not hide whether the others were created.
    for t in &creates {
        if let Err(e) = admin.create_topics(std::slice::from_ref(t)).await {
            fail(&t.name, e)?;
        }
    }
    for action in &actions {
        let result = match action {
            TopicAction::GrowPartitions { topic, to, .. } => {
                admin.create_partitions(topic, *to).await
            }
            TopicAction::AlterConfig { topic, set, reset } => {
                let changes = set
                    .iter()
                    .map(|(k, v)| (k.clone(), ConfigOp::Set(v.clone())))
                    .chain(reset.iter().map(|k| (k.clone(), ConfigOp::Delete)))
                    .collect();
                admin
                    .alter_configs(&ConfigResource::Topic(topic.clone()), &changes)
                    .await
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            fail(action.topic(), e)?;
        }
    }

    let statuses = spec
        .iter()
        .map(|want| {
            let mine: Vec<&TopicAction> =
                actions.iter().filter(|a| a.topic() == want.name).collect();
            let have = snapshot.topics.get(&want.name);
            let (mut partitions, replication_factor) = match have {
                Some(t) => (t.partitions.len() as i32, t.replication_factor()),
                None => (want.partitions, want.replication_factor),
            };
            let (state, message) = if let Some((state, message)) = outcome.get(&want.name) {
                (*state, message.clone())
            } else if let Some(refusal) = mine
                .iter()
                .find(|a| matches!(a, TopicAction::RefuseShrink { .. }))
            {
                (TopicPhase::Error, refusal.message())
            } else if mine.iter().any(|a| matches!(a, TopicAction::Create(_))) {
                (TopicPhase::Creating, None)
            } else if let Some(rf) = mine
                .iter()
                .find(|a| matches!(a, TopicAction::ChangeReplicationFactor { .. }))
            {
                (TopicPhase::Reassigning, rf.message())
            } else if snapshot
                .reassignments
                .keys()
                .any(|tp| tp.topic == want.name)
            {
                (
                    TopicPhase::Reassigning,
                    Some(format!("partitions of topic {} are being moved", want.name)),
                )
            } else {
                (TopicPhase::Ready, None)
            };
            if state != TopicPhase::Error
                && mine
                    .iter()
                    .any(|a| matches!(a, TopicAction::GrowPartitions { .. }))
            {
                partitions = want.partitions;
            }
            TopicStatus {
                name: want.name.clone(),
                state,
                partitions,
                replication_factor,
                message,
                config_keys: want.config.keys().cloned().collect(),
            }
        })
        .collect();
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{OngoingReassignment, PartitionState, TopicPartition, TopicState};

    fn spec(name: &str, partitions: i32, rf: i32, config: &[(&str, &str)]) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn topic(name: &str, partitions: i32, rf: i32) -> TopicState {
        TopicState {
            name: name.into(),
            internal: false,
            partitions: (0..partitions)
                .map(|p| PartitionState {
                    partition: p,
                    replicas: (0..rf).collect(),
                    isr: (0..rf).collect(),
                    leader: Some(0),
                    ..PartitionState::default()
                })
                .collect(),
        }
    }

    fn snapshot(topics: Vec<TopicState>) -> ClusterSnapshot {
        ClusterSnapshot {
            topics: topics.into_iter().map(|t| (t.name.clone(), t)).collect(),
            ..ClusterSnapshot::default()
        }
    }

    fn configs(
        topic: &str,
        kv: &[(&str, &str)],
    ) -> BTreeMap<String, BTreeMap<String, ConfigValue>> {
        BTreeMap::from([(
            topic.to_string(),
            kv.iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        ConfigValue {
                            value: Some(v.to_string()),
                            is_default: false,
                            overridden: true,
                            read_only: false,
                        },
                    )
                })
                .collect(),
        )])
    }

    /// Adds a value the topic inherits (a default or the broker's setting, not its own).
    fn inherit(
        configs: &mut BTreeMap<String, BTreeMap<String, ConfigValue>>,
        topic: &str,
        key: &str,
        value: &str,
    ) {
        configs.entry(topic.to_string()).or_default().insert(
            key.to_string(),
            ConfigValue {
                value: Some(value.to_string()),
                is_default: false,
                overridden: false,
                read_only: false,
            },
        );
    }

    #[test]
    fn missing_topics_are_created_with_their_config() {
        let actions = plan_topics(
            &[spec("a", 3, 2, &[("retention.ms", "1000")])],
            &snapshot(vec![]),
            &BTreeMap::new(),
            &[],
        );
        assert_eq!(
            actions,
            vec![TopicAction::Create(NewTopic {
                name: "a".into(),
                partitions: 3,
                replication_factor: 2,
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            })]
        );
    }

    #[test]
    fn topics_in_shape_need_nothing() {
        let mut current = configs("a", &[("retention.ms", "1000")]);
        inherit(&mut current, "a", "cleanup.policy", "delete");
        let actions = plan_topics(
            &[spec("a", 3, 2, &[("retention.ms", "1000")])],
            &snapshot(vec![topic("a", 3, 2), topic("unmanaged", 1, 1)]),
            &current,
            &[],
        );
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn partitions_grow_and_configs_change_incrementally() {
        let actions = plan_topics(
            &[spec(
                "a",
                6,
                2,
                &[("retention.ms", "2000"), ("cleanup.policy", "delete")],
            )],
            &snapshot(vec![topic("a", 3, 2)]),
            &configs(
                "a",
                &[("retention.ms", "1000"), ("cleanup.policy", "delete")],
            ),
            &[],
        );
        assert_eq!(
            actions,
            vec![
                TopicAction::GrowPartitions {
                    topic: "a".into(),
                    from: 3,
                    to: 6
                },
                TopicAction::AlterConfig {
                    topic: "a".into(),
                    set: BTreeMap::from([("retention.ms".into(), "2000".into())]),
                    reset: vec![],
                },
            ]
        );
    }

    #[test]
    fn keys_dropped_from_the_spec_go_back_to_their_defaults() {
        let mut current = configs(
            "a",
            &[
                ("retention.ms", "1000"),
                ("segment.bytes", "1048576"),
                ("leader.replication.throttled.replicas", "0:1"),
            ],
        );
        // Inherited from the broker: not the topic's own setting, nothing to reset.
        inherit(&mut current, "a", "max.message.bytes", "2000000");
        let named = |keys: &[&str]| TopicStatus {
            name: "a".into(),
            config_keys: keys.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        };
        let actions = plan_topics(
            &[spec("a", 3, 2, &[("retention.ms", "1000")])],
            &snapshot(vec![topic("a", 3, 2)]),
            &current,
            &[named(&[
                "retention.ms",
                "segment.bytes",
                "max.message.bytes",
                "leader.replication.throttled.replicas",
            ])],
        );
        assert_eq!(
            actions,
            vec![TopicAction::AlterConfig {
                topic: "a".into(),
                set: BTreeMap::new(),
                reset: vec!["segment.bytes".into()],
            }]
        );
    }

    #[test]
    fn keys_the_spec_never_named_are_left_alone() {
        // An existing compacted topic that never expires, adopted into the spec without them.
        let current = configs(
            "a",
            &[("cleanup.policy", "compact"), ("retention.ms", "-1")],
        );
        let adopted = plan_topics(
            &[spec("a", 3, 2, &[])],
            &snapshot(vec![topic("a", 3, 2)]),
            &current,
            &[],
        );
        assert!(adopted.is_empty(), "{adopted:?}");
        // Named once, the spec owns the key: it is set, and reset when dropped again.
        let owned = plan_topics(
            &[spec("a", 3, 2, &[("retention.ms", "86400000")])],
            &snapshot(vec![topic("a", 3, 2)]),
            &current,
            &[],
        );
        assert_eq!(
            owned,
            vec![TopicAction::AlterConfig {
                topic: "a".into(),
                set: BTreeMap::from([("retention.ms".into(), "86400000".into())]),
                reset: vec![],
            }]
        );
    }

    #[test]
    fn a_named_key_inherited_with_the_same_value_is_set_on_the_topic() {
        let mut current = BTreeMap::new();
        inherit(&mut current, "a", "retention.ms", "1000");
        let actions = plan_topics(
            &[spec("a", 3, 2, &[("retention.ms", "1000")])],
            &snapshot(vec![topic("a", 3, 2)]),
            &current,
            &[],
        );
        assert_eq!(
            actions,
            vec![TopicAction::AlterConfig {
                topic: "a".into(),
                set: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                reset: vec![],
            }]
        );
    }

    #[test]
    fn shrinking_is_refused_with_what_to_do() {
        let actions = plan_topics(
            &[spec("X", 3, 1, &[])],
            &snapshot(vec![topic("X", 6, 1)]),
            &BTreeMap::new(),
            &[],
        );
        assert_eq!(actions.len(), 1);
        assert_eq!(
            actions[0].message().unwrap(),
            "topic X has 6 partitions, the spec asks for 3: Kafka cannot remove partitions; \
             raise the spec back to 6 or recreate the topic"
        );
    }

    #[test]
    fn replication_factor_changes_are_emitted_unless_moving() {
        let s = [spec("a", 2, 3, &[])];
        let mut snap = snapshot(vec![topic("a", 2, 1)]);
        assert_eq!(
            plan_topics(&s, &snap, &BTreeMap::new(), &[]),
            vec![TopicAction::ChangeReplicationFactor {
                topic: "a".into(),
                from: 1,
                to: 3
            }]
        );
        snap.reassignments.insert(
            TopicPartition::new("a", 0),
            OngoingReassignment {
                replicas: vec![0, 1],
                adding: vec![1],
                removing: vec![],
            },
        );
        assert!(plan_topics(&s, &snap, &BTreeMap::new(), &[]).is_empty());
    }

    #[test]
    fn only_managed_topics_the_spec_dropped_are_removed() {
        let status = |name: &str| TopicStatus {
            name: name.into(),
            state: TopicPhase::Ready,
            ..Default::default()
        };
        let spec = |name: &str| TopicSpec {
            name: name.into(),
            partitions: 1,
            replication_factor: 1,
            config: BTreeMap::new(),
        };
        let previous = [status("orders"), status("events")];
        assert_eq!(removed_topics(&previous, &[spec("orders")]), vec!["events"]);
        assert!(removed_topics(&previous, &[spec("orders"), spec("events")]).is_empty());
        // A topic the operator never managed is never a candidate.
        assert!(removed_topics(&[], &[spec("orders")]).is_empty());
    }
}
