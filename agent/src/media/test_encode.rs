//! `doctor`'s proof that camera and encoder work: the plan's capture and
//! encode chain into a fake sink for a few seconds, counting frames.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;

use hw::{PipelinePlan, Step};

use super::elements::{MediaError, build_chain, link_chain};

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
