//! Local mode: with no cluster configured, `kafka-operator run` brings up a real Kubernetes
//! control plane on this machine, installs the operator's manifests, applies the original
//! project's example and shows what the operator reconciled. As root, the cluster runs on real
//! nodes (containerd and kubelets, see [`crate::node`]) with the operator as the Deployment of
//! `deploy/`; otherwise the operator runs in this process under the manifests' RBAC and the
//! pods run as local Kafka brokers (a stand-in kubelet).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::{Api, Client, ResourceExt};

use crate::kafka::{LocalKafka, LocalKafkaOptions, zookeeper_mode_version};
use crate::kube::{LocalKube, kubectl_path};
use crate::kubelet::LocalKubelet;
use crate::node::{LocalNode, MAX_NODES, NodeOptions};
use crate::process::project_root;
use kafka_operator::api::{KafkaCluster, Phase, TopicPhase, validate};
use kafka_operator::controller::{self, Settings};
use kafka_operator::metrics::Metrics;

const NAMESPACE: &str = "default";
/// The original project's example, which the local mode plays.
const EXAMPLE: &str = "examples/kafka-cluster.yaml";

/// Where the local cluster's pods run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pods {
    /// On real nodes when this process may make them (root), else on the stand-in.
    Auto,
    /// On real nodes: containerd, kubelets, the images of `hack/build-images.sh`.
    Node,
    /// As local Kafka processes, with the operator in this process.
    StandIn,
}

/// Runs the operator against a local testbed. With `once`, exits after showing the result.
pub async fn run(once: bool, pods: Pods) -> anyhow::Result<()> {
    let root_user = unsafe { libc::geteuid() } == 0;
    match pods {
        Pods::Node => on_node(once).await,
        Pods::Auto if root_user => on_node(once).await,
        Pods::Auto => {
            eprintln!(
                "not running as root, which a real node needs (network namespaces, mounts, iptables): the pods' containers run as local Kafka processes instead"
            );
            on_stand_in(once).await
        }
        Pods::StandIn => on_stand_in(once).await,
    }
}

