//! Safe rolling restarts: pods that run an old template are restarted by the operator, one at
//! a time, never taking a partition below its `min.insync.replicas`.
//!
//! The StatefulSets use the `OnDelete` update strategy, so Kubernetes never restarts a Kafka
//! pod by itself (its RollingUpdate only looks at pod readiness, not at Kafka). Each round the
//! operator picks at most one pod to delete; the StatefulSet recreates it with the new
//! template. Order: pods that are not ready first (they serve nothing), then brokers, each only
//! when every partition it holds keeps at least `min.insync.replicas` in-sync replicas without
//! it, then KRaft controllers, the active one last.
//!
//! Which replicas are in sync is never taken from one broker's metadata: every broker's cache
//! may lag behind the controller, and one that lags from before the previous restart still
//! shows the restarted broker in sync while it is catching up. The decision reads a
//! [`RollView`] instead: the metadata of every live broker, asked of each broker itself, merged
//! pessimistically ([`merge_metadata`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::kafka::{
    BrokerId, BrokerMetadata, ClusterSnapshot, ConfigResource, KafkaAdmin, KafkaError,
    PartitionState, TopicPartition, TopicState,
};
use crate::resources::names::Role;

/// What the operator sees of one Kafka pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub role: Role,
    pub ordinal: i32,
    /// Runs the StatefulSet's current template.
    pub current: bool,
    pub ready: bool,
    /// Its Kafka container is running (a pod that is Pending, whose container waits, say in
    /// CrashLoopBackOff, or has exited, runs no Kafka and serves nothing).
    pub running: bool,
    pub terminating: bool,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollDecision {
    /// Every pod runs its current template.
    Done,
    /// A restart is due but not safe or not possible yet; why, as a sentence.
    Wait(String),
    /// Delete this pod; the StatefulSet recreates it with the current template.
    Restart { pod: String, why: String },
}

/// How far behind the active controller a voter may have been last caught up and still count
/// as in sync (Kafka's `controller.quorum.fetch.timeout.ms` default).
const QUORUM_MAX_LAG_MS: i64 = 2_000;

