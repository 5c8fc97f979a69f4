//! Child processes of the local testbed: logged to a file, never outliving their owner.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A child process that is killed when dropped, and killed by the kernel when this process
/// dies, so no testbed server outlives a failed or killed test.
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ManagedProcess {
    /// Starts `program` with `args`, stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> std::io::Result<ManagedProcess> {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// [`spawn`](Self::spawn), with `env` added to this process's environment.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> std::io::Result<ManagedProcess> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and only affects the child being started.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start {name} ({}): {e}", program.display()),
            )
        })?;
        Ok(ManagedProcess {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while the process has not been waited for.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }

    /// [`stop`](Self::stop) without a runtime, for clean-ups that run in `Drop` or at exit:
    /// SIGTERM, then SIGKILL after `grace`. Tokio's reaper collects the exit status later.
    pub fn stop_blocking(&mut self, grace: Duration) {
        let Some(pid) = self.pid() else {
            return;
        };
        let pid = pid as i32;
        // SAFETY: signalling our own child by pid; it is not reaped before `child` is dropped,
        // so the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline && process_alive(pid) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if process_alive(pid) {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline && process_alive(pid) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.child = None;
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the process's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// How the process ended, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Asks the process to stop (SIGTERM), then kills it after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // SAFETY: signalling our own child by pid.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    /// Kills the process at once (SIGKILL).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// Whether `pid` runs (a zombie, dead but not yet reaped, does not).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The repository root: where `hack/`, `deploy/` and `examples/` live.
/// `KAFKA_OPERATOR_HOME` overrides it for a binary installed elsewhere.
pub fn project_root() -> PathBuf {
    std::env::var_os("KAFKA_OPERATOR_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let testbed = Path::new(env!("CARGO_MANIFEST_DIR"));
            testbed.parent().unwrap_or(testbed).to_path_buf()
        })
}

/// Where heavy, version-pinned artefacts are kept (Go builds, Kafka jars, images): outside the
/// clone, so that a fresh clone on the same machine reuses them. The same rule as
/// `hack/cache.sh`: `KAFKA_OPERATOR_CACHE`, else `~/.cache/kafka-operator`, else `.cache/`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KAFKA_OPERATOR_CACHE") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Path::new(&home).join(".cache/kafka-operator"),
        _ => project_root().join(".cache"),
    }
}

/// The pinned versions of `hack/versions.sh` (`KEY=value` lines), the one place they are set.
pub fn pinned_version(key: &str) -> anyhow::Result<String> {
    let path = project_root().join("hack/versions.sh");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| anyhow::anyhow!("{key} is not set in {}", path.display()))
}

/// The operator's own binary (`kafka-operator`, of the product crate), built with cargo if
/// needed: the testbed crate cannot name another package's binary at compile time.
pub fn operator_binary(release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    // The whole workspace selected, so the dependencies build with the features the tests
    // already built them with (`-p kafka-operator` alone would build several again).
    build.current_dir(project_root()).args([
        "build",
        "--locked",
        "--workspace",
        "--bin",
        "kafka-operator",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| anyhow::anyhow!("running cargo to build the operator: {e}"))?;
    anyhow::ensure!(status.success(), "building the operator failed ({status})");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"));
    let path = target
        .join(if release { "release" } else { "debug" })
        .join("kafka-operator");
    anyhow::ensure!(path.exists(), "{} was not built", path.display());
    Ok(path)
}

/// Runs `start` on a runtime of its own, on a thread that lives as long as the process, and
/// returns what it made. Processes started there (and the runtime's reaper of them) outlive the
/// runtime of the test that asked, so one testbed can serve every test of a binary.
pub fn start_in_background<T, F, Fut>(start: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = tx.send(Err(anyhow::Error::new(e).context("testbed runtime")));
                return;
            }
        };
        runtime.block_on(async move {
            let _ = tx.send(start().await);
            std::future::pending::<()>().await;
        });
    });
    rx.recv()
        .map_err(|_| anyhow::anyhow!("the testbed thread ended before starting"))?
}
