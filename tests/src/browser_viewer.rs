//! The viewer page in headless Chromium, as tests and tools use it: open it
//! on a stand-in, Watch, read its `getStats` snapshot as a typed struct,
//! screenshot the video, Hang up.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::chromium::{Chromium, LaunchOptions, Page};

/// `window.cameraViewer.stats()`: what the user sees, from the page's
/// `getStats` (refreshed on every call). Raw getStats names keep their
/// units (`currentRoundTripTime` and `totalFreezesDuration` in seconds);
/// derived figures carry theirs in the name. `None` where the browser did
/// not report the figure (yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewerStats {
    /// `idle`, `connecting`, `active` (a frame was decoded) or `ended`.
    pub state: String,
    pub session_id: Option<String>,
    /// The `inbound-rtp` report's timestamp (ms since the epoch, as
    /// getStats gives it), to compute rates between two snapshots.
    pub timestamp_ms: Option<f64>,
    pub frames_decoded: u64,
    pub frames_received: Option<u64>,
    /// Over the last ~1 s, from `framesDecoded` deltas.
    pub frames_per_second: Option<f64>,
    pub frame_width: Option<u32>,
    pub frame_height: Option<u32>,
    pub freeze_count: Option<u64>,
    pub total_freezes_duration: Option<f64>,
    /// Gaps of 5 s or more without a frame (seconds for the total).
    pub pause_count: Option<u64>,
    pub total_pauses_duration: Option<f64>,
    pub nack_count: Option<u64>,
    pub pli_count: Option<u64>,
    pub fir_count: Option<u64>,
    pub packets_lost: Option<i64>,
    pub packets_received: Option<u64>,
    /// Not reported by every Chromium version.
    pub retransmitted_packets_received: Option<u64>,
    pub bytes_received: Option<u64>,
    /// Over the last ~1 s, from `bytesReceived` deltas.
    pub bitrate_kbps: Option<f64>,
    /// `jitterBufferDelay / jitterBufferEmittedCount`, in ms.
    pub jitter_buffer_delay_ms: Option<f64>,
    pub frames_dropped: Option<u64>,
    pub key_frames_decoded: Option<u64>,
    pub decoder_implementation: Option<String>,
    /// The inbound codec, e.g. `video/H264`, and its fmtp line.
    pub codec_mime_type: Option<String>,
    pub codec_fmtp: Option<String>,
    /// Of the selected candidate pair, in seconds.
    pub current_round_trip_time: Option<f64>,
    /// `host`, `srflx`, `prflx` or `relay`.
    pub local_candidate_type: Option<String>,
    pub local_protocol: Option<String>,
    /// For a relay candidate: the protocol to the TURN server.
    pub local_relay_protocol: Option<String>,
    pub remote_candidate_type: Option<String>,
    pub remote_protocol: Option<String>,
    pub ice_connection_state: Option<String>,
    pub connection_state: Option<String>,
    /// From just before `POST /streams` to the first decoded frame, in ms.
    pub first_frame_ms: Option<f64>,
    /// `video-frame` (requestVideoFrameCallback) or `stats` (polling).
    pub first_frame_source: Option<String>,
    /// Why the session ended: the server's `stream:ended` reason,
    /// `hangup`, `page_closed`, `ice_failed`, or a REST error code.
    pub end_reason: Option<String>,
    pub ice_transport_policy: Option<String>,
    /// `webrtc` (an offer was applied) or `legacy` (stream:frame JPEGs).
    pub mode: Option<String>,
    /// Legacy relay: frames whose `seq` was not the previous one + 1.
    pub seq_gaps: Option<u64>,
    /// Legacy relay: frames the browser could not decode.
    pub decode_errors: Option<u64>,
}

/// One entry of `window.cameraViewer.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewerEvent {
    /// `performance.now()` in ms.
    pub at: f64,
    /// Wall clock, ms since the epoch.
    pub wall: f64,
    pub state: String,
    pub session_id: Option<String>,
    pub detail: Option<String>,
}

/// The viewer page open in its own headless Chromium.
pub struct BrowserViewer {
    page: Page,
    chromium: Chromium,
}

