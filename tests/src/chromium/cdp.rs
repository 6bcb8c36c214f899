//! The DevTools connection: one WebSocket, commands matched to answers by
//! id, events broadcast to whoever listens (the pages' console collectors).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::{ChromiumError, Result};

/// A DevTools event.
#[derive(Debug, Clone)]
pub struct CdpEvent {
    pub method: String,
    pub params: Value,
    pub session_id: Option<String>,
}

type Pending = HashMap<u64, oneshot::Sender<std::result::Result<Value, (String, String)>>>;

/// The DevTools connection: commands out, answers matched by id, events
/// broadcast.
pub(super) struct Cdp {
    pub(super) out: mpsc::UnboundedSender<Message>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    pub(super) events: broadcast::Sender<CdpEvent>,
}

impl Cdp {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn connect(url: &str) -> Result<Arc<Self>> {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|source| ChromiumError::Connect {
                url: url.to_string(),
                source,
            })?;
        let (mut sink, mut stream) = socket.split();
        let (out, mut outbox) = mpsc::unbounded_channel::<Message>();
        let (events, _) = broadcast::channel(1024);
        let cdp = Arc::new(Self {
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            events,
        });
        tokio::spawn(async move {
            while let Some(message) = outbox.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        // The reader holds only a weak handle: dropping the browser ends it.
        let weak = Arc::downgrade(&cdp);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Some(cdp) = weak.upgrade() else { break };
                if let Message::Text(text) = message {
                    cdp.dispatch(text.as_str());
                }
            }
            // Closed: fail every command still waiting.
            if let Some(cdp) = weak.upgrade() {
                cdp.pending().clear();
            }
        });
        Ok(cdp)
    }

    fn dispatch(&self, text: &str) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = message.get("id").and_then(Value::as_u64) {
            let Some(reply) = self.pending().remove(&id) else {
                return;
            };
            let answer = match message.get("error") {
                Some(error) => Err((
                    error["message"].as_str().unwrap_or("error").to_string(),
                    error["data"].as_str().unwrap_or_default().to_string(),
                )),
                None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
            };
            let _ = reply.send(answer);
        } else if let Some(method) = message.get("method").and_then(Value::as_str) {
            let _ = self.events.send(CdpEvent {
                method: method.to_string(),
                params: message.get("params").cloned().unwrap_or(Value::Null),
                session_id: message
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
    }

    pub(super) async fn call(
        &self,
        session_id: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session_id) = session_id {
            command["sessionId"] = json!(session_id);
        }
        let (reply, answer) = oneshot::channel();
        self.pending().insert(id, reply);
        if self.out.send(Message::text(command.to_string())).is_err() {
            self.pending().remove(&id);
            return Err(ChromiumError::Closed);
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err((message, data)))) => Err(ChromiumError::Protocol {
                method: method.to_string(),
                message: if data.is_empty() {
                    message
                } else {
                    format!("{message} ({data})")
                },
            }),
            Ok(Err(_)) => Err(ChromiumError::Closed),
            Err(_) => {
                self.pending().remove(&id);
                Err(ChromiumError::Timeout(method.to_string()))
            }
        }
    }
}
