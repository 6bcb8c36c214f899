//! One session's GStreamer pipeline: the planned capture chain ending in a
//! send-only `webrtcbin`, and the glue that turns webrtcbin's callbacks into
//! [`MediaEvent`]s.
//!
//! Callbacks run on GStreamer threads. They never block and never touch
//! session state: they `try_send` into the session actor's bounded channel
//! and hold no strong reference to the pipeline, so dropping the
//! [`MediaSession`] really frees the pipeline and every thread it started.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCICEConnectionState, WebRTCICEGatheringState, WebRTCSessionDescription};
use tokio::sync::mpsc;

use hw::{PipelinePlan, Step};

use super::dtls::DtlsIdentity;
use super::sdp::IceUrls;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer element {0} is missing; install the package that provides it")]
    MissingElement(String),
    #[error("element {element} has no property {property}")]
    NoProperty { element: String, property: String },
    #[error("element {element}: {value:?} is not a valid value for {property}")]
    BadProperty {
        element: String,
        property: String,
        value: String,
    },
    #[error("invalid caps {0:?}")]
    BadCaps(String),
    #[error("cannot link {0} to {1}")]
    Link(String, String),
    #[error("pipeline refused to start: {0}")]
    Start(String),
    #[error("invalid SDP: {0}")]
    BadSdp(String),
    #[error("GStreamer: {0}")]
    Glib(String),
}

/// What GStreamer tells the session actor.
#[derive(Debug)]
pub enum MediaEvent {
    NegotiationNeeded,
    OfferCreated(Result<WebRTCSessionDescription, String>),
    LocalCandidate {
        mline: u32,
        candidate: String,
    },
    GatheringComplete,
    IceState(WebRTCICEConnectionState),
    RemoteDescriptionSet(Result<(), String>),
    /// DTLS is up: SRTP can flow, so the viewer needs a keyframe now.
    DtlsConnected,
    /// The first RTP packet went out after ICE connected.
    FirstMedia,
    Error(String),
}

/// Everything a session's pipeline needs besides its plan.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub identity: DtlsIdentity,
    pub ice: IceUrls,
    pub local_addresses: Vec<IpAddr>,
}

/// Owner of one session's pipeline; the pipeline goes to NULL when this is
/// stopped or dropped.
pub struct MediaSession {
    pipeline: gst::Pipeline,
    webrtcbin: gst::Element,
    /// Where keyframe requests go in (they travel upstream to the encoder,
    /// or to the camera when its H.264 is passed through).
    keyframe_pad: Option<gst::Pad>,
    /// Streaming threads of this session only, so teardown can join them.
    pool: gst::TaskPool,
    stopped: bool,
}

fn forward(events: &mpsc::Sender<MediaEvent>, event: MediaEvent) {
    // A full channel means the actor is gone or far behind; in both cases
    // dropping is better than blocking a streaming thread.
    if let Err(err) = events.try_send(event) {
        tracing::warn!(error = %err, "media event dropped");
    }
}

fn set_str_property(element: &gst::Element, name: &str, value: &str) -> Result<(), MediaError> {
    let factory = element
        .factory()
        .map(|factory| factory.name().to_string())
        .unwrap_or_default();
    let pspec = element
        .find_property(name)
        .ok_or_else(|| MediaError::NoProperty {
            element: factory.clone(),
            property: name.into(),
        })?;
    let value = glib::Value::deserialize(value, pspec.value_type()).map_err(|_| {
        MediaError::BadProperty {
            element: factory,
            property: name.into(),
            value: value.into(),
        }
    })?;
    element.set_property_from_value(name, &value);
    Ok(())
}

fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| MediaError::MissingElement(factory.into()))
}

/// libnice paces connectivity checks 20 ms apart and also pairs TCP
/// candidates that browsers ignore. Checks 5 ms apart (RFC 8445's floor
/// for Ta) over UDP only cut the time from the answer to ICE connected,
/// the largest part of the viewer's wait (median first frame 138-180 ms
/// before, 102-107 ms after, docs/benchmarks.md).
fn tune_ice(webrtcbin: &gst::Element) {
    let ice = webrtcbin.property::<glib::Object>("ice-agent");
    if ice.find_property("ice-tcp").is_some() {
        ice.set_property("ice-tcp", false);
    }
    if ice.find_property("agent").is_some() {
        let agent = ice.property::<glib::Object>("agent");
        if agent.find_property("stun-pacing-timer").is_some() {
            agent.set_property("stun-pacing-timer", 5u32);
        }
        // libnice would otherwise search the LAN for a UPnP gateway (SSDP
        // multicast) and ask it to forward a port to the camera: a silent
        // hole in the site's router that nobody configured. Reachability
        // comes from the host candidates and the STUN/TURN servers given.
        if agent.find_property("upnp").is_some() {
            tracing::debug!(was = agent.property::<bool>("upnp"), "UPnP off");
            agent.set_property("upnp", false);
        }
    }
}

