//! `camera-agent`: parse the command line, set up logging, run a subcommand.
//! `run` returns every failure as an error; `report` alone prints it (each
//! cause once) and maps it to the exit status. The logic lives in the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use camera_agent::app::{self, RunError};
use camera_agent::config::{ConfigError, Settings};
use camera_agent::errors;
use camera_agent::logging::{self, LogFormat};

/// Exit status for configuration errors (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

const DEFAULT_CONFIG: &str = "/etc/camera-agent/agent.toml";

/// Streams a camera to a viewer over WebRTC when the control plane asks.
///
/// Configuration layers, later ones winning: built-in defaults, the config
/// file, its drop-ins (`<config>.d/*.toml`, in lexical order), environment
/// variables `CAMERA_AGENT_<SECTION>_<KEY>`, then `--set section.key=value`.
/// The device token is read from `control_plane.token_file` or the systemd
/// credential `device-token`, never from the command line.
#[derive(Debug, Parser)]
#[command(about, long_about, disable_version_flag = true)]
struct Cli {
    /// Print version, git revision and the GStreamer version found at run time.
    #[arg(long, short = 'V')]
    version: bool,
    /// Log format: text or JSON lines on stderr, or the systemd journal
    /// (the default when started by systemd).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The config file and per-run overrides, shared by every subcommand.
#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// Configuration file (its drop-ins are read from `<file>.d/`).
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Override one setting, e.g. `--set camera.width=640` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    ///
    /// Example: camera-agent run --config /etc/camera-agent/agent.toml
    Run(ConfigArgs),
    /// Validate the configuration and print every effective setting with
    /// where it comes from (default, file:line, environment, --set).
    ///
    /// Exits 0 when valid, 78 (EX_CONFIG) when not.
    /// Example: camera-agent check-config --config ./agent.toml
    CheckConfig(ConfigArgs),
    /// Check the installation step by step: configuration, token, control
    /// plane, login, socket, camera, encoder, and a 2-second test encode.
    ///
    /// Exits 0 when every check passes, 1 otherwise.
    /// Example: camera-agent doctor
    Doctor(ConfigArgs),
    /// Show the board, cameras (with their formats), the H.264 encoders
    /// installed, and the pipeline `auto` would choose and why. Needs no
    /// configuration and no network.
    ///
    /// Example: camera-agent probe --json
    Probe {
        /// Print stable JSON instead of the readable report.
        #[arg(long)]
        json: bool,
        /// Plan for this configuration instead of `auto` at 1280x720@30.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Take one JPEG from the configured camera (the legacy relay's
    /// capture path) and write it atomically, to check where a camera
    /// points. Needs no network.
    ///
    /// Exits 0 when the picture was written, 1 when the camera failed
    /// (the error says why: missing, busy, no permission).
    /// Example: camera-agent snapshot --config /etc/camera-agent/agent.toml --out /tmp/view.jpg
    Snapshot {
        #[command(flatten)]
        config: ConfigArgs,
        /// Where to write the JPEG.
        #[arg(long, short)]
        out: PathBuf,
    },
}

fn version() -> String {
    let gstreamer = gst_version().unwrap_or_else(|| "not found".into());
    format!(
        "camera-agent {} (git {})\nGStreamer {gstreamer}",
        env!("CARGO_PKG_VERSION"),
        env!("CAMERA_AGENT_GIT_REVISION")
    )
}

fn gst_version() -> Option<String> {
    camera_agent::media::runtime::runtime_version()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    app::runtime().context("cannot start the async runtime")
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// A command line that names no subcommand.
#[derive(Debug, thiserror::Error)]
#[error("a subcommand is needed (run, check-config, doctor); see --help")]
struct NoSubcommand;

/// The one place an error leaves the program: prints it and each cause
/// once, then exits with the status its kind calls for.
fn report(err: &anyhow::Error) -> ExitCode {
    let mut lines = errors::messages(&**err).into_iter();
    if let Some(first) = lines.next() {
        eprintln!("error: {first}");
    }
    for cause in lines {
        eprintln!("  caused by: {cause}");
    }
    ExitCode::from(exit_code(err))
}

/// The exit status for an error: 78 (sysexits EX_CONFIG) for anything the
/// configuration must fix, which the systemd unit does not restart on; 2
/// for a bad command line; 1 otherwise, so systemd restarts and retries.
fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(run) = cause.downcast_ref::<RunError>() {
            return match run {
                // No camera right now is the hardware's state, not the
                // configuration's: exit 1 so systemd restarts and tries
                // again (a camera plugged in after boot is then picked up).
                RunError::Plan(hw::PlanError::NoCamera { .. }) => 1,
                RunError::Config(_)
                | RunError::WrongRole { .. }
                | RunError::Plan(_)
                | RunError::Tls(_) => EXIT_CONFIG,
                _ => 1,
            };
        }
        if cause.is::<ConfigError>() {
            return EXIT_CONFIG;
        }
        if cause.is::<NoSubcommand>() {
            return 2;
        }
    }
    1
}

