//! Typed inbound events and their validation: the safety gate between the
//! network and the agent (contract sections 3 and 4).
//!
//! Everything the server sends passes through [`parse_inbound`] first. An
//! event that does not match its schema becomes an [`EventError`] that the
//! supervisor logs and drops; nothing downstream ever sees raw JSON.

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event {event:?} must carry exactly one JSON object argument")]
    NotOneObject { event: String },
    #[error("event {event:?} does not match its schema: {detail}")]
    Schema { event: String, detail: String },
    #[error("event {event:?} has an empty or oversized {field}")]
    BadId { event: String, field: &'static str },
    #[error("unknown event {event:?}")]
    Unknown { event: String },
}

/// An ICE server from `stream:requested`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StreamRequested {
    pub session_id: String,
    pub camera_id: String,
    pub client_id: String,
    pub requested_at: String,
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StreamStarted {
    pub session_id: String,
    pub camera_id: String,
    pub client_id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StreamEnded {
    pub session_id: String,
    pub reason: String,
    #[serde(default)]
    pub ended_by: Option<String>,
}

/// One ICE candidate as signaled.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default)]
    pub sdp_m_line_index: Option<u32>,
}

/// The body of a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalBody {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// `None` is the end-of-candidates marker.
    Candidate(Option<Candidate>),
}

/// A `webrtc:signal` relayed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub session_id: String,
    pub from: String,
    pub body: SignalBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    StreamRequested(StreamRequested),
    StreamStarted(StreamStarted),
    StreamEnded(StreamEnded),
    Signal(Signal),
}

/// Ids are opaque strings; this bounds them so a hostile server cannot make
/// the agent keep megabytes per session.
const MAX_ID_LEN: usize = 256;

fn check_id(event: &str, field: &'static str, value: &str) -> Result<(), EventError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(EventError::BadId {
            event: event.into(),
            field,
        });
    }
    Ok(())
}

