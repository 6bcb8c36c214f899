//! A session's pipeline with the threads it starts: every streaming task
//! runs in the session's own pool, the bus reports errors to the session
//! actor, and stopping sets NULL and joins those threads. Both the WebRTC
//! pipeline and the legacy JPEG one are owned this way, so both tear down
//! to exactly the idle threads and fds.

use gst::glib;
use gst::prelude::*;
use tokio::sync::mpsc;

use super::elements::MediaError;
use super::pipeline::{MediaEvent, forward};

pub(crate) struct OwnedPipeline {
    pub(crate) pipeline: gst::Pipeline,
    /// Streaming threads of this session only, so teardown can join them.
    pool: gst::TaskPool,
    stopped: bool,
}

impl OwnedPipeline {
    /// An empty pipeline named `name` whose bus errors (and end of stream,
    /// which a live source never reaches by itself) go to `events`.
    pub(crate) fn new(name: &str, events: mpsc::Sender<MediaEvent>) -> Result<Self, MediaError> {
        let pipeline = gst::Pipeline::with_name(name);
        let pool = gst::TaskPool::new();
        pool.prepare()
            .map_err(|err| MediaError::Glib(err.to_string()))?;
        let owned = Self {
            pipeline,
            pool,
            stopped: false,
        };
        owned.install_bus_handler(events);
        Ok(owned)
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

    pub(crate) fn play(&self) -> Result<(), MediaError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(drop)
            .map_err(|err| MediaError::Start(err.to_string()))
    }

    /// Stops the pipeline and joins every thread it started. Idempotent.
    pub(crate) fn stop(&mut self) {
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

impl Drop for OwnedPipeline {
    fn drop(&mut self) {
        self.stop();
    }
}
