//! The gRPC health service's statuses, and the `affinity_ready` gauge that
//! says the same: NOT_SERVING until the database is ready, then following
//! the database's reachability, NOT_SERVING again when shutting down.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tonic_health::pb::health_server::{Health as HealthService, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::db::reachability::Reachability;
use crate::observability::Metrics;

/// Every service health answers for, besides the whole server ("").
const SERVICES: [&str; 5] = [
    "affinity.v1.SimilarityService",
    "affinity.v1.MetricsService",
    "affinity.v1.OrganizationService",
    "affinity.v1.AiContextService",
    "affinity.v1.MaintenanceService",
];

#[derive(Clone)]
pub(super) struct Health {
    reporter: HealthReporter,
    metrics: Arc<Metrics>,
}

impl Health {
    /// The reporter, NOT_SERVING, and the service that answers for it.
    pub(super) async fn new(metrics: Arc<Metrics>) -> (Health, HealthServer<impl HealthService>) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let mut health = Health { reporter, metrics };
        health.set(false).await;
        (health, service)
    }

    /// SERVING or NOT_SERVING, for every service and the gauge.
    pub(super) async fn set(&mut self, serving: bool) {
        let status = match serving {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        self.reporter.set_service_status("", status).await;
        for name in SERVICES {
            self.reporter.set_service_status(name, status).await;
        }
        self.metrics.set_ready(serving);
    }

    /// From now on health follows the database: NOT_SERVING while it does
    /// not answer, SERVING again when it does (until the task is aborted).
    pub(super) fn follow(&self, reachability: &Reachability) -> JoinHandle<()> {
        let mut changes = reachability.subscribe();
        let mut health = self.clone();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let up = *changes.borrow_and_update();
                health.set(up).await;
            }
        })
    }
}
