//! The `affinity` binary: `serve` (the default), `token`, `migrate`
//! (`--rollback`), `verify`, `finalize`.
use std::io::IsTerminal;
use std::process::ExitCode;

use affinity::config::{Cli, Command, Config, LogFormat, TokenRole};
use affinity::{auth, db, server};
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = affinity::transport::Listener::bind(&config.listen_addr).await?;
    server::run(config, listener, server::shutdown_signal()).await
}

fn token(args: affinity::config::TokenArgs) -> anyhow::Result<()> {
    let secret = match args.jwt_secret.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => {
            let dir = args
                .data_dir
                .unwrap_or_else(affinity::config::default_data_dir);
            let path = db::embedded::secret_path(&dir);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no secret: set AFFINITY_JWT_SECRET, or start `affinity serve` once so that it generates {}",
                        path.display()
                    )
                })?
        }
    };
    let role = match args.role {
        TokenRole::Authenticated => auth::ROLE_AUTHENTICATED,
        TokenRole::ServiceRole => auth::ROLE_SERVICE,
    };
    println!(
        "{}",
        auth::mint(secret.as_bytes(), args.user, role, args.ttl)?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(config) => {
            init_logging(config.log_format);
            serve(config).await
        }
        Command::Migrate(args) => {
            init_logging(args.config.log_format);
            if args.rollback {
                server::rollback_only(args.config).await
            } else {
                server::migrate_only(args.config).await
            }
        }
        Command::Verify(config) => {
            init_logging(config.log_format);
            match server::verify_only(config).await {
                // Checks ran and one failed: exit 1, like an error.
                Ok(false) => return ExitCode::FAILURE,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Command::Finalize(config) => {
            init_logging(config.log_format);
            server::finalize_only(config).await
        }
        Command::Token(args) => token(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("affinity: {e:#}");
            ExitCode::FAILURE
        }
    }
}
