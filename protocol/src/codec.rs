//! Engine.IO v4 and Socket.IO v5 text packets: pure encode and decode.
//!
//! One websocket text frame carries one Engine.IO packet; an Engine.IO
//! `message` packet carries one Socket.IO packet. Binary attachments are not
//! part of the contract (every event carries one JSON object), so binary
//! packet types are decoded as errors and dropped by the caller.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("empty packet")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEngineType(char),
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownSocketType(char),
    #[error("binary Socket.IO packets are not supported by the contract")]
    Binary,
    #[error("malformed open packet: {0}")]
    BadOpen(String),
    #[error("malformed packet payload: {0}")]
    BadPayload(String),
    #[error("event without a name")]
    NoEventName,
}

/// The handshake values from the server's open packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInfo {
    pub sid: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_payload: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOpen {
    sid: String,
    ping_interval: u64,
    ping_timeout: u64,
    #[serde(default = "default_max_payload")]
    max_payload: u64,
}

fn default_max_payload() -> u64 {
    // Engine.IO's documented default.
    1_000_000
}

#[derive(Debug, Clone, PartialEq)]
pub enum EnginePacket {
    Open(OpenInfo),
    Close,
    Ping,
    Pong,
    Message(String),
    Upgrade,
    Noop,
}

pub fn decode_engine(text: &str) -> Result<EnginePacket, CodecError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(CodecError::Empty)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => {
            let raw: RawOpen =
                serde_json::from_str(rest).map_err(|err| CodecError::BadOpen(err.to_string()))?;
            EnginePacket::Open(OpenInfo {
                sid: raw.sid,
                ping_interval: Duration::from_millis(raw.ping_interval),
                ping_timeout: Duration::from_millis(raw.ping_timeout),
                max_payload: raw.max_payload,
            })
        }
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping,
        '3' => EnginePacket::Pong,
        '4' => EnginePacket::Message(rest.to_owned()),
        '5' => EnginePacket::Upgrade,
        '6' => EnginePacket::Noop,
        other => return Err(CodecError::UnknownEngineType(other)),
    })
}

pub fn encode_engine(packet: &EnginePacket) -> String {
    match packet {
        // The client never sends an open packet; this form exists for tests.
        EnginePacket::Open(info) => format!(
            "0{}",
            serde_json::json!({
                "sid": info.sid,
                "upgrades": [],
                "pingInterval": info.ping_interval.as_millis() as u64,
                "pingTimeout": info.ping_timeout.as_millis() as u64,
                "maxPayload": info.max_payload,
            })
        ),
        EnginePacket::Close => "1".into(),
        EnginePacket::Ping => "2".into(),
        EnginePacket::Pong => "3".into(),
        EnginePacket::Message(body) => format!("4{body}"),
        EnginePacket::Upgrade => "5".into(),
        EnginePacket::Noop => "6".into(),
    }
}

/// A Socket.IO packet within a namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketPacket {
    Connect {
        nsp: String,
        data: Option<Value>,
    },
    Disconnect {
        nsp: String,
    },
    Event {
        nsp: String,
        id: Option<u64>,
        name: String,
        args: Vec<Value>,
    },
    Ack {
        nsp: String,
        id: u64,
        args: Vec<Value>,
    },
    ConnectError {
        nsp: String,
        data: Value,
    },
}

