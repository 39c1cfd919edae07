//! The `affinity` binary: `serve` (the default), `token`, `migrate`
//! (`--rollback`), `verify`, `finalize`, `distribute`, `vectorizer`.
use std::io::IsTerminal;
use std::process::ExitCode;

use affinity::config::{Cli, Command, LogFormat};
use affinity::{commands, server};
use clap::Parser;
use tracing_subscriber::EnvFilter;

// mimalloc: glibc's malloc and free were ~10% of the service's CPU per call
// (perf), for the many small, short-lived allocations of each call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only for a person at a terminal, not in files or collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(config) => {
            init_logging(config.log_format);
            server::serve(config).await
        }
        Command::Migrate(args) => {
            init_logging(args.config.log_format);
            if args.rollback {
                commands::rollback(args.config).await
            } else {
                commands::migrate(args.config).await
            }
        }
        Command::Verify(config) => {
            init_logging(config.log_format);
            match commands::verify(config).await {
                // Checks ran and one failed: exit 1, like an error.
                Ok(false) => return ExitCode::FAILURE,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Command::Finalize(config) => {
            init_logging(config.log_format);
            commands::finalize(config).await
        }
        Command::Distribute(config) => {
            init_logging(config.log_format);
            commands::distribute(config).await
        }
        Command::Token(args) => commands::token(args),
        Command::Vectorizer(args) => {
            init_logging(args.config.log_format);
            commands::vectorizer(args).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("affinity: {e:#}");
            ExitCode::FAILURE
        }
    }
}
