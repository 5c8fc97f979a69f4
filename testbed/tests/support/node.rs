//! The real node shared by the tests of one binary: one control plane (with `deploy/` installed)
//! and one node (or several, see [`testbed_with_nodes`]), started on first use and torn down
//! when the binary exits; each test works in a namespace of its own. Helpers for pods of the
//! Kafka image and kubectl.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, PostParams};

use kafka_operator::api::{KafkaCluster, Phase};

use kafka_operator_testbed::kube::LocalKube;
use kafka_operator_testbed::node::{
    LocalNode, NodeOptions, SharedNode, ensure_default_service_account, tear_down_at_exit,
};
use kafka_operator_testbed::process::{pinned_version, project_root};

pub struct Testbed {
    pub kube: LocalKube,
    /// Every node of the testbed; its `ctr` finds the node of a container by its id.
    pub node: SharedNode,
    /// The first node's name (the node's, when there is one).
    pub node_name: String,
    /// Every node's name, in order.
    pub node_names: Vec<String>,
}

static TESTBED: OnceLock<Testbed> = OnceLock::new();

/// The shared control plane and node. Their processes belong to a runtime on a thread of its
/// own, so they outlive each test's runtime. One node, unless the binary started the testbed
/// with [`testbed_with_nodes`].
pub fn testbed() -> &'static Testbed {
    TESTBED.get_or_init(|| start_testbed(1))
}

/// The shared control plane with `nodes` nodes. A binary that wants several calls this before
/// anything else in each of its tests (the helpers here call [`testbed`], which starts one node
/// if none runs yet); panics if the testbed runs with another number of nodes.
pub fn testbed_with_nodes(nodes: u8) -> &'static Testbed {
    let testbed = TESTBED.get_or_init(|| start_testbed(nodes));
    assert_eq!(
        testbed.node_names.len(),
        usize::from(nodes),
        "this binary's testbed runs {} nodes: call testbed_with_nodes({nodes}) first in each test",
        testbed.node_names.len()
    );
    testbed
}

fn start_testbed(nodes: u8) -> Testbed {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client=off,kafka_operator_testbed=info".into()),
        )
        .with_test_writer()
        .try_init();
    let started = kafka_operator_testbed::process::start_in_background(move || async move {
        let started = Instant::now();
        let (kube, node) = LocalNode::start_with_control_plane(
            vec![project_root().join("deploy/kafka-operator.yaml")],
            NodeOptions {
                nodes,
                ..Default::default()
            },
        )
        .await?;
        let node_names = node.names();
        eprintln!(
            "{} Ready after {:?}; logs in {}",
            node_names.join(", "),
            started.elapsed(),
            node.log_dir().display()
        );
        anyhow::Ok(Testbed {
            kube,
            node: tear_down_at_exit(node),
            node_name: node_names[0].clone(),
            node_names,
        })
    });
    match started {
        Ok(testbed) => testbed,
        Err(e) => panic!("starting the node testbed: {e:#}"),
    }
}

pub async fn namespace(name: &str) -> Client {
    let client = testbed().kube.admin_client().await.expect("admin client");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    ensure_default_service_account(&client, name)
        .await
        .expect("default ServiceAccount");
    client
}

