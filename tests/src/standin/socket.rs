//! The stand-in's Socket.IO side: authentication of every socket (header
//! and CONNECT payload), presence, and relaying signals strictly between
//! the two parties of a streaming session (in legacy mode, frames from the
//! camera to the client instead: see `frames.rs`).

use super::*;

pub(super) fn install_socket_handlers(io: &SocketIo, shared: Arc<Shared>) {
    let auth_shared = shared.clone();
    // Both the upgrade's Authorization header and the CONNECT auth payload
    // must carry the same valid token.
    let middleware = move |socket: SocketRef, TryData(auth): TryData<Value>| {
        let shared = auth_shared.clone();
        async move {
            let header = bearer(&socket.req_parts().headers).map(str::to_owned);
            let payload = auth
                .ok()
                .and_then(|auth| auth.get("token").and_then(Value::as_str).map(str::to_owned));
            let device = match (header, payload) {
                (Some(header), Some(payload)) if header == payload => {
                    shared.device_by_token(&header)
                }
                _ => None,
            };
            match device {
                // The device goes online in the connect handler: only then
                // is the socket in the namespace and able to receive events.
                Some(_) => Ok(()),
                None => {
                    shared.world().socket_auth_failures += 1;
                    shared.changed.notify_waiters();
                    Err(Unauthorized)
                }
            }
        }
    };
    let on_connect = move |socket: SocketRef| {
        let shared = shared.clone();
        async move {
            let disconnect_shared = shared.clone();
            socket.on_disconnect(move |socket: SocketRef| {
                let shared = disconnect_shared.clone();
                async move {
                    let device = shared.world().sockets.remove(&socket.id.to_string());
                    shared.changed.notify_waiters();
                    if let Some(device) = device {
                        tokio::spawn(end_when_gone(shared, device));
                    }
                }
            });
            let signal_shared = shared.clone();
            socket.on(
                "webrtc:signal",
                move |socket: SocketRef, Data(signal): Data<Value>, ack: AckSender| {
                    let shared = signal_shared.clone();
                    async move { relay_signal(&shared, &socket, signal, ack).await }
                },
            );
            let frame_shared = shared.clone();
            socket.on(
                "stream:frame",
                move |socket: SocketRef, TryData(frame): TryData<Value>, ack: AckSender| {
                    let shared = frame_shared.clone();
                    async move { super::frames::relay_frame(&shared, &socket, frame.ok(), ack).await }
                },
            );
            // The middleware accepted this header's token.
            let device =
                bearer(&socket.req_parts().headers).and_then(|token| shared.device_by_token(token));
            if let Some(device) = device {
                socket.join(device.id.clone());
                shared
                    .world()
                    .sockets
                    .insert(socket.id.to_string(), device.id);
                shared.changed.notify_waiters();
            }
        }
    };
    io.ns("/", on_connect.with(middleware));
}

async fn relay_signal(shared: &Shared, socket: &SocketRef, mut signal: Value, ack: AckSender) {
    // The legacy server has no WebRTC: nothing to relay a signal to.
    if shared.config.legacy {
        shared.world().dropped += 1;
        let _ = ack.send(&json!({"ok": false, "error": "legacy_mode"}));
        shared.changed.notify_waiters();
        return;
    }
    let sender = shared.world().sockets.get(&socket.id.to_string()).cloned();
    let target = (|| {
        let sender = sender?;
        let object = signal.as_object()?;
        let session_id = object.get("sessionId")?.as_str()?;
        let kind = object.get("type")?.as_str()?;
        if !matches!(kind, "offer" | "answer" | "candidate") {
            return None;
        }
        let world = shared.world();
        let session = world.sessions.get(session_id)?;
        if session.state != SessionState::Streaming {
            return None;
        }
        let to = if sender == session.camera_id {
            session.client_id.clone()
        } else if sender == session.client_id {
            session.camera_id.clone()
        } else {
            return None;
        };
        Some((sender, to))
    })();
    match target {
        Some((from, to)) => {
            signal["from"] = Value::String(from);
            shared.world().relayed += 1;
            let _ = shared.io.to(to).emit("webrtc:signal", &signal).await;
            let _ = ack.send(&json!({"ok": true}));
        }
        None => {
            shared.world().dropped += 1;
            let _ = ack.send(&json!({"ok": false, "error": "not_relayed"}));
        }
    }
    shared.changed.notify_waiters();
}