fn typed<T: for<'de> Deserialize<'de>>(event: &str, value: Value) -> Result<T, EventError> {
    serde_json::from_value(value).map_err(|err| EventError::Schema {
        event: event.into(),
        detail: err.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSignal {
    session_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sdp: Option<String>,
    #[serde(default)]
    candidate: Option<Value>,
    from: String,
}

/// Validates a server event into its typed form.
pub fn parse_inbound(name: &str, args: Vec<Value>) -> Result<Inbound, EventError> {
    let known = matches!(
        name,
        "stream:requested" | "stream:started" | "stream:ended" | "webrtc:signal"
    );
    if !known {
        return Err(EventError::Unknown { event: name.into() });
    }
    let [payload @ Value::Object(_)]: [Value; 1] = args
        .try_into()
        .map_err(|_| EventError::NotOneObject { event: name.into() })?
    else {
        return Err(EventError::NotOneObject { event: name.into() });
    };
    let schema = |detail: &str| EventError::Schema {
        event: name.into(),
        detail: detail.into(),
    };
    match name {
        "stream:requested" => {
            let event: StreamRequested = typed(name, payload)?;
            check_id(name, "sessionId", &event.session_id)?;
            check_id(name, "cameraId", &event.camera_id)?;
            check_id(name, "clientId", &event.client_id)?;
            if humantime::parse_rfc3339_weak(&event.requested_at).is_err() {
                return Err(schema("requestedAt is not an RFC 3339 time"));
            }
            if event
                .ice_servers
                .iter()
                .any(|server| server.urls.is_empty())
            {
                return Err(schema("an iceServers entry has no urls"));
            }
            Ok(Inbound::StreamRequested(event))
        }
        "stream:started" => {
            let event: StreamStarted = typed(name, payload)?;
            check_id(name, "sessionId", &event.session_id)?;
            Ok(Inbound::StreamStarted(event))
        }
        "stream:ended" => {
            let event: StreamEnded = typed(name, payload)?;
            check_id(name, "sessionId", &event.session_id)?;
            Ok(Inbound::StreamEnded(event))
        }
        _ => {
            let raw: RawSignal = typed(name, payload)?;
            check_id(name, "sessionId", &raw.session_id)?;
            check_id(name, "from", &raw.from)?;
            let body = match raw.kind.as_str() {
                "offer" | "answer" => {
                    let sdp = raw
                        .sdp
                        .filter(|sdp| sdp.starts_with("v=0"))
                        .ok_or_else(|| schema("sdp is missing or does not start with v=0"))?;
                    if raw.kind == "offer" {
                        SignalBody::Offer { sdp }
                    } else {
                        SignalBody::Answer { sdp }
                    }
                }
                "candidate" => match raw.candidate {
                    None | Some(Value::Null) => SignalBody::Candidate(None),
                    Some(value) => {
                        let candidate: Candidate = typed(name, value)?;
                        if candidate.sdp_mid.is_none() && candidate.sdp_m_line_index.is_none() {
                            return Err(schema("candidate has neither sdpMid nor sdpMLineIndex"));
                        }
                        SignalBody::Candidate(Some(candidate))
                    }
                },
                _ => return Err(schema("type must be offer, answer or candidate")),
            };
            Ok(Inbound::Signal(Signal {
                session_id: raw.session_id,
                from: raw.from,
                body,
            }))
        }
    }
}

/// The JSON payload of an outbound signal.
pub fn signal_payload(session_id: &str, body: &SignalBody) -> Value {
    match body {
        SignalBody::Offer { sdp } => json!({"sessionId": session_id, "type": "offer", "sdp": sdp}),
        SignalBody::Answer { sdp } => {
            json!({"sessionId": session_id, "type": "answer", "sdp": sdp})
        }
        SignalBody::Candidate(None) => {
            json!({"sessionId": session_id, "type": "candidate", "candidate": null})
        }
        SignalBody::Candidate(Some(candidate)) => json!({
            "sessionId": session_id,
            "type": "candidate",
            "candidate": {
                "candidate": candidate.candidate,
                "sdpMid": candidate.sdp_mid,
                "sdpMLineIndex": candidate.sdp_m_line_index,
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested() -> Value {
        json!({
            "sessionId": "s-1", "cameraId": "cam-1", "clientId": "cli-1",
            "requestedAt": "2026-11-25T10:00:00Z",
            "iceServers": [{"urls": ["stun:stun.example:3478"]}]
        })
    }

    #[test]
    fn stream_requested_parses() {
        let Inbound::StreamRequested(event) =
            parse_inbound("stream:requested", vec![requested()]).unwrap()
        else {
            panic!()
        };
        assert_eq!(event.session_id, "s-1");
        assert_eq!(event.ice_servers[0].urls, ["stun:stun.example:3478"]);
    }

    #[test]
    fn payload_must_be_exactly_one_object() {
        for args in [
            vec![],
            vec![json!("x")],
            vec![json!([1])],
            vec![requested(), requested()],
        ] {
            assert!(matches!(
                parse_inbound("stream:requested", args),
                Err(EventError::NotOneObject { .. })
            ));
        }
    }

    #[test]
    fn schema_violations_are_rejected() {
        let mut bad_time = requested();
        bad_time["requestedAt"] = json!("yesterday");
        let mut empty_id = requested();
        empty_id["sessionId"] = json!("");
        let mut long_id = requested();
        long_id["clientId"] = json!("x".repeat(300));
        let mut number_id = requested();
        number_id["cameraId"] = json!(7);
        let mut no_urls = requested();
        no_urls["iceServers"] = json!([{"urls": []}]);
        for payload in [bad_time, empty_id, long_id, number_id, no_urls] {
            assert!(
                parse_inbound("stream:requested", vec![payload.clone()]).is_err(),
                "{payload}"
            );
        }
    }

    #[test]
    fn unknown_events_are_rejected() {
        assert_eq!(
            parse_inbound("stream:frame", vec![json!({})]),
            Err(EventError::Unknown {
                event: "stream:frame".into()
            })
        );
    }

    #[test]
    fn signals() {
        let answer = parse_inbound(
            "webrtc:signal",
            vec![json!({"sessionId": "s-1", "type": "answer", "sdp": "v=0\r\n", "from": "cli-1"})],
        )
        .unwrap();
        assert_eq!(
            answer,
            Inbound::Signal(Signal {
                session_id: "s-1".into(),
                from: "cli-1".into(),
                body: SignalBody::Answer {
                    sdp: "v=0\r\n".into()
                }
            })
        );
        let end = parse_inbound(
            "webrtc:signal",
            vec![json!({"sessionId": "s-1", "type": "candidate", "candidate": null, "from": "cli-1"})],
        )
        .unwrap();
        assert!(matches!(
            end,
            Inbound::Signal(Signal {
                body: SignalBody::Candidate(None),
                ..
            })
        ));
        let candidate = parse_inbound(
            "webrtc:signal",
            vec![json!({"sessionId": "s-1", "type": "candidate", "from": "cli-1",
                "candidate": {"candidate": "candidate:1 1 UDP 1 10.0.0.1 5000 typ host", "sdpMLineIndex": 0}})],
        )
        .unwrap();
        assert!(matches!(
            candidate,
            Inbound::Signal(Signal {
                body: SignalBody::Candidate(Some(_)),
                ..
            })
        ));
    }

    #[test]
    fn bad_signals() {
        for payload in [
            json!({"sessionId": "s-1", "type": "answer", "from": "c"}),
            json!({"sessionId": "s-1", "type": "answer", "sdp": "hello", "from": "c"}),
            json!({"sessionId": "s-1", "type": "bye", "from": "c"}),
            json!({"sessionId": "s-1", "type": "answer", "sdp": "v=0"}),
            json!({"sessionId": "s-1", "type": "candidate", "from": "c", "candidate": {"candidate": "x"}}),
            json!({"sessionId": "s-1", "type": "candidate", "from": "c", "candidate": 5}),
        ] {
            assert!(
                parse_inbound("webrtc:signal", vec![payload.clone()]).is_err(),
                "{payload}"
            );
        }
    }

    #[test]
    fn outbound_payloads_follow_the_contract() {
        assert_eq!(
            signal_payload("s-1", &SignalBody::Candidate(None)),
            json!({"sessionId": "s-1", "type": "candidate", "candidate": null})
        );
        let payload = signal_payload(
            "s-1",
            &SignalBody::Candidate(Some(Candidate {
                candidate: "candidate:1".into(),
                sdp_mid: Some("video0".into()),
                sdp_m_line_index: Some(0),
            })),
        );
        assert_eq!(payload["candidate"]["sdpMid"], "video0");
        assert_eq!(payload["candidate"]["sdpMLineIndex"], 0);
    }
}
