//! Debian's Chromium, headless, driven over the DevTools protocol: launch it
//! with no background network traffic and WebRTC allowed on test
//! addresses, open pages, evaluate JavaScript (awaiting promises) and take
//! screenshots. Dropping a [`Chromium`] kills its whole process group,
//! reaps it and removes its scratch profile.
//!
//! One WebSocket to the browser carries every page's commands: a page is a
//! target attached with `flatten`, its commands tagged with its session id.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;

mod cdp;
mod page;

pub use cdp::CdpEvent;
pub use page::{Page, Rect};

use cdp::Cdp;
use page::{console_line, str_field};

/// How long one DevTools command may take unless told otherwise.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Stderr lines kept for error messages.
const STDERR_TAIL: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ChromiumError {
    #[error("chromium not installed ({0} missing): run scripts/install-deps.sh")]
    NotInstalled(PathBuf),
    #[error("cannot start chromium: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("chromium exited before its DevTools endpoint was up ({status}); stderr:\n{stderr}")]
    Exited { status: String, stderr: String },
    #[error("chromium's DevTools endpoint did not come up within {0:?}; stderr:\n{1}")]
    NoEndpoint(Duration, String),
    #[error("cannot connect to DevTools at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("DevTools {method} failed: {message}")]
    Protocol { method: String, message: String },
    #[error("DevTools {0} got no answer within its timeout")]
    Timeout(String),
    #[error("the DevTools connection is closed")]
    Closed,
    #[error("navigation to {url} failed: {reason}")]
    Navigation { url: String, reason: String },
    #[error("JavaScript exception: {0}")]
    Js(String),
    #[error("bad DevTools answer to {method}: {detail}")]
    BadAnswer { method: String, detail: String },
}

pub type Result<T> = std::result::Result<T, ChromiumError>;

/// How to start the browser.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The browser binary; default `$CHROMIUM_BIN`, else Debian's real
    /// binary `/usr/lib/chromium/chromium` (its `/usr/bin/chromium` wrapper
    /// adds API keys and extension flags we do not want).
    pub binary: PathBuf,
    pub window: (u32, u32),
    /// Appended after the built-in flags.
    pub extra_args: Vec<String>,
    /// Time allowed for the DevTools endpoint to come up.
    pub startup_timeout: Duration,
    /// Host patterns the browser may resolve (globs; they match IP
    /// literals too): every other name fails without a DNS query. Default:
    /// `localhost`, `127.*` and `10.*` (the test namespace's addresses).
    pub resolvable: Vec<String>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        let binary = std::env::var_os("CHROMIUM_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|path| path.is_file())
                    .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
            });
        Self {
            binary,
            window: (1280, 800),
            extra_args: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            resolvable: ["localhost", "127.*", "10.*"].map(String::from).to_vec(),
        }
    }
}

/// The flags every launch uses: headless, WebRTC on test addresses with
/// real IPs in candidates, autoplay without a gesture, and every feature
/// that would phone home switched off.
pub fn base_flags(options: &LaunchOptions, user_data_dir: &Path) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--mute-audio",
        // No traffic of the browser's own.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--no-pings",
        "--metrics-recording-only",
        "--password-store=basic",
        "--use-mock-keychain",
        // Pages under test keep full speed whether or not they are in front.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        // One list: a second --disable-features would replace the first.
        "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,OptimizationHints,\
         MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,\
         CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,\
         PrivacySandboxSettings4,NetworkTimeServiceQuerying",
    ]
    .iter()
    .map(|flag| flag.to_string())
    .collect();
    // Even with all of the above, Chromium 156 still looks up
    // accounts.google.com and update.googleapis.com at start-up (seen as
    // DNS queries in the test namespace). Nothing resolves but the allowed
    // patterns, so nothing is ever sent elsewhere.
    let mut rules = String::from("--host-resolver-rules=MAP * ~NOTFOUND");
    for pattern in &options.resolvable {
        rules.push_str(", EXCLUDE ");
        rules.push_str(pattern);
    }
    flags.push(rules);
    flags.push(format!("--user-data-dir={}", user_data_dir.display()));
    flags.push(format!(
        "--window-size={},{}",
        options.window.0, options.window.1
    ));
    flags
}

