//! The daemon's start-up and shutdown: load, log in, connect, supervise,
//! and on SIGTERM/SIGINT end live sessions and wait for every task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{ConfigError, Settings, StreamingMode};
use crate::control_plane::reconnect::{Outcome, Reconnect, ReconnectPolicy};
use crate::control_plane::rest::{DeviceInfo, RestClient, RestError};
use crate::control_plane::socketio::connection::{self, SocketSettings};
use crate::control_plane::tls::ExtraRoots;
use crate::media::dtls::{DtlsError, DtlsIdentity};
use crate::media::elements::MediaError;
use crate::media::pipeline::MediaConfig;
use crate::media::runtime::{init_gstreamer, preload};
use crate::planning::{self, MediaPlan};
use crate::session::actor::SessionContext;
use crate::session::machine::{SessionPolicy, SessionTimings, Transport};
use crate::session::relay::RelayPolicy;
use crate::supervisor::Supervisor;
use crate::systemd::Notifier;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "the control plane says this device's role is {role:?}; a camera agent needs a `camera` token"
    )]
    WrongRole { role: String },
    #[error("no usable media pipeline")]
    Plan(#[from] hw::PlanError),
    #[error("GStreamer set-up failed")]
    Media(#[from] MediaError),
    #[error(transparent)]
    Dtls(#[from] DtlsError),
    #[error("cannot create the REST client")]
    Rest(#[from] RestError),
    #[error("cannot derive the socket URL: {0}")]
    SocketUrl(String),
    #[error(transparent)]
    Tls(#[from] crate::control_plane::tls::TlsError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

/// How long a blocking-pool thread waits for more work before it exits.
/// The pool serves rare one-off calls (resolving a `turns:` server's name,
/// doctor's test encode); tokio's default of 10 s left such a thread behind
/// every session that resolved a name, so a finished session was not back
/// at the idle thread count for 10 s.
const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_millis(100);

/// The runtime every command runs on: two workers (the devices have few
/// cores) and a blocking pool that gives its threads back at once.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .enable_all()
        .build()
}

/// Runs the daemon until SIGTERM or SIGINT; `mode_origin` says where the
/// streaming mode was set (for the start-up record).
pub async fn run(settings: Settings, mode_origin: String) -> Result<(), RunError> {
    let shutdown = CancellationToken::new();
    let signals = spawn_signal_listener(shutdown.clone()).map_err(RunError::Signals)?;
    let result = run_until(settings, mode_origin, shutdown).await;
    signals.abort();
    result
}

fn spawn_signal_listener(
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        shutdown.cancel();
    }))
}

/// Runs the daemon until `shutdown` is cancelled.
async fn run_until(
    settings: Settings,
    mode_origin: String,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let token = settings.read_token()?;
    init_gstreamer()?;
    let mode = settings.streaming.mode;
    info!(streaming_mode = mode.name(), streaming_mode_origin = %mode_origin, "streaming mode");
    let plan = planning::plan_for(&settings)?;
    preload(plan.factories(), mode == StreamingMode::WebRtc)?;
    for reason in plan.reasons() {
        info!(%reason, "plan");
    }
    info!(plan = %plan, "media pipeline planned");
    let relay = match &plan {
        MediaPlan::WebRtc(_) => None,
        MediaPlan::LegacyJpeg(jpeg) => Some(RelayPolicy {
            quality: settings.streaming.legacy_quality,
            adjustable: jpeg.encoder != hw::JpegEncoder::Camera,
        }),
    };
    let identity = DtlsIdentity::generate()?;
    info!(
        fingerprint = identity.fingerprint(),
        "DTLS certificate ready (ECDSA P-256)"
    );

    let roots = ExtraRoots::from_setting(settings.control_plane.ca_file.as_deref())?;
    let rest = RestClient::new(
        settings.control_plane.url.clone(),
        token.clone(),
        settings.control_plane.request_timeout,
        &roots,
    )?;
    let notifier = Arc::new(Notifier::from_env());
    let policy = ReconnectPolicy::new(
        settings.control_plane.reconnect_spread,
        settings.control_plane.reconnect_max,
    );
    let Some(me) = login(&rest, &shutdown, policy, &notifier).await else {
        notifier.stopping();
        return Ok(());
    };
    if me.role != "camera" {
        return Err(RunError::WrongRole { role: me.role });
    }
    info!(device_id = %me.id, name = me.name.as_deref().unwrap_or(""), "logged in");

    let tracker = TaskTracker::new();
    let socket_cancel = CancellationToken::new();
    let (events_tx, events_rx) = mpsc::channel(64);
    let socket =
        SocketSettings::for_control_plane(&settings.control_plane, token, roots.client_config()?)
            .map_err(RunError::SocketUrl)?;
    // The supervisor publishes its live-session count; the socket reads it
    // when it is lost, to choose between a fast and a spread retry.
    let (live_tx, live_rx) = watch::channel(0);
    let signaling =
        connection::spawn_watching(socket, live_rx, events_tx, socket_cancel.clone(), &tracker);
    let ctx = Arc::new(SessionContext {
        rest,
        signaling,
        plan,
        media: MediaConfig {
            identity,
            ice: Default::default(),
            local_addresses: settings.webrtc.local_addresses.clone(),
        },
        stun_servers: settings.webrtc.stun_servers.clone(),
        turn_servers: settings.webrtc.turn_servers.clone(),
        turn_tls: crate::media::turn_tls::client_config(&roots)?,
        policy: SessionPolicy {
            timings: SessionTimings {
                answer_timeout: settings.session.answer_timeout,
                ice_timeout: settings.session.ice_timeout,
                ice_disconnect_grace: settings.session.ice_disconnect_grace,
                max_duration: settings.session.max_duration,
                media_timeout: settings.session.media_timeout,
            },
            bitrate: settings.encoder.bitrate,
            capture: settings.camera.capture,
            transport: match &relay {
                Some(relay) => Transport::LegacyJpeg(*relay),
                None => Transport::WebRtc,
            },
        },
        end_timeout: Duration::from_secs(3),
    });
    let supervisor = Supervisor::new(
        ctx,
        me.id,
        settings.session.max_sessions,
        settings.session.signaling_grace,
        tracker.clone(),
        notifier.clone(),
        live_tx,
    );
    info!("ready");
    supervisor.run(events_rx, shutdown).await;
    // Sessions are gone; now the socket may close.
    socket_cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not finish within 3 s of shutdown");
    }
    info!("stopped");
    Ok(())
}