pub fn decode_socket(text: &str) -> Result<SocketPacket, CodecError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(CodecError::Empty)?;
    let mut rest = chars.as_str();
    if matches!(kind, '5' | '6') {
        return Err(CodecError::Binary);
    }
    if !matches!(kind, '0'..='4') {
        return Err(CodecError::UnknownSocketType(kind));
    }
    // A namespace other than "/" is written as "/name," before the rest.
    let nsp = if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => {
                let nsp = rest[..comma].to_owned();
                rest = &rest[comma + 1..];
                nsp
            }
            None => {
                let nsp = rest.to_owned();
                rest = "";
                nsp
            }
        }
    } else {
        "/".to_owned()
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        Some(
            rest[..digits]
                .parse::<u64>()
                .map_err(|err| CodecError::BadPayload(format!("ack id: {err}")))?,
        )
    } else {
        None
    };
    let body = &rest[digits..];
    let json = |body: &str| -> Result<Value, CodecError> {
        serde_json::from_str(body).map_err(|err| CodecError::BadPayload(err.to_string()))
    };
    Ok(match kind {
        '0' => SocketPacket::Connect {
            nsp,
            data: if body.is_empty() {
                None
            } else {
                Some(json(body)?)
            },
        },
        '1' => SocketPacket::Disconnect { nsp },
        '2' => {
            let Value::Array(mut items) = json(body)? else {
                return Err(CodecError::BadPayload(
                    "event payload is not an array".into(),
                ));
            };
            if items.is_empty() {
                return Err(CodecError::NoEventName);
            }
            let Value::String(name) = items.remove(0) else {
                return Err(CodecError::NoEventName);
            };
            SocketPacket::Event {
                nsp,
                id,
                name,
                args: items,
            }
        }
        '3' => {
            let id = id.ok_or_else(|| CodecError::BadPayload("ack without id".into()))?;
            let Value::Array(args) = json(body)? else {
                return Err(CodecError::BadPayload("ack payload is not an array".into()));
            };
            SocketPacket::Ack { nsp, id, args }
        }
        '4' => SocketPacket::ConnectError {
            nsp,
            data: if body.is_empty() {
                Value::Null
            } else {
                json(body)?
            },
        },
        _ => unreachable!("kind checked above"),
    })
}

