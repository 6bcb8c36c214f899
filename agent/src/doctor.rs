//! `camera-agent doctor`: checks an installation step by step, the way a
//! field tech would by hand, and prints one pass/fail line per step with a
//! hint for each failure. Works without systemd and changes nothing.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Secret, Settings, StreamingMode};
use crate::control_plane::rest::{RestClient, RestError};
use crate::control_plane::socketio::connection::{self, SignalingEvent, SocketSettings};
use crate::control_plane::tls::ExtraRoots;
use crate::errors::one_line;
use crate::media::runtime::init_gstreamer;
use crate::media::test_encode::test_encode;

/// One failed step: what is wrong and what to try.
#[derive(Clone)]
struct Failure {
    problem: String,
    hint: String,
}

fn fail(problem: impl ToString, hint: impl ToString) -> Failure {
    Failure {
        problem: problem.to_string(),
        hint: hint.to_string(),
    }
}

struct Report<'a, W: Write> {
    out: &'a mut W,
    failures: usize,
}

impl<W: Write> Report<'_, W> {
    fn step(&mut self, name: &str, result: Result<String, Failure>) -> bool {
        let _ = match &result {
            Ok(detail) => writeln!(self.out, "[ ok ] {name}: {detail}"),
            Err(failure) => {
                self.failures += 1;
                writeln!(
                    self.out,
                    "[FAIL] {name}: {}\n       hint: {}",
                    failure.problem, failure.hint
                )
            }
        };
        result.is_ok()
    }

    fn skip(&mut self, name: &str, because: &str) {
        let _ = writeln!(self.out, "[skip] {name}: {because}");
    }
}

/// Runs every check; true when all passed.
pub async fn run(config: &Path, overrides: &[String], out: &mut impl Write) -> bool {
    let mut report = Report { out, failures: 0 };
    let settings = match Settings::load(config, overrides) {
        Ok(loaded) => {
            let files = loaded.layered.files.len();
            report.step("configuration", Ok(format!("valid ({files} file(s))")));
            let mode = loaded.settings.streaming.mode;
            let origin = loaded.layered.origin("streaming.simple");
            report.step(
                "streaming mode",
                Ok(match mode {
                    StreamingMode::WebRtc => format!("{} ({origin})", mode.name()),
                    StreamingMode::LegacyJpeg => format!(
                        "{} ({origin}): rollback mode, JPEG frames over the socket",
                        mode.name()
                    ),
                }),
            );
            loaded.settings
        }
        Err(err) => {
            report.step(
                "configuration",
                Err(fail(one_line(&err), "fix the value named above; `camera-agent check-config` shows every setting and where it comes from")),
            );
            for name in [
                "streaming mode",
                "device token",
                "control plane",
                "login",
                "signaling socket",
                "camera",
                "encoder",
                "test capture",
            ] {
                report.skip(name, "needs a valid configuration");
            }
            return false;
        }
    };

    let token = check_token(&settings);
    report.step(
        "device token",
        token
            .as_ref()
            .map(|_| "present and private".to_string())
            .map_err(Failure::clone),
    );
    let reachable = report.step("control plane", check_reachable(&settings).await);
    let roots = roots(&settings);
    let logged_in = match (&token, reachable) {
        (Ok(token), true) => {
            report.step("login", check_login(&settings, token.clone(), &roots).await)
        }
        _ => {
            report.skip("login", "needs the token and a reachable control plane");
            false
        }
    };
    match (&token, logged_in) {
        (Ok(token), true) => {
            report.step(
                "signaling socket",
                check_socket(&settings, token.clone(), &roots).await,
            );
        }
        _ => report.skip("signaling socket", "needs a working login"),
    }

    // One probe serves the camera check and the plan.
    let cameras = init_gstreamer()
        .map(|()| crate::planning::cameras_for(&settings.camera.source))
        .map_err(|err| {
            fail(
                err,
                "install GStreamer 1.22 with the base, good, bad and ugly plugins",
            )
        });
    report.step("camera", check_camera(&settings, &cameras));
    let plan = match &cameras {
        Ok(cameras) => crate::planning::plan(
            &settings.camera,
            settings.encoder,
            crate::probe::board().family,
            cameras,
        )
        .map_err(|err| fail(err, "set encoder.kind to one that is available, or install its plugin (x264enc: gstreamer1.0-plugins-ugly); `camera-agent probe` shows what exists")),
        Err(failure) => Err(failure.clone()),
    };
    let plan_ok = report.step(
        "encoder",
        plan.as_ref()
            .map(|plan| {
                plan.encoder
                    .map(|kind| kind.factory().to_string())
                    .unwrap_or_else(|| "none: the camera's H.264 is passed through".into())
            })
            .map_err(Failure::clone),
    );
    if settings.streaming.mode == StreamingMode::LegacyJpeg {
        let jpeg = cameras
            .as_ref()
            .map_err(Failure::clone)
            .and_then(|cameras| {
                crate::planning::jpeg_plan(
                    &settings.camera,
                    settings.streaming,
                    crate::probe::board().family,
                    cameras,
                )
                .map(|plan| plan.reasons.join("; "))
                .map_err(|err| {
                    fail(
                        err,
                        "`camera-agent probe` shows the JPEG path each camera allows",
                    )
                })
            });
        report.step("legacy JPEG path", jpeg);
    }
    let capture = settings.camera.capture;
    let name = format!(
        "test capture + encode 2 s at {}x{}@{}",
        capture.width, capture.height, capture.framerate
    );
    match plan {
        Ok(plan) if plan_ok => {
            let result =
                tokio::task::spawn_blocking(move || test_encode(&plan, Duration::from_secs(2)))
                    .await
                    .unwrap_or_else(|err| {
                        Err(crate::media::elements::MediaError::Start(err.to_string()))
                    });
            report.step(
                &name,
                match result {
                    Ok(0) => Err(fail("no frame came out of the encoder", "the camera may not support this size or rate: check `v4l2-ctl --list-formats-ext`")),
                    Ok(frames) => Ok(format!("{frames} frames encoded")),
                    Err(err) => Err(fail(err, "the camera or encoder refused this size and rate; try another camera.width/height/framerate")),
                },
            );
        }
        _ => report.skip(&name, "needs an encoder"),
    }
    let failures = report.failures;
    let _ = if failures == 0 {
        writeln!(report.out, "all checks passed")
    } else {
        writeln!(report.out, "{failures} check(s) failed")
    };
    failures == 0
}