/// Picks the next pod to restart, if any may be restarted now. `absent` names the pods the
/// StatefulSets should have but that do not exist (yet): a pod just deleted is absent until
/// the StatefulSet recreates it, and no other restart starts meanwhile. With `ephemeral`
/// storage (emptyDir) a restart wipes the pod's data, so a broker is only restarted when every
/// partition it holds has another in-sync copy, even when the broker is not ready.
pub async fn next_restart(
    admin: Option<&dyn KafkaAdmin>,
    pods: &[PodView],
    absent: &[String],
    ephemeral: bool,
) -> Result<RollDecision, KafkaError> {
    let mut outdated: Vec<&PodView> = pods.iter().filter(|p| !p.current).collect();
    if outdated.is_empty() {
        return Ok(RollDecision::Done);
    }
    if let Some(p) = absent.first() {
        return Ok(RollDecision::Wait(format!(
            "waiting for pod {p} to be created"
        )));
    }
    // Brokers before controllers, in ordinal order.
    outdated.sort_by_key(|p| (p.role != Role::Broker, p.ordinal));
    if let Some(p) = pods.iter().find(|p| p.terminating) {
        return Ok(RollDecision::Wait(format!(
            "waiting for pod {} to restart",
            p.name
        )));
    }
    if let Some(p) = outdated.iter().find(|p| !p.ready) {
        // Readiness is only a probe: a broker whose process runs may fail it for a moment and
        // still lead partitions, or be needed in an ISR, or be recovering its log. Only a pod
        // that runs no Kafka at all is restarted without asking Kafka.
        if p.role == Role::Broker && p.running {
            return not_ready_broker(admin, pods, p, ephemeral).await;
        }
        if !(ephemeral && p.role == Role::Broker) {
            return Ok(RollDecision::Restart {
                pod: p.name.clone(),
                why: "its Kafka container is not running, so restarting it takes nothing offline"
                    .into(),
            });
        }
        // Not ready, but its volume may hold the only copy of some data.
        let Some(admin) = admin else {
            return Ok(RollDecision::Wait(format!(
                "waiting for Kafka to be reachable, to check that restarting {} (ephemeral storage) deletes no data",
                p.name
            )));
        };
        let view = roll_view(admin, pods).await?;
        if let Some(why) = view.unanswered_besides(p.ordinal) {
            return Ok(RollDecision::Wait(format!("waiting: {why}")));
        }
        return Ok(match why_not_wipe(&view.snapshot, p.ordinal) {
            None => RollDecision::Restart {
                pod: p.name.clone(),
                why: "it is not ready, and every partition it holds has another in-sync copy"
                    .into(),
            },
            Some(why) => RollDecision::Wait(format!("waiting: {why}")),
        });
    }
    if let Some(p) = pods.iter().find(|p| !p.ready) {
        return Ok(RollDecision::Wait(format!(
            "waiting for pod {} to be ready before the next restart",
            p.name
        )));
    }
    let Some(admin) = admin else {
        return Ok(RollDecision::Wait(
            "waiting for Kafka to be reachable, to check that a restart keeps every partition in sync".into(),
        ));
    };

    let brokers: Vec<&PodView> = outdated
        .iter()
        .copied()
        .filter(|p| p.role == Role::Broker)
        .collect();
    // Brokers that may not restart yet do not hold the controllers back: restarting a
    // controller changes nothing for the partitions (and a broker held for good, such as the
    // only copy of a partition on ephemeral storage, must not stall the rest of the roll).
    let mut held = None;
    if !brokers.is_empty() {
        let view = roll_view(admin, pods).await?;
        let snapshot = &view.snapshot;
        let min_isr = min_insync_replicas(admin, snapshot).await?;
        let mut reasons = Vec::new();
        for pod in brokers {
            let why = view
                .unanswered_besides(pod.ordinal)
                .or_else(|| why_not_restart(snapshot, &min_isr, pod.ordinal))
                .or_else(|| {
                    ephemeral
                        .then(|| why_not_wipe(snapshot, pod.ordinal))
                        .flatten()
                });
            match why {
                None => {
                    return Ok(RollDecision::Restart {
                        pod: pod.name.clone(),
                        why: format!(
                            "every partition it holds keeps min.insync.replicas in-sync replicas without it{}",
                            paused_note(snapshot, &min_isr, pod.ordinal)
                        ),
                    });
                }
                Some(why) => reasons.push(why),
            }
        }
        held = Some(format!("waiting: {}", reasons.join("; ")));
    }

    // Controllers: a majority stays up (all are ready, one goes), the active one goes last,
    // and only while every voter is caught up with the metadata log, so the restarted one's
    // records are all held by others (a controller restarted before may still be catching up).
    let controllers: Vec<&PodView> = outdated
        .iter()
        .copied()
        .filter(|p| p.role == Role::Controller)
        .collect();
    if controllers.is_empty() {
        return Ok(held.map_or(RollDecision::Done, RollDecision::Wait));
    }
    let wait = |why: String| {
        RollDecision::Wait(match &held {
            Some(brokers) => format!("{brokers}; {why}"),
            None => why,
        })
    };
    let quorum = admin.quorum().await?;
    let Some(leader) = quorum.leader else {
        return Ok(wait(
            "waiting for the controller quorum to elect a leader".into(),
        ));
    };
    let lagging = quorum.lagging(QUORUM_MAX_LAG_MS);
    if !lagging.is_empty() {
        return Ok(wait(format!(
            "waiting for controller(s) {} to catch up with the metadata log",
            lagging
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let leader = Some(leader);
    let pick = controllers
        .iter()
        .find(|p| {
            Some(crate::resources::config::node_id(
                Role::Controller,
                p.ordinal,
            )) != leader
        })
        .or(controllers.first());
    Ok(match pick {
        Some(p) => RollDecision::Restart {
            pod: p.name.clone(),
            why: if Some(crate::resources::config::node_id(
                Role::Controller,
                p.ordinal,
            )) == leader
            {
                "it is the active controller, restarted last".into()
            } else {
                "the quorum keeps a majority without it".into()
            },
        },
        None => RollDecision::Done,
    })
}

/// An outdated broker whose process runs but that is not ready. Kafka decides: a broker it does
/// not count as live is starting (recovering its log, or catching up with the metadata) and is
/// never restarted, which would only start that work over; a live one is serving despite its
/// probe and is restarted only as safely as any ready broker.
async fn not_ready_broker(
    admin: Option<&dyn KafkaAdmin>,
    pods: &[PodView],
    p: &PodView,
    ephemeral: bool,
) -> Result<RollDecision, KafkaError> {
    let Some(admin) = admin else {
        return Ok(RollDecision::Wait(format!(
            "waiting for Kafka to be reachable, to check whether {} (running, not ready) serves partitions",
            p.name
        )));
    };
    let view = roll_view(admin, pods).await?;
    let snapshot = &view.snapshot;
    if !snapshot.broker_ids().contains(&p.ordinal) {
        return Ok(RollDecision::Wait(format!(
            "waiting: broker {} is starting (recovering its log or catching up with the cluster); it is not restarted before it has started",
            p.ordinal
        )));
    }
    let min_isr = min_insync_replicas(admin, snapshot).await?;
    let why = view
        .unanswered_besides(p.ordinal)
        .or_else(|| why_not_restart(snapshot, &min_isr, p.ordinal))
        .or_else(|| {
            ephemeral
                .then(|| why_not_wipe(snapshot, p.ordinal))
                .flatten()
        });
    Ok(match why {
        None => RollDecision::Restart {
            pod: p.name.clone(),
            why: format!(
                "it is not ready, and every partition it holds keeps min.insync.replicas in-sync replicas without it{}",
                paused_note(snapshot, &min_isr, p.ordinal)
            ),
        },
        Some(why) => RollDecision::Wait(format!("waiting: {why}")),
    })
}

/// The cluster as a restart is decided on. `snapshot` is one snapshot (who is live, sizes,
/// moves) whose topics are replaced by [`merge_metadata`] of every broker's own metadata.
#[derive(Clone, Debug)]
pub struct RollView {
    pub snapshot: ClusterSnapshot,
    /// Live brokers (as the snapshot lists them) that did not answer Metadata, with why.
    pub unanswered: BTreeMap<BrokerId, String>,
}

impl RollView {
    /// Why restarting `broker` waits for live brokers that did not answer, or None. The
    /// broker to restart is excused: its own view cannot vouch for the replicas left without
    /// it, and one that hangs may be just what the restart cures.
    pub fn unanswered_besides(&self, broker: BrokerId) -> Option<String> {
        let silent: Vec<String> = self
            .unanswered
            .iter()
            .filter(|(b, _)| **b != broker)
            .map(|(b, why)| format!("broker {b} ({why})"))
            .collect();
        if silent.is_empty() {
            return None;
        }
        Some(format!(
            "restarting broker {broker} waits for every live broker's own view of the in-sync replicas, and {} did not answer Metadata",
            silent.join(", ")
        ))
    }
}

/// Reads the cluster for a restart decision: one snapshot, then Metadata from every broker it
/// lists as live and every broker pod whose Kafka runs (a lagging list may miss one that is
/// back), each asked directly; a bounded cost of one request per broker per decision.
///
/// Why every broker, and why this merge: Metadata is answered from the answering broker's
/// cache, which in KRaft replays the metadata log and may trail the controller by seconds (in
/// ZooKeeper mode, the controller's UpdateMetadata requests). A cache that lags from before
/// the previous restart still shows the restarted broker in every ISR while it is catching up,
/// and restarting another replica then takes partitions below `min.insync.replicas` (on
/// emptyDir, deleting the only complete copy). No answer says how old it is, but a broker's
/// own cache is never older than its own last start: a KRaft broker is unfenced only once its
/// metadata has caught up with the log up to its own registration, and a ZooKeeper-mode
/// broker's cache starts empty and is filled by the controller after it registered; both
/// follow its removal from the ISRs when it stopped. So a broker's own answer that lists it in
/// a partition's ISR is at least as new as its last restart, and [`merge_metadata`] counts a
/// replica in sync only on that word and only when no other answer says otherwise (the
/// intersection of the ISRs, each replica vouching for itself). The alternative, remembering
/// which broker was restarted last and waiting to see it back, needs state that a killed
/// operator loses, and still trusts one lagging answer about every other replica. No state is
/// kept between rounds:
/// every decision is made afresh from answers read for it, so an operator killed at any
/// instant decides the same way when it comes back.
pub async fn roll_view(admin: &dyn KafkaAdmin, pods: &[PodView]) -> Result<RollView, KafkaError> {
    let read = BrokerAnswers::read(
        admin,
        pods.iter()
            .filter(|p| p.role == Role::Broker && p.running && !p.terminating)
            .map(|p| p.ordinal),
    )
    .await?;
    Ok(RollView {
        snapshot: read.merged(),
        unanswered: read.silent(),
    })
}

/// One snapshot, and Metadata asked of every broker it lists as live and of the brokers named
/// besides, each directly (one request per broker): what the roll's and the drain's checks
/// read instead of one broker's possibly lagging cache.
pub struct BrokerAnswers {
    /// The snapshot as Kafka answered it.
    pub snapshot: ClusterSnapshot,
    /// Each asked broker's own metadata, or why it did not answer.
    pub answers: BTreeMap<BrokerId, Result<BrokerMetadata, KafkaError>>,
}

impl BrokerAnswers {
    pub async fn read(
        admin: &dyn KafkaAdmin,
        also: impl IntoIterator<Item = BrokerId>,
    ) -> Result<BrokerAnswers, KafkaError> {
        let snapshot = admin.snapshot().await?;
        let ask: BTreeSet<BrokerId> = snapshot.broker_ids().into_iter().chain(also).collect();
        let ask: Vec<BrokerId> = ask.into_iter().collect();
        let answers = admin.metadata_by_broker(&ask).await?;
        Ok(BrokerAnswers { snapshot, answers })
    }

    /// Brokers the snapshot lists as live that did not answer Metadata, with why.
    pub fn silent(&self) -> BTreeMap<BrokerId, String> {
        self.snapshot
            .broker_ids()
            .into_iter()
            .filter_map(|b| match self.answers.get(&b) {
                Some(Ok(_)) => None,
                Some(Err(e)) => Some((b, e.to_string())),
                None => Some((b, "no answer".to_string())),
            })
            .collect()
    }

    /// The snapshot with its topics merged with every answer ([`merge_metadata`]).
    pub fn merged(&self) -> ClusterSnapshot {
        merge_metadata(&self.snapshot, &self.answers)
    }
}

/// `snapshot` with its topics replaced by the pessimistic merge of its own and each broker's
/// answer: every partition any of them lists, with every replica any of them lists, in sync
/// only when the replica itself answered and lists itself in the partition's ISR, and no
/// answer that lists the partition leaves it out. A broker that did not answer is in sync
/// nowhere. Leaders and sizes are the snapshot's.
pub fn merge_metadata(
    snapshot: &ClusterSnapshot,
    answers: &BTreeMap<BrokerId, Result<BrokerMetadata, KafkaError>>,
) -> ClusterSnapshot {
    type Index<'a> = BTreeMap<TopicPartition, &'a PartitionState>;
    fn index(topics: &BTreeMap<String, TopicState>) -> Index<'_> {
        topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (TopicPartition::new(t.name.clone(), p.partition), p))
            })
            .collect()
    }
    let base = index(&snapshot.topics);
    let own: BTreeMap<BrokerId, Index<'_>> = answers
        .iter()
        .filter_map(|(b, a)| a.as_ref().ok().map(|v| (*b, index(&v.topics))))
        .collect();
    let views: Vec<&Index<'_>> = std::iter::once(&base).chain(own.values()).collect();
    let internal: BTreeMap<&str, bool> = std::iter::once(&snapshot.topics)
        .chain(
            answers
                .values()
                .filter_map(|a| a.as_ref().ok().map(|v| &v.topics)),
        )
        .flat_map(|topics| topics.values())
        .map(|t| (t.name.as_str(), t.internal))
        .rev()
        .collect();
    // Every partition any view lists, with every replica any lists (the snapshot's order
    // first).
    let mut merged: BTreeMap<TopicPartition, PartitionState> = BTreeMap::new();
    for view in &views {
        for (tp, p) in view.iter() {
            let m = merged.entry(tp.clone()).or_insert_with(|| PartitionState {
                partition: p.partition,
                replicas: Vec::new(),
                isr: Vec::new(),
                leader: p.leader,
                size_bytes: BTreeMap::new(),
            });
            for r in &p.replicas {
                if !m.replicas.contains(r) {
                    m.replicas.push(*r);
                }
            }
        }
    }
    let mut topics: BTreeMap<String, TopicState> = BTreeMap::new();
    for (tp, mut p) in merged {
        let in_sync = |r: &BrokerId| {
            own.get(r)
                .and_then(|v| v.get(&tp))
                .is_some_and(|mine| mine.isr.contains(r))
                && views
                    .iter()
                    .all(|v| v.get(&tp).is_none_or(|seen| seen.isr.contains(r)))
        };
        p.isr = p.replicas.iter().copied().filter(in_sync).collect();
        if let Some(b) = base.get(&tp) {
            p.leader = b.leader;
            p.size_bytes = b.size_bytes.clone();
        }
        topics
            .entry(tp.topic.clone())
            .or_insert_with(|| TopicState {
                name: tp.topic.clone(),
                internal: internal.get(tp.topic.as_str()).copied().unwrap_or(false),
                partitions: Vec::new(),
            })
            .partitions
            .push(p);
    }
    ClusterSnapshot {
        topics,
        ..snapshot.clone()
    }
}

