//! `camera-agent snapshot`: one JPEG from the configured camera through
//! the legacy relay's capture path, written atomically, so a field tech can
//! see where a freshly mounted camera points without a viewer.
//!
//! When the camera cannot be opened, the error says what to check; a V4L2
//! device held by another process names that process (usually the running
//! daemon, which opens the camera for each viewer's session).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::Settings;
use crate::media::elements::MediaError;
use crate::media::jpeg::JpegCapture;
use crate::media::pipeline::MediaEvent;
use crate::media::runtime::init_gstreamer;
use crate::planning::{cameras_for, jpeg_plan};

/// How long the camera may take to deliver its first frame (a UVC camera
/// settling its exposure can take a couple of seconds).
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no usable capture path")]
    Plan(#[from] hw::PlanError),
    #[error("GStreamer set-up failed")]
    Media(#[from] MediaError),
    #[error("camera device {} does not exist; check the cable and `camera-agent probe`", .0.display())]
    NoDevice(PathBuf),
    #[error("the camera failed: {message}; {hint}")]
    Camera { message: String, hint: String },
    #[error("no frame from the camera within {} s; {hint}", .waited.as_secs())]
    NoFrame { waited: Duration, hint: String },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    pub bytes: usize,
    /// The plan's decisions (camera, mode, JPEG encoder).
    pub reasons: Vec<String>,
}

/// Takes one JPEG and writes it to `out` (temporary file, then rename).
pub async fn take(settings: &Settings, out: &Path) -> Result<Snapshot, SnapshotError> {
    init_gstreamer()?;
    let board = crate::probe::board().family;
    let plan = jpeg_plan(
        &settings.camera,
        settings.streaming,
        board,
        &cameras_for(&settings.camera.source),
    )?;
    let device = v4l2_device(&plan);
    if let Some(device) = &device
        && !device.exists()
    {
        return Err(SnapshotError::NoDevice(device.clone()));
    }
    let (events_tx, mut events) = mpsc::channel(8);
    let hint = || busy_hint(device.as_deref());
    let mut capture = match JpegCapture::start("snapshot", &plan, events_tx) {
        Ok(capture) => capture,
        // A camera that cannot be opened fails the start; the bus said why.
        Err(MediaError::Start(start)) => {
            let mut message = start;
            while let Ok(event) = events.try_recv() {
                if let MediaEvent::Error(error) = event {
                    message = error;
                    break;
                }
            }
            return Err(SnapshotError::Camera {
                message,
                hint: hint(),
            });
        }
        Err(err) => return Err(err.into()),
    };
    let outcome = tokio::time::timeout(FIRST_FRAME_TIMEOUT, async {
        loop {
            match events.recv().await {
                Some(MediaEvent::Frame(frame)) => return Ok(frame),
                Some(MediaEvent::Error(message)) => return Err(message),
                Some(_) => {}
                None => return Err("the pipeline stopped".to_string()),
            }
        }
    })
    .await;
    capture.stop();
    let frame = match outcome {
        Ok(Ok(frame)) => frame,
        Ok(Err(message)) => {
            return Err(SnapshotError::Camera {
                message,
                hint: hint(),
            });
        }
        Err(_) => {
            return Err(SnapshotError::NoFrame {
                waited: FIRST_FRAME_TIMEOUT,
                hint: hint(),
            });
        }
    };
    let bytes = frame.bytes()?;
    write_atomically(out, &bytes).map_err(|source| SnapshotError::Write {
        path: out.to_owned(),
        source,
    })?;
    Ok(Snapshot {
        path: out.to_owned(),
        bytes: bytes.len(),
        reasons: plan.reasons,
    })
}

/// The V4L2 device the plan opens, if it opens one.
fn v4l2_device(plan: &hw::JpegPlan) -> Option<PathBuf> {
    plan.steps.iter().find_map(|step| match step {
        hw::Step::Element(element) if element.factory == "v4l2src" => {
            element.property("device").map(PathBuf::from)
        }
        _ => None,
    })
}

/// What to check when the camera would not deliver.
fn busy_hint(device: Option<&Path>) -> String {
    let holders = device
        .map(|device| holders(Path::new("/proc"), device, std::process::id()))
        .unwrap_or_default();
    match holders.first() {
        Some((pid, name)) if name == "camera-agent" => format!(
            "{} is held by camera-agent (pid {pid}): the running daemon has the camera while a \
             viewer watches; try again when the stream ends, or stop the service \
             (`systemctl stop camera-agent`)",
            device
                .map(|path| path.display().to_string())
                .unwrap_or_default()
        ),
        Some((pid, name)) => format!(
            "{} is held by {name} (pid {pid}); close it and try again",
            device
                .map(|path| path.display().to_string())
                .unwrap_or_default()
        ),
        None => "check that the camera is connected (`camera-agent probe`), that this user may \
                 open it (group `video`), and that no running camera-agent is streaming from it"
            .into(),
    }
}

/// Processes other than `exclude` with `device` open: (pid, command name).
/// Reads `/proc` below `proc_root`; processes it may not inspect are
/// skipped.
fn holders(proc_root: &Path, device: &Path, exclude: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == exclude {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == device));
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .map(|name| name.trim().to_owned())
                .unwrap_or_default();
            found.push((pid, name));
        }
    }
    found.sort();
    found
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames
/// it over `path`: a reader never sees half a JPEG.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_holding_the_device_is_found_by_its_fd() {
        let dir = std::env::temp_dir().join(format!("ca-holders-{}", std::process::id()));
        let device = dir.join("video0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&device, b"").unwrap();
        let open = std::fs::File::open(&device).unwrap();
        let me = std::process::id();
        let found = holders(Path::new("/proc"), &device, 0);
        assert!(found.iter().any(|(pid, _)| *pid == me), "{found:?}");
        assert!(holders(Path::new("/proc"), &device, me).is_empty());
        drop(open);
        assert!(holders(Path::new("/proc"), &device, 0).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_write_is_whole_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("ca-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shot.jpg");
        std::fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new picture").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new picture");
        // Only the target remains: no temporary file left beside it.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let missing_dir = dir.join("missing").join("shot.jpg");
        assert!(write_atomically(&missing_dir, b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
