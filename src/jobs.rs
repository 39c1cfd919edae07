//! Operations that run themselves, in every replica once it serves:
//!
//! - metric partitions for the current month and the next
//!   `AFFINITY_PARTITION_MONTHS_AHEAD`, created at start and on
//!   `AFFINITY_PARTITION_SCHEDULE`, so points do not land in the default
//!   partition;
//! - archival of metric points older than `AFFINITY_METRICS_RETENTION_DAYS`
//!   on `AFFINITY_ARCHIVE_SCHEDULE`.
//!
//! Both take an advisory lock, so one replica at a time does the work and
//! the others skip that run. The tasks end when the service stops (aborted:
//! a transaction cut short rolls back).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Months, Utc};
use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::config::{Config, Schedule};
use crate::observability::Metrics;
use crate::store::{maintenance, metrics};

/// How soon a run that failed or found the partition lock busy is retried.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The outcome of one run, the `outcome` label of
/// `affinity_maintenance_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Another replica (or session) held the job's lock.
    Skipped,
    Failed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }
}

/// Starts the jobs on `pool`; dropping the set stops them.
pub fn spawn(config: &Config, pool: PgPool, metrics: Arc<Metrics>) -> JoinSet<()> {
    let mut jobs = JoinSet::new();
    let months_ahead = config.partition_months_ahead;
    {
        let (pool, metrics) = (pool.clone(), metrics.clone());
        let schedule = config.partition_schedule.clone();
        jobs.spawn(async move {
            // At start, then on the schedule.
            let mut retry = run_partitions(&pool, months_ahead, &metrics).await != Outcome::Done;
            loop {
                let wait = if retry {
                    Some(RETRY_AFTER)
                } else {
                    until_next(&schedule)
                };
                let Some(wait) = wait else { return };
                tokio::time::sleep(wait).await;
                retry = run_partitions(&pool, months_ahead, &metrics).await != Outcome::Done;
            }
        });
    }
    let schedule = config.archive_schedule.clone();
    if !schedule.is_off() {
        let days = i32::try_from(config.metrics_retention_days).unwrap_or(i32::MAX);
        jobs.spawn(async move {
            while let Some(wait) = until_next(&schedule) {
                tokio::time::sleep(wait).await;
                run_archive(&pool, days, &metrics).await;
            }
        });
    }
    jobs
}

/// Time until the schedule's next run; None when it is off.
fn until_next(schedule: &Schedule) -> Option<Duration> {
    let now = Utc::now();
    let next = schedule.next_after(now)?;
    Some((next - now).to_std().unwrap_or_default())
}

/// The first instant of the month `months` after the current one (UTC).
fn month_start(now: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    let first = now.date_naive().with_day0(0)?;
    first
        .checked_add_months(Months::new(months))?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
}

async fn run_partitions(pool: &PgPool, months_ahead: u32, metrics: &Metrics) -> Outcome {
    let now = Utc::now();
    let (Some(from), Some(to)) = (month_start(now, 0), month_start(now, months_ahead)) else {
        return Outcome::Failed;
    };
    let ensured = match pool.acquire().await {
        Ok(mut conn) => metrics::ensure_partitions(&mut conn, from, to).await,
        Err(e) => Err(e),
    };
    let outcome = match ensured {
        Ok(true) => Outcome::Done,
        Ok(false) => {
            tracing::info!("metric partitions: another session is creating them; retrying later");
            Outcome::Skipped
        }
        Err(e) => {
            tracing::warn!(error = %e, "creating the metric partitions ahead failed; retrying later");
            Outcome::Failed
        }
    };
    metrics.record_job("partitions", outcome.label());
    outcome
}

async fn run_archive(pool: &PgPool, days: i32, metrics: &Metrics) -> Outcome {
    let started = std::time::Instant::now();
    let outcome = match archive(pool, days).await {
        Ok(Some(archived)) => {
            tracing::info!(
                archived,
                retention_days = days,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "scheduled archival of old metric points"
            );
            Outcome::Done
        }
        Ok(None) => {
            tracing::info!("scheduled archival: another replica is running it; skipped");
            Outcome::Skipped
        }
        Err(e) => {
            tracing::warn!(error = %e, "scheduled archival failed; next run on the schedule");
            Outcome::Failed
        }
    };
    metrics.record_job("archive", outcome.label());
    outcome
}

async fn archive(pool: &PgPool, days: i32) -> sqlx::Result<Option<u64>> {
    let mut tx = pool.begin().await?;
    // Archival may move millions of rows: not under the calls' timeout.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    let archived =
        maintenance::archive_old_metrics(&mut *tx, days, maintenance::IfBusy::Skip).await?;
    tx.commit().await?;
    Ok(archived)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn month_start_counts_months_from_the_current_one() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 13, 5, 0).unwrap();
        assert_eq!(
            month_start(now, 0),
            Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            month_start(now, 3),
            Some(Utc.with_ymd_and_hms(2027, 2, 1, 0, 0, 0).unwrap())
        );
    }
}
