//! Real Kubernetes nodes on this machine: containerd and runc run the pods' containers from
//! images built locally (`hack/build-images.sh`), a CNI bridge gives them addresses, the
//! kubelet runs them, kube-proxy routes Services, kube-scheduler places pods, and CoreDNS
//! answers `cluster.local`. Together with a [`LocalKube`] started on the bridge's gateway
//! ([`NodeNetwork::gateway`]) this is a cluster whose pods are the real thing: the operator's
//! pod specs, images, probes, volumes and DNS names run as on any cluster.
//!
//! One node by default, or several ([`NodeOptions::nodes`]): each is a containerd and a kubelet
//! of its own (`testbed-node-N`, zone `testbed-zone-a`, `-b`, ...), with its own state
//! directory, pod address range and local volumes. A kubelet removes the sandboxes, containers
//! and pod log directories it does not know of, so nodes share no container runtime and no
//! log directory. kube-proxy, kube-scheduler and CoreDNS run once for all of them: every pod's
//! traffic passes through this machine's network namespace anyway.
//!
//! Network: every address lives on a bridge this module creates (`kotb0`, 10.244.0.0/16, its
//! gateway 10.244.0.1 being this machine) or is a Service ClusterIP that only the machine's own
//! iptables rules resolve. Node N gives its pods addresses from 10.244.N.0/24 (its `podCIDR`),
//! all on the one bridge, so pods of different nodes reach each other directly. Pods get a
//! route to the Service range only, no default route, and a `FORWARD` guard drops anything
//! from or to a pod address that would leave through another interface; nothing is masqueraded
//! (`ipMasq: false`). The host reaches pods directly through the bridge.
//!
//! One set of nodes at a time per machine: kube-proxy's chains and the bridge are machine-wide,
//! so a lock file serialises test binaries that start them, and each node's state lives in a
//! fixed directory so that whatever a killed run left behind (containers, mounts, network
//! namespaces, chains) is cleaned up by the next one before it starts.
//!
//! Needs root and the packages of `hack/node-deps.sh`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::kube::{KubeOptions, LocalKube, SERVICE_CIDR, bin_dir};
use crate::process::{ManagedProcess, free_port, pinned_version, process_alive, project_root};

/// All pods of the testbed's nodes, on one bridge; node N has 10.244.N.0/24 ([`pod_cidr`]).
pub const POD_NETWORK: &str = "10.244.0.0/16";
/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The StorageClass of the nodes' local PersistentVolumes, the cluster's default class.
pub const STORAGE_CLASS: &str = "testbed-local";
/// The label of a node's zone, `testbed-zone-a` for the first node ([`zone_name`]).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The most nodes one machine runs: each is a containerd, a kubelet and their pods.
pub const MAX_NODES: u8 = 8;
/// The chain of the `FORWARD` guard that keeps pod traffic on the bridges.
const GUARD_CHAIN: &str = "KAFKA-OPERATOR-TESTBED";
/// Bridges are named `kotb<N>`; the guard matches them all with `kotb+`.
const BRIDGE_PREFIX: &str = "kotb";
/// The one bridge of the machine's nodes.
const BRIDGE: &str = "kotb0";
/// Label on the PersistentVolumes a node made, so it recycles only its own.
const PV_LABEL: &str = "kafka-operator-testbed/node";
/// Local volumes kept Available on each node at all times, so a new claim never waits for one.
const SPARE_VOLUMES: usize = 4;
/// Capacity written on each local volume: larger than any claim of the examples (local volumes
/// do not enforce it), so that every claim fits any volume.
const VOLUME_CAPACITY: &str = "200Gi";
/// The containerd namespace the CRI plugin keeps Kubernetes' images and containers in.
const CRI_NAMESPACE: &str = "k8s.io";
/// Where the kubelets link their containers' logs (a fixed path; the logs themselves are in
/// each node's own directory).
const CONTAINER_LOG_LINKS: &str = "/var/log/containers";
/// Prefix of the nodes' state directories in the temporary directory.
const NODE_DIR_PREFIX: &str = "kafka-operator-node-";

/// The kernel settings the nodes need, and their values for them.
const NODE_SYSCTLS: [(&str, &str); 2] = [
    ("net/ipv4/ip_forward", "1"),
    ("net/bridge/bridge-nf-call-iptables", "1"),
];

/// Where node `index` keeps its state: fixed, so a later run finds what a killed one left.
fn node_dir(index: u8) -> PathBuf {
    std::env::temp_dir().join(format!("{NODE_DIR_PREFIX}{index}"))
}

/// The name of node `index`: `testbed-node-0`, ... (its `kubernetes.io/hostname` label too).
pub fn node_name(index: u8) -> String {
    format!("testbed-node-{index}")
}

/// The zone of node `index`: `testbed-zone-a`, `testbed-zone-b`, ...
pub fn zone_name(index: u8) -> String {
    format!("testbed-zone-{}", char::from(b'a' + index % 26))
}

/// The pod subnet of node `index` (its Node's `podCIDR`), a slice of [`POD_NETWORK`].
pub fn pod_cidr(index: u8) -> String {
    format!("10.244.{index}.0/24")
}

/// The nodes whose state directories an earlier run left, by index.
fn leftover_nodes() -> Vec<u8> {
    let mut found: Vec<u8> = std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix(NODE_DIR_PREFIX)?
                        .parse::<u8>()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found
}

/// The bridge and addresses of the machine's nodes, with the machine-wide lock that makes them
/// the only testbed nodes of this machine. Created before the [`LocalKube`], which must bind to
/// [`gateway`](Self::gateway) for pods to reach it.
pub struct NodeNetwork {
    // Held while the network exists; closing the file releases the lock.
    _lock: File,
    sysctls: Vec<(PathBuf, String)>,
    up: bool,
}

impl NodeNetwork {
    /// Takes the machine's node lock (waiting up to 10 minutes for another run to finish),
    /// cleans up what an earlier run's nodes left, and creates the bridge, its routes and the
    /// forwarding guard.
    pub fn create() -> anyhow::Result<NodeNetwork> {
        ensure!(
            unsafe { libc::geteuid() } == 0,
            "the testbed's node needs root (network namespaces, mounts, iptables); run the node tests as root"
        );
        let lock = take_lock()?;
        let leftovers = leftover_nodes();
        if !leftovers.is_empty() || link_exists(BRIDGE) {
            tracing::info!("cleaning up what an earlier run's testbed nodes {leftovers:?} left");
            let paths: Vec<NodePaths> = leftovers.into_iter().map(NodePaths::new).collect();
            clean_up(&paths);
        }
        let mut network = NodeNetwork {
            _lock: lock,
            sysctls: Vec::new(),
            up: true,
        };
        network.set_up().inspect_err(|_| network.tear_down())?;
        Ok(network)
    }