/// The end of a roll, once every pod runs its current template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollEnd {
    /// Replicas restarted last are still catching up; why, as a sentence.
    CatchingUp(String),
    /// Every partition is in sync and leaders are back on their preferred replicas; a summary.
    Done(String),
}

/// Finishes a roll: restarted brokers come back leading nothing, so once every partition is
/// back in sync, leadership moves back to the preferred replicas (instead of waiting for
/// Kafka's own leader rebalancing, minutes later).
pub async fn finish(admin: &dyn KafkaAdmin) -> Result<RollEnd, KafkaError> {
    let snapshot = admin.snapshot().await?;
    let behind = snapshot.under_replicated();
    if let Some(first) = behind.first() {
        return Ok(RollEnd::CatchingUp(format!(
            "waiting for {} partition(s) to catch up after the restarts (e.g. {first})",
            behind.len()
        )));
    }
    let election = admin.elect_preferred_leaders(None).await?;
    let mut summary = format!(
        "every pod runs its current template; {} partition(s) moved their leader back to the preferred replica",
        election.elected.len()
    );
    if let Some((tp, why)) = election.failed.first() {
        summary.push_str(&format!(
            "; {} kept another leader (e.g. {tp}: {why})",
            election.failed.len()
        ));
    }
    Ok(RollEnd::Done(summary))
}

