//! AiContextService: logging AI interactions and retrieving them.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::ApiState;
use crate::proto::{self, ai_context_service_server::AiContextService};

pub struct AiContextApi {
    #[allow(dead_code)]
    state: Arc<ApiState>,
}

impl AiContextApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        AiContextApi { state }
    }
}

#[tonic::async_trait]
impl AiContextService for AiContextApi {
    async fn log_ai_context(
        &self,
        _req: Request<proto::LogAiContextRequest>,
    ) -> Result<Response<proto::LogAiContextResponse>, Status> {
        Err(Status::unimplemented(
            "log_ai_context is not implemented yet",
        ))
    }

    async fn log_ai_context_stream(
        &self,
        _req: Request<tonic::Streaming<proto::LogAiContextRequest>>,
    ) -> Result<Response<proto::LogAiContextStreamResponse>, Status> {
        Err(Status::unimplemented(
            "log_ai_context_stream is not implemented yet",
        ))
    }

    async fn search_ai_context(
        &self,
        _req: Request<proto::SearchAiContextRequest>,
    ) -> Result<Response<proto::SearchAiContextResponse>, Status> {
        Err(Status::unimplemented(
            "search_ai_context is not implemented yet",
        ))
    }

    async fn list_ai_context(
        &self,
        _req: Request<proto::ListAiContextRequest>,
    ) -> Result<Response<proto::ListAiContextResponse>, Status> {
        Err(Status::unimplemented(
            "list_ai_context is not implemented yet",
        ))
    }
}