/// `GET /devices/me` until it answers; `None` if shutdown came first.
/// systemd hears READY after the first attempt, whatever its outcome: a
/// camera whose network is not up at boot must still start and keep trying.
async fn login(
    rest: &RestClient,
    shutdown: &CancellationToken,
    policy: ReconnectPolicy,
    notifier: &Notifier,
) -> Option<DeviceInfo> {
    let mut policy = Reconnect::new(policy);
    let origin = tokio::time::Instant::now();
    let mut first = true;
    let watchdog = notifier.watchdog_period();
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return None,
            result = rest.me() => result,
        };
        let (delay, status) = match result {
            Ok(me) => {
                if first {
                    notifier.ready(&format!("logged in as {}; connecting", me.id));
                }
                return Some(me);
            }
            Err(err) => {
                let outcome = err.retry_outcome();
                let delay = policy.next(origin.elapsed(), outcome, rand::random::<f64>());
                match outcome {
                    Outcome::AuthRejected => {
                        warn!(
                            retry_in_ms = delay.as_millis() as u64,
                            refused = "device_token",
                            "login refused: the control plane does not accept this device token \
                             (check control_plane.token_file)"
                        );
                        (delay, "device token refused by the control plane; retrying")
                    }
                    Outcome::Refused { retry_after } => {
                        warn!(
                            error = %err,
                            outcome = "refused",
                            retry_after_ms = retry_after.map(|after| after.as_millis() as u64),
                            retry_in_ms = delay.as_millis() as u64,
                            "login refused: control plane busy"
                        );
                        (delay, "control plane busy; retrying")
                    }
                    _ => {
                        warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "login failed; retrying");
                        (delay, "control plane unreachable; retrying")
                    }
                }
            }
        };
        if first {
            notifier.ready(status);
            first = false;
        } else {
            notifier.status(status);
        }
        let wake = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep_until(wake) => break,
                _ = tokio::time::sleep(watchdog) => notifier.watchdog(),
            }
        }
    }
}
