//! Running the real `camera-agent` binary in tests: a scratch directory with
//! config and token, the child process with its JSON log lines captured,
//! and the process's fd and thread counts from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// Fails unless the test runs in the isolated network namespace that
/// `tests/run.sh` makes: only `lo` and the `tnet0`/`tnet1` veth pair.
/// Media must never leave the machine, and libnice never gathers loopback.
pub fn require_test_netns() {
    assert_eq!(
        netns_interfaces(),
        ["lo", "tnet0", "tnet1"],
        "media tests must run inside the test network namespace: use `bash tests/run.sh`"
    );
}

/// Whether this process is in the test network namespace (see
/// [`require_test_netns`]), for code that must refuse rather than panic.
pub fn in_test_netns() -> bool {
    netns_interfaces() == ["lo", "tnet0", "tnet1"]
}

fn netns_interfaces() -> Vec<String> {
    // /proc/self/net follows the process's network namespace; /sys/class/net
    // would show the namespace that mounted sysfs.
    let mut interfaces: Vec<String> = std::fs::read_to_string("/proc/self/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_string())
        .collect();
    interfaces.sort();
    interfaces
}

/// The address the test namespace gives its hosts.
pub const TEST_HOST: &str = "10.213.0.1";

/// Locates the agent binary next to the test executable (`target/<profile>`).
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CAMERA_AGENT_BIN") {
        return Ok(path.into());
    }
    // Test executables live in target/<profile>/deps, binaries one level up.
    let exe = std::env::current_exe()?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("camera-agent"));
    for binary in candidates {
        if binary.is_file() {
            return Ok(binary);
        }
    }
    bail!(
        "camera-agent binary not found near {}: build it first (cargo build -p camera-agent)",
        exe.display()
    )
}

/// A scratch directory removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "camera-agent-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Writes a token file with mode 0600.
    pub fn token_file(&self, token: &str) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join("device-token");
        std::fs::write(&path, format!("{token}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(path)
    }

    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish() % 1_000_000
}

/// An agent configuration for tests, changed key by key rather than by
/// editing TOML text: the test pattern at 320x240@30 with quick request
/// and reconnect timeouts by default.
///
/// ```no_run
/// # use testbed::harness::AgentConfig;
/// let text = AgentConfig::new("http://10.213.0.1:8080", "/tmp/token".as_ref())
///     .size(640, 480)
///     .set("session.max_duration", "8s")
///     .to_toml();
/// ```
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Sections in order, each with its keys in order, values as JSON
    /// (strings, integers, booleans and arrays of them are TOML as well).
    sections: Vec<(String, Vec<(String, Value)>)>,
}

impl AgentConfig {
    pub fn new(url: &str, token_file: &Path) -> Self {
        Self {
            sections: Vec::new(),
        }
        .set("control_plane.url", url)
        .set("control_plane.token_file", token_file.display().to_string())
        .set("control_plane.request_timeout", "5s")
        .set("control_plane.reconnect_max", "2s")
        .set("camera.source", "test")
        .size(320, 240)
        .set("camera.framerate", 30)
        .set("session.answer_timeout", "15s")
    }

    /// The capture size.
    pub fn size(self, width: u32, height: u32) -> Self {
        self.set("camera.width", width).set("camera.height", height)
    }

