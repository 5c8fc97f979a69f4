//! A stand-in kubelet for the local testbed: runs the Kafka pods of one KafkaCluster as local
//! Kafka processes ([`LocalKafka`]) and reports their readiness on the pods, so the operator
//! drives real brokers through a real API server.
//!
//! A broker pod that exists gets a running broker (its data kept across restarts); a pod that
//! is gone gets its broker stopped, as a kubelet would, and its data deleted once its volume is
//! gone (at once with `storageClass: emptyDir`, else when its PersistentVolumeClaim is deleted). The pod's Ready condition follows the
//! broker. Controller pods are ready while the local controller quorum runs. Tests can hold a
//! broker down ([`LocalKubelet::hold_down`]) to play a failed node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::Storage;
use crate::resources::names::{self, LABEL_COMPONENT, LABEL_INSTANCE, Role};

use super::kafka::LocalKafka;

/// Runs until dropped.
pub struct LocalKubelet {
    kafka: Arc<Mutex<LocalKafka>>,
    held: Arc<Mutex<BTreeSet<i32>>>,
    task: JoinHandle<()>,
}

impl LocalKubelet {
    /// Starts syncing the pods of KafkaCluster `cluster` in `namespace` with `kafka`.
    pub fn start(
        client: Client,
        namespace: &str,
        cluster: &str,
        kafka: LocalKafka,
    ) -> LocalKubelet {
        let ephemeral = kafka.cluster().storage == Storage::Ephemeral;
        let kafka = Arc::new(Mutex::new(kafka));
        let held = Arc::new(Mutex::new(BTreeSet::new()));
        let mut seen = BTreeSet::new();
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, namespace);
        let cluster = cluster.to_string();
        let task = tokio::spawn({
            let kafka = kafka.clone();
            let held = held.clone();
            async move {
                loop {
                    let volumes = Volumes {
                        claims: &claims,
                        cluster: &cluster,
                        ephemeral,
                    };
                    if let Err(e) = sync(&pods, &volumes, &kafka, &held, &mut seen).await {
                        warn!("local kubelet: {e:#}");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        LocalKubelet { kafka, held, task }
    }

    /// The brokers, for producing, consuming and checking.
    pub fn kafka(&self) -> Arc<Mutex<LocalKafka>> {
        self.kafka.clone()
    }

    /// Stops broker `ordinal` (SIGTERM) and keeps it down, its pod not ready, until
    /// [`LocalKubelet::release`].
    pub async fn hold_down(&self, ordinal: i32) -> anyhow::Result<()> {
        self.held.lock().await.insert(ordinal);
        let mut kafka = self.kafka.lock().await;
        if kafka.running_broker_ids().contains(&ordinal) {
            kafka.stop_broker(ordinal).await?;
        }
        Ok(())
    }

    /// Lets a held broker run again (it restarts with its data).
    pub async fn release(&self, ordinal: i32) {
        self.held.lock().await.remove(&ordinal);
    }
}

impl Drop for LocalKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ordinal(pod: &Pod) -> Option<i32> {
    pod.name_any().rsplit('-').next()?.parse().ok()
}

fn role(pod: &Pod) -> Option<Role> {
    match pod.labels().get(LABEL_COMPONENT).map(String::as_str) {
        Some("broker") => Some(Role::Broker),
        Some("controller") => Some(Role::Controller),
        _ => None,
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Where broker data lives: the pod's emptyDir, or a PersistentVolumeClaim per broker.
struct Volumes<'a> {
    claims: &'a Api<PersistentVolumeClaim>,
    cluster: &'a str,
    ephemeral: bool,
}

impl Volumes<'_> {
    /// Whether a stopped broker whose pod is gone has lost its data: always with emptyDir,
    /// and with a volume claim once the claim is deleted.
    async fn lost(&self, ordinal: i32) -> anyhow::Result<bool> {
        if self.ephemeral {
            return Ok(true);
        }
        let claim = names::data_pvc(self.cluster, Role::Broker, ordinal);
        Ok(self.claims.get_opt(&claim).await?.is_none())
    }
}

async fn sync(
    pods: &Api<Pod>,
    volumes: &Volumes<'_>,
    kafka: &Mutex<LocalKafka>,
    held: &Mutex<BTreeSet<i32>>,
    seen: &mut BTreeSet<i32>,
) -> anyhow::Result<()> {
    let selector = format!("{LABEL_INSTANCE}={}", volumes.cluster);
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let held = held.lock().await.clone();
    let pods_present: BTreeSet<i32> = list
        .iter()
        .filter(|p| role(p) == Some(Role::Broker) && p.metadata.deletion_timestamp.is_none())
        .filter_map(ordinal)
        .collect();
    let wanted: BTreeSet<i32> = pods_present.difference(&held).copied().collect();
    seen.extend(pods_present.iter().copied());

    let mut kafka = kafka.lock().await;
    let running = kafka.running_broker_ids();
    // Only brokers of pods this kubelet has seen are its business (brokers started before
    // their pods existed keep running).
    for stop in running.difference(&wanted).filter(|b| seen.contains(b)) {
        info!(broker = stop, "local kubelet: stopping the broker");
        kafka.stop_broker(*stop).await?;
    }
    // Data of brokers whose pod is gone goes with their volume.
    for gone in seen.iter().filter(|o| !pods_present.contains(o)) {
        if kafka.has_run(*gone)
            && !kafka.running_broker_ids().contains(gone)
            && volumes.lost(*gone).await?
        {
            info!(
                broker = gone,
                "local kubelet: the broker's volume is gone, wiping its data"
            );
            kafka.wipe_broker(*gone)?;
        }
    }
    for new in wanted.difference(&running) {
        info!(
            broker = new,
            "local kubelet: starting the broker of a new pod"
        );
        if kafka.has_run(*new) {
            kafka.start_broker(*new).await?;
        } else {
            kafka.add_broker(*new).await?;
        }
    }
    let running = kafka.running_broker_ids();
    drop(kafka);

    for pod in &list {
        let ready = match role(pod) {
            Some(Role::Broker) => ordinal(pod).is_some_and(|o| running.contains(&o)),
            Some(Role::Controller) => true,
            None => continue,
        };
        if ready != is_ready(pod) {
            set_ready(pods, pod, ready).await?;
        }
    }
    Ok(())
}

async fn set_ready(pods: &Api<Pod>, pod: &Pod, ready: bool) -> anyhow::Result<()> {
    let status = if ready { "True" } else { "False" };
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let containers: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": ready,
                "started": ready,
                "restartCount": 0,
                "state": if ready {
                    serde_json::json!({"running": {"startedAt": now}})
                } else {
                    serde_json::json!({"waiting": {"reason": "BrokerStopped"}})
                },
            })
        })
        .collect();
    let patch = serde_json::json!({
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
                {"type": "Ready", "status": status, "lastTransitionTime": now},
            ],
            "containerStatuses": containers,
        }
    });
    let name = pod.name_any();
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
