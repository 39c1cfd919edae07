//! Secrets (the JWT secret, the database password) never appear in `--help`,
//! in the service's logs (starting, failing to connect, serving) or in the
//! errors clients get.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affinity::proto;
use affinity_testkit::cluster::TempCluster;
use common::server::authed;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

const JWT_SECRET: &str = "jwt-secret-never-shown-7f3a9c1e5b2d4680";
const DB_PASSWORD: &str = "db-password-never-shown-Q8w2";

fn leaks(text: &str) -> Vec<&'static str> {
    [JWT_SECRET, DB_PASSWORD]
        .into_iter()
        .filter(|s| text.contains(s))
        .collect()
}

#[test]
fn help_never_shows_secrets_from_the_environment() {
    let url = format!("postgres://app:{DB_PASSWORD}@db.example/affinity");
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["token", "--help"],
        &["help", "serve"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_affinity"))
            .args(args)
            .env("AFFINITY_JWT_SECRET", JWT_SECRET)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("AFFINITY_JWT_SECRET"), "{args:?}: {text}");
        assert_eq!(leaks(&text), Vec::<&str>::new(), "{args:?}: {text}");
    }
}

/// A throwaway cluster where the role `app` logs in with [`DB_PASSWORD`]
/// (scram-sha-256; the superuser keeps trust for the test's own setup).
struct PasswordDb {
    cluster: TempCluster,
}

impl PasswordDb {
    async fn start() -> PasswordDb {
        let cluster = TempCluster::start().expect("starting a throwaway PostgreSQL");
        let admin = common::connect(&cluster.url("postgres")).await;
        for sql in [
            format!("CREATE ROLE app LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'"),
            "CREATE DATABASE affinity OWNER app".to_string(),
        ] {
            sqlx::query(&sql).execute(&admin).await.unwrap();
        }
        std::fs::write(
            cluster.data_dir().join("pg_hba.conf"),
            "local all postgres trust\nlocal all all scram-sha-256\n",
        )
        .unwrap();
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        PasswordDb { cluster }
    }

    fn url(&self, password: &str) -> String {
        self.cluster.url("affinity").replacen(
            "postgres://postgres@",
            &format!("postgres://app:{password}@"),
            1,
        )
    }
}

/// The binary serving with `database_url`, its stderr collected.
struct Service {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
    /// The thread copying stderr into `log`: it ends with the pipe.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(database_url: &str, log_format: &str) -> Service {
        let addr = format!("127.0.0.1:{}", common::process::free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_affinity"))
            .env("DATABASE_URL", database_url)
            .env("AFFINITY_JWT_SECRET", JWT_SECRET)
            .env("AFFINITY_LISTEN_ADDR", &addr)
            .env("AFFINITY_LOG_FORMAT", log_format)
            // Everything the service and its libraries log, not just INFO.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Service {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` `times` times (60 s at most).
    fn wait_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {times} times:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, wait for the exit, then the whole log.
    fn terminate(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap();
        // The reader thread ends with the pipe, once it has drained it.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the log reader thread");
        }
        self.log()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A call that needs the database, with a valid token: its status.
async fn list_members(channel: Channel) -> tonic::Status {
    let token =
        affinity::auth::mint(JWT_SECRET.as_bytes(), Uuid::new_v4(), "service_role", 60).unwrap();
    match proto::organization_service_client::OrganizationServiceClient::new(channel)
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: Uuid::new_v4().to_string(),
            },
            &token,
        ))
        .await
    {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

fn shown(status: &tonic::Status) -> String {
    format!("{status:?} {}", status.message())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_database_password_is_logged_as_such_without_any_secret() {
    let db = PasswordDb::start().await;
    let service = Service::start(&db.url("wrong-password-also-secret"), "text");
    // The failing connection is logged (twice: retried), and calls meanwhile
    // are UNAVAILABLE without internals.
    service.wait_log("password authentication failed", 2);
    let status = list_members(service.channel()).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(leaks(&shown(&status)), Vec::<&str>::new());
    assert!(!shown(&status).contains("wrong-password-also-secret"));
    let log = service.terminate();
    assert_eq!(leaks(&log), Vec::<&str>::new(), "{log}");
    assert!(!log.contains("wrong-password-also-secret"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_logged_without_any_secret() {
    // A closed port on this machine: connection refused, retried.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let service = Service::start(
        &format!("postgres://app:{DB_PASSWORD}@127.0.0.1:{port}/affinity"),
        "json",
    );
    // (sqlx retries a refused connection itself for 10 s before this line.)
    service.wait_log("database not reachable yet", 1);
    let status = list_members(service.channel()).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(leaks(&shown(&status)), Vec::<&str>::new());
    let log = service.terminate();
    assert_eq!(leaks(&log), Vec::<&str>::new(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_with_a_password_and_a_secret_logs_neither_and_errors_carry_neither() {
    let db = PasswordDb::start().await;
    let service = Service::start(&db.url(DB_PASSWORD), "text");
    let channel = service.channel();
    let serving =
        common::server::await_health(channel.clone(), 600, |s| s == ServingStatus::Serving).await;
    assert_eq!(
        serving,
        Some(ServingStatus::Serving),
        "not SERVING:\n{}",
        service.log()
    );

    // Errors of every kind a client can provoke.
    let mut statuses = vec![list_members(channel.clone()).await];
    let mut orgs = proto::organization_service_client::OrganizationServiceClient::new(channel);
    let forged = affinity::auth::mint(
        b"not-the-secret-not-the-secret-xx",
        Uuid::new_v4(),
        "authenticated",
        60,
    )
    .unwrap();
    for token in [forged.as_str(), "garbage", JWT_SECRET] {
        let r = orgs
            .list_members(authed(
                proto::ListMembersRequest {
                    organization_id: Uuid::new_v4().to_string(),
                },
                token,
            ))
            .await;
        statuses.push(r.unwrap_err());
    }
    let r = orgs
        .list_members(tonic::Request::new(proto::ListMembersRequest {
            organization_id: "not-a-uuid".into(),
        }))
        .await;
    statuses.push(r.unwrap_err());
    for status in &statuses {
        assert_eq!(leaks(&shown(status)), Vec::<&str>::new(), "{status:?}");
    }

    let log = service.terminate();
    assert!(log.contains("SERVING"), "{log}");
    assert_eq!(leaks(&log), Vec::<&str>::new(), "{log}");
}
