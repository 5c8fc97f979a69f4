//! One reconcile of one KafkaCluster: validate -> build -> apply -> status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use crate::api::{
    self, Cluster, KafkaCluster, KafkaClusterStatus, Phase, RetentionPolicy, TopicPhase,
    TopicStatus,
};
use crate::kafka::{ClusterSnapshot, KafkaAdmin, KafkaError, SharedSnapshot};
use crate::operations::broker_config;
use crate::operations::roll::{self, PodView, RollDecision, RollEnd};
use crate::operations::scale::{self, ScaleInput, ScaleOutcome};
use crate::operations::topics::{delete_removed_topics, reconcile_topics, removed_topics};
use crate::resources::config;
use crate::resources::names::{self, FIELD_MANAGER, LABEL_COMPONENT, Role};
use crate::resources::pods;
use crate::resources::services::BROKER_SERVICE_COMPONENT;
use crate::resources::statefulset::CONFIG_HASH_ANNOTATION;
use crate::resources::{self, BuildInputs};

use super::Context;
use super::apply::apply;
use super::error::{Error, Result};
use super::racks;
use super::status::{self, Observed};
use super::stuck;

/// How often a settled cluster is looked at again, to notice what no watch event reports.
const RESYNC: Duration = Duration::from_secs(300);
/// How often a cluster that is changing is looked at.
const PROGRESS: Duration = Duration::from_secs(10);
/// How often a running operation (partitions moving) is advanced.
const OPERATION_POLL: Duration = Duration::from_secs(2);
/// The longest wait between two looks at a cluster whose Kafka keeps failing.
const KAFKA_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The wait after `failures` reconciles in a row that could not reach or change Kafka.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_mul(1 << failures.min(6))).min(KAFKA_BACKOFF_MAX)
}

/// Brings the cluster's objects in line with its spec and reports what it saw. One reconcile is
/// a pipeline of steps, each a function below, in the order they run:
/// 1. the object read afresh; a paused cluster held ([`hold_paused`]); the spec
///    [`validated`];
/// 2. [`observe`]: the broker StatefulSet, the pods, and a Kafka admin once a broker is ready;
/// 3. one concern at a time, each deciding from what was seen and acting at once:
///    [`assign_racks`], [`settle_cluster_id`], [`advance_scaling`], [`settle_broker_config`],
///    [`apply_objects`], [`advance_roll`],
///    [`manage_topics`], [`record_membership`];
/// 4. [`report`]: status, conditions and events, and when to look again.
///
/// `cached` is the object as the controller's watch cache has it, which may trail the API
/// server: a status read from it could take an operation back a step (a stale `Moving` after
/// the StatefulSet shrank would grow it again). So the object is read afresh, and every status
/// write is conditional on the resourceVersion it was computed from ([`Version`]): a write
/// after someone else's (another replica's, or the user's) fails, and the reconcile starts
/// over from what is there now.
pub async fn apply_cluster(cached: Arc<KafkaCluster>, ctx: &Context) -> Result<Action> {
    let namespace = cached.namespace().ok_or(Error::MissingNamespace)?;
    let name = cached.name_any();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(kc) = clusters.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let kc = Arc::new(kc);
    let mut round = Round::start(&kc);
    if paused(&kc) {
        return hold_paused(&kc, ctx, &mut round.version).await;
    }
    if round.status.phase == Some(Phase::Paused) {
        ctx.event(
            &kc,
            EventType::Normal,
            "ReconciliationResumed",
            "Pause",
            format!(
                "the annotation {} is gone: reconciling again",
                names::PAUSE_ANNOTATION
            ),
        )
        .await;
    }
    let Some(cluster) = validated(&kc, ctx, &mut round).await? else {
        return Ok(Action::await_change());
    };
    let seen = observe(ctx, kc, cluster).await?;
    assign_racks(ctx, &seen, &mut round).await?;
    settle_cluster_id(ctx, &seen, &mut round).await?;
    let outcome = advance_scaling(ctx, &seen, &mut round).await?;
    settle_broker_config(ctx, &seen, &mut round, outcome.broker_replicas).await?;
    let applied = apply_objects(ctx, &seen, &round, outcome.broker_replicas).await?;
    let rollout = advance_roll(ctx, &seen, &mut round, &outcome, &applied).await?;
    manage_topics(ctx, &seen, &mut round, &outcome).await;
    record_membership(&seen, &mut round).await;
    report(ctx, &seen, round, &outcome, &applied, rollout).await
}

/// What a reconcile carries from step to step.
struct Round {
    /// The status it writes, built up step by step from the one it read.
    status: KafkaClusterStatus,
    /// What its status writes are conditional on.
    version: Version,
    /// The first Kafka problem met: the status reports it, and the next look backs off.
    kafka_problem: Option<String>,
    /// When it started: the clock of operations, rolls and stuck checks.
    now: Timestamp,
}

impl Round {
    fn start(kc: &KafkaCluster) -> Round {
        Round {
            status: kc.status.clone().unwrap_or_default(),
            version: Version(kc.resource_version()),
            kafka_problem: None,
            now: Timestamp::now(),
        }
    }

    /// Writes the status built so far, before what follows acts on it.
    async fn record(&mut self, ctx: &Context, seen: &Seen) -> Result<()> {
        patch_status(
            ctx,
            seen.namespace(),
            seen.name(),
            &self.status,
            &mut self.version,
        )
        .await
    }

    fn kafka_trouble(&mut self, problem: String) {
        self.kafka_problem.get_or_insert(problem);
    }
}

/// What a reconcile saw before it changed anything.
struct Seen {
    kc: Arc<KafkaCluster>,
    cluster: Cluster,
    /// The status as it was read.
    previous: KafkaClusterStatus,
    /// The broker StatefulSet as it was before this reconcile applied its own.
    brokers: Option<StatefulSet>,
    /// The cluster's broker and controller pods.
    pods: Vec<Pod>,
    /// Kafka, once some broker is ready (before that nothing answers).
    admin: Option<SharedSnapshot>,
}

impl Seen {
    fn namespace(&self) -> &str {
        &self.cluster.namespace
    }

    fn name(&self) -> &str {
        &self.cluster.name
    }

    /// Kafka for the steps that only look: they share one snapshot.
    fn look(&self) -> Option<&dyn KafkaAdmin> {
        self.admin.as_ref().map(|a| a as &dyn KafkaAdmin)
    }

