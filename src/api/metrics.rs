//! MetricsService: recording and time-bucketed aggregation of metric points.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::ApiState;
use crate::proto::{self, metrics_service_server::MetricsService};

pub struct MetricsApi {
    #[allow(dead_code)]
    state: Arc<ApiState>,
}

impl MetricsApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        MetricsApi { state }
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsApi {
    async fn record_metrics(
        &self,
        _req: Request<proto::RecordMetricsRequest>,
    ) -> Result<Response<proto::RecordMetricsResponse>, Status> {
        Err(Status::unimplemented(
            "record_metrics is not implemented yet",
        ))
    }

    async fn get_metrics_aggregated(
        &self,
        _req: Request<proto::GetMetricsAggregatedRequest>,
    ) -> Result<Response<proto::GetMetricsAggregatedResponse>, Status> {
        Err(Status::unimplemented(
            "get_metrics_aggregated is not implemented yet",
        ))
    }
}