/// Runs the command line; `Ok` carries the status of a command that ran
/// (doctor exits 1 when a check failed, having said so itself).
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.version {
        println!("{}", version());
        return Ok(ExitCode::SUCCESS);
    }
    let command = cli.command.ok_or(NoSubcommand)?;
    logging::init(cli.log_format.unwrap_or_else(LogFormat::detect));
    match command {
        Command::CheckConfig(args) => check_config(&args)?,
        Command::Probe { json, config } => probe(json, config.as_deref())?,
        Command::Doctor(args) => {
            let passed = runtime()?.block_on(camera_agent::doctor::run(
                &args.config,
                &args.overrides,
                &mut std::io::stdout(),
            ));
            if !passed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Run(args) => {
            let loaded = Settings::load(&args.config, &args.overrides)?;
            let mode_origin = loaded.layered.origin("streaming.simple").to_string();
            camera_agent::memory::limit_arenas();
            runtime()?.block_on(app::run(loaded.settings, mode_origin))?;
        }
        Command::Snapshot { config, out } => {
            let settings = Settings::load(&config.config, &config.overrides)?.settings;
            let snapshot = runtime()?
                .block_on(camera_agent::snapshot::take(&settings, &out))
                .with_context(|| format!("no snapshot written to {}", out.display()))?;
            println!(
                "wrote {} ({} bytes; {})",
                snapshot.path.display(),
                snapshot.bytes,
                snapshot.reasons.join("; ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn probe(json: bool, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let settings = match config {
        Some(path) => Some(Settings::load(path, &[])?.settings),
        None => None,
    };
    let found = camera_agent::probe::probe()?;
    // Without a configuration: what `auto` would do with the defaults.
    let (camera, encoder, streaming) = match settings {
        Some(settings) => (settings.camera, settings.encoder, settings.streaming),
        // Empty sections are valid by construction; kept an error, not a panic.
        None => {
            let (camera, encoder) = camera_agent::config::probe_defaults()?;
            (camera, encoder, Default::default())
        }
    };
    let board = found.board.family;
    let plan = camera_agent::planning::plan(&camera, encoder, board, &found.cameras);
    let jpeg = camera_agent::planning::jpeg_plan(&camera, streaming, board, &found.cameras);
    if json {
        fn plan_json<T: serde::Serialize + std::fmt::Display, E: std::fmt::Display>(
            plan: &Result<T, E>,
        ) -> anyhow::Result<serde_json::Value> {
            Ok(match plan {
                Ok(plan) => serde_json::json!({
                    "ok": serde_json::to_value(plan).context("plan not serialisable")?,
                    "text": plan.to_string(),
                }),
                Err(err) => serde_json::json!({ "error": err.to_string() }),
            })
        }
        let report = serde_json::json!({
            "board": found.board,
            "gstreamer": found.gstreamer,
            "cameras": found.cameras,
            "encoders": found.encoders,
            "streaming_mode": streaming.mode.name(),
            "plan": plan_json(&plan)?,
            "legacy_jpeg_plan": plan_json(&jpeg)?,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", found.report(&plan));
        println!(
            "\nlegacy JPEG relay (SIMPLE_STREAMING=0){}",
            if streaming.mode == camera_agent::config::StreamingMode::LegacyJpeg {
                ", the configured mode"
            } else {
                ""
            }
        );
        match &jpeg {
            Ok(jpeg) => {
                for reason in &jpeg.reasons {
                    println!("  {reason}");
                }
                println!("  {jpeg}");
            }
            Err(err) => println!("  not possible: {err}"),
        }
    }
    Ok(())
}

fn check_config(args: &ConfigArgs) -> Result<(), ConfigError> {
    let loaded = Settings::load(&args.config, &args.overrides)?;
    let files: Vec<String> = loaded
        .layered
        .files
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    println!("# valid; files read: {}", files.join(", "));
    let mut section = "";
    for (key, value) in loaded.settings.effective() {
        let (this_section, name) = key.split_once('.').unwrap_or(("", key));
        if this_section != section {
            println!("\n[{this_section}]");
            section = this_section;
        }
        let line = format!("{name} = {value}");
        println!("{line:<48} # {}", loaded.layered.origin(key));
    }
    Ok(())
}
