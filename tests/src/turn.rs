//! A real TURN server for tests: Debian's coturn (`turnserver`), started
//! inside the test network namespace on [`TEST_HOST`] with a config file of
//! our own (so `/etc/turnserver.conf` is never read), long-term credentials
//! made up per server, a self-signed certificate for TLS, and a verbose log
//! that tests read through [`TurnServer::log`].
//!
//! The camera and the viewer get different users, so the log tells whose
//! allocation is whose. Credentials go into the config file (mode 0600,
//! removed with the scratch directory) and into URLs handed to the code
//! under test; this module never prints them, and [`TurnServer::log_text`]
//! scrubs the passwords should coturn ever write one.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rand::Rng;
use serde_json::{Value, json};

use crate::harness::{Scratch, TEST_HOST};
use crate::netem;

/// coturn's plain (UDP and TCP) listening port.
pub const TURN_PORT: u16 = 3478;
/// coturn's TLS listening port.
pub const TURNS_PORT: u16 = 5349;
/// The ports coturn allocates relays from.
pub const RELAY_PORTS: RangeInclusive<u16> = 50000..=50999;
/// The namespace's ephemeral ports while a server runs: below the relay
/// range, so a filter can tell relay ports by number.
pub const EPHEMERAL_PORTS: RangeInclusive<u16> = 32768..=49999;
pub const REALM: &str = "camera-agent.test";

/// How a client reaches the TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    /// `turn:host:3478?transport=udp`
    Udp,
    /// `turn:host:3478?transport=tcp`
    Tcp,
    /// `turns:host:5349?transport=tcp`
    Tls,
}

impl TurnTransport {
    /// The W3C / contract form (`iceServers` `urls`).
    pub fn url(self) -> String {
        match self {
            TurnTransport::Udp => format!("turn:{TEST_HOST}:{TURN_PORT}?transport=udp"),
            TurnTransport::Tcp => format!("turn:{TEST_HOST}:{TURN_PORT}?transport=tcp"),
            TurnTransport::Tls => format!("turns:{TEST_HOST}:{TURNS_PORT}?transport=tcp"),
        }
    }

    /// webrtcbin's `add-turn-server` form, with credentials.
    fn webrtcbin_url(self, user: &str, password: &str) -> String {
        let (scheme, rest) = self
            .url()
            .split_once(':')
            .map(|(scheme, rest)| (scheme.to_string(), rest.to_string()))
            .unwrap_or_default();
        format!("{scheme}://{user}:{password}@{rest}")
    }
}

/// One long-term credential.
#[derive(Clone)]
pub struct TurnUser {
    pub username: String,
    password: String,
}

impl TurnUser {
    /// A user `<prefix>-xxxxxx` with a random password; `symbols` adds
    /// characters that must be percent-encoded in a URL (as in coturn's
    /// base64 REST credentials).
    fn generate(prefix: &str, symbols: bool) -> Self {
        let random = |length: usize| -> String {
            rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(length)
                .map(char::from)
                .collect()
        };
        Self {
            username: format!("{prefix}-{}", random(6).to_ascii_lowercase()),
            password: if symbols {
                format!("{}+/={}", random(12), random(9))
            } else {
                random(24)
            },
        }
    }

