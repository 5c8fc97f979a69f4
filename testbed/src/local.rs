//! Local mode: with no cluster configured, `kafka-operator run` brings up a real Kubernetes
//! control plane on loopback, installs the operator's manifests, runs the operator under their
//! RBAC against the original project's example, runs that cluster's pods as real local Kafka
//! brokers (a stand-in kubelet), and shows what the operator reconciled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::{Api, ResourceExt};

use crate::kafka::{LocalKafka, LocalKafkaOptions, zookeeper_mode_version};
use crate::kube::{LocalKube, kubectl_path};
use crate::kubelet::LocalKubelet;
use crate::process::project_root;
use kafka_operator::api::{KafkaCluster, Phase, TopicPhase, validate};
use kafka_operator::controller::{self, Settings};
use kafka_operator::metrics::Metrics;

const NAMESPACE: &str = "default";

/// Runs the operator against a local testbed. With `once`, exits after showing the result.
pub async fn run(once: bool) -> anyhow::Result<()> {
    let root = project_root();
    let example_path = root.join("examples/kafka-cluster.yaml");
    let example = std::fs::read_to_string(&example_path)
        .with_context(|| format!("reading {}", example_path.display()))?;
    let mut kc: KafkaCluster = serde_yaml::from_str(&example)
        .with_context(|| format!("parsing {}", example_path.display()))?;
    kc.metadata.namespace = Some(NAMESPACE.into());
    let name = kc.name_any();
    let cluster = validate(&kc).map_err(|e| anyhow::anyhow!("the example is invalid: {e}"))?;

    eprintln!(
        "no Kubernetes cluster configured: starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"
    );
    let kube = LocalKube::start().await?;
    let kubectl = |args: &[&str]| {
        let kube = &kube;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = kube.kubectl(&refs).await?;
            if !out.status.success() {
                bail!(
                    "kubectl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };

    let manifest = root
        .join("deploy/kafka-operator.yaml")
        .display()
        .to_string();
    println!("$ kubectl apply --server-side -f deploy/kafka-operator.yaml");
    print!(
        "{}",
        kubectl(&["apply", "--server-side", "-f", &manifest]).await?
    );
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/kafkaclusters.krallistic.github.com",
    ])
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

    println!("\n$ kubectl apply -f examples/kafka-cluster.yaml");
    print!(
        "{}",
        kubectl(&[
            "apply",
            "-n",
            NAMESPACE,
            "-f",
            &example_path.display().to_string()
        ])
        .await?
    );
    let admin = kube.admin_client().await?;
    let kubelet = LocalKubelet::start(admin.clone(), NAMESPACE, &name, kafka);

    let clusters: Api<KafkaCluster> = Api::namespaced(admin, NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let kc = clusters.get(&name).await?;
        let status = kc.status.clone().unwrap_or_default();
        let topics_ready = status.topics.len() == kc.spec.topics.len()
            && status.topics.iter().all(|t| t.state == TopicPhase::Ready);
        if status.phase == Some(Phase::Running) && topics_ready {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("{name} is not Running with its topics after 240 s; showing it as it is");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let selector = format!("app.kubernetes.io/instance={name}");
    let shows: [(&str, Vec<&str>); 5] = [
        ("kubectl get kafkacluster", vec!["get", "kafkacluster"]),
        ("kubectl get pods", vec!["get", "pods"]),
        (
            "kubectl get statefulsets,services,configmaps,poddisruptionbudgets -l app.kubernetes.io/instance=test-cluster-1",
            vec![
                "get",
                "statefulsets,services,configmaps,poddisruptionbudgets",
                "-l",
                &selector,
            ],
        ),
        (
            "kubectl get kafkacluster test-cluster-1 -o jsonpath='{.status.topics}'",
            vec![
                "get",
                "kafkacluster",
                &name,
                "-o",
                "jsonpath={.status.topics}",
            ],
        ),
        (
            "kubectl get events --field-selector involvedObject.kind=KafkaCluster",
            vec![
                "get",
                "events",
                "--field-selector",
                "involvedObject.kind=KafkaCluster",
                "-o",
                "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
            ],
        ),
    ];
    for (shown, args) in shows {
        println!("\n$ {shown}");
        let mut args = args;
        args.extend(["-n", NAMESPACE]);
        let out = kubectl(&args).await.context("kubectl")?;
        println!("{}", out.trim_end());
    }
    println!(
        "\n(the pods' containers run as local Kafka processes: the testbed has no container runtime)"
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
