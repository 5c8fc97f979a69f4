//! The kube-rs controller: watches KafkaClusters and the objects they own, and reconciles each
//! cluster through [`reconcile::apply_cluster`], with a finalizer for [`reconcile::cleanup_cluster`].

mod apply;
pub mod error;
pub mod kafka;
pub mod leader;
pub mod racks;
pub mod reconcile;
pub mod status;
pub mod stuck;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Error as FinalizerError, Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::KafkaCluster;
use crate::metrics::Metrics;
use crate::resources::names::{FIELD_MANAGER, FINALIZER, LABEL_MANAGED_BY};

pub use error::{Error, Result};
pub use kafka::KafkaConnector;
pub use leader::{LeaderElection, Leadership};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// One event recorder per distinct event message (see [`Context::event`]).
    recorders: Mutex<HashMap<(String, String), Recorder>>,
    reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub kafka: KafkaConnector,
    /// Consecutive failures per cluster, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<KafkaCluster>, u32>>,
    /// Whether this replica may act (see [`leader`]).
    pub leadership: Leadership,
    /// Reconciles in a row whose Kafka calls failed, per cluster (`namespace/name`).
    kafka_failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, settings: &Settings, metrics: Arc<Metrics>) -> Context {
        Self::leading(client, settings, metrics, Leadership::always())
    }

    fn leading(
        client: Client,
        settings: &Settings,
        metrics: Arc<Metrics>,
        leadership: Leadership,
    ) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorders: Mutex::new(HashMap::new()),
            reporter,
            client,
            metrics,
            kafka: KafkaConnector::new(settings.kafka_bootstrap.clone(), settings.kafka_timeout),
            failures: Mutex::new(HashMap::new()),
            leadership,
            kafka_failures: Mutex::new(HashMap::new()),
        }
    }
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch one namespace, or all of them.
    pub namespace: Option<String>,
    /// Bootstrap addresses by `namespace/name`, for clusters not reached through their pods'
    /// DNS names.
    pub kafka_bootstrap: BTreeMap<String, Vec<String>>,
    /// Bound of every Kafka admin call.
    pub kafka_timeout: Duration,
    /// Act only while holding this Lease (None: a single replica that always acts).
    pub leader_election: Option<LeaderElection>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            kafka_bootstrap: BTreeMap::new(),
            kafka_timeout: Duration::from_secs(30),
            leader_election: None,
        }
    }
}

/// How [`run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or Ctrl-C.
    Signal,
    /// Another replica took the Lease, or it could not be renewed in time: this replica must
    /// not act any more (the process exits and, restarted, is a candidate again).
    LostLeadership,
}

/// Runs the controller until SIGTERM / Ctrl-C, or until it loses its Lease. With leader
/// election, waits for the Lease first.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Stopped {
    let scope = settings.clone();
    let (leadership, renewing) = match &settings.leader_election {
        Some(election) => {
            // Healthy but standing by: the probes pass, the metric says it does not lead.
            metrics.ready.store(true, Ordering::Relaxed);
            let (leadership, task) = leader::acquire(client.clone(), election.clone()).await;
            (leadership, Some(task))
        }
        None => (Leadership::always(), None),
    };
    metrics.leader.set(1);
    let ctx = Arc::new(Context::leading(
        client.clone(),
        &settings,
        metrics.clone(),
        leadership,
    ));
    let clusters: Api<KafkaCluster> = match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Owned objects are watched only where the operator put its label, to keep caches small.
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    fn api<K>(client: &Client, scope: &Settings) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        match &scope.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    metrics.ready.store(true, Ordering::Relaxed);
    info!(namespace = ?scope.namespace, "kafka-operator controller started");
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let lost = lost.clone();
        async move {
            let lease_lost = async {
                match renewing {
                    Some(mut renewal) => {
                        renewal.lost().await;
                        lost.store(true, Ordering::SeqCst);
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = lease_lost => {}
            }
        }
    };
    Controller::new(clusters, watcher::Config::default())
        .owns(api::<StatefulSet>(&client, &scope), owned.clone())
        .owns(api::<Service>(&client, &scope), owned.clone())
        .owns(api::<ConfigMap>(&client, &scope), owned)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
                Err(e) => tracing::debug!("reconcile: {e}"),
            }
        })
        .await;
    metrics.leader.set(0);
    if lost.load(Ordering::SeqCst) {
        warn!("kafka-operator controller stopped: it no longer holds the Lease");
        return Stopped::LostLeadership;
    }
    if let Some(election) = &settings.leader_election
        && let Err(e) = leader::release(client.clone(), election).await
    {
        warn!("giving up the Lease: {e}");
    }
    info!("kafka-operator controller stopped");
    Stopped::Signal
}

/// Whether the reconcile failed only because the object changed under it.
fn stale(error: &Error) -> bool {
    match error {
        Error::StaleState => true,
        Error::Finalizer(e) => matches!(
            e.as_ref(),
            FinalizerError::ApplyFailed(Error::StaleState)
                | FinalizerError::CleanupFailed(Error::StaleState)
        ),
        _ => false,
    }
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action> {
    // A replica whose Lease is not confirmed any more does nothing (it stops shortly).
    if !ctx.leadership.is_leading() {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let namespace = kc.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, kc.clone(), |event| async {
        match event {
            Finalizer::Apply(kc) => reconcile::apply_cluster(kc, &ctx).await,
            Finalizer::Cleanup(kc) => reconcile::cleanup_cluster(kc, &ctx).await,
        }
    })
    .await;
    let result = match result {
        // The object is gone already: a reconcile of a stale copy (queued while the finalizer
        // was removed) has nothing left to do.
        Err(
            FinalizerError::RemoveFinalizer(kube::Error::Api(e))
            | FinalizerError::AddFinalizer(kube::Error::Api(e)),
        ) if e.code == 404 => Ok(Action::await_change()),
        other => other.map_err(|e| Error::Finalizer(Box::new(e))),
    };
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&ObjectRef::from(kc.as_ref()));
    }
    result
}

/// Retries a failed reconcile with exponential backoff per cluster: 5 s, 10 s, ... 5 min. A
/// reconcile that lost a race for the object is no failure of the cluster: it runs again at
/// once, from the object as it is now.
fn error_policy(kc: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    if stale(error) {
        tracing::debug!(cluster = %ObjectRef::from(kc.as_ref()), "{error}");
        return Action::requeue(Duration::from_millis(500));
    }
    ctx.metrics.record_failure(error.metric_label());
    let attempts = match ctx.failures.lock() {
        Ok(mut failures) => {
            let n = failures.entry(ObjectRef::from(kc.as_ref())).or_insert(0);
            *n += 1;
            *n
        }
        Err(_) => 1,
    };
    let delay = Duration::from_secs(5u64.saturating_mul(1 << attempts.min(6)) / 2)
        .min(Duration::from_secs(300));
    warn!(
        cluster = %ObjectRef::from(kc.as_ref()),
        attempts,
        retry_in = ?delay,
        "reconcile failed: {error}"
    );
    Action::requeue(delay)
}