    /// The password, for handing to the code under test; never print it.
    pub fn credential(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for TurnUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnUser")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A running coturn; killed and reaped on drop.
pub struct TurnServer {
    child: Child,
    camera: TurnUser,
    viewer: TurnUser,
    log_path: PathBuf,
    cert_der: Vec<u8>,
    cert_path: PathBuf,
    /// Holds the config, key and log until the server is dropped.
    _scratch: Scratch,
}

impl TurnServer {
    /// Starts coturn on [`TEST_HOST`] and waits (10 s at most) until it
    /// answers STUN over UDP and accepts TCP on both ports. Moves the
    /// namespace's ephemeral ports to [`EPHEMERAL_PORTS`] first.
    pub async fn start() -> anyhow::Result<Self> {
        netem::set_ephemeral_ports(EPHEMERAL_PORTS).context("cannot separate the port ranges")?;
        let scratch = Scratch::new("turn")?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = rcgen::CertificateParams::new(vec![TEST_HOST.to_string()])?.self_signed(&key)?;
        let cert_path = scratch.write("cert.pem", &cert.pem())?;
        let key_path = scratch.write("key.pem", &key.serialize_pem())?;
        restrict(&key_path)?;
        let log_path = scratch.dir.join("turn.log");
        // The camera's password goes through the agent's URL conversion
        // (agent/src/media/sdp.rs), so it carries characters to escape.
        let camera = TurnUser::generate("cam", true);
        let viewer = TurnUser::generate("viewer", false);
        let config = format!(
            "listening-ip={TEST_HOST}\nrelay-ip={TEST_HOST}\n\
             listening-port={TURN_PORT}\ntls-listening-port={TURNS_PORT}\n\
             min-port={}\nmax-port={}\n\
             lt-cred-mech\nrealm={REALM}\nuser={}:{}\nuser={}:{}\n\
             cert={}\npkey={}\nno-dtls\nno-tlsv1\nno-tlsv1_1\n\
             fingerprint\nno-cli\nno-multicast-peers\n\
             userdb={}\npidfile={}\n\
             log-file={}\nsimple-log\nverbose\n",
            RELAY_PORTS.start(),
            RELAY_PORTS.end(),
            camera.username,
            camera.password,
            viewer.username,
            viewer.password,
            cert_path.display(),
            key_path.display(),
            scratch.dir.join("turndb").display(),
            scratch.dir.join("turn.pid").display(),
            log_path.display(),
        );
        let config_path = scratch.write("turnserver.conf", &config)?;
        restrict(&config_path)?;
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => {
                    anyhow!("`turnserver` (coturn) is not installed: run scripts/install-deps.sh")
                }
                _ => anyhow!(err).context("cannot start turnserver"),
            })?;
        let mut server = Self {
            child,
            camera,
            viewer,
            log_path,
            cert_der: cert.der().to_vec(),
            cert_path,
            _scratch: scratch,
        };
        server.wait_ready(Duration::from_secs(10)).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let host: std::net::IpAddr = TEST_HOST.parse()?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("turnserver exited with {status}; log:\n{}", self.log_text());
            }
            let probe = tokio::task::spawn_blocking(move || {
                stun_binding(SocketAddr::new(host, TURN_PORT), Duration::from_millis(200))?;
                for port in [TURN_PORT, TURNS_PORT] {
                    TcpStream::connect_timeout(
                        &SocketAddr::new(host, port),
                        Duration::from_millis(200),
                    )?;
                }
                anyhow::Ok(())
            })
            .await?;
            match probe {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() > deadline => {
                    bail!(
                        "turnserver not ready within {limit:?} ({err:#}); log:\n{}",
                        self.log_text()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The camera's credential.
    pub fn camera_user(&self) -> &TurnUser {
        &self.camera
    }

    /// The viewer's credential.
    pub fn viewer_user(&self) -> &TurnUser {
        &self.viewer
    }

    /// The contract's `iceServers` array for the camera: one server with
    /// the URL for `transport` and the camera's username and credential.
    pub fn ice_servers_json(&self, transport: TurnTransport) -> Vec<Value> {
        vec![json!({
            "urls": [transport.url()],
            "username": self.camera.username,
            "credential": self.camera.password,
        })]
    }

    /// The viewer's server in webrtcbin's `add-turn-server` form
    /// (`turn(s)://user:pass@host:port?transport=..`).
    pub fn viewer_webrtcbin_url(&self, transport: TurnTransport) -> String {
        transport.webrtcbin_url(&self.viewer.username, &self.viewer.password)
    }

    /// The self-signed certificate served on the TLS port (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The same certificate as a PEM file, for a client's trusted roots
    /// (the agent's `control_plane.ca_file`).
    pub fn cert_pem_path(&self) -> &std::path::Path {
        &self.cert_path
    }

    /// coturn's log so far, passwords scrubbed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .replace(&self.camera.password, "<camera password>")
            .replace(&self.viewer.password, "<viewer password>")
    }

    /// coturn's log so far, counted.
    pub fn log(&self) -> TurnLog {
        TurnLog::parse(&self.log_text())
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn restrict(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Sends a STUN Binding request over UDP and waits for a success response
/// with the same transaction id.
pub fn stun_binding(server: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((TEST_HOST, 0))?;
    socket.set_read_timeout(Some(timeout))?;
    let transaction: [u8; 12] = rand::random();
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(&transaction);
    socket.send_to(&request, server)?;
    let mut buffer = [0u8; 1500];
    let (length, _) = socket.recv_from(&mut buffer)?;
    let response = &buffer[..length];
    if length < 20 || response[..2] != [0x01, 0x01] || response[8..20] != transaction {
        bail!("not a STUN Binding success response ({length} bytes)");
    }
    Ok(())
}

/// What coturn's verbose log says about one TURN session (one client
/// connection or 5-tuple).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnSession {
    pub id: String,
    pub username: String,
    /// The session's transport: TLS (coturn logs the cipher), TCP, else UDP.
    pub tls: bool,
    pub tcp: bool,
    pub allocations: u64,
    pub permissions: u64,
    pub channel_binds: u64,
    /// Packets received from and sent to peers through the relay, logged
    /// when the session closes.
    pub peer_received: Option<u64>,
    pub peer_sent: Option<u64>,
    /// The server port the client used, logged when the session closes.
    pub local_port: Option<u16>,
    /// The relay port allocated to this session, from the "Local relay
    /// addr" line coturn logs just before the session's first line.
    pub relay_port: Option<u16>,
}

/// coturn's log, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnLog {
    pub allocations: u64,
    pub permissions: u64,
    pub channel_binds: u64,
    pub sessions: Vec<TurnSession>,
}

impl TurnLog {
    pub fn parse(text: &str) -> Self {
        let mut log = TurnLog::default();
        let mut relay_port = None;
        for line in text.lines() {
            if let Some(address) = line.split_once("Local relay addr: ").map(|(_, a)| a) {
                relay_port = address
                    .trim()
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<u16>().ok());
                continue;
            }
            let Some(rest) = line.split_once("session ").map(|(_, rest)| rest) else {
                continue;
            };
            let Some((id, event)) = rest.split_once(": ") else {
                continue;
            };
            if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
                continue;
            }
            let index = match log.sessions.iter().position(|session| session.id == id) {
                Some(index) => index,
                None => {
                    log.sessions.push(TurnSession {
                        id: id.to_string(),
                        ..TurnSession::default()
                    });
                    log.sessions.len() - 1
                }
            };
            let session = &mut log.sessions[index];
            if let Some(user) = between(event, "username=<", ">").or(between(event, "user <", ">"))
                && !user.is_empty()
            {
                session.username = user.to_string();
            }
            if event.starts_with("new,") {
                session.tls |= event.contains("cipher=");
                if session.relay_port.is_none() {
                    session.relay_port = relay_port.take();
                }
            }
            if event.contains("TLS/TCP socket") {
                session.tls = true;
                session.tcp = true;
            } else if event.contains("TCP socket") {
                session.tcp = true;
            }
            for (packet, counter, total) in [
                ("ALLOCATE", &mut session.allocations, &mut log.allocations),
                (
                    "CREATE_PERMISSION",
                    &mut session.permissions,
                    &mut log.permissions,
                ),
                (
                    "CHANNEL_BIND",
                    &mut session.channel_binds,
                    &mut log.channel_binds,
                ),
            ] {
                if event.contains(&format!("incoming packet {packet} processed, success")) {
                    *counter += 1;
                    *total += 1;
                }
            }
            if let Some(usage) = event.strip_prefix("peer usage: ") {
                session.peer_received = field(usage, "rp=");
                session.peer_sent = field(usage, "sp=");
            }
            if event.starts_with("closed") {
                session.local_port = between(event, "local ", ",")
                    .and_then(|address| address.rsplit_once(':'))
                    .and_then(|(_, port)| port.parse().ok());
            }
        }
        log
    }

    /// Sessions of `username` that allocated a relay.
    pub fn allocations_of(&self, username: &str) -> Vec<&TurnSession> {
        self.sessions
            .iter()
            .filter(|session| session.username == username && session.allocations > 0)
            .collect()
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let length = text[from..].find(end)?;
    Some(&text[from..from + length])
}

fn field(text: &str, name: &str) -> Option<u64> {
    let from = text.find(name)? + name.len();
    text[from..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
0: : session 001000000000000001: realm <camera-agent.test> user <>: incoming packet message processed, error 401: Unauthorized
0: : IPv4. Local relay addr: 10.213.0.1:50996
0: : session 001000000000000001: new, realm=<camera-agent.test>, username=<cam-abc>, lifetime=600
0: : session 001000000000000001: realm <camera-agent.test> user <cam-abc>: incoming packet ALLOCATE processed, success
0: : session 001000000000000001: realm <camera-agent.test> user <cam-abc>: incoming packet CREATE_PERMISSION processed, success
0: : session 000000000000000002: new, realm=<camera-agent.test>, username=<viewer-x>, lifetime=777, cipher=ECDHE-ECDSA-AES256-GCM-SHA384, method=TLSv1.2
0: : session 000000000000000002: realm <camera-agent.test> user <viewer-x>: incoming packet ALLOCATE processed, success
0: : session 000000000000000002: realm <camera-agent.test> user <viewer-x>: incoming packet CHANNEL_BIND processed, success
0: : session 000000000000000002: TLS/TCP socket disconnected: 10.213.0.1:40934
0: : session 000000000000000002: usage: realm=<camera-agent.test>, username=<viewer-x>, rp=3, rb=316, sp=3, sb=320
0: : session 000000000000000002: peer usage: realm=<camera-agent.test>, username=<viewer-x>, rp=120, rb=9000, sp=7, sb=640
0: : session 000000000000000002: closed (2nd stage), user <viewer-x> realm <camera-agent.test> origin <>, local 10.213.0.1:5349, remote 10.213.0.1:40934, reason: TLS/TCP socket buffer operation error (callback)
";

    #[test]
    fn coturn_log_is_counted_per_session() {
        let log = TurnLog::parse(LOG);
        assert_eq!(
            (log.allocations, log.permissions, log.channel_binds),
            (2, 1, 1)
        );
        assert_eq!(log.sessions.len(), 2);
        let camera = &log.allocations_of("cam-abc")[0];
        assert!(!camera.tls && !camera.tcp);
        assert_eq!(camera.relay_port, Some(50996));
        assert_eq!((camera.peer_received, camera.local_port), (None, None));
        let viewer = &log.allocations_of("viewer-x")[0];
        assert!(viewer.tls && viewer.tcp);
        assert_eq!(viewer.peer_received, Some(120));
        assert_eq!(viewer.peer_sent, Some(7));
        assert_eq!(viewer.local_port, Some(TURNS_PORT));
    }

    #[test]
    fn urls_for_the_contract_and_for_webrtcbin() {
        assert_eq!(
            TurnTransport::Udp.url(),
            "turn:10.213.0.1:3478?transport=udp"
        );
        assert_eq!(
            TurnTransport::Tls.url(),
            "turns:10.213.0.1:5349?transport=tcp"
        );
        assert_eq!(
            TurnTransport::Tcp.webrtcbin_url("u", "p"),
            "turn://u:p@10.213.0.1:3478?transport=tcp"
        );
        let user = TurnUser::generate("cam", false);
        assert!(user.username.starts_with("cam-"));
        assert_eq!(user.credential().len(), 24);
        assert!(TurnUser::generate("cam", true).credential().contains("+/="));
        assert!(!format!("{user:?}").contains(user.credential()));
    }
}
