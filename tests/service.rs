//! The service as a whole: authentication, health, reflection, startup on
//! each kind of database, shutdown, and the embedded default.
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use affinity::proto::{self, Role};
use affinity_testkit::legacy::LegacyConfig;
use affinity_testkit::test_config;
use common::server::{authed, await_health, code, service_token, stop_server, TestServer, SECRET};
use common::TestDb;
use futures::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use uuid::Uuid;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_token_is_unauthenticated() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let user = t.user.to_string();
    let good = serde_json::json!({"sub": user, "role": "authenticated", "exp": now() + 600});
    // alg "none": a header and claims with no signature.
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(good.clone())
    );
    let tokens: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "not bearer",
            Some(format!("Basic {}", sign(good.clone(), SECRET))),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(good.clone(), "another-secret-another-secret-xx")
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "authenticated", "exp": now() - 600}),
                    SECRET
                )
            )),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "authenticated", "exp": now() + 6000, "nbf": now() + 3000}),
                    SECRET
                )
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"role": "authenticated", "exp": now() + 600}),
                    SECRET
                )
            )),
        ),
        (
            "sub not a uuid",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": "bob", "role": "authenticated", "exp": now() + 600}),
                    SECRET
                )
            )),
        ),
        (
            "unknown role",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "superuser", "exp": now() + 600}),
                    SECRET
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "service_role"}),
                    SECRET
                )
            )),
        ),
    ];
    for (what, header) in tokens {
        let mut req = tonic::Request::new(proto::ListMembersRequest {
            organization_id: t.org.to_string(),
        });
        if let Some(h) = header {
            req.metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        let err = s.orgs().list_members(req).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "{what}: {}",
            err.message()
        );
    }
    // The same call with a good token works (the tests above are not vacuous).
    let ok = s
        .orgs()
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: t.org.to_string(),
            },
            &sign(good, SECRET),
        ))
        .await;
    assert_eq!(code(ok), Code::Ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer_without_a_token() {
    let s = TestServer::start().await;
    for service in [
        "",
        "affinity.v1.SimilarityService",
        "affinity.v1.MetricsService",
        "affinity.v1.OrganizationService",
        "affinity.v1.AiContextService",
        "affinity.v1.MaintenanceService",
    ] {
        assert_eq!(
            s.health(service).await,
            Some(ServingStatus::Serving),
            "{service:?}"
        );
    }
    // Server reflection, v1 and v1alpha (Python's grpcio-reflection speaks v1alpha).
    use tonic_reflection::pb::{v1, v1alpha};
    let mut c = v1::server_reflection_client::ServerReflectionClient::new(s.channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "affinity.v1.SimilarityService",
        "affinity.v1.AiContextService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let mut c = v1alpha::server_reflection_client::ServerReflectionClient::new(s.channel.clone());
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "affinity.v1.MetricsService".into(),
            ),
        ),
    };
    let mut stream = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    assert!(matches!(
        resp.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

/// A large message the server streams while the call stays open reaches
/// the client, and so does the next. The server holds back the write of a
/// large message for the frames that usually follow it at once
/// (src/transport/coalesce.rs: the trailers of a reply); here none follow, as the
/// client has not finished sending, and the message must not wait for them.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_streamed_message_reaches_the_client_while_the_call_stays_open() {
    use tonic_reflection::pb::v1;
    let s = TestServer::start().await;
    let ask = |symbol: &str| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.into()),
        ),
    };
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tx.unbounded_send(ask("affinity.v1.MetricsService"))
        .unwrap();
    let mut c = v1::server_reflection_client::ServerReflectionClient::new(s.channel.clone());
    let mut replies = c.server_reflection_info(rx).await.unwrap().into_inner();
    for next in ["affinity.v1.SimilarityService", ""] {
        // Not a latency target: a reply held back would never come.
        let reply = tokio::time::timeout(Duration::from_secs(20), replies.next())
            .await
            .expect("no reply while the call is open: the message was held back")
            .unwrap()
            .unwrap();
        let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
            reply.message_response
        else {
            panic!("unexpected reflection answer");
        };
        let size: usize = files.file_descriptor_proto.iter().map(Vec::len).sum();
        assert!(size > 1024, "a message h2 does not copy: {size} bytes");
        if !next.is_empty() {
            tx.unbounded_send(ask(next)).unwrap();
        }
    }
    drop(tx);
    assert!(replies.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_migrates_a_legacy_database_at_startup_and_serves_it() {
    let (db, stats) = TestDb::legacy(&LegacyConfig::small()).await;
    let s = TestServer::start_on(db).await;
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts_unified")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(posts as u64, stats.posts);
    // A legacy user is the owner of their personal organization, through the API.
    let user: Uuid = sqlx::query_scalar("SELECT user_id FROM posts_core LIMIT 1")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    let list = s
        .orgs()
        .list_user_organizations(authed(
            proto::ListUserOrganizationsRequest {
                user_id: user.to_string(),
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.memberships.len(), 1);
    assert_eq!(list.memberships[0].role, Role::Owner as i32);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_starts_on_an_already_migrated_database_without_migrating_again() {
    let db = TestDb::migrated().await;
    let before: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let s = TestServer::start_on(db).await;
    let after: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY 1")
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        after.len(),
        affinity::db::migrate::MIGRATOR.migrations.len()
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_goes_not_serving_first_when_the_service_shuts_down() {
    let s = TestServer::start().await;
    let mut health = HealthClient::new(s.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let handle = tokio::spawn(s.shutdown());
    let next = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("a health update");
    let next = next
        .expect("the watch stream sends NOT_SERVING before it ends")
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    handle.await.unwrap().unwrap();
}

/// `server::run` over `url` on `listener`, in a task; the sender stops it.
fn spawn_server(
    url: String,
    listener: affinity::transport::Listener,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(affinity::server::run(
        test_config(url, SECRET),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    (stop, handle)
}

/// A database URL whose socket directory (in `dir`) does not exist.
fn unreachable_database_url(dir: &std::path::Path) -> String {
    format!(
        "postgres://postgres@localhost/affinity?host={}&port=5432",
        dir.join("nowhere").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn until_the_database_is_reachable_health_is_not_serving_and_calls_are_unavailable() {
    // A database URL whose socket directory does not exist: the service
    // keeps retrying, serves health, and refuses calls cleanly.
    let dir = tempfile::tempdir().unwrap();
    let url = unreachable_database_url(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, handle) = spawn_server(url, listener.into());
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let status = await_health(channel.clone(), 50, |_| true).await;
    assert_eq!(status, Some(ServingStatus::NotServing));
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    let r = orgs
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: Uuid::new_v4().to_string(),
            },
            &service_token(),
        ))
        .await;
    assert_eq!(code(r), Code::Unavailable);
    // Shutdown works while it is still retrying.
    stop_server(stop, handle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_database_url_the_jwt_secret_is_required() {
    let mut config = test_config("postgres://localhost/none".into(), "");
    config.jwt_secret = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = affinity::server::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AFFINITY_JWT_SECRET"), "{err}");
}

/// The real binary, as an operator runs it: `affinity` with no DATABASE_URL.
struct Binary {
    child: std::process::Child,
    addr: String,
}

impl Binary {
    fn start(data_dir: &std::path::Path) -> Binary {
        let addr = format!("127.0.0.1:{}", common::process::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_affinity"))
            .env_remove("DATABASE_URL")
            .env_remove("AFFINITY_JWT_SECRET")
            .env("AFFINITY_DATA_DIR", data_dir)
            .env("AFFINITY_LISTEN_ADDR", &addr)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Binary { child, addr }
    }

    async fn wait_serving(&self) -> Channel {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy();
        let status = await_health(channel.clone(), 1200, |s| s == ServingStatus::Serving).await;
        assert_eq!(
            status,
            Some(ServingStatus::Serving),
            "the binary did not become SERVING"
        );
        channel
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn mint_with_binary(data_dir: &std::path::Path, user: Uuid) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_affinity"))
        .args(["token", "--user", &user.to_string()])
        .env_remove("AFFINITY_JWT_SECRET")
        .env("AFFINITY_DATA_DIR", data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_default_keeps_its_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let user = Uuid::new_v4();

    let first = Binary::start(&data_dir);
    let channel = first.wait_serving().await;
    // `affinity token` signs with the secret the service generated.
    let token = mint_with_binary(&data_dir, user);
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    let created = orgs
        .create_organization(authed(
            proto::CreateOrganizationRequest {
                name: "Kept".into(),
                slug: "kept".into(),
                owner_user_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let status = first.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    let second = Binary::start(&data_dir);
    let channel = second.wait_serving().await;
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    let list = orgs
        .list_user_organizations(authed(
            proto::ListUserOrganizationsRequest {
                user_id: user.to_string(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(list
        .memberships
        .iter()
        .any(|m| m.organization.as_ref().unwrap().id == created.id));
    assert!(second.terminate().success());
}

/// Operators look at the vectorizer's queue (or verify) while the service
/// runs: the command uses the embedded PostgreSQL the service started, and
/// leaves it running.
#[tokio::test(flavor = "multi_thread")]
async fn one_shot_commands_use_the_embedded_database_a_running_service_started() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let service = Binary::start(&data_dir);
    let channel = service.wait_serving().await;

    let out = Command::new(env!("CARGO_BIN_EXE_affinity"))
        .arg("vectorizer")
        .env_remove("DATABASE_URL")
        .env("AFFINITY_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("pending  0"), "{stdout}");

    // The service's database is still up: a write succeeds.
    let token = mint_with_binary(&data_dir, Uuid::new_v4());
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    orgs.create_organization(authed(
        proto::CreateOrganizationRequest {
            name: "Still here".into(),
            slug: "still-here".into(),
            owner_user_id: String::new(),
        },
        &token,
    ))
    .await
    .expect("a write after the command");
    assert!(service.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_message_size_limit_is_resource_exhausted() {
    let s = TestServer::start_with(TestDb::empty().await, |c| c.max_message_bytes = 4096).await;
    let t = s.new_tenant().await;
    let big = proto::CreateOrganizationRequest {
        name: "x".repeat(8192),
        slug: "big".into(),
        owner_user_id: String::new(),
    };
    let err = s
        .orgs()
        .create_organization(authed(big, &t.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    // Under the limit, the same call is judged on its merits.
    let small = proto::CreateOrganizationRequest {
        name: "x".repeat(100),
        slug: "small".into(),
        owner_user_id: String::new(),
    };
    assert_eq!(
        code(s.orgs().create_organization(authed(small, &t.token)).await),
        Code::Ok
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_refuses_a_call_without_a_token() {
    let s = TestServer::start().await;
    let (mut sim, mut met, mut org, mut ai, mut mnt) = (
        s.similarity(),
        s.metrics(),
        s.orgs(),
        s.ai_context(),
        s.maintenance(),
    );
    use tonic::Request as R;
    let codes = vec![
        (
            "FindSimilarContent",
            code(sim.find_similar_content(R::new(Default::default())).await),
        ),
        (
            "SearchByVector",
            code(sim.search_by_vector(R::new(Default::default())).await),
        ),
        (
            "UpsertEmbeddings",
            code(sim.upsert_embeddings(R::new(Default::default())).await),
        ),
        (
            "DeleteEmbeddings",
            code(sim.delete_embeddings(R::new(Default::default())).await),
        ),
        (
            "RecordMetrics",
            code(met.record_metrics(R::new(Default::default())).await),
        ),
        (
            "GetMetricsAggregated",
            code(met.get_metrics_aggregated(R::new(Default::default())).await),
        ),
        (
            "UserHasOrgPermission",
            code(
                org.user_has_org_permission(R::new(Default::default()))
                    .await,
            ),
        ),
        (
            "CheckPermissions",
            code(org.check_permissions(R::new(Default::default())).await),
        ),
        (
            "CreateOrganization",
            code(org.create_organization(R::new(Default::default())).await),
        ),
        (
            "ListUserOrganizations",
            code(
                org.list_user_organizations(R::new(Default::default()))
                    .await,
            ),
        ),
        (
            "PutMember",
            code(org.put_member(R::new(Default::default())).await),
        ),
        (
            "RemoveMember",
            code(org.remove_member(R::new(Default::default())).await),
        ),
        (
            "ListMembers",
            code(org.list_members(R::new(Default::default())).await),
        ),
        (
            "LogAiContext",
            code(ai.log_ai_context(R::new(Default::default())).await),
        ),
        (
            "LogAiContextStream",
            code(
                ai.log_ai_context_stream(R::new(tokio_stream::iter(Vec::<
                    proto::LogAiContextRequest,
                >::new())))
                    .await,
            ),
        ),
        (
            "SearchAiContext",
            code(ai.search_ai_context(R::new(Default::default())).await),
        ),
        (
            "ListAiContext",
            code(ai.list_ai_context(R::new(Default::default())).await),
        ),
        (
            "VerifyMigrationIntegrity",
            code(
                mnt.verify_migration_integrity(R::new(Default::default()))
                    .await,
            ),
        ),
        (
            "ArchiveOldMetrics",
            code(mnt.archive_old_metrics(R::new(Default::default())).await),
        ),
    ];
    assert_eq!(codes.len(), 19, "every RPC of the contract");
    for (rpc, c) in codes {
        assert_eq!(c, Code::Unauthenticated, "{rpc}");
    }
}

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
