//! On a Unix socket: calls served, a live socket kept, its file removed at shutdown if still ours.
use affinity::proto::{self, Role};
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::common::server::{authed, await_health, code, service_token, stop_server};
use crate::common::TestDb;
use crate::{spawn_server, unreachable_database_url};

/// `server::run` on a Unix socket at `path` over `url`, and a client channel
/// to it; the sender stops the server.
async fn serve_on_unix_socket(
    url: String,
    path: &std::path::Path,
) -> (
    Channel,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let addr = affinity::config::ListenAddr::Unix(path.to_path_buf());
    let listener = affinity::transport::Listener::bind(&addr).await.unwrap();
    let (stop, handle) = spawn_server(url, listener);
    let channel = tonic::transport::Endpoint::from_shared(format!("unix:{}", path.display()))
        .unwrap()
        .connect_lazy();
    (channel, stop, handle)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_unix_socket_it_serves_calls_keeps_a_live_socket_and_removes_its_file_when_stopped() {
    use affinity::config::ListenAddr;
    use affinity::transport::Listener;

    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("affinity.sock");
    // The file a server that is gone left behind: replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let addr = ListenAddr::Unix(path.clone());
    let (channel, stop, handle) = serve_on_unix_socket(db.url.clone(), &path).await;
    let serving = await_health(channel.clone(), 600, |s| s == ServingStatus::Serving).await;
    assert_eq!(serving, Some(ServingStatus::Serving), "within 60 s");

    // A call with its token, answered from the database.
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    let answer = orgs
        .user_has_org_permission(authed(
            proto::UserHasOrgPermissionRequest {
                user_id: Uuid::new_v4().to_string(),
                organization_id: Uuid::new_v4().to_string(),
                required_role: Role::Viewer as i32,
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.allowed);
    // Without a token: refused as over TCP.
    let refused = orgs
        .user_has_org_permission(proto::UserHasOrgPermissionRequest {
            user_id: Uuid::new_v4().to_string(),
            organization_id: Uuid::new_v4().to_string(),
            required_role: Role::Viewer as i32,
        })
        .await;
    assert_eq!(code(refused), Code::Unauthenticated);

    // A second server on the same path is refused, and the first keeps it.
    let err = Listener::bind(&addr).await.err().expect("refused");
    assert!(err.to_string().contains("already listening"), "{err}");
    assert!(path.exists());
    // A file that is not a socket is never replaced.
    let plain = dir.path().join("notes.txt");
    std::fs::write(&plain, "keep me").unwrap();
    assert!(Listener::bind(&ListenAddr::Unix(plain.clone()))
        .await
        .is_err());
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");

    stop_server(stop, handle).await;
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_a_unix_socket_file_another_server_took_over_is_left_in_place() {
    // No database needed: the server listens (NOT_SERVING) while it retries.
    let dir = tempfile::tempdir().unwrap();
    let url = unreachable_database_url(dir.path());
    let path = dir.path().join("affinity.sock");
    let (channel, stop, handle) = serve_on_unix_socket(url, &path).await;
    let answered = await_health(channel, 50, |_| true).await;
    assert_eq!(answered, Some(ServingStatus::NotServing));
    // A newer server replaces the file (as at a restart on the same path).
    std::fs::remove_file(&path).unwrap();
    let newer = std::os::unix::net::UnixListener::bind(&path).unwrap();

    stop_server(stop, handle).await;
    assert!(path.exists(), "the newer server's socket file is kept");
    drop(newer);
}
