//! A WebRTC viewer playing the contract's client role: it requests a stream
//! over REST, answers the camera's offer with its own GStreamer `webrtcbin`,
//! decodes the H.264 it receives and counts the frames.
//!
//! Its Socket.IO side reuses the agent's client (the server side is
//! socketioxide, so both directions cross an independent implementation).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use gst::prelude::*;
use gst_webrtc::{WebRTCSDPType, WebRTCSessionDescription};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use camera_agent::control_plane::socketio::connection::{SignalingEvent, SignalingHandle};

use crate::viewer_stats::{CandidatePair, FrameTimeline};

/// What the viewer saw of one session.
#[derive(Debug, Clone, Default)]
pub struct FrameStats {
    pub frames: u64,
    pub width: u32,
    pub height: u32,
    /// From the `POST /streams` to the first decoded frame.
    pub first_frame: Option<Duration>,
    /// `profile-level-id` of the offer's H.264 fmtp.
    pub offered_profile_level_id: Option<String>,
    /// profile_idc, constraint flags and level_idc of the first SPS
    /// received, as the same six hex digits.
    pub sps_profile_level_id: Option<String>,
    /// Whether every IDR frame received came with an SPS and PPS before it.
    pub idr_without_sps: u64,
    /// When each frame was decoded, since the request.
    pub timeline: FrameTimeline,
}

/// How the viewer's ICE is set up; the default is a browser with no ICE
/// servers.
#[derive(Clone, Default)]
pub struct ViewerOptions {
    /// TURN servers in webrtcbin's `add-turn-server` form
    /// (`turn(s)://user:pass@host:port?transport=udp|tcp`).
    pub turn_servers: Vec<String>,
    /// `ice-transport-policy=relay`: only relay candidates, like a browser
    /// with `iceTransportPolicy: "relay"`.
    pub relay_only: bool,
}

impl std::fmt::Debug for ViewerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // TURN URLs carry credentials.
        f.debug_struct("ViewerOptions")
            .field("turn_servers", &self.turn_servers.len())
            .field("relay_only", &self.relay_only)
            .finish()
    }
}

/// The session ended while the viewer played it.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Since the request.
    pub at: Duration,
    /// The `stream:ended` payload.
    pub payload: Value,
}

/// What [`Viewer::play_for`] saw.
#[derive(Debug, Clone, Default)]
pub struct PlayReport {
    pub stats: FrameStats,
    /// Set if `stream:ended` came before the time was up.
    pub ended: Option<Ended>,
    /// The viewer's selected candidate pair at the end, from `get-stats`.
    pub selected_pair: Option<CandidatePair>,
}