    /// The bridge's own address: this machine as the pods see it (every node's IP, where the
    /// API server, CoreDNS and the kubelets listen for them).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, 0, 1)
    }

    pub fn bridge(&self) -> String {
        BRIDGE.to_string()
    }

    fn set_up(&mut self) -> anyhow::Result<()> {
        let bridge = self.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        // The whole pod network on the one bridge: pods of every node are neighbours.
        let prefix = POD_NETWORK.split_once('/').map_or("16", |(_, p)| p);
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/{prefix}", self.gateway()),
                "dev",
                &bridge,
            ],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        // Service addresses that no rule of kube-proxy (yet) rewrites go into the bridge, where
        // nothing answers, instead of out of the machine by its default route.
        run(
            "ip",
            &[
                "route",
                "add",
                SERVICE_CIDR,
                "dev",
                &bridge,
                "src",
                &self.gateway().to_string(),
            ],
        )?;
        // Pods on one bridge reach each other through Services only if bridged traffic passes
        // iptables (kube-proxy's rewrites), and through the host only if it forwards.
        run("modprobe", &["br_netfilter"]).ok();
        // The machine's own values are kept in a file until they are restored, so that a run
        // that was killed before restoring them still hands the right ones to the next run.
        let saved = sysctl_file();
        let mut originals: BTreeMap<String, String> = std::fs::read_to_string(&saved)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (key, _) in NODE_SYSCTLS {
            let path = Path::new("/proc/sys").join(key);
            let current = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (the bridge settings need the br_netfilter module: modprobe br_netfilter)",
                    path.display()
                )
            })?;
            let old = originals
                .entry(key.to_string())
                .or_insert_with(|| current.trim().to_string())
                .clone();
            self.sysctls.push((path, old));
        }
        let listing: String = originals
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&saved, listing).with_context(|| format!("writing {}", saved.display()))?;
        for (key, value) in NODE_SYSCTLS {
            let path = Path::new("/proc/sys").join(key);
            std::fs::write(&path, value).with_context(|| format!("setting {}", path.display()))?;
        }
        // The guard: forwarded traffic from or to pod addresses stays on the testbed's bridges.
        let _ = run("iptables", &["-N", GUARD_CHAIN]);
        run("iptables", &["-F", GUARD_CHAIN])?;
        let bridges = format!("{BRIDGE_PREFIX}+");
        run(
            "iptables",
            &[
                "-A",
                GUARD_CHAIN,
                "-s",
                POD_NETWORK,
                "!",
                "-o",
                &bridges,
                "-j",
                "DROP",
            ],
        )?;
        run(
            "iptables",
            &[
                "-A",
                GUARD_CHAIN,
                "-d",
                POD_NETWORK,
                "!",
                "-i",
                &bridges,
                "-j",
                "DROP",
            ],
        )?;
        run("iptables", &["-I", "FORWARD", "1", "-j", GUARD_CHAIN])?;
        Ok(())
    }

    /// Removes the bridge and the guard, and restores the sysctls. Idempotent.
    fn tear_down(&mut self) {
        if !self.up {
            return;
        }
        self.up = false;
        remove_network();
        for (path, old) in self.sysctls.drain(..) {
            let _ = std::fs::write(&path, old);
        }
        let _ = std::fs::remove_file(sysctl_file());
    }
}

/// Where the machine's nodes keep the sysctl values they changed, until they restore them
/// (named after the first node, as when there was only one, so that runs of older and newer
/// testbeds find what the other left).
fn sysctl_file() -> PathBuf {
    std::env::temp_dir().join(format!("{NODE_DIR_PREFIX}0.sysctl"))
}

impl Drop for NodeNetwork {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// How a [`LocalNode`] is started.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Images to import besides the pause, Kafka and operator images, as references whose
    /// archives `hack/build-images.sh` built.
    pub extra_images: Vec<String>,
    /// How many nodes (kubelets) to run on this machine, 1 to [`MAX_NODES`]; 1 by default.
    pub nodes: u8,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            extra_images: Vec::new(),
            nodes: 1,
        }
    }
}

/// Paths of one node's state, all under its fixed directory.
struct NodePaths {
    index: u8,
    dir: PathBuf,
    logs: PathBuf,
    containerd_config: PathBuf,
    containerd_socket: PathBuf,
    containerd_root: PathBuf,
    containerd_state: PathBuf,
    cni_config: PathBuf,
    /// containerd's registry hosts (`<registry>/hosts.toml`).
    registry_hosts: PathBuf,
    cni_ipam: PathBuf,
    kubelet_root: PathBuf,
    pod_logs: PathBuf,
    volumes: PathBuf,
}

impl NodePaths {
    fn new(index: u8) -> NodePaths {
        let dir = node_dir(index);
        NodePaths {
            index,
            logs: dir.join("logs"),
            containerd_config: dir.join("containerd/config.toml"),
            containerd_socket: dir.join("containerd/containerd.sock"),
            containerd_root: dir.join("containerd/root"),
            containerd_state: dir.join("containerd/state"),
            cni_config: dir.join("cni/net.d"),
            registry_hosts: dir.join("containerd/certs.d"),
            cni_ipam: dir.join("cni/ipam"),
            kubelet_root: dir.join("kubelet"),
            pod_logs: dir.join("pod-logs"),
            volumes: dir.join("volumes"),
            dir,
        }
    }
}

/// One node: its containerd and kubelet.
struct Member {
    name: String,
    paths: NodePaths,
    kubelet: Option<ManagedProcess>,
    containerd: Option<ManagedProcess>,
}

/// The running nodes of this machine, one unless [`NodeOptions::nodes`] says more. Stopping
/// them ([`stop`](Self::stop) or drop) stops every container through its node's containerd,
/// then the processes, unmounts what the kubelets mounted, and removes the network namespaces,
/// the bridge and the iptables chains of the kubelets and kube-proxy, so the next run starts
/// from a clean machine.
///
/// The processes that run once for all nodes (kube-proxy, kube-scheduler, CoreDNS) write
/// their logs and files in the first node's directory.
pub struct LocalNode {
    members: Vec<Member>,
    recyclers: Vec<JoinHandle<()>>,
    // Stopped after the kubelets and containerds by the clean-up.
    proxy: Option<ManagedProcess>,
    scheduler: Option<ManagedProcess>,
    coredns: Option<ManagedProcess>,
    registry: Option<ManagedProcess>,
    network: Option<NodeNetwork>,
}

impl LocalNode {
    /// A new node network, a control plane on its gateway (applying `manifests` once it
    /// answers) and `options.nodes` nodes on it, each Ready: what the tests and the local mode
    /// run on.
    pub async fn start_with_control_plane(
        manifests: Vec<PathBuf>,
        options: NodeOptions,
    ) -> anyhow::Result<(LocalKube, LocalNode)> {
        let network = NodeNetwork::create()?;
        let kube = LocalKube::start_with_options(KubeOptions {
            manifests,
            address: network.gateway(),
        })
        .await?;
        let node = LocalNode::start(&kube, network, options).await?;
        Ok((kube, node))
    }