    /// Kafka for the steps that act on what is in flight: every read is fresh.
    fn fresh(&self) -> Option<&dyn KafkaAdmin> {
        self.admin.as_ref().map(SharedSnapshot::fresh)
    }
}

/// A StatefulSet's replicas as Kubernetes has them.
fn replicas(sts: Option<&StatefulSet>) -> Option<i32> {
    sts.and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas)
}

/// The ready pods of a StatefulSet.
fn ready_replicas(sts: Option<&StatefulSet>) -> i32 {
    sts.and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// The spec checked and resolved; None when it is invalid, which the status and an event say.
async fn validated(kc: &KafkaCluster, ctx: &Context, round: &mut Round) -> Result<Option<Cluster>> {
    let new_generation = round.status.observed_generation != kc.metadata.generation;
    match api::validate(kc) {
        Ok(cluster) => {
            if new_generation {
                for warning in &cluster.warnings {
                    ctx.event(
                        kc,
                        EventType::Warning,
                        warning.reason,
                        "Validate",
                        warning.message.clone(),
                    )
                    .await;
                }
            }
            Ok(Some(cluster))
        }
        Err(err) => {
            let observed = Observed {
                invalid_spec: Some(err.to_string()),
                ..Default::default()
            };
            if new_generation || round.status.phase != Some(Phase::Blocked) {
                ctx.event(
                    kc,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    err.to_string(),
                )
                .await;
            }
            finish_status(kc, ctx, round.status.clone(), &observed, &mut round.version).await?;
            Ok(None)
        }
    }
}

/// Reads what the decisions rest on: nothing is changed.
async fn observe(ctx: &Context, kc: Arc<KafkaCluster>, cluster: Cluster) -> Result<Seen> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let brokers = statefulsets
        .get_opt(&names::broker_statefulset(&cluster.name))
        .await?;
    let admin = if ready_replicas(brokers.as_ref()) > 0 {
        match ctx.kafka.admin(&cluster) {
            Ok(admin) => Some(SharedSnapshot::new(admin)),
            Err(e) => {
                warn!(namespace = %cluster.namespace, name = %cluster.name, "no Kafka admin client: {e}");
                None
            }
        }
    } else {
        None
    };
    let pods = kafka_pods(ctx, &cluster).await?;
    Ok(Seen {
        previous: kc.status.clone().unwrap_or_default(),
        kc,
        cluster,
        brokers,
        pods,
        admin,
    })
}

/// Rack-aware clusters: broker pods that are on a node get its rack written on them (their
/// broker waits for it, see [`racks`]). A node without the rack label holds its broker, which
/// the status and a Warning event say with the command that fixes it.
async fn assign_racks(ctx: &Context, seen: &Seen, round: &mut Round) -> Result<()> {
    let Some(key) = &seen.cluster.rack_topology_key else {
        return Ok(());
    };
    for problem in racks::assign(&ctx.client, seen.namespace(), key, &seen.pods).await? {
        ctx.event(
            &seen.kc,
            EventType::Warning,
            "RackUnknown",
            "AssignRack",
            problem.clone(),
        )
        .await;
        round.kafka_trouble(problem);
    }
    Ok(())
}

/// The KRaft cluster id is stored before any pod can format a volume with it: chosen once, or
/// the spec's, to adopt volumes kept from an earlier cluster.
async fn settle_cluster_id(ctx: &Context, seen: &Seen, round: &mut Round) -> Result<()> {
    if !seen.cluster.is_kraft() {
        return Ok(());
    }
    match cluster_id_decision(&seen.cluster, &round.status, seen.look()).await {
        ClusterId::Keep => {}
        ClusterId::Set { id, adopted } => {
            round.status.cluster_id = Some(id.clone());
            round.record(ctx, seen).await?;
            if adopted {
                let message = format!(
                    "cluster id {id} from spec.clusterId: volumes formatted with it are used, new ones get it"
                );
                info!(namespace = %seen.namespace(), name = %seen.name(), "{message}");
                ctx.event(
                    &seen.kc,
                    EventType::Normal,
                    "ClusterIdAdopted",
                    "Validate",
                    message,
                )
                .await;
            }
        }
        ClusterId::Refuse(why) => {
            if seen.previous.observed_generation != seen.kc.metadata.generation {
                ctx.event(
                    &seen.kc,
                    EventType::Warning,
                    "ClusterIdRefused",
                    "Validate",
                    why.clone(),
                )
                .await;
            }
            round.kafka_trouble(why);
        }
    }
    Ok(())
}

/// What the scaling state machines are told.
fn scale_input(
    cluster: &Cluster,
    previous: &KafkaClusterStatus,
    brokers: Option<&StatefulSet>,
    pods: &[Pod],
    lost_brokers: BTreeSet<i32>,
    now: Timestamp,
) -> ScaleInput {
    ScaleInput {
        desired: cluster.broker_count,
        // Brokers that may hold data: what the status says the operator runs, or what the
        // StatefulSet runs, whichever is more; a hand edit of the StatefulSet never shrinks it.
        running: replicas(brokers).map(|r| r.max(previous.brokers)),
        statefulset_replicas: replicas(brokers),
        ready_brokers: ready_replicas(brokers),
        broker_pods: pods
            .iter()
            .filter(|p| pods::role(p) == Some(Role::Broker))
            .filter_map(pods::ordinal)
            .collect(),
        operation: previous.operation.clone(),
        rebalance: cluster.rebalance.clone(),
        kraft: cluster.is_kraft(),
        delete_drained_volumes: cluster.pvc_retention.when_scaled == RetentionPolicy::Delete,
        now: now.to_string(),
        topics: cluster.topics.clone(),
        lost_brokers,
    }
}

/// The broker ids of the lost-brokers annotation (none without it), or what is wrong with it.
fn lost_brokers(kc: &KafkaCluster) -> std::result::Result<BTreeSet<i32>, String> {
    let Some(value) = kc.annotations().get(names::LOST_BROKERS_ANNOTATION) else {
        return Ok(BTreeSet::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse::<i32>().ok().filter(|id| *id >= 0).ok_or_else(|| {
                format!(
                    "the annotation {}={value:?} is not a list of broker ids such as \"3\" or \"3,4\"; no broker is taken as lost until it is",
                    names::LOST_BROKERS_ANNOTATION
                )
            })
        })
        .collect()
}

