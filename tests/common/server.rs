//! A real affinity server (the library's `server::run`) on 127.0.0.1:0 over
//! a throwaway database, and real tonic clients to it.
#![allow(dead_code)]

use std::net::SocketAddr;

use affinity::config::Config;
use affinity::proto;
use affinity_testkit::test_config;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Request;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use uuid::Uuid;

use super::TestDb;

pub const SECRET: &str = "test-secret-of-at-least-thirty-two-bytes!";

pub struct TestServer {
    pub addr: SocketAddr,
    /// The Prometheus endpoint's address, when started with one.
    pub metrics_addr: Option<SocketAddr>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Last: the database outlives the server.
    pub db: TestDb,
}

impl TestServer {
    /// A server over a fresh, empty database (it migrates it itself).
    pub async fn start() -> TestServer {
        Self::start_on(TestDb::for_server().await).await
    }

    /// A server over `db`, waited for until health says SERVING.
    pub async fn start_on(db: TestDb) -> TestServer {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_full(db, tweak, false).await
    }

    /// A server over a fresh database with its metrics endpoint on 127.0.0.1:0.
    pub async fn start_with_metrics() -> TestServer {
        Self::start_full(TestDb::for_server().await, |_| {}, true).await
    }

    /// [`TestServer::start_with`] plus the metrics endpoint on 127.0.0.1:0.
    pub async fn start_with_metrics_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_full(db, tweak, true).await
    }

    async fn start_full(db: TestDb, tweak: impl FnOnce(&mut Config), metrics: bool) -> TestServer {
        let mut config = test_config(db.url.clone(), SECRET);
        tweak(&mut config);
        let running = Running::spawn(config, metrics).await;
        TestServer {
            addr: running.addr,
            metrics_addr: running.metrics_addr,
            channel: running.channel,
            stop: running.stop,
            handle: running.handle,
            db,
        }
    }

    pub async fn health(&self, service: &str) -> Option<ServingStatus> {
        let mut client = HealthClient::new(self.channel.clone());
        let r = client
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(r.into_inner().status).ok()
    }

    /// SIGTERM-equivalent: stop and wait for a clean exit.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }

    /// Stops the server cleanly and hands back its database, to start
    /// another server on it. (Dropping a server stops it too: its stop
    /// sender goes with it.)
    pub async fn stop_keeping_db(mut self) -> TestDb {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await
                .expect("the server task does not panic")
                .expect("the server stops cleanly");
        }
        self.db
    }

    pub fn similarity(&self) -> proto::similarity_service_client::SimilarityServiceClient<Channel> {
        proto::similarity_service_client::SimilarityServiceClient::new(self.channel.clone())
    }
    pub fn metrics(&self) -> proto::metrics_service_client::MetricsServiceClient<Channel> {
        proto::metrics_service_client::MetricsServiceClient::new(self.channel.clone())
    }
    pub fn orgs(&self) -> proto::organization_service_client::OrganizationServiceClient<Channel> {
        proto::organization_service_client::OrganizationServiceClient::new(self.channel.clone())
    }
    pub fn ai_context(&self) -> proto::ai_context_service_client::AiContextServiceClient<Channel> {
        proto::ai_context_service_client::AiContextServiceClient::new(self.channel.clone())
    }
    pub fn maintenance(
        &self,
    ) -> proto::maintenance_service_client::MaintenanceServiceClient<Channel> {
        proto::maintenance_service_client::MaintenanceServiceClient::new(self.channel.clone())
    }

    /// A new user with an organization of their own (created through the
    /// API), as the owner: the user id, the organization id and a token.
    pub async fn new_tenant(&self) -> Tenant {
        new_tenant(&self.channel).await
    }

    /// Adds `user` to `org` with `role` (through the API, as service_role).
    pub async fn add_member(&self, org: Uuid, user: Uuid, role: proto::Role) {
        self.orgs()
            .put_member(authed(
                proto::PutMemberRequest {
                    organization_id: org.to_string(),
                    user_id: user.to_string(),
                    role: role as i32,
                },
                &service_token(),
            ))
            .await
            .expect("adding a member");
    }

    /// Removes `user` from `org` (through the API, as `token`'s holder):
    /// whether there was such a member.
    pub async fn remove_member(&self, org: Uuid, user: Uuid, token: &str) -> bool {
        self.orgs()
            .remove_member(authed(
                proto::RemoveMemberRequest {
                    organization_id: org.to_string(),
                    user_id: user.to_string(),
                },
                token,
            ))
            .await
            .expect("removing a member")
            .into_inner()
            .removed
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub user: Uuid,
    pub org: Uuid,
    pub token: String,
}