fn check_token(settings: &Settings) -> Result<Secret, Failure> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let path = settings.token_path(credentials.as_deref()).map_err(|err| {
        fail(
            one_line(&err),
            "write the camera's token to a file and set control_plane.token_file",
        )
    })?;
    crate::config::read_token(&path).map_err(|err| {
        fail(
            one_line(&err),
            format!(
                "the file must exist, hold only the token, and be readable only by the agent's user (chmod 600 {})",
                path.display()
            ),
        )
    })
}

async fn check_reachable(settings: &Settings) -> Result<String, Failure> {
    let url = &settings.control_plane.url;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let timeout = settings.control_plane.request_timeout;
    let addresses: Vec<std::net::SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| {
                fail(
                    format!("resolving {host} timed out"),
                    "check DNS on this device",
                )
            })?
            .map_err(|err| {
                fail(
                    format!("cannot resolve {host}: {err}"),
                    "check control_plane.url and DNS on this device",
                )
            })?
            .collect();
    let first = addresses
        .first()
        .copied()
        .ok_or_else(|| fail(format!("{host} has no address"), "check control_plane.url"))?;
    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(first))
        .await
        .map_err(|_| {
            fail(
                format!("connecting to {first} timed out"),
                "check the network, firewall and the port in control_plane.url",
            )
        })?
        .map_err(|err| {
            fail(
                format!("cannot connect to {first}: {err}"),
                "check the network, firewall and the port in control_plane.url",
            )
        })?;
    Ok(format!(
        "{host} resolves to {first} and accepts TCP{}",
        if url.scheme() == "https" {
            " (TLS is verified at login)"
        } else {
            ""
        }
    ))
}

const CA_FILE_HINT: &str = "point control_plane.ca_file at a PEM file with the CA certificate";

fn roots(settings: &Settings) -> Result<ExtraRoots, Failure> {
    ExtraRoots::from_setting(settings.control_plane.ca_file.as_deref())
        .map_err(|err| fail(one_line(&err), CA_FILE_HINT))
}

