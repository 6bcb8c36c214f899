//! TLS to the control plane is always verified: against a server whose
//! certificate comes from a private CA, the REST login and the `wss://`
//! socket fail without `control_plane.ca_file` and work with it.

use std::sync::Arc;
use std::time::Duration;

use camera_agent::config::Secret;
use camera_agent::control_plane::rest::{RestClient, RestError};
use camera_agent::control_plane::socketio::connection::{self, SignalingEvent, SocketSettings};
use camera_agent::control_plane::tls::ExtraRoots;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// An HTTPS server answering every request with a camera's `/devices/me`.
async fn https_server(config: Arc<rustls::ServerConfig>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buffer = [0u8; 4096];
                let _ = tls.read(&mut buffer).await;
                let body = r#"{"id":"cam-tls","role":"camera","name":"TLS"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

/// A `wss://` Engine.IO server that accepts the namespace.
async fn wss_server(config: Arc<rustls::ServerConfig>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "wss://{}/socket.io/?EIO=4&transport=websocket",
        listener.local_addr().unwrap()
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                let open = r#"0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000}"#;
                let _ = ws.send(Message::text(open)).await;
                let _ = ws.next().await;
                let _ = ws.send(Message::text(r#"40{"sid":"s"}"#)).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    url
}

#[tokio::test]
async fn rest_login_verifies_the_server_certificate() {
    let pki = pki();
    let url = https_server(pki.server.clone()).await;
    let token = Secret::new("tls-token".into());
    let without = RestClient::new(
        url.parse().unwrap(),
        token.clone(),
        Duration::from_secs(5),
        &ExtraRoots::default(),
    )
    .unwrap();
    match without.me().await {
        Err(RestError::Transport(message)) => assert!(!message.contains("tls-token"), "{message}"),
        other => panic!("an untrusted certificate was accepted: {other:?}"),
    }
    let dir = std::env::temp_dir().join(format!("ca-tls-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let roots = ExtraRoots::load(&ca_file).unwrap();
    let with =
        RestClient::new(url.parse().unwrap(), token, Duration::from_secs(5), &roots).unwrap();
    let me = with.me().await.unwrap();
    assert_eq!(me.id, "cam-tls");
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn socket_outcome(url: &str, roots: &ExtraRoots) -> SignalingEvent {
    let (tx, mut events) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let _handle = connection::spawn(
        SocketSettings {
            url: url.parse().unwrap(),
            namespace: "/".into(),
            token: Secret::new("tls-token".into()),
            connect_timeout: Duration::from_secs(2),
            reconnect_max: Duration::from_secs(1),
            reconnect_spread: Duration::from_millis(500),
            auth_reconnect_max: Duration::from_secs(5),
            tls: Some(roots.client_config().unwrap()),
        },
        tx,
        cancel.clone(),
        &tracker,
    );
    // Without trust no event arrives (the connect fails and is retried):
    // report that as a timeout.
    let outcome = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or(SignalingEvent::Disconnected {
            reason: "no connection".into(),
        });
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    outcome
}

#[tokio::test]
async fn the_socket_verifies_the_server_certificate() {
    let pki = pki();
    let url = wss_server(pki.server.clone()).await;
    let untrusted = socket_outcome(&url, &ExtraRoots::default()).await;
    assert!(
        matches!(untrusted, SignalingEvent::Disconnected { .. }),
        "connected to an untrusted server: {untrusted:?}"
    );
    let dir = std::env::temp_dir().join(format!("ca-tls-ws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let roots = ExtraRoots::load(&ca_file).unwrap();
    assert_eq!(
        socket_outcome(&url, &roots).await,
        SignalingEvent::Connected { reconnect: false }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
