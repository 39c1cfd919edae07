//! The gRPC server: its layers (outermost first: request ids, spans and
//! counts; tonic's refusals in the contract's codes; client deadlines),
//! health, reflection, and the five authenticated services, served on the
//! bound socket.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health as HealthService, HealthServer};
use tower::util::MapResponseLayer;

use crate::api::ai_context::AiContextApi;
use crate::api::maintenance::MaintenanceApi;
use crate::api::metrics::MetricsApi;
use crate::api::organizations::OrganizationsApi;
use crate::api::similarity::SimilarityApi;
use crate::api::ApiState;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::refusals_in_contract_codes;
use crate::observability::{Metrics, ObserveLayer};
use crate::proto::{
    ai_context_service_server::AiContextServiceServer,
    maintenance_service_server::MaintenanceServiceServer,
    metrics_service_server::MetricsServiceServer,
    organization_service_server::OrganizationServiceServer,
    similarity_service_server::SimilarityServiceServer, FILE_DESCRIPTOR_SET,
};
use crate::transport::deadline::DeadlineLayer;
use crate::transport::listen::{tcp_incoming, unix_incoming, SocketFile};
use crate::transport::{Listener, Transport};

/// The running gRPC server.
pub(super) struct GrpcServer {
    pub(super) task: JoinHandle<Result<(), tonic::transport::Error>>,
    stop: oneshot::Sender<()>,
    /// Kept until the server has stopped: the socket's file goes with it.
    _socket_file: Option<SocketFile>,
}

impl GrpcServer {
    /// Stops accepting calls and waits for those in flight, at most
    /// `grace`; false when some were still running then.
    pub(super) async fn stop(self, grace: Duration) -> bool {
        let _ = self.stop.send(());
        tokio::time::timeout(grace, self.task).await.is_ok()
    }
}

/// Builds the router and serves it on `listener` in a task of its own.
pub(super) fn serve(
    config: &Config,
    transport: &Transport,
    state: &Arc<ApiState>,
    metrics: &Arc<Metrics>,
    auth: Arc<Authenticator>,
    health: HealthServer<impl HealthService>,
    listener: Listener,
) -> anyhow::Result<GrpcServer> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let max = config.max_message_bytes;
    let check = auth.interceptor();
    let mut builder = Server::builder().max_concurrent_streams(config.max_concurrent_streams);
    if let Transport::Tls { config, .. } = transport {
        builder = builder.tls_config(config.clone()).context(
            "TLS settings (AFFINITY_TLS_CERT, AFFINITY_TLS_KEY, AFFINITY_TLS_CLIENT_CA)",
        )?;
    }
    let router = builder
        .layer(ObserveLayer::new(metrics.clone()))
        .layer(MapResponseLayer::new(refusals_in_contract_codes))
        .layer(DeadlineLayer::new(state.reachability.clone()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            SimilarityServiceServer::new(SimilarityApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            MetricsServiceServer::new(MetricsApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            OrganizationServiceServer::new(OrganizationsApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            AiContextServiceServer::new(AiContextApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            MaintenanceServiceServer::new(MaintenanceApi::new(state.clone()))
                .max_decoding_message_size(max),
            check,
        ));

    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let coalesce = config.coalesce_writes.is_on();
    let (task, socket_file) = match listener {
        Listener::Tcp(listener) => {
            let incoming = tcp_incoming(listener, coalesce);
            let server = router.serve_with_incoming_shutdown(incoming, stopped);
            (tokio::spawn(server), None)
        }
        Listener::Unix { listener, file } => {
            let incoming = unix_incoming(listener, coalesce);
            let server = router.serve_with_incoming_shutdown(incoming, stopped);
            (tokio::spawn(server), Some(file))
        }
    };
    Ok(GrpcServer {
        task,
        stop,
        _socket_file: socket_file,
    })
}
