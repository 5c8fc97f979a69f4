//! The pods' start script (`start.sh` in the ConfigMap) run for real: one KRaft controller and
//! one broker started by the script from ConfigMap data the operator renders, with Kafka's tools
//! put on the PATH the way a Kafka image has them. Checks the per-pod placeholders are filled
//! in, storage is formatted once with the cluster's id, a restart keeps the data, and a volume
//! of another cluster is refused without being touched.

#[path = "support/kafka_support.rs"]
mod kafka_support;

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use kafka_operator::api::{Cluster, KAFKA_VERSION};
use kafka_operator::kafka::{KafkaAdmin, KafkaClient, KafkaClientConfig, NewTopic};
use kafka_operator::resources::config::{
    Environment, Listener, Node, POD_NAME_PLACEHOLDER, node_id,
};
use kafka_operator::resources::configmap::config_data_in;
use kafka_operator::resources::names::{self, Role};
use kafka_operator_testbed::kafka::{LocalKafkaOptions, ensure_jars};
use kafka_operator_testbed::process::{ManagedProcess, free_port};

use kafka_support::{Scenarios, assert_same_messages, consume_all, produce, wait_for};

/// The cluster id the nodes are formatted with.
const CLUSTER_ID: &str = "Q2x1c3RlckJlZm9yZU5vdw";
/// The id of another cluster, as a KafkaCluster recreated over kept volumes would have.
const OTHER_CLUSTER_ID: &str = "Q2x1c3RlckFmdGVyVGhpcw";

const SPEC: &str = "brokerCount: 1\ncontrollers: {replicas: 1}\nkafkaOptions:\n  config:\n    \
                    group.initial.rebalance.delay.ms: '0'\n    offsets.topic.num.partitions: '3'\n    \
                    num.network.threads: '2'\n    num.io.threads: '2'\n";

/// One pod per role on loopback: a port per role and listener, data under the pod's name (so
/// the `${POD_NAME}` placeholder decides where the data goes).
struct OnePodPerRole {
    dir: PathBuf,
    ports: BTreeMap<Role, [u16; 3]>,
}

impl Environment for OnePodPerRole {
    fn host(&self, _role: Role, _node: Node) -> String {
        "127.0.0.1".into()
    }

    fn port(&self, role: Role, _node: Node, listener: Listener) -> u16 {
        let i = match listener {
            Listener::Client => 0,
            Listener::Replication => 1,
            Listener::Controller => 2,
        };
        self.ports[&role][i]
    }

    fn bind_host(&self) -> String {
        "127.0.0.1".into()
    }

    fn log_dir(&self, _role: Role, node: Node) -> String {
        let pod = match node {
            Node::FromPod => POD_NAME_PLACEHOLDER.to_string(),
            Node::Ordinal(i) => format!("ordinal-{i}"),
        };
        self.dir.join(pod).join("data").display().to_string()
    }
}

