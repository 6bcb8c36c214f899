//! JPEG through GStreamer: a decoder (`appsrc ! jpegdec ! appsink`) that
//! proves a frame decodes and reads its size, and an encoder of test
//! pictures for playing a camera.

use anyhow::{Context, anyhow, bail};
use gst::prelude::*;
use gst_video::prelude::*;

/// How long one frame may take to decode before it counts as undecodable.
const DECODE_LIMIT: gst::ClockTime = gst::ClockTime::from_seconds(5);

/// One decoder pipeline, reused frame after frame. Each pushed JPEG gives
/// exactly one decoded picture or an error; after an error the pipeline is
/// built anew, so no stale picture is ever taken for a later frame.
pub struct JpegDecoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
}

impl JpegDecoder {
    pub fn new() -> anyhow::Result<Self> {
        gst::init()?;
        let pipeline = gst::Pipeline::new();
        // `parsed=true`: every buffer is one whole JPEG, so jpegdec decodes
        // it at once instead of waiting for the next frame's start.
        let src = gst_app::AppSrc::builder()
            .caps(
                &gst::Caps::builder("image/jpeg")
                    .field("parsed", true)
                    .build(),
            )
            .format(gst::Format::Time)
            .build();
        // Fail on the first bad frame (an error on the bus, then a fresh
        // pipeline) instead of dropping it silently, which would leave
        // nothing to wait for but a timeout.
        // (jpegdec's own `max-errors` is deprecated and ignored; the base
        // class's counts, and 0 means fail on the first error).
        let decode = gst::ElementFactory::make("jpegdec").build()?;
        decode
            .downcast_ref::<gst_video::VideoDecoder>()
            .ok_or_else(|| anyhow!("jpegdec is not a video decoder"))?
            .set_max_errors(0);
        let sink = gst_app::AppSink::builder().sync(false).build();
        pipeline.add_many([src.upcast_ref(), &decode, sink.upcast_ref()])?;
        gst::Element::link_many([src.upcast_ref(), &decode, sink.upcast_ref()])?;
        pipeline
            .set_state(gst::State::Playing)
            .context("JPEG decoder would not start")?;
        Ok(Self {
            pipeline,
            src,
            sink,
        })
    }

    /// Decodes one JPEG; its (width, height).
    pub fn decode(&mut self, jpeg: &[u8]) -> anyhow::Result<(u32, u32)> {
        let result = self.try_decode(jpeg);
        if result.is_err() {
            *self = Self::new()?;
        }
        result
    }

    fn try_decode(&self, jpeg: &[u8]) -> anyhow::Result<(u32, u32)> {
        self.src
            .push_buffer(gst::Buffer::from_slice(jpeg.to_vec()))
            .map_err(|flow| anyhow!("decoder refused the frame: {flow:?}"))?;
        // A bad frame gives no picture, only a warning (or an error) on the
        // bus: look there between short waits instead of waiting it out.
        let deadline = std::time::Instant::now() + std::time::Duration::from(DECODE_LIMIT);
        let sample = loop {
            if let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::from_mseconds(20)) {
                break sample;
            }
            if let Some(problem) = bus_problem(&self.pipeline) {
                bail!("not decodable: {problem}");
            }
            if std::time::Instant::now() > deadline {
                bail!("not decoded within {DECODE_LIMIT}");
            }
        };
        let caps = sample
            .caps()
            .ok_or_else(|| anyhow!("decoded frame without caps"))?;
        let info = gst_video::VideoInfo::from_caps(caps)?;
        Ok((info.width(), info.height()))
    }
}

impl Drop for JpegDecoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The first warning or error on the pipeline's bus.
fn bus_problem(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(message) = bus.pop() {
        match message.view() {
            gst::MessageView::Error(err) => return Some(err.error().to_string()),
            gst::MessageView::Warning(warning) => return Some(warning.error().to_string()),
            _ => {}
        }
    }
    None
}

/// One JPEG of `videotestsrc`'s SMPTE bars at `width` x `height`, made by
/// `jpegenc` at `quality` (0-100).
pub fn test_jpeg(width: u32, height: u32, quality: i32) -> anyhow::Result<Vec<u8>> {
    gst::init()?;
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width={width},height={height} \
         ! jpegenc quality={quality} ! appsink name=sink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|sink| sink.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("no appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
    let _ = pipeline.set_state(gst::State::Null);
    let sample = sample.ok_or_else(|| anyhow!("jpegenc gave no picture"))?;
    let buffer = sample
        .buffer()
        .ok_or_else(|| anyhow!("sample without buffer"))?;
    let map = buffer.map_readable()?;
    Ok(map.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pictures_decode_at_their_size_and_garbage_does_not() {
        let small = test_jpeg(320, 240, 85).unwrap();
        assert!(small.starts_with(&[0xff, 0xd8]));
        let large = test_jpeg(1280, 720, 85).unwrap();
        let mut decoder = JpegDecoder::new().unwrap();
        assert_eq!(decoder.decode(&small).unwrap(), (320, 240));
        assert_eq!(decoder.decode(&large).unwrap(), (1280, 720));
        let mut garbage = vec![0xff, 0xd8];
        garbage.extend(std::iter::repeat_n(0x55, 4000));
        assert!(decoder.decode(&garbage).is_err());
        // The decoder is usable again after a bad frame, and in order.
        assert_eq!(decoder.decode(&small).unwrap(), (320, 240));
    }
}