/// The `profile-level-id` from an SDP's H.264 fmtp line.
pub fn offered_profile_level_id(sdp: &str) -> Option<String> {
    let at = sdp.find("profile-level-id=")? + "profile-level-id=".len();
    let id: String = sdp[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (id.len() == 6).then(|| id.to_ascii_lowercase())
}

/// Scans an H.264 byte stream access unit: the SPS's profile-level-id if
/// one is present, and whether an IDR slice came without SPS and PPS.
pub fn scan_access_unit(data: &[u8]) -> (Option<String>, bool) {
    let mut sps = None;
    let (mut saw_sps, mut saw_pps, mut bare_idr) = (false, false, false);
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let nal = data[i + 3] & 0x1f;
            match nal {
                7 => {
                    saw_sps = true;
                    if i + 6 < data.len() {
                        sps = Some(format!(
                            "{:02x}{:02x}{:02x}",
                            data[i + 4],
                            data[i + 5],
                            data[i + 6]
                        ));
                    }
                }
                8 => saw_pps = true,
                5 if !(saw_sps && saw_pps) => bare_idr = true,
                _ => {}
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    (sps, bare_idr)
}

#[derive(Debug, Clone)]
pub struct WatchReport {
    pub session_id: String,
    pub stats: FrameStats,
}

enum Internal {
    Answer(Result<WebRTCSessionDescription, String>),
    Candidate { mline: u32, candidate: String },
    GatheringComplete,
    RemoteSet(Result<(), String>),
}

pub struct Viewer {
    base: String,
    token: String,
    options: ViewerOptions,
    /// The session being played, frame by frame.
    progress: Arc<watch::Sender<FrameStats>>,
    http: reqwest::Client,
    signaling: SignalingHandle,
    events: mpsc::Receiver<SignalingEvent>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Viewer {
    /// Connects the viewer's signaling socket and waits until it is in.
    pub async fn connect(base: &str, token: &str) -> anyhow::Result<Self> {
        Self::connect_with(base, token, ViewerOptions::default()).await
    }

    /// [`Viewer::connect`] with ICE options (TURN, relay only).
    pub async fn connect_with(
        base: &str,
        token: &str,
        options: ViewerOptions,
    ) -> anyhow::Result<Self> {
        gst::init()?;
        // A browser has its DTLS certificate before it calls; make
        // GStreamer's fallback one now, not inside the first answer.
        drop(gst::ElementFactory::make("dtlssrtpdec").build()?);
        let crate::raw_device::SocketParts {
            signaling,
            events,
            cancel,
            tracker,
        } = crate::raw_device::connect_socket(base, token)
            .await
            .context("viewer signaling")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.into(),
            options,
            progress: Arc::new(watch::channel(FrameStats::default()).0),
            http: reqwest::Client::new(),
            signaling,
            events,
            cancel,
            tracker,
        })
    }

    /// `POST /api/v1/streams`; returns the session id.
    pub async fn request(&self, camera_id: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/api/v1/streams", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "cameraId": camera_id }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status.as_u16() != 201 {
            bail!("POST /streams answered {status}: {body}");
        }
        body["sessionId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no sessionId in {body}"))
    }

    /// `POST /api/v1/streams/{id}/end`.
    pub async fn end(&self, session_id: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/api/v1/streams/{session_id}/end", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "reason": "hangup" }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("end answered {}", response.status());
        }
        Ok(())
    }

    /// Requests a stream and plays it until `frames` frames are decoded.
    pub async fn watch(
        &mut self,
        camera_id: &str,
        frames: u64,
        limit: Duration,
    ) -> anyhow::Result<WatchReport> {
        let requested_at = Instant::now();
        let session_id = self.request(camera_id).await?;
        let stats = self
            .play(&session_id, requested_at, Some(frames), limit)
            .await
            .with_context(|| format!("session {session_id}"))?;
        Ok(WatchReport { session_id, stats })
    }

    /// Waits for an event named `name` for this session; others are skipped.
    pub async fn wait_event(
        &mut self,
        name: &str,
        session_id: &str,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .with_context(|| format!("no {name} within {limit:?}"))?
                .ok_or_else(|| anyhow!("signaling closed"))?;
            if let SignalingEvent::Event { name: got, args } = event
                && got == name
                && args.first().and_then(|arg| arg["sessionId"].as_str()) == Some(session_id)
            {
                return Ok(args.into_iter().next().unwrap_or(Value::Null));
            }
        }
    }

    /// ICE options for the sessions played from now on.
    pub fn set_options(&mut self, options: ViewerOptions) {
        self.options = options;
    }

    /// The stats of the session being played, updated on every frame: for
    /// a test that acts while [`Viewer::play_for`] runs.
    pub fn progress(&self) -> watch::Receiver<FrameStats> {
        self.progress.subscribe()
    }

    /// Answers the offer of `session_id` and decodes until `frames` frames
    /// (or, with `None`, until `limit` runs out). A `stream:ended` before
    /// that is an error.
    pub async fn play(
        &mut self,
        session_id: &str,
        requested_at: Instant,
        frames: Option<u64>,
        limit: Duration,
    ) -> anyhow::Result<FrameStats> {
        self.run(session_id, requested_at, frames, limit, true)
            .await
            .map(|report| report.stats)
    }

    /// Answers the offer of `session_id` and decodes until `duration` after
    /// the request, or until the session ends; the report says which, with
    /// every frame's time and the selected candidate pair.
    pub async fn play_for(
        &mut self,
        session_id: &str,
        requested_at: Instant,
        duration: Duration,
    ) -> anyhow::Result<PlayReport> {
        self.run(session_id, requested_at, None, duration, false)
            .await
    }

    async fn run(
        &mut self,
        session_id: &str,
        requested_at: Instant,
        frames: Option<u64>,
        limit: Duration,
        end_is_error: bool,
    ) -> anyhow::Result<PlayReport> {
        let deadline = requested_at + limit;
        self.progress.send_replace(FrameStats::default());
        let stats_tx = self.progress.clone();
        let mut stats_rx = self.progress.subscribe();
        let mut ended = None;
        let (internal_tx, mut internal_rx) = mpsc::channel::<Internal>(256);
        let pipeline = gst::Pipeline::new();
        // A 20 ms jitter buffer, like a browser on a clean link, instead of
        // webrtcbin's default 200 ms, which would dominate time to first frame.
        let webrtcbin = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .property("latency", 20u32)
            .build()?;
        pipeline.add(&webrtcbin)?;
        // No UPnP discovery from the viewer either, so any SSDP a test
        // sees in the namespace is the agent's.
        let agent = webrtcbin
            .property::<gst::glib::Object>("ice-agent")
            .property::<gst::glib::Object>("agent");
        agent.set_property("upnp", false);
        if self.options.relay_only {
            webrtcbin.set_property_from_str("ice-transport-policy", "relay");
        }
        for url in &self.options.turn_servers {
            if !webrtcbin.emit_by_name::<bool>("add-turn-server", &[url]) {
                bail!("webrtcbin refused a TURN server URL");
            }
        }
        let mids: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        connect_viewer_signals(
            &pipeline,
            &webrtcbin,
            &internal_tx,
            stats_tx.clone(),
            requested_at,
        );
        pipeline.set_state(gst::State::Playing)?;
        let guard = PipelineGuard(pipeline.clone());

        let mut answered = false;
        let mut pending_remote: Vec<Value> = Vec::new();
        let result = loop {
            if let Some(wanted) = frames
                && stats_rx.borrow().frames >= wanted
            {
                break Ok(stats_rx.borrow().clone());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if frames.is_none() {
                        break Ok(stats_rx.borrow().clone());
                    }
                    break Err(anyhow!("only {} frames before the deadline", stats_rx.borrow().frames));
                }
                changed = stats_rx.changed() => { changed?; }
                event = self.events.recv() => {
                    let Some(event) = event else { break Err(anyhow!("signaling closed")) };
                    let SignalingEvent::Event { name, args } = event else { continue };
                    let Some(payload) = args.into_iter().next() else { continue };
                    if payload["sessionId"].as_str() != Some(session_id) {
                        continue;
                    }
                    match name.as_str() {
                        "stream:ended" if end_is_error => break Err(anyhow!("stream ended early: {payload}")),
                        "stream:ended" => {
                            ended = Some(Ended { at: requested_at.elapsed(), payload });
                            break Ok(stats_rx.borrow().clone());
                        }
                        "webrtc:signal" => match payload["type"].as_str() {
                            Some("offer") => {
                                let sdp = payload["sdp"].as_str().unwrap_or_default();
                                let offered = offered_profile_level_id(sdp);
                                stats_tx.send_modify(|stats| stats.offered_profile_level_id = offered);
                                *mids.lock().unwrap_or_else(|p| p.into_inner()) = camera_agent::media::sdp::mids(sdp);
                                let message = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())?;
                                let offer = WebRTCSessionDescription::new(WebRTCSDPType::Offer, message);
                                let tx = internal_tx.clone();
                                let promise = gst::Promise::with_change_func(move |reply| {
                                    let result = match reply {
                                        Ok(Some(reply)) if reply.has_field("error") => Err(reply.to_string()),
                                        Ok(_) => Ok(()),
                                        Err(err) => Err(format!("{err:?}")),
                                    };
                                    let _ = tx.try_send(Internal::RemoteSet(result));
                                });
                                webrtcbin.emit_by_name::<()>("set-remote-description", &[&offer, &promise]);
                            }
                            Some("candidate") => {
                                if answered {
                                    add_candidate(&webrtcbin, &payload["candidate"]);
                                } else {
                                    pending_remote.push(payload["candidate"].clone());
                                }
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
                internal = internal_rx.recv() => match internal {
                    Some(Internal::RemoteSet(Ok(()))) => {
                        let tx = internal_tx.clone();
                        let promise = gst::Promise::with_change_func(move |reply| {
                            let answer = match reply {
                                Ok(Some(reply)) => reply
                                    .get::<WebRTCSessionDescription>("answer")
                                    .map_err(|_| reply.to_string()),
                                other => Err(format!("{other:?}")),
                            };
                            let _ = tx.try_send(Internal::Answer(answer));
                        });
                        webrtcbin.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
                    }
                    Some(Internal::RemoteSet(Err(err))) => break Err(anyhow!("offer rejected: {err}")),
                    Some(Internal::Answer(Ok(answer))) => {
                        webrtcbin.emit_by_name::<()>("set-local-description", &[&answer, &None::<gst::Promise>]);
                        let sdp = answer.sdp().as_text()?;
                        self.signaling
                            .emit("webrtc:signal", json!({"sessionId": session_id, "type": "answer", "sdp": sdp}), true)
                            .await?;
                        answered = true;
                        for candidate in pending_remote.drain(..) {
                            add_candidate(&webrtcbin, &candidate);
                        }
                    }
                    Some(Internal::Answer(Err(err))) => break Err(anyhow!("create-answer failed: {err}")),
                    Some(Internal::Candidate { mline, candidate }) => {
                        let mid = mids.lock().unwrap_or_else(|p| p.into_inner()).get(mline as usize).cloned().flatten();
                        self.signaling
                            .emit(
                                "webrtc:signal",
                                json!({"sessionId": session_id, "type": "candidate",
                                    "candidate": {"candidate": candidate, "sdpMid": mid, "sdpMLineIndex": mline}}),
                                true,
                            )
                            .await?;
                    }
                    Some(Internal::GatheringComplete) => {
                        self.signaling
                            .emit("webrtc:signal", json!({"sessionId": session_id, "type": "candidate", "candidate": null}), true)
                            .await?;
                    }
                    None => break Err(anyhow!("internal channel closed")),
                },
            }
        };
        let selected_pair = match &result {
            Ok(_) => selected_pair(&webrtcbin).await,
            Err(_) => None,
        };
        drop(guard);
        Ok(PlayReport {
            stats: result?,
            ended,
            selected_pair,
        })
    }

    pub async fn close(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The selected candidate pair from webrtcbin's `get-stats` (1 s at most).
async fn selected_pair(webrtcbin: &gst::Element) -> Option<CandidatePair> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let _ = tx.send(reply.ok().flatten().map(ToOwned::to_owned));
    });
    webrtcbin.emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    let stats = tokio::time::timeout(Duration::from_secs(1), rx)
        .await
        .ok()?
        .ok()??;
    if std::env::var_os("VIEWER_DUMP_STATS").is_some() {
        eprintln!("viewer stats: {stats}");
    }
    crate::viewer_stats::selected_pair(&stats)
}

