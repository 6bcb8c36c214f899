//! Live control of a running session's media: reading the link figures the
//! congestion controller needs and applying its decisions (encoder bitrate,
//! resolution and framerate, FEC) without restarting the pipeline.
//!
//! Nothing here decides anything: the figures go out as a
//! [`MediaEvent::Stats`], the decisions come back from the session's pure
//! controller.

use std::sync::atomic::Ordering;

use gst::prelude::*;
use tokio::sync::mpsc;

use super::elements::{MediaError, set_str_property};
use super::pipeline::{MediaEvent, MediaSession, forward};
use super::stats::LinkStats;

/// The picture the encoder is given: a size and rate within the capture's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeTarget {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

impl MediaSession {
    /// Counts the RTCP packets the viewer sends (receiver reports, TWCC
    /// feedback, NACK, PLI): `on-ssrc-active` fires for each one from a
    /// remote source. Called once the transceiver exists.
    pub(super) fn count_viewer_rtcp(&self) {
        let rtpbin = self
            .webrtcbin
            .downcast_ref::<gst::Bin>()
            .and_then(|bin| bin.by_name("rtpbin"));
        let Some(rtpbin) = rtpbin else {
            tracing::warn!("webrtcbin has no rtpbin child; dead-path detection is blind");
            return;
        };
        let counter = self.rtcp_received.clone();
        rtpbin.connect("on-ssrc-active", false, move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            None
        });
    }

    /// Asks webrtcbin for its statistics; the reply arrives as
    /// `MediaEvent::Stats` with the RTCP count filled in.
    pub fn request_stats(&self, events: mpsc::Sender<MediaEvent>) {
        let rtcp_received = self.rtcp_received.clone();
        let tls_tunnels = self.tls_tunnels.clone();
        let rtx_packets_sent = self.rtx_packets_sent();
        let promise = gst::Promise::with_change_func(move |reply| {
            let Ok(Some(report)) = reply else {
                tracing::debug!("get-stats gave no reply");
                return;
            };
            let mut stats = LinkStats::from_report(report, &tls_tunnels);
            stats.rtcp_received = rtcp_received.load(Ordering::Relaxed);
            stats.rtx_packets_sent = rtx_packets_sent;
            forward(&events, MediaEvent::Stats(Box::new(stats)));
        });
        self.webrtcbin
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    }

    /// Packets `rtprtxsend` has retransmitted so far, if webrtcbin made one.
    fn rtx_packets_sent(&self) -> Option<u64> {
        let sender = self
            .rtx_sender
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .as_ref()
            .and_then(|weak| weak.upgrade())?;
        sender
            .find_property("num-rtx-packets")
            .map(|_| u64::from(sender.property::<u32>("num-rtx-packets")))
    }

    /// Sets the encoder's bitrate while it runs. Without an encoder (the
    /// camera's own H.264) there is nothing to set.
    pub fn set_bitrate(&self, kbps: u32) -> Result<(), MediaError> {
        let Some((encoder, kind)) = &self.encoder else {
            return Ok(());
        };
        let (property, value) = kind.live_bitrate(kbps);
        set_str_property(encoder, property, &value)
    }

    /// Sets how many ULPFEC packets go out per 100 media packets (0: none).
    /// webrtcbin 1.22 binds the transceiver's `fec-percentage` to the
    /// `percentage` of the rtpulpfecenc it makes once the answer is
    /// applied, so a change reaches the running encoder (measured: the
    /// encoder's figure followed every change in the quality suite).
    pub fn set_fec_percentage(&self, percentage: u32) -> Result<(), MediaError> {
        let transceiver = self
            .webrtcbin
            .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&0i32])
            .ok_or_else(|| MediaError::Glib("webrtcbin has no transceiver".into()))?;
        transceiver.set_property("fec-percentage", percentage);
        Ok(())
    }

    /// Changes the size and rate the encoder gets. The encoder restarts its
    /// stream at the new size with a keyframe (new SPS/PPS), which viewers
    /// decode without renegotiation.
    pub fn set_encode_target(&self, target: EncodeTarget) -> Result<(), MediaError> {
        let Some(adapt) = &self.adapt else {
            return Ok(());
        };
        let text = hw::adapt_caps(target.width, target.height, target.framerate);
        let caps: gst::Caps = text.parse().map_err(|_| MediaError::BadCaps(text))?;
        adapt.set_property("caps", &caps);
        Ok(())
    }
}