/// [`TestServer::new_tenant`] through any channel to a service (a
/// replica, or the binary run as a process).
pub async fn new_tenant(channel: &Channel) -> Tenant {
    let user = Uuid::new_v4();
    let token = user_token(user);
    let slug = format!("org-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let org = proto::organization_service_client::OrganizationServiceClient::new(channel.clone())
        .create_organization(authed(
            proto::CreateOrganizationRequest {
                name: slug.clone(),
                slug,
                owner_user_id: user.to_string(),
            },
            &token,
        ))
        .await
        .expect("creating an organization")
        .into_inner();
    Tenant {
        user,
        org: org.id.parse().expect("an organization id"),
        token,
    }
}

/// Whether `user` may view `org` (UserHasOrgPermission as service_role).
pub async fn viewer_allowed(channel: &Channel, user: Uuid, org: Uuid) -> bool {
    proto::organization_service_client::OrganizationServiceClient::new(channel.clone())
        .user_has_org_permission(authed(
            proto::UserHasOrgPermissionRequest {
                user_id: user.to_string(),
                organization_id: org.to_string(),
                required_role: proto::Role::Viewer as i32,
            },
            &service_token(),
        ))
        .await
        .expect("UserHasOrgPermission")
        .into_inner()
        .allowed
}

pub fn user_token(user: Uuid) -> String {
    affinity::auth::mint(SECRET.as_bytes(), user, "authenticated", 3600).unwrap()
}

pub fn service_token() -> String {
    affinity::auth::mint(SECRET.as_bytes(), Uuid::new_v4(), "service_role", 3600).unwrap()
}

/// `msg` with `authorization: Bearer <token>`.
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

/// GetMetricsAggregated of a series nobody wrote (no buckets), with the
/// defaults for the rest.
pub fn aggregation(org: Uuid) -> proto::GetMetricsAggregatedRequest {
    proto::GetMetricsAggregatedRequest {
        organization_id: org.to_string(),
        entity: Some(proto::EntityRef {
            entity_type: "post".into(),
            entity_id: Uuid::new_v4().to_string(),
        }),
        metric_name: "likes".into(),
        ..Default::default()
    }
}

/// Polls health on `channel` every 100 ms, `tries` times at most, until
/// `done` holds for the status it answers; the last status answered.
pub async fn await_health(
    channel: Channel,
    tries: usize,
    done: impl Fn(ServingStatus) -> bool,
) -> Option<ServingStatus> {
    let mut health = HealthClient::new(channel);
    let mut last = None;
    for _ in 0..tries {
        let r = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if let Ok(r) = r {
            last = ServingStatus::try_from(r.into_inner().status).ok();
            if last.is_some_and(&done) {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

/// Signals a `server::run` task to stop, and waits (20 s at most) for it to
/// end without error.
pub async fn stop_server(
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let _ = stop.send(());
    tokio::time::timeout(std::time::Duration::from_secs(20), handle)
        .await
        .expect("the server stops within 20 s")
        .expect("the server task does not panic")
        .expect("the server stops cleanly");
}

/// The status code of a call's result.
pub fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// A second replica of the service over the same database.
pub struct Replica {
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Another server process-equivalent on this server's database.
    pub async fn replica(&self) -> Replica {
        self.replica_with(|_| {}).await
    }

    /// A replica configured with `tweak`.
    pub async fn replica_with(&self, tweak: impl FnOnce(&mut Config)) -> Replica {
        let mut config = test_config(self.db.url.clone(), SECRET);
        tweak(&mut config);
        let running = Running::spawn(config, false).await;
        Replica {
            channel: running.channel,
            stop: running.stop,
            handle: running.handle,
        }
    }
}

/// `server::run` on 127.0.0.1:0 in a task, waited for until health says SERVING.
struct Running {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    async fn spawn(config: Config, metrics: bool) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics_listener = match metrics {
            true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(affinity::server::run_with_metrics(
            config,
            listener,
            metrics_listener,
            async {
                let _ = stopped.await;
            },
        ));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let mut health = HealthClient::new(channel.clone());
        for _ in 0..600 {
            if let Ok(r) = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            {
                if r.into_inner().status == ServingStatus::Serving as i32 {
                    return Running {
                        addr,
                        metrics_addr,
                        channel,
                        stop: Some(stop),
                        handle: Some(handle),
                    };
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the server did not become SERVING within 60 s");
    }
}

impl Replica {
    pub fn orgs(&self) -> proto::organization_service_client::OrganizationServiceClient<Channel> {
        proto::organization_service_client::OrganizationServiceClient::new(self.channel.clone())
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
