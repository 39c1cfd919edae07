//! Property test over the request validation of every RPC: hostile values
//! (NaN and infinite floats, zero and huge vectors, out-of-range thresholds
//! and limits, SQL in strings, NUL bytes, 10 KB names, 10 MB metadata,
//! extreme timestamps, batches of 100,000, random page tokens, unknown enum
//! values) sent to one real server. Each call must get a status code the
//! contract allows for that RPC, never INTERNAL/UNKNOWN/UNAVAILABLE or a
//! transport error; afterwards the service still serves and no table is gone.

#[path = "../common/mod.rs"]
mod common;

mod cases;
mod execution;
mod fields;
mod requests;
mod values;

use std::time::Duration;

use affinity::proto;
use common::server::{authed, service_token, user_token, TestServer};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use cases::{Case, Who};
use execution::{execute, public_tables, seed};
use requests::case;

/// The bystander's deadline: generous for two shared cores, yet far below
/// what a starved client would see (a hostile request holding the service).
const BYSTANDER_DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn hostile_requests_to_every_rpc_get_contract_codes_and_never_crash_the_service() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = rt.block_on(TestServer::start());
    let seeded = rt.block_on(seed(&server));
    let tables_before = rt.block_on(public_tables(&server));
    let tokens = (
        service_token(),
        user_token(seeded.owner),
        user_token(Uuid::new_v4()),
    );

    // Another client, on a connection of its own, keeps asking a cheap
    // question while the hostile requests run: none of them may starve it.
    let stop_bystander = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bystander = {
        let stop = stop_bystander.clone();
        let url = format!("http://{}", server.addr);
        let (org, owner) = (seeded.org, seeded.owner);
        let token = tokens.1.clone();
        rt.spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .expect("an endpoint")
                .connect()
                .await
                .expect("the bystander's connection");
            let mut client =
                proto::organization_service_client::OrganizationServiceClient::new(channel);
            let (mut answered, mut slowest, mut failures) = (0u32, Duration::ZERO, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let mut req = authed(
                    proto::UserHasOrgPermissionRequest {
                        user_id: owner.to_string(),
                        organization_id: org.to_string(),
                        required_role: proto::Role::Viewer as i32,
                    },
                    &token,
                );
                req.set_timeout(BYSTANDER_DEADLINE);
                match client.user_has_org_permission(req).await {
                    Ok(r) if r.get_ref().allowed => answered += 1,
                    other => failures.push(format!("{other:?}")),
                }
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (answered, slowest, failures)
        })
    };

    let mut runner = TestRunner::new(Config {
        cases: 256,
        max_shrink_iters: 200,
        // Shrinking a case that timed out could otherwise take hours.
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(&seeded), |Case(who, call)| {
        let token = match who {
            Who::Service => &tokens.0,
            Who::Owner => &tokens.1,
            Who::Stranger => &tokens.2,
        };
        let rpc = call.rpc();
        let allowed = call.allowed();
        // A generous bound: a hostile request must not hang the service.
        let got = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(60), execute(&server, token, call)).await
            })
            .map_err(|_| TestCaseError::fail(format!("{rpc}: no answer within 60 s")))?;
        if allowed.contains(&got) {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{rpc} answered {got:?}; the contract allows {allowed:?}"
            )))
        }
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, case)) => panic!("{why}\nminimal case: {case:?}"),
        Err(e) => panic!("{e}"),
    }
    stop_bystander.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, slowest, failures) = rt.block_on(bystander).expect("the bystander task");
    eprintln!("bystander: {answered} answers, slowest {slowest:?}");
    assert!(
        failures.is_empty(),
        "another client's calls failed or missed their {BYSTANDER_DEADLINE:?} deadline during the hostile requests: {failures:?}"
    );
    assert!(answered > 0, "the bystander got no answer at all");

    rt.block_on(async {
        assert_eq!(
            server.health("").await,
            Some(ServingStatus::Serving),
            "the service still serves after the hostile requests"
        );
        let tables_after = public_tables(&server).await;
        let gone: Vec<_> = tables_before.difference(&tables_after).collect();
        assert!(gone.is_empty(), "tables dropped by hostile input: {gone:?}");
        // The seeded tenant is intact and still answers through the API.
        let members = server
            .orgs()
            .list_members(authed(
                proto::ListMembersRequest {
                    organization_id: seeded.org.to_string(),
                },
                &tokens.0,
            ))
            .await
            .expect("listing the seeded organization's members")
            .into_inner();
        assert!(!members.members.is_empty());
    });
    drop(server);
}
