//! The stand-in's legacy mode (contract section 5): the camera sends JPEG
//! frames as `stream:frame` instead of an offer, and the server relays each
//! one to the session's client. The checks are pure functions over the
//! payload and the session, so each reason a frame is dropped has a unit
//! test; the handler only looks things up, records and relays.
//!
//! Nothing of the image is kept: a frame is recorded by its seq, times and
//! length, so a long session costs a few bytes per frame.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};
use socketioxide::extract::{AckSender, SocketRef};

use super::{Role, Session, SessionState, Shared, StandIn};

/// The contract's limit on one frame's JPEG, before base64.
pub const MAX_JPEG_BYTES: usize = 512 * 1024;

/// The `maxPayload` the stand-in announces in legacy mode: Node's
/// Socket.IO default (`maxHttpBufferSize`, 1e6), which a 512 KiB frame
/// (about 700 kB in base64) fits. socketioxide's own default (100 kB) would
/// make the agent's client drop every relayed frame above ~73 KiB.
pub const LEGACY_MAX_PAYLOAD: u64 = 1_000_000;

/// One frame the stand-in accepted and relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    pub session_id: String,
    pub seq: u64,
    /// The frame's `capturedAt`.
    pub captured_at: SystemTime,
    /// When the stand-in received it, by its own clock.
    pub received_at: SystemTime,
    /// The JPEG's length before base64.
    pub jpeg_len: usize,
}

/// Why the stand-in dropped a `stream:frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameDrop {
    /// The stand-in runs in WebRTC mode.
    NotLegacy,
    /// The sender is not a camera (or its socket is unknown).
    NotCamera,
    /// Not an object, or a field missing or of the wrong type (`seq` not a
    /// positive integer, `data` not a string).
    Schema,
    /// `mime` is not exactly `image/jpeg`.
    BadMime,
    /// `capturedAt` is not an RFC 3339 timestamp.
    BadTimestamp,
    /// `data` is not valid standard base64.
    BadBase64,
    /// The JPEG is over [`MAX_JPEG_BYTES`].
    TooLarge,
    /// Empty, or not starting with the JPEG SOI marker FF D8.
    NotJpeg,
    UnknownSession,
    /// The sender is a camera, but not this session's.
    NotParty,
    /// The session is `requested` or `ended`.
    NotStreaming,
}

impl FrameDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameDrop::NotLegacy => "not_legacy",
            FrameDrop::NotCamera => "not_camera",
            FrameDrop::Schema => "schema",
            FrameDrop::BadMime => "bad_mime",
            FrameDrop::BadTimestamp => "bad_timestamp",
            FrameDrop::BadBase64 => "bad_base64",
            FrameDrop::TooLarge => "too_large",
            FrameDrop::NotJpeg => "not_jpeg",
            FrameDrop::UnknownSession => "unknown_session",
            FrameDrop::NotParty => "not_party",
            FrameDrop::NotStreaming => "not_streaming",
        }
    }
}

impl StandIn {
    /// Every frame accepted (and relayed) for `session_id`, in arrival order.
    pub fn frames(&self, session_id: &str) -> Vec<FrameRecord> {
        self.shared
            .world()
            .frames
            .get(session_id)
            .map(|frames| frames.accepted.clone())
            .unwrap_or_default()
    }

    /// Dropped `stream:frame` events by reason (`FrameDrop::as_str`).
    pub fn frame_drops(&self) -> BTreeMap<String, u64> {
        self.shared
            .world()
            .frame_drops
            .iter()
            .map(|(reason, count)| (reason.as_str().to_owned(), *count))
            .collect()
    }