/// `kubectl port-forward -n NS TARGET LOCAL:REMOTE` in the background, on a free local port;
/// the forward ends when the returned child is dropped.
pub fn port_forward(ns: &str, target: &str, remote: u16) -> (tokio::process::Child, u16) {
    let port = kafka_operator_testbed::process::free_port().expect("free port");
    let forward = tokio::process::Command::new(kafka_operator_testbed::kube::kubectl_path())
        .arg(format!(
            "--kubeconfig={}",
            testbed().kube.kubeconfig().display()
        ))
        .args([
            "port-forward",
            "-n",
            ns,
            target,
            &format!("{port}:{remote}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward");
    (forward, port)
}

/// `GET PATH` over HTTP/1.0 on this machine's `port`: the whole answer, headers and body, or
/// None while nothing answers.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    Some(answer)
}

/// kubectl as admin; returns (success, stdout, stderr).
pub async fn kubectl(args: &[&str], input: Option<&str>) -> (bool, String, String) {
    let out = testbed()
        .kube
        .kubectl_with_input(args, input)
        .await
        .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The node's log tail, for a failure message (with several nodes, a kubelet's or containerd's
/// of each).
pub fn node_log(process: &str) -> String {
    let node = testbed().node.lock().unwrap_or_else(|e| e.into_inner());
    node.as_ref()
        .map(|n| n.log_tail(process, 30))
        .unwrap_or_default()
}

/// Polls `check` until it returns Some; an error after `timeout`, with the kubelet's log.
pub async fn wait<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {what}\nkubelet log:\n{}",
                node_log("kubelet")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// [`wait`], panicking on timeout.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait(what, timeout, check)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub async fn wait_pod_ready(client: &Client, ns: &str, name: &str, timeout: Duration) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(&format!("pod {ns}/{name} Ready"), timeout, || {
        let pods = pods.clone();
        async move { pods.get_opt(name).await.ok().flatten().filter(pod_ready) }
    })
    .await
}

pub fn kafka_image() -> String {
    format!(
        "apache/kafka:{}",
        pinned_version("KAFKA_VERSION").expect("KAFKA_VERSION")
    )
}

/// A pod of the Kafka image under the security settings the operator gives its brokers, with
/// `script` as its command; Ready once the script has touched /tmp/ready.
pub fn restricted_pod(name: &str, script: &str) -> String {
    let script = serde_json::to_string(script).expect("script");
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 2
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    fsGroup: 1000
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: main
      image: {image}
      command: ["bash", "-c", {script}]
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
      readinessProbe:
        exec:
          command: ["cat", "/tmp/ready"]
        periodSeconds: 1
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities:
          drop: ["ALL"]
      volumeMounts:
        - name: scratch
          mountPath: /tmp
  volumes:
    - name: scratch
      emptyDir: {{}}
"#,
        image = kafka_image(),
    )
}

/// `pod` (a manifest of [`restricted_pod`]) placed on node `node` by the scheduler.
pub fn on_node(pod: &str, node: &str) -> String {
    pod.replacen(
        "\nspec:\n",
        &format!("\nspec:\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n"),
        1,
    )
}

/// A client pod of the Kafka image for the console tools, so they run as a user's would:
/// inside the cluster, by the names the cluster's DNS gives.
pub fn client_pod() -> String {
    restricted_pod("kafka-client", "touch /tmp/ready\nexec sleep infinity\n")
}

pub async fn exec_in_client(ns: &str, script: &str) -> (bool, String, String) {
    kubectl(
        &[
            "exec",
            "-n",
            ns,
            "kafka-client",
            "--",
            "env",
            "LOG_DIR=/tmp/logs",
            "KAFKA_HEAP_OPTS=-Xmx128m",
            "bash",
            "-c",
            script,
        ],
        None,
    )
    .await
}

/// A small KRaft cluster `kraft`: 3 brokers and 3 controllers on local volumes, sized for two
/// cores, with a topic `orders` of 3 replicas, on the original example's image
/// (`confluentinc/cp-kafka:latest`, which Kubernetes pulls on every start).
pub const KRAFT_CLUSTER: &str = r#"apiVersion: krallistic.github.com/v1
kind: KafkaCluster
metadata:
  name: kraft
spec:
  brokerCount: 3
  image: confluentinc/cp-kafka:latest
  resources:
    cpu: 100m
    memory: 1Gi
    diskSpace: 1Gi
  controllers:
    replicas: 3
    resources:
      cpu: 100m
      memory: 768Mi
      diskSpace: 1Gi
  minimumGracePeriod: 30
  rack:
    topologyKey: topology.kubernetes.io/zone
  kafkaOptions:
    minInsyncReplicas: 2
    autoCreateTopics: false
    numNetworkThreads: 2
    numIoThreads: 2
    config:
      group.initial.rebalance.delay.ms: "0"
      offsets.topic.num.partitions: "3"
      transaction.state.log.num.partitions: "3"
  topics:
    - name: orders
      partitions: 3
      replicationFactor: 3
