//! Real Apache Kafka on loopback: a KRaft cluster (controllers + brokers) or a ZooKeeper-mode
//! cluster, as JVM processes from the jars `hack/fetch-kafka.sh` fetches.
//!
//! Every node is configured by the operator's own rendering
//! ([`broker_properties`]/[`controller_properties`]) of a [`Cluster`]; only the per-pod values
//! (addresses, ports, log directories) come from [`Local`], this testbed's [`Environment`].
//! So a test that passes here proves Kafka accepts what the operator generates.
//!
//! Processes die with the testbed: dropping [`LocalKafka`] kills them and removes their
//! directories, and each JVM gets `PR_SET_PDEATHSIG` so it dies with the thread that started
//! it, even when a test process is killed. Start the testbed from the test's own task (not from
//! `spawn_blocking`, whose threads exit when idle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kafka_protocol::messages::DescribeClusterRequest;

use kafka_operator::api::{Cluster, KafkaCluster, Mode, validate};
use kafka_operator::kafka::protocol::Connection;
use kafka_operator::kafka::{KafkaClient, KafkaClientConfig};
use kafka_operator::resources::config::{
    Environment, Listener, Node, broker_properties, controller_properties, node_id, render,
};
use kafka_operator::resources::names::Role;

use super::process::{ManagedProcess, cache_dir, free_port, project_root};

/// How long a cluster may take to come up on a slow machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a broker gets to shut down cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalKafkaOptions {
    /// The cluster as the operator sees it: broker count, controller count, broker settings.
    /// Its mode decides KRaft vs ZooKeeper (the ZooKeeper address is filled in by the testbed).
    pub cluster: Cluster,
    /// Kafka version of the jars (`hack/versions.sh`).
    pub version: String,
    /// Maximum heap of each broker JVM.
    pub broker_heap_mb: u32,
    /// Maximum heap of each controller JVM.
    pub controller_heap_mb: u32,
}

impl LocalKafkaOptions {
    /// A KRaft cluster of `brokers` brokers and 3 controllers, settings tuned for tests.
    pub fn kraft(brokers: i32) -> Self {
        Self::from_yaml(&format!(
            "brokerCount: {brokers}\ncontrollers: {{replicas: 3}}\n{TEST_SETTINGS}"
        ))
        .expect("the built-in test spec is valid")
    }

    /// A ZooKeeper-mode cluster of `brokers` brokers (Kafka 3.9).
    pub fn zookeeper(brokers: i32) -> Self {
        // The address is replaced once the ZooKeeper port is known.
        let mut options = Self::from_yaml(&format!(
            "brokerCount: {brokers}\nzookeeperConnect: 127.0.0.1:2181\n{TEST_SETTINGS}"
        ))
        .expect("the built-in test spec is valid");
        options.version = zookeeper_mode_version();
        options
    }

    /// Options for a cluster from a `KafkaCluster` spec in YAML.
    pub fn from_yaml(spec: &str) -> anyhow::Result<Self> {
        let spec = serde_yaml::from_str(spec).context("parsing the KafkaCluster spec")?;
        let mut kc = KafkaCluster::new("local", spec);
        kc.metadata.namespace = Some("default".into());
        let cluster = validate(&kc).map_err(|e| anyhow::anyhow!("invalid spec: {e}"))?;
        Ok(Self::from_cluster(cluster))
    }

    pub fn from_cluster(cluster: Cluster) -> Self {
        LocalKafkaOptions {
            cluster,
            version: kafka_operator::api::KAFKA_VERSION.to_string(),
            broker_heap_mb: 384,
            controller_heap_mb: 256,
        }
    }
}

/// Settings that make a small test cluster fast, passed through the spec like a user's would be:
/// consumer groups start at once, and offsets/transaction topics stay small.
const TEST_SETTINGS: &str = "kafkaOptions:\n  config:\n    group.initial.rebalance.delay.ms: '0'\n    offsets.topic.num.partitions: '5'\n    transaction.state.log.num.partitions: '5'\n    num.network.threads: '2'\n    num.io.threads: '2'\n    log.cleaner.dedupe.buffer.size: '4194304'\n";