/// Kafka trouble changes nothing: the brokers stay as they are, the operation waits.
fn scaling_waits_for_kafka(input: &ScaleInput, problem: &KafkaError) -> ScaleOutcome {
    let lowered = input.desired < input.running.unwrap_or(0) && input.operation.is_none();
    ScaleOutcome {
        // The StatefulSet stays as it is (not `running`, which may be more).
        broker_replicas: input.statefulset_replicas.unwrap_or(input.desired),
        operation: input.operation.clone(),
        blocked: lowered.then(|| {
            format!(
                "brokerCount lowered to {}: waiting for Kafka to check and start the drain: {problem}",
                input.desired
            )
        }),
        busy: true,
        ..Default::default()
    }
}

/// Scaling: what the broker StatefulSet may run now, and the operation in progress, recorded
/// before anything acts on it.
async fn advance_scaling(ctx: &Context, seen: &Seen, round: &mut Round) -> Result<ScaleOutcome> {
    let lost = match lost_brokers(&seen.kc) {
        Ok(lost) => lost,
        Err(message) => {
            ctx.event(
                &seen.kc,
                EventType::Warning,
                "InvalidAnnotation",
                "Scale",
                message,
            )
            .await;
            BTreeSet::new()
        }
    };
    let input = scale_input(
        &seen.cluster,
        &seen.previous,
        seen.brokers.as_ref(),
        &seen.pods,
        lost,
        round.now,
    );
    // Starting an operation may rest on the reconcile's first look; one in progress reads afresh.
    let admin = if input.operation.is_none() {
        seen.look()
    } else {
        seen.fresh()
    };
    let mut outcome = match scale::advance(admin, &input).await {
        Ok(outcome) => outcome,
        Err(e) => {
            warn!(namespace = %seen.namespace(), name = %seen.name(), "scaling waits for Kafka: {e}");
            round.kafka_trouble(e.to_string());
            scaling_waits_for_kafka(&input, &e)
        }
    };
    let previous = seen.previous.operation.as_ref();
    if let Some(op) = outcome.operation.as_mut() {
        stuck::track(previous, op, round.now);
    }
    for n in &outcome.notices {
        let kind = if n.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(&seen.kc, kind, n.reason, "Scale", n.message.clone())
            .await;
    }
    if let Some(op) = &outcome.operation
        && previous != Some(op)
    {
        info!(namespace = %seen.namespace(), name = %seen.name(), "{}", status::operation_summary(op));
    }
    // Drained volumes go before the operation's end is recorded: an interrupted delete is
    // retried, and a volume left behind would hand stale data to a later broker of that ordinal.
    delete_volumes(ctx, &seen.cluster, &outcome.delete_volumes_of).await?;
    // The operation is recorded before the StatefulSet acts on it, so a restart resumes it.
    // A change of the broker count is confirmed against the state it was computed from even
    // when the operation did not change: the write fails if that state is not current.
    let resizing = input
        .statefulset_replicas
        .is_some_and(|r| r != outcome.broker_replicas);
    if outcome.operation.as_ref() != previous || resizing {
        round.status.operation = outcome.operation.clone();
        round.status.brokers = round.status.brokers.max(outcome.broker_replicas);
        round.record(ctx, seen).await?;
    }
    round.status.operation = outcome.operation.clone();
    Ok(outcome)
}

/// Broker settings Kafka changes at run time are applied live; the others restart the pods,
/// through the template's configuration hash ([`broker_config`]). What was decided is recorded
/// before the template is written, so a later round never takes it back.
async fn settle_broker_config(
    ctx: &Context,
    seen: &Seen,
    round: &mut Round,
    broker_replicas: i32,
) -> Result<()> {
    let running = Cluster {
        broker_count: broker_replicas,
        ..seen.cluster.clone()
    };
    let desired = config::settings(&running);
    let settled = match broker_config::settle(
        seen.fresh(),
        ready_replicas(seen.brokers.as_ref()) > 0,
        &desired,
        round.status.broker_config.as_ref(),
    )
    .await
    {
        Ok(settled) => settled,
        Err(e) => {
            round.kafka_trouble(format!("cannot apply the changed broker settings: {e}"));
            return Ok(());
        }
    };
    if let Some(waiting) = &settled.waiting {
        round.kafka_trouble(format!("broker settings wait for {waiting}"));
    }
    if !settled.live.is_empty() {
        ctx.event(
            &seen.kc,
            EventType::Normal,
            "ConfigAppliedLive",
            "Configure",
            format!(
                "applied without a restart, as cluster-wide broker defaults every running broker reports: {}",
                settled.live.join(", ")
            ),
        )
        .await;
    }
    if !settled.restart.is_empty() {
        ctx.event(
            &seen.kc,
            EventType::Normal,
            "ConfigNeedsRestart",
            "Configure",
            format!(
                "the brokers restart one at a time to take: {}",
                settled.restart.join(", ")
            ),
        )
        .await;
    }
    if round.status.broker_config.as_ref() != Some(&settled.config) {
        round.status.broker_config = Some(settled.config);
        round.record(ctx, seen).await?;
    }
    Ok(())
}

/// Builds and applies the cluster's objects for `broker_replicas` brokers; the StatefulSets as
/// the API server returned them.
async fn apply_objects(
    ctx: &Context,
    seen: &Seen,
    round: &Round,
    broker_replicas: i32,
) -> Result<Vec<StatefulSet>> {
    let objects = resources::build(
        &seen.cluster,
        &BuildInputs {
            broker_replicas,
            cluster_id: round.status.cluster_id.clone(),
            startup: round
                .status
                .broker_config
                .as_ref()
                .map(|c| c.startup.clone()),
        },
    );
    apply(&ctx.client, &objects.config_map).await?;
    for service in &objects.services {
        apply(&ctx.client, service).await?;
    }
    for budget in &objects.disruption_budgets {
        apply(&ctx.client, budget).await?;
    }
    let mut applied = Vec::new();
    for sts in &objects.statefulsets {
        applied.push(apply(&ctx.client, sts).await?);
    }
    remove_services_of_removed_brokers(ctx, &seen.cluster, broker_replicas).await?;
    Ok(applied)
}

/// Where the roll of a new template stands.
struct Rollout {
    /// Every pod runs its current template and, after a roll, the cluster has caught up.
    done: bool,
    /// What it waits for, or the restart it just made.
    message: Option<String>,
}

