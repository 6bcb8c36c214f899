//! One session's GStreamer pipeline: the planned capture chain ending in a
//! send-only `webrtcbin`, and the glue that turns webrtcbin's callbacks into
//! [`MediaEvent`]s.
//!
//! Callbacks run on GStreamer threads. They never block and never touch
//! session state: they `try_send` into the session actor's bounded channel
//! and hold no strong reference to the pipeline, so dropping the
//! [`MediaSession`] really frees the pipeline and every thread it started.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCICEConnectionState, WebRTCICEGatheringState, WebRTCSessionDescription};
use tokio::sync::mpsc;

use hw::PipelinePlan;

use super::dtls::DtlsIdentity;
use super::elements::{MediaError, build_chain, link_chain, make, set_str_property};
use super::ice::{CheckRetransmissions, tune_ice};
use super::owned::OwnedPipeline;
use super::sdp::IceUrls;
use super::stats::LinkStats;

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
    /// A `get-stats` report, read (see [`MediaSession::request_stats`]).
    Stats(Box<LinkStats>),
    /// Legacy relay: a JPEG left the pipeline.
    Frame(super::jpeg::JpegFrame),
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
    owned: OwnedPipeline,
    pub(super) webrtcbin: gst::Element,
    /// Where keyframe requests go in (they travel upstream to the encoder,
    /// or to the camera when its H.264 is passed through).
    keyframe_pad: Option<gst::Pad>,
    /// The encoder and the property that sets its bitrate live.
    pub(super) encoder: Option<(gst::Element, hw::EncoderKind)>,
    /// The capsfilter that sets the size and rate the encoder gets.
    pub(super) adapt: Option<gst::Element>,
    /// RTCP packets received from the viewer, counted on a GStreamer
    /// thread: their absence is how a dead media path shows.
    pub(super) rtcp_received: Arc<AtomicU64>,
    /// Where the session's TURN TLS tunnels listen, to name the relay leg.
    pub(super) tls_tunnels: Arc<[IpAddr]>,
    /// webrtcbin's retransmission sender, once it made one (its counter
    /// feeds the congestion controller). Set on a GStreamer thread; the
    /// lock is only ever held for the assignment or a clone.
    pub(super) rtx_sender: Arc<Mutex<Option<glib::WeakRef<gst::Element>>>>,
}

pub(super) fn forward(events: &mpsc::Sender<MediaEvent>, event: MediaEvent) {
    // A full channel means the actor is gone or far behind; in both cases
    // dropping is better than blocking a streaming thread.
    if let Err(err) = events.try_send(event) {
        tracing::warn!(error = %err, "media event dropped");
    }
}

/// How far back retransmissions can reach. rtprtxsend keeps 100 packets by
/// default: a third of a second at 2 Mbit/s, less than one round trip on
/// a congested LTE uplink. Time-bounded instead, so the history covers the
/// same span at any bitrate.
const RTX_HISTORY_MS: u32 = 1000;