async fn check_login(
    settings: &Settings,
    token: Secret,
    roots: &Result<ExtraRoots, Failure>,
) -> Result<String, Failure> {
    let rest = RestClient::new(
        settings.control_plane.url.clone(),
        token,
        settings.control_plane.request_timeout,
        roots.as_ref().map_err(Failure::clone)?,
    )
    .map_err(|err| fail(err, "this is a bug; please report it"))?;
    match rest.me().await {
        Ok(me) if me.role == "camera" => Ok(format!("logged in as {} ({})", me.id, me.role)),
        Ok(me) => Err(fail(
            format!(
                "the token belongs to {}, whose role is {:?}",
                me.id, me.role
            ),
            "use the token of a camera device, not a client's",
        )),
        Err(RestError::Unauthorized) => Err(fail(
            "the control plane refused the device token (401)",
            "the token is wrong or revoked: get this camera's token from the control plane and replace the token file",
        )),
        Err(RestError::Transport(message)) => Err(fail(
            format!("request failed: {message}"),
            "for https, check the device clock and that the server's certificate is valid for control_plane.url",
        )),
        Err(err) => Err(fail(
            err,
            "the control plane answered unexpectedly; try again later",
        )),
    }
}

async fn check_socket(
    settings: &Settings,
    token: Secret,
    roots: &Result<ExtraRoots, Failure>,
) -> Result<String, Failure> {
    let tls = roots
        .as_ref()
        .map_err(Failure::clone)?
        .client_config()
        .map_err(|err| fail(one_line(&err), CA_FILE_HINT))?;
    let socket = SocketSettings::for_control_plane(&settings.control_plane, token, tls)
        .map_err(|err| fail(err, "check control_plane.url"))?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (events_tx, mut events) = mpsc::channel(16);
    let _handle = connection::spawn(
        // A check, not a service: retry fast, give up at the time limit.
        SocketSettings {
            reconnect_max: Duration::from_secs(1),
            reconnect_spread: Duration::from_millis(500),
            auth_reconnect_max: Duration::from_secs(60),
            ..socket
        },
        events_tx,
        cancel.clone(),
        &tracker,
    );
    let limit = settings.control_plane.request_timeout + Duration::from_secs(2);
    let outcome = tokio::time::timeout(limit, async {
        while let Some(event) = events.recv().await {
            match event {
                SignalingEvent::Connected { .. } => return Ok("connected to the Socket.IO namespace".to_string()),
                SignalingEvent::AuthRejected => {
                    return Err(fail("the socket refused the device token", "the token is wrong or revoked"));
                }
                _ => {}
            }
        }
        Err(fail("the signaling task stopped", "this is a bug; please report it"))
    })
    .await
    .unwrap_or_else(|_| {
        Err(fail(
            format!("no socket connection within {} s", limit.as_secs()),
            "check control_plane.socket_path and control_plane.namespace, and that websockets pass any proxy",
        ))
    });
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    outcome
}

fn check_camera(
    settings: &Settings,
    cameras: &Result<Vec<hw::Camera>, Failure>,
) -> Result<String, Failure> {
    match &settings.camera.source {
        hw::SourceKind::Test => Ok("test pattern (no camera needed)".into()),
        hw::SourceKind::Auto | hw::SourceKind::Libcamera { .. } => {
            let cameras = cameras.as_ref().map_err(Failure::clone)?;
            let wanted_libcamera =
                matches!(settings.camera.source, hw::SourceKind::Libcamera { .. });
            cameras
                .iter()
                .find(|camera| camera.usable() && (!wanted_libcamera || camera.api == hw::CameraApi::Libcamera))
                .map(|camera| format!("{} found", camera.name))
                .ok_or_else(|| {
                    fail(
                        format!("no usable camera found ({} device(s) seen)", cameras.len()),
                        "plug the camera in (for a Pi camera module: install gstreamer1.0-libcamera); `camera-agent probe` lists what is seen",
                    )
                })
        }
        hw::SourceKind::V4l2 { device } => {
            if !device.exists() {
                return Err(fail(
                    format!("{} does not exist", device.display()),
                    "is the camera plugged in? `ls /dev/video*` lists the devices; set camera.device",
                ));
            }
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(device)
                .map(|_| format!("{} opens", device.display()))
                .map_err(|err| {
                    fail(
                        format!("cannot open {}: {err}", device.display()),
                        "the agent's user must be in the `video` group, and no other program may hold the camera",
                    )
                })
        }
    }
}