/// Restarts for a new template, one pod at a time; not while partitions are moving.
async fn advance_roll(
    ctx: &Context,
    seen: &Seen,
    round: &mut Round,
    outcome: &ScaleOutcome,
    applied: &[StatefulSet],
) -> Result<Rollout> {
    let views = pod_views(&seen.pods, applied);
    let ephemeral = seen.cluster.storage == api::Storage::Ephemeral;
    let absent = absent_pods(&seen.pods, applied);
    let mut message = if outcome.operation.is_some() {
        None
    } else {
        match roll::next_restart(seen.fresh(), &views, &absent, ephemeral).await {
            Ok(RollDecision::Done) => None,
            Ok(RollDecision::Wait(why)) => Some(why),
            Ok(RollDecision::Restart { pod, why }) => {
                round.status.roll_progressed_at = Some(round.now.to_string());
                let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), seen.namespace());
                pods_api.delete(&pod, &DeleteParams::default()).await?;
                let message = format!("restarting pod {pod} to apply its new template: {why}");
                info!(namespace = %seen.namespace(), name = %seen.name(), "{message}");
                ctx.event(
                    &seen.kc,
                    EventType::Normal,
                    "Restarting",
                    "Restart",
                    message.clone(),
                )
                .await;
                Some(message)
            }
            Err(e) => Some(format!("waiting for Kafka to check the next restart: {e}")),
        }
    };
    let mut done = absent.is_empty() && views.iter().all(|v| v.current);
    // After the last restart: the pod restarted last becomes ready, every partition gets back
    // in sync, then leaders move back to their preferred replicas (again after an operator
    // restart; electing twice is harmless). With Kafka unreachable, its own rebalancing will do.
    let restarting =
        done && outcome.operation.is_none() && seen.previous.phase == Some(Phase::Restarting);
    if let (true, Some(pod)) = (restarting, views.iter().find(|v| !v.ready)) {
        done = false;
        message = Some(format!(
            "waiting for pod {} to be ready after its restart",
            pod.name
        ));
    } else if restarting && let Some(admin) = seen.fresh() {
        match roll::finish(admin).await {
            Ok(RollEnd::CatchingUp(why)) => {
                done = false;
                message = Some(why);
            }
            Ok(RollEnd::Done(summary)) => {
                info!(namespace = %seen.namespace(), name = %seen.name(), "{summary}");
                ctx.event(&seen.kc, EventType::Normal, "RolledOut", "Restart", summary)
                    .await;
            }
            Err(e) => {
                warn!(namespace = %seen.namespace(), name = %seen.name(), "leaders not moved back after the roll: {e}")
            }
        }
    }
    Ok(Rollout { done, message })
}

/// Topics that were removed from the spec but could not be deleted: kept in the status, so the
/// deletion is tried again.
fn undeleted_topics(
    previous: &[TopicStatus],
    cluster: &Cluster,
    problem: &KafkaError,
) -> Vec<TopicStatus> {
    removed_topics(previous, &cluster.topics)
        .into_iter()
        .map(|topic| TopicStatus {
            name: topic,
            state: TopicPhase::Error,
            message: Some(format!("deleting the topic failed: {problem}")),
            ..Default::default()
        })
        .collect()
}

/// Topics, once Kafka answers and no broker is leaving.
async fn manage_topics(ctx: &Context, seen: &Seen, round: &mut Round, outcome: &ScaleOutcome) {
    let Some(admin) = seen.look() else {
        return;
    };
    if outcome.operation.is_some() {
        return;
    }
    let (cluster, previous) = (&seen.cluster, &seen.previous.topics);
    let mut undeleted = Vec::new();
    if !cluster.delete_removed_topics {
        // Said once: the next status no longer lists the topic.
        for topic in removed_topics(previous, &cluster.topics) {
            ctx.event(
                &seen.kc,
                EventType::Normal,
                "TopicUnmanaged",
                "Topics",
                format!("topic {topic} was removed from spec.topics: it stays in Kafka with its data and is no longer managed (deleteRemovedTopics: true deletes such topics)"),
            )
            .await;
        }
    } else {
        match delete_removed_topics(admin, previous, &cluster.topics).await {
            Ok(deleted) => {
                for topic in deleted {
                    ctx.event(
                        &seen.kc,
                        EventType::Normal,
                        "TopicDeleted",
                        "DeleteTopic",
                        format!("deleted topic {topic}: it was removed from spec.topics and deleteRemovedTopics is on"),
                    )
                    .await;
                }
            }
            Err(e) => {
                warn!(namespace = %seen.namespace(), name = %seen.name(), "deleting removed topics: {e}");
                undeleted = undeleted_topics(previous, cluster, &e);
                round.kafka_trouble(e.to_string());
            }
        }
    }
    match reconcile_topics(admin, &cluster.topics, previous).await {
        Ok(mut topics) => {
            topics.append(&mut undeleted);
            round.status.topics = topics;
        }
        Err(e) => {
            warn!(namespace = %seen.namespace(), name = %seen.name(), "topics: {e}");
            round.kafka_trouble(e.to_string());
        }
    }
}

/// The brokers Kafka knows (live or fenced), and a problem when a KRaft cluster reports another
/// id than the one this KafkaCluster formats its volumes with.
fn membership(
    snapshot: &ClusterSnapshot,
    ours: Option<&str>,
    kraft: bool,
) -> (Vec<i32>, Option<String>) {
    let mut ids = snapshot.broker_ids();
    ids.extend(&snapshot.fenced_brokers);
    let problem = match (ours, &snapshot.cluster_id) {
        (Some(ours), Some(theirs)) if kraft && ours != theirs => Some(format!(
            "Kafka reports cluster id {theirs}, but this KafkaCluster formats its volumes with {ours}: new brokers would not join; set spec.clusterId to {theirs}"
        )),
        _ => None,
    };
    (ids.into_iter().collect(), problem)
}

/// What Kafka itself says about the cluster's identity and members.
async fn record_membership(seen: &Seen, round: &mut Round) {
    let Some(admin) = seen.look() else {
        return;
    };
    match admin.snapshot().await {
        Ok(snapshot) => {
            let (ids, problem) = membership(
                &snapshot,
                round.status.cluster_id.as_deref(),
                seen.cluster.is_kraft(),
            );
            round.status.broker_ids = ids;
            if let Some(problem) = problem {
                round.kafka_trouble(problem);
            }
        }
        Err(e) => round.kafka_trouble(e.to_string()),
    }
}

