//! The signaling connection against a scripted Engine.IO server on
//! loopback: heartbeat watchdog, pong, auth refusal and its backoff, and a
//! server that disappears. The server here is deliberately raw (frames by
//! hand), so it can misbehave in ways a real Socket.IO server would not.

// tungstenite's handshake callback type fixes its (large) error type.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use camera_agent::config::Secret;
use camera_agent::control_plane::socketio::connection::{self, SignalingEvent, SocketSettings};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const TOKEN: &str = "signaling-test-token";

/// What the scripted server does after the Engine.IO open packet.
#[derive(Clone, Copy)]
enum Script {
    /// Accept the namespace, then ping every 100 ms and expect pongs.
    PingAndCheckPongs,
    /// Accept the namespace, then never ping again.
    GoSilent,
    /// Answer CONNECT with CONNECT_ERROR.
    RefuseAuth,
    /// Accept the namespace, then read nothing more (a stalled uplink).
    StopReading,
}

/// Serves `script` to every connection; reports (connection count, pongs
/// received, whether the CONNECT carried the token in header and payload).
async fn server(script: Script) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        listener.local_addr().unwrap()
    );
    let (report, reports) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let report = report.clone();
            tokio::spawn(async move {
                let mut header_ok = false;
                let callback =
                    |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                     response| {
                        header_ok = request
                            .headers()
                            .get("authorization")
                            .is_some_and(|value| value == &format!("Bearer {TOKEN}"));
                        Ok(response)
                    };
                let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
                    .await
                    .unwrap();
                let _ = report
                    .send(format!("connected header_ok={header_ok}"))
                    .await;
                let open = match script {
                    // Long enough that the client keeps the connection.
                    Script::StopReading => {
                        r#"0{"sid":"x","upgrades":[],"pingInterval":30000,"pingTimeout":30000,"maxPayload":1000000}"#
                    }
                    _ => {
                        r#"0{"sid":"x","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000}"#
                    }
                };
                ws.send(Message::text(open)).await.unwrap();
                let Some(Ok(Message::Text(connect))) = ws.next().await else {
                    return;
                };
                let _ = report.send(format!("CONNECT {connect}")).await;
                match script {
                    Script::RefuseAuth => {
                        ws.send(Message::text(r#"44{"message":"unauthorized"}"#))
                            .await
                            .unwrap();
                        let _ = ws.close(None).await;
                    }
                    Script::StopReading => {
                        ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
                        tokio::time::sleep(Duration::from_secs(20)).await;
                    }
                    Script::GoSilent => {
                        ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
                        // Read until the client gives up on us.
                        while let Some(Ok(_)) = ws.next().await {}
                        let _ = report.send("client closed".to_string()).await;
                    }
                    Script::PingAndCheckPongs => {
                        ws.send(Message::text(r#"40{"sid":"s"}"#)).await.unwrap();
                        for _ in 0..5 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            ws.send(Message::text("2")).await.unwrap();
                            match tokio::time::timeout(Duration::from_millis(500), ws.next()).await
                            {
                                Ok(Some(Ok(Message::Text(text)))) if text.as_str() == "3" => {
                                    let _ = report.send("pong".to_string()).await;
                                }
                                other => {
                                    let _ = report.send(format!("no pong: {other:?}")).await;
                                    return;
                                }
                            }
                        }
                        // A frame over maxPayload, then a valid event: the
                        // first must be dropped, the second delivered.
                        let big = format!(r#"42["big",{{"x":"{}"}}]"#, "y".repeat(2000));
                        ws.send(Message::text(big)).await.unwrap();
                        ws.send(Message::text(r#"42["hello",{"n":1}]"#))
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            });
        }
    });
    (url, reports)
}

fn settings(url: &str) -> SocketSettings {
    SocketSettings {
        url: url.parse().unwrap(),
        namespace: "/".into(),
        token: Secret::new(TOKEN.into()),
        connect_timeout: Duration::from_secs(2),
        reconnect_max: Duration::from_millis(500),
        reconnect_spread: Duration::from_millis(500),
        auth_reconnect_max: Duration::from_secs(60),
        tls: None,
    }
}

async fn next_event(events: &mut mpsc::Receiver<SignalingEvent>) -> SignalingEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no signaling event within 5 s")
        .expect("signaling task ended")
}

#[tokio::test]
async fn answers_pings_sends_the_token_twice_and_drops_oversized_frames() {
    let (url, mut reports) = server(Script::PingAndCheckPongs).await;
    let (tx, mut events) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let _handle = connection::spawn(settings(&url), tx, cancel.clone(), &tracker);
    assert_eq!(
        next_event(&mut events).await,
        SignalingEvent::Connected { reconnect: false }
    );
    assert_eq!(reports.recv().await.unwrap(), "connected header_ok=true");
    assert_eq!(
        reports.recv().await.unwrap(),
        format!(r#"CONNECT 40{{"token":"{TOKEN}"}}"#)
    );
    for _ in 0..5 {
        assert_eq!(reports.recv().await.unwrap(), "pong");
    }
    match next_event(&mut events).await {
        SignalingEvent::Event { name, args } => {
            assert_eq!(name, "hello", "the oversized frame was not dropped");
            assert_eq!(args, vec![serde_json::json!({"n": 1})]);
        }
        other => panic!("unexpected {other:?}"),
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_silent_server_is_declared_dead_after_ping_interval_plus_timeout() {
    let (url, mut reports) = server(Script::GoSilent).await;
    let (tx, mut events) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let _handle = connection::spawn(settings(&url), tx, cancel.clone(), &tracker);
    assert_eq!(
        next_event(&mut events).await,
        SignalingEvent::Connected { reconnect: false }
    );
    let connected = Instant::now();
    match next_event(&mut events).await {
        SignalingEvent::Disconnected { reason } => assert!(reason.contains("no ping"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    // pingInterval + pingTimeout = 200 ms; allow scheduling slack.
    let waited = connected.elapsed();
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // And it reconnects by itself.
    assert_eq!(
        next_event(&mut events).await,
        SignalingEvent::Connected { reconnect: true }
    );
    let _ = reports.try_recv();
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_refused_token_backs_off_instead_of_hammering() {
    let (url, mut reports) = server(Script::RefuseAuth).await;
    let (tx, mut events) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let _handle = connection::spawn(settings(&url), tx, cancel.clone(), &tracker);
    assert_eq!(next_event(&mut events).await, SignalingEvent::AuthRejected);
    // Over the next 1.2 s the auth backoff (base 5 s, floor 1.25 s) allows
    // no second attempt; a hot loop would make dozens.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut connections = 0;
    while let Ok(report) = reports.try_recv() {
        if report.starts_with("connected") {
            connections += 1;
        }
    }
    assert_eq!(
        connections, 1,
        "reconnected while backing off from an auth refusal"
    );
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn frames_the_socket_cannot_take_are_refused_not_queued() {
    let (url, _reports) = server(Script::StopReading).await;
    let (tx, mut events) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let handle = connection::spawn(settings(&url), tx, cancel.clone(), &tracker);
    assert_eq!(handle.max_payload(), None, "known before connecting");
    assert_eq!(
        next_event(&mut events).await,
        SignalingEvent::Connected { reconnect: false }
    );
    assert_eq!(handle.max_payload(), Some(1_000_000));
    // 500 KB frames into a server that reads nothing: once the kernel's
    // buffers are full, the one-slot lane is taken and every further frame
    // is refused at once instead of piling up in memory.
    let payload = serde_json::json!({ "data": "x".repeat(500_000) });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = 0;
    let mut refused = 0;
    while Instant::now() < deadline && refused < 20 {
        match handle.try_emit_frame("stream:frame", payload.clone()) {
            Ok(()) => taken += 1,
            Err(connection::FrameRefused::Busy) => refused += 1,
            Err(connection::FrameRefused::Closed) => panic!("connection task gone"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(refused, 20, "never refused after {taken} frames");
    // Loopback buffers hold a few MB: a bounded number of frames, never
    // the whole stream.
    assert!(taken < 100, "{taken} frames taken by a stalled socket");
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}
