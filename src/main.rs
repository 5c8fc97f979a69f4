//! The `kafka-operator` binary: the operator, its CRD, and the offline reassignment planner.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use tracing_subscriber::EnvFilter;

use kafka_operator::api::KafkaCluster;
use kafka_operator::controller::{self, Settings};
use kafka_operator::metrics::{self, Metrics};

#[derive(Parser)]
#[command(
    name = "kafka-operator",
    version,
    about = "A Kubernetes operator for Apache Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator. Uses the in-cluster configuration or KUBECONFIG.
    Run(RunArgs),
    /// Print the KafkaCluster CustomResourceDefinition as YAML.
    Crd,
    /// Propose a partition reassignment for a broker or replication-factor change (offline:
    /// reads files, prints Kafka reassignment JSON on stdout and a summary on stderr).
    Plan(kafka_operator::planner::cli::PlanArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the metrics and health endpoints.
    #[arg(long, default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// Reach a cluster's Kafka at these addresses instead of its pods' DNS names:
    /// `namespace/name=host:port[,host:port]` (repeatable). For an operator running outside the
    /// Kubernetes network.
    #[arg(long = "kafka-bootstrap", value_parser = controller::kafka::parse_bootstrap_override)]
    kafka_bootstrap: Vec<(String, Vec<String>)>,
    /// Seconds every Kafka admin call may take (at least 1).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    kafka_timeout: u64,
    /// Act only while holding the `kafka-operator` Lease in `--lease-namespace`, so that of
    /// several replicas exactly one acts (the Deployment runs two).
    #[arg(long)]
    leader_election: bool,
    /// Namespace of the Lease (the operator's own; the Deployment passes it from the pod).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kafka-operator")]
    lease_namespace: String,
    /// This replica's name in the Lease (the Deployment passes the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube's client logs every failed HTTP call as an error; the operator reports the
            // ones that matter itself.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", serde_yaml::to_string(&KafkaCluster::crd())?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
        Command::Plan(args) => kafka_operator::planner::cli::run(&args),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "no Kubernetes cluster to run against ({e}): run the operator in a pod, or set \
             KUBECONFIG; to try it on a local testbed, run `cargo run -- run --once` in its \
             repository"
        )
    })?;
    let metrics = Arc::new(Metrics::default());
    // Bound before the operator starts: a taken port is an error now, not failing probes later.
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for metrics and health checks: {e}; choose another --metrics-addr",
                args.metrics_addr
            )
        })?;
    let server = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            if let Err(e) = metrics::serve(listener, metrics).await {
                tracing::error!("the metrics and health endpoint stopped: {e}");
            }
        }
    });
    let leader_election = if args.leader_election {
        let identity = match args.identity {
            Some(identity) => identity,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "leader election needs this replica's name: set POD_NAME or --identity ({e})"
                    )
                })?,
        };
        Some(controller::LeaderElection::new(
            args.lease_namespace,
            identity,
        ))
    } else {
        None
    };
    let settings = Settings {
        namespace: args.namespace,
        kafka_bootstrap: args.kafka_bootstrap.into_iter().collect(),
        kafka_timeout: std::time::Duration::from_secs(args.kafka_timeout),
        leader_election,
    };
    let stopped = controller::run(client, settings, metrics).await;
    server.abort();
    if stopped == controller::Stopped::LostLeadership {
        anyhow::bail!("this replica lost the leader Lease; exiting so it restarts as a candidate");
    }
    Ok(())
}