"#;

/// The operator's pods from `deploy/` (its image, ServiceAccount, probes, read-only root
/// filesystem), once `replicas` of them are Ready.
pub async fn operator_pods_ready(client: &Client, replicas: usize) -> Vec<Pod> {
    let operators: Api<Pod> = Api::namespaced(client.clone(), "kafka-operator");
    eventually(
        &format!("{replicas} operator pod(s) Ready"),
        Duration::from_secs(240),
        || {
            let operators = operators.clone();
            async move {
                let list = operators.list(&Default::default()).await.ok()?;
                let ready: Vec<Pod> = list.items.into_iter().filter(pod_ready).collect();
                (ready.len() >= replicas).then_some(ready)
            }
        },
    )
    .await
}

/// KafkaCluster `name` once it is Running with `brokers` ready brokers and no operation; on
/// timeout, an error with its pods and claims, status, events and the operator's and first
/// broker's logs.
pub async fn cluster_running(
    client: &Client,
    ns: &str,
    name: &str,
    brokers: i32,
    within: Duration,
) -> anyhow::Result<KafkaCluster> {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    let running = tokio::time::timeout(within, async {
        loop {
            if let Ok(kc) = clusters.get(name).await
                && let Some(status) = kc.status.as_ref()
                && status.phase == Some(Phase::Running)
                && status.ready_brokers == brokers
                && status.operation.is_none()
            {
                return Ok(kc);
            }
            if let Some(pod) = crash_looping(&pods).await {
                return Err(pod);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .await;
    let crashed = match running {
        Ok(Ok(kc)) => {
            eprintln!(
                "KafkaCluster {ns}/{name} Running after {:?}",
                started.elapsed()
            );
            return Ok(kc);
        }
        Ok(Err(pod)) => Some(pod),
        Err(_) => None,
    };
    let (_, pods, _) = kubectl(&["get", "pods,pvc", "-n", ns, "-o", "wide"], None).await;
    let (_, status, _) =
        kubectl(&["get", "kafkacluster", "-n", ns, name, "-o", "yaml"], None).await;
    let (_, events, _) = kubectl(&["get", "events", "-n", ns], None).await;
    let (_, operator_log, _) = kubectl(
        &[
            "logs",
            "-n",
            "kafka-operator",
            "deployment/kafka-operator",
            "--tail=40",
        ],
        None,
    )
    .await;
    if let Some(pod) = crashed {
        let (_, log, _) = kubectl(&["logs", "-n", ns, &pod, "--previous", "--tail=60"], None).await;
        anyhow::bail!(
            "pod {ns}/{pod} is crash-looping while KafkaCluster {ns}/{name} comes up\n{pods}\n{status}\n{events}\noperator:\n{operator_log}\n{pod}, its last run:\n{log}"
        )
    }
    let (_, broker_log, _) =
        kubectl(&["logs", "-n", ns, &format!("{name}-0"), "--tail=40"], None).await;
    anyhow::bail!(
        "KafkaCluster {ns}/{name} not Running with {brokers} ready brokers after {within:?}\n{pods}\n{status}\n{events}\noperator:\n{operator_log}\n{name}-0:\n{broker_log}"
    )
}

/// The first pod with a container that has restarted four times and waits in CrashLoopBackOff:
/// a wait for it to become ready would only run out.
async fn crash_looping(pods: &Api<Pod>) -> Option<String> {
    let list = pods.list(&Default::default()).await.ok()?;
    list.items.into_iter().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses
            .iter()
            .any(|c| {
                c.restart_count >= 4
                    && c.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
            .then(|| pod.metadata.name.clone().unwrap_or_default())
    })
}
