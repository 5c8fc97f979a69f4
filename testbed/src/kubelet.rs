//! A stand-in kubelet for the local testbed: runs the Kafka pods of one KafkaCluster as local
//! Kafka processes ([`LocalKafka`]) and reports their readiness on the pods, so the operator
//! drives real brokers through a real API server.
//!
//! A broker pod that exists gets a running broker (its data kept across restarts); a pod that
//! is gone gets its broker stopped, as a kubelet would, and its data deleted once its volume is
//! gone (at once with `storageClass: emptyDir`, else when its PersistentVolumeClaim is
//! deleted). A pod recreated under the same name (a new UID: the operator deleted it to roll
//! it) gets its broker or controller restarted with the configuration rendered from the
//! KafkaCluster as it is now, and with no data when its storage is an emptyDir. A pod's Ready
//! condition follows its process. Tests can hold a broker down ([`LocalKubelet::hold_down`]) to
//! play a failed node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use kafka_operator::api::{KafkaCluster, Storage, validate};
use kafka_operator::resources::names::{self, Role};
use kafka_operator::resources::pods::{is_ready, ordinal, role as role_of};

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
        let mut uids = BTreeMap::new();
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), namespace);
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
                    let state = State {
                        seen: &mut seen,
                        uids: &mut uids,
                    };
                    if let Err(e) = sync(&pods, &clusters, &volumes, &kafka, &held, state).await {
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

/// What the kubelet remembers between rounds.
struct State<'a> {
    /// Broker ordinals whose pod it has seen: their processes are its business.
    seen: &'a mut BTreeSet<i32>,
    /// The UID of the pod each running process belongs to.
    uids: &'a mut BTreeMap<(Role, i32), String>,
}

/// Renders nodes from the KafkaCluster as it is now, before (re)starting any.
async fn refresh_config(
    clusters: &Api<KafkaCluster>,
    name: &str,
    kafka: &mut LocalKafka,
) -> anyhow::Result<()> {
    let kc = clusters.get(name).await?;
    match validate(&kc) {
        Ok(cluster) => kafka.reconfigure(cluster),
        Err(e) => warn!("local kubelet: keeping the last valid configuration: {e}"),
    }
    Ok(())
}

async fn sync(
    pods: &Api<Pod>,
    clusters: &Api<KafkaCluster>,
    volumes: &Volumes<'_>,
    kafka: &Mutex<LocalKafka>,
    held: &Mutex<BTreeSet<i32>>,
    state: State<'_>,
) -> anyhow::Result<()> {
    let State { seen, uids } = state;
    // The pods the operator made: another release's pods with the same instance label are not
    // Kafka nodes of this cluster (a real kubelet would run them as whatever they are).
    let selector = names::selector_string(&names::cluster_selector(volumes.cluster));
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let held = held.lock().await.clone();
    let live = |role: Role| {
        list.iter()
            .filter(move |p| role_of(p) == Some(role) && p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((ordinal(p)?, p.uid()?)))
            .collect::<BTreeMap<i32, String>>()
    };
    let broker_pods = live(Role::Broker);
    let controller_pods = live(Role::Controller);
    let pods_present: BTreeSet<i32> = broker_pods.keys().copied().collect();
    let wanted: BTreeSet<i32> = pods_present.difference(&held).copied().collect();
    seen.extend(pods_present.iter().copied());

    let mut kafka = kafka.lock().await;
    // A broker that runs for a pod that has been replaced stops, and starts below for the new
    // pod. Brokers started before their pods existed belong to the first pod seen.
    for (o, uid) in &broker_pods {
        if !kafka.running_broker_ids().contains(o) {
            continue;
        }
        let owner = uids
            .entry((Role::Broker, *o))
            .or_insert_with(|| uid.clone());
        if owner != uid {
            info!(
                broker = o,
                "local kubelet: the pod was recreated, restarting the broker"
            );
            kafka.stop_broker(*o).await?;
            if volumes.ephemeral {
                // A new pod gets a new emptyDir: the broker starts with no data.
                kafka.wipe_broker(*o)?;
            }
        }
    }
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
    let to_start: Vec<i32> = wanted
        .difference(&kafka.running_broker_ids())
        .copied()
        .collect();
    if !to_start.is_empty() {
        refresh_config(clusters, volumes.cluster, &mut kafka).await?;
    }
    for new in to_start {
        info!(
            broker = new,
            "local kubelet: starting the broker of its pod"
        );
        if kafka.has_run(new) {
            kafka.start_broker(new).await?;
        } else {
            kafka.add_broker(new).await?;
        }
        uids.insert((Role::Broker, new), broker_pods[&new].clone());
    }
    // Controllers: restarted in place when their pod was recreated.
    for (o, uid) in &controller_pods {
        if !kafka.running_controllers().contains(o) {
            continue;
        }
        let owner = uids
            .entry((Role::Controller, *o))
            .or_insert_with(|| uid.clone());
        if owner != uid {
            info!(
                controller = o,
                "local kubelet: the pod was recreated, restarting the controller"
            );
            refresh_config(clusters, volumes.cluster, &mut kafka).await?;
            kafka.stop_controller(*o).await?;
            if volumes.ephemeral {
                kafka.wipe_controller(*o)?;
            }
            kafka.start_controller(*o).await?;
            *owner = uid.clone();
        }
    }
    let running = kafka.running_broker_ids();
    let controllers = kafka.running_controllers();
    drop(kafka);

    for pod in &list {
        // A pod is ready when its own process runs.
        let runs_for = |role: Role, running: &BTreeSet<i32>| {
            ordinal(pod).is_some_and(|o| {
                running.contains(&o)
                    && pod.uid().is_some()
                    && uids.get(&(role, o)) == pod.uid().as_ref()
            })
        };
        let ready = match role_of(pod) {
            Some(Role::Broker) => runs_for(Role::Broker, &running),
            Some(Role::Controller) => runs_for(Role::Controller, &controllers),
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
