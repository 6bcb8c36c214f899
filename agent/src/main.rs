//! `camera-agent`: parse the command line, set up logging, run a subcommand,
//! map errors to exit codes. The logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use camera_agent::app::{self, EXIT_CONFIG};
use camera_agent::config::Settings;
use camera_agent::logging::{self, LogFormat};

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
}

fn print_error_chain(error: &dyn std::error::Error) {
    eprintln!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
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
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", version());
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        eprintln!("error: a subcommand is needed (run, check-config, doctor); see --help");
        return ExitCode::from(2);
    };
    logging::init(cli.log_format.unwrap_or_else(LogFormat::detect));
    match command {
        Command::CheckConfig(args) => check_config(&args),
        Command::Probe { json, config } => probe(json, config.as_deref()),
        Command::Doctor(args) => {
            let passed = runtime().map(|runtime| {
                runtime.block_on(camera_agent::doctor::run(
                    &args.config,
                    &args.overrides,
                    &mut std::io::stdout(),
                ))
            });
            match passed {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            let settings = match Settings::load(&args.config, &args.overrides) {
                Ok(loaded) => loaded.settings,
                Err(err) => {
                    print_error_chain(&err);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            camera_agent::memory::limit_arenas();
            match runtime().map(|runtime| runtime.block_on(app::run(settings))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(err)) => {
                    print_error_chain(&err);
                    ExitCode::from(err.exit_code())
                }
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn probe(json: bool, config: Option<&std::path::Path>) -> ExitCode {
    let settings = match config.map(|path| Settings::load(path, &[])) {
        Some(Ok(loaded)) => Some(loaded.settings),
        Some(Err(err)) => {
            print_error_chain(&err);
            return ExitCode::from(EXIT_CONFIG);
        }
        None => None,
    };
    let found = match camera_agent::probe::probe(std::path::Path::new("/")) {
        Ok(found) => found,
        Err(err) => {
            print_error_chain(&err);
            return ExitCode::FAILURE;
        }
    };
    // Without a configuration: what `auto` would do with the defaults.
    let (camera, encoder) = match settings {
        Some(settings) => (settings.camera, settings.encoder),
        None => match camera_agent::config::probe_defaults() {
            Ok(defaults) => defaults,
            // Empty sections are valid by construction; kept an error, not a panic.
            Err(err) => {
                print_error_chain(&err);
                return ExitCode::FAILURE;
            }
        },
    };
    let plan = app::plan(&camera, encoder, found.board.family, &found.cameras);
    if json {
        let plan_json = match &plan {
            Ok(plan) => serde_json::json!({ "ok": plan, "text": plan.to_string() }),
            Err(err) => serde_json::json!({ "error": err.to_string() }),
        };
        let report = serde_json::json!({
            "board": found.board,
            "gstreamer": found.gstreamer,
            "cameras": found.cameras,
            "encoders": found.encoders,
            "plan": plan_json,
        });
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", found.report(&plan));
    }
    ExitCode::SUCCESS
}

fn check_config(args: &ConfigArgs) -> ExitCode {
    match Settings::load(&args.config, &args.overrides) {
        Ok(loaded) => {
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
            ExitCode::SUCCESS
        }
        Err(err) => {
            print_error_chain(&err);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