    /// Sets `section.key`, replacing its value if it is set already.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        let (section, name) = key
            .split_once('.')
            .unwrap_or_else(|| panic!("{key:?} is not section.key"));
        let value = value.into();
        let index = match self.sections.iter().position(|(s, _)| s == section) {
            Some(index) => index,
            None => {
                self.sections.push((section.to_owned(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let keys = &mut self.sections[index].1;
        match keys.iter_mut().find(|(k, _)| k == name) {
            Some((_, old)) => *old = value,
            None => keys.push((name.to_owned(), value)),
        }
        self
    }

    /// Removes `section.key`, so the agent's default applies.
    pub fn unset(mut self, key: &str) -> Self {
        if let Some((section, name)) = key.split_once('.') {
            for (s, keys) in &mut self.sections {
                if s == section {
                    keys.retain(|(k, _)| k != name);
                }
            }
        }
        self
    }

    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        for (section, keys) in &self.sections {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("[{section}]\n"));
            for (key, value) in keys {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text
    }

    /// Writes the configuration as `agent.toml` in `scratch`.
    pub fn write(&self, scratch: &Scratch) -> anyhow::Result<PathBuf> {
        scratch.write("agent.toml", &self.to_toml())
    }
}

/// The agent process with its log lines.
pub struct AgentProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
}

impl AgentProcess {
    pub fn spawn(config: &Path) -> anyhow::Result<Self> {
        Self::spawn_with_env(config, &[])
    }

    /// [`AgentProcess::spawn`] with extra environment variables.
    pub fn spawn_with_env(config: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut child = Command::new(agent_binary()?)
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env(
                "CAMERA_AGENT_LOG",
                std::env::var("CAMERA_AGENT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start camera-agent")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            let new_line = new_line.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if std::env::var_os("CAMERA_AGENT_TEST_ECHO").is_some() {
                        eprintln!("agent: {line}");
                    }
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    new_line.notify_waiters();
                }
            });
        }
        Ok(Self {
            child,
            lines,
            new_line,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Every line so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Log lines parsed as JSON (non-JSON lines are skipped).
    pub fn records(&self) -> Vec<Value> {
        self.output()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits for a JSON log record for which `matches` holds.
    pub async fn wait_record(
        &self,
        limit: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.new_line.notified();
            if let Some(record) = self.records().into_iter().find(|record| matches(record)) {
                return Ok(record);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self
                    .records()
                    .into_iter()
                    .find(|record| matches(record))
                    .ok_or_else(|| {
                        anyhow!(
                            "no matching agent log line within {limit:?}; log:\n{}",
                            self.output().join("\n")
                        )
                    });
            }
        }
    }

    /// Waits for a record with this `message` (and session id, if given).
    pub async fn wait_message(
        &self,
        message: &str,
        session_id: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_record(limit, |record| {
            record["message"] == message && session_id.is_none_or(|id| record["session_id"] == id)
        })
        .await
    }

    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = self.pid() as i32;
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        let rc = unsafe { libc_kill(pid, signal) };
        if rc != 0 {
            bail!("kill failed: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the process to exit; its status code.
    pub async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .context("agent did not exit in time")??;
        Ok(status.code())
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;

/// Open fds and threads of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcCounts {
    pub fds: usize,
    pub threads: usize,
}

pub fn proc_counts(pid: u32) -> anyhow::Result<ProcCounts> {
    let count = |dir: String| -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(&dir)
            .with_context(|| dir.clone())?
            .count())
    };
    Ok(ProcCounts {
        fds: count(format!("/proc/{pid}/fd"))?,
        threads: count(format!("/proc/{pid}/task"))?,
    })
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// Anonymous resident memory in KiB: heap and stacks, without the shared
/// library pages that RSS also counts.
pub fn rss_anon_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// Polls until the process's counts equal `idle`, returning how long it took;
/// an error (with the last counts) if they do not within `limit`.
pub async fn wait_counts(pid: u32, idle: ProcCounts, limit: Duration) -> anyhow::Result<Duration> {
    let start = tokio::time::Instant::now();
    loop {
        let now = proc_counts(pid)?;
        if now == idle {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!(
                "process did not return to idle {idle:?} within {limit:?}: now {now:?}; fds: {}",
                fd_targets(pid).join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Where each open fd of a process points, for failure messages.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .map(|entry| {
                    let target = std::fs::read_link(entry.path())
                        .map(|target| target.display().to_string())
                        .unwrap_or_default();
                    format!("{}->{target}", entry.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets
}

/// A running stand-in control plane with the real agent connected to it:
/// the set-up every end-to-end test and tool starts from.
pub struct Bed {
    pub standin: std::sync::Arc<crate::standin::StandIn>,
    pub agent: AgentProcess,
    /// Holds the agent's config and token until the bed is dropped.
    pub scratch: Scratch,
}

impl Bed {
    /// Starts the stand-in on the test host, writes the camera's token and
    /// the default [`AgentConfig`] for them as changed by `config`, starts
    /// the agent and waits (20 s at most) until its socket is connected.
    pub async fn start(
        name: &str,
        standin: crate::standin::StandInConfig,
        camera: (&str, &str),
        config: impl FnOnce(AgentConfig) -> AgentConfig,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(name, standin, camera, &[], config).await
    }

    /// [`Bed::start`] with extra environment variables for the agent.
    pub async fn start_with_env(
        name: &str,
        standin: crate::standin::StandInConfig,
        camera: (&str, &str),
        env: &[(&str, &str)],
        config: impl FnOnce(AgentConfig) -> AgentConfig,
    ) -> anyhow::Result<Self> {
        let standin = crate::standin::StandIn::start(format!("{TEST_HOST}:0").parse()?, standin)
            .await
            .context("cannot start the stand-in (inside the test network namespace?)")?;
        let scratch = Scratch::new(name)?;
        let token = scratch.token_file(camera.1)?;
        let config = config(AgentConfig::new(&standin.url(), &token)).write(&scratch)?;
        let agent = AgentProcess::spawn_with_env(&config, env)?;
        let camera_id = camera.0.to_owned();
        if !standin
            .wait_for(Duration::from_secs(20), |s| s.online(&camera_id))
            .await
        {
            bail!(
                "the agent never connected; log:\n{}",
                agent.output().join("\n")
            );
        }
        Ok(Self {
            standin: std::sync::Arc::new(standin),
            agent,
            scratch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_set_replaced_and_removed_in_place() {
        let text = AgentConfig::new("http://h:1", Path::new("/t"))
            .set("camera.width", 640)
            .set("session.max_duration", "8s")
            .set("webrtc.stun_servers", vec!["stun:h:3478"])
            .unset("control_plane.reconnect_max")
            .to_toml();
        assert_eq!(
            text,
            "[control_plane]\nurl = \"http://h:1\"\ntoken_file = \"/t\"\n\
             request_timeout = \"5s\"\n\n\
             [camera]\nsource = \"test\"\nwidth = 640\nheight = 240\nframerate = 30\n\n\
             [session]\nanswer_timeout = \"15s\"\nmax_duration = \"8s\"\n\n\
             [webrtc]\nstun_servers = [\"stun:h:3478\"]\n"
        );
    }
}
