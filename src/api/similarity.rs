//! SimilarityService: vector similarity over the central embeddings table.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::ApiState;
use crate::proto::{self, similarity_service_server::SimilarityService};

pub struct SimilarityApi {
    #[allow(dead_code)]
    state: Arc<ApiState>,
}

impl SimilarityApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        SimilarityApi { state }
    }
}

#[tonic::async_trait]
impl SimilarityService for SimilarityApi {
    async fn find_similar_content(
        &self,
        _req: Request<proto::FindSimilarContentRequest>,
    ) -> Result<Response<proto::FindSimilarContentResponse>, Status> {
        Err(Status::unimplemented(
            "find_similar_content is not implemented yet",
        ))
    }

    async fn search_by_vector(
        &self,
        _req: Request<proto::SearchByVectorRequest>,
    ) -> Result<Response<proto::SearchByVectorResponse>, Status> {
        Err(Status::unimplemented(
            "search_by_vector is not implemented yet",
        ))
    }

    async fn upsert_embeddings(
        &self,
        _req: Request<proto::UpsertEmbeddingsRequest>,
    ) -> Result<Response<proto::UpsertEmbeddingsResponse>, Status> {
        Err(Status::unimplemented(
            "upsert_embeddings is not implemented yet",
        ))
    }

    async fn delete_embeddings(
        &self,
        _req: Request<proto::DeleteEmbeddingsRequest>,
    ) -> Result<Response<proto::DeleteEmbeddingsResponse>, Status> {
        Err(Status::unimplemented(
            "delete_embeddings is not implemented yet",
        ))
    }
}
