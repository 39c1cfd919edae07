//! The Citus side: the same rows on a coordinator and two workers, the
//! schema migrated and distributed, searched through the same service.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use uuid::Uuid;

use crate::data::{self, Layout, Model, Query};
use crate::report::Side;
use crate::{measure, measure_sides, organizations, procfs, serve, setup, Args};

/// The same rows on a coordinator and two workers, distributed.
#[allow(clippy::too_many_arguments)]
pub async fn on_citus(
    args: &Args,
    storage: &str,
    dir: &Path,
    model: &Arc<Model>,
    layout: &Layout,
    queries: &[Query],
    token: &str,
    owner: Uuid,
) -> Result<Vec<Side>> {
    let mut citus = affinity_testkit::citus::CitusCluster::start(2, "vectors").await?;
    for w in &citus.workers {
        let pool = setup::connect(&w.url("vectors"), 1).await?;
        // Two statements: ALTER SYSTEM refuses a transaction block.
        sqlx::raw_sql(&format!(
            "ALTER SYSTEM SET maintenance_work_mem = '{}'",
            args.worker_mwm()
        ))
        .execute(&pool)
        .await?;
        sqlx::raw_sql("SELECT pg_reload_conf()")
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    let url = citus.url();
    let pool = setup::connect(&url, 2).await?;
    affinity::db::migrate::run(&pool).await?;
    affinity::db::citus::distribute(&pool).await?;
    sqlx::query("DROP INDEX embeddings_hnsw_1536")
        .execute(&pool)
        .await?;
    let seeder = serve(&url, dir, "citus-seed", None).await?;
    let org_ids = organizations(&seeder, token, owner, layout.sizes.len()).await?;
    seeder.svc.stop().await?;
    let t = Instant::now();
    // The truth is known from the one-node load: no queries to fill.
    data::load(
        &pool,
        model.clone(),
        layout.sizes.clone(),
        org_ids.clone(),
        Vec::new(),
    )
    .await
    .context("loading the vectors through the coordinator")?;
    let load_secs = t.elapsed().as_secs_f64();
    eprintln!("loaded on Citus in {load_secs:.0} s");
    eprintln!("building the {storage} index on Citus");
    let build = measure::build_index(&pool, storage, args.worker_mwm()).await?;
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        .execute(&pool)
        .await?;
    pool.close().await;
    if let Some(sb) = &args.shared_buffers {
        for w in &mut citus.workers {
            w.stop()?;
            w.start_stopped(&[("shared_buffers".into(), sb.clone())])?;
        }
    }
    let mut postmasters = Vec::new();
    for w in &citus.workers {
        let pool = setup::connect(&w.url("vectors"), 1).await?;
        measure::prewarm(&pool, args.shared_buffers.is_some()).await?;
        pool.close().await;
        postmasters.push(procfs::postmaster_pid(w.data_dir()).context("postmaster.pid")?);
    }
    postmasters
        .push(procfs::postmaster_pid(citus.coordinator.data_dir()).context("postmaster.pid")?);
    let name = format!("Citus, 2 workers, {storage} index");
    let mut sides = measure_sides(
        args,
        &url,
        dir,
        &name,
        build,
        token,
        &org_ids,
        queries,
        layout,
        &postmasters,
    )
    .await?;
    if let Some(first) = sides.first_mut() {
        first.load_secs = Some(load_secs);
    }
    Ok(sides)
}
