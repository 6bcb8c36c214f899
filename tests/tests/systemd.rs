//! The agent under systemd, without systemd: its notify messages on a
//! socket of our own, and its native journal records on a journald
//! stand-in inside a private mount namespace.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use testbed::harness::{self, AgentConfig, AgentProcess, Scratch};
use testbed::standin::{StandIn, StandInConfig};

const CAMERA: (&str, &str) = ("cam-systemd", "camera-token-systemd");
const CLIENT: (&str, &str) = ("viewer-systemd", "client-token-systemd");

/// Collects notify datagrams until `until` holds or `limit` passes.
fn collect(
    socket: &UnixDatagram,
    limit: Duration,
    until: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    while start.elapsed() < limit && !until(&messages) {
        if let Ok(len) = socket.recv(&mut buffer) {
            messages.push(String::from_utf8_lossy(&buffer[..len]).into_owned());
        }
    }
    messages
}

fn spawn_with_notify(scratch: &Scratch, url: &str, socket_path: &std::path::Path) -> AgentProcess {
    let token = scratch.token_file(CAMERA.1).unwrap();
    let config = AgentConfig::new(url, &token).write(scratch).unwrap();
    // SAFETY: the test sets these before spawning and nothing else in this
    // process reads them concurrently.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", socket_path);
        std::env::set_var("WATCHDOG_USEC", "400000");
    }
    let agent = AgentProcess::spawn(&config).unwrap();
    unsafe {
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::remove_var("WATCHDOG_USEC");
    }
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    let standin = StandIn::start(
        "127.0.0.1:0".parse().unwrap(),
        StandInConfig::pair(CAMERA, CLIENT),
    )
    .await
    .unwrap();
    let scratch = Scratch::new("notify").unwrap();
    let socket_path = scratch.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut agent = spawn_with_notify(&scratch, &standin.url(), &socket_path);
    let messages = tokio::task::block_in_place(|| {
        collect(&socket, Duration::from_secs(15), |messages| {
            messages.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
                && messages.iter().any(|m| m.contains("connected; idle"))
        })
    });
    let ready = messages
        .iter()
        .position(|m| m.starts_with("READY=1"))
        .expect("no READY=1");
    assert!(
        messages[ready].contains("STATUS=logged in as cam-systemd"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m == "STATUS=connected; idle"),
        "{messages:?}"
    );
    assert!(
        messages.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "{messages:?}"
    );
    agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
    let after = tokio::task::block_in_place(|| {
        collect(&socket, Duration::from_secs(2), |messages| {
            messages.iter().any(|m| m.starts_with("STOPPING=1"))
        })
    });
    assert!(
        after.iter().any(|m| m.starts_with("STOPPING=1")),
        "{after:?}"
    );
    standin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_offline_at_boot_still_reports_ready_and_keeps_trying() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let scratch = Scratch::new("notify-offline").unwrap();
    let socket_path = scratch.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut agent = spawn_with_notify(&scratch, &format!("http://{addr}"), &socket_path);
    let messages = tokio::task::block_in_place(|| {
        collect(&socket, Duration::from_secs(10), |messages| {
            messages.iter().any(|m| m.starts_with("READY=1"))
                && messages.iter().any(|m| m == "WATCHDOG=1")
        })
    });
    let ready = messages
        .iter()
        .find(|m| m.starts_with("READY=1"))
        .expect("no READY=1");
    assert!(ready.contains("unreachable"), "{ready}");
    assert!(
        messages.iter().any(|m| m == "WATCHDOG=1"),
        "no watchdog while retrying: {messages:?}"
    );
    agent.signal(harness::SIGTERM).unwrap();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(5)).await.unwrap(),
        Some(0)
    );
}

#[test]
fn journal_records_carry_priority_and_structured_fields() {
    let scratch = Scratch::new("journal").unwrap();
    let token = scratch.token_file(CAMERA.1).unwrap();
    let config = AgentConfig::new("http://127.0.0.1:9", &token)
        .write(&scratch)
        .unwrap();
    let out = scratch.dir.join("journal.out");
    let receiver = concat!(env!("CARGO_MANIFEST_DIR"), "/journal_receiver.py");
    // A private mount namespace with its own /run, so the journald
    // stand-in never touches the machine's journal.
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal; \
         python3 {receiver} /run/systemd/journal/socket {out} & \
         for i in $(seq 50); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done; \
         JOURNAL_STREAM=8:1 timeout -s TERM 3 {agent} run --config {config} || true; \
         kill %1",
        out = out.display(),
        agent = harness::agent_binary().unwrap().display(),
        config = config.display(),
    );
    let status = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script])
        .status()
        .expect("unshare (util-linux) is needed");
    assert!(status.success(), "{status:?}");
    let bytes = std::fs::read(&out).unwrap();
    let records = parse_records(&bytes);
    let login = records
        .iter()
        .find(|record| field(record, "MESSAGE") == Some("login failed; retrying"))
        .unwrap_or_else(|| panic!("no login record in {records:?}"));
    assert_eq!(field(login, "PRIORITY"), Some("4"), "{login:?}");
    assert!(field(login, "RETRY_IN_MS").is_some(), "{login:?}");
    assert_eq!(
        field(login, "SYSLOG_IDENTIFIER"),
        Some("camera-agent"),
        "{login:?}"
    );
    assert!(
        !String::from_utf8_lossy(&bytes).contains(CAMERA.1),
        "token in the journal"
    );
}

type Record = Vec<(String, String)>;

fn field<'a>(record: &'a Record, name: &str) -> Option<&'a str> {
    record
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Datagrams (length-prefixed by the receiver) in journald's native
/// format: `KEY=value\n`, or `KEY\n` + 64-bit LE length + value + `\n`.
fn parse_records(mut bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    while bytes.len() >= 8 {
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut datagram = &bytes[8..8 + len];
        bytes = &bytes[8 + len..];
        let mut record = Vec::new();
        while !datagram.is_empty() {
            let line_end = datagram
                .iter()
                .position(|b| *b == b'\n')
                .unwrap_or(datagram.len());
            let line = &datagram[..line_end];
            if let Some(eq) = line.iter().position(|b| *b == b'=') {
                record.push((
                    String::from_utf8_lossy(&line[..eq]).into_owned(),
                    String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
                ));
                datagram = &datagram[(line_end + 1).min(datagram.len())..];
            } else {
                let key = String::from_utf8_lossy(line).into_owned();
                let rest = &datagram[line_end + 1..];
                let value_len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                let value = String::from_utf8_lossy(&rest[8..8 + value_len]).into_owned();
                record.push((key, value));
                datagram = &rest[(8 + value_len + 1).min(rest.len())..];
            }
        }
        records.push(record);
    }
    records
}