/// Viewers send PLI/FIR on every decode hiccup, and a keyframe costs many
/// times a normal frame: pass at most one request per this interval.
const KEYFRAME_REQUEST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Drops upstream force-key-unit requests that follow the last passed one
/// within [`KEYFRAME_REQUEST_INTERVAL`].
fn limit_keyframe_requests(pad: &gst::Pad) {
    let last = std::sync::Mutex::new(None::<std::time::Instant>);
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        let is_keyframe_request = info
            .event()
            .is_some_and(|event| gst_video::ForceKeyUnitEvent::is(event));
        if !is_keyframe_request {
            return gst::PadProbeReturn::Ok;
        }
        let now = std::time::Instant::now();
        // Poisoning cannot leave an Option<Instant> inconsistent.
        let mut last = last.lock().unwrap_or_else(|poison| poison.into_inner());
        match *last {
            Some(previous) if now.duration_since(previous) < KEYFRAME_REQUEST_INTERVAL => {
                tracing::debug!("keyframe request dropped (rate limit)");
                gst::PadProbeReturn::Drop
            }
            _ => {
                *last = Some(now);
                gst::PadProbeReturn::Ok
            }
        }
    });
}

/// Makes the elements of `steps` (capsfilters for caps), not yet linked.
fn build_chain(steps: &[Step]) -> Result<Vec<gst::Element>, MediaError> {
    let mut chain = Vec::new();
    for step in steps {
        let element = match step {
            Step::Element(element_plan) => {
                let element = make(&element_plan.factory)?;
                for (key, value) in &element_plan.properties {
                    set_str_property(&element, key, value)?;
                }
                element
            }
            Step::Caps(caps) => {
                let caps: gst::Caps = caps
                    .parse()
                    .map_err(|_| MediaError::BadCaps(caps.clone()))?;
                gst::ElementFactory::make("capsfilter")
                    .property("caps", &caps)
                    .build()
                    .map_err(|_| MediaError::MissingElement("capsfilter".into()))?
            }
        };
        chain.push(element);
    }
    Ok(chain)
}

fn link_chain(chain: &[gst::Element]) -> Result<(), MediaError> {
    for pair in chain.windows(2) {
        pair[0].link(&pair[1]).map_err(|_| {
            MediaError::Link(pair[0].name().to_string(), pair[1].name().to_string())
        })?;
    }
    Ok(())
}

