//! Several real nodes on this machine: three kubelets, each with its own containerd, pod range
//! and local volumes, in zones `testbed-zone-a`, `-b` and `-c`, on one control plane with
//! `deploy/` installed. The operator's own Deployment runs a KRaft cluster on the original
//! example's `confluentinc/cp-kafka:latest` (which the kubelets pull from the node's registry on
//! every start, as that tag is) whose brokers the operator's anti-affinity spreads over the nodes; pods on one node reach pods on the others
//! and resolve them by the cluster's DNS. Beside it, the original project's example as written
//! (ZooKeeper mode, `confluentinc/cp-kafka:latest`, a CPU per broker) with
//! `examples/manual-zookeeper.yaml`.
//!
//! Needs root (the nodes make a bridge, network namespaces, mounts and iptables rules).

#[path = "support/node.rs"]
mod node_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::Api;

use kafka_operator::api::TopicPhase;
use kafka_operator_testbed::node::{ZONE_LABEL, node_name, pod_cidr, zone_name};

use node_support::{
    KRAFT_CLUSTER, client_pod, cluster_running, eventually, exec_in_client, http_get, kubectl,
    namespace, on_node, operator_pods_ready, port_forward, testbed_with_nodes, wait_pod_ready,
};

const NODES: u8 = 3;

#[tokio::test]
async fn three_nodes_each_with_its_zone_pod_range_and_kubelet() {
    let testbed = testbed_with_nodes(NODES);
    let client = testbed.kube.admin_client().await.expect("admin client");
    let nodes: Api<Node> = Api::all(client);
    let mut ports = BTreeSet::new();
    for index in 0..NODES {
        let name = node_name(index);
        let node = nodes.get(&name).await.expect("node");
        assert_eq!(
            node.labels().get(ZONE_LABEL),
            Some(&zone_name(index)),
            "{name}'s zone"
        );
        assert_eq!(
            node.labels().get("kubernetes.io/hostname"),
            Some(&name),
            "{name}'s hostname label"
        );
        let spec = node.spec.clone().unwrap_or_default();
        assert_eq!(spec.pod_cidr, Some(pod_cidr(index)), "{name}'s podCIDR");
        let status = node.status.clone().unwrap_or_default();
        assert!(
            status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            "{name} not Ready"
        );
        let port = status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port)
            .expect("kubelet endpoint");
        ports.insert(port);
        let cpu = status
            .capacity
            .unwrap_or_default()
            .get("cpu")
            .map(|q| q.0.clone());
        eprintln!(
            "{name}: zone {}, kubelet port {port}, cpu {cpu:?}",
            zone_name(index)
        );
    }
    assert_eq!(ports.len(), usize::from(NODES), "kubelet ports {ports:?}");

    // Every node's pod range is on the bridge from this machine too, and forwarded pod
    // traffic still passes the guard that keeps it on the bridge.
    for index in 0..NODES {
        let address = format!("10.244.{index}.200");
        let out = std::process::Command::new("ip")
            .args(["route", "get", &address])
            .output()
            .expect("ip route get");
        let route = String::from_utf8_lossy(&out.stdout);
        assert!(
            route.contains("dev kotb0"),
            "{address} is not routed into the bridge: {route}"
        );
    }
    let out = std::process::Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()
        .expect("iptables -S FORWARD");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-j KAFKA-OPERATOR-TESTBED"),
        "no forwarding guard"
    );
}

const NS: &str = "nodes-kraft";

/// The node each pod of `names` runs on, and its IP.
async fn placement(pods: &Api<Pod>, names: &[String]) -> BTreeMap<String, (String, String)> {
    let mut placed = BTreeMap::new();
    for name in names {
        let pod = pods.get(name).await.expect("pod");
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("scheduled");
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        placed.insert(name.clone(), (node, ip));
    }
    placed
}