/// The Kafka version of ZooKeeper-mode tests: the one of the operator's default ZooKeeper-mode
/// image (the last Kafka line with ZooKeeper; `hack/versions.sh` pins the same).
pub fn zookeeper_mode_version() -> String {
    kafka_operator::api::DEFAULT_ZOOKEEPER_MODE_IMAGE
        .rsplit(':')
        .next()
        .unwrap_or("3.9.2")
        .to_string()
}

/// Per-node values of a local cluster: everything on 127.0.0.1, a port per node and listener,
/// a log directory per node under the testbed's directory.
pub struct Local<'a> {
    ports: &'a BTreeMap<(Role, i32), [u16; 3]>,
    dir: &'a Path,
}

fn listener_index(l: Listener) -> usize {
    match l {
        Listener::Client => 0,
        Listener::Replication => 1,
        Listener::Controller => 2,
    }
}

impl Environment for Local<'_> {
    fn host(&self, _role: Role, _node: Node) -> String {
        "127.0.0.1".to_string()
    }

    fn port(&self, role: Role, node: Node, listener: Listener) -> u16 {
        match node {
            Node::Ordinal(i) => self
                .ports
                .get(&(role, i))
                .map(|p| p[listener_index(listener)])
                .unwrap_or(0),
            // Local nodes always have an ordinal; 0 makes a bad config fail loudly at startup.
            Node::FromPod => 0,
        }
    }

    fn bind_host(&self) -> String {
        "127.0.0.1".to_string()
    }

    fn log_dir(&self, role: Role, node: Node) -> String {
        let name = match node {
            Node::Ordinal(i) => format!("{}-{i}", role.as_str()),
            Node::FromPod => "unknown".to_string(),
        };
        self.dir.join(name).join("data").display().to_string()
    }
}

struct NodeProcess {
    role: Role,
    ordinal: i32,
    process: Option<ManagedProcess>,
}

/// A running local Kafka cluster. See the module documentation.
pub struct LocalKafka {
    // Fields drop in order: processes before the directory they write to.
    nodes: Vec<NodeProcess>,
    zookeeper: Option<ManagedProcess>,
    cluster: Cluster,
    cluster_id: String,
    ports: BTreeMap<(Role, i32), [u16; 3]>,
    libs: PathBuf,
    log_config: PathBuf,
    options: LocalKafkaOptions,
    dir: tempfile::TempDir,
}

impl LocalKafka {
    /// Starts a KRaft cluster (`options.cluster` must be in KRaft mode) and waits until every
    /// broker is registered and unfenced.
    pub async fn start(options: LocalKafkaOptions) -> anyhow::Result<LocalKafka> {
        if !options.cluster.is_kraft() {
            bail!("LocalKafka::start runs KRaft clusters; use start_zookeeper_mode");
        }
        let mut kafka = Self::prepare(options)?;
        // The spec's clusterId when it has one, so the operator and the brokers agree on it.
        kafka.cluster_id = match kafka.cluster.cluster_id.clone() {
            Some(id) => id,
            None => kafka.random_cluster_id().await?,
        };
        // Controllers first: they boot while the brokers' storage is formatted.
        let controllers: Vec<(Role, i32)> = (0..kafka.cluster.controller_count())
            .map(|i| (Role::Controller, i))
            .collect();
        kafka.start_nodes(&controllers).await?;
        let brokers: Vec<(Role, i32)> = (0..kafka.cluster.broker_count)
            .map(|i| (Role::Broker, i))
            .collect();
        kafka.start_nodes(&brokers).await?;
        kafka.wait_for_brokers().await?;
        Ok(kafka)
    }

    /// Starts one ZooKeeper and ZooKeeper-mode brokers (Kafka 3.9 jars; `options.version` must
    /// be a 3.x version).
    pub async fn start_zookeeper_mode(options: LocalKafkaOptions) -> anyhow::Result<LocalKafka> {
        let mut kafka = Self::prepare(options)?;
        let zk_port = free_port()?;
        kafka.cluster.mode = Mode::ZooKeeper {
            connect: format!("127.0.0.1:{zk_port}"),
        };
        kafka.start_zookeeper(zk_port).await?;
        let nodes: Vec<(Role, i32)> = (0..kafka.cluster.broker_count)
            .map(|i| (Role::Broker, i))
            .collect();
        kafka.start_nodes(&nodes).await?;
        kafka.wait_for_brokers().await?;
        Ok(kafka)
    }