/// Captures and encodes for `duration` with the plan's source and encoder
/// (no WebRTC), returning how many encoded frames came out: `doctor`'s
/// proof that camera and encoder work at the configured size.
pub fn test_encode(plan: &PipelinePlan, duration: std::time::Duration) -> Result<u64, MediaError> {
    // Everything before the payloader: source, conversion, encoder, parser.
    let payloader_at = plan
        .steps
        .iter()
        .position(|step| matches!(step, Step::Element(element) if element.factory == "rtph264pay"))
        .ok_or_else(|| MediaError::Start("plan has no payloader".into()))?;
    let steps = &plan.steps[..payloader_at];
    let mut chain = build_chain(steps)?;
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .map_err(|_| MediaError::MissingElement("fakesink".into()))?;
    chain.push(sink.clone());
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many(&chain)
        .map_err(|err| MediaError::Glib(err.to_string()))?;
    link_chain(&chain)?;
    let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = frames.clone();
    if let Some(pad) = sink.static_pad("sink") {
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| MediaError::Start("the pipeline did not start".into()))?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| MediaError::Start("pipeline without a bus".into()))?;
        let message = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(duration.as_nanos() as u64),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        );
        match message.as_ref().map(|message| message.view()) {
            Some(gst::MessageView::Error(error)) => Err(MediaError::Start(format!(
                "{}: {}",
                message
                    .as_ref()
                    .and_then(|message| message.src())
                    .map(|src| src.name().to_string())
                    .unwrap_or_default(),
                error.error()
            ))),
            Some(_) => Err(MediaError::Start("the source ended early".into())),
            None => Ok(frames.load(Ordering::Relaxed)),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

impl MediaSession {
    /// Builds the pipeline and sets it PLAYING. webrtcbin then asks for
    /// negotiation once the payloader's caps are known.
    pub fn start(
        name: &str,
        plan: &PipelinePlan,
        config: &MediaConfig,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        let pipeline = gst::Pipeline::with_name(name);
        let pool = gst::TaskPool::new();
        pool.prepare()
            .map_err(|err| MediaError::Glib(err.to_string()))?;
        let mut session = Self {
            pipeline: pipeline.clone(),
            webrtcbin: make("webrtcbin")?,
            keyframe_pad: None,
            pool: pool.clone(),
            stopped: false,
        };
        session.install_bus_handler(events.clone());
        let pem = Arc::<str>::from(config.identity.pem());
        pipeline.connect_deep_element_added(move |_, _, element| {
            // webrtcbin creates its DTLS elements inside create-offer; the
            // certificate must be in place before they leave NULL.
            let is_dtls_dec = element
                .factory()
                .is_some_and(|factory| factory.name() == "dtlssrtpdec");
            if is_dtls_dec {
                element.set_property("pem", &*pem);
            }
        });

        let chain = build_chain(&plan.steps)?;
        session.keyframe_pad = chain.last().and_then(|last| last.static_pad("src"));
        if let Some(pad) = &session.keyframe_pad {
            limit_keyframe_requests(pad);
        }
        let webrtcbin = &session.webrtcbin;
        set_str_property(webrtcbin, "bundle-policy", "max-bundle")?;
        if let Some(stun) = &config.ice.stun {
            webrtcbin.set_property("stun-server", stun);
        }
        for turn in &config.ice.turn {
            if !webrtcbin.emit_by_name::<bool>("add-turn-server", &[turn]) {
                tracing::warn!(
                    "webrtcbin refused a TURN server URL (not logged: may hold credentials)"
                );
            }
        }
        tune_ice(webrtcbin);
        if !config.local_addresses.is_empty() {
            let ice = webrtcbin.property::<glib::Object>("ice-agent");
            for address in &config.local_addresses {
                let added =
                    ice.emit_by_name::<bool>("add-local-ip-address", &[&address.to_string()]);
                if !added {
                    tracing::warn!(%address, "ICE agent refused a local address");
                }
            }
        }

        pipeline
            .add_many(chain.iter().chain(std::iter::once(webrtcbin)))
            .map_err(|err| MediaError::Glib(err.to_string()))?;
        link_chain(&chain)?;
        let last = chain
            .last()
            .ok_or_else(|| MediaError::Start("empty pipeline plan".into()))?;
        last.link(webrtcbin)
            .map_err(|_| MediaError::Link(last.name().to_string(), "webrtcbin".into()))?;
        let sink_pad = last
            .static_pad("src")
            .and_then(|pad| pad.peer())
            .ok_or_else(|| MediaError::Link(last.name().to_string(), "webrtcbin".into()))?;
        let transceiver = sink_pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
        transceiver.set_property(
            "direction",
            gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
        );

        session.connect_webrtc_signals(&sink_pad, events);
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|err| MediaError::Start(err.to_string()))?;
        Ok(session)
    }

    fn install_bus_handler(&self, events: mpsc::Sender<MediaEvent>) {
        let Some(bus) = self.pipeline.bus() else {
            return;
        };
        let pool = self.pool.clone();
        bus.set_sync_handler(move |_, message| {
            use gst::MessageView;
            match message.view() {
                MessageView::StreamStatus(status) => {
                    let (kind, _) = status.get();
                    if kind == gst::StreamStatusType::Create
                        && let Some(task) = status
                            .stream_status_object()
                            .and_then(|value| value.get::<gst::Task>().ok())
                    {
                        task.set_pool(&pool);
                    }
                }
                MessageView::Eos(_) => {
                    // A live source never ends by itself: the camera stopped.
                    forward(&events, MediaEvent::Error("the video source ended".into()));
                }
                MessageView::Error(error) => {
                    let source = message
                        .src()
                        .map(|src| src.path_string().to_string())
                        .unwrap_or_default();
                    forward(
                        &events,
                        MediaEvent::Error(format!("{source}: {}", error.error())),
                    );
                }
                _ => {}
            }
            // Nothing reads the async bus; dropping keeps it from growing.
            gst::BusSyncReply::Drop
        });
    }

    fn connect_webrtc_signals(&self, sink_pad: &gst::Pad, events: mpsc::Sender<MediaEvent>) {
        let webrtcbin = &self.webrtcbin;
        let tx = events.clone();
        webrtcbin.connect("on-negotiation-needed", false, move |_| {
            forward(&tx, MediaEvent::NegotiationNeeded);
            None
        });
        let tx = events.clone();
        webrtcbin.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|value| value.get::<u32>().ok());
            let candidate = values.get(2).and_then(|value| value.get::<String>().ok());
            if let (Some(mline), Some(candidate)) = (mline, candidate) {
                forward(&tx, MediaEvent::LocalCandidate { mline, candidate });
            }
            None
        });
        let tx = events.clone();
        webrtcbin.connect_notify(Some("ice-gathering-state"), move |element, _| {
            let state = element.property::<WebRTCICEGatheringState>("ice-gathering-state");
            if state == WebRTCICEGatheringState::Complete {
                forward(&tx, MediaEvent::GatheringComplete);
            }
        });
        let connected = Arc::new(AtomicBool::new(false));
        let tx = events.clone();
        let flag = connected.clone();
        webrtcbin.connect_notify(Some("ice-connection-state"), move |element, _| {
            let state = element.property::<WebRTCICEConnectionState>("ice-connection-state");
            if matches!(
                state,
                WebRTCICEConnectionState::Connected | WebRTCICEConnectionState::Completed
            ) {
                flag.store(true, Ordering::Release);
            }
            forward(&tx, MediaEvent::IceState(state));
        });
        // First media: the first buffer into webrtcbin after ICE connected.
        sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if connected.load(Ordering::Acquire) {
                forward(&events, MediaEvent::FirstMedia);
                gst::PadProbeReturn::Remove
            } else {
                gst::PadProbeReturn::Ok
            }
        });
    }

    /// Asks webrtcbin for an offer; the result arrives as `OfferCreated`.
    pub fn create_offer(&self, events: mpsc::Sender<MediaEvent>) {
        let promise = gst::Promise::with_change_func(move |reply| {
            let offer = match reply {
                Ok(Some(reply)) => reply
                    .get::<WebRTCSessionDescription>("offer")
                    .map_err(|_| format!("create-offer failed: {reply}")),
                Ok(None) => Err("create-offer gave no reply".into()),
                Err(err) => Err(format!("create-offer: {err:?}")),
            };
            forward(&events, MediaEvent::OfferCreated(offer));
        });
        self.webrtcbin
            .emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    }

    pub fn set_local_description(&self, description: &WebRTCSessionDescription) {
        self.webrtcbin.emit_by_name::<()>(
            "set-local-description",
            &[description, &None::<gst::Promise>],
        );
    }

    /// Applies the viewer's answer; the outcome arrives as `RemoteDescriptionSet`.
    pub fn set_remote_answer(
        &self,
        sdp: &str,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<(), MediaError> {
        let message = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
            .map_err(|err| MediaError::BadSdp(err.to_string()))?;
        if message.medias_len() == 0 {
            return Err(MediaError::BadSdp("answer has no media section".into()));
        }
        let answer = WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, message);
        let promise = gst::Promise::with_change_func(move |reply| {
            let result = match reply {
                Ok(Some(reply)) if reply.has_field("error") => Err(format!("{reply}")),
                Ok(_) => Ok(()),
                Err(err) => Err(format!("set-remote-description: {err:?}")),
            };
            forward(&events, MediaEvent::RemoteDescriptionSet(result));
        });
        self.webrtcbin
            .emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        Ok(())
    }

    /// Reports `DtlsConnected` once the DTLS transport of the (bundled)
    /// m-line is up. Call after the remote description is applied.
    pub fn watch_dtls(&self, events: mpsc::Sender<MediaEvent>) {
        let transceiver = self
            .webrtcbin
            .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&0i32]);
        let transport = transceiver
            .and_then(|transceiver| {
                transceiver.property::<Option<gst_webrtc::WebRTCRTPSender>>("sender")
            })
            .and_then(|sender| {
                sender.property::<Option<gst_webrtc::WebRTCDTLSTransport>>("transport")
            });
        let Some(transport) = transport else {
            tracing::warn!(
                "no DTLS transport to watch; the first keyframe waits for the viewer's PLI"
            );
            return;
        };
        let notified = Arc::new(AtomicBool::new(false));
        let check = move |transport: &gst_webrtc::WebRTCDTLSTransport| {
            let state = transport.property::<gst_webrtc::WebRTCDTLSTransportState>("state");
            if state == gst_webrtc::WebRTCDTLSTransportState::Connected
                && !notified.swap(true, Ordering::AcqRel)
            {
                forward(&events, MediaEvent::DtlsConnected);
            }
        };
        check(&transport);
        transport.connect_notify(Some("state"), move |transport, _| check(transport));
    }

    /// Asks the encoder for a keyframe with SPS/PPS, as a viewer's PLI would.
    pub fn request_keyframe(&self) {
        if let Some(pad) = &self.keyframe_pad {
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            if !pad.send_event(event) {
                tracing::debug!("encoder did not take the keyframe request");
            }
        }
    }

    /// Adds a remote candidate; `None` is the end-of-candidates marker.
    pub fn add_remote_candidate(&self, mline: u32, candidate: Option<&str>) {
        self.webrtcbin
            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
    }

    /// Stops the pipeline and joins every thread it started. Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Err(err) = self.pipeline.set_state(gst::State::Null) {
            tracing::error!(error = %err, "pipeline did not reach NULL");
        }
        if let Some(bus) = self.pipeline.bus() {
            bus.unset_sync_handler();
        }
        self.pool.cleanup();
        // Idle GLib pool threads would otherwise linger ~15 s.
        glib::ThreadPool::stop_unused_threads();
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Process-wide GStreamer set-up: initialise, make GLib stop idle pool
/// threads at once (so a session leaves none behind), and start the system
/// clock's thread now so it belongs to the idle baseline, not a session.
pub fn init_gstreamer() -> Result<(), MediaError> {
    gst::init().map_err(|err| MediaError::Glib(err.to_string()))?;
    glib::ThreadPool::set_max_unused_threads(Some(0));
    // GLib's default main context lives for the process once created (with
    // its wakeup eventfd); create it now so no session appears to leak it.
    let _ = glib::MainContext::default();
    let clock = gst::SystemClock::obtain();
    let id = clock.new_single_shot_id(clock.time());
    // The callback has nothing to do: the wait exists to start the thread.
    let _ = id.wait_async(|_, _, _| {});
    Ok(())
}