/// The original example, as the operator validates it.
fn example() -> anyhow::Result<(KafkaCluster, kafka_operator::api::Cluster)> {
    let path = project_root().join(EXAMPLE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut kc: KafkaCluster =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    kc.metadata.namespace = Some(NAMESPACE.into());
    let cluster = validate(&kc).map_err(|e| anyhow::anyhow!("the example is invalid: {e}"))?;
    Ok((kc, cluster))
}

/// Runs kubectl against `kube`; its output, or an error with what it printed.
async fn kubectl(kube: &LocalKube, args: &[&str]) -> anyhow::Result<String> {
    let out = kube.kubectl(args).await?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prints a command as a user would type it, then runs it.
/// `kubectl apply -f FILE` (FILE relative to the project's root) as a user would type it, with
/// what kubectl answers: the operator's bundle server-side, an example into the namespace of the
/// local mode.
async fn apply_shown(kube: &LocalKube, file: &str, server_side: bool) -> anyhow::Result<()> {
    let path = project_root().join(file).display().to_string();
    let (flag, args) = if server_side {
        (
            "--server-side ",
            vec!["apply", "--server-side", "-f", &path],
        )
    } else {
        ("", vec!["apply", "-n", NAMESPACE, "-f", &path])
    };
    println!("\n$ kubectl apply {flag}-f {file}");
    print!("{}", kubectl(kube, &args).await?);
    Ok(())
}

async fn shown(kube: &LocalKube, shown: &str, args: &[&str]) -> anyhow::Result<()> {
    println!("\n$ {shown}");
    let out = kubectl(kube, args).await?;
    println!("{}", out.trim_end());
    Ok(())
}

/// Waits until the cluster is Running with every topic of its spec Ready, or `within` passed.
async fn wait_running(client: Client, name: &str, within: Duration) -> anyhow::Result<()> {
    let clusters: Api<KafkaCluster> = Api::namespaced(client, NAMESPACE);
    let deadline = Instant::now() + within;
    loop {
        let kc = clusters.get(name).await?;
        let status = kc.status.clone().unwrap_or_default();
        let topics_ready = status.topics.len() == kc.spec.topics.len()
            && status.topics.iter().all(|t| t.state == TopicPhase::Ready);
        if status.phase == Some(Phase::Running) && topics_ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!(
                "{name} is not Running with its topics after {} s; showing it as it is",
                within.as_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What the operator made of the example, as kubectl shows it.
async fn show_reconciled(kube: &LocalKube, name: &str, wide: bool) -> anyhow::Result<()> {
    let selector = format!("app.kubernetes.io/instance={name}");
    let ns = ["-n", NAMESPACE];
    shown(
        kube,
        "kubectl get kafkacluster",
        &[&["get", "kafkacluster"], &ns[..]].concat(),
    )
    .await?;
    if wide {
        shown(
            kube,
            "kubectl get pods -o wide",
            &[&["get", "pods", "-o", "wide"], &ns[..]].concat(),
        )
        .await?;
    } else {
        shown(
            kube,
            "kubectl get pods",
            &[&["get", "pods"], &ns[..]].concat(),
        )
        .await?;
    }
    shown(
        kube,
        &format!("kubectl get statefulsets,services,configmaps,poddisruptionbudgets -l {selector}"),
        &[
            &[
                "get",
                "statefulsets,services,configmaps,poddisruptionbudgets",
                "-l",
                &selector,
            ],
            &ns[..],
        ]
        .concat(),
    )
    .await?;
    shown(
        kube,
        &format!("kubectl get kafkacluster {name} -o jsonpath='{{.status.topics}}'"),
        &[
            &[
                "get",
                "kafkacluster",
                name,
                "-o",
                "jsonpath={.status.topics}",
            ],
            &ns[..],
        ]
        .concat(),
    )
    .await?;
    shown(
        kube,
        "kubectl get events --field-selector involvedObject.kind=KafkaCluster",
        &[
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.kind=KafkaCluster",
                "-o",
                "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
            ],
            &ns[..],
        ]
        .concat(),
    )
    .await
}

/// The example on real nodes, with the operator as the Deployment of `deploy/`.
async fn on_node(once: bool) -> anyhow::Result<()> {
    let (kc, cluster) = example()?;
    let name = kc.name_any();
    // The example asks a CPU per broker and every node offers this machine's CPUs: a node per
    // broker, as a production cluster would spread them.
    let nodes = u8::try_from(cluster.broker_count.clamp(1, i32::from(MAX_NODES)))?;
    eprintln!(
        "no Kubernetes cluster configured: starting a local control plane (etcd, kube-apiserver, kube-controller-manager) and {nodes} node(s) (containerd, kubelet, kube-proxy, kube-scheduler, CoreDNS); the first run builds them and the images"
    );
    let (kube, node) = LocalNode::start_with_control_plane(
        Vec::new(),
        NodeOptions {
            nodes,
            ..Default::default()
        },
    )
    .await?;
    let result = async {
        apply_shown(&kube, "deploy/kafka-operator.yaml", true).await?;
        kubectl(
            &kube,
            &[
                "-n",
                "kafka-operator",
                "rollout",
                "status",
                "deployment/kafka-operator",
                "--timeout=300s",
            ],
        )
        .await
        .context("the operator's Deployment did not become available")?;
        shown(&kube, "kubectl -n kafka-operator get pods", &["-n", "kafka-operator", "get", "pods"]).await?;

        if !cluster.is_kraft() {
            apply_shown(&kube, "examples/manual-zookeeper.yaml", false).await?;
        }
        apply_shown(&kube, EXAMPLE, false).await?;
        wait_running(kube.admin_client().await?, &name, Duration::from_secs(900)).await?;
        show_reconciled(&kube, &name, true).await?;
        if !once {
            println!(
                "\nthe cluster keeps running on the local nodes; in another shell:\n  export KUBECONFIG={kubeconfig}\n  alias kubectl={kubectl}\n  kubectl get kafkacluster -A\n  kubectl exec -it {name}-0 -- kafka-console-producer --bootstrap-server {name}:9092 --topic test1\n  kubectl exec -it {name}-1 -- kafka-console-consumer --bootstrap-server {name}:9092 --topic test1 --from-beginning\n  kubectl port-forward pod/{name}-0 9092   # one broker on localhost:9092 (it advertises its pod DNS name, so a client outside the cluster reaches only that broker's metadata)\nany other example applies the same way (kubectl apply -f examples/kraft-cluster.yaml). Ctrl-C stops the nodes and removes the testbed.",
                kubeconfig = kube.kubeconfig().display(),
                kubectl = kubectl_path().display()
            );
            tokio::signal::ctrl_c().await?;
        }
        anyhow::Ok(())
    }
    .await;
    node.stop().await;
    result
}

/// The example with the operator in this process and the pods as local Kafka processes.
async fn on_stand_in(once: bool) -> anyhow::Result<()> {
    let (kc, cluster) = example()?;
    let name = kc.name_any();

    eprintln!(
        "no Kubernetes cluster configured: starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"
    );
    let kube = LocalKube::start().await?;

    apply_shown(&kube, "deploy/kafka-operator.yaml", true).await?;
    kubectl(
        &kube,
        &[
            "wait",
            "--for=condition=Established",
            "crd/kafkaclusters.krallistic.github.com",
        ],
    )
    .await?;

    // The cluster's brokers, as the pods will run them: configured by the operator's own
    // rendering of the example's spec, with local ports and directories.
    let kafka = if cluster.is_kraft() {
        eprintln!(
            "starting {} local Kafka {} brokers and {} controllers for the pods of {name}",
            cluster.broker_count,
            kafka_operator::api::KAFKA_VERSION,
            cluster.controller_count()
        );
        LocalKafka::start(LocalKafkaOptions::from_cluster(cluster.clone())).await?
    } else {
        let mut options = LocalKafkaOptions::from_cluster(cluster.clone());
        options.version = zookeeper_mode_version();
        eprintln!(
            "starting a local ZooKeeper and {} Kafka {} brokers (ZooKeeper mode) for the pods of {name}",
            cluster.broker_count, options.version
        );
        LocalKafka::start_zookeeper_mode(options).await?
    };

    // The operator runs as its ServiceAccount, with exactly the RBAC of deploy/, and reaches
    // the local brokers through a bootstrap override.
    let client = kube
        .service_account_client("kafka-operator", "kafka-operator")
        .await?;
    let settings = Settings {
        kafka_bootstrap: BTreeMap::from([(format!("{NAMESPACE}/{name}"), kafka.bootstrap_list())]),
        ..Settings::default()
    };
    let operator = tokio::spawn(controller::run(
        client,
        settings,
        Arc::new(Metrics::default()),
    ));

    apply_shown(&kube, EXAMPLE, false).await?;
    let admin = kube.admin_client().await?;
    let kubelet = LocalKubelet::start(admin.clone(), NAMESPACE, &name, kafka);

    wait_running(admin, &name, Duration::from_secs(240)).await?;
    show_reconciled(&kube, &name, false).await?;
    println!(
        "\n(the pods' containers run as local Kafka processes configured by the operator's rendering, not on a real node: run as root without --stand-in for real nodes)"
    );

    if !once {
        println!(
            "\nthe operator keeps running against the local testbed; in another shell:\n  export KUBECONFIG={}\n  {} get kafkacluster -A\nCtrl-C stops it and removes the testbed.",
            kube.kubeconfig().display(),
            kubectl_path().display()
        );
        tokio::signal::ctrl_c().await?;
    }
    operator.abort();
    drop(kubelet);
    Ok(())
}
