//! The legacy relay's pipeline: the planned capture -> JPEG chain ending in
//! an `appsink` whose frames go to the session actor as
//! [`MediaEvent::Frame`]. `snapshot` uses the same pipeline for one frame.
//!
//! The sink keeps one frame and drops older ones: if the actor is behind,
//! a newer picture is worth more than an old one.

use std::time::{Duration, SystemTime};

use gst::prelude::*;
use tokio::sync::mpsc;

use hw::{JpegEncoder, JpegPlan};

use super::elements::{MediaError, build_chain, link_chain, make, set_str_property};
use super::owned::OwnedPipeline;
use super::pipeline::{MediaEvent, forward};

/// One JPEG as it left the pipeline.
#[derive(Debug, Clone)]
pub struct JpegFrame {
    pub data: gst::Buffer,
    /// When the camera captured it (the buffer's age subtracted from the
    /// wall clock at the sink).
    pub captured_at: SystemTime,
}

impl JpegFrame {
    pub fn len(&self) -> usize {
        self.data.size()
    }

    pub fn is_empty(&self) -> bool {
        self.data.size() == 0
    }

    /// The JPEG bytes.
    pub fn bytes(&self) -> Result<gst::buffer::MappedBuffer<gst::buffer::Readable>, MediaError> {
        self.data
            .clone()
            .into_mapped_buffer_readable()
            .map_err(|_| MediaError::Glib("JPEG buffer not readable".into()))
    }
}

/// Owner of a legacy session's pipeline; NULL when stopped or dropped.
pub struct JpegCapture {
    owned: OwnedPipeline,
    /// The encoder and how its quality is set; `None` for the camera's
    /// own MJPEG.
    encoder: Option<(gst::Element, JpegEncoder)>,
}

impl JpegCapture {
    /// Builds the pipeline and sets it PLAYING; frames arrive as
    /// [`MediaEvent::Frame`], errors as [`MediaEvent::Error`].
    pub fn start(
        name: &str,
        plan: &JpegPlan,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        let owned = OwnedPipeline::new(name, events.clone())?;
        let chain = build_chain(&plan.steps)?;
        let encoder = plan.encoder.factory().and_then(|factory| {
            chain
                .iter()
                .find(|element| {
                    element
                        .factory()
                        .is_some_and(|found| found.name() == factory)
                })
                .map(|element| (element.clone(), plan.encoder))
        });
        let sink = make("appsink")?;
        // async=false: a live pipeline needs no preroll, and an async sink
        // makes the bin finish its state change on a GLib pool thread that
        // then idles 0.5 s, outliving a session ended that soon.
        for (property, value) in [
            ("max-buffers", "1"),
            ("drop", "true"),
            ("sync", "false"),
            ("enable-last-sample", "false"),
            ("async", "false"),
        ] {
            set_str_property(&sink, property, value)?;
        }
        let appsink = sink
            .clone()
            .dynamic_cast::<gst_app::AppSink>()
            .map_err(|_| MediaError::MissingElement("appsink".into()))?;
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(data) = sample.buffer_owned() {
                        let captured_at = captured_at(sink.upcast_ref(), data.pts());
                        forward(&events, MediaEvent::Frame(JpegFrame { data, captured_at }));
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        owned
            .pipeline
            .add_many(chain.iter().chain(std::iter::once(&sink)))
            .map_err(|err| MediaError::Glib(err.to_string()))?;
        link_chain(&chain)?;
        let last = chain
            .last()
            .ok_or_else(|| MediaError::Start("empty pipeline plan".into()))?;
        last.link(&sink)
            .map_err(|_| MediaError::Link(last.name().to_string(), "appsink".into()))?;
        owned.play()?;
        Ok(Self { owned, encoder })
    }

    /// Encodes the next frames at `quality`; a no-op for the camera's own
    /// JPEG (the relay never asks then).
    pub fn set_quality(&self, quality: u8) -> Result<(), MediaError> {
        let Some((element, kind)) = &self.encoder else {
            return Ok(());
        };
        match kind.quality(quality) {
            Some((property, value)) => set_str_property(element, property, &value),
            None => Ok(()),
        }
    }

    /// Stops the pipeline and joins every thread it started. Idempotent.
    pub fn stop(&mut self) {
        self.owned.stop();
    }
}

/// The wall-clock time a buffer with `pts` was captured: a live source
/// stamps buffers with the running time of capture, so its age is the
/// sink's running time now less the PTS.
fn captured_at(sink: &gst::Element, pts: Option<gst::ClockTime>) -> SystemTime {
    let now = SystemTime::now();
    let age = match (sink.current_running_time(), pts) {
        (Some(running), Some(pts)) if running >= pts => {
            Duration::from_nanos((running - pts).nseconds())
        }
        _ => Duration::ZERO,
    };
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::runtime::init_gstreamer;

    fn test_plan(width: u32, height: u32, quality: u8) -> JpegPlan {
        JpegPlan::build(
            hw::JpegInput {
                source: &hw::SourceKind::Test,
                capture: hw::CaptureSpec {
                    width,
                    height,
                    framerate: 30,
                },
                framerate: 5,
                quality,
                board: hw::BoardFamily::X86,
                cameras: &[],
            },
            crate::media::runtime::factory_exists,
        )
        .unwrap()
    }

    async fn next_frame(events: &mut mpsc::Receiver<MediaEvent>) -> JpegFrame {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("no frame within 10 s")
                .expect("events closed");
            match event {
                MediaEvent::Frame(frame) => return frame,
                MediaEvent::Error(error) => panic!("{error}"),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn frames_are_real_jpegs_stamped_with_their_capture_time_and_quality_is_live() {
        init_gstreamer().unwrap();
        let (events_tx, mut events) = mpsc::channel(16);
        let before = SystemTime::now();
        let mut capture =
            JpegCapture::start("jpeg-test", &test_plan(320, 240, 90), events_tx).unwrap();
        let first = next_frame(&mut events).await;
        let bytes = first.bytes().unwrap();
        // SOI at the start, EOI at the end: a whole JPEG.
        assert_eq!(&bytes[..2], [0xFF, 0xD8]);
        assert_eq!(&bytes[bytes.len() - 2..], [0xFF, 0xD9]);
        assert!(first.captured_at >= before && first.captured_at <= SystemTime::now());
        let high = first.len();
        capture.set_quality(30).unwrap();
        // A frame or two may have been encoded before the change.
        let mut low = high;
        for _ in 0..4 {
            low = low.min(next_frame(&mut events).await.len());
        }
        assert!(low < high, "quality 30 gave {low} bytes, 90 gave {high}");
        capture.stop();
    }
}