pub fn encode_socket(packet: &SocketPacket) -> String {
    fn prefix(kind: char, nsp: &str) -> String {
        if nsp == "/" {
            kind.to_string()
        } else {
            format!("{kind}{nsp},")
        }
    }
    match packet {
        SocketPacket::Connect { nsp, data } => {
            let mut out = prefix('0', nsp);
            if let Some(data) = data {
                out.push_str(&data.to_string());
            }
            out
        }
        SocketPacket::Disconnect { nsp } => prefix('1', nsp),
        SocketPacket::Event {
            nsp,
            id,
            name,
            args,
        } => {
            let mut out = prefix('2', nsp);
            if let Some(id) = id {
                out.push_str(&id.to_string());
            }
            let mut items = Vec::with_capacity(args.len() + 1);
            items.push(Value::String(name.clone()));
            items.extend(args.iter().cloned());
            out.push_str(&Value::Array(items).to_string());
            out
        }
        SocketPacket::Ack { nsp, id, args } => {
            format!("{}{id}{}", prefix('3', nsp), Value::Array(args.clone()))
        }
        SocketPacket::ConnectError { nsp, data } => format!("{}{data}", prefix('4', nsp)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn open_packet() {
        let packet = decode_engine(
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000}"#,
        )
        .unwrap();
        assert_eq!(
            packet,
            EnginePacket::Open(OpenInfo {
                sid: "abc".into(),
                ping_interval: Duration::from_secs(25),
                ping_timeout: Duration::from_secs(20),
                max_payload: 100_000,
            })
        );
        // Round trip through the test-only encoder.
        let EnginePacket::Open(info) = packet else {
            unreachable!()
        };
        assert_eq!(
            decode_engine(&encode_engine(&EnginePacket::Open(info.clone()))).unwrap(),
            EnginePacket::Open(info)
        );
    }

    #[test]
    fn open_without_max_payload_uses_the_default() {
        let EnginePacket::Open(info) =
            decode_engine(r#"0{"sid":"a","upgrades":[],"pingInterval":1,"pingTimeout":2}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(info.max_payload, 1_000_000);
    }

    #[test]
    fn engine_errors() {
        assert_eq!(decode_engine(""), Err(CodecError::Empty));
        assert_eq!(decode_engine("9"), Err(CodecError::UnknownEngineType('9')));
        assert!(matches!(decode_engine("0{}"), Err(CodecError::BadOpen(_))));
        assert!(matches!(
            decode_engine("0not json"),
            Err(CodecError::BadOpen(_))
        ));
    }

    #[test]
    fn engine_simple_packets() {
        assert_eq!(decode_engine("2").unwrap(), EnginePacket::Ping);
        assert_eq!(decode_engine("3").unwrap(), EnginePacket::Pong);
        assert_eq!(decode_engine("1").unwrap(), EnginePacket::Close);
        assert_eq!(decode_engine("6").unwrap(), EnginePacket::Noop);
        assert_eq!(encode_engine(&EnginePacket::Pong), "3");
        assert_eq!(
            decode_engine("42[\"x\",{}]").unwrap(),
            EnginePacket::Message("2[\"x\",{}]".into())
        );
    }

    #[test]
    fn connect_with_auth_payload() {
        let packet = SocketPacket::Connect {
            nsp: "/".into(),
            data: Some(json!({"token": "t"})),
        };
        assert_eq!(encode_socket(&packet), r#"0{"token":"t"}"#);
        let packet = SocketPacket::Connect {
            nsp: "/cams".into(),
            data: Some(json!({"token": "t"})),
        };
        let text = encode_socket(&packet);
        assert_eq!(text, r#"0/cams,{"token":"t"}"#);
        assert_eq!(decode_socket(&text).unwrap(), packet);
    }

    #[test]
    fn connect_answers() {
        assert_eq!(
            decode_socket(r#"0{"sid":"x"}"#).unwrap(),
            SocketPacket::Connect {
                nsp: "/".into(),
                data: Some(json!({"sid": "x"}))
            }
        );
        assert_eq!(
            decode_socket(r#"4{"message":"unauthorized"}"#).unwrap(),
            SocketPacket::ConnectError {
                nsp: "/".into(),
                data: json!({"message": "unauthorized"})
            }
        );
    }

    #[test]
    fn events_with_and_without_ack_ids() {
        let text = r#"2["stream:requested",{"sessionId":"s-1"}]"#;
        assert_eq!(
            decode_socket(text).unwrap(),
            SocketPacket::Event {
                nsp: "/".into(),
                id: None,
                name: "stream:requested".into(),
                args: vec![json!({"sessionId": "s-1"})],
            }
        );
        let packet = SocketPacket::Event {
            nsp: "/".into(),
            id: Some(12),
            name: "webrtc:signal".into(),
            args: vec![json!({"type": "offer"})],
        };
        let text = encode_socket(&packet);
        assert_eq!(text, r#"212["webrtc:signal",{"type":"offer"}]"#);
        assert_eq!(decode_socket(&text).unwrap(), packet);
        let text = r#"2/cams,7["e",1,2]"#;
        assert_eq!(
            decode_socket(text).unwrap(),
            SocketPacket::Event {
                nsp: "/cams".into(),
                id: Some(7),
                name: "e".into(),
                args: vec![json!(1), json!(2)],
            }
        );
    }

    #[test]
    fn numbers_survive_a_round_trip_exactly() {
        // Found by the fuzzer: without serde_json's float_roundtrip, a long
        // number re-encoded by the agent decoded to a different value.
        let text =
            r#"2/cams,7["webrtc:signal",{"t":2506666666666666666666666666666666666666666.5}]"#;
        let packet = decode_socket(text).unwrap();
        assert_eq!(decode_socket(&encode_socket(&packet)).unwrap(), packet);
    }

    #[test]
    fn acks() {
        assert_eq!(
            decode_socket(r#"312[{"ok":true}]"#).unwrap(),
            SocketPacket::Ack {
                nsp: "/".into(),
                id: 12,
                args: vec![json!({"ok": true})]
            }
        );
        assert!(decode_socket(r#"3[{"ok":true}]"#).is_err());
    }

    #[test]
    fn hostile_socket_packets_are_errors_not_panics() {
        for text in [
            "",
            "2",
            "2{}",
            "2[]",
            "2[1,2]",
            "2[\"x\"",
            "5-[\"x\",{}]",
            "7",
            "399999999999999999999999[]",
            "2/nsp",
            "0/nsp,{",
            "é",
        ] {
            assert!(decode_socket(text).is_err(), "{text:?} decoded");
        }
        assert_eq!(
            decode_socket("1").unwrap(),
            SocketPacket::Disconnect { nsp: "/".into() }
        );
    }
}
