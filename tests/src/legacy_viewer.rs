//! The contract's client in legacy mode (section 5): it requests a stream
//! over REST like the WebRTC viewer, but then expects no offer, only
//! `stream:frame` events with base64 JPEGs until `stream:ended`. Every
//! frame is decoded for real with GStreamer (`jpegdec`), so a frame counts
//! only if it is a picture, at the size it decodes to.
//!
//! All sessions' events go through one log per session ([`SessionLog`]):
//! frames, undecodable payloads, any `webrtc:signal` (legacy mode must
//! never send one) and the end. `received_at` is when the viewer took the
//! event from its socket, so it is only as prompt as the caller's calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::raw_device::RawDevice;

mod jpeg;
mod rules;

pub use jpeg::{JpegDecoder, test_jpeg};
pub use rules::{FrameFacts, FrameRuleError, check_frame_rules, is_utc_millis};

/// One frame that arrived for the session and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    pub seq: u64,
    pub captured_at: SystemTime,
    /// `capturedAt` as the camera wrote it.
    pub captured_at_text: String,
    /// When the viewer took it from its socket.
    pub received_at: SystemTime,
    /// The JPEG's length before base64.
    pub jpeg_len: usize,
    pub width: u32,
    pub height: u32,
}

impl FrameFacts for ReceivedFrame {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn captured_at(&self) -> SystemTime {
        self.captured_at
    }
    fn received_at(&self) -> SystemTime {
        self.received_at
    }
    fn jpeg_len(&self) -> usize {
        self.jpeg_len
    }
    fn captured_at_text(&self) -> Option<&str> {
        Some(&self.captured_at_text)
    }
}

/// What the viewer saw of one session.
#[derive(Debug, Clone, Default)]
pub struct SessionLog {
    /// `stream:started` arrived.
    pub started: bool,
    /// Frames that decoded, in arrival order (also any after the end).
    pub frames: Vec<ReceivedFrame>,
    /// `stream:frame` payloads that were not a decodable JPEG frame, as
    /// "seq N: why".
    pub rejects: Vec<String>,
    /// The `type` of every `webrtc:signal` for the session.
    pub signals: Vec<String>,
    /// The `stream:ended` payload, and when it was taken from the socket.
    pub ended: Option<Value>,
    pub ended_at: Option<SystemTime>,
}

impl SessionLog {
    pub fn end_reason(&self) -> Option<&str> {
        self.ended.as_ref()?.get("reason")?.as_str()
    }

    /// Offers received: legacy mode must never send one.
    pub fn offers(&self) -> usize {
        self.signals.iter().filter(|kind| *kind == "offer").count()
    }

    /// Frames taken from the socket after `stream:ended`, with how long
    /// after it.
    pub fn frames_after_end(&self) -> Vec<(u64, Duration)> {
        let Some(ended_at) = self.ended_at else {
            return Vec::new();
        };
        self.frames
            .iter()
            .filter_map(|frame| {
                let after = frame.received_at.duration_since(ended_at).ok()?;
                Some((frame.seq, after))
            })
            .collect()
    }

    /// Everything legacy mode promises a viewer: no signal at all, every
    /// frame a decodable JPEG, and the frame rules ([`check_frame_rules`]).
    pub fn check(&self, tolerance: Duration) -> anyhow::Result<()> {
        if !self.signals.is_empty() {
            bail!("webrtc:signal in legacy mode: {:?}", self.signals);
        }
        if !self.rejects.is_empty() {
            bail!("frames that are not decodable JPEGs: {:?}", self.rejects);
        }
        check_frame_rules(&self.frames, tolerance)?;
        Ok(())
    }
}

/// A legacy-mode viewer on one socket.
pub struct LegacyViewer {
    device: RawDevice,
    client_id: String,
    decoder: Arc<Mutex<JpegDecoder>>,
    sessions: HashMap<String, SessionLog>,
}

