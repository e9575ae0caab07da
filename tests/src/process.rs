//! Child processes for end-to-end tests: each runs in its own process group
//! so the whole tree (wrangler spawns workerd and esbuild) is stopped on drop.

use anyhow::{bail, Context};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A spawned command and everything it forks. Killed (SIGKILL to the group)
/// when dropped, so a failing test never leaves servers behind.
pub struct ProcessGroup {
    child: Child,
    pub log_path: Option<std::path::PathBuf>,
    /// A scratch directory removed after the processes are gone.
    pub scratch: Option<tempfile::TempDir>,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group with stdin closed.
    pub fn spawn(mut cmd: Command) -> anyhow::Result<ProcessGroup> {
        cmd.stdin(Stdio::null()).process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        Ok(ProcessGroup {
            child,
            log_path: None,
            scratch: None,
        })
    }

    /// Like `spawn`, with stdout and stderr appended to `log`.
    pub fn spawn_logged(mut cmd: Command, log: &std::path::Path) -> anyhow::Result<ProcessGroup> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdout(out).stderr(err);
        let mut group = ProcessGroup::spawn(cmd)?;
        group.log_path = Some(log.to_path_buf());
        Ok(group)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the leader has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The tail of the log, for error messages.
    pub fn log_tail(&self) -> String {
        self.log_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            })
            .unwrap_or_default()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server we
/// start (which binds it a little later).
///
/// Drawn below Linux's ephemeral range (32768–60999): a port the kernel
/// hands out for `:0` (our origins, every outgoing connection) can never
/// take it in between, which happened with ports from `bind(":0")`
/// ("Address already in use" from workerd under parallel tests).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Spread processes (several test binaries run at once) by pid and
    // time, and calls within one process by a counter.
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(7_919, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Polls `url` until it answers any HTTP response, or fails after `timeout`.
pub async fn wait_ready(url: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_until(url, timeout, |_| true).await
}

/// Polls `url` until an answer passes `ready` (a dev server's own 5xx
/// while it is still loading the edge does not), or fails after `timeout`.
pub async fn wait_until(
    url: &str,
    timeout: Duration,
    ready: impl Fn(&reqwest::Response) -> bool,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    wait_until_with(&client, url, timeout, ready).await
}

/// [`wait_until`] with the caller's client (e.g. one trusting a test CA).
pub async fn wait_until_with(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    ready: impl Fn(&reqwest::Response) -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last_err = String::new();
    while start.elapsed() < timeout {
        match client.get(url).send().await {
            Ok(resp) if ready(&resp) => return Ok(()),
            Ok(resp) => last_err = format!("answered {}", resp.status()),
            Err(e) => last_err = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} not ready after {timeout:?}: {last_err}")
}

/// A workspace binary in the debug profile (`target/debug/<name>`, honouring
/// `CARGO_TARGET_DIR`), which scripts/test.sh builds before the suite runs.
pub fn built_binary(name: &str, package: &str) -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join(name);
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p {package} --bin {name}` (scripts/test.sh does)",
        bin.display()
    );
    bin
}
