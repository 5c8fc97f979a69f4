//! The testbed's real node: containerd, the kubelet, kube-proxy, kube-scheduler and CoreDNS on
//! this machine, pods from the images `hack/build-images.sh` built. One control plane and one
//! node for all tests of this file (started on first use, torn down when the binary exits);
//! each test works in a namespace of its own. The operator's Deployment runs one small
//! KafkaCluster here, to read its JMX exporter sidecar; its larger clusters on the node are in
//! `nodes.rs` and `e2e_node.rs`.
//!
//! Needs root (the node makes a bridge, network namespaces, mounts and iptables rules).

#[path = "support/node.rs"]
mod node_support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use kafka_operator::api::validate::DEFAULT_JMX_EXPORTER_IMAGE;
use kafka_operator::resources::names::{CONFIG_DIR, METRICS_PORT};

use node_support::{
    cluster_running, eventually, http_get, kubectl, namespace, operator_pods_ready, port_forward,
    restricted_pod, testbed, wait_pod_ready,
};

#[tokio::test]
async fn a_restricted_pod_runs_ready_and_resolves_cluster_dns() {
    let ns = "node-pod";
    let client = namespace(ns).await;
    let script = r#"set -e
getent hosts kubernetes.default.svc.cluster.local > /tmp/resolved
# The API server through its Service: kube-proxy's rewrite of the ClusterIP, then the gateway.
exec 3<>/dev/tcp/kubernetes.default.svc.cluster.local/443
exec 3>&-
# The image's JRE and Kafka tools run as uid 1000 on a read-only root filesystem.
LOG_DIR=/tmp/logs /opt/kafka/bin/kafka-storage.sh random-uuid > /tmp/uuid
stat -c %g /tmp > /tmp/group
if touch /opt/kafka/written 2>/dev/null; then echo "root filesystem is writable"; exit 1; fi
echo "ready as $(id -u):$(id -g) in $POD_NAME"
touch /tmp/ready
exec sleep infinity
"#;
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&restricted_pod("restricted", script)),
    )
    .await;
    assert!(ok, "{err}");
    let pod = wait_pod_ready(&client, ns, "restricted", Duration::from_secs(180)).await;

    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    assert!(
        ip.starts_with("10.244.0."),
        "pod IP {ip} not on the node's bridge"
    );
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(testbed().node_name.as_str())
    );

    // kubectl exec and logs go API server -> kubelet -> containerd.
    let (ok, resolved, err) = kubectl(
        &["exec", "-n", ns, "restricted", "--", "cat", "/tmp/resolved"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        resolved.trim_start().starts_with("10.0.0.1 "),
        "kubernetes.default.svc.cluster.local resolved to {resolved:?}, not the first Service address"
    );
    let (ok, group, err) = kubectl(
        &["exec", "-n", ns, "restricted", "--", "cat", "/tmp/group"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(group.trim(), "1000", "fsGroup not applied to the emptyDir");
    let (ok, uuid, err) = kubectl(
        &["exec", "-n", ns, "restricted", "--", "cat", "/tmp/uuid"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        uuid.trim().len(),
        22,
        "kafka-storage.sh random-uuid printed {uuid:?}"
    );
    let (ok, logs, err) = kubectl(&["logs", "-n", ns, "restricted"], None).await;
    assert!(ok, "{err}");
    assert!(logs.contains("ready as 1000:1000 in restricted"), "{logs}");

    // A name outside the cluster gets no answer from anywhere: nothing is forwarded upstream.
    let (ok, _, _) = kubectl(
        &[
            "exec",
            "-n",
            ns,
            "restricted",
            "--",
            "getent",
            "hosts",
            "example.org",
        ],
        None,
    )
    .await;
    assert!(!ok, "a name outside cluster.local resolved");
}

/// A pod of the Kafka image under the brokers' security settings whose `/data` is a claim of
/// the default class.
fn pod_with_claim(name: &str, claim: &str, script: &str) -> String {
    let pod = restricted_pod(name, script);
    pod.replace(
        "      volumeMounts:\n",
        "      volumeMounts:\n        - name: data\n          mountPath: /data\n",
    )
    .replace(
        "  volumes:\n",
        &format!("  volumes:\n    - name: data\n      persistentVolumeClaim:\n        claimName: {claim}\n"),
    )
}

fn claim(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"
    )
}

#[tokio::test]
async fn a_claim_gets_a_local_volume_that_is_wiped_once_released() {
    let ns = "node-volume";
    let client = namespace(ns).await;
    let script = "set -e\nstat -c %g /data > /tmp/group\nls -A /data > /tmp/listing\necho kept > /data/file\ntouch /tmp/ready\nexec sleep infinity\n";
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&format!(
            "{}---\n{}",
            claim("first"),
            pod_with_claim("writer", "first", script)
        )),
    )
    .await;
    assert!(ok, "{err}");
    wait_pod_ready(&client, ns, "writer", Duration::from_secs(120)).await;
    let (ok, group, err) = kubectl(
        &["exec", "-n", ns, "writer", "--", "cat", "/tmp/group"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        group.trim(),
        "1000",
        "fsGroup not applied to the local volume"
    );
    let (_, volume, _) = kubectl(
        &[
            "get",
            "pvc",
            "-n",
            ns,
            "first",
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
        None,
    )
    .await;
    assert!(!volume.is_empty(), "claim not bound");
    let (_, path, _) = kubectl(
        &["get", "pv", &volume, "-o", "jsonpath={.spec.local.path}"],
        None,
    )
    .await;
    let written = std::path::Path::new(&path).join("file");
    assert_eq!(
        std::fs::read_to_string(&written).ok().as_deref(),
        Some("kept\n"),
        "the pod's write is not in the local volume's directory {path}"
    );

    // Released: the volume is deleted and its directory wiped; a new claim gets an empty one.
    let (ok, _, err) = kubectl(
        &[
            "delete",
            "-n",
            ns,
            "pod/writer",
            "pvc/first",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    eventually(
        &format!("released volume {volume} replaced"),
        Duration::from_secs(60),
        || {
            let volume = volume.clone();
            async move {
                let (_, out, _) =
                    kubectl(&["get", "pv", &volume, "--ignore-not-found"], None).await;
                out.trim().is_empty().then_some(())
            }
        },
    )
    .await;
    assert!(
        !std::path::Path::new(&path).exists(),
        "{path} was not wiped"
    );
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&format!(
            "{}---\n{}",
            claim("second"),
            pod_with_claim("reader", "second", script)
        )),
    )
    .await;
    assert!(ok, "{err}");
    wait_pod_ready(&client, ns, "reader", Duration::from_secs(120)).await;
    let (ok, listing, err) = kubectl(
        &["exec", "-n", ns, "reader", "--", "cat", "/tmp/listing"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(listing.trim(), "", "a new claim's volume was not empty");
}

#[tokio::test]
async fn a_claim_keeps_its_data_when_its_pod_is_deleted_and_made_again() {
    let ns = "node-keep";
    let client = namespace(ns).await;
    let script = "set -e\n[ -f /data/file ] && cp /data/file /tmp/found || true\necho kept > /data/file\ntouch /tmp/ready\nexec sleep infinity\n";
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&format!(
            "{}---\n{}",
            claim("kept"),
            pod_with_claim("first", "kept", script)
        )),
    )
    .await;
    assert!(ok, "{err}");
    wait_pod_ready(&client, ns, "first", Duration::from_secs(120)).await;
    let (ok, _, err) = kubectl(
        &[
            "delete",
            "-n",
            ns,
            "pod/first",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let (_, volume, _) = kubectl(
        &[
            "get",
            "pvc",
            "-n",
            ns,
            "kept",
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
        None,
    )
    .await;
    let (_, path, _) = kubectl(
        &["get", "pv", &volume, "-o", "jsonpath={.spec.local.path}"],
        None,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&path).join("file"))
            .ok()
            .as_deref(),
        Some("kept\n"),
        "the volume {volume} lost its data when its pod was deleted"
    );
    let (ok, _, err) = kubectl(
        &["apply", "-n", ns, "-f", "-"],
        Some(&pod_with_claim("second", "kept", script)),
    )
    .await;
    assert!(ok, "{err}");
    wait_pod_ready(&client, ns, "second", Duration::from_secs(120)).await;
    let (ok, found, err) = kubectl(
        &["exec", "-n", ns, "second", "--", "cat", "/tmp/found"],
        None,
    )
    .await;
    assert!(ok, "the next pod found nothing on the claim: {err}");
    assert_eq!(found, "kept\n");
}

/// One broker and one controller with the default CPU (requests that fit two cores, no limit),
/// the JMX exporter sidecar and a topic of 3 partitions, all on the broker.
const METERED_CLUSTER: &str = r#"apiVersion: krallistic.github.com/v1
kind: KafkaCluster
metadata:
  name: metered
spec:
  brokerCount: 1
  jmxSidecar: true
  resources:
    memory: 1Gi
    diskSpace: 1Gi
  controllers:
    replicas: 1
    resources:
      memory: 768Mi
      diskSpace: 1Gi
  kafkaOptions:
    minInsyncReplicas: 1
    autoCreateTopics: false
    numNetworkThreads: 2
    numIoThreads: 2
  topics:
    - name: metered
      partitions: 3
      replicationFactor: 1
"#;

/// The value of the sample `name` (without labels) in a Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[tokio::test]
async fn the_jmx_exporter_sidecar_serves_the_brokers_metrics() {
    let ns = "node-jmx";
    let client = namespace(ns).await;
    operator_pods_ready(&client, 1).await;
    let (ok, _, err) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(METERED_CLUSTER)).await;
    assert!(ok, "{err}");
    cluster_running(&client, ns, "metered", 1, Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Both containers of the broker pod are ready: the broker and the exporter beside it (its
    // readiness probe is its metrics port).
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods.get("metered-0").await.expect("broker pod");
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let mut containers: Vec<(String, String, bool)> = statuses
        .iter()
        .map(|c| (c.name.clone(), c.image.clone(), c.ready))
        .collect();
    containers.sort();
    assert_eq!(
        containers
            .iter()
            .map(|(name, _, ready)| (name.as_str(), *ready))
            .collect::<Vec<_>>(),
        [("jmx-exporter", true), ("kafka", true)],
        "the broker pod's containers: {containers:?}"
    );
    assert!(
        containers[0].1.ends_with(DEFAULT_JMX_EXPORTER_IMAGE),
        "the sidecar runs {}",
        containers[0].1
    );

    // The sidecar's metrics port through `kubectl port-forward`, from this machine: the broker's
    // own MBeans through the exporter's JMX connection on the pod's loopback, named by the
    // operator's rules. The topic's 3 partitions are the broker's, each led by it (ReplicaManager's
    // gauges), once the operator has created the topic.
    let (mut forward, port) = port_forward(ns, "pod/metered-0", METRICS_PORT);
    let started = Instant::now();
    // Each answer is a scrape of every MBean of the broker over RMI, which takes a while on two
    // busy cores (jmx_scrape_duration_seconds reports the previous one's).
    let deadline = started + Duration::from_secs(240);
    let mut last = String::new();
    let mut first_answer = None;
    let metrics = loop {
        if let Some(answer) = http_get(port, "/metrics").await {
            first_answer.get_or_insert_with(|| started.elapsed());
            let scraped = sample(&answer, "jmx_scrape_error") == Some(0.0);
            let partitions = sample(&answer, "kafka_server_replicamanager_partitioncount");
            let leaders = sample(&answer, "kafka_server_replicamanager_leadercount");
            if scraped && partitions == Some(3.0) && leaders == Some(3.0) {
                break answer;
            }
            last = answer;
        }
        if Instant::now() > deadline {
            panic!(
                "no broker metrics with the topic's 3 partitions after 240 s; last answer:\n{last}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let _ = forward.kill().await;
    eprintln!(
        "the sidecar's broker metrics after {:?} (its first answer after {first_answer:?}):\n{}",
        started.elapsed(),
        metrics
            .lines()
            .filter(|l| l.starts_with("kafka_server_replicamanager_")
                || l.starts_with("jmx_scrape_")
                || l.starts_with("jmx_exporter_build_info"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kafka_server_brokertopicmetrics_")),
        "no BrokerTopicMetrics in the sidecar's metrics:\n{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "jmx_exporter_build_info{{name=\"jmx_prometheus_standalone\",version=\"{}\"}} 1",
            DEFAULT_JMX_EXPORTER_IMAGE
                .rsplit(':')
                .next()
                .unwrap_or_default()
        )),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "kafka_server_replicamanager_underreplicatedpartitions"
        ),
        Some(0.0),
        "{metrics}"
    );

    let (ok, logs, err) =
        kubectl(&["logs", "-n", ns, "metered-0", "-c", "jmx-exporter"], None).await;
    assert!(ok, "{err}");
    assert!(
        logs.contains(&format!(
            "on 0.0.0.0:{METRICS_PORT} from {CONFIG_DIR}/jmx-exporter.yaml"
        )),
        "the sidecar's log: {logs}"
    );
}
