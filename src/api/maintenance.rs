//! MaintenanceService: integrity verification and metric archival (service_role only).

use std::sync::Arc;

use tonic::Request;

use super::{principal, require_service, ApiState};
use crate::caches::Follower as _;
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, maintenance_service_server::MaintenanceService};
use crate::store::maintenance as store;

/// Longest retention accepted (about 100 years): beyond it `now() - days`
/// would approach the limits of PostgreSQL's timestamps for no use.
const MAX_RETENTION_DAYS: u32 = 36_525;

pub struct MaintenanceApi {
    state: Arc<ApiState>,
}

impl MaintenanceApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        MaintenanceApi { state }
    }
}

/// The retention in days: the request's, else the configured one.
fn retention_days(requested: u32, configured: u32) -> ApiResult<i32> {
    let days = match requested {
        0 if configured > MAX_RETENTION_DAYS => {
            // The operator's setting, not the caller's request.
            return Err(ApiError::FailedPrecondition(format!(
                "the configured metrics retention is {configured} days; at most \
                 {MAX_RETENTION_DAYS}: fix AFFINITY_METRICS_RETENTION_DAYS or pass older_than_days"
            )));
        }
        0 => configured,
        d if d > MAX_RETENTION_DAYS => {
            return Err(ApiError::invalid(format!(
                "older_than_days is {d}; at most {MAX_RETENTION_DAYS}"
            )));
        }
        d => d,
    };
    // At most MAX_RETENTION_DAYS, so it fits.
    i32::try_from(days).map_err(|_| ApiError::invalid(format!("{days} days is too large")))
}

/// The calls, each in the crate's result type (`grpc_handlers!` converts
/// to tonic's once).
impl MaintenanceApi {
    async fn verify_migration_integrity(
        &self,
        req: Request<proto::VerifyMigrationIntegrityRequest>,
    ) -> ApiResult<proto::VerifyMigrationIntegrityResponse> {
        let p = principal(&req)?;
        require_service(&p, "VerifyMigrationIntegrity")?;
        let mut db = self.state.db(&req).await?;
        let rows = store::verify_migration_integrity(db.conn()).await?;
        db.finish().await?;
        let all_passed = rows.iter().all(|c| c.passed);
        let failed = store::failed(&rows);
        if !failed.is_empty() {
            tracing::warn!(failed = ?failed, "migration integrity checks failed");
        }
        let checks = rows
            .into_iter()
            .map(|c| proto::IntegrityCheck {
                name: c.name,
                passed: c.passed,
                details: c.details,
            })
            .collect();
        Ok(proto::VerifyMigrationIntegrityResponse { checks, all_passed })
    }

    async fn archive_old_metrics(
        &self,
        req: Request<proto::ArchiveOldMetricsRequest>,
    ) -> ApiResult<proto::ArchiveOldMetricsResponse> {
        let p = principal(&req)?;
        require_service(&p, "ArchiveOldMetrics")?;
        let days = retention_days(
            req.get_ref().older_than_days,
            self.state.config.metrics_retention_days,
        )?;
        let mut db = self.state.db(&req).await?;
        // Waits for a scheduled run in progress (then finds less to move).
        let archived = store::archive_old_metrics(db.conn(), days, store::IfBusy::Wait)
            .await?
            .unwrap_or_default();
        db.finish().await?;
        if archived > 0 {
            // This replica's next reads see it, whatever the announcement's delay.
            self.state.metrics_cache.clear();
        }
        tracing::info!(
            archived,
            retention_days = days,
            "archived old metric points"
        );
        Ok(proto::ArchiveOldMetricsResponse { archived })
    }
}

grpc_handlers! {
    MaintenanceService for MaintenanceApi {
        rpc verify_migration_integrity(proto::VerifyMigrationIntegrityRequest) -> proto::VerifyMigrationIntegrityResponse;
        rpc archive_old_metrics(proto::ArchiveOldMetricsRequest) -> proto::ArchiveOldMetricsResponse;
    }
}
