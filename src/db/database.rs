//! The database this process works on, for `serve` and the one-shot
//! commands alike: DATABASE_URL, else the embedded PostgreSQL in the data
//! directory, started here and stopped by [`Database::close`].

use sqlx::PgPool;

use super::embedded::EmbeddedDb;
use super::pool::{connect_with_retry, connect_with_timeout};
use crate::config::Config;

pub struct Database {
    url: String,
    embedded: Option<EmbeddedDb>,
}

impl Database {
    /// Starts the embedded PostgreSQL (creating it on first use) when no
    /// DATABASE_URL is set; connects to nothing yet.
    pub async fn open(config: &Config) -> anyhow::Result<Database> {
        if let Some(url) = &config.database_url {
            return Ok(Database {
                url: url.clone(),
                embedded: None,
            });
        }
        let dir = config.data_dir();
        tracing::info!(data_dir = %dir.display(), "starting the embedded PostgreSQL");
        let db = EmbeddedDb::start(&dir).await?;
        Ok(Database {
            url: db.url(),
            embedded: Some(db),
        })
    }

    /// For the one-shot commands: like [`Database::open`], except that an
    /// embedded PostgreSQL already running (a service on the same data
    /// directory) is used as it is, and left running.
    pub async fn attach(config: &Config) -> anyhow::Result<Database> {
        if config.database_url.is_none() {
            if let Some(url) = EmbeddedDb::running_url(&config.data_dir()) {
                tracing::info!("using the embedded PostgreSQL the service runs");
                return Ok(Database {
                    url,
                    embedded: None,
                });
            }
        }
        Database::open(config).await
    }

    /// A small pool without the calls' statement timeout, for migrations
    /// (they may take minutes) and the one-shot commands.
    pub async fn admin_pool(&self) -> anyhow::Result<PgPool> {
        connect_with_retry(&self.url, 2).await
    }

    /// The calls' pool: `AFFINITY_DB_MAX_CONNECTIONS` connections whose
    /// statement timeout is `AFFINITY_STATEMENT_TIMEOUT_MS`.
    pub async fn calls_pool(&self, config: &Config) -> anyhow::Result<PgPool> {
        connect_with_timeout(
            &self.url,
            config.db_max_connections,
            config.statement_timeout(),
        )
        .await
    }

    /// Stops the embedded PostgreSQL, if this process started it.
    pub async fn close(self) -> anyhow::Result<()> {
        match self.embedded {
            Some(db) => {
                db.stop().await?;
                tracing::info!("embedded PostgreSQL stopped");
                Ok(())
            }
            None => Ok(()),
        }
    }
}
