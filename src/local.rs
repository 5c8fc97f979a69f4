//! Local mode: with no cluster configured, `kafka-operator run` brings up a real Kubernetes
//! control plane on loopback, installs the operator's manifests, runs the operator under their
//! RBAC against the original project's example, and shows what it reconciled.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::Api;

use crate::api::KafkaCluster;
use crate::controller::{self, Settings};
use crate::metrics::Metrics;
use crate::testbed::kube::LocalKube;
use crate::testbed::process::project_root;

/// Whether a Kubernetes cluster is configured: in-cluster, KUBECONFIG, or `~/.kube/config`.
pub fn cluster_configured() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".kube/config").exists())
            .unwrap_or(false)
}

/// Runs the operator against a local testbed. With `once`, exits after showing the result.
pub async fn run(once: bool) -> anyhow::Result<()> {
    eprintln!(
        "no Kubernetes cluster configured: starting a local control plane (etcd, kube-apiserver, kube-controller-manager)"
    );
    let kube = LocalKube::start().await?;
    let root = project_root();
    let kubectl = |args: Vec<String>| {
        let kube = &kube;
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
    let manifest = root.join("deploy/kafka-operator.yaml");
    let example = root.join("examples/kafka-cluster.yaml");
    eprintln!("$ kubectl apply -f deploy/kafka-operator.yaml");
    eprint!(
        "{}",
        kubectl(vec![
            "apply".into(),
            "--server-side".into(),
            "-f".into(),
            manifest.display().to_string()
        ])
        .await?
    );
    kubectl(vec![
        "wait".into(),
        "--for=condition=Established".into(),
        "crd/kafkaclusters.krallistic.github.com".into(),
    ])
    .await?;

    // The operator runs as its ServiceAccount, with exactly the RBAC of deploy/.
    let client = kube
        .service_account_client("kafka-operator", "kafka-operator")
        .await?;
    let metrics = Arc::new(Metrics::default());
    let operator = tokio::spawn(controller::run(client, Settings::default(), metrics));

    eprintln!("$ kubectl apply -f examples/kafka-cluster.yaml");
    eprint!(
        "{}",
        kubectl(vec![
            "apply".into(),
            "-n".into(),
            "default".into(),
            "-f".into(),
            example.display().to_string()
        ])
        .await?
    );

    let clusters: Api<KafkaCluster> = Api::namespaced(kube.admin_client().await?, "default");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kc = clusters.get("test-cluster-1").await?;
        if kc.status.as_ref().and_then(|s| s.observed_generation) == kc.metadata.generation {
            break;
        }
        if Instant::now() > deadline {
            bail!("the operator did not reconcile test-cluster-1 within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    for args in [
        "get kafkacluster",
        "get statefulsets,services,configmaps,poddisruptionbudgets -l app.kubernetes.io/instance=test-cluster-1",
        "get pods",
    ] {
        println!("$ kubectl {args}");
        let mut argv: Vec<String> = args.split(' ').map(String::from).collect();
        argv.extend(["-n".into(), "default".into()]);
        print!("{}", kubectl(argv).await?);
        println!();
    }
    println!("$ kubectl get events --field-selector involvedObject.kind=KafkaCluster");
    print!(
        "{}",
        kubectl(vec![
            "get".into(),
            "events".into(),
            "-n".into(),
            "default".into(),
            "--field-selector".into(),
            "involvedObject.kind=KafkaCluster".into(),
            "-o".into(),
            "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message".into(),
        ])
        .await
        .context("listing events")?
    );
    println!("(pods stay Pending: the local testbed has no kubelet to run them)");

    if once {
        operator.abort();
        return Ok(());
    }
    println!(
        "\nthe operator keeps running against the local testbed; in another shell:\n  export KUBECONFIG={}\n  {} get kafkacluster -A\nCtrl-C stops it and removes the testbed.",
        kube.kubeconfig().display(),
        crate::testbed::kube::kubectl_path().display()
    );
    tokio::signal::ctrl_c().await?;
    operator.abort();
    Ok(())
}
