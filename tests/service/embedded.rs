//! The binary's embedded default: data kept across restarts, one-shot commands share its database.
use std::process::{Command, Stdio};

use affinity::proto;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::common;
use crate::common::server::{authed, await_health};

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