    fn prepare(options: LocalKafkaOptions) -> anyhow::Result<LocalKafka> {
        let home = ensure_jars(&options.version)?;
        let dir = tempfile::Builder::new()
            .prefix("local-kafka-")
            .tempdir()
            .context("creating the testbed directory")?;
        let log_config = dir.path().join("log4j2.properties");
        std::fs::write(&log_config, LOG4J2).context("writing the log configuration")?;
        std::fs::write(dir.path().join("log4j.properties"), LOG4J1)
            .context("writing the log configuration")?;
        let mut kafka = LocalKafka {
            nodes: Vec::new(),
            zookeeper: None,
            cluster: options.cluster.clone(),
            cluster_id: String::new(),
            ports: BTreeMap::new(),
            libs: home.join("libs"),
            log_config,
            options,
            dir,
        };
        for i in 0..kafka.cluster.controller_count() {
            kafka.allocate_ports(Role::Controller, i)?;
        }
        for i in 0..kafka.cluster.broker_count {
            kafka.allocate_ports(Role::Broker, i)?;
        }
        Ok(kafka)
    }

    fn allocate_ports(&mut self, role: Role, ordinal: i32) -> anyhow::Result<()> {
        if self.ports.contains_key(&(role, ordinal)) {
            return Ok(());
        }
        let used: BTreeSet<u16> = self.ports.values().flatten().copied().collect();
        let mut ports = [0u16; 3];
        for i in 0..ports.len() {
            // The OS hands out ephemeral ports in sequence, so a repeat is rare; skip it anyway.
            loop {
                let candidate = free_port()?;
                if !used.contains(&candidate) && !ports.contains(&candidate) {
                    ports[i] = candidate;
                    break;
                }
            }
        }
        self.ports.insert((role, ordinal), ports);
        Ok(())
    }

