//! MaintenanceService: integrity verification and metric archival (service_role only).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::ApiState;
use crate::proto::{self, maintenance_service_server::MaintenanceService};

pub struct MaintenanceApi {
    #[allow(dead_code)]
    state: Arc<ApiState>,
}

impl MaintenanceApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        MaintenanceApi { state }
    }
}

#[tonic::async_trait]
impl MaintenanceService for MaintenanceApi {
    async fn verify_migration_integrity(
        &self,
        _req: Request<proto::VerifyMigrationIntegrityRequest>,
    ) -> Result<Response<proto::VerifyMigrationIntegrityResponse>, Status> {
        Err(Status::unimplemented(
            "verify_migration_integrity is not implemented yet",
        ))
    }

    async fn archive_old_metrics(
        &self,
        _req: Request<proto::ArchiveOldMetricsRequest>,
    ) -> Result<Response<proto::ArchiveOldMetricsResponse>, Status> {
        Err(Status::unimplemented(
            "archive_old_metrics is not implemented yet",
        ))
    }
}
