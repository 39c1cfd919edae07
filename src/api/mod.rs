//! The gRPC edge: authentication has happened (interceptor); here each
//! capability authorizes, validates and maps, over `crate::store`.

/// Implements a generated gRPC service trait with the handlers of the same
/// names, which return the crate's result type: the one place their errors
/// become a `tonic::Status` (`crate::error::respond`).
macro_rules! grpc_handlers {
    ($service:ident for $api:ident {
        $(stream $stream:ident = $stream_ty:ty;)*
        $(rpc $rpc:ident($req:ty) -> $res:ty;)*
    }) => {
        #[tonic::async_trait]
        impl $service for $api {
            // The response streams of server-streaming calls.
            $(type $stream = $stream_ty;)*
            $(
                async fn $rpc(
                    &self,
                    req: tonic::Request<$req>,
                ) -> Result<tonic::Response<$res>, tonic::Status> {
                    // The inherent handler (inherent methods come first).
                    crate::error::respond($api::$rpc(self, req).await)
                }
            )*
        }
    };
}

pub mod ai_context;
pub mod maintenance;
pub mod metrics;
pub mod organizations;
pub mod similarity;
mod texts;

mod metadata;
mod query_text;
mod reads;
mod request;
mod search;
mod search_filter;
mod state;

pub use request::{
    entity_ref, entity_type, limit, parse_uuid, principal, require_service, required_text,
    threshold, timestamp, to_timestamp, wants_fresh_read, MAX_IDEMPOTENCY_KEY,
};
pub use state::{deadline, ApiState, CallDb, ReadReplica};