#[tokio::test]
async fn the_brokers_spread_over_the_nodes_and_reach_each_other() {
    let testbed = testbed_with_nodes(NODES);
    let client = namespace(NS).await;

    let operator = operator_pods_ready(&client, 1).await.remove(0);

    let (ok, _, err) = kubectl(&["apply", "-n", NS, "-f", "-"], Some(KRAFT_CLUSTER)).await;
    assert!(ok, "{err}");
    // While the cluster comes up: kubectl port-forward (API server -> kubelet -> containerd,
    // into the pod's network namespace) to the operator's metrics port.
    operator_metrics_through_port_forward(&operator.name_any()).await;
    // The client on the first node: every broker on another node is reached across nodes.
    let first = testbed.node_names[0].clone();
    let (ok, _, err) = kubectl(
        &["apply", "-n", NS, "-f", "-"],
        Some(&on_node(&client_pod(), &first)),
    )
    .await;
    assert!(ok, "{err}");

    let kc = cluster_running(&client, NS, "kraft", 3, Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        kc.status
            .as_ref()
            .and_then(|s| s.cluster_id.as_ref())
            .is_some(),
        "no cluster id in status"
    );

    // The operator's anti-affinity: one broker per node, so one per zone, and the same for
    // the controllers.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let brokers: Vec<String> = (0..3).map(|i| format!("kraft-{i}")).collect();
    let controllers: Vec<String> = (0..3).map(|i| format!("kraft-controller-{i}")).collect();
    let broker_nodes = placement(&pods, &brokers).await;
    let controller_nodes = placement(&pods, &controllers).await;
    eprintln!("brokers: {broker_nodes:?}\ncontrollers: {controller_nodes:?}");
    let all: BTreeSet<String> = testbed.node_names.iter().cloned().collect();
    let used: BTreeSet<String> = broker_nodes.values().map(|(n, _)| n.clone()).collect();
    assert_eq!(used, all, "the brokers do not spread: {broker_nodes:?}");
    let used: BTreeSet<String> = controller_nodes.values().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        used, all,
        "the controllers do not spread: {controller_nodes:?}"
    );

    // Each pod's address is from its node's range; each data volume is a local volume of the
    // pod's node (the scheduler bound the claim after placing the pod).
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for (pod, (node, ip)) in broker_nodes.iter().chain(&controller_nodes) {
        let index = node_index(node);
        let slice = pod_cidr(index);
        let prefix = slice.trim_end_matches("0/24");
        assert!(
            ip.starts_with(prefix),
            "{pod} on {node} has {ip}, not in {slice}"
        );
        let claim = claims.get(&format!("data-{pod}")).await.expect("claim");
        let volume = claim.spec.and_then(|s| s.volume_name).expect("claim bound");
        let volume = volumes.get(&volume).await.expect("volume");
        let affinity = serde_json::to_string(
            &volume
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .expect("local volume's node affinity"),
        )
        .expect("json");
        assert!(
            affinity.contains(&format!("\"{node}\"")),
            "{pod} on {node} got volume {} of {affinity}",
            volume.name_any()
        );
        assert_eq!(
            volume
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref()),
            Some("testbed-local"),
            "{pod}'s volume"
        );
    }

    // Rack awareness (`rack.topologyKey` is the zone label): the operator wrote each broker
    // pod's zone on it, and Kafka reports every broker in the zone of its node, one per zone.
    let (ok, out, err) = kubectl(
        &[
            "exec",
            "-n",
            NS,
            "kraft-0",
            "--",
            "kafka-broker-api-versions",
            "--bootstrap-server",
            &format!("kraft.{NS}.svc.cluster.local:9092"),
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let mut zones = BTreeSet::new();
    for (i, pod) in brokers.iter().enumerate() {
        let zone = zone_name(node_index(&broker_nodes[pod].0));
        let written = pods.get(pod).await.expect("pod");
        assert_eq!(
            written.annotations().get("krallistic.github.com/rack"),
            Some(&zone),
            "{pod}'s rack annotation"
        );
        let line = format!("(id: {i} rack: {zone} ");
        assert!(
            out.lines().any(|l| l.contains(&line)),
            "Kafka does not report broker {i} in {zone}: {out}"
        );
        zones.insert(zone);
    }
    assert_eq!(zones.len(), 3, "one broker per zone");

    // The original example's image as written: `cp-kafka:latest`, which Kubernetes pulls on
    // every start (its default policy for that tag), from the node's registry, and which is
    // Kafka 4 with Confluent's layout.
    for pod in brokers.iter().chain(&controllers) {
        let pod = pods.get(pod).await.expect("pod");
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("confluentinc/cp-kafka:latest"),
            "{}",
            pod.name_any()
        );
        assert_eq!(
            container.image_pull_policy.as_deref(),
            Some("Always"),
            "{}",
            pod.name_any()
        );
    }
    let (ok, events, err) = kubectl(
        &[
            "get",
            "events",
            "-n",
            NS,
            "--field-selector",
            "involvedObject.name=kraft-0,reason=Pulled",
            "-o",
            "custom-columns=MESSAGE:.message",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        events.contains("Successfully pulled image \"confluentinc/cp-kafka:latest\""),
        "the kubelet pulled no image for kraft-0: {events}"
    );
    let (ok, out, err) = kubectl(
        &[
            "exec",
            "-n",
            NS,
            "kraft-0",
            "--",
            "sh",
            "-c",
            "command -v kafka-topics; kafka-topics --version",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("/usr/bin/kafka-topics"), "{out}");
    assert!(
        lines.any(|l| l.starts_with("4.")),
        "cp-kafka:latest is Kafka 4: {out}"
    );

    // The API server reaches every node's kubelet (logs) at the port the Node reports.
    for pod in brokers.iter().chain(&controllers) {
        let (ok, _, err) = kubectl(&["logs", "-n", NS, pod, "--tail=1"], None).await;
        assert!(ok, "kubectl logs {pod}: {err}");
    }

    // From the first node, every broker on another node by its DNS name and its address.
    let client_pod = wait_pod_ready(&client, NS, "kafka-client", Duration::from_secs(120)).await;
    assert_eq!(
        client_pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref()),
        Some(first.as_str())
    );
    let mut across = 0;
    for (pod, (node, ip)) in &broker_nodes {
        if *node == first {
            continue;
        }
        across += 1;
        let host = format!("{pod}.kraft.{NS}.svc.cluster.local");
        let (ok, out, err) = exec_in_client(
            NS,
            &format!(
                "set -e; getent hosts {host}; exec 3<>/dev/tcp/{ip}/9092; exec 3>&-; echo reached"
            ),
        )
        .await;
        assert!(ok, "{pod} on {node} not reached from {first}: {err}");
        assert!(
            out.trim_start().starts_with(&format!("{ip} ")) && out.contains("reached"),
            "{host} resolved to {out:?}, not {ip}"
        );
    }
    assert_eq!(across, 2, "two brokers are on other nodes than the client");

    // The topic the operator created, as Kafka's own tool describes it, and messages replicated
    // over the three nodes (acks=all, min.insync.replicas 2), produced through the headless
    // Service and consumed through a per-broker Service's ClusterIP.
    round_trip(
        NS,
        "orders",
        (3, 3),
        &format!("kraft.{NS}.svc.cluster.local:9092"),
        &format!("kraft-broker-2.{NS}.svc.cluster.local:9092"),
        &["acks=all", "enable.idempotence=true"],
    )
    .await;
}

/// The index of a testbed node from its name (`testbed-node-<index>`).
fn node_index(node: &str) -> u8 {
    node.strip_prefix("testbed-node-")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{node} is not a testbed node"))
}

/// `kubectl port-forward` to the operator pod's metrics port answers with its metrics.
async fn operator_metrics_through_port_forward(pod: &str) {
    let (mut forward, port) = port_forward("kafka-operator", &format!("pod/{pod}"), 8080);
    let metrics = eventually(
        "the operator's metrics through port-forward",
        Duration::from_secs(30),
        || async move {
            let answer = http_get(port, "/metrics").await?;
            answer.contains("kafka_operator_").then_some(answer)
        },
    )
    .await;
    assert!(
        metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"),
        "{metrics}"
    );
    let _ = forward.kill().await;
}

/// The original project's example, applied as its README says: `examples/manual-zookeeper.yaml`
/// (the official `zookeeper` image), then `examples/kafka-cluster.yaml` unchanged but for the
/// kind's spelling, in the `default` namespace its `zookeeperConnect` names.
#[tokio::test]
async fn the_original_example_runs_as_written() {
    let testbed = testbed_with_nodes(NODES);
    let client = testbed.kube.admin_client().await.expect("admin client");
    let ns = "default";
    operator_pods_ready(&client, 1).await;

    let root = kafka_operator_testbed::process::project_root();
    for example in ["manual-zookeeper.yaml", "kafka-cluster.yaml"] {
        let path = root.join("examples").join(example);
        let (ok, _, err) = kubectl(
            &["apply", "-n", ns, "-f", &path.display().to_string()],
            None,
        )
        .await;
        assert!(ok, "kubectl apply -f examples/{example}: {err}");
    }
    let (ok, _, err) = kubectl(&["apply", "-n", ns, "-f", "-"], Some(&client_pod())).await;
    assert!(ok, "{err}");

    let kc = cluster_running(&client, ns, "test-cluster-1", 3, Duration::from_secs(900))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let topics = kc
        .status
        .as_ref()
        .map(|s| s.topics.clone())
        .unwrap_or_default();
    let ready: BTreeSet<&str> = topics
        .iter()
        .filter(|t| t.state == TopicPhase::Ready)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(ready, BTreeSet::from(["test1", "test2"]), "{topics:?}");

    // `cp-kafka:latest` is Kafka 4, which has no ZooKeeper mode: the brokers run the last
    // Confluent Platform release that has it, and the operator says so.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let brokers: Vec<String> = (0..3).map(|i| format!("test-cluster-1-{i}")).collect();
    for name in &brokers {
        let pod = pods.get(name).await.expect("broker pod");
        let image = pod.spec.as_ref().map(|s| s.containers[0].image.clone());
        assert_eq!(
            image,
            Some(Some("confluentinc/cp-kafka:7.9.11".to_string())),
            "{name}"
        );
        let requests = pod.spec.as_ref().and_then(|s| {
            s.containers[0]
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("cpu").cloned())
        });
        assert_eq!(requests.map(|q| q.0), Some("1".to_string()), "{name}'s CPU");
    }
    let (ok, events, err) = kubectl(
        &[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.kind=KafkaCluster",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        events.contains("ImageResolved") && events.contains("confluentinc/cp-kafka:7.9.11"),
        "{events}"
    );

    // A CPU per broker: three brokers need the three nodes, one each.
    let placed = placement(&pods, &brokers).await;
    let used: BTreeSet<String> = placed.values().map(|(n, _)| n.clone()).collect();
    let all: BTreeSet<String> = testbed.node_names.iter().cloned().collect();
    assert_eq!(used, all, "the brokers do not spread: {placed:?}");

    // The Confluent layout: Kafka's tools on the PATH without .sh, the data on the volume.
    let (ok, out, err) = kubectl(
        &[
            "exec",
            "-n",
            ns,
            "test-cluster-1-0",
            "--",
            "sh",
            "-c",
            "command -v kafka-server-start; ls /var/lib/kafka/data/kafka-log",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("/usr/bin/kafka-server-start\n"), "{out}");
    assert!(out.contains("meta.properties"), "{out}");

    // ZooKeeper answers its four-letter words and holds the brokers' registrations.
    let (ok, out, err) = exec_in_client(
        ns,
        "exec 3<>/dev/tcp/zk-headless.default.svc.cluster.local/2181; echo mntr >&3; cat <&3",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("zk_server_state\tstandalone"), "{out}");
    let ephemerals: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("zk_ephemerals_count\t"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ephemerals count in {out}"));
    assert!(
        ephemerals >= 4,
        "three broker registrations and a controller: {ephemerals}"
    );

    // Messages through the cluster's Service into test2 (2 partitions, 2 replicas), read back.
    let bootstrap = "test-cluster-1.default.svc.cluster.local:9092";
    round_trip(ns, "test2", (2, 2), bootstrap, bootstrap, &["acks=all"]).await;
}

/// `topic` as `kafka-topics.sh` describes it has `layout` (partitions, replication factor), and
/// 100 messages produced through `produce` (with the console producer's `producer_properties`)
/// are read back through `consume`, all of them and nothing else, by Kafka's console tools in
/// the client pod.
async fn round_trip(
    ns: &str,
    topic: &str,
    layout: (u32, u32),
    produce: &str,
    consume: &str,
    producer_properties: &[&str],
) {
    let (ok, described, err) = exec_in_client(
        ns,
        &format!(
            "/opt/kafka/bin/kafka-topics.sh --bootstrap-server {produce} --describe --topic {topic}"
        ),
    )
    .await;
    assert!(ok, "{err}");
    let (partitions, replicas) = layout;
    assert!(
        described.contains(&format!("PartitionCount: {partitions}"))
            && described.contains(&format!("ReplicationFactor: {replicas}")),
        "{described}"
    );
    let sent: BTreeSet<String> = (1..=100).map(|i| format!("{topic}-{i}")).collect();
    let properties: String = producer_properties
        .iter()
        .map(|p| format!(" --producer-property {p}"))
        .collect();
    let (ok, _, err) = exec_in_client(
        ns,
        &format!(
            "for i in $(seq 1 100); do echo {topic}-$i; done | /opt/kafka/bin/kafka-console-producer.sh \
             --bootstrap-server {produce} --topic {topic}{properties}"
        ),
    )
    .await;
    assert!(ok, "producer failed: {err}");
    let (ok, consumed, err) = exec_in_client(
        ns,
        &format!(
            "/opt/kafka/bin/kafka-console-consumer.sh --bootstrap-server {consume} \
             --topic {topic} --from-beginning --max-messages 100 --timeout-ms 60000 --group {topic}-test"
        ),
    )
    .await;
    assert!(ok, "consumer failed: {err}");
    let received: BTreeSet<String> = consumed.lines().map(str::to_string).collect();
    assert_eq!(received, sent, "messages read back differ from those sent");
}
