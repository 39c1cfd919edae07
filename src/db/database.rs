//! The database this process works on, for `serve` and the one-shot
//! commands alike: DATABASE_URL, else the embedded PostgreSQL in the data
//! directory, started here and stopped by [`Database::close`]. With
//! AFFINITY_DIRECT_DATABASE_URL beside it, DATABASE_URL is a transaction
//! pooler's, for the calls only.

use sqlx::PgPool;

use super::embedded::EmbeddedDb;
use super::pool::{
    connect_pooled, connect_with_retry, connect_with_timeout, lazy_pool, url_options,
};
use super::pooler;
use crate::config::Config;

pub struct Database {
    url: String,
    /// Set when `url` is a transaction pooler's.
    direct_url: Option<String>,
    embedded: Option<EmbeddedDb>,
}

impl Database {
    /// Starts the embedded PostgreSQL (creating it on first use) when no
    /// DATABASE_URL is set; connects to nothing yet.
    pub async fn open(config: &Config) -> anyhow::Result<Database> {
        if let Some(url) = &config.database_url {
            return Ok(Database {
                url: url.clone(),
                direct_url: config.direct_database_url.clone(),
                embedded: None,
            });
        }
        if config.direct_database_url.is_some() {
            anyhow::bail!(
                "AFFINITY_DIRECT_DATABASE_URL is set without DATABASE_URL: set both (the \
                 pooler's URL and the database's), or neither for the embedded database"
            );
        }
        let dir = config.data_dir();
        tracing::info!(data_dir = %dir.display(), "starting the embedded PostgreSQL");
        let db = EmbeddedDb::start(&dir).await?;
        Ok(Database {
            url: db.url(),
            direct_url: None,
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
                    direct_url: None,
                    embedded: None,
                });
            }
        }
        Database::open(config).await
    }

    /// Whether the calls go through a transaction pooler.
    pub fn pooled(&self) -> bool {
        self.direct_url.is_some()
    }

    /// The direct URL: migrations, LISTEN, advisory locks.
    fn direct(&self) -> &str {
        self.direct_url.as_deref().unwrap_or(&self.url)
    }

    /// Fails when DATABASE_URL leads to a transaction pooler and no direct
    /// URL is set ([`pooler::check_direct`]).
    pub async fn check_not_pooled(&self) -> anyhow::Result<()> {
        if self.pooled() || self.embedded.is_some() {
            return Ok(());
        }
        pooler::check_direct(&url_options(&self.url)?).await
    }

    /// A small pool without the calls' statement timeout, for migrations
    /// (they may take minutes) and the one-shot commands.
    pub async fn admin_pool(&self) -> anyhow::Result<PgPool> {
        connect_with_retry(self.direct(), 2).await
    }

    /// The calls' pool: `AFFINITY_DB_MAX_CONNECTIONS` connections whose
    /// statement timeout is `AFFINITY_STATEMENT_TIMEOUT_MS`; behind a
    /// pooler, connections that look up `types` when they connect (the
    /// timeout is then set per call: `pooler::call_settings`).
    pub async fn calls_pool(
        &self,
        config: &Config,
        types: &'static [&'static str],
    ) -> anyhow::Result<PgPool> {
        match self.pooled() {
            true => connect_pooled(&self.url, config.db_max_connections, types).await,
            false => {
                connect_with_timeout(
                    &self.url,
                    config.db_max_connections,
                    config.statement_timeout(),
                )
                .await
            }
        }
    }

    /// The read replica's pool (AFFINITY_READ_DATABASE_URL), connecting on
    /// first use; it is reached as DATABASE_URL is (behind a pooler when
    /// the direct URL is set).
    pub fn read_pool(
        &self,
        config: &Config,
        types: &'static [&'static str],
    ) -> anyhow::Result<Option<PgPool>> {
        let Some(url) = &config.read_database_url else {
            return Ok(None);
        };
        let types = self.pooled().then_some(types);
        Ok(Some(lazy_pool(
            url,
            config.db_max_connections,
            config.statement_timeout(),
            types,
        )?))
    }

    /// Behind a pooler, a pool on the direct URL of `size` connections for
    /// the work beside the calls (LISTEN, the jobs' advisory locks, the
    /// vectorizer's claims); None when the calls' pool is direct itself.
    pub async fn background_pool(&self, size: u32) -> anyhow::Result<Option<PgPool>> {
        match &self.direct_url {
            Some(url) => Ok(Some(connect_with_retry(url, size).await?)),
            None => Ok(None),
        }
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
