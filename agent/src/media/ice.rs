//! Tuning of libnice, the ICE agent inside webrtcbin: what is set once
//! per session, and the STUN retransmission count that changes with the
//! phase of ICE.

use std::sync::Mutex;

use gst::glib;
use gst::prelude::*;

/// libnice paces connectivity checks 20 ms apart and also pairs TCP
/// candidates that browsers ignore. Checks 5 ms apart (RFC 8445's floor
/// for Ta) over UDP only cut the time from the answer to ICE connected,
/// the largest part of the viewer's wait (median first frame 138-180 ms
/// before, 102-107 ms after, docs/benchmarks.md).
pub(super) fn tune_ice(webrtcbin: &gst::Element) {
    let ice = webrtcbin.property::<glib::Object>("ice-agent");
    if ice.find_property("ice-tcp").is_some() {
        ice.set_property("ice-tcp", false);
    }
    if let Some(agent) = nice_agent(webrtcbin) {
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

/// The `NiceAgent` inside webrtcbin's ICE object, if this GStreamer
/// exposes it.
fn nice_agent(webrtcbin: &gst::Element) -> Option<glib::Object> {
    let ice = webrtcbin.property::<glib::Object>("ice-agent");
    ice.find_property("agent")?;
    Some(ice.property::<glib::Object>("agent"))
}

const RETRANSMISSIONS: &str = "stun-max-retransmissions";

/// STUN transmissions of one connectivity check while the camera's checks
/// run unanswered. The camera is ICE-controlling with libnice's regular
/// nomination (webrtcbin sets it at construction): with a single working
/// pair it nominates only once every higher-priority pair has failed. When
/// only a relay gets through, the camera's host candidate paired with the
/// viewer's relay outranks its own relay, and that check fails only after
/// libnice's whole retransmission schedule: RTO 500 ms (libnice's floor,
/// not configurable), then 1000 ms, then 500 ms with the default of 3, so
/// 2 s before the first frame. Sent once, it fails after 500 ms.
const CHECK_RETRANSMISSIONS: u32 = 1;

/// Where ICE is, as far as the retransmission count goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Candidates are being gathered: TURN allocations use the count too,
    /// and a relay lost to one dropped Allocate is lost for the session.
    #[default]
    Gathering,
    /// Gathering is complete and no check of the viewer has arrived yet:
    /// the camera's first checks go out once, so hopeless pairs fail fast.
    Checking,
    /// A check of the viewer arrived, or ICE connected: libnice's default.
    /// The camera nominates its pair with one more check, and libnice 0.1.21
    /// never nominates again once that check failed (the component waits
    /// for a triggered check the viewer may never cause), so that check
    /// must keep its retransmissions. On the direct path the viewer's
    /// checks arrive first; when only a relay gets through, the first one
    /// comes through the relays some 40 ms in, long before the hopeless
    /// pair's 500 ms are up and the nomination follows. TURN refreshes and
    /// keepalives use the count too: one lost refresh must not end a relay.
    Settled,
}

/// The retransmission count by phase (pure): each event says what to set.
#[derive(Debug, Default)]
struct CheckPacing {
    phase: Phase,
}

impl CheckPacing {
    /// Local gathering completed; `Some(count)` to set.
    fn gathering_complete(&mut self, default: u32) -> Option<u32> {
        if self.phase != Phase::Gathering {
            // The viewer's checks or ICE came first: nothing to speed up.
            return None;
        }
        self.phase = Phase::Checking;
        (CHECK_RETRANSMISSIONS < default).then_some(CHECK_RETRANSMISSIONS)
    }

    /// The viewer's first check arrived, or ICE connected; `Some(count)`
    /// to set.
    fn settled(&mut self, default: u32) -> Option<u32> {
        let was = std::mem::replace(&mut self.phase, Phase::Settled);
        (was == Phase::Checking && CHECK_RETRANSMISSIONS < default).then_some(default)
    }
}

/// Lowers libnice's STUN retransmissions for the camera's first checks
/// only: from local gathering complete until the viewer's first check
/// arrives or ICE connects (see [`Phase`]). The count a check uses is
/// fixed when it is sent, so restoring it never stretches a running check.
pub(super) struct CheckRetransmissions {
    /// libnice's own default, read before anything changed it.
    default: u32,
    pacing: Mutex<CheckPacing>,
}

impl CheckRetransmissions {
    /// Watches the agent of `webrtcbin` for the viewer's first check;
    /// `None` if this libnice has no such property. The signal handler
    /// holds no GStreamer object, so it keeps nothing alive.
    pub(super) fn new(webrtcbin: &gst::Element) -> Option<std::sync::Arc<Self>> {
        let agent = nice_agent(webrtcbin)?;
        agent.find_property(RETRANSMISSIONS)?;
        let this = std::sync::Arc::new(Self {
            default: agent.property::<u32>(RETRANSMISSIONS),
            pacing: Mutex::default(),
        });
        let watcher = this.clone();
        // libnice emits its signals after releasing its lock, so setting
        // a property from the handler is safe.
        agent.connect("initial-binding-request-received", false, move |values| {
            if let Some(agent) = values
                .first()
                .and_then(|value| value.get::<glib::Object>().ok())
            {
                watcher.apply(&agent, CheckPacing::settled);
            }
            None
        });
        Some(this)
    }

    pub(super) fn gathering_complete(&self, webrtcbin: &gst::Element) {
        if let Some(agent) = nice_agent(webrtcbin) {
            self.apply(&agent, CheckPacing::gathering_complete);
        }
    }

    pub(super) fn connected(&self, webrtcbin: &gst::Element) {
        if let Some(agent) = nice_agent(webrtcbin) {
            self.apply(&agent, CheckPacing::settled);
        }
    }

    fn apply(
        &self,
        agent: &glib::Object,
        event: impl FnOnce(&mut CheckPacing, u32) -> Option<u32>,
    ) {
        // Poisoning cannot leave a phase inconsistent. The lock is held
        // while setting, so two events cannot apply out of order.
        let mut pacing = self
            .pacing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = event(&mut pacing, self.default) {
            tracing::debug!(count, phase = ?pacing.phase, "STUN retransmissions");
            agent.set_property(RETRANSMISSIONS, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::elements::make;
    use crate::media::runtime::init_gstreamer;

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

    #[test]
    fn checks_go_out_once_only_between_gathering_and_the_viewers_first_check() {
        let mut pacing = CheckPacing::default();
        assert_eq!(pacing.gathering_complete(3), Some(CHECK_RETRANSMISSIONS));
        assert_eq!(pacing.settled(3), Some(3));
        // ICE connecting after the viewer's check, or again after a blip,
        // keeps the default.
        assert_eq!(pacing.settled(3), None);
        assert_eq!(pacing.gathering_complete(3), None);

        // The viewer's check (or ICE) before gathering completed: never
        // lowered.
        let mut pacing = CheckPacing::default();
        assert_eq!(pacing.settled(3), None);
        assert_eq!(pacing.gathering_complete(3), None);

        // A default already as low: nothing to change.
        let mut pacing = CheckPacing::default();
        assert_eq!(pacing.gathering_complete(1), None);
        assert_eq!(pacing.settled(1), None);
    }

    #[test]
    fn the_agent_applies_the_phases_to_libnice() {
        init_gstreamer().unwrap();
        let webrtcbin = make("webrtcbin").unwrap();
        let agent = nice_agent(&webrtcbin).unwrap();
        let default = agent.property::<u32>(RETRANSMISSIONS);
        assert_eq!(default, 3, "libnice's default changed");
        let retransmissions = CheckRetransmissions::new(&webrtcbin).unwrap();
        retransmissions.gathering_complete(&webrtcbin);
        assert_eq!(
            agent.property::<u32>(RETRANSMISSIONS),
            CHECK_RETRANSMISSIONS
        );
        // What libnice emits when the viewer's first check arrives.
        agent.emit_by_name::<()>("initial-binding-request-received", &[&1u32]);
        assert_eq!(agent.property::<u32>(RETRANSMISSIONS), default);
        retransmissions.connected(&webrtcbin);
        assert_eq!(agent.property::<u32>(RETRANSMISSIONS), default);
    }
}