/// Why `broker` may not be restarted now, or None when it may: a partition it holds would be
/// left with fewer in-sync replicas than its `min.insync.replicas`, or another replica of such a
/// partition is still catching up (after the previous restart, say), so the restart would cut
/// the partition's redundancy further. Partitions with a single replica cannot stay available
/// through any restart and do not hold the roll back. Nor can a partition whose
/// `min.insync.replicas` is as high as its replica count take writes with `acks=all` while any
/// of its brokers restarts: it does not hold the roll back either (it would for ever), but it
/// keeps one other in-sync replica through each restart, so it stays readable and loses
/// nothing ([`writes_paused_by_restarts`] names such topics).
pub fn why_not_restart(
    snapshot: &ClusterSnapshot,
    min_isr: &BTreeMap<String, i32>,
    broker: BrokerId,
) -> Option<String> {
    for (tp, p) in snapshot.partitions() {
        if !p.replicas.contains(&broker) || p.replicas.len() < 2 {
            continue;
        }
        let remaining = p.isr.iter().filter(|r| **r != broker).count() as i32;
        let configured = min_isr.get(&tp.topic).copied().unwrap_or(1);
        let needed = if configured >= p.replicas.len() as i32 {
            1
        } else {
            configured
        };
        if remaining < needed {
            return Some(format!(
                "restarting broker {broker} would leave {tp} with {remaining} in-sync replica(s), below its min.insync.replicas {needed}"
            ));
        }
        if let Some(lagging) = p
            .replicas
            .iter()
            .find(|r| **r != broker && !p.isr.contains(r))
        {
            return Some(format!(
                "broker {lagging} is not yet in sync on {tp}, which broker {broker} also holds"
            ));
        }
    }
    None
}