impl BrowserViewer {
    /// Launches Chromium and opens the page at `url` (see
    /// [`crate::viewer_page::viewer_url`]); returns once the page's
    /// signaling socket is connected.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_with(url, LaunchOptions::default()).await
    }

    pub async fn open_with(url: &str, options: LaunchOptions) -> anyhow::Result<Self> {
        crate::viewer_page::check_installed()?;
        let chromium = Chromium::launch_with(options).await?;
        let page = chromium.open(url).await?;
        let viewer = Self { page, chromium };
        viewer
            .page
            .wait_for(
                "document.getElementById('signaling').textContent === 'online'",
                Duration::from_secs(20),
            )
            .await
            .with_context(|| format!("the page never connected; {}", viewer.diagnostics()))?;
        Ok(viewer)
    }

    pub fn page(&self) -> &Page {
        &self.page
    }

    pub fn chromium(&self) -> &Chromium {
        &self.chromium
    }

    /// Clicks Watch; the session id once `POST /streams` has answered.
    pub async fn watch(&self) -> anyhow::Result<String> {
        let id = self
            .page
            .eval("window.cameraViewer.watch()")
            .await
            .with_context(|| format!("watch failed; {}", self.diagnostics()))?;
        id.as_str()
            .map(str::to_owned)
            .with_context(|| format!("watch returned {id}"))
    }

    /// Clicks Watch and waits for `frames` decoded frames.
    pub async fn watch_until(&self, frames: u64, limit: Duration) -> anyhow::Result<ViewerStats> {
        self.watch().await?;
        self.wait_frames(frames, limit).await
    }

    /// Waits until at least `frames` frames were decoded; fails at once if
    /// the session ends first.
    pub async fn wait_frames(&self, frames: u64, limit: Duration) -> anyhow::Result<ViewerStats> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let stats = self.stats().await?;
            if stats.frames_decoded >= frames {
                return Ok(stats);
            }
            if stats.state == "ended" {
                bail!(
                    "the session ended before {frames} frames: {stats:?}; {}",
                    self.diagnostics()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "fewer than {frames} frames within {limit:?}: {stats:?}; {}",
                    self.diagnostics()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's state is `state`.
    pub async fn wait_state(&self, state: &str, limit: Duration) -> anyhow::Result<ViewerStats> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let stats = self.stats().await?;
            if stats.state == state {
                return Ok(stats);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("state is not {state} after {limit:?}: {stats:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stats(&self) -> anyhow::Result<ViewerStats> {
        let value = self.page.eval("window.cameraViewer.stats()").await?;
        serde_json::from_value(value.clone()).with_context(|| format!("stats snapshot {value}"))
    }

    pub async fn state(&self) -> anyhow::Result<String> {
        let value = self.page.eval("window.cameraViewer.state").await?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    pub async fn events(&self) -> anyhow::Result<Vec<ViewerEvent>> {
        let value = self.page.eval("window.cameraViewer.events").await?;
        Ok(serde_json::from_value(value)?)
    }

    /// The offer and answer SDP of the current session.
    pub async fn sdp(&self) -> anyhow::Result<(Option<String>, Option<String>)> {
        let value = self.page.eval("window.cameraViewer.sdp").await?;
        let text = |key: &str| value[key].as_str().map(str::to_owned);
        Ok((text("offer"), text("answer")))
    }

    /// Clicks Hang up (the page ends the session over REST and closes its
    /// peer connection); the last figures.
    pub async fn hang_up(&self) -> anyhow::Result<ViewerStats> {
        self.page.eval("window.cameraViewer.hangUp()").await?;
        self.stats().await
    }

    /// A PNG of the video element as the page shows it.
    pub async fn screenshot_video(&self) -> anyhow::Result<Vec<u8>> {
        self.screenshot_element("#video").await
    }

    /// A PNG of the element `selector` names (`#frame`: the legacy relay's
    /// picture) as the page shows it.
    pub async fn screenshot_element(&self, selector: &str) -> anyhow::Result<Vec<u8>> {
        let rect = self.page.element_rect(selector).await?;
        Ok(self.page.screenshot_png_clip(rect).await?)
    }

    /// The page's console and Chromium's last stderr lines, for failures.
    pub fn diagnostics(&self) -> String {
        format!(
            "page console:\n{}\nchromium stderr (tail):\n{}",
            self.page.console().join("\n"),
            self.chromium.stderr_tail().join("\n")
        )
    }

    /// Closes the page as a user closes a tab, the browser staying up: its
    /// unload handler ends a live session over REST. Only [`Self::close`]
    /// is useful afterwards.
    pub async fn close_page(&self) -> anyhow::Result<()> {
        Ok(self.page.close_target().await?)
    }

    /// Closes the page (unload ends a live session) and the browser.
    pub async fn close(self) {
        let Self { page, chromium } = self;
        let _ = page.close().await;
        chromium.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_snapshot_deserialises() {
        let value = serde_json::json!({
            "state": "active", "sessionId": "s-1", "framesDecoded": 61,
            "framesPerSecond": 30.1, "frameWidth": 640, "frameHeight": 480,
            "freezeCount": 0, "totalFreezesDuration": 0, "nackCount": 0,
            "pliCount": 0, "firCount": 0, "packetsLost": -1, "packetsReceived": 300,
            "retransmittedPacketsReceived": null, "bytesReceived": 123456,
            "bitrateKbps": 1800.5, "jitterBufferDelayMs": 45.2,
            "currentRoundTripTime": 0.001, "localCandidateType": "host",
            "localProtocol": "udp", "remoteCandidateType": "host",
            "remoteProtocol": "udp", "firstFrameMs": 180.4, "endReason": null,
            "somethingNew": true
        });
        let stats: ViewerStats = serde_json::from_value(value).unwrap();
        assert_eq!(stats.frames_decoded, 61);
        assert_eq!(stats.packets_lost, Some(-1));
        assert_eq!(stats.retransmitted_packets_received, None);
        assert_eq!(stats.frame_width, Some(640));
        assert_eq!(stats.first_frame_ms, Some(180.4));
    }
}