/// A directory laid out like a pod's view of the ConfigMap, plus Kafka's tools on a PATH.
struct Pods {
    cluster: Cluster,
    env: OnePodPerRole,
    config_dir: PathBuf,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Pods {
    fn new() -> anyhow::Result<Pods> {
        let cluster = LocalKafkaOptions::from_yaml(SPEC)?.cluster;
        let dir = tempfile::Builder::new().prefix("start-script-").tempdir()?;
        let mut ports = BTreeMap::new();
        for role in [Role::Controller, Role::Broker] {
            ports.insert(role, [free_port()?, free_port()?, free_port()?]);
        }
        let env = OnePodPerRole {
            dir: dir.path().to_path_buf(),
            ports,
        };
        let config_dir = dir.path().join("etc");
        std::fs::create_dir_all(&config_dir)?;
        for (file, content) in config_data_in(&cluster, &env) {
            std::fs::write(config_dir.join(file), content)?;
        }
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        let libs = ensure_jars(KAFKA_VERSION)?.join("libs");
        let java = std::env::var("JAVA").unwrap_or_else(|_| "java".into());
        // Kafka's tools the way an image without /opt/kafka has them: on the PATH, no suffix.
        for (tool, main, heap) in [
            ("kafka-storage", "kafka.tools.StorageTool", 256),
            ("kafka-server-start", "kafka.Kafka", 384),
        ] {
            let script = format!(
                "#!/bin/sh\nexec {java} -Xmx{heap}m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
                 -XX:-UsePerfData -Dlog4j2.level=INFO -cp '{}/*' {main} \"$@\"\n",
                libs.display()
            );
            let path = bin.join(tool);
            std::fs::write(&path, script)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(Pods {
            cluster,
            env,
            config_dir,
            bin,
            dir,
        })
    }

    fn pod(&self, role: Role) -> String {
        names::pod(&self.cluster.name, role, 0)
    }

    fn data_dir(&self, role: Role) -> PathBuf {
        self.dir.path().join(self.pod(role)).join("data")
    }

    /// Runs `start.sh <role>` with the environment the StatefulSet gives the pod.
    fn start(&self, role: Role, cluster_id: &str, log: &Path) -> anyhow::Result<ManagedProcess> {
        self.start_with(role, cluster_id, log, &[])
    }

    /// [`Pods::start`] with further environment (a rack-aware broker's rack file, say).
    fn start_with(
        &self,
        role: Role,
        cluster_id: &str,
        log: &Path,
        extra: &[(&str, String)],
    ) -> anyhow::Result<ManagedProcess> {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let pod = self.pod(role);
        let env = [
            ("PATH", path),
            ("POD_NAME", pod.clone()),
            ("NODE_ID_BASE", node_id(role, 0).to_string()),
            ("KAFKA_CLUSTER_ID", cluster_id.to_string()),
            (
                "KAFKA_OPERATOR_CONFIG_DIR",
                self.config_dir.display().to_string(),
            ),
            (
                "KAFKA_OPERATOR_WORK_DIR",
                self.dir
                    .path()
                    .join(format!("work-{pod}"))
                    .display()
                    .to_string(),
            ),
            (
                "LOG_DIR",
                self.dir
                    .path()
                    .join(format!("logs-{pod}"))
                    .display()
                    .to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .collect::<Vec<_>>();
        let script = self.config_dir.join("start.sh");
        Ok(ManagedProcess::spawn_with_env(
            &pod,
            Path::new("sh"),
            &[script.display().to_string(), role.as_str().to_string()],
            &env,
            log,
        )?)
    }

    fn admin(&self) -> anyhow::Result<KafkaClient> {
        Ok(KafkaClient::new(KafkaClientConfig::new(
            [self.bootstrap()],
        ))?)
    }

    fn bootstrap(&self) -> String {
        let port = self.env.port(Role::Broker, Node::FromPod, Listener::Client);
        format!("127.0.0.1:{port}")
    }
}

/// The `key=value` lines of a `meta.properties`.
fn meta_properties(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = dir.join("meta.properties");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Waits until the broker is registered and answers, failing early if its process ended.
async fn broker_up(
    pods: &Pods,
    admin: &KafkaClient,
    broker: &mut ManagedProcess,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(snap) = admin.snapshot().await
            && snap.broker_ids().contains(&0)
        {
            return Ok(());
        }
        if broker.has_exited() {
            bail!(
                "the broker's start script ended: {:?}\n{}",
                broker.exit_status(),
                broker.log_tail(40)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "broker {} did not come up in 180s:\n{}",
                pods.pod(Role::Broker),
                broker.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_script_scenarios() {
    let pods = Pods::new().expect("the pods' files are written");
    let mut s = Scenarios::new();
    s.run(
        "start.sh formats once, keeps data, refuses another cluster's volume and waits for a rack",
        Box::pin(scenario(&pods)),
    )
    .await;
    s.finish();
}

async fn scenario(pods: &Pods) -> anyhow::Result<()> {
    const TOPIC: &str = "kept";
    let logs = pods.dir.path();
    let mut controller = pods.start(Role::Controller, CLUSTER_ID, &logs.join("controller.log"))?;
    let mut broker = pods.start(Role::Broker, CLUSTER_ID, &logs.join("broker-1.log"))?;
    let admin = pods.admin()?;
    broker_up(pods, &admin, &mut broker).await?;
    ensure!(
        !controller.has_exited(),
        "the controller ended:\n{}",
        controller.log_tail(40)
    );

    // The placeholders were filled per pod: data under the pod's name, node ids from the
    // ordinal and the role's base, both formatted with the cluster's id.
    for role in [Role::Controller, Role::Broker] {
        let meta = meta_properties(&pods.data_dir(role))?;
        ensure!(
            meta.get("node.id") == Some(&node_id(role, 0).to_string()),
            "{} {meta:?}",
            role.as_str()
        );
        ensure!(
            meta.get("cluster.id").map(String::as_str) == Some(CLUSTER_ID),
            "{} {meta:?}",
            role.as_str()
        );
    }
    ensure!(
        broker.log_tail(2000).contains(&format!(
            "start.sh: starting broker {} as node 0",
            pods.pod(Role::Broker)
        )),
        "{}",
        broker.log_tail(40)
    );

    admin
        .create_topics(&[NewTopic {
            name: TOPIC.into(),
            partitions: 1,
            replication_factor: 1,
            config: BTreeMap::new(),
        }])
        .await?;
    let sent = produce(&pods.bootstrap(), TOPIC, 0..500, 1000).await?;
    broker.stop(Duration::from_secs(60)).await;

    // A restart formats nothing and keeps every message.
    restart_and_read(pods, &admin, &logs.join("broker-2.log"), TOPIC, &sent).await?;

    // Started with another cluster's id, the script refuses the volume and changes nothing.
    let log = logs.join("broker-3.log");
    let mut refused = pods.start(Role::Broker, OTHER_CLUSTER_ID, &log)?;
    let status = wait_for("the refused start to end", Duration::from_secs(30), || {
        let status = refused.exit_status();
        async move { Ok(status) }
    })
    .await?;
    ensure!(!status.success(), "the start script succeeded: {status:?}");
    let out = std::fs::read_to_string(&log)?;
    ensure!(
        out.contains(&format!("holds data of Kafka cluster {CLUSTER_ID}"))
            && out.contains(OTHER_CLUSTER_ID)
            && out.contains(&format!("set spec.clusterId: {CLUSTER_ID}"))
            && !out.contains("starting broker"),
        "{out}"
    );
    let meta = meta_properties(&pods.data_dir(Role::Broker))?;
    ensure!(
        meta.get("cluster.id").map(String::as_str) == Some(CLUSTER_ID),
        "{meta:?}"
    );

    // With the right id again, the broker comes back with its data.
    restart_and_read(pods, &admin, &logs.join("broker-4.log"), TOPIC, &sent).await?;

    // A broker of a rack-aware cluster waits for its pod's rack file (the downward-API file
    // the operator fills from the pod's node), then runs in that rack.
    let rack_file = logs.join("rack");
    std::fs::write(&rack_file, "")?;
    let mut racked = pods.start_with(
        Role::Broker,
        CLUSTER_ID,
        &logs.join("broker-5.log"),
        &[("KAFKA_OPERATOR_RACK_FILE", rack_file.display().to_string())],
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = racked.log_tail(20);
    ensure!(
        waiting.contains("waiting for the operator to write this pod's rack")
            && !waiting.contains("starting broker")
            && !racked.has_exited(),
        "{waiting}"
    );
    std::fs::write(&rack_file, "zone-b")?;
    broker_up(pods, &admin, &mut racked).await?;
    let snapshot = admin.snapshot().await?;
    let rack = snapshot
        .brokers
        .iter()
        .find(|b| b.id == 0)
        .and_then(|b| b.rack.clone());
    ensure!(
        rack.as_deref() == Some("zone-b"),
        "broker 0's rack: {rack:?}"
    );
    racked.stop(Duration::from_secs(60)).await;
    controller.stop(Duration::from_secs(60)).await;
    Ok(())
}

/// Starts the broker with the cluster's id, reads every message of `topic` back, stops it.
async fn restart_and_read(
    pods: &Pods,
    admin: &KafkaClient,
    log: &Path,
    topic: &str,
    sent: &HashSet<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut broker = pods.start(Role::Broker, CLUSTER_ID, log)?;
    broker_up(pods, admin, &mut broker).await?;
    let got = consume_all(
        &pods.bootstrap(),
        topic,
        1,
        sent.len(),
        Duration::from_secs(60),
    )
    .await?;
    assert_same_messages(sent, &got)?;
    broker.stop(Duration::from_secs(60)).await;
    Ok(())
}
