//! TURN over TLS (`turns:`) through a local tunnel, one per server and
//! session.
//!
//! webrtcbin hands a `turns:` server to libnice as its TLS relay type, but
//! libnice 0.1.21 wraps nothing in TLS in RFC 5245 mode (only pseudo-SSL
//! for old Google and Microsoft peers): it speaks plain TURN over TCP to
//! the TLS port. That works only where the server also takes plain TCP on
//! that port, fails against a TLS-only server (443 behind a corporate
//! proxy), and would send the TURN credentials and the ICE checks in clear.
//!
//! So for every `turns:` server of a session the agent listens on a
//! loopback TCP port, gives libnice `turn://user:pass@127.0.0.1:port?transport=tcp`
//! instead, and for each connection libnice makes there opens TLS to the
//! real server (certificate and name verified against the web PKI roots
//! plus `control_plane.ca_file`, the same trust as the control plane) and
//! copies bytes both ways. libnice binds its TURN socket to a host
//! candidate's address and connects to the loopback port from there, which
//! Linux allows. Everything runs as tasks on the agent's runtime; the
//! session closes its tunnels (listeners and connections) at teardown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::sdp::IceUrls;
use crate::control_plane::tls::{ExtraRoots, TlsError};

/// RFC 7065's default port for `turns:`.
pub const DEFAULT_TURNS_PORT: u16 = 5349;
/// Bound on the TCP connect to the TURN server, and on the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a `turns:` URL cannot be tunnelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnsUrlError {
    #[error("TURN over DTLS (turns: with transport=udp) is not supported")]
    Dtls,
    #[error("the URL has no user:password@")]
    NoCredentials,
    #[error("the URL's host or port is not valid")]
    BadAddress,
}