/// Loads the plugins a session uses, so the first viewer does not pay for
/// it, and fails early when one is missing.
pub fn preload<'a>(factories: impl IntoIterator<Item = &'a str>) -> Result<(), MediaError> {
    // The first DTLS element of a process makes GStreamer's fallback RSA
    // certificate (about 100 ms here, far more on a Pi); pay that now.
    drop(make("dtlssrtpdec")?);
    let webrtc = [
        "webrtcbin",
        "capsfilter",
        "rtpbin",
        "nicesrc",
        "nicesink",
        "dtlssrtpenc",
        "dtlssrtpdec",
        "srtpenc",
        "srtpdec",
    ];
    for name in factories.into_iter().chain(webrtc) {
        let factory = gst::ElementFactory::find(name)
            .ok_or_else(|| MediaError::MissingElement(name.into()))?;
        factory
            .load()
            .map_err(|_| MediaError::MissingElement(name.into()))?;
    }
    Ok(())
}

/// Whether an element factory exists in this installation.
pub fn factory_exists(name: &str) -> bool {
    gst::ElementFactory::find(name).is_some()
}

/// The GStreamer version of the installed library, if it initialises.
pub fn runtime_version() -> Option<String> {
    gst::init().ok()?;
    let (major, minor, micro, _) = gst::version();
    Some(format!("{major}.{minor}.{micro}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_is_tuned_udp_only_fast_paced_and_without_upnp() {
        init_gstreamer().unwrap();
        let webrtcbin = make("webrtcbin").unwrap();
        let ice = webrtcbin.property::<glib::Object>("ice-agent");
        let agent = ice.property::<glib::Object>("agent");
        // libnice's defaults, which the agent must change.
        assert!(agent.property::<bool>("upnp"));
        tune_ice(&webrtcbin);
        assert!(!agent.property::<bool>("upnp"), "UPnP port mapping left on");
        assert!(!ice.property::<bool>("ice-tcp"));
        assert_eq!(agent.property::<u32>("stun-pacing-timer"), 5);
    }
}