    /// How long after the session ended each of its late frames arrived
    /// (each was dropped as `not_streaming`): for "frames stop within 1 s of
    /// `stream:ended`".
    pub fn frames_after_end(&self, session_id: &str) -> Vec<Duration> {
        let world = self.shared.world();
        let Some(ended_at) = world.sessions.get(session_id).and_then(|s| s.ended_at) else {
            return Vec::new();
        };
        world
            .frames
            .get(session_id)
            .map(|frames| {
                frames
                    .after_end
                    .iter()
                    .map(|at| at.duration_since(ended_at).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the stand-in keeps of one session's frames.
#[derive(Debug, Default)]
pub(super) struct SessionFrames {
    pub(super) accepted: Vec<FrameRecord>,
    /// When each frame for this session arrived after it had ended.
    pub(super) after_end: Vec<SystemTime>,
}

/// A payload that passed every check that needs no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckedFrame {
    pub(super) session_id: String,
    pub(super) seq: u64,
    pub(super) captured_at: SystemTime,
    pub(super) jpeg_len: usize,
}

/// The payload's own checks: schema, mime, timestamp, then the data
/// (decoded once to know its length and first bytes, then dropped).
pub(super) fn check_payload(payload: &Value) -> Result<CheckedFrame, FrameDrop> {
    let object = payload.as_object().ok_or(FrameDrop::Schema)?;
    let session_id = object
        .get("sessionId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or(FrameDrop::Schema)?;
    let seq = object
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|seq| *seq >= 1)
        .ok_or(FrameDrop::Schema)?;
    let mime = object
        .get("mime")
        .and_then(Value::as_str)
        .ok_or(FrameDrop::Schema)?;
    let captured_at = object
        .get("capturedAt")
        .and_then(Value::as_str)
        .ok_or(FrameDrop::Schema)?;
    let data = object
        .get("data")
        .and_then(Value::as_str)
        .ok_or(FrameDrop::Schema)?;
    if mime != "image/jpeg" {
        return Err(FrameDrop::BadMime);
    }
    let captured_at = humantime::parse_rfc3339(captured_at).map_err(|_| FrameDrop::BadTimestamp)?;
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| FrameDrop::BadBase64)?;
    if jpeg.len() > MAX_JPEG_BYTES {
        return Err(FrameDrop::TooLarge);
    }
    if !jpeg.starts_with(&[0xff, 0xd8]) {
        return Err(FrameDrop::NotJpeg);
    }
    Ok(CheckedFrame {
        session_id: session_id.to_owned(),
        seq,
        captured_at,
        jpeg_len: jpeg.len(),
    })
}

/// The session's checks: it exists, the sender is its camera, it streams.
pub(super) fn check_session(session: Option<&Session>, sender: &str) -> Result<(), FrameDrop> {
    let session = session.ok_or(FrameDrop::UnknownSession)?;
    if session.camera_id != sender {
        return Err(FrameDrop::NotParty);
    }
    if session.state != SessionState::Streaming {
        return Err(FrameDrop::NotStreaming);
    }
    Ok(())
}

/// Handles one `stream:frame`: checks, records, relays to the client and
/// acks `{"ok": true}` or `{"ok": false, "error": reason}`.
pub(super) async fn relay_frame(
    shared: &Shared,
    socket: &SocketRef,
    payload: Option<Value>,
    ack: AckSender,
) {
    let received_at = SystemTime::now();
    let outcome = judge(shared, socket, payload.as_ref(), received_at);
    match (outcome, payload) {
        (Ok(client), Some(payload)) => {
            let _ = shared.io.to(client).emit("stream:frame", &payload).await;
            let _ = ack.send(&json!({"ok": true}));
        }
        (Err(reason), _) => {
            let _ = ack.send(&json!({"ok": false, "error": reason.as_str()}));
        }
        // judge accepts only a payload that is there.
        (Ok(_), None) => {}
    }
    shared.changed.notify_waiters();
}

/// Checks a frame and records the outcome; on success, the client to relay
/// it to.
fn judge(
    shared: &Shared,
    socket: &SocketRef,
    payload: Option<&Value>,
    received_at: SystemTime,
) -> Result<String, FrameDrop> {
    let outcome = (|| {
        if !shared.config.legacy {
            return Err(FrameDrop::NotLegacy);
        }
        let sender = shared
            .world()
            .sockets
            .get(&socket.id.to_string())
            .cloned()
            .ok_or(FrameDrop::NotCamera)?;
        let is_camera = shared
            .config
            .devices
            .iter()
            .any(|device| device.id == sender && device.role == Role::Camera);
        if !is_camera {
            return Err(FrameDrop::NotCamera);
        }
        // Decoded outside the lock: up to a megabyte of base64.
        let frame = check_payload(payload.unwrap_or(&Value::Null))?;
        let mut world = shared.world();
        let session = world.sessions.get(&frame.session_id).cloned();
        if let Err(reason) = check_session(session.as_ref(), &sender) {
            if reason == FrameDrop::NotStreaming
                && session.as_ref().map(|s| s.state) == Some(SessionState::Ended)
            {
                world
                    .frames
                    .entry(frame.session_id.clone())
                    .or_default()
                    .after_end
                    .push(received_at);
            }
            return Err(reason);
        }
        let client = session.map(|s| s.client_id).unwrap_or_default();
        world
            .frames
            .entry(frame.session_id.clone())
            .or_default()
            .accepted
            .push(FrameRecord {
                session_id: frame.session_id,
                seq: frame.seq,
                captured_at: frame.captured_at,
                received_at,
                jpeg_len: frame.jpeg_len,
            });
        Ok(client)
    })();
    if let Err(reason) = outcome {
        *shared.world().frame_drops.entry(reason).or_default() += 1;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn frame(data: &[u8]) -> Value {
        json!({
            "sessionId": "s-1",
            "seq": 1,
            "mime": "image/jpeg",
            "data": b64(data),
            "capturedAt": "2026-03-01T10:00:00.123Z",
        })
    }

    fn with(key: &str, value: Value) -> Value {
        let mut payload = frame(&[0xff, 0xd8, 0xff, 0xe0]);
        payload[key] = value;
        payload
    }

    fn session(state: SessionState) -> Session {
        Session {
            id: "s-1".into(),
            camera_id: "cam".into(),
            client_id: "viewer".into(),
            state,
            end_reason: None,
            ended_by: None,
            ended_at: None,
        }
    }

    #[test]
    fn a_good_frame_passes_with_its_fields() {
        let checked = check_payload(&frame(&[0xff, 0xd8, 0xff, 0xe0, 0, 1])).unwrap();
        assert_eq!(checked.session_id, "s-1");
        assert_eq!(checked.seq, 1);
        assert_eq!(checked.jpeg_len, 6);
        assert_eq!(
            checked.captured_at,
            humantime::parse_rfc3339("2026-03-01T10:00:00.123Z").unwrap()
        );
    }

    #[test]
    fn each_payload_fault_has_its_reason() {
        let cases = [
            (json!("not an object"), FrameDrop::Schema),
            (with("sessionId", json!(7)), FrameDrop::Schema),
            (with("sessionId", json!("")), FrameDrop::Schema),
            (with("seq", json!(0)), FrameDrop::Schema),
            (with("seq", json!(-1)), FrameDrop::Schema),
            (with("seq", json!(1.5)), FrameDrop::Schema),
            (with("seq", json!("1")), FrameDrop::Schema),
            (with("data", json!(null)), FrameDrop::Schema),
            (with("mime", json!("image/png")), FrameDrop::BadMime),
            (with("mime", json!("IMAGE/JPEG")), FrameDrop::BadMime),
            (
                with("capturedAt", json!("yesterday")),
                FrameDrop::BadTimestamp,
            ),
            (
                with("capturedAt", json!("2026-03-01 10:00:00")),
                FrameDrop::BadTimestamp,
            ),
            (with("data", json!("not base64!")), FrameDrop::BadBase64),
            // URL-safe alphabet is not standard base64.
            (with("data", json!("_9j_")), FrameDrop::BadBase64),
            (with("data", json!("")), FrameDrop::NotJpeg),
            (frame(b"\x89PNG\r\n"), FrameDrop::NotJpeg),
        ];
        for (payload, reason) in cases {
            assert_eq!(check_payload(&payload), Err(reason), "{payload}");
        }
    }

    #[test]
    fn the_size_limit_is_512_kib_before_base64() {
        let mut jpeg = vec![0u8; MAX_JPEG_BYTES];
        jpeg[..2].copy_from_slice(&[0xff, 0xd8]);
        assert_eq!(
            check_payload(&frame(&jpeg)).unwrap().jpeg_len,
            MAX_JPEG_BYTES
        );
        jpeg.push(0);
        assert_eq!(check_payload(&frame(&jpeg)), Err(FrameDrop::TooLarge));
        // Relayed frames fit the announced maxPayload with room for JSON.
        assert!((b64(&jpeg).len() as u64) + 512 < LEGACY_MAX_PAYLOAD);
    }

    #[test]
    fn only_the_sessions_camera_while_streaming() {
        let streaming = session(SessionState::Streaming);
        assert_eq!(check_session(Some(&streaming), "cam"), Ok(()));
        assert_eq!(
            check_session(Some(&streaming), "other-cam"),
            Err(FrameDrop::NotParty)
        );
        assert_eq!(
            check_session(Some(&streaming), "viewer"),
            Err(FrameDrop::NotParty)
        );
        for state in [SessionState::Requested, SessionState::Ended] {
            assert_eq!(
                check_session(Some(&session(state)), "cam"),
                Err(FrameDrop::NotStreaming)
            );
        }
        assert_eq!(check_session(None, "cam"), Err(FrameDrop::UnknownSession));
    }
}