    /// Starts the nodes against `kube`, which must have been started on `network`'s gateway
    /// ([`KubeOptions::address`](crate::kube::KubeOptions)), and waits until every one is
    /// Ready, the images are imported, CoreDNS answers and the `default` ServiceAccount exists.
    pub async fn start(
        kube: &LocalKube,
        network: NodeNetwork,
        options: NodeOptions,
    ) -> anyhow::Result<LocalNode> {
        ensure!(
            kube.server().contains(&network.gateway().to_string()),
            "the API server ({}) must listen on the node network's gateway {} for pods to reach it; start it with KubeOptions {{ address: network.gateway(), .. }}",
            kube.server(),
            network.gateway()
        );
        ensure!(
            (1..=MAX_NODES).contains(&options.nodes),
            "NodeOptions::nodes is {}; the testbed runs 1 to {MAX_NODES} nodes",
            options.nodes
        );
        let bin = ensure_node_binaries().await?;
        let images = ensure_images(&options).await?;

        let mut members = Vec::new();
        for index in 0..options.nodes {
            let paths = NodePaths::new(index);
            for dir in [
                &paths.logs,
                &paths.containerd_root,
                &paths.containerd_state,
                &paths.cni_config,
                &paths.cni_ipam,
                &paths.kubelet_root,
                &paths.pod_logs,
                &paths.volumes,
            ] {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            members.push(Member {
                name: node_name(index),
                paths,
                kubelet: None,
                containerd: None,
            });
        }
        let mut node = LocalNode {
            members,
            recyclers: Vec::new(),
            proxy: None,
            scheduler: None,
            coredns: None,
            registry: None,
            network: Some(network),
        };
        // On any error below, drop tears down whatever had started.
        let registry = node.start_registry(&images.served).await?;
        node.start_containerds(&images.imported, registry).await?;
        node.start_coredns(kube).await?;
        node.start_scheduler(kube, &bin)?;
        // The kubelets before kube-proxy: kube-proxy waits up to 30 s for its Node object,
        // which the kubelet registers within a second.
        node.start_kubelets(kube, &bin).await?;
        node.start_proxy(kube, &bin).await?;
        let client = kube.admin_client().await?;
        node.wait_ready(&client).await?;
        ensure_storage(&client).await?;
        for member in &node.members {
            node.recyclers.push(tokio::spawn(recycle_volumes(
                client.clone(),
                member.name.clone(),
                member.paths.volumes.clone(),
            )));
        }
        ensure_default_service_account(&client, "default").await?;
        Ok(node)
    }

    /// The first node's name (its `kubernetes.io/hostname` label too): the node, when there
    /// is one.
    pub fn name(&self) -> &str {
        &self.members[0].name
    }

    /// Every node's name, in order: `testbed-node-0`, `testbed-node-1`, ...
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// The nodes' address: where pods reach this machine (every node reports it).
    pub fn ip(&self) -> Ipv4Addr {
        self.network
            .as_ref()
            .map(NodeNetwork::gateway)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// Where the first node's processes and those that serve all nodes (kube-proxy,
    /// kube-scheduler, CoreDNS) write their logs.
    pub fn log_dir(&self) -> &Path {
        &self.members[0].paths.logs
    }

    /// Where node `index`'s containerd and kubelet write their logs.
    pub fn log_dir_of(&self, index: usize) -> Option<&Path> {
        self.members.get(index).map(|m| m.paths.logs.as_path())
    }

    /// The last lines of one of the nodes' logs (`kubelet`, `containerd`, `kube-proxy`,
    /// `kube-scheduler`, `coredns`), for error messages; with several nodes, those of a
    /// kubelet or containerd are every node's, each under its name.
    pub fn log_tail(&self, process: &str, lines: usize) -> String {
        if self.members.len() > 1 && matches!(process, "kubelet" | "containerd") {
            return self
                .members
                .iter()
                .map(|m| {
                    format!(
                        "== {} {process} ==\n{}",
                        m.name,
                        file_tail(&m.paths.logs.join(format!("{process}.log")), lines)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        file_tail(&self.log_dir().join(format!("{process}.log")), lines)
    }

    /// Runs `ctr` in the CRI namespace against each node's containerd in turn, until one
    /// succeeds, and returns that output (or the first node's failure): a command naming a
    /// container (ids are unique across nodes) runs on the node that has it.
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut first = None;
        for member in &self.members {
            let out = ctr(&member.paths.containerd_socket, args)?;
            if out.status.success() {
                return Ok(out);
            }
            first.get_or_insert(out);
        }
        first.context("no node")
    }

    /// Runs `ctr` in the CRI namespace against node `index`'s containerd.
    pub fn ctr_on(&self, index: usize, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let member = self
            .members
            .get(index)
            .with_context(|| format!("no node {index}"))?;
        ctr(&member.paths.containerd_socket, args)
    }

    /// Stops the nodes and cleans up after them (what drop does, off the async threads).
    pub async fn stop(self) {
        let mut node = self;
        let _ = tokio::task::spawn_blocking(move || node.tear_down()).await;
    }

    /// Starts every node's containerd, then imports the images into all of them at once.
    /// `registry` is the port of the testbed's registry on 127.0.0.1, which every containerd
    /// takes for docker.io (see [`LocalNode::start_registry`]).
    async fn start_containerds(&mut self, images: &[PathBuf], registry: u16) -> anyhow::Result<()> {
        let pause = pinned_version("PAUSE_IMAGE")?;
        let gateway = self.ip();
        for member in &mut self.members {
            let p = &member.paths;
            let slice = Ipv4Addr::new(10, 244, p.index, 0).octets();
            let first = Ipv4Addr::new(slice[0], slice[1], slice[2], 2);
            let last = Ipv4Addr::new(slice[0], slice[1], slice[2], 254);
            // The loopback interface of each pod is set up by containerd itself, with the CNI
            // loopback plugin from the same directory; the list below is the pod's eth0: an
            // address of the node's slice, in the subnet of every node's pods (one bridge).
            let cni = serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "kafka-operator-testbed",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": true,
                        "ipMasq": false,
                        "hairpinMode": true,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{
                                "subnet": POD_NETWORK,
                                "rangeStart": first.to_string(),
                                "rangeEnd": last.to_string(),
                                "gateway": gateway.to_string(),
                            }]],
                            // No default route: pods reach pods (on the bridge's subnet),
                            // Services and this machine, nothing else.
                            "routes": [{"dst": SERVICE_CIDR}],
                            "dataDir": p.cni_ipam,
                        }
                    },
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            });
            std::fs::write(
                p.cni_config.join("10-testbed.conflist"),
                serde_json::to_string_pretty(&cni)?,
            )?;
            let config = format!(
                r#"version = 2
root = "{root}"
state = "{state}"
oom_score = 0

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # The sandbox of these machines refuses a negative oom_score_adj (no CAP_SYS_RESOURCE):
  # without this every pod sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state with the node's, not in the machine-wide /run/containerd/runc.
        Root = "{state}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts}"
"#,
                root = p.containerd_root.display(),
                state = p.containerd_state.display(),
                socket = p.containerd_socket.display(),
                cni = p.cni_config.display(),
                hosts = p.registry_hosts.display(),
            );
            std::fs::write(&p.containerd_config, config)?;
            let docker_io = p.registry_hosts.join("docker.io");
            std::fs::create_dir_all(&docker_io)?;
            std::fs::write(
                docker_io.join("hosts.toml"),
                format!(
                    r#"# docker.io is the testbed's registry on this machine: no pull leaves it.
server = "http://127.0.0.1:{registry}"

[host."http://127.0.0.1:{registry}"]
  capabilities = ["pull", "resolve"]
"#
                ),
            )?;
            member.containerd = Some(ManagedProcess::spawn(
                "containerd",
                Path::new("containerd"),
                &[format!("--config={}", p.containerd_config.display())],
                &p.logs.join("containerd.log"),
            )?);
        }
        for member in &mut self.members {
            let socket = member.paths.containerd_socket.clone();
            let Some(containerd) = member.containerd.as_mut() else {
                continue;
            };
            wait_until_up(
                containerd,
                &format!("containerd of {} to answer", member.name),
                Duration::from_secs(60),
                || containerd_answers(&socket),
            )
            .await?;
        }
        let imports = self.members.iter().map(|member| {
            let socket = member.paths.containerd_socket.clone();
            let name = member.name.clone();
            let images = images.to_vec();
            tokio::task::spawn_blocking(move || import_images(&name, &socket, &images))
        });
        for result in futures::future::join_all(imports).await {
            result.context("importing images")??;
        }
        Ok(())
    }

    /// The node's image registry: go-containerregistry's (`crane registry serve`) on
    /// 127.0.0.1, which every containerd takes for docker.io, serving `served` (pushed with
    /// `crane push`). Blobs are kept under the cache, so an unchanged image is not uploaded
    /// again; tags live in the registry's memory and are pushed at each start. Returns its port.
    async fn start_registry(&mut self, served: &[(String, PathBuf)]) -> anyhow::Result<u16> {
        let crane = crane_binary()?;
        let port = free_port()?;
        let blobs = crate::process::cache_dir().join("registry/blobs");
        std::fs::create_dir_all(&blobs)?;
        let registry = self.registry.insert(ManagedProcess::spawn(
            "registry",
            &crane,
            &[
                "registry".into(),
                "serve".into(),
                format!("--address=127.0.0.1:{port}"),
                format!("--disk={}", blobs.display()),
            ],
            &self.members[0].paths.logs.join("registry.log"),
        )?);
        wait_until_up(
            registry,
            "the registry to answer",
            Duration::from_secs(30),
            || http_ok(port, "/v2/"),
        )
        .await?;
        for (reference, archive) in served {
            let (repository, tag) = docker_io_repository(reference).with_context(|| {
                format!("{reference} is not a docker.io image; the node's registry serves only docker.io")
            })?;
            let target = format!("127.0.0.1:{port}/{repository}:{tag}");
            let started = Instant::now();
            let out = tokio::process::Command::new(&crane)
                .args(["push", "--insecure"])
                .arg(archive)
                .arg(&target)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .with_context(|| format!("running {}", crane.display()))?;
            ensure!(
                out.status.success(),
                "pushing {} to the node's registry as {target} failed: {}",
                archive.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            tracing::info!(
                "the node's registry serves {reference} ({:?} to push)",
                started.elapsed()
            );
        }
        Ok(port)
    }

    /// CoreDNS runs on this machine rather than in a pod: it must answer before any pod starts
    /// (the brokers look each other up at once), it needs no image, and it listens on the
    /// gateway, which pods reach directly and host processes too. It reads Services and
    /// EndpointSlices from the API server like the cluster add-on does, and answers nothing
    /// outside `cluster.local` (no upstream: no query leaves the machine).
    async fn start_coredns(&mut self, kube: &LocalKube) -> anyhow::Result<()> {
        let bin = coredns_binary()?;
        let ready_port = free_port()?;
        let health_port = free_port()?;
        let ip = self.ip();
        let corefile = format!(
            "{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {ip}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
    cache 5
}}
.:53 {{
    bind {ip}
    errors
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
",
            kubeconfig = kube.kubeconfig().display(),
        );
        let path = self.members[0].paths.dir.join("Corefile");
        std::fs::write(&path, corefile)?;
        let coredns = self.coredns.insert(ManagedProcess::spawn(
            "coredns",
            &bin,
            &["-conf".into(), path.display().to_string()],
            &self.members[0].paths.logs.join("coredns.log"),
        )?);
        wait_until_up(
            coredns,
            "CoreDNS to be ready",
            Duration::from_secs(60),
            || http_ok(ready_port, "/ready"),
        )
        .await
    }

    fn start_scheduler(&mut self, kube: &LocalKube, bin: &Path) -> anyhow::Result<()> {
        self.scheduler = Some(ManagedProcess::spawn(
            "kube-scheduler",
            &bin.join("kube-scheduler"),
            &[
                format!("--kubeconfig={}", kube.kubeconfig().display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                "--v=0".into(),
            ],
            &self.members[0].paths.logs.join("kube-scheduler.log"),
        )?);
        Ok(())
    }

    /// One kube-proxy for all nodes, as the first node's: the rules it writes are this
    /// machine's, which every pod's traffic passes through.
    async fn start_proxy(&mut self, kube: &LocalKube, bin: &Path) -> anyhow::Result<()> {
        let healthz = free_port()?;
        let config = format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
bindAddress: {ip}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
mode: iptables
clusterCIDR: {POD_NETWORK}
# NodePorts on the node's bridge address only, never on an interface that faces the outside.
nodePortAddresses: [{ip}/32]
# The sandbox refuses a negative oom_score_adj and conntrack table resizing; leave both alone.
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
",
            kubeconfig = kube.kubeconfig().display(),
            name = self.name(),
            ip = self.ip(),
            metrics = free_port()?,
        );
        let path = self.members[0].paths.dir.join("kube-proxy.yaml");
        std::fs::write(&path, config)?;
        let proxy = self.proxy.insert(ManagedProcess::spawn(
            "kube-proxy",
            &bin.join("kube-proxy"),
            &[format!("--config={}", path.display()), "--v=0".into()],
            &self.members[0].paths.logs.join("kube-proxy.log"),
        )?);
        wait_until_up(
            proxy,
            "kube-proxy to be healthy",
            Duration::from_secs(60),
            || http_ok(healthz, "/livez"),
        )
        .await
    }

    /// Starts the kubelets one after the other: each binds the device-plugin registration socket
    /// at the path compiled into it (`/var/lib/kubelet/device-plugins/kubelet.sock`, whatever
    /// `--root-dir` says) after removing what is there, so two starting at the same instant can
    /// race and one exits with "address already in use". The next starts once the previous
    /// one's container manager (which binds it) is up.
    async fn start_kubelets(&mut self, kube: &LocalKube, bin: &Path) -> anyhow::Result<()> {
        let ip = self.ip();
        for member in &mut self.members {
            let p = &member.paths;
            // The pods' resolv.conf is the kubelet's cluster DNS plus the search list it
            // derives; the host's own file would add the host's search domains and upstream
            // servers.
            let resolv = p.dir.join("resolv.conf");
            std::fs::write(&resolv, format!("nameserver {ip}\n"))?;
            // cgroupfs, no QoS cgroups and no node allocatable enforcement: what runs in the
            // cgroup v1 sandbox of these machines. Anonymous, always-allowed kubelet API on the
            // bridge address only, on a port of its own (the Node's daemonEndpoints): the API
            // server reaches it there for logs, exec and port-forward without client
            // certificates. Pod logs in the node's own directory: a kubelet deletes the log
            // directories of pods it does not run, which would be the other nodes' pods.
            let config = format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
containerRuntimeEndpoint: unix://{socket}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
clusterDomain: {CLUSTER_DOMAIN}
clusterDNS: [{ip}]
resolvConf: {resolv}
podCIDR: {pod_cidr}
podLogsDir: {pod_logs}
# Local images stand in for a registry: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
volumePluginDir: {plugins}
serializeImagePulls: false
maxPods: 110
",
                port = free_port()?,
                healthz = free_port()?,
                socket = p.containerd_socket.display(),
                resolv = resolv.display(),
                pod_cidr = pod_cidr(p.index),
                pod_logs = p.pod_logs.display(),
                plugins = p.kubelet_root.join("volume-plugins").display(),
            );
            let path = p.dir.join("kubelet.yaml");
            std::fs::write(&path, config)?;
            member.kubelet = Some(ManagedProcess::spawn(
                "kubelet",
                &bin.join("kubelet"),
                &[
                    format!("--config={}", path.display()),
                    format!("--kubeconfig={}", kube.kubeconfig().display()),
                    format!("--root-dir={}", p.kubelet_root.display()),
                    format!("--cert-dir={}", p.kubelet_root.join("pki").display()),
                    format!("--hostname-override={}", member.name),
                    format!("--node-ip={ip}"),
                    format!("--node-labels={ZONE_LABEL}={}", zone_name(p.index)),
                    "--v=0".into(),
                ],
                &p.logs.join("kubelet.log"),
            )?);
            let log = p.logs.join("kubelet.log");
            let kubelet = member.kubelet.as_mut().expect("spawned above");
            wait_for(
                &format!("the container manager of {}'s kubelet", member.name),
                Duration::from_secs(60),
                || {
                    if kubelet.has_exited() {
                        bail!(
                            "the kubelet of {} exited:\n{}",
                            member.name,
                            kubelet.log_tail(40)
                        );
                    }
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    Ok(text.contains("Eviction manager: starting control loop"))
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Waits until every node is Ready, and gives each Node its pod range (`spec.podCIDR`,
    /// which a cluster's node IPAM would set) where it has none.
    async fn wait_ready(&mut self, client: &Client) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        for member in &mut self.members {
            loop {
                if let Some(kubelet) = member.kubelet.as_mut()
                    && kubelet.has_exited()
                {
                    bail!(
                        "the kubelet of {} exited:\n{}",
                        member.name,
                        kubelet.log_tail(40)
                    );
                }
                if let Ok(node) = nodes.get(&member.name).await
                    && node_ready(&node)
                {
                    if node
                        .spec
                        .as_ref()
                        .and_then(|s| s.pod_cidr.as_ref())
                        .is_none()
                    {
                        let cidr = pod_cidr(member.paths.index);
                        let patch = serde_json::json!({
                            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}
                        });
                        nodes
                            .patch(&member.name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .with_context(|| format!("setting the podCIDR of {}", member.name))?;
                    }
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "node {} not Ready after 120 s; kubelet log:\n{}",
                        member.name,
                        file_tail(&member.paths.logs.join("kubelet.log"), 40)
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Ok(())
    }

    fn tear_down(&mut self) {
        for recycler in self.recyclers.drain(..) {
            recycler.abort();
        }
        if self.network.is_none() {
            return;
        }
        // Every kubelet first, so that none restarts what the next steps stop.
        for member in &mut self.members {
            if let Some(mut kubelet) = member.kubelet.take() {
                kubelet.stop_blocking(Duration::from_secs(10));
            }
        }
        for member in &mut self.members {
            if member.containerd.is_some() {
                remove_containers(&member.paths.containerd_socket);
            }
            if let Some(mut containerd) = member.containerd.take() {
                containerd.stop_blocking(Duration::from_secs(10));
            }
        }
        for process in [
            self.proxy.take(),
            self.scheduler.take(),
            self.coredns.take(),
            self.registry.take(),
        ]
        .into_iter()
        .flatten()
        {
            let mut process = process;
            process.stop_blocking(Duration::from_secs(5));
        }
        let paths: Vec<NodePaths> = self
            .members
            .iter()
            .map(|m| NodePaths::new(m.paths.index))
            .collect();
        clean_up(&paths);
        if let Some(mut network) = self.network.take() {
            network.tear_down();
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// Imports the image archives into one node's containerd.
fn import_images(node: &str, socket: &Path, images: &[PathBuf]) -> anyhow::Result<()> {
    for archive in images {
        let path = archive.display().to_string();
        let started = Instant::now();
        let out = ctr(socket, &["images", "import", &path])?;
        ensure!(
            out.status.success(),
            "importing {path} into the containerd of {node} failed: {}; rebuild it with hack/build-images.sh",
            String::from_utf8_lossy(&out.stderr)
        );
        tracing::info!("imported {path} into {node} in {:?}", started.elapsed());
    }
    Ok(())
}

/// The last `lines` lines of a log file.
fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The lock that makes the testbed's nodes this machine's only ones. It is a plain file lock,
/// so it goes away with the process that held it, however that process ended. Named after
/// the first node, as when there was only one, so that older and newer testbeds exclude each
/// other.
fn take_lock() -> anyhow::Result<File> {
    let path = std::env::temp_dir().join(format!("{NODE_DIR_PREFIX}0.lock"));
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut told = false;
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        if !told {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            tracing::warn!(
                "another testbed node runs on this machine (process {}); waiting for it to stop",
                holder.trim()
            );
            told = true;
        }
        ensure!(
            Instant::now() < deadline,
            "another testbed node (lock {}) still runs after 10 minutes; stop that test run first",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Stops the containers of a node's containerd, through a containerd started on the node's
/// state if a killed run left one (and maybe shims and containers) behind: that containerd
/// lists them, so they go the way a clean stop removes them.
fn stop_leftover_containers(paths: &NodePaths) {
    if paths.containerd_config.exists() && !containerd_answers(&paths.containerd_socket) {
        let _ = std::fs::remove_file(&paths.containerd_socket);
        // A plain child, not a ManagedProcess: this may run at exit, without a runtime.
        if let Ok(mut containerd) = StdCommand::new("containerd")
            .arg(format!("--config={}", paths.containerd_config.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !containerd_answers(&paths.containerd_socket) {
                std::thread::sleep(Duration::from_millis(200));
            }
            remove_containers(&paths.containerd_socket);
            // SAFETY: signalling the child just started.
            unsafe {
                libc::kill(containerd.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(containerd.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = containerd.kill();
            let _ = containerd.wait();
        }
    } else if containerd_answers(&paths.containerd_socket) {
        remove_containers(&paths.containerd_socket);
    }
    kill_shims(&paths.containerd_socket);
}

/// Cleans up after the nodes of `paths`: their containers, kube-proxy's and the kubelets'
/// chains, mounts, network namespaces, the bridge, and the nodes' directories (their logs kept
/// as `kafka-operator-node-N-last-logs`). Every step tolerates what is already gone.
fn clean_up(paths: &[NodePaths]) {
    for node in paths {
        stop_leftover_containers(node);
    }

    // kube-proxy removes its own rules; the kubelet's chains (KUBE-FIREWALL,
    // KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, ...) must be removed here.
    let proxy = bin_dir().join("kube-proxy");
    if proxy.exists() {
        let _ = StdCommand::new(&proxy)
            .args(["--cleanup", "--v=0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    for tool in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle"] {
            remove_chains(tool, table, |chain| chain.starts_with("KUBE-"));
        }
    }
    // Connections tracked through Service rewrites would send a next run's packets to this
    // run's pods.
    for cidr in [POD_NETWORK, SERVICE_CIDR] {
        for direction in ["-s", "-d"] {
            let _ = StdCommand::new("conntrack")
                .args(["-D", direction, cidr])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    for node in paths {
        unmount_under(&node.dir);
        remove_log_links(&node.dir);
    }
    remove_cgroup_parents();
    remove_network();
    // The last logs are those of the nodes just cleaned up, and of no earlier run's others.
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(NODE_DIR_PREFIX) && name.ends_with("-last-logs") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    for node in paths {
        let last_logs =
            std::env::temp_dir().join(format!("{NODE_DIR_PREFIX}{}-last-logs", node.index));
        let _ = std::fs::rename(&node.logs, &last_logs);
        if let Err(e) = std::fs::remove_dir_all(&node.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove {}: {e}", node.dir.display());
        }
    }
}

/// The links the kubelet made in [`CONTAINER_LOG_LINKS`] to logs under `dir`.
fn remove_log_links(dir: &Path) {
    let Ok(links) = std::fs::read_dir(CONTAINER_LOG_LINKS) else {
        return;
    };
    for link in links.flatten() {
        if std::fs::read_link(link.path()).is_ok_and(|target| target.starts_with(dir)) {
            let _ = std::fs::remove_file(link.path());
        }
    }
}

/// The cgroup v1 parent containerd's CRI plugin makes in every hierarchy (`k8s.io`); runc
/// removes each container's own cgroup, the parent stays. Only empty ones can be removed.
fn remove_cgroup_parents() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let parent = hierarchy.path().join(CRI_NAMESPACE);
        if let Ok(children) = std::fs::read_dir(&parent) {
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(child.path());
            }
        }
        let _ = std::fs::remove_dir(&parent);
    }
}

/// The bridge, the veths left on it and the forwarding guard.
fn remove_network() {
    let bridge = BRIDGE;
    if link_exists(bridge) {
        if let Ok(out) = StdCommand::new("ip")
            .args(["-o", "link", "show", "master", bridge])
            .output()
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // "12: veth1234@if3: <...>"
                if let Some(name) = line.split(':').nth(1) {
                    let name = name.trim().split('@').next().unwrap_or_default();
                    let _ = run("ip", &["link", "del", name]);
                }
            }
        }
        let _ = run("ip", &["link", "del", bridge]);
    }
    remove_chains("iptables", "filter", |chain| chain == GUARD_CHAIN);
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Stops and removes every container of the node's containerd, and the network namespaces of
/// their pods (what the CNI teardown of a pod's sandbox would have done, with the addresses
/// released by removing the node's IPAM directory later).
fn remove_containers(socket: &Path) {
    let Ok(out) = ctr(socket, &["containers", "ls", "-q"]) else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let mut namespaces = Vec::new();
    for id in &ids {
        if let Ok(out) = ctr(socket, &["containers", "info", id])
            && let Ok(info) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(list) = info["Spec"]["linux"]["namespaces"].as_array()
        {
            for ns in list {
                if ns["type"] == "network"
                    && let Some(path) = ns["path"].as_str()
                    && !path.is_empty()
                {
                    namespaces.push(PathBuf::from(path));
                }
            }
        }
    }
    for id in &ids {
        let _ = ctr(
            socket,
            &["tasks", "kill", "--signal", "SIGKILL", "--all", id],
        );
    }
    for id in &ids {
        let _ = ctr(socket, &["tasks", "delete", "--force", id]);
        let _ = ctr(socket, &["containers", "delete", id]);
    }
    namespaces.sort();
    namespaces.dedup();
    for ns in namespaces {
        remove_netns(&ns);
    }
}

/// A network namespace pinned by a bind mount (`/run/netns/cni-...`): unmounting the last
/// reference destroys it, and with it the pod's end of its veth pair.
fn remove_netns(path: &Path) {
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 with a valid C string.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_file(path);
}

/// Shims of this containerd that outlived it (they are meant to: containerd can restart under
/// running containers). Found by the socket address on their command line.
fn kill_shims(socket: &Path) {
    let socket = socket.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(&socket) {
            // SAFETY: killing a leftover shim of the testbed's own containerd.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && process_alive(pid) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Unmounts everything mounted at or below `dir`, deepest first (a parent cannot go while a
/// child is mounted on it); detaches what is still busy.
fn unmount_under(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else {
        return;
    };
    for _ in 0..3 {
        let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<PathBuf> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|p| PathBuf::from(unescape_mount_path(p)))
            .filter(|p| p.starts_with(&dir))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        points.dedup();
        for point in points {
            if let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) {
                // SAFETY: umount2 with a valid C string.
                unsafe {
                    if libc::umount2(c.as_ptr(), 0) != 0 {
                        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                    }
                }
            }
        }
    }
}

/// mountinfo writes spaces, tabs, newlines and backslashes in paths as octal escapes.
fn unescape_mount_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the chains of `table` that `ours` selects: first the rules that jump to them from
/// any chain, then their rules, then the chains.
fn remove_chains(tool: &str, table: &str, ours: impl Fn(&str) -> bool) {
    let Ok(out) = StdCommand::new(tool).args(["-t", table, "-S"]).output() else {
        return;
    };
    if !out.status.success() {
        return;
    }
    let rules = String::from_utf8_lossy(&out.stdout).into_owned();
    let chains: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.strip_prefix("-N "))
        .map(str::trim)
        .filter(|c| ours(c))
        .collect();
    if chains.is_empty() {
        return;
    }
    for rule in rules.lines().filter_map(|l| l.strip_prefix("-A ")) {
        let mut words = rule.split_whitespace();
        let chain = words.next().unwrap_or_default();
        let jumps_to_ours = rule
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| (w[0] == "-j" || w[0] == "-g") && chains.contains(&w[1]));
        if jumps_to_ours && !chains.contains(&chain) {
            // The rule as listed, with -D instead of -A, deletes it. Quotes in comments are
            // part of the listing; a shell-style split keeps them together.
            let args = shell_words(rule);
            let mut command = vec!["-t".to_string(), table.to_string(), "-D".to_string()];
            command.extend(args);
            let _ = StdCommand::new(tool)
                .args(&command)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    for chain in &chains {
        let _ = StdCommand::new(tool)
            .args(["-t", table, "-F", chain])
            .stderr(std::process::Stdio::null())
            .status();
    }
    for chain in &chains {
        let _ = StdCommand::new(tool)
            .args(["-t", table, "-X", chain])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Splits an iptables rule listing into words, keeping double-quoted strings whole.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn containerd_answers(socket: &Path) -> bool {
    socket.exists()
        && ctr(socket, &["version"])
            .map(|o| o.status.success())
            .unwrap_or(false)
}

fn ctr(socket: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    StdCommand::new("ctr")
        .arg(format!("--address={}", socket.display()))
        .arg(format!("--namespace={CRI_NAMESPACE}"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running ctr (from the containerd package; run hack/node-deps.sh)")
}

/// Runs a command that must succeed.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = StdCommand::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {program} (run hack/node-deps.sh if it is missing)"))?;
    ensure!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Whether `GET path` on 127.0.0.1:`port` answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .lines()
        .next()
        .is_some_and(|status| status.split_whitespace().nth(1) == Some("200"))
}

/// Polls `ready` until it holds, failing with the end of `process`'s log if it exits first.
async fn wait_until_up(
    process: &mut ManagedProcess,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    wait_for(what, timeout, || {
        ensure!(
            !process.has_exited(),
            "{} exited:\n{}",
            process.name(),
            process.log_tail(30)
        );
        Ok(ready())
    })
    .await
}

/// Polls `check` every 200 ms until it returns true, an error, or `timeout` passes.
async fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn coredns_binary() -> anyhow::Result<PathBuf> {
    let version = pinned_version("COREDNS_VERSION")?;
    Ok(crate::process::cache_dir()
        .join("coredns")
        .join(version)
        .join("bin/coredns"))
}

fn crane_binary() -> anyhow::Result<PathBuf> {
    let version = pinned_version("CRANE_VERSION")?;
    Ok(crate::process::cache_dir()
        .join("crane")
        .join(version)
        .join("bin/crane"))
}

/// Builds what the node runs that is missing: kubelet, kube-proxy and kube-scheduler
/// (`hack/build-k8s.sh`), CoreDNS and the registry (`hack/build-go-tool.sh`).
async fn ensure_node_binaries() -> anyhow::Result<PathBuf> {
    let bin = bin_dir();
    if !["kubelet", "kube-proxy", "kube-scheduler"]
        .iter()
        .all(|b| bin.join(b).exists())
    {
        run_script("hack/build-k8s.sh", &[]).await?;
    }
    if !coredns_binary()?.exists() {
        run_script("hack/build-go-tool.sh", &["coredns"]).await?;
    }
    if !crane_binary()?.exists() {
        run_script("hack/build-go-tool.sh", &["crane"]).await?;
    }
    Ok(bin)
}

/// The archive `hack/build-images.sh` writes for an image reference.
pub fn image_archive(reference: &str) -> PathBuf {
    crate::process::cache_dir()
        .join("images")
        .join(format!("{}.tar", reference.replace(['/', ':'], "_")))
}

/// The references of the images every node has: the sandbox, the default Kafka image, the
/// images the original example and `examples/manual-zookeeper.yaml` run (its
/// `confluentinc/cp-kafka:latest`; an unpinned `confluentinc/cp-kafka` in ZooKeeper mode runs
/// the last Confluent release with ZooKeeper),
/// the JMX exporter sidecar of a cluster with `jmxSidecar: true` and the operator's (the one
/// `deploy/` names).
pub fn default_images() -> anyhow::Result<Vec<String>> {
    Ok(vec![
        pinned_version("PAUSE_IMAGE")?,
        format!("apache/kafka:{}", pinned_version("KAFKA_VERSION")?),
        "confluentinc/cp-kafka:latest".into(),
        format!("confluentinc/cp-kafka:{}", pinned_version("CP_ZK_TAG")?),
        format!("zookeeper:{}", pinned_version("ZOOKEEPER_VERSION")?),
        format!(
            "bitnamilegacy/jmx-exporter:{}",
            pinned_version("JMX_EXPORTER_VERSION")?
        ),
        format!("kafka-operator:{}", env!("CARGO_PKG_VERSION")),
    ])
}

/// The images of a node: those imported into every containerd, and those its registry serves,
/// with their archives.
struct NodeImages {
    imported: Vec<PathBuf>,
    served: Vec<(String, PathBuf)>,
}

/// Brings the image archives up to date (`hack/build-images.sh` rebuilds only what changed,
/// the operator's image when its binary did) and returns them. An image Kubernetes pulls on
/// every start ([`pulled_on_every_start`]) is served by the node's registry, as its tag would
/// be by a real one; the others are imported, as a node that pulled them before has them.
async fn ensure_images(options: &NodeOptions) -> anyhow::Result<NodeImages> {
    run_script("hack/build-images.sh", &[]).await?;
    let mut references = default_images()?;
    references.extend(options.extra_images.iter().cloned());
    let mut images = NodeImages {
        imported: Vec::new(),
        served: Vec::new(),
    };
    for reference in references {
        let archive = image_archive(&reference);
        ensure!(
            archive.exists(),
            "no image archive for {reference} at {}; build it with hack/build-images.sh",
            archive.display()
        );
        if pulled_on_every_start(&reference) {
            images.served.push((reference, archive));
        } else {
            images.imported.push(archive);
        }
    }
    Ok(images)
}

/// Whether Kubernetes pulls `reference` each time a container of it starts when the pod names
/// no `imagePullPolicy`: its default is `Always` for the tag `latest` or no tag at all (and no
/// digest), `IfNotPresent` otherwise.
pub fn pulled_on_every_start(reference: &str) -> bool {
    if reference.contains('@') {
        return false;
    }
    let name = reference.rsplit('/').next().unwrap_or(reference);
    match name.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// The repository path and tag of a docker.io image reference in that registry's API
/// (`zookeeper` is `library/zookeeper`), or None for another registry's reference.
fn docker_io_repository(reference: &str) -> Option<(String, String)> {
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    };
    let mut parts = name.splitn(2, '/');
    let first = parts.next()?;
    let path = match parts.next() {
        None => format!("library/{first}"),
        Some(rest) if first == "docker.io" || first == "index.docker.io" => {
            if rest.contains('/') {
                rest.to_string()
            } else {
                format!("library/{rest}")
            }
        }
        Some(_) if first.contains(['.', ':']) || first == "localhost" => return None,
        Some(rest) => format!("{first}/{rest}"),
    };
    Some((path, tag.to_string()))
}

async fn run_script(script: &str, args: &[&str]) -> anyhow::Result<()> {
    let path = project_root().join(script);
    let mut command = tokio::process::Command::new(&path);
    // `cargo test` gives its test binaries the variables of the package under test and a
    // library path of its build directory; the scripts' own cargo build would take them for a
    // change of environment and rebuild the operator from scratch, every time.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key == "LD_LIBRARY_PATH"
            || key == "RUST_RECURSION_COUNT"
            || (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR")
        {
            command.env_remove(key.as_ref());
        }
    }
    let status = command
        .args(args)
        .status()
        .await
        .with_context(|| format!("running {}", path.display()))?;
    ensure!(status.success(), "{} failed ({status})", path.display());
    Ok(())
}

/// Waits for the `default` ServiceAccount of `namespace`, which kube-controller-manager
/// creates and the ServiceAccount admission needs before any pod of the namespace; creates it
/// if the controller has not within 20 s.
pub async fn ensure_default_service_account(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let account = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context(format!("creating ServiceAccount {namespace}/default")),
    }
}

/// The default StorageClass: local volumes bound when a pod that uses them is scheduled.
///
/// Local PersistentVolumes that the testbed creates, rather than a dynamic provisioner built
/// from Go modules: they need no extra image or helper pods, they are what Kafka usually runs
/// on outside the clouds, and `WaitForFirstConsumer` makes the scheduler bind each claim to a
/// volume of the node its pod goes to (the volume's node affinity), which is what multi-node
/// tests need. [`recycle_volumes`] plays the part of the local static provisioner: it keeps
/// spare volumes Available and wipes and replaces released ones, so deleted claims behave as
/// with a real class (a new claim gets an empty volume).
async fn ensure_storage(client: &Client) -> anyhow::Result<()> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }))?;
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating the testbed's StorageClass"),
    }
}

/// Keeps [`SPARE_VOLUMES`] local volumes of `node` Available, and replaces released ones
/// (their claim was deleted) with empty volumes.
async fn recycle_volumes(client: Client, node: String, dir: PathBuf) {
    let volumes: Api<PersistentVolume> = Api::all(client);
    let selector = format!("{PV_LABEL}={node}");
    let mut next = 0u32;
    loop {
        if let Err(e) = recycle_once(&volumes, &selector, &node, &dir, &mut next).await {
            tracing::warn!("recycling the node's local volumes: {e:#}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn recycle_once(
    volumes: &Api<PersistentVolume>,
    selector: &str,
    node: &str,
    dir: &Path,
    next: &mut u32,
) -> anyhow::Result<()> {
    let list = volumes
        .list(&ListParams::default().labels(selector))
        .await?;
    let mut available = 0;
    for pv in &list.items {
        let phase = pv
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        match phase {
            "Available" | "Pending" | "" => available += 1,
            "Released" | "Failed" => {
                // Wiped before the volume goes, so a volume seen gone is a directory gone.
                let name = pv.name_any();
                let _ = std::fs::remove_dir_all(dir.join(&name));
                volumes.delete(&name, &DeleteParams::default()).await?;
            }
            _ => {}
        }
        if let Some(n) = pv
            .name_any()
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
        {
            *next = (*next).max(n + 1);
        }
    }
    while available < SPARE_VOLUMES {
        let name = format!("{node}-pv-{next}");
        *next += 1;
        let path = dir.join(&name);
        std::fs::create_dir_all(&path)?;
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {PV_LABEL: node}},
            "spec": {
                "capacity": {"storage": VOLUME_CAPACITY},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": "Filesystem",
                "local": {"path": path},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                ]}]}}
            }
        }))?;
        volumes.create(&PostParams::default(), &pv).await?;
        available += 1;
    }
    Ok(())
}

/// A shared handle for tests that keep one node for a whole test binary: the node is torn down
/// at process exit (statics are never dropped), see [`tear_down_at_exit`].
pub type SharedNode = Arc<std::sync::Mutex<Option<LocalNode>>>;

/// Registers `node` to be torn down when the process exits normally (a test binary returns
/// from `main` after its last test), so that a node kept in a static does not outlive the run.
/// A killed process leaves it to the next run's clean-up.
pub fn tear_down_at_exit(node: LocalNode) -> SharedNode {
    static AT_EXIT: std::sync::OnceLock<SharedNode> = std::sync::OnceLock::new();
    let shared = AT_EXIT.get_or_init(|| {
        extern "C" fn at_exit() {
            if let Some(shared) = AT_EXIT.get()
                && let Ok(mut guard) = shared.lock()
            {
                drop(guard.take());
            }
        }
        // SAFETY: registering a plain function with the C runtime.
        unsafe {
            libc::atexit(at_exit);
        }
        Arc::new(std::sync::Mutex::new(None))
    });
    *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(node);
    shared.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_have_their_names_zones_and_pod_ranges() {
        assert_eq!(NodeOptions::default().nodes, 1);
        assert_eq!(
            (0..3).map(node_name).collect::<Vec<_>>(),
            ["testbed-node-0", "testbed-node-1", "testbed-node-2"]
        );
        assert_eq!(
            (0..3).map(zone_name).collect::<Vec<_>>(),
            ["testbed-zone-a", "testbed-zone-b", "testbed-zone-c"]
        );
        assert_eq!(pod_cidr(0), "10.244.0.0/24");
        assert_eq!(pod_cidr(2), "10.244.2.0/24");
        assert_eq!(
            POD_NETWORK, "10.244.0.0/16",
            "every node's range is in the pod network"
        );
        assert_eq!(
            NodePaths::new(1).dir.file_name().and_then(|n| n.to_str()),
            Some("kafka-operator-node-1")
        );
    }

    #[test]
    fn images_with_the_latest_tag_or_none_are_pulled_on_every_start() {
        for always in [
            "confluentinc/cp-kafka:latest",
            "confluentinc/cp-kafka",
            "localhost:5000/kafka",
            "registry.example:5000/confluentinc/cp-kafka:latest",
        ] {
            assert!(pulled_on_every_start(always), "{always}");
        }
        for present in [
            "apache/kafka:4.3.2",
            "registry.example:5000/confluentinc/cp-kafka:7.9.11",
            "confluentinc/cp-kafka@sha256:0123",
            "kafka-operator-testbed/pause:1",
        ] {
            assert!(!pulled_on_every_start(present), "{present}");
        }
    }

    #[test]
    fn docker_io_references_name_their_repository() {
        let repository = |r: &str| docker_io_repository(r);
        let pair = |p: &str, t: &str| Some((p.to_string(), t.to_string()));
        assert_eq!(
            repository("confluentinc/cp-kafka:latest"),
            pair("confluentinc/cp-kafka", "latest")
        );
        assert_eq!(
            repository("zookeeper:3.8.4"),
            pair("library/zookeeper", "3.8.4")
        );
        assert_eq!(repository("zookeeper"), pair("library/zookeeper", "latest"));
        assert_eq!(
            repository("docker.io/confluentinc/cp-kafka"),
            pair("confluentinc/cp-kafka", "latest")
        );
        assert_eq!(
            repository("docker.io/busybox:1"),
            pair("library/busybox", "1")
        );
        assert_eq!(repository("localhost:5000/kafka"), None);
        assert_eq!(repository("quay.io/strimzi/kafka:latest"), None);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b/c\011d"), "/tmp/a b/c\td");
        assert_eq!(unescape_mount_path(r"/plain/path"), "/plain/path");
        // A backslash not followed by three octal digits stays as it is.
        assert_eq!(unescape_mount_path(r"/odd\09"), r"/odd\09");
    }

    #[test]
    fn rule_listings_split_like_the_shell() {
        assert_eq!(
            shell_words(
                r#"INPUT -m comment --comment "kubernetes firewall rule" -j KUBE-FIREWALL"#
            ),
            vec![
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "kubernetes firewall rule",
                "-j",
                "KUBE-FIREWALL"
            ]
        );
        assert_eq!(shell_words("  a  b "), vec!["a", "b"]);
    }
}
