//! The kube-rs controller: watches KafkaClusters and the objects they own, and reconciles each
//! cluster through [`reconcile::apply_cluster`], with a finalizer for [`reconcile::cleanup_cluster`].

mod apply;
pub mod error;
pub mod kafka;
pub mod reconcile;
pub mod status;

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
}

impl Context {
    pub fn new(client: Client, settings: &Settings, metrics: Arc<Metrics>) -> Context {
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            kafka_bootstrap: BTreeMap::new(),
            kafka_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs the controller until SIGTERM / Ctrl-C.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>) {
    let scope = settings.clone();
    let ctx = Arc::new(Context::new(client.clone(), &settings, metrics.clone()));
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
    Controller::new(clusters, watcher::Config::default())
        .owns(api::<StatefulSet>(&client, &scope), owned.clone())
        .owns(api::<Service>(&client, &scope), owned.clone())
        .owns(api::<ConfigMap>(&client, &scope), owned)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
                Err(e) => tracing::debug!("reconcile: {e}"),
            }
        })
        .await;
    info!("kafka-operator controller stopped");
}

async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action> {
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

/// Retries a failed reconcile with exponential backoff per cluster: 5 s, 10 s, ... 5 min.
fn error_policy(kc: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
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