/// A `turns:` server in webrtcbin's URL form (`turns://user:pass@host:port`).
/// Debug leaves the credentials out.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnsServer {
    /// `user:pass`, percent-encoded as in the URL.
    userinfo: String,
    /// A DNS name or an IP address, without brackets.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Debug for TurnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnsServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl TurnsServer {
    /// Parses a `turns://` URL; `None` for any other scheme.
    pub fn parse(url: &str) -> Option<Result<Self, TurnsUrlError>> {
        let rest = url.strip_prefix("turns://")?;
        Some(Self::parse_rest(rest))
    }

    fn parse_rest(rest: &str) -> Result<Self, TurnsUrlError> {
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let udp = query.split('&').any(|pair| {
            pair.split_once('=').is_some_and(|(key, value)| {
                key.eq_ignore_ascii_case("transport") && value.eq_ignore_ascii_case("udp")
            })
        });
        if udp {
            return Err(TurnsUrlError::Dtls);
        }
        let (userinfo, address) = rest
            .rsplit_once('@')
            .filter(|(userinfo, _)| userinfo.contains(':'))
            .ok_or(TurnsUrlError::NoCredentials)?;
        let (host, port) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or(TurnsUrlError::BadAddress)?;
                host.parse::<Ipv6Addr>()
                    .map_err(|_| TurnsUrlError::BadAddress)?;
                (host, after.strip_prefix(':'))
            }
            None => match address.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (address, None),
            },
        };
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or(TurnsUrlError::BadAddress)?,
            None => DEFAULT_TURNS_PORT,
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-_:".contains(&byte));
        if !host_ok {
            return Err(TurnsUrlError::BadAddress);
        }
        Ok(Self {
            userinfo: userinfo.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// `host:port`, brackets around an IPv6 address: for logs (no secret).
    pub fn address(&self) -> String {
        match self.host.parse::<Ipv6Addr>() {
            Ok(_) => format!("[{}]:{}", self.host, self.port),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }

    /// The loopback address a tunnel to this server listens on: libnice
    /// pairs a TURN server only with host candidates of its IP version, so
    /// the tunnel keeps the server's (IPv4 for a DNS name).
    fn loopback(&self) -> IpAddr {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The plain-TCP URL libnice gets for a tunnel listening on `local`.
    fn tunnel_url(&self, local: SocketAddr) -> String {
        format!("turn://{}@{local}?transport=tcp", self.userinfo)
    }
}

/// The TLS client configuration for TURN servers: the control plane's
/// roots (web PKI plus `control_plane.ca_file`). Like browsers, no ALPN
/// is offered (RFC 7443's `stun.turn` is optional, and a server that knows
/// other protocols only could refuse the handshake); SNI names a DNS host.
pub fn client_config(roots: &ExtraRoots) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    roots.client_config()
}

/// One session's tunnels. Dropping it cancels them; [`TlsTunnels::close`]
/// also waits until every socket is closed.
pub struct TlsTunnels {
    connector: TlsConnector,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for TlsTunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTunnels")
            .field("tunnels", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl TlsTunnels {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            connector: TlsConnector::from(config),
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Replaces every `turns:` URL of `urls` with one to a new local
    /// tunnel, and lists the tunnels' addresses in `urls.tls_tunnels`. A
    /// URL that cannot be tunnelled is dropped with a warning (never
    /// handed to libnice, which would send its credentials in clear).
    /// Must run inside the runtime.
    pub fn route(&mut self, mut urls: IceUrls, session_id: &str) -> IceUrls {
        let mut turn = Vec::with_capacity(urls.turn.len());
        for url in urls.turn {
            let server = match TurnsServer::parse(&url) {
                None => {
                    turn.push(url);
                    continue;
                }
                Some(Ok(server)) => server,
                Some(Err(err)) => {
                    warn!(%session_id, error = %err,
                        "TURN server left out (URL not logged: it holds credentials)");
                    continue;
                }
            };
            match self.open(&server, session_id) {
                Ok(local) => {
                    debug!(%session_id, server = %server.address(), %local, "TURN TLS tunnel listening");
                    urls.tls_tunnels.push(local.ip());
                    turn.push(server.tunnel_url(local));
                }
                Err(err) => warn!(%session_id, server = %server.address(), error = %err,
                    "cannot open a TURN TLS tunnel; server left out"),
            }
        }
        urls.turn = turn;
        urls
    }

    /// Listens on a loopback port for `server`; returns its address.
    fn open(&mut self, server: &TurnsServer, session_id: &str) -> std::io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind((server.loopback(), 0))?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let local = listener.local_addr()?;
        let target = Arc::new(Target {
            server: server.clone(),
            session_id: session_id.to_string(),
        });
        self.tasks.spawn(serve(
            listener,
            target,
            self.connector.clone(),
            self.cancel.clone(),
        ));
        Ok(local)
    }

    /// Closes every listener and connection and waits until they are gone.
    pub async fn close(&mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for TlsTunnels {
    fn drop(&mut self) {
        // The JoinSet aborts the tasks as well; cancelling first lets each
        // close its connections in order.
        self.cancel.cancel();
    }
}

/// Where a tunnel's connections go, and whose they are (for the logs).
struct Target {
    server: TurnsServer,
    session_id: String,
}

/// Accepts libnice's connections until cancelled, then closes them all.
async fn serve(
    listener: TcpListener,
    target: Arc<Target>,
    connector: TlsConnector,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((local, _)) => {
                    connections.spawn(relay(local, target.clone(), connector.clone()));
                }
                Err(err) => {
                    // Out of fds, most likely: back off rather than spin.
                    warn!(session_id = %target.session_id, error = %err,
                        "TURN TLS tunnel cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

#[derive(Debug, thiserror::Error)]
enum TunnelError {
    #[error("cannot resolve the server: {0}")]
    Resolve(std::io::Error),
    #[error("the server's name resolves to no address")]
    NoAddress,
    #[error("TCP connect: {0}")]
    Connect(std::io::Error),
    #[error("the server's name is not valid for TLS")]
    ServerName,
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl TunnelError {
    /// A stable name for the logs: `certificate` when the server's
    /// certificate or name did not verify.
    fn code(&self) -> &'static str {
        match self {
            TunnelError::Resolve(_) | TunnelError::NoAddress => "resolve",
            TunnelError::Connect(_) => "connect",
            TunnelError::ServerName => "server_name",
            TunnelError::Handshake(err) => {
                let certificate = err
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
                if certificate {
                    "certificate"
                } else {
                    "handshake"
                }
            }
            TunnelError::Timeout(_) => "timeout",
        }
    }
}

/// One connection from libnice: TLS to the server, then bytes both ways
/// until either side closes.
async fn relay(mut local: TcpStream, target: Arc<Target>, connector: TlsConnector) {
    let server = &target.server;
    let session_id = &target.session_id;
    let mut tls = match connect(server, &connector).await {
        Ok(tls) => tls,
        Err(err) => {
            warn!(%session_id, server = %server.address(), failure = err.code(),
                error = %err, "TURN over TLS: no connection to the server");
            return;
        }
    };
    {
        let (_, connection) = tls.get_ref();
        info!(%session_id, server = %server.address(),
            tls_version = ?connection.protocol_version(),
            cipher = ?connection.negotiated_cipher_suite().map(|suite| suite.suite()),
            "TURN over TLS connected");
    }
    // Small TURN messages both ways: Nagle would only add delay.
    let _ = local.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut local, &mut tls).await {
        Ok((up, down)) => debug!(%session_id, server = %server.address(), up, down,
            "TURN over TLS closed"),
        Err(err) => debug!(%session_id, server = %server.address(), error = %err,
            "TURN over TLS ended"),
    }
}

async fn connect(
    server: &TurnsServer,
    connector: &TlsConnector,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TunnelError> {
    let name = ServerName::try_from(server.host.clone()).map_err(|_| TunnelError::ServerName)?;
    let handshake = async {
        // An IP address resolves at once; a name goes through the
        // resolver (getaddrinfo on the runtime's blocking pool).
        let addresses = tokio::net::lookup_host((server.host.as_str(), server.port))
            .await
            .map_err(TunnelError::Resolve)?;
        let mut last = TunnelError::NoAddress;
        let mut stream = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(err) => last = TunnelError::Connect(err),
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        connector
            .connect(name, stream)
            .await
            .map_err(TunnelError::Handshake)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| TunnelError::Timeout(CONNECT_TIMEOUT))?
}

#[cfg(test)]
#[path = "turn_tls_tests.rs"]
mod tests;