fn add_candidate(webrtcbin: &gst::Element, candidate: &Value) {
    if candidate.is_null() {
        webrtcbin.emit_by_name::<()>("add-ice-candidate", &[&0u32, &None::<&str>]);
        return;
    }
    let mline = candidate["sdpMLineIndex"].as_u64().unwrap_or(0) as u32;
    if let Some(text) = candidate["candidate"].as_str() {
        webrtcbin.emit_by_name::<()>("add-ice-candidate", &[&mline, &text]);
    }
}

/// Sets the viewer's pipeline to NULL however `play` ends.
struct PipelineGuard(gst::Pipeline);

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn connect_viewer_signals(
    pipeline: &gst::Pipeline,
    webrtcbin: &gst::Element,
    internal: &mpsc::Sender<Internal>,
    stats: Arc<watch::Sender<FrameStats>>,
    requested_at: Instant,
) {
    let tx = internal.clone();
    webrtcbin.connect("on-ice-candidate", false, move |values| {
        let mline = values.get(1).and_then(|value| value.get::<u32>().ok());
        let candidate = values.get(2).and_then(|value| value.get::<String>().ok());
        if let (Some(mline), Some(candidate)) = (mline, candidate) {
            let _ = tx.try_send(Internal::Candidate { mline, candidate });
        }
        None
    });
    let tx = internal.clone();
    webrtcbin.connect_notify(Some("ice-gathering-state"), move |element, _| {
        let state = element.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
        if state == gst_webrtc::WebRTCICEGatheringState::Complete {
            let _ = tx.try_send(Internal::GatheringComplete);
        }
    });
    let pipeline_weak = pipeline.downgrade();
    webrtcbin.connect_pad_added(move |_, pad| {
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let stats = stats.clone();
        if let Err(err) = attach_decoder(&pipeline, pad, stats, requested_at) {
            eprintln!("viewer: cannot attach decoder: {err:#}");
        }
    });
}

