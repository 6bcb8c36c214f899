//! Process-wide GStreamer set-up, done once at start-up so that sessions
//! neither pay for it nor appear to leak what it creates.

use gst::glib;
use gst::prelude::*;

use super::elements::{MediaError, make};

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
/// it, and fails early when one is missing. `webrtc`: the WebRTC elements
/// too (the legacy relay needs none of them).
pub fn preload<'a>(
    factories: impl IntoIterator<Item = &'a str>,
    webrtc: bool,
) -> Result<(), MediaError> {
    if webrtc {
        // The first DTLS element of a process makes GStreamer's fallback
        // RSA certificate (about 100 ms here, far more on a Pi); pay that
        // now.
        drop(make("dtlssrtpdec")?);
    }
    let webrtc_factories = [
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
    let webrtc_factories = if webrtc { &webrtc_factories[..] } else { &[] };
    for name in factories
        .into_iter()
        .chain(webrtc_factories.iter().copied())
    {
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