/// Sets the retransmission history on the `rtprtxsend` webrtcbin creates
/// when NACK is on (seen through `deep-element-added`); true for it.
fn keep_rtx_history(element: &gst::Element) -> bool {
    let is_rtx_sender = element
        .factory()
        .is_some_and(|factory| factory.name() == "rtprtxsend");
    if !is_rtx_sender {
        return false;
    }
    if element.find_property("max-size-packets").is_some() {
        element.set_property("max-size-packets", 0u32);
    }
    if element.find_property("max-size-time").is_some() {
        element.set_property("max-size-time", RTX_HISTORY_MS);
    }
    true
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

impl MediaSession {
    /// Builds the pipeline and sets it PLAYING. webrtcbin then asks for
    /// negotiation once the payloader's caps are known.
    pub fn start(
        name: &str,
        plan: &PipelinePlan,
        config: &MediaConfig,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        let owned = OwnedPipeline::new(name, events.clone())?;
        let pipeline = owned.pipeline.clone();
        let mut session = Self {
            owned,
            webrtcbin: make("webrtcbin")?,
            keyframe_pad: None,
            encoder: None,
            adapt: None,
            rtcp_received: Arc::default(),
            tls_tunnels: config.ice.tls_tunnels.as_slice().into(),
            rtx_sender: Arc::default(),
        };
        let rtx_sender = session.rtx_sender.clone();
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
            if keep_rtx_history(element) {
                *rtx_sender
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner()) = Some(element.downgrade());
            }
        });

        let chain = build_chain(&plan.steps)?;
        session.encoder = plan.encoder.and_then(|kind| {
            chain
                .iter()
                .find(|element| {
                    element
                        .factory()
                        .is_some_and(|factory| factory.name() == kind.factory())
                })
                .map(|element| (element.clone(), kind))
        });
        session.adapt = plan.adapt.and_then(|index| chain.get(index).cloned());
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
        // NACK -> RTX: the offer carries an rtx payload type (`apt=`) and
        // webrtcbin answers the viewer's NACKs from its history, so one
        // lost packet costs one retransmission instead of a broken picture
        // until the next keyframe.
        if transceiver.find_property("do-nack").is_some() {
            transceiver.set_property("do-nack", true);
        }
        // ULPFEC in RED, negotiated in every offer (the payload types can
        // only be offered up front) but silent until the controller sees
        // random loss and raises `fec-percentage` (media/control.rs).
        if transceiver.find_property("fec-type").is_some() {
            transceiver.set_property("fec-type", gst_webrtc::WebRTCFECType::UlpRed);
            transceiver.set_property("fec-percentage", 0u32);
        }
        session.count_viewer_rtcp();

        session.connect_webrtc_signals(&sink_pad, events, !config.ice.turn.is_empty());
        session.owned.play()?;
        Ok(session)
    }

    /// `relays`: the session has TURN servers, so the camera's first checks
    /// go out once only (see `ice::CheckRetransmissions`). Without one
    /// nothing waits on a relay pair and libnice keeps its retransmissions:
    /// under 10 % loss a check sent once fails too often to risk it there.
    fn connect_webrtc_signals(
        &self,
        sink_pad: &gst::Pad,
        events: mpsc::Sender<MediaEvent>,
        relays: bool,
    ) {
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
        // Both notifications come from webrtcbin's own thread, outside
        // libnice's lock, so setting the agent's properties there is safe.
        let retransmissions = relays
            .then(|| CheckRetransmissions::new(webrtcbin))
            .flatten();
        let tx = events.clone();
        let checks = retransmissions.clone();
        webrtcbin.connect_notify(Some("ice-gathering-state"), move |element, _| {
            let state = element.property::<WebRTCICEGatheringState>("ice-gathering-state");
            if state == WebRTCICEGatheringState::Complete {
                if let Some(checks) = &checks {
                    checks.gathering_complete(element);
                }
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
                if let Some(checks) = &retransmissions {
                    checks.connected(element);
                }
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
        self.owned.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::runtime::init_gstreamer;
    use std::time::Duration;

    fn test_plan() -> PipelinePlan {
        PipelinePlan::build(
            hw::PlanInput {
                source: &hw::SourceKind::Test,
                capture: hw::CaptureSpec {
                    width: 320,
                    height: 240,
                    framerate: 30,
                },
                encoder: hw::EncoderChoice::Only(hw::EncoderKind::X264Enc),
                settings: hw::EncoderSettings {
                    bitrate_kbps: 800,
                    keyframe_interval: 60,
                },
                board: hw::BoardFamily::X86,
                cameras: &[],
            },
            |name| gst::ElementFactory::find(name).is_some(),
        )
        .unwrap()
    }

    async fn next_event(
        events: &mut mpsc::Receiver<MediaEvent>,
        wanted: impl Fn(&MediaEvent) -> bool,
    ) -> MediaEvent {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("no media event in 10 s")
                .expect("media events closed");
            if wanted(&event) {
                return event;
            }
        }
    }

    /// The offer is what makes a browser repair loss and report delay: an
    /// rtx payload type tied to H.264, NACK feedback, ULPFEC in RED, and
    /// transport-cc (header extension and feedback type).
    #[tokio::test]
    async fn the_offer_negotiates_nack_rtx_fec_and_transport_cc() {
        init_gstreamer().unwrap();
        let config = MediaConfig {
            identity: crate::media::dtls::DtlsIdentity::generate().unwrap(),
            ice: IceUrls::default(),
            local_addresses: Vec::new(),
        };
        let (tx, mut events) = mpsc::channel(256);
        let mut session = MediaSession::start("offer-test", &test_plan(), &config, tx.clone())
            .expect("pipeline starts");
        next_event(&mut events, |event| {
            matches!(event, MediaEvent::NegotiationNeeded)
        })
        .await;
        session.create_offer(tx.clone());
        let MediaEvent::OfferCreated(Ok(offer)) = next_event(&mut events, |event| {
            matches!(event, MediaEvent::OfferCreated(_))
        })
        .await
        else {
            panic!("offer creation failed");
        };
        let sdp = offer.sdp().as_text().unwrap();
        assert!(sdp.contains("a=rtcp-fb:96 nack\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtcp-fb:96 nack pli"), "{sdp}");
        let rtx_pt = sdp
            .lines()
            .find_map(|line| line.strip_prefix("a=rtpmap:")?.strip_suffix(" rtx/90000"))
            .expect("an rtx payload type");
        assert!(
            sdp.contains(&format!("a=fmtp:{rtx_pt} apt=96")),
            "rtx not tied to H.264: {sdp}"
        );
        assert!(
            sdp.contains(&format!("a=extmap:1 {}", hw::plan::TWCC_EXTENSION_URI)),
            "{sdp}"
        );
        assert!(sdp.contains("a=rtcp-fb:96 transport-cc"), "{sdp}");
        // ULPFEC in RED, with RED repaired by RTX as well.
        let pt_of = |codec: &str| {
            sdp.lines()
                .find_map(|line| {
                    line.strip_prefix("a=rtpmap:")?
                        .strip_suffix(&format!(" {codec}/90000"))
                })
                .unwrap_or_else(|| panic!("no {codec} payload type: {sdp}"))
                .to_string()
        };
        let (red_pt, ulpfec_pt) = (pt_of("red"), pt_of("ulpfec"));
        assert!(
            sdp.contains(&format!("apt={red_pt}")),
            "RED not repaired: {sdp}"
        );
        // The viewer's answer (the offer mirrored) makes webrtcbin build its
        // FEC encoder, silent until the controller asks for FEC.
        session.set_local_description(&offer);
        let answer = sdp
            .replace("a=sendonly", "a=recvonly")
            .replace("a=setup:actpass", "a=setup:active");
        session.set_remote_answer(&answer, tx.clone()).unwrap();
        let MediaEvent::RemoteDescriptionSet(applied) = next_event(&mut events, |event| {
            matches!(event, MediaEvent::RemoteDescriptionSet(_))
        })
        .await
        else {
            unreachable!()
        };
        applied.expect("answer applied");
        let fec_encoder = session
            .webrtcbin
            .downcast_ref::<gst::Bin>()
            .unwrap()
            .iterate_recurse()
            .into_iter()
            .filter_map(Result::ok)
            .find(|element| {
                element
                    .factory()
                    .is_some_and(|f| f.name() == "rtpulpfecenc")
            })
            .expect("an FEC encoder");
        assert_eq!(fec_encoder.property::<u32>("pt").to_string(), ulpfec_pt);
        assert_eq!(fec_encoder.property::<u32>("percentage"), 0);
        session.set_fec_percentage(25).unwrap();
        assert_eq!(fec_encoder.property::<u32>("percentage"), 25);
        // The live controls reach a running encoder and adaptation point.
        session.set_bitrate(300).unwrap();
        let (encoder, _) = session.encoder.as_ref().unwrap();
        assert_eq!(encoder.property::<u32>("bitrate"), 300);
        session
            .set_encode_target(crate::media::control::EncodeTarget {
                width: 160,
                height: 120,
                framerate: 15,
            })
            .unwrap();
        let caps = session
            .adapt
            .as_ref()
            .unwrap()
            .property::<gst::Caps>("caps");
        assert_eq!(caps.structure(0).unwrap().get::<i32>("width").unwrap(), 160);
        session.stop();
    }
}
