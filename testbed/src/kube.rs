//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and
//! kube-controller-manager, built from Go modules by `hack/build-k8s.sh`.
//!
//! No kubelet and no scheduler: StatefulSets create Pods that stay Pending, which is all the
//! operator needs to be tested against (tests play the kubelet where pods must become ready).
//! A real node ([`crate::node::LocalNode`]) adds them; its pods reach the API server at the
//! address given in [`KubeOptions::address`] (the node bridge's gateway), which is also the
//! endpoint of the `kubernetes` Service.
//! The API server enforces RBAC; [`LocalKube::service_account_client`] gives a client with
//! exactly the permissions of a ServiceAccount, so the operator runs under the RBAC of
//! `deploy/` and a missing permission fails a test.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::process::{
    ManagedProcess, cache_dir, free_port, pinned_version, process_alive, project_root,
};

fn free_port_on(address: Ipv4Addr) -> std::io::Result<u16> {
    if address.is_loopback() {
        return free_port();
    }
    let listener = std::net::TcpListener::bind((address, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Each control plane's files live in a temporary directory of this prefix, which names the
/// process that owns it in [`OWNER_FILE`].
const DIR_PREFIX: &str = "kafka-operator-kube-";
const OWNER_FILE: &str = "owner.pid";

/// Removes the directories of control planes whose process is gone: one killed, or one held
/// by a test binary's shared testbed (a static, never dropped). Its servers died with it (they
/// are bound to their parent's life); a directory that names no owner yet is left for a minute,
/// as it may be another process's that is just starting.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let path = entry.path();
        let stale = match std::fs::read_to_string(path.join(OWNER_FILE)) {
            Ok(pid) => !pid.trim().parse().is_ok_and(process_alive),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(60)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

const ADMIN_TOKEN: &str = "kafka-operator-testbed-admin";

/// The Service ClusterIP range: virtual addresses that only kube-proxy's rules on this machine
/// give a meaning to (the node routes the range into its own bridge, so none leaves it).
pub const SERVICE_CIDR: &str = "10.0.0.0/24";

/// How a [`LocalKube`] is started.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// Manifests applied (server-side) before kube-controller-manager starts, see
    /// [`LocalKube::start_with`].
    pub manifests: Vec<PathBuf>,
    /// The address kube-apiserver binds to and advertises (the `kubernetes` Service's
    /// endpoint). Loopback unless pods must reach it: then an address of this machine that
    /// they route to, such as a node bridge's gateway, which must exist before the start.
    pub address: Ipv4Addr,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            manifests: Vec::new(),
            address: Ipv4Addr::LOCALHOST,
        }
    }
}

/// A running local control plane. Dropping it stops every process and removes its files.
pub struct LocalKube {
    // Field order is drop order: servers stop before their directory goes.
    controller_manager: ManagedProcess,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    dir: tempfile::TempDir,
    server: String,
    ca: PathBuf,
    kubeconfig: PathBuf,
}

impl LocalKube {
    /// Builds the binaries if they are missing (a first build takes a while), then starts
    /// etcd, kube-apiserver and kube-controller-manager on free loopback ports.
    pub async fn start() -> anyhow::Result<LocalKube> {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start), with `manifests` applied (server-side) and their CRDs
    /// established before kube-controller-manager starts: its garbage collector then watches
    /// their kinds from the first moment, instead of after its next discovery round (every
    /// 30 s), so objects owned by custom resources are collected at once.
    pub async fn start_with(manifests: &[PathBuf]) -> anyhow::Result<LocalKube> {
        Self::start_with_options(KubeOptions {
            manifests: manifests.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Starts the control plane as `options` say.
    pub async fn start_with_options(options: KubeOptions) -> anyhow::Result<LocalKube> {
        let manifests = &options.manifests;
        let address = options.address;
        let bin = ensure_binaries().await?;
        remove_stale_dirs();
        let dir = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir()?;
        let d = dir.path();
        std::fs::write(d.join(OWNER_FILE), std::process::id().to_string())?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd = ManagedProcess::spawn(
            "etcd",
            &bin.join("etcd"),
            &[
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &d.join("etcd.log"),
        )?;

        let sa_key = d.join("sa.key");
        let status = tokio::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048")
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .context("openssl is needed to make the service account signing key")?;
        if !status.success() {
            bail!("openssl genrsa failed");
        }
        std::fs::write(
            d.join("tokens.csv"),
            format!("{ADMIN_TOKEN},testbed-admin,testbed-admin,\"system:masters\"\n"),
        )?;

        let port = free_port_on(address)?;
        let cert_dir = d.join("certs");
        let apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                format!("--cert-dir={}", cert_dir.display()),
                format!("--secure-port={port}"),
                format!("--bind-address={address}"),
                format!("--advertise-address={address}"),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                // Nodes are reached at the address they report, not by a name no DNS knows.
                "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
                "--authorization-mode=RBAC".into(),
                format!("--token-auth-file={}", d.join("tokens.csv").display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", sa_key.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--enable-priority-and-fairness=false".into(),
                "--allow-privileged=false".into(),
                "--v=0".into(),
            ],
            &d.join("kube-apiserver.log"),
        )?;

        let server = format!("https://{address}:{port}");
        let ca = cert_dir.join("apiserver.crt");
        let kubeconfig = d.join("admin.kubeconfig");
        let mut kube = LocalKube {
            controller_manager: ManagedProcess::spawn(
                "placeholder",
                Path::new("true"),
                &[],
                &d.join("placeholder.log"),
            )?,
            apiserver,
            etcd,
            server,
            ca,
            kubeconfig,
            dir,
        };
        kube.write_kubeconfig(&kube.kubeconfig, ADMIN_TOKEN)?;
        kube.wait_ready().await?;
        for manifest in manifests {
            let path = manifest.display().to_string();
            let out = kube
                .kubectl(&["apply", "--server-side", "-f", &path])
                .await?;
            anyhow::ensure!(
                out.status.success(),
                "kubectl apply {path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !manifests.is_empty() {
            let out = kube
                .kubectl(&[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd",
                    "--all",
                ])
                .await?;
            anyhow::ensure!(
                out.status.success(),
                "CRDs not established: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        kube.controller_manager = ManagedProcess::spawn(
            "kube-controller-manager",
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", kube.kubeconfig.display()),
                "--leader-elect=false".into(),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", kube.ca.display()),
                "--use-service-account-credentials=false".into(),
                "--secure-port=0".into(),
                "--concurrent-statefulset-syncs=5".into(),
                "--concurrent-gc-syncs=10".into(),
                "--v=0".into(),
            ],
            &kube.dir.path().join("kube-controller-manager.log"),
        )?;
        Ok(kube)
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A kubeconfig file with cluster-admin rights.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Folder of the testbed's files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client with cluster-admin rights.
    pub async fn admin_client(&self) -> anyhow::Result<Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A client that authenticates as a ServiceAccount (with a token from the TokenRequest
    /// API), so it has exactly the rights RBAC grants that account.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Client> {
        let admin = self.admin_client().await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let response = accounts
            .create_token_request(name, &Default::default(), &request)
            .await
            .with_context(|| format!("token for ServiceAccount {namespace}/{name}"))?;
        let token = response
            .status
            .context("TokenRequest returned no status")?
            .token;
        let path = self
            .dir
            .path()
            .join(format!("{namespace}-{name}.kubeconfig"));
        self.write_kubeconfig(&path, &token)?;
        client_from_kubeconfig(&path).await
    }

    /// Runs the testbed's kubectl against this API server as admin.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        self.kubectl_with_input(args, None).await
    }

    /// Runs kubectl with `input` on its standard input (for `apply -f -`).
    pub async fn kubectl_with_input(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> anyhow::Result<std::process::Output> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(kubectl_path())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting kubectl")?;
        let mut stdin = child.stdin.take().context("kubectl stdin")?;
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).await?;
        }
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .context("kubectl did not finish in 120 s")??;
        Ok(output)
    }

    fn write_kubeconfig(&self, path: &Path, token: &str) -> anyhow::Result<()> {
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: user\n    namespace: default\ncurrent-context: testbed\n",
            self.server,
            self.ca.display()
        );
        std::fs::write(path, config)?;
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if self.etcd.has_exited() {
                bail!("etcd exited:\n{}", self.etcd.log_tail(30));
            }
            if self.apiserver.has_exited() {
                bail!("kube-apiserver exited:\n{}", self.apiserver.log_tail(30));
            }
            if self.ca.exists() && self.ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver not ready after 180 s:\n{}",
                    self.apiserver.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Whether `/readyz` answers ok (RBAC bootstrap roles included).
    async fn ready(&self) -> bool {
        let Ok(client) = client_from_kubeconfig(&self.kubeconfig).await else {
            return false;
        };
        let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
            return false;
        };
        matches!(client.request_text(request).await, Ok(body) if body.trim() == "ok")
    }
}

async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Where `hack/build-k8s.sh` puts the binaries of the pinned Kubernetes and etcd versions.
pub fn bin_dir() -> PathBuf {
    let version = |key| pinned_version(key).unwrap_or_else(|e| panic!("{e}"));
    cache_dir()
        .join("k8s")
        .join(format!(
            "{}-etcd-{}",
            version("KUBERNETES_VERSION"),
            version("ETCD_VERSION")
        ))
        .join("bin")
}

/// The testbed's kubectl.
pub fn kubectl_path() -> PathBuf {
    bin_dir().join("kubectl")
}

async fn ensure_binaries() -> anyhow::Result<PathBuf> {
    let bin = bin_dir();
    let wanted = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
    ];
    if wanted.iter().all(|b| bin.join(b).exists()) {
        return Ok(bin);
    }
    let script = project_root().join("hack/build-k8s.sh");
    tracing::info!(
        "building the local Kubernetes control plane with {}",
        script.display()
    );
    let status = tokio::process::Command::new(&script)
        .status()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed", script.display());
    }
    Ok(bin)
}
