use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn turns_urls_parse_with_defaults_and_without_leaking_credentials() {
    let server = TurnsServer::parse("turns://u%40x:p%3Aw@10.213.0.1:5349?transport=tcp")
        .unwrap()
        .unwrap();
    assert_eq!((server.host.as_str(), server.port), ("10.213.0.1", 5349));
    assert_eq!(server.address(), "10.213.0.1:5349");
    assert_eq!(
        server.tunnel_url("127.0.0.1:40000".parse().unwrap()),
        "turn://u%40x:p%3Aw@127.0.0.1:40000?transport=tcp"
    );
    assert!(!format!("{server:?}").contains("p%3Aw"));

    let server = TurnsServer::parse("turns://a:b@turn.example")
        .unwrap()
        .unwrap();
    assert_eq!((server.host.as_str(), server.port), ("turn.example", 5349));
    assert_eq!(server.loopback(), IpAddr::V4(Ipv4Addr::LOCALHOST));

    let server = TurnsServer::parse("turns://a:b@[2001:db8::1]:443")
        .unwrap()
        .unwrap();
    assert_eq!((server.host.as_str(), server.port), ("2001:db8::1", 443));
    assert_eq!(server.address(), "[2001:db8::1]:443");
    assert_eq!(server.loopback(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(
        server.tunnel_url("[::1]:40000".parse().unwrap()),
        "turn://a:b@[::1]:40000?transport=tcp"
    );

    // A password holding '@' (a configured URL, not percent-encoded).
    let server = TurnsServer::parse("turns://a:b@c@h:1").unwrap().unwrap();
    assert_eq!((server.host.as_str(), server.port), ("h", 1));
    assert_eq!(server.userinfo, "a:b@c");

    assert_eq!(TurnsServer::parse("turn://a:b@h:1"), None);
    for (url, err) in [
        ("turns://a:b@h:5349?transport=udp", TurnsUrlError::Dtls),
        ("turns://h:5349", TurnsUrlError::NoCredentials),
        ("turns://user@h:5349", TurnsUrlError::NoCredentials),
        ("turns://a:b@h:0", TurnsUrlError::BadAddress),
        ("turns://a:b@h:99999", TurnsUrlError::BadAddress),
        ("turns://a:b@:5349", TurnsUrlError::BadAddress),
        ("turns://a:b@[nonsense]:1", TurnsUrlError::BadAddress),
        ("turns://a:b@h/x:1", TurnsUrlError::BadAddress),
    ] {
        assert_eq!(TurnsServer::parse(url), Some(Err(err)), "{url}");
    }
}

/// A TLS echo server on loopback with a certificate for 127.0.0.1; it
/// counts the TLS sessions it accepted.
struct EchoServer {
    address: SocketAddr,
    ca_file: std::path::PathBuf,
    sessions: Arc<Mutex<usize>>,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A scratch directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "turn-tls-{name}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl EchoServer {
    async fn start(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempdir::Dir::new(name);
        let ca_file = dir.0.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(0));
        let seen = sessions.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    *seen.lock().unwrap() += 1;
                    let mut buffer = [0u8; 1024];
                    while let Ok(read) = tls.read(&mut buffer).await {
                        if read == 0 || tls.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                        let _ = tls.flush().await;
                    }
                });
            }
        });
        Self {
            address,
            ca_file,
            sessions,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!(
            "turns://user:p%2Bw@127.0.0.1:{}?transport=tcp",
            self.address.port()
        )
    }
}

fn tunnels_trusting(ca_file: Option<&std::path::Path>) -> TlsTunnels {
    let roots = ExtraRoots::from_setting(ca_file).unwrap();
    TlsTunnels::new(client_config(&roots).unwrap())
}

/// The tunnel's port from the URL libnice gets.
fn tunnel_address(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("turn://user:p%2Bw@").unwrap();
    let (address, query) = rest.split_once('?').unwrap();
    assert_eq!(query, "transport=tcp");
    address.parse().unwrap()
}

#[tokio::test]
async fn a_turns_server_is_reached_through_a_verified_tls_tunnel_that_closes_with_the_session() {
    let server = EchoServer::start("echo").await;
    let mut tunnels = tunnels_trusting(Some(&server.ca_file));
    let urls = IceUrls {
        stun: None,
        turn: vec![
            "turn://a:b@10.0.0.1:3478?transport=udp".into(),
            server.url(),
            "turns://a:b@10.0.0.1:5349?transport=udp".into(),
        ],
        tls_tunnels: Vec::new(),
    };
    let urls = tunnels.route(urls, "s-test");
    // Plain TURN untouched, TURN over DTLS left out, TLS tunnelled.
    assert_eq!(urls.turn.len(), 2, "{:?}", urls.turn);
    assert_eq!(urls.turn[0], "turn://a:b@10.0.0.1:3478?transport=udp");
    let local = tunnel_address(&urls.turn[1]);
    assert!(local.ip().is_loopback());
    assert_eq!(urls.tls_tunnels, [local.ip()]);

    // Two connections (libnice makes one per host candidate), both ways.
    let mut first = TcpStream::connect(local).await.unwrap();
    let mut second = TcpStream::connect(local).await.unwrap();
    for (stream, message) in [(&mut first, &b"allocate"[..]), (&mut second, b"refresh")] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .expect("no echo through the tunnel")
            .unwrap();
        assert_eq!(echoed, message);
    }
    assert_eq!(*server.sessions.lock().unwrap(), 2);

    // Closing the session's tunnels closes its connections and listener.
    tunnels.close().await;
    let mut buffer = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buffer))
        .await
        .expect("the tunnel kept the connection open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(TcpStream::connect(local).await.is_err(), "still listening");
}

#[tokio::test]
async fn an_untrusted_certificate_closes_the_connection_without_relaying() {
    let server = EchoServer::start("untrusted").await;
    // The web PKI roots only: the self-signed certificate is not trusted.
    let mut tunnels = tunnels_trusting(None);
    let urls = tunnels.route(
        IceUrls {
            turn: vec![server.url()],
            ..IceUrls::default()
        },
        "s-test",
    );
    let mut stream = TcpStream::connect(tunnel_address(&urls.turn[0]))
        .await
        .unwrap();
    // libnice writes its Allocate before TLS is up; it must not get through.
    stream.write_all(b"allocate").await.unwrap();
    let mut buffer = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("the tunnel neither relayed nor closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(*server.sessions.lock().unwrap(), 0);
    tunnels.close().await;
}

#[tokio::test]
async fn dropping_the_tunnels_stops_listening() {
    let server = EchoServer::start("drop").await;
    let mut tunnels = tunnels_trusting(Some(&server.ca_file));
    let urls = tunnels.route(
        IceUrls {
            turn: vec![server.url()],
            ..IceUrls::default()
        },
        "s-test",
    );
    let local = tunnel_address(&urls.turn[0]);
    drop(tunnels);
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(local).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "a dropped tunnel still listens");
}

#[tokio::test]
async fn failures_are_named_for_the_logs() {
    let server = EchoServer::start("codes").await;
    let untrusted = TlsConnector::from(client_config(&ExtraRoots::default()).unwrap());
    let target = TurnsServer::parse(&server.url()).unwrap().unwrap();
    let err = connect(&target, &untrusted).await.unwrap_err();
    assert_eq!(err.code(), "certificate", "{err}");
    // Nothing listens on the port a closed listener had.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let target = TurnsServer::parse(&format!("turns://a:b@127.0.0.1:{port}"))
        .unwrap()
        .unwrap();
    let err = connect(&target, &untrusted).await.unwrap_err();
    assert_eq!(err.code(), "connect", "{err}");
}
