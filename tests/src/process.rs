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

    /// Every live process of the group (the leader and what it forked
    /// that stayed in it), read from `/proc`.
    pub fn members(&self) -> Vec<ProcStat> {
        let pgid = self.child.id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(proc_stat)
            .filter(|p| p.pgid == pgid)
            .collect()
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

/// What `/proc/<pid>/stat` says of one process.
#[derive(Debug, Clone)]
pub struct ProcStat {
    pub pid: u32,
    /// The command name (`comm`), e.g. `workerd`, `spin`, `node`.
    pub name: String,
    pub pgid: u32,
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
}

/// `/proc/<pid>/stat` of `pid`, `None` when it is gone or unreadable.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // Counted from field 3 (state) = index 0: pgrp is field 5, utime 14,
    // stime 15, rss 24 (man 5 proc).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64) / 1024;
    let cpu_ticks = field(14)? + field(15)?;
    Some(ProcStat {
        pid,
        name,
        pgid: u32::try_from(field(5)?).ok()?,
        cpu: Duration::from_micros(cpu_ticks * 1_000_000 / ticks),
        rss_kib: field(24)? * page_kib,
    })
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
    // Spread processes (several test runs at once) by pid and
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

/// The `greenlight` CLI: `GREENLIGHT_BIN` when set, else the built one.
pub fn greenlight_bin() -> std::path::PathBuf {
    match std::env::var("GREENLIGHT_BIN") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => built_binary("greenlight", "greenlight-cli"),
    }
}
