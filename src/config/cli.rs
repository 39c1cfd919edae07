//! The command line: `serve` (the default) with the [`Config`], and the
//! one-shot commands with their arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{redact_url_password, Config};

#[derive(Debug, Parser)]
#[command(
    name = "affinity",
    version,
    about = "gRPC service for content similarity, metrics, organizations and AI context over PostgreSQL + pgvector",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `affinity` with no subcommand serves, with these settings.
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service (the default).
    Serve(Config),
    /// Print a JWT signed with the service's secret, for local use.
    Token(TokenArgs),
    /// Apply the bundled migrations to the database (every pending phase in
    /// one transaction), then exit. With --rollback: return a migrated legacy
    /// database to the legacy schema instead.
    Migrate(MigrateArgs),
    /// Print verify_migration_integrity() as a table; exit 1 when a check fails.
    Verify(Config),
    /// Drop the legacy *_backup tables (finalize_migration_cleanup()), only
    /// when every integrity check passes. Rollback is impossible afterwards.
    Finalize(Config),
    /// On a Citus coordinator, after `migrate`: make the schema a Citus one
    /// (reference tables, every tenant table distributed by
    /// organization_id and co-located). Once; again, it does nothing.
    Distribute(Config),
    /// Print the embedding queue's state (pending, being embedded, set
    /// aside, with their errors); with --requeue-failed, put the items set
    /// aside back in the queue.
    Vectorizer(VectorizerArgs),
}

/// `affinity vectorizer`: the database settings of `serve`, and what to do.
#[derive(Debug, Args)]
pub struct VectorizerArgs {
    /// Put every item set aside after too many failures back in the queue.
    #[arg(long)]
    pub requeue_failed: bool,

    #[command(flatten)]
    pub config: Config,
}

/// `affinity migrate`: the database settings of `serve`, and the direction.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Undo the migrations of a legacy database: the *_backup and archived
    /// tables become the legacy tables again, with every legacy row; every
    /// object the migrations created is dropped (with what was written into
    /// it since). Refused after `affinity finalize`, and on a schema built on
    /// an empty database.
    #[arg(long)]
    pub rollback: bool,

    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Authenticated,
    #[value(name = "service_role")]
    ServiceRole,
}

/// Its `Debug` leaves the secret out.
#[derive(Clone, Args)]
pub struct TokenArgs {
    /// The user's UUID (the token's `sub`).
    #[arg(long)]
    pub user: uuid::Uuid,
    /// `authenticated` (a user) or `service_role` (a trusted backend).
    #[arg(long, value_enum, default_value = "authenticated")]
    pub role: TokenRole,
    /// Lifetime, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// The secret; unset: the one the embedded service generated.
    #[arg(long, env = "AFFINITY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Data directory holding the generated secret.
    #[arg(long, env = "AFFINITY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// As for `serve`: when set, the secret must be configured (the
    /// embedded service's generated one is not in use).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("user", &self.user)
            .field("role", &self.role)
            .field("ttl", &self.ttl)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url_password),
            )
            .finish()
    }
}