impl LegacyViewer {
    /// Connects the viewer's socket with its token and waits until it is in.
    pub async fn connect(
        base_url: &str,
        client_id: &str,
        client_token: &str,
    ) -> anyhow::Result<Self> {
        let decoder = JpegDecoder::new()?;
        let device = RawDevice::connect(base_url, client_token)
            .await
            .context("legacy viewer")?;
        Ok(Self {
            device,
            client_id: client_id.into(),
            decoder: Arc::new(Mutex::new(decoder)),
            sessions: HashMap::new(),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `POST /api/v1/streams`; the session id.
    pub async fn request(&mut self, camera_id: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .device
            .post("/api/v1/streams", json!({ "cameraId": camera_id }))
            .await?;
        if status != 201 {
            bail!("POST /streams answered {status}: {body}");
        }
        let id = body["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId in {body}"))?;
        self.sessions.entry(id.to_owned()).or_default();
        Ok(id.to_owned())
    }

    /// `POST /api/v1/streams/{id}/end` with reason `hangup`.
    pub async fn hang_up(&self, session_id: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .device
            .post(
                &format!("/api/v1/streams/{session_id}/end"),
                json!({ "reason": "hangup" }),
            )
            .await?;
        if !(200..300).contains(&status) {
            bail!("end answered {status}: {body}");
        }
        Ok(())
    }

    /// Waits for `stream:started`; an end first is an error.
    pub async fn wait_started(&mut self, session_id: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log_ref(session_id);
            if log.started {
                return Ok(());
            }
            if let Some(ended) = &log.ended {
                bail!("session ended before it started: {ended}");
            }
            if !self.pump(deadline).await? {
                bail!("no stream:started within {limit:?}");
            }
        }
    }

    /// Collects frames until `count` have decoded; an end or `limit` first
    /// is an error that says what did arrive.
    pub async fn frames_until(
        &mut self,
        session_id: &str,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<SessionLog> {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log_ref(session_id);
            if log.frames.len() >= count {
                return Ok(log.clone());
            }
            if let Some(ended) = &log.ended {
                bail!(
                    "session ended after {} of {count} frames: {ended}",
                    log.frames.len()
                );
            }
            if !self.pump(deadline).await? {
                let log = self.log_ref(session_id);
                bail!(
                    "{} of {count} frames within {limit:?} (rejects: {:?}, signals: {:?})",
                    log.frames.len(),
                    log.rejects,
                    log.signals
                );
            }
        }
    }

    /// Collects for `duration`, or until a `stream:ended` arrives during
    /// the call (after an earlier end it runs the whole time, to see any
    /// late frames).
    pub async fn collect(
        &mut self,
        session_id: &str,
        duration: Duration,
    ) -> anyhow::Result<SessionLog> {
        let deadline = Instant::now() + duration;
        let ended_before = self.log_ref(session_id).ended.is_some();
        while self.pump(deadline).await? {
            if !ended_before && self.log_ref(session_id).ended.is_some() {
                break;
            }
        }
        Ok(self.log(session_id))
    }

    /// Waits for `stream:ended`; its reason, or `None` if it did not come
    /// within `limit`.
    pub async fn wait_ended(
        &mut self,
        session_id: &str,
        limit: Duration,
    ) -> anyhow::Result<Option<String>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(ended) = &self.log_ref(session_id).ended {
                return Ok(Some(
                    ended["reason"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            if !self.pump(deadline).await? {
                return Ok(None);
            }
        }
    }

    /// What the viewer has seen of the session so far.
    pub fn log(&self, session_id: &str) -> SessionLog {
        self.sessions.get(session_id).cloned().unwrap_or_default()
    }

    fn log_ref(&mut self, session_id: &str) -> &SessionLog {
        self.sessions.entry(session_id.to_owned()).or_default()
    }

    pub async fn close(self) {
        self.device.close().await;
    }

    /// Takes one event from the socket into its session's log; false once
    /// `deadline` passes.
    async fn pump(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        let Some((name, payload)) = self.device.next_event(deadline).await? else {
            return Ok(false);
        };
        let received_at = SystemTime::now();
        let Some(session_id) = payload["sessionId"].as_str().map(str::to_owned) else {
            return Ok(true);
        };
        match name.as_str() {
            "stream:started" => self.sessions.entry(session_id).or_default().started = true,
            "stream:ended" => {
                let log = self.sessions.entry(session_id).or_default();
                log.ended = Some(payload);
                log.ended_at = Some(received_at);
            }
            "webrtc:signal" => {
                let kind = payload["type"].as_str().unwrap_or("?").to_owned();
                self.sessions
                    .entry(session_id)
                    .or_default()
                    .signals
                    .push(kind);
            }
            "stream:frame" => {
                let outcome = self.receive_frame(&payload, received_at).await;
                let log = self.sessions.entry(session_id).or_default();
                match outcome {
                    Ok(frame) => log.frames.push(frame),
                    Err(err) => log.rejects.push(format!("seq {}: {err:#}", payload["seq"])),
                }
            }
            _ => {}
        }
        Ok(true)
    }

    async fn receive_frame(
        &self,
        payload: &Value,
        received_at: SystemTime,
    ) -> anyhow::Result<ReceivedFrame> {
        let seq = payload["seq"]
            .as_u64()
            .ok_or_else(|| anyhow!("seq is not a non-negative integer"))?;
        if payload["mime"] != "image/jpeg" {
            bail!("mime is {}, not image/jpeg", payload["mime"]);
        }
        let captured_at_text = payload["capturedAt"]
            .as_str()
            .ok_or_else(|| anyhow!("no capturedAt"))?
            .to_owned();
        let captured_at = humantime::parse_rfc3339(&captured_at_text)
            .with_context(|| format!("capturedAt {captured_at_text:?}"))?;
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(payload["data"].as_str().ok_or_else(|| anyhow!("no data"))?)
            .context("data is not standard base64")?;
        let jpeg_len = jpeg.len();
        let decoder = self.decoder.clone();
        let (width, height) = tokio::task::spawn_blocking(move || {
            decoder
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .decode(&jpeg)
        })
        .await??;
        Ok(ReceivedFrame {
            seq,
            captured_at,
            captured_at_text,
            received_at,
            jpeg_len,
            width,
            height,
        })
    }
}