/// Topics whose `min.insync.replicas` is at least their replication factor (above 1): no
/// restart of any of their brokers keeps them writable with `acks=all`, so a roll pauses those
/// writes once per broker. Sorted.
pub fn writes_paused_by_restarts(
    snapshot: &ClusterSnapshot,
    min_isr: &BTreeMap<String, i32>,
) -> Vec<String> {
    snapshot
        .topics
        .values()
        .filter(|t| {
            let rf = t.replication_factor();
            rf >= 2 && min_isr.get(&t.name).copied().unwrap_or(1) >= rf
        })
        .map(|t| t.name.clone())
        .collect()
}

/// `; writes with acks=all to ... pause while it restarts (...)` for the topics of
/// [`writes_paused_by_restarts`] that `broker` holds, or nothing.
fn paused_note(
    snapshot: &ClusterSnapshot,
    min_isr: &BTreeMap<String, i32>,
    broker: BrokerId,
) -> String {
    let held: Vec<String> = writes_paused_by_restarts(snapshot, min_isr)
        .into_iter()
        .filter(|t| {
            snapshot
                .topics
                .get(t)
                .is_some_and(|t| t.partitions.iter().any(|p| p.replicas.contains(&broker)))
        })
        .collect();
    if held.is_empty() {
        return String::new();
    }
    format!(
        "; writes with acks=all to {} pause while it restarts (min.insync.replicas is as high as the replication factor; raise the replication factor to keep them writable through restarts)",
        held.join(", ")
    )
}

/// Why restarting `broker` on ephemeral storage would delete data, or None: a partition it
/// holds has no other in-sync replica to copy from when it comes back empty.
pub fn why_not_wipe(snapshot: &ClusterSnapshot, broker: BrokerId) -> Option<String> {
    snapshot
        .partitions()
        .find(|(_, p)| p.replicas.contains(&broker) && !p.isr.iter().any(|r| *r != broker))
        .map(|(tp, p)| {
            let copies = if p.replicas.len() == 1 {
                "the only replica"
            } else {
                "the only in-sync replica"
            };
            format!(
                "broker {broker} holds {copies} of {tp} on ephemeral storage (storageClass: emptyDir), and a restart would delete it; raise the topic's replication factor to 2 or more (spec.topics) so a copy survives"
            )
        })
}

