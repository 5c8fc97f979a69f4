//! `cargo run -- run [--once]` at the repository root: the operator on a local testbed, for
//! trying it on a machine with no Kubernetes cluster. Not part of the product: the operator's
//! own binary is `kafka-operator` (`cargo build --release -p kafka-operator`).

use clap::{Parser, Subcommand};
use kafka_operator_testbed::local::Pods;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "kafka-operator-testbed",
    about = "kafka-operator on a local testbed: a real Kubernetes control plane and real Kafka brokers on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the testbed (real nodes as root), install the operator from deploy/, apply the
    /// original example and show what the operator reconciled; then keep running until Ctrl-C.
    Run {
        /// Exit after showing what was reconciled.
        #[arg(long)]
        once: bool,
        /// Run the pods as local Kafka processes (a stand-in kubelet, the operator in this
        /// process) even as root; without root that is what happens anyway.
        #[arg(long, conflicts_with = "node")]
        stand_in: bool,
        /// Run the pods on real nodes (containerd and kubelets on this machine; needs root).
        #[arg(long)]
        node: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run {
            once,
            stand_in,
            node,
        } => {
            let pods = match (stand_in, node) {
                (true, _) => Pods::StandIn,
                (_, true) => Pods::Node,
                _ => Pods::Auto,
            };
            kafka_operator_testbed::local::run(once, pods).await
        }
    }
}