/// When to look at the cluster again, before any back-off for Kafka trouble.
fn next_look(
    operation: bool,
    rolled_out: bool,
    phase: Phase,
    busy: bool,
    topics_settling: bool,
) -> Duration {
    if operation || !rolled_out {
        OPERATION_POLL
    } else if phase == Phase::Running && !busy && !topics_settling {
        RESYNC
    } else {
        PROGRESS
    }
}

/// Writes what the reconcile saw and did: status, conditions and the events of what changed;
/// when to look again.
async fn report(
    ctx: &Context,
    seen: &Seen,
    round: Round,
    outcome: &ScaleOutcome,
    applied: &[StatefulSet],
    rollout: Rollout,
) -> Result<Action> {
    let Round {
        mut status,
        mut version,
        kafka_problem,
        now,
    } = round;
    let (cluster, name) = (&seen.cluster, seen.name());
    let find = |n: String| applied.iter().find(|s| s.name_any() == n);
    let broker_sts = find(names::broker_statefulset(name));
    let controller_sts = find(names::controller_statefulset(name));
    // A roll's clock starts with the roll and restarts with each pod it restarts.
    if rollout.done {
        status.roll_progressed_at = None;
    } else if status.roll_progressed_at.is_none() {
        status.roll_progressed_at = Some(now.to_string());
    }
    let stuck = match &outcome.operation {
        Some(op) => stuck::operation(op, &cluster.rebalance, now),
        None if !rollout.done => stuck::roll(
            status.roll_progressed_at.as_deref(),
            rollout.message.as_deref(),
            &cluster.rebalance,
            now,
        ),
        None => None,
    };
    let observed = Observed {
        desired_brokers: cluster.broker_count,
        broker_replicas: outcome.broker_replicas,
        ready_brokers: ready_replicas(broker_sts),
        desired_controllers: cluster.controller_count(),
        ready_controllers: ready_replicas(controller_sts),
        rolled_out: rollout.done,
        rollout: rollout.message,
        scale_down_blocked: outcome.blocked.clone(),
        invalid_spec: None,
        operation: outcome.operation.clone(),
        kafka_problem,
        stuck,
    };
    announce_changes(
        &seen.kc,
        ctx,
        seen.brokers.as_ref(),
        broker_sts,
        &seen.previous,
        &observed,
    )
    .await;

    status.brokers = outcome.broker_replicas;
    status.ready_brokers = observed.ready_brokers;
    status.selector = Some(names::selector_string(&names::pod_selector(
        name,
        Role::Broker,
    )));
    let topics_settling = status
        .topics
        .iter()
        .any(|t| !matches!(t.state, TopicPhase::Ready | TopicPhase::Error));
    let kafka_trouble = observed.kafka_problem.is_some();
    let phase = finish_status(&seen.kc, ctx, status, &observed, &mut version).await?;
    let next = next_look(
        outcome.operation.is_some(),
        observed.rolled_out,
        phase,
        outcome.busy,
        topics_settling,
    );
    Ok(Action::requeue(ctx.kafka_backoff(
        &format!("{}/{name}", seen.namespace()),
        kafka_trouble,
        next,
    )))
}

/// Runs when the KafkaCluster is deleted: owned objects go with it through their owner
/// references; volumes are deleted only when the retention policy says so. The StatefulSets go
/// first, so that none recreates a claim for a pod that still exists.
pub async fn cleanup_cluster(kc: Arc<KafkaCluster>, ctx: &Context) -> Result<Action> {
    let namespace = kc.namespace().ok_or(Error::MissingNamespace)?;
    let name = kc.name_any();
    ctx.kafka.forget(&namespace, &name);
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    for role in [Role::Broker, Role::Controller] {
        delete_if_present(
            &statefulsets,
            &names::statefulset(&name, role),
            &DeleteParams::background(),
        )
        .await?;
    }
    let policy = kc.spec.pvc_retention.when_deleted;
    if policy == RetentionPolicy::Delete {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = names::selector_string(&names::cluster_selector(&name));
        let list = claims
            .list(&ListParams::default().labels(&selector))
            .await?;
        for claim in list {
            // Kubernetes may delete it meanwhile (the StatefulSets' own claim retention).
            delete_if_present(&claims, &claim.name_any(), &DeleteParams::default()).await?;
        }
    }
    let note = match policy {
        RetentionPolicy::Delete => "deleting the cluster and its volumes",
        RetentionPolicy::Retain => {
            "deleting the cluster; its volumes are kept (pvcRetention.whenDeleted: Retain)"
        }
    };
    info!(%namespace, %name, "{note}");
    ctx.event(
        &kc,
        EventType::Normal,
        "Deleting",
        "Delete",
        note.to_string(),
    )
    .await;
    Ok(Action::await_change())
}

/// The Kafka pods (brokers and controllers) of a cluster.
async fn kafka_pods(ctx: &Context, cluster: &Cluster) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let selector = names::selector_string(&names::cluster_selector(&cluster.name));
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| pods::role(p).is_some())
        .collect())
}

/// What the roll needs to know of each pod: does it run its StatefulSet's current template
/// (the `controller-revision-hash` label against the StatefulSet's update revision), is it
/// ready, is it going away.
fn pod_views(pods: &[Pod], statefulsets: &[StatefulSet]) -> Vec<PodView> {
    pods.iter()
        .filter_map(|pod| {
            let role = pods::role(pod)?;
            let sts_name = pod
                .metadata
                .owner_references
                .as_ref()?
                .iter()
                .find(|o| o.kind == "StatefulSet")?
                .name
                .clone();
            let update_revision = statefulsets
                .iter()
                .find(|s| s.name_any() == sts_name)
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.update_revision.clone());
            let revision = pod.labels().get(REVISION_LABEL);
            Some(PodView {
                name: pod.name_any(),
                role,
                ordinal: pods::ordinal(pod)?,
                current: update_revision.is_none() || revision == update_revision.as_ref(),
                ready: pods::is_ready(pod),
                running: pods::kafka_running(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
            })
        })
        .collect()
}

