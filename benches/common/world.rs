//! What several benchmarks do alike: a private cluster with a migrated
//! database, an organization through the API, and the Markdown section
//! written where asked.

use std::io::Write as _;
use std::path::Path;

use affinity::db::cluster::PgCluster;
use affinity::proto;
use anyhow::{Context, Result};
use sqlx::PgPool;
use uuid::Uuid;

/// A private durable cluster in `dir` with an empty database `name`,
/// migrated: the cluster, the database's URL, a pool of 4 on it, and the
/// versions of PostgreSQL and pgvector.
pub async fn migrated_database(
    dir: &Path,
    name: &str,
) -> Result<(PgCluster, String, PgPool, String)> {
    let cluster = crate::setup::start_cluster(dir)?;
    let admin = crate::setup::connect(&cluster.url("postgres"), 1).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let url = cluster.url(name);
    let pool = crate::setup::connect(&url, 4).await?;
    affinity::db::migrate::run(&pool)
        .await
        .context("migrating")?;
    let versions = crate::setup::versions(&pool).await?;
    Ok((cluster, url, pool, versions))
}

/// A new organization named `name`, owned by `owner`, through the service.
pub async fn organization(
    channel: &tonic::transport::Channel,
    token: &str,
    owner: Uuid,
    name: &str,
) -> Result<Uuid> {
    let mut req = tonic::Request::new(proto::CreateOrganizationRequest {
        name: name.into(),
        slug: format!("bench-{name}-{}", &Uuid::new_v4().simple().to_string()[..8]),
        owner_user_id: owner.to_string(),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let org = proto::organization_service_client::OrganizationServiceClient::new(channel.clone())
        .create_organization(req)
        .await?
        .into_inner();
    Ok(org.id.parse()?)
}

/// Appends the section to `out`, or prints it when there is none.
pub fn emit(section: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)?;
            f.write_all(section.as_bytes())?;
            eprintln!("appended to {}", path.display());
        }
        None => print!("{section}"),
    }
    Ok(())
}
