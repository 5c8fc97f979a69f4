//! One local Kubernetes control plane per test binary, shared by its tests (each test works in
//! a namespace of its own), with the operator's manifests from `deploy/` installed.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kafka_operator::api::KafkaCluster;
use kafka_operator::controller::{self, Settings};
use kafka_operator::metrics::Metrics;
use kafka_operator_testbed::kube::LocalKube;
use kafka_operator_testbed::process::project_root;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::task::JoinHandle;

static TESTBED: OnceLock<LocalKube> = OnceLock::new();

/// The shared control plane, started on first use. Its processes belong to a runtime on a
/// thread of their own, so they outlive each test's runtime; the kernel stops them when the
/// test binary exits.
pub fn testbed() -> &'static LocalKube {
    TESTBED.get_or_init(|| {
        kafka_operator_testbed::process::start_in_background(|| async {
            LocalKube::start_with(&[install_manifest()]).await
        })
        .unwrap_or_else(|e| panic!("starting the Kubernetes testbed: {e:#}"))
    })
}

/// The operator's install bundle, applied before the control plane's controllers start.
fn install_manifest() -> std::path::PathBuf {
    project_root().join("deploy/kafka-operator.yaml")
}

/// A namespace for one test.
pub async fn namespace(name: &str) -> Client {
    let client = testbed().admin_client().await.expect("admin client");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    client
}

/// The operator, running in the test's runtime as the ServiceAccount of `deploy/` (so with
/// exactly its RBAC), watching one namespace.
pub struct Operator {
    pub metrics: Arc<Metrics>,
    task: JoinHandle<controller::Stopped>,
}

impl Operator {
    pub async fn start(namespace: &str) -> Operator {
        Self::start_with(Settings {
            namespace: Some(namespace.into()),
            ..Default::default()
        })
        .await
    }

    /// The operator with these settings (e.g. a Kafka bootstrap override for local brokers).
    pub async fn start_with(settings: Settings) -> Operator {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,kafka_operator=info".into()),
            )
            .with_test_writer()
            .try_init();
        let client = testbed()
            .service_account_client("kafka-operator", "kafka-operator")
            .await
            .expect("operator client");
        let metrics = Arc::new(Metrics::default());
        let task = tokio::spawn(controller::run(client, settings, metrics.clone()));
        Operator { metrics, task }
    }

    /// Failed reconciles so far, with their error labels (a missing RBAC permission shows here).
    pub fn failures(&self) -> String {
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("kafka_operator_reconciliation_errors_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// kubectl as admin; returns (success, stdout, stderr).
pub async fn kubectl(args: &[&str], input: Option<&str>) -> (bool, String, String) {
    let out = testbed()
        .kubectl_with_input(args, input)
        .await
        .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the operator has reconciled the cluster's current generation.
pub async fn reconciled(client: &Client, namespace: &str, name: &str) -> KafkaCluster {
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("{namespace}/{name} to be reconciled"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let kc = api.get(name).await.ok()?;
                let status = kc.status.as_ref()?;
                (status.observed_generation == kc.metadata.generation).then_some(kc)
            }
        },
    )
    .await
}

/// Objects of another release that happens to share a KafkaCluster's name: a Helm chart's
/// broker pod (`<cluster>-broker-<n>`) and its volume claim, labelled
/// `app.kubernetes.io/name=kafka`, `app.kubernetes.io/instance=<cluster>` and
/// `component=broker` as such charts do, but not managed by the operator. The pod has a
/// controller of its own (as a chart's pods have their StatefulSet; here a ConfigMap stands in),
/// so no StatefulSet of the operator's adopts it.
#[allow(dead_code)]
pub struct ForeignRelease {
    namespace: String,
    pod: String,
    claim: String,
}

#[allow(dead_code)]
impl ForeignRelease {
    pub async fn create(
        client: &Client,
        namespace: &str,
        cluster: &str,
        ordinal: i32,
    ) -> anyhow::Result<ForeignRelease> {
        use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
        let pod = format!("{cluster}-broker-{ordinal}");
        let claim = format!("data-{pod}");
        let labels = serde_json::json!({
            "app.kubernetes.io/name": "kafka",
            "app.kubernetes.io/instance": cluster,
            "app.kubernetes.io/component": "broker",
            "app.kubernetes.io/managed-by": "Helm",
        });
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        claims
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({
                    "metadata": {"name": claim, "labels": labels},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }))?,
            )
            .await?;
        let owners: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let owner = owners
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("{cluster}-helm-release")},
                }))?,
            )
            .await?;
        let owner = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
            "controller": true,
        });
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": pod, "labels": labels, "ownerReferences": [owner]},
                "spec": {"containers": [{"name": "kafka", "image": "bitnami/kafka:4.0"}]},
            }))?,
        )
        .await?;
        Ok(ForeignRelease {
            namespace: namespace.into(),
            pod,
            claim,
        })
    }

    /// Fails unless both objects still exist and none is being deleted.
    pub async fn still_there(&self, client: &Client) -> anyhow::Result<()> {
        use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let claim = claims.get_opt(&self.claim).await?;
        anyhow::ensure!(
            claim.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
            "the other release's volume claim {} was deleted",
            self.claim
        );
        let pod = pods.get_opt(&self.pod).await?;
        anyhow::ensure!(
            pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
            "the other release's pod {} was deleted",
            self.pod
        );
        Ok(())
    }

    pub fn claim(&self) -> &str {
        &self.claim
    }
}