/// A running headless Chromium.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    cdp: Arc<Cdp>,
    port: u16,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Chromium {
    /// Starts Chromium with the default options.
    pub async fn launch() -> Result<Self> {
        Self::launch_with(LaunchOptions::default()).await
    }

    pub async fn launch_with(options: LaunchOptions) -> Result<Self> {
        if !options.binary.is_file() {
            return Err(ChromiumError::NotInstalled(options.binary));
        }
        let profile = std::env::temp_dir().join(format!(
            "camera-agent-chromium-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).map_err(ChromiumError::Spawn)?;
        let mut command = Command::new(&options.binary);
        command
            .args(base_flags(&options, &profile))
            .args(&options.extra_args)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Its own process group, so one kill reaches the renderer, GPU and
        // utility processes too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(ChromiumError::Spawn(err));
            }
        };
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            let tail = stderr.clone();
            let echo = std::env::var_os("CAMERA_AGENT_TEST_ECHO").is_some();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    if echo {
                        eprintln!("chromium: {line}");
                    }
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        }
        // From here on, a failure drops `guard`, which kills and cleans up.
        let mut guard = Launching {
            child: Some(child),
            profile: profile.clone(),
        };
        let (port, path) = wait_endpoint(&mut guard, &stderr, options.startup_timeout).await?;
        let url = format!("ws://127.0.0.1:{port}{path}");
        let cdp = Cdp::connect(&url).await?;
        let child = guard.child.take().ok_or(ChromiumError::Closed)?;
        Ok(Self {
            child,
            profile,
            cdp,
            port,
            stderr,
        })
    }

    /// The DevTools HTTP port (on 127.0.0.1).
    pub fn devtools_port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines Chromium wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// A browser-level DevTools command.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.cdp.call(None, method, params, COMMAND_TIMEOUT).await
    }

    /// Every DevTools event from now on (all pages).
    pub fn events(&self) -> broadcast::Receiver<CdpEvent> {
        self.cdp.events.subscribe()
    }

    /// Opens a new page and loads `url` in it (console capture is on from
    /// the start); returns once the document is complete.
    pub async fn open(&self, url: &str) -> Result<Page> {
        let page = self.new_page().await?;
        page.navigate(url).await?;
        Ok(page)
    }

    /// A new blank page, attached and with console capture on.
    pub async fn new_page(&self) -> Result<Page> {
        let created = self
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = str_field(&created, "targetId", "Target.createTarget")?;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        let session_id = str_field(&attached, "sessionId", "Target.attachToTarget")?;
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut events = self.cdp.events.subscribe();
        let log = console.clone();
        let session = session_id.clone();
        let collector = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) if event.session_id.as_deref() == Some(&session) => {
                        if let Some(line) = console_line(&event) {
                            log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let page = Page {
            cdp: self.cdp.clone(),
            session_id,
            target_id,
            console,
            collector,
        };
        page.call("Runtime.enable", json!({})).await?;
        page.call("Page.enable", json!({})).await?;
        Ok(page)
    }

    /// Asks the browser to quit, then makes sure of it; cleans up.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.cdp
                .call(None, "Browser.close", json!({}), Duration::from_secs(2)),
        )
        .await;
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Drop kills what is left of the group and removes the profile.
    }
}

static PROFILES: AtomicU64 = AtomicU64::new(0);

impl Drop for Chromium {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Owns the process until the launch has succeeded.
struct Launching {
    child: Option<Child>,
    profile: PathBuf,
}

impl Drop for Launching {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_group(child);
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }
}

/// SIGKILL to the browser's process group (it leads it), then reap it.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the group we created for this child; no memory
        // is touched.
        unsafe { kill(-pid, 9) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

/// Waits for `DevToolsActivePort` in the profile: the port, then the
/// browser's WebSocket path.
async fn wait_endpoint(
    launching: &mut Launching,
    stderr: &Mutex<VecDeque<String>>,
    limit: Duration,
) -> Result<(u16, String)> {
    let tail = || {
        stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let file = launching.profile.join("DevToolsActivePort");
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next())
                && let Ok(port) = port.trim().parse::<u16>()
            {
                return Ok((port, path.trim().to_string()));
            }
        }
        if let Some(child) = launching.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            // Let the stderr reader catch up with the last lines.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(ChromiumError::Exited {
                status: status.to_string(),
                stderr: tail(),
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ChromiumError::NoEndpoint(limit, tail()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_disable_features_list_keeps_mdns_off() {
        let options = LaunchOptions {
            window: (800, 600),
            ..LaunchOptions::default()
        };
        let flags = base_flags(&options, Path::new("/tmp/x"));
        let lists: Vec<&String> = flags
            .iter()
            .filter(|flag| flag.starts_with("--disable-features="))
            .collect();
        assert_eq!(lists.len(), 1, "{lists:?}");
        assert!(lists[0].contains("WebRtcHideLocalIpsWithMdns"));
        assert!(!lists[0].contains(' '), "{}", lists[0]);
        assert!(flags.contains(&"--user-data-dir=/tmp/x".to_string()));
        assert!(flags.contains(&"--window-size=800,600".to_string()));
        assert!(flags.contains(
            &"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE 10.*"
                .to_string()
        ));
    }

    #[tokio::test]
    async fn a_missing_binary_says_how_to_install_it() {
        let options = LaunchOptions {
            binary: "/nonexistent/chromium".into(),
            ..LaunchOptions::default()
        };
        let err = Chromium::launch_with(options).await.err().unwrap();
        assert!(matches!(err, ChromiumError::NotInstalled(_)), "{err}");
        assert!(err.to_string().contains("scripts/install-deps.sh"));
    }
}