/// Pods the StatefulSets should run (ordinals below their replicas) that do not exist.
fn absent_pods(pods: &[Pod], statefulsets: &[StatefulSet]) -> Vec<String> {
    statefulsets
        .iter()
        .flat_map(|sts| {
            let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let name = sts.name_any();
            (0..replicas).map(move |o| format!("{name}-{o}"))
        })
        .filter(|name| !pods.iter().any(|p| p.name_any() == *name))
        .collect()
}

/// Label the StatefulSet controller puts on each pod: the revision of its template.
const REVISION_LABEL: &str = "controller-revision-hash";

/// Deletes the volumes of drained and removed brokers.
async fn delete_volumes(ctx: &Context, cluster: &Cluster, ordinals: &[i32]) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace);
    for ordinal in ordinals {
        let name = names::data_pvc(&cluster.name, Role::Broker, *ordinal);
        if delete_if_present(&claims, &name, &DeleteParams::default()).await? {
            info!(claim = %name, "deleted the volume of a drained broker");
        }
    }
    Ok(())
}

/// Deletes `name`; whether it was there (an object already gone is what a retry finds).
async fn delete_if_present<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<bool>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the per-broker Services of brokers the StatefulSet no longer runs.
async fn remove_services_of_removed_brokers(
    ctx: &Context,
    cluster: &Cluster,
    broker_replicas: i32,
) -> Result<()> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let mut selector = names::cluster_selector(&cluster.name);
    selector.insert(LABEL_COMPONENT.into(), BROKER_SERVICE_COMPONENT.into());
    let selector = names::selector_string(&selector);
    let wanted: Vec<String> = (0..broker_replicas)
        .map(|i| names::broker_service(&cluster.name, i))
        .collect();
    for service in services
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        let name = service.name_any();
        if !wanted.contains(&name) {
            info!(service = %name, "deleting the Service of a removed broker");
            services.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// Events for what changed in this reconcile.
async fn announce_changes(
    kc: &KafkaCluster,
    ctx: &Context,
    before: Option<&StatefulSet>,
    after: Option<&StatefulSet>,
    previous: &KafkaClusterStatus,
    observed: &Observed,
) {
    let hash = |s: Option<&StatefulSet>| {
        s.and_then(|s| s.spec.as_ref())
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
    };
    if let (None, Some(n)) = (replicas(before), replicas(after)) {
        ctx.event(
            kc,
            EventType::Normal,
            "Created",
            "Create",
            format!("created the cluster's objects with {n} broker(s)"),
        )
        .await
    }
    if before.is_some() && hash(before) != hash(after) {
        ctx.event(
            kc,
            EventType::Normal,
            "ConfigurationChanged",
            "Configure",
            "broker configuration changed; brokers restart one at a time to apply it".into(),
        )
        .await;
    }
    let was_stuck = previous
        .conditions
        .iter()
        .any(|c| c.type_ == status::STUCK && c.status == "True");
    if let Some(message) = &observed.stuck
        && !was_stuck
    {
        warn!(namespace = ?kc.namespace(), name = %kc.name_any(), "{message}");
        ctx.event(kc, EventType::Warning, "Stuck", "Wait", message.clone())
            .await;
    }
    let was_blocked = previous
        .conditions
        .iter()
        .any(|c| c.type_ == status::SCALE_DOWN_BLOCKED && c.status == "True");
    if let Some(message) = &observed.scale_down_blocked
        && (!was_blocked || previous.observed_generation != kc.metadata.generation)
    {
        ctx.event(
            kc,
            EventType::Warning,
            "ScaleDownBlocked",
            "Scale",
            message.clone(),
        )
        .await;
    }
}

/// Whether the pause annotation stops every action on the cluster.
fn paused(kc: &KafkaCluster) -> bool {
    kc.annotations()
        .get(names::PAUSE_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A paused cluster: nothing is changed, neither the objects nor Kafka. The status says so
/// (phase `Paused`, condition `Paused`) and keeps the rest of what it said; an operation in
/// progress waits where it is (moves already submitted to Kafka run to their end).
async fn hold_paused(kc: &KafkaCluster, ctx: &Context, version: &mut Version) -> Result<Action> {
    let namespace = kc.namespace().ok_or(Error::MissingNamespace)?;
    let mut status = kc.status.clone().unwrap_or_default();
    let was_paused = status.phase == Some(Phase::Paused);
    let message = format!(
        "reconciliation is paused by the annotation {}: nothing is changed until it is removed{}",
        names::PAUSE_ANNOTATION,
        match &status.operation {
            Some(op) => format!(
                "; the operation in progress ({}) waits, and moves already submitted to Kafka run to their end",
                status::operation_summary(op)
            ),
            None => String::new(),
        }
    );
    let paused = status::condition(status::PAUSED, true, "PausedByAnnotation", message.clone());
    let mut conditions: Vec<_> = status
        .conditions
        .iter()
        .filter(|c| c.type_ != status::PAUSED)
        .cloned()
        .collect();
    conditions.extend(status::merge_conditions(
        &status.conditions,
        &[paused],
        kc.metadata.generation,
        Timestamp::now(),
    ));
    status.conditions = conditions;
    status.phase = Some(Phase::Paused);
    if Some(&status) != kc.status.as_ref() {
        patch_status(ctx, &namespace, &kc.name_any(), &status, version).await?;
    }
    if !was_paused {
        info!(%namespace, name = %kc.name_any(), "{message}");
        ctx.event(
            kc,
            EventType::Normal,
            "ReconciliationPaused",
            "Pause",
            message,
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Writes phase, conditions and generation to the status; returns the phase.
async fn finish_status(
    kc: &KafkaCluster,
    ctx: &Context,
    mut status: KafkaClusterStatus,
    observed: &Observed,
    version: &mut Version,
) -> Result<Phase> {
    let assessment = status::assess(observed, status.phase);
    status.phase = Some(assessment.phase);
    status.conditions = status::merge_conditions(
        &status.conditions,
        &assessment.conditions,
        kc.metadata.generation,
        Timestamp::now(),
    );
    status.observed_generation = kc.metadata.generation;
    let namespace = kc.namespace().ok_or(Error::MissingNamespace)?;
    if Some(&status) != kc.status.as_ref() {
        patch_status(ctx, &namespace, &kc.name_any(), &status, version).await?;
    }
    Ok(assessment.phase)
}

/// The resourceVersion of the KafkaCluster a reconcile's decisions were computed from, and
/// after each of its own status writes, the version that write made.
struct Version(Option<String>);

/// Writes the status with server-side apply, so fields the operator no longer sets (a finished
/// operation, an empty list) are removed rather than left behind as a merge patch would. The
/// write is conditional on `version`: if anyone else wrote the object since, it fails with
/// [`Error::StaleState`] and nothing of this reconcile's decision is acted on.
async fn patch_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &KafkaClusterStatus,
    version: &mut Version,
) -> Result<()> {
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": KafkaCluster::api_version(&()),
        "kind": KafkaCluster::kind(&()),
        "metadata": { "resourceVersion": version.0 },
        "status": status,
    });
    match api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(written) => {
            version.0 = written.resource_version();
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::StaleState),
        Err(e) => Err(e.into()),
    }
}

/// What to do with `status.clusterId` this round.
#[derive(Debug, PartialEq, Eq)]
enum ClusterId {
    Keep,
    /// Store this id; `adopted` when it comes from the spec.
    Set {
        id: String,
        adopted: bool,
    },
    /// The spec's id is not taken; why, and what to do.
    Refuse(String),
}

/// The spec's id wins over the stored one, but not over a running Kafka cluster that reports
/// another id: switching the pods of a running cluster to another id would stop every one of
/// them at its next start.
async fn cluster_id_decision(
    cluster: &Cluster,
    status: &KafkaClusterStatus,
    admin: Option<&dyn KafkaAdmin>,
) -> ClusterId {
    match (&cluster.cluster_id, &status.cluster_id) {
        (None, None) => ClusterId::Set {
            id: new_cluster_id(),
            adopted: false,
        },
        (None, Some(_)) => ClusterId::Keep,
        (Some(wanted), Some(current)) if wanted == current => ClusterId::Keep,
        (Some(wanted), _) => {
            // No ready broker: nothing runs that could disagree (the pods refuse the volumes
            // of another cluster until they get this id).
            let running = match admin {
                None => None,
                Some(admin) => match admin.snapshot().await {
                    Ok(snapshot) => snapshot.cluster_id,
                    Err(e) => {
                        return ClusterId::Refuse(format!(
                            "spec.clusterId {wanted} is taken once Kafka confirms the running cluster's id: {e}"
                        ));
                    }
                },
            };
            match running {
                Some(theirs) if &theirs != wanted => ClusterId::Refuse(format!(
                    "spec.clusterId {wanted} is not the id of the running Kafka cluster ({theirs}); set spec.clusterId to {theirs} or remove it"
                )),
                _ => ClusterId::Set {
                    id: wanted.clone(),
                    adopted: true,
                },
            }
        }
    }
}

/// A new KRaft cluster id as `kafka-storage random-uuid` makes them: a random (version 4) UUID,
/// base64url without padding.
fn new_cluster_id() -> String {
    use base64::Engine;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        // Kafka avoids ids starting with '-': command-line tools would read them as options.
        if !id.starts_with('-') {
            return id;
        }
    }
}

impl Context {
    /// When to look at a cluster again: `next`, or, while its Kafka keeps failing, later each
    /// time (4 s, 8 s, ... at most a minute), so a Kafka in trouble is not asked every couple of
    /// seconds by every cluster's operation; back to `next` once Kafka answers.
    pub fn kafka_backoff(&self, cluster: &str, failing: bool, next: Duration) -> Duration {
        let mut failures = self
            .kafka_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !failing {
            failures.remove(cluster);
            return next;
        }
        let n = failures.entry(cluster.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        backoff(*n).max(next.min(KAFKA_BACKOFF_MAX))
    }

    /// Publishes an event on the KafkaCluster; a failure to publish is logged, not fatal.
    ///
    /// kube's recorder folds every repeat of a reason on an object into one event series that
    /// keeps its first message, which would hide, say, all but the first pod of a rolling
    /// restart. So each distinct message gets a recorder of its own: repeats of the same message
    /// still fold into one series, different messages stay apart.
    pub async fn event(
        &self,
        kc: &KafkaCluster,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        let recorder = {
            let mut recorders = self.recorders.lock().unwrap_or_else(|e| e.into_inner());
            // The recorders' own caches forget after minutes; forget whole recorders in bulk.
            if recorders.len() > 512 {
                recorders.clear();
            }
            recorders
                .entry((reason.to_string(), event.note.clone().unwrap_or_default()))
                .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
                .clone()
        };
        if let Err(e) = recorder.publish(&event, &kc.object_ref(&())).await {
            warn!(reason, "could not publish event: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft(spec: &str) -> Cluster {
        let spec = serde_yaml::from_str(spec).unwrap();
        let mut kc = KafkaCluster::new("c", spec);
        kc.metadata.namespace = Some("ns".into());
        api::validate(&kc).unwrap()
    }

    #[tokio::test]
    async fn the_spec_cluster_id_is_taken_when_no_broker_runs() {
        const KEPT: &str = "Q2x1c3RlckJlZm9yZU5vdw";
        let stored = |id: &str| KafkaClusterStatus {
            cluster_id: Some(id.into()),
            ..Default::default()
        };
        let chosen = kraft("brokerCount: 1");
        match cluster_id_decision(&chosen, &KafkaClusterStatus::default(), None).await {
            ClusterId::Set { id, adopted } => assert!(id.len() == 22 && !adopted),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            cluster_id_decision(&chosen, &stored("x"), None).await,
            ClusterId::Keep
        );
        let adopting = kraft(&format!("brokerCount: 1\nclusterId: {KEPT}"));
        assert_eq!(
            cluster_id_decision(&adopting, &stored("Q2x1c3RlckFmdGVyVGhpcw"), None).await,
            ClusterId::Set {
                id: KEPT.into(),
                adopted: true
            }
        );
        assert_eq!(
            cluster_id_decision(&adopting, &stored(KEPT), None).await,
            ClusterId::Keep
        );
    }

    fn broker_statefulset(replicas: i32, ready: i32) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c-broker"},
            "spec": {"replicas": replicas, "selector": {}, "serviceName": "c", "template": {}},
            "status": {"replicas": replicas, "readyReplicas": ready},
        }))
        .unwrap()
    }

    #[test]
    fn lost_brokers_are_read_from_the_annotation() {
        let annotated = |value: Option<&str>| {
            let mut kc = KafkaCluster::new("c", serde_yaml::from_str("brokerCount: 3").unwrap());
            if let Some(v) = value {
                kc.metadata.annotations =
                    Some([(names::LOST_BROKERS_ANNOTATION.to_string(), v.to_string())].into());
            }
            lost_brokers(&kc)
        };
        assert_eq!(annotated(None), Ok(BTreeSet::new()));
        assert_eq!(annotated(Some("3")), Ok(BTreeSet::from([3])));
        assert_eq!(annotated(Some(" 3, 4 ,")), Ok(BTreeSet::from([3, 4])));
        for bad in ["kafka-3", "3;4", "-1"] {
            let why = annotated(Some(bad)).expect_err(bad);
            assert!(
                why.contains(names::LOST_BROKERS_ANNOTATION) && why.contains("3,4"),
                "{why}"
            );
        }
    }

    #[test]
    fn the_scale_input_counts_every_broker_that_may_hold_data() {
        let cluster = kraft("brokerCount: 2");
        let recorded = KafkaClusterStatus {
            brokers: 5,
            ..Default::default()
        };
        let sts = broker_statefulset(3, 2);
        let input = scale_input(
            &cluster,
            &recorded,
            Some(&sts),
            &[],
            BTreeSet::new(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(input.desired, 2);
        // A hand edit of the StatefulSet down to 3 does not hide brokers 3 and 4.
        assert_eq!(input.running, Some(5));
        assert_eq!(input.statefulset_replicas, Some(3));
        assert_eq!(input.ready_brokers, 2);
        assert!(input.kraft && input.operation.is_none());
        let new = scale_input(
            &cluster,
            &KafkaClusterStatus::default(),
            None,
            &[],
            BTreeSet::new(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            (new.running, new.statefulset_replicas, new.ready_brokers),
            (None, None, 0)
        );
    }

    #[test]
    fn kafka_trouble_keeps_the_brokers_and_says_why_a_drain_waits() {
        let cluster = kraft("brokerCount: 2");
        let sts = broker_statefulset(3, 3);
        let mut input = scale_input(
            &cluster,
            &KafkaClusterStatus::default(),
            Some(&sts),
            &[],
            BTreeSet::new(),
            Timestamp::UNIX_EPOCH,
        );
        let trouble = KafkaError::timeout("snapshot", Duration::from_secs(30));
        let held = scaling_waits_for_kafka(&input, &trouble);
        assert_eq!(held.broker_replicas, 3);
        assert!(held.busy && held.operation.is_none());
        let why = held.blocked.unwrap();
        assert!(
            why.contains("lowered to 2") && why.contains("timed out"),
            "{why}"
        );

        // An operation in progress waits where it is, and nothing is blocked.
        input.operation = Some(crate::api::Operation {
            kind: crate::api::OperationKind::ScaleDown,
            target_brokers: 2,
            leaving_brokers: vec![2],
            ..Default::default()
        });
        let waiting = scaling_waits_for_kafka(&input, &trouble);
        assert_eq!(waiting.operation, input.operation);
        assert_eq!((waiting.broker_replicas, waiting.blocked), (3, None));
    }

    #[test]
    fn membership_lists_fenced_brokers_and_a_foreign_cluster_id() {
        let broker = |id| crate::kafka::Broker {
            id,
            host: format!("b{id}"),
            port: 9092,
            rack: None,
        };
        let snapshot = ClusterSnapshot {
            cluster_id: Some("Q2x1c3RlckZyb21FbHNld2g".into()),
            brokers: vec![broker(0), broker(2)],
            fenced_brokers: vec![1, 2],
            ..Default::default()
        };
        let (ids, problem) = membership(&snapshot, Some("Q2x1c3RlckZyb21IZXJlIQ"), true);
        assert_eq!(ids, vec![0, 1, 2]);
        let problem = problem.unwrap();
        assert!(
            problem.contains("set spec.clusterId to Q2x1c3RlckZyb21FbHNld2g"),
            "{problem}"
        );
        let same = membership(&snapshot, Some("Q2x1c3RlckZyb21FbHNld2g"), true);
        assert_eq!(same.1, None);
        // ZooKeeper mode: the id is Kafka's own, nothing of ours to compare.
        assert_eq!(membership(&snapshot, Some("x"), false).1, None);
    }

    #[test]
    fn topics_not_deleted_stay_in_the_status_to_be_tried_again() {
        let cluster =
            kraft("brokerCount: 1\ntopics: [{name: kept, partitions: 1, replicationFactor: 1}]");
        let listed = |name: &str| TopicStatus {
            name: name.into(),
            state: TopicPhase::Ready,
            ..Default::default()
        };
        let trouble = KafkaError::timeout("DeleteTopics", Duration::from_secs(30));
        let left = undeleted_topics(&[listed("kept"), listed("gone")], &cluster, &trouble);
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].name.as_str(), left[0].state),
            ("gone", TopicPhase::Error)
        );
        assert!(
            left[0]
                .message
                .as_deref()
                .unwrap()
                .contains("DeleteTopics timed out")
        );
    }

    #[test]
    fn a_busy_cluster_is_looked_at_sooner_than_a_settled_one() {
        assert_eq!(
            next_look(true, true, Phase::Running, false, false),
            OPERATION_POLL
        );
        assert_eq!(
            next_look(false, false, Phase::Restarting, false, false),
            OPERATION_POLL
        );
        assert_eq!(next_look(false, true, Phase::Running, false, false), RESYNC);
        assert_eq!(
            next_look(false, true, Phase::Running, false, true),
            PROGRESS
        );
        assert_eq!(
            next_look(false, true, Phase::Running, true, false),
            PROGRESS
        );
        assert_eq!(
            next_look(false, true, Phase::Creating, false, false),
            PROGRESS
        );
    }

    #[test]
    fn the_first_kafka_problem_of_a_round_is_the_one_reported() {
        let kc = KafkaCluster::new("c", serde_yaml::from_str("brokerCount: 1").unwrap());
        let mut round = Round::start(&kc);
        round.kafka_trouble("spec.clusterId is not the running cluster's".into());
        round.kafka_trouble("snapshot timed out".into());
        assert_eq!(
            round.kafka_problem.as_deref(),
            Some("spec.clusterId is not the running cluster's")
        );
    }

    #[test]
    fn kafka_failures_back_off_up_to_a_minute() {
        let waits: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-'));
        assert_ne!(id, new_cluster_id());
    }
}