/// The effective `min.insync.replicas` of every topic.
pub async fn min_insync_replicas(
    admin: &dyn KafkaAdmin,
    snapshot: &ClusterSnapshot,
) -> Result<BTreeMap<String, i32>, KafkaError> {
    let resources: Vec<ConfigResource> = snapshot
        .topics
        .keys()
        .map(|t| ConfigResource::Topic(t.clone()))
        .collect();
    if resources.is_empty() {
        return Ok(BTreeMap::new());
    }
    Ok(admin
        .describe_configs(&resources)
        .await?
        .into_iter()
        .filter_map(|(r, entries)| {
            let ConfigResource::Topic(topic) = r else {
                return None;
            };
            let value = entries
                .get("min.insync.replicas")
                .and_then(|v| v.value.as_deref())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            Some((topic, value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(role: Role, ordinal: i32, current: bool, ready: bool) -> PodView {
        PodView {
            name: format!("{}-{ordinal}", role.as_str()),
            role,
            ordinal,
            current,
            ready,
            running: ready,
            terminating: false,
        }
    }

    /// A broker's answer with these topics (and no live brokers: the roll does not read them).
    fn topics_only(topics: BTreeMap<String, TopicState>) -> BrokerMetadata {
        BrokerMetadata {
            brokers: BTreeSet::new(),
            topics,
        }
    }

    /// Kafka as one snapshot and one min.insync.replicas for every topic: what the roll reads.
    /// Every live broker answers Metadata with the snapshot's topics, but where `answers` says
    /// otherwise (None: it does not answer).
    struct Fixed {
        snapshot: ClusterSnapshot,
        min_isr: i32,
        answers: BTreeMap<BrokerId, Option<BrokerMetadata>>,
    }

    impl Fixed {
        fn new(snapshot: ClusterSnapshot, min_isr: i32) -> Fixed {
            Fixed {
                snapshot,
                min_isr,
                answers: BTreeMap::new(),
            }
        }
    }

    #[async_trait::async_trait]
    impl KafkaAdmin for Fixed {
        async fn snapshot(&self) -> crate::kafka::Result<ClusterSnapshot> {
            Ok(self.snapshot.clone())
        }
        async fn metadata_by_broker(
            &self,
            brokers: &[BrokerId],
        ) -> crate::kafka::Result<BTreeMap<BrokerId, crate::kafka::Result<BrokerMetadata>>>
        {
            Ok(brokers
                .iter()
                .map(|b| {
                    let answer = match self.answers.get(b) {
                        Some(Some(view)) => Ok(view.clone()),
                        Some(None) => Err(KafkaError::timeout(
                            format!("Metadata from broker {b}"),
                            std::time::Duration::from_secs(15),
                        )),
                        None if self.snapshot.broker_ids().contains(b) => Ok(BrokerMetadata {
                            brokers: self.snapshot.broker_ids(),
                            topics: self.snapshot.topics.clone(),
                        }),
                        None => Err(unused()),
                    };
                    (*b, answer)
                })
                .collect())
        }
        async fn describe_configs(
            &self,
            resources: &[ConfigResource],
        ) -> crate::kafka::Result<
            BTreeMap<ConfigResource, BTreeMap<String, crate::kafka::ConfigValue>>,
        > {
            Ok(resources
                .iter()
                .map(|r| {
                    let value = crate::kafka::ConfigValue {
                        value: Some(self.min_isr.to_string()),
                        is_default: false,
                        overridden: true,
                        read_only: false,
                    };
                    (
                        r.clone(),
                        BTreeMap::from([("min.insync.replicas".to_string(), value)]),
                    )
                })
                .collect())
        }
        async fn create_topics(&self, _: &[crate::kafka::NewTopic]) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn delete_topics(&self, _: &[String]) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn create_partitions(&self, _: &str, _: i32) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn alter_configs(
            &self,
            _: &ConfigResource,
            _: &BTreeMap<String, crate::kafka::ConfigOp>,
        ) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn alter_reassignments(
            &self,
            _: &BTreeMap<crate::kafka::TopicPartition, Vec<BrokerId>>,
        ) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn list_reassignments(
            &self,
        ) -> crate::kafka::Result<
            BTreeMap<crate::kafka::TopicPartition, crate::kafka::OngoingReassignment>,
        > {
            Ok(BTreeMap::new())
        }
        async fn cancel_reassignments(
            &self,
            _: &[crate::kafka::TopicPartition],
        ) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn set_throttle(&self, _: &crate::kafka::Throttle) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn clear_throttle(&self, _: &[BrokerId], _: &[String]) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn elect_preferred_leaders(
            &self,
            _: Option<&[crate::kafka::TopicPartition]>,
        ) -> crate::kafka::Result<crate::kafka::ElectionOutcome> {
            Err(unused())
        }
        async fn unregister_broker(&self, _: BrokerId) -> crate::kafka::Result<()> {
            Err(unused())
        }
        async fn quorum(&self) -> crate::kafka::Result<crate::kafka::QuorumState> {
            Err(unused())
        }
    }

    fn unused() -> KafkaError {
        KafkaError::Unsupported("not part of what a roll reads".into())
    }

    fn live(mut s: ClusterSnapshot, brokers: &[BrokerId]) -> ClusterSnapshot {
        s.brokers = brokers
            .iter()
            .map(|id| crate::kafka::Broker {
                id: *id,
                host: "localhost".into(),
                port: 9092,
                rack: None,
            })
            .collect();
        s
    }

    #[tokio::test]
    async fn a_not_ready_broker_whose_kafka_runs_is_restarted_only_when_safe() {
        // Broker 1 fails its probe but Kafka counts it live, and it is the only in-sync
        // replica of t-0: restarting it would take t-0 offline.
        let mut flapping = pod(Role::Broker, 1, false, false);
        flapping.running = true;
        let pods = [pod(Role::Broker, 0, false, true), flapping];
        let kafka = Fixed::new(live(snapshot(&[(&[0, 1], &[1])]), &[0, 1]), 1);
        match next_restart(Some(&kafka), &pods, &[], false).await.unwrap() {
            RollDecision::Wait(why) => assert!(why.contains("t-0"), "{why}"),
            other => panic!("{other:?}"),
        }
        // With t-0 in sync on both, it may go.
        let kafka = Fixed::new(live(snapshot(&[(&[0, 1], &[0, 1])]), &[0, 1]), 1);
        match next_restart(Some(&kafka), &pods, &[], false).await.unwrap() {
            RollDecision::Restart { pod, .. } => assert_eq!(pod, "broker-1"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_broker_that_is_starting_is_never_restarted() {
        // Broker 1's process runs, but Kafka does not count it live yet: it is recovering its
        // log or catching up. A restart would only start that over.
        let mut starting = pod(Role::Broker, 1, false, false);
        starting.running = true;
        let pods = [pod(Role::Broker, 0, false, true), starting];
        let kafka = Fixed::new(live(snapshot(&[(&[0, 1], &[0])]), &[0]), 1);
        match next_restart(Some(&kafka), &pods, &[], false).await.unwrap() {
            RollDecision::Wait(why) => {
                assert!(
                    why.contains("broker 1 is starting") && why.contains("log"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A pod whose Kafka container does not run at all serves nothing: it goes first.
        let pods = [
            pod(Role::Broker, 0, false, true),
            pod(Role::Broker, 1, false, false),
        ];
        match next_restart(Some(&kafka), &pods, &[], false).await.unwrap() {
            RollDecision::Restart { pod, why } => {
                assert_eq!(pod, "broker-1");
                assert!(why.contains("not running"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn min_isr_as_high_as_the_replicas_does_not_hold_the_roll_forever() {
        // RF 2 with min.insync.replicas 2: no restart keeps acks=all writes going, so the
        // partition does not hold the roll back, as long as the other replica is in sync.
        let min_isr = BTreeMap::from([("t".to_string(), 2)]);
        let s = snapshot(&[(&[0, 1], &[0, 1])]);
        assert!(why_not_restart(&s, &min_isr, 0).is_none());
        assert_eq!(writes_paused_by_restarts(&s, &min_isr), vec!["t"]);
        assert!(paused_note(&s, &min_isr, 0).contains("acks=all to t pause"));
        // Its only in-sync replica still never goes.
        let s = snapshot(&[(&[0, 1], &[0])]);
        assert!(why_not_restart(&s, &min_isr, 0).is_some());
    }

    fn snapshot(partitions: &[(&[i32], &[i32])]) -> ClusterSnapshot {
        let mut s = ClusterSnapshot::default();
        s.topics.insert(
            "t".into(),
            TopicState {
                name: "t".into(),
                internal: false,
                partitions: partitions
                    .iter()
                    .enumerate()
                    .map(|(i, (replicas, isr))| PartitionState {
                        partition: i as i32,
                        replicas: replicas.to_vec(),
                        isr: isr.to_vec(),
                        leader: isr.first().copied(),
                        size_bytes: BTreeMap::new(),
                    })
                    .collect(),
            },
        );
        s
    }

    #[tokio::test]
    async fn nothing_to_do_when_all_pods_are_current() {
        let pods = [
            pod(Role::Broker, 0, true, true),
            pod(Role::Controller, 0, true, false),
        ];
        assert_eq!(
            next_restart(None, &pods, &[], false).await.unwrap(),
            RollDecision::Done
        );
    }

    #[tokio::test]
    async fn not_ready_outdated_pods_go_first_without_asking_kafka() {
        let pods = [
            pod(Role::Broker, 0, false, true),
            pod(Role::Broker, 1, false, false),
        ];
        match next_restart(None, &pods, &[], false).await.unwrap() {
            RollDecision::Restart { pod, .. } => assert_eq!(pod, "broker-1"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn one_at_a_time() {
        let mut restarting = pod(Role::Broker, 1, true, false);
        restarting.terminating = true;
        let pods = [pod(Role::Broker, 0, false, true), restarting];
        assert!(matches!(
            next_restart(None, &pods, &[], false).await.unwrap(),
            RollDecision::Wait(_)
        ));
        // So does a pod deleted and not yet recreated.
        let pods = [
            pod(Role::Broker, 0, false, true),
            pod(Role::Broker, 2, false, true),
        ];
        match next_restart(None, &pods, &["broker-1".to_string()], false)
            .await
            .unwrap()
        {
            RollDecision::Wait(why) => assert!(why.contains("broker-1"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A current pod that is not ready also holds the roll back.
        let pods = [
            pod(Role::Broker, 0, false, true),
            pod(Role::Broker, 1, true, false),
        ];
        match next_restart(None, &pods, &[], false).await.unwrap() {
            RollDecision::Wait(why) => assert!(why.contains("broker-1"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn min_isr_guards_each_broker() {
        let min_isr = BTreeMap::from([("t".to_string(), 2)]);
        // Partition 0 is fully in sync on 0,1,2; partition 1 has lost broker 2.
        let s = snapshot(&[(&[0, 1, 2], &[0, 1, 2]), (&[0, 1, 2], &[0, 1])]);
        // Broker 2 is the one catching up: restarting it costs nothing in sync.
        assert!(why_not_restart(&s, &min_isr, 2).is_none());
        let why = why_not_restart(&s, &min_isr, 0).unwrap();
        assert!(
            why.contains("t-1") && why.contains("min.insync.replicas 2"),
            "{why}"
        );
        // A single-replica partition cannot be kept up by any order: it does not block.
        let s = snapshot(&[(&[1], &[1])]);
        assert!(why_not_restart(&s, &min_isr, 1).is_none());
    }

    #[test]
    fn ephemeral_storage_keeps_the_last_in_sync_copy() {
        // t-0 lives only on broker 1; t-1 has broker 2 as its only in-sync replica.
        let s = snapshot(&[(&[1], &[1]), (&[2, 3], &[2]), (&[3, 4], &[3, 4])]);
        let why = why_not_wipe(&s, 1).unwrap();
        assert!(
            why.contains("only replica of t-0") && why.contains("replication factor"),
            "{why}"
        );
        let why = why_not_wipe(&s, 2).unwrap();
        assert!(why.contains("only in-sync replica of t-1"), "{why}");
        // Broker 3 is out of sync on t-1 anyway and t-2 has broker 4 in sync.
        assert!(why_not_wipe(&s, 3).is_none());
        assert!(why_not_wipe(&s, 4).is_none());
    }

    #[test]
    fn a_restart_waits_for_the_previous_broker_to_catch_up() {
        // min.insync.replicas 1 would allow restarting broker 1 while broker 0 (just restarted)
        // is still out of sync on t-0: wait instead, so t-0 never runs on one replica.
        let min_isr = BTreeMap::from([("t".to_string(), 1)]);
        let s = snapshot(&[(&[0, 1, 2], &[1, 2]), (&[2, 3, 4], &[2, 3, 4])]);
        let why = why_not_restart(&s, &min_isr, 1).unwrap();
        assert!(why.contains("broker 0") && why.contains("t-0"), "{why}");
        // Brokers that share no lagging partition may go.
        assert!(why_not_restart(&s, &min_isr, 3).is_none());
    }

    fn ready_pods(brokers: &[i32]) -> Vec<PodView> {
        brokers
            .iter()
            .map(|b| pod(Role::Broker, *b, *b == 0, true))
            .collect()
    }

    #[tokio::test]
    async fn a_lagging_answer_does_not_count_the_restarted_broker_in_sync() {
        // Broker 0 was restarted and is catching up on t-0 and t-1. The snapshot and brokers 1
        // and 2 lag from before its restart and still list it in sync; its own cache, newer
        // than its restart, does not.
        let lagging = live(
            snapshot(&[(&[0, 1, 2], &[0, 1, 2]), (&[0, 1, 2], &[0, 1, 2])]),
            &[0, 1, 2],
        );
        let mut kafka = Fixed::new(lagging, 1);
        let own = snapshot(&[(&[0, 1, 2], &[1, 2]), (&[0, 1, 2], &[1, 2])]).topics;
        kafka.answers.insert(0, Some(topics_only(own)));
        match next_restart(Some(&kafka), &ready_pods(&[0, 1, 2]), &[], false)
            .await
            .unwrap()
        {
            RollDecision::Wait(why) => {
                assert!(why.contains("broker 0 is not yet in sync on t-0"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Once its own view lists it back in sync, the next broker may go.
        kafka.answers.clear();
        match next_restart(Some(&kafka), &ready_pods(&[0, 1, 2]), &[], false)
            .await
            .unwrap()
        {
            RollDecision::Restart { pod, .. } => assert_eq!(pod, "broker-1"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_live_broker_that_does_not_answer_holds_every_restart_but_its_own() {
        // t-0 on 0 and 1, t-1 on 2 and 3, all in sync; broker 3 does not answer Metadata.
        let s = live(
            snapshot(&[(&[0, 1], &[0, 1]), (&[2, 3], &[2, 3])]),
            &[0, 1, 2, 3],
        );
        let mut kafka = Fixed::new(s, 1);
        kafka.answers.insert(3, None);
        let pods: Vec<PodView> = (0..4).map(|b| pod(Role::Broker, b, false, true)).collect();
        // Broker 0 shares nothing with broker 3, and still waits for its word; so do 1 and 2.
        // Broker 3 is not held by its own silence: t-1 keeps broker 2 in sync without it.
        match next_restart(Some(&kafka), &pods, &[], false).await.unwrap() {
            RollDecision::Restart { pod, .. } => assert_eq!(pod, "broker-3"),
            other => panic!("{other:?}"),
        }
        // Two silent brokers: none may go.
        kafka.answers.insert(0, None);
        match next_restart(Some(&kafka), &pods, &[], false).await.unwrap() {
            RollDecision::Wait(why) => {
                assert!(
                    why.contains("broker 3") && why.contains("did not answer"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_merge_trusts_each_replica_only_on_its_own_word() {
        let base = live(snapshot(&[(&[0, 1, 2], &[0, 1, 2])]), &[0, 1, 2]);
        let mut answers: BTreeMap<BrokerId, crate::kafka::Result<BrokerMetadata>> = BTreeMap::new();
        // Broker 0's cache is empty (a broker that has just started in ZooKeeper mode), broker 1
        // agrees with the snapshot, broker 2 does not answer.
        answers.insert(0, Ok(BrokerMetadata::default()));
        answers.insert(1, Ok(topics_only(base.topics.clone())));
        answers.insert(2, Err(unused()));
        let merged = merge_metadata(&base, &answers);
        let p = merged.partition(&TopicPartition::new("t", 0)).unwrap();
        assert_eq!(p.replicas, vec![0, 1, 2]);
        assert_eq!(p.isr, vec![1], "only broker 1 vouched for itself");
        assert_eq!(merged.brokers, base.brokers);
        // A partition only one answer knows (a topic created a moment ago, or deleted) is
        // kept, with every replica any answer lists.
        let mut newer = snapshot(&[(&[0, 1, 2], &[0, 1, 2])]).topics;
        newer.get_mut("t").unwrap().partitions.push(PartitionState {
            partition: 1,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: Some(1),
            size_bytes: BTreeMap::new(),
        });
        answers.insert(1, Ok(topics_only(newer.clone())));
        answers.insert(2, Ok(topics_only(newer)));
        let merged = merge_metadata(&base, &answers);
        let p = merged.partition(&TopicPartition::new("t", 1)).unwrap();
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![1, 2], vec![1, 2])
        );
        let p = merged.partition(&TopicPartition::new("t", 0)).unwrap();
        assert_eq!(p.isr, vec![1, 2]);
    }
}