    fn env(&self) -> Local<'_> {
        Local {
            ports: &self.ports,
            dir: self.dir.path(),
        }
    }

    fn node_dir(&self, role: Role, ordinal: i32) -> PathBuf {
        self.dir.path().join(format!("{}-{ordinal}", role.as_str()))
    }

    fn java(&self) -> PathBuf {
        PathBuf::from(std::env::var_os("JAVA").unwrap_or_else(|| "java".into()))
    }

    fn classpath(&self) -> String {
        format!("{}/*", self.libs.display())
    }

    fn jvm_args(&self, heap_mb: u32) -> Vec<String> {
        vec![
            format!("-Xmx{heap_mb}m"),
            "-Xms64m".into(),
            // Two cores shared by many JVMs: the serial collector and the C1 compiler start
            // faster and use less CPU than the defaults.
            "-XX:+UseSerialGC".into(),
            "-XX:TieredStopAtLevel=1".into(),
            "-XX:-UsePerfData".into(),
            "-Djava.awt.headless=true".into(),
            format!("-Dlog4j2.configurationFile={}", self.log_config.display()),
            format!(
                "-Dlog4j.configuration=file:{}",
                self.dir.path().join("log4j.properties").display()
            ),
            "-cp".into(),
            self.classpath(),
        ]
    }

    /// Runs Kafka's own `kafka-reassign-partitions` against this cluster with `args` (e.g.
    /// `--execute --reassignment-json-file plan.json`); its standard output.
    pub async fn reassign_partitions(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec![
            "org.apache.kafka.tools.reassign.ReassignPartitionsCommand".to_string(),
            "--bootstrap-server".to_string(),
            self.bootstrap_servers(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        self.run_tool(&all, "kafka-reassign-partitions").await
    }

    /// Runs Kafka's own `kafka-configs` against this cluster with `args` (e.g. `--describe
    /// --entity-type brokers --entity-default`); its standard output.
    pub async fn configs(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec![
            "kafka.admin.ConfigCommand".to_string(),
            "--bootstrap-server".to_string(),
            self.bootstrap_servers(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        self.run_tool(&all, "kafka-configs").await
    }

    /// Runs a Kafka tool to completion, bounded in time; its output on failure.
    async fn run_tool(&self, args: &[String], what: &str) -> anyhow::Result<String> {
        let mut cmd = tokio::process::Command::new(self.java());
        cmd.args(self.jvm_args(256))
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .with_context(|| format!("{what} did not finish in 120s"))?
            .with_context(|| format!("running {what}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            let lines: Vec<&str> = all.lines().collect();
            bail!(
                "{what} failed ({}); last output lines:\n{}",
                out.status,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
        Ok(stdout)
    }

    async fn random_cluster_id(&self) -> anyhow::Result<String> {
        let out = self
            .run_tool(
                &["kafka.tools.StorageTool".into(), "random-uuid".into()],
                "kafka-storage random-uuid",
            )
            .await?;
        let id = out
            .lines()
            .map(str::trim)
            .rfind(|l| l.len() == 22)
            .with_context(|| format!("no cluster id in the output of random-uuid: {out}"))?;
        Ok(id.to_string())
    }

    /// Writes the nodes' configurations, formats their storage (KRaft; in parallel, as each
    /// format is a JVM start) and starts them.
    async fn start_nodes(&mut self, nodes: &[(Role, i32)]) -> anyhow::Result<()> {
        let mut configs = Vec::new();
        for &(role, ordinal) in nodes {
            configs.push(self.write_config(role, ordinal)?);
        }
        if self.cluster.is_kraft() {
            let this = &*self;
            let formats = nodes
                .iter()
                .zip(&configs)
                .map(|(&(role, ordinal), config)| {
                    // --ignore-formatted: a restarted node keeps its data. With the static
                    // controller.quorum.voters the operator renders, no --standalone or
                    // --initial-controllers is needed (those are for a dynamic quorum).
                    let args = [
                        "kafka.tools.StorageTool".to_string(),
                        "format".into(),
                        "-t".into(),
                        this.cluster_id.clone(),
                        "-c".into(),
                        config.display().to_string(),
                        "--ignore-formatted".into(),
                    ];
                    async move {
                        this.run_tool(
                            &args,
                            &format!("formatting the storage of {} {ordinal}", role.as_str()),
                        )
                        .await
                    }
                });
            for result in futures::future::join_all(formats).await {
                result?;
            }
        }
        for (&(role, ordinal), config) in nodes.iter().zip(&configs) {
            self.spawn_node(role, ordinal, config)?;
        }
        Ok(())
    }

    /// Renders a node's `server.properties` with the operator's code.
    fn write_config(&mut self, role: Role, ordinal: i32) -> anyhow::Result<PathBuf> {
        self.allocate_ports(role, ordinal)?;
        let dir = self.node_dir(role, ordinal);
        std::fs::create_dir_all(&dir)?;
        let props = match role {
            Role::Broker => broker_properties(&self.cluster, &self.env(), Node::Ordinal(ordinal)),
            Role::Controller => {
                controller_properties(&self.cluster, &self.env(), Node::Ordinal(ordinal))
            }
        };
        let config = dir.join("server.properties");
        std::fs::write(&config, render(&props))?;
        Ok(config)
    }

    fn spawn_node(&mut self, role: Role, ordinal: i32, config: &Path) -> anyhow::Result<()> {
        let heap = match role {
            Role::Broker => self.options.broker_heap_mb,
            Role::Controller => self.options.controller_heap_mb,
        };
        let mut args = self.jvm_args(heap);
        args.push("kafka.Kafka".into());
        args.push(config.display().to_string());
        let name = format!("{} {ordinal}", role.as_str());
        let log = self.node_dir(role, ordinal).join("kafka.log");
        let process = ManagedProcess::spawn(&name, &self.java(), &args, &log)?;
        match self
            .nodes
            .iter_mut()
            .find(|n| n.role == role && n.ordinal == ordinal)
        {
            Some(n) => n.process = Some(process),
            None => self.nodes.push(NodeProcess {
                role,
                ordinal,
                process: Some(process),
            }),
        }
        Ok(())
    }

    async fn start_zookeeper(&mut self, port: u16) -> anyhow::Result<()> {
        let dir = self.dir.path().join("zookeeper");
        std::fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("zookeeper.properties");
        std::fs::write(
            &config,
            format!(
                "dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok\n",
                dir.join("data").display()
            ),
        )?;
        let mut args = self.jvm_args(128);
        args.push("org.apache.zookeeper.server.quorum.QuorumPeerMain".into());
        args.push(config.display().to_string());
        let mut zk = ManagedProcess::spawn("zookeeper", &self.java(), &args, &dir.join("zk.log"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if zk_ok(port).await {
                break;
            }
            if zk.has_exited() || Instant::now() > deadline {
                bail!(
                    "ZooKeeper did not start on port {port}; last log lines:\n{}",
                    zk.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.zookeeper = Some(zk);
        Ok(())
    }

    /// Waits until every running broker is registered and unfenced.
    async fn wait_for_brokers(&mut self) -> anyhow::Result<()> {
        let expected: BTreeSet<i32> = self.running_brokers();
        self.wait_for_live(&expected, STARTUP_TIMEOUT).await
    }

    /// Waits until the cluster lists exactly `expected` as live brokers.
    async fn wait_for_live(
        &mut self,
        expected: &BTreeSet<i32>,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.live_brokers().await {
                Ok(live) if &live == expected => return Ok(()),
                Ok(live) => format!("live brokers {live:?}, waiting for {expected:?}"),
                Err(e) => e.to_string(),
            };
            if let Some(dead) = self.nodes.iter_mut().find_map(|n| {
                let p = n.process.as_mut()?;
                p.has_exited()
                    .then(|| format!("{}\n{}", p.name(), p.log_tail(60)))
            }) {
                bail!("a Kafka node exited during startup: {dead}");
            }
            if Instant::now() > deadline {
                let tails: Vec<String> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.process.as_ref())
                    .map(|p| format!("--- {} ---\n{}", p.name(), p.log_tail(25)))
                    .collect();
                bail!(
                    "the Kafka cluster did not become ready in {}s ({last}); logs:\n{}",
                    within.as_secs(),
                    tails.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Broker ids the cluster lists as registered and unfenced, asking any running broker.
    pub async fn live_brokers(&self) -> anyhow::Result<BTreeSet<i32>> {
        let mut last = "no broker is running".to_string();
        for id in self.running_brokers() {
            let addr = self.broker_address(id);
            let attempt = async {
                let mut conn = Connection::connect(&addr).await?;
                conn.send(&DescribeClusterRequest::default()).await
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(r)) if r.error_code == 0 => {
                    return Ok(r.brokers.iter().map(|b| b.broker_id.0).collect());
                }
                Ok(Ok(r)) => last = format!("DescribeCluster error {}", r.error_code),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("{addr} did not answer in 5s"),
            }
        }
        bail!(last)
    }

    /// Ids of the brokers whose process runs.
    pub fn running_broker_ids(&self) -> BTreeSet<i32> {
        self.running_brokers()
    }

    /// Deletes a stopped broker's data, as losing its volume would.
    pub fn wipe_broker(&mut self, id: i32) -> anyhow::Result<()> {
        if self.running_brokers().contains(&id) {
            bail!("broker {id} is running; stop it before wiping its data");
        }
        let dir = self.node_dir(Role::Broker, id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }

    /// Deletes the data of a stopped KRaft controller, as the loss of its emptyDir would; it
    /// starts again with a freshly formatted log and catches up from the quorum.
    pub fn wipe_controller(&mut self, ordinal: i32) -> anyhow::Result<()> {
        if self.running_controllers().contains(&ordinal) {
            bail!("controller {ordinal} is running; stop it before wiping its data");
        }
        let data = self.node_dir(Role::Controller, ordinal).join("data");
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("removing {}", data.display()))?;
        }
        Ok(())
    }

    /// Takes the settings of `cluster` (the spec as it is now): every node started from here on
    /// renders its configuration from them, as a pod recreated from a new template would. The
    /// local metadata quorum (its ZooKeeper address, its controllers) stays as it is.
    pub fn reconfigure(&mut self, mut cluster: Cluster) {
        cluster.mode = self.cluster.mode.clone();
        self.cluster = cluster;
    }

    /// Ordinals of the KRaft controllers whose process runs.
    pub fn running_controllers(&self) -> BTreeSet<i32> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Controller && n.process.is_some())
            .map(|n| n.ordinal)
            .collect()
    }

    /// Stops KRaft controller `ordinal` (SIGTERM, killed after a grace period), keeping its data.
    pub async fn stop_controller(&mut self, ordinal: i32) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.role == Role::Controller && n.ordinal == ordinal)
            .with_context(|| format!("controller {ordinal} never ran here"))?;
        if let Some(mut p) = node.process.take() {
            p.stop(STOP_GRACE).await;
        }
        Ok(())
    }

    /// Starts a stopped KRaft controller again with its data and a freshly rendered
    /// configuration; waits until its controller listener accepts connections.
    pub async fn start_controller(&mut self, ordinal: i32) -> anyhow::Result<()> {
        if self.running_controllers().contains(&ordinal) {
            bail!("controller {ordinal} is already running");
        }
        self.start_nodes(&[(Role::Controller, ordinal)]).await?;
        let port = self.env().port(
            Role::Controller,
            Node::Ordinal(ordinal),
            Listener::Controller,
        );
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            let exited = self
                .nodes
                .iter_mut()
                .find(|n| n.role == Role::Controller && n.ordinal == ordinal)
                .and_then(|n| n.process.as_mut())
                .is_none_or(|p| p.has_exited());
            if exited || Instant::now() > deadline {
                bail!("controller {ordinal} did not start again");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Whether broker `id` ran here before (so it restarts with its data).
    pub fn has_run(&self, id: i32) -> bool {
        self.node_dir(Role::Broker, id).exists()
    }

    fn running_brokers(&self) -> BTreeSet<i32> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Broker && n.process.is_some())
            .map(|n| node_id(Role::Broker, n.ordinal))
            .collect()
    }

    /// `host:port` of a broker's client listener.
    pub fn broker_address(&self, id: i32) -> String {
        let port = self
            .ports
            .get(&(Role::Broker, id))
            .map(|p| p[listener_index(Listener::Client)])
            .unwrap_or(0);
        format!("127.0.0.1:{port}")
    }

    /// Client addresses of all brokers, comma-separated (for librdkafka's `bootstrap.servers`).
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_list().join(",")
    }

    /// Client addresses of the running brokers.
    pub fn bootstrap_list(&self) -> Vec<String> {
        self.running_brokers()
            .into_iter()
            .map(|id| self.broker_address(id))
            .collect()
    }

    /// A [`KafkaClient`] for this cluster.
    pub fn admin(&self) -> anyhow::Result<KafkaClient> {
        Ok(KafkaClient::new(KafkaClientConfig::new(
            self.bootstrap_list(),
        ))?)
    }

    /// The cluster model the nodes were configured from.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The testbed's directory (node configs, data and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of a broker's log.
    pub fn broker_log_tail(&self, id: i32, lines: usize) -> String {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Broker && n.ordinal == id)
            .and_then(|n| n.process.as_ref())
            .map(|p| p.log_tail(lines))
            .unwrap_or_default()
    }

    fn broker_process(&mut self, id: i32) -> anyhow::Result<ManagedProcess> {
        self.nodes
            .iter_mut()
            .find(|n| n.role == Role::Broker && n.ordinal == id)
            .and_then(|n| n.process.take())
            .with_context(|| format!("broker {id} is not running"))
    }

    /// Stops a broker cleanly (SIGTERM: controlled shutdown moves its leaderships away) and
    /// waits for it to exit; killed after a grace period.
    pub async fn stop_broker(&mut self, id: i32) -> anyhow::Result<()> {
        let mut p = self.broker_process(id)?;
        p.stop(STOP_GRACE).await;
        Ok(())
    }

    /// Kills a broker at once (SIGKILL), like a crashed node.
    pub async fn kill_broker(&mut self, id: i32) -> anyhow::Result<()> {
        let mut p = self.broker_process(id)?;
        p.kill().await;
        Ok(())
    }

    /// Starts a stopped broker again with its data; waits until it is registered.
    pub async fn start_broker(&mut self, id: i32) -> anyhow::Result<()> {
        if self.running_brokers().contains(&id) {
            bail!("broker {id} is already running");
        }
        if !self.node_dir(Role::Broker, id).exists() {
            bail!("broker {id} never ran here; use add_broker");
        }
        self.start_nodes(&[(Role::Broker, id)]).await?;
        self.wait_for_serving(id).await
    }

    /// Starts a new broker that joins the cluster; waits until it is registered.
    pub async fn add_broker(&mut self, id: i32) -> anyhow::Result<()> {
        if self.node_dir(Role::Broker, id).exists() {
            bail!("broker {id} already exists; use start_broker");
        }
        self.start_nodes(&[(Role::Broker, id)]).await?;
        self.wait_for_serving(id).await
    }

    /// Waits until broker `id` itself answers and lists every running broker as live. Asking
    /// the broker itself matters after a kill: the cluster keeps listing a killed broker until
    /// its session times out, so "listed" alone does not mean the new process is up.
    async fn wait_for_serving(&mut self, id: i32) -> anyhow::Result<()> {
        let expected = self.running_brokers();
        let addr = self.broker_address(id);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let attempt = async {
                let mut conn = Connection::connect(&addr).await?;
                conn.send(&DescribeClusterRequest::default()).await
            };
            let last = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(r)) => {
                    let live: BTreeSet<i32> = r.brokers.iter().map(|b| b.broker_id.0).collect();
                    if r.error_code == 0 && live == expected {
                        return Ok(());
                    }
                    format!("broker {id} lists {live:?}, waiting for {expected:?}")
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("{addr} did not answer in 5s"),
            };
            let exited = self
                .nodes
                .iter_mut()
                .find(|n| n.role == Role::Broker && n.ordinal == id)
                .and_then(|n| n.process.as_mut())
                .map(|p| p.has_exited())
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                bail!(
                    "broker {id} did not start ({last}); last log lines:\n{}",
                    self.broker_log_tail(id, 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops everything (brokers, then controllers and ZooKeeper). Also done on drop.
    pub async fn shutdown(mut self) {
        for n in self.nodes.iter_mut().filter(|n| n.role == Role::Broker) {
            if let Some(mut p) = n.process.take() {
                p.kill().await;
            }
        }
        for n in &mut self.nodes {
            if let Some(mut p) = n.process.take() {
                p.kill().await;
            }
        }
        if let Some(mut zk) = self.zookeeper.take() {
            zk.kill().await;
        }
    }
}

/// Whether a ZooKeeper answers `ruok`.
async fn zk_ok(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"ruok").await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(buf == b"imok")
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// `<cache>/kafka/<version>` (see [`cache_dir`]), fetching the jars first if they are missing.
pub fn ensure_jars(version: &str) -> anyhow::Result<PathBuf> {
    let root = project_root();
    let home = cache_dir().join("kafka").join(version);
    if home.join(".complete").exists() {
        return Ok(home);
    }
    let script = root.join("hack/fetch-kafka.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(version)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() || !home.join(".complete").exists() {
        bail!(
            "the Kafka {version} jars are missing from {} and {} could not fetch them ({status}); \
             run it by hand to see why",
            home.display(),
            script.display()
        );
    }
    Ok(home)
}

const LOG4J2: &str = "status = error
appender.file.type = Console
appender.file.name = STDOUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
";

const LOG4J1: &str = "log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_nodes_differ_only_in_per_node_values() {
        let options = LocalKafkaOptions::kraft(3);
        let dir = Path::new("/tmp/x");
        let mut ports = BTreeMap::new();
        for i in 0..3 {
            ports.insert((Role::Controller, i), [0, 0, 19093 + i as u16]);
            ports.insert((Role::Broker, i), [29092 + i as u16, 39092 + i as u16, 0]);
        }
        let env = Local { ports: &ports, dir };
        let b1 = broker_properties(&options.cluster, &env, Node::Ordinal(1));
        let b2 = broker_properties(&options.cluster, &env, Node::Ordinal(2));
        assert_eq!(b1["node.id"], "1");
        assert_eq!(
            b1["listeners"],
            "CLIENT://127.0.0.1:29093,REPLICATION://127.0.0.1:39093"
        );
        assert_eq!(b1["log.dirs"], "/tmp/x/broker-1/data");
        assert_eq!(
            b1["controller.quorum.voters"],
            "9000@127.0.0.1:19093,9001@127.0.0.1:19094,9002@127.0.0.1:19095"
        );
        let per_node = ["node.id", "listeners", "advertised.listeners", "log.dirs"];
        for (k, v) in &b1 {
            if !per_node.contains(&k.as_str()) {
                assert_eq!(Some(v), b2.get(k), "{k} differs between brokers");
            }
        }
        let c = controller_properties(&options.cluster, &env, Node::Ordinal(0));
        assert_eq!(c["listeners"], "CONTROLLER://127.0.0.1:19093");
        assert_eq!(c["node.id"], "9000");
    }

    #[test]
    fn zookeeper_mode_uses_the_default_zookeeper_image_version() {
        assert_eq!(zookeeper_mode_version(), "3.9.2");
        assert!(!LocalKafkaOptions::zookeeper(3).cluster.is_kraft());
    }
}