fn attach_decoder(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    stats: Arc<watch::Sender<FrameStats>>,
    requested_at: Instant,
) -> anyhow::Result<()> {
    let depay = gst::ElementFactory::make("rtph264depay").build()?;
    // Byte-stream access units, so the SPS can be read from the wire data.
    let bytestream = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .build()?;
    let parse = gst::ElementFactory::make("h264parse").build()?;
    let decode = gst::ElementFactory::make("avdec_h264").build()?;
    let convert = gst::ElementFactory::make("videoconvert").build()?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    let elements = [
        &depay,
        &bytestream,
        &parse,
        &decode,
        &convert,
        sink.upcast_ref(),
    ];
    if let Some(pad) = bytestream.static_pad("src") {
        let stats = stats.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && let Ok(map) = buffer.map_readable()
            {
                let (sps, bare_idr) = scan_access_unit(&map);
                if sps.is_some() || bare_idr {
                    stats.send_modify(|stats| {
                        if stats.sps_profile_level_id.is_none() {
                            stats.sps_profile_level_id = sps;
                        }
                        stats.idr_without_sps += u64::from(bare_idr);
                    });
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    pipeline.add_many(elements)?;
    gst::Element::link_many(elements)?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let info = sample
                    .caps()
                    .and_then(|caps| gst_video::VideoInfo::from_caps(caps).ok());
                stats.send_modify(|stats| {
                    stats.frames += 1;
                    stats.timeline.push(requested_at.elapsed());
                    if let Some(info) = &info {
                        stats.width = info.width();
                        stats.height = info.height();
                    }
                    if stats.first_frame.is_none() {
                        stats.first_frame = Some(requested_at.elapsed());
                    }
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    for element in elements {
        element.sync_state_with_parent()?;
    }
    let sink_pad = depay
        .static_pad("sink")
        .ok_or_else(|| anyhow!("depay has no sink pad"))?;
    pad.link(&sink_pad)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_level_id_from_sdp_and_sps() {
        let sdp = "a=fmtp:96 packetization-mode=1;profile-level-id=42C01F;sprop-parameter-sets=Z0LAH9kA,aM4=\r\n";
        assert_eq!(offered_profile_level_id(sdp).as_deref(), Some("42c01f"));
        assert_eq!(offered_profile_level_id("no fmtp"), None);
        let au = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(scan_access_unit(&au), (Some("42c01f".into()), false));
        assert_eq!(scan_access_unit(&[0, 0, 1, 0x65, 0x88, 0x84]), (None, true));
        assert_eq!(scan_access_unit(&[0, 0, 1, 0x41, 0x9a]), (None, false));
    }
}
