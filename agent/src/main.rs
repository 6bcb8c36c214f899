//! `camera-agent`: parse the command line, set up logging, run a subcommand,
//! map errors to exit codes. The logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use camera_agent::app::{self, EXIT_CONFIG};
use camera_agent::config::Settings;
use camera_agent::logging::{self, LogFormat};

/// Streams a camera to a viewer over WebRTC when the control plane asks.
///
/// The device token is read from the file named by
/// `control_plane.token_file`, never from the command line.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    ///
    /// Example: camera-agent run --config /etc/camera-agent/agent.toml
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/camera-agent/agent.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and print the effective settings.
    ///
    /// Exits 0 when valid, 78 (EX_CONFIG) when not.
    CheckConfig {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/camera-agent/agent.toml")]
        config: PathBuf,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::CheckConfig { config } => match Settings::load(&config) {
            Ok(settings) => {
                println!("{}: valid\n{settings:#?}", config.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                print_error_chain(&err);
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config } => {
            let settings = match Settings::load(&config) {
                Ok(settings) => settings,
                Err(err) => {
                    print_error_chain(&err);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match run(settings) {
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

fn run(settings: Settings) -> anyhow::Result<Result<(), app::RunError>> {
    camera_agent::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(app::run(settings)))
}
