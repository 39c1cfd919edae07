//! SIGTERM under load: NOT_SERVING, in-flight calls finish, new ones refused, clean exit.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use affinity::proto;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::calls::{misbehaving, sent, timed, with_deadline, Call, Calls};
use crate::common::process::ServiceProcess;
use crate::common::server::{authed, new_tenant};
use crate::common::wait::{eventually, seen};
use crate::common::TestDb;
use crate::health::{assert_no_panic, health_watch, next_status};
use crate::load::{spawn_load, stop_load, Shape, RECORD_METRICS};
use crate::requests::{entity, vector};
use crate::{DEADLINE, RECOVERY, STARTUP};

// --- SIGTERM under load -----------------------------------------------------
//
// Seen failing with AFFINITY_SHUTDOWN_GRACE_SECS=0: the in-flight call is
// cut off ("transport error").

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_health_goes_not_serving_in_flight_calls_finish_new_ones_are_refused_and_the_exit_is_clean(
) {
    let db = TestDb::empty().await;
    let mut svc = ServiceProcess::spawn(&db.url, &[("AFFINITY_SHUTDOWN_GRACE_SECS", "20")]);
    svc.wait_serving(STARTUP).await;
    let t = new_tenant(&svc.channel).await;
    let post = Uuid::new_v4();
    let mut sim =
        proto::similarity_service_client::SimilarityServiceClient::new(svc.channel.clone());
    let model = "locked-model";
    let first = proto::UpsertEmbeddingsRequest {
        organization_id: t.org.to_string(),
        embeddings: vec![proto::EmbeddingRecord {
            entity: entity(post),
            vector: vector(1),
            model: model.into(),
        }],
    };
    sim.upsert_embeddings(authed(first, &t.token))
        .await
        .expect("the first upsert");

    // The test holds the row: an update of it waits, in flight, until the
    // test lets it go.
    let mut lock = db.pool.begin().await.expect("a transaction of the test");
    sqlx::query(
        "SELECT 1 FROM embeddings WHERE organization_id = $1 AND entity_id = $2 FOR UPDATE",
    )
    .bind(t.org)
    .bind(post)
    .execute(&mut *lock)
    .await
    .expect("locking the embedding");
    let slow = {
        let mut sim = sim.clone();
        let req = proto::UpsertEmbeddingsRequest {
            organization_id: t.org.to_string(),
            embeddings: vec![proto::EmbeddingRecord {
                entity: entity(post),
                vector: vector(2),
                model: model.into(),
            }],
        };
        let req = with_deadline(req, &t.token, Duration::from_secs(60));
        tokio::spawn(async move { sim.upsert_embeddings(req).await })
    };
    eventually(Duration::from_secs(20), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'affinity' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("reading pg_stat_activity");
        seen(waiting > 0, "the upsert never waited on the lock")
    })
    .await;

    // Quick calls keep coming on the same connection meanwhile.
    let shape = Shape {
        metric_points: 5,
        embeddings: 1,
        stream_entries: 0,
        reads: true,
        deadline: DEADLINE,
    };
    let (calls, stop) = (Calls::default(), Arc::new(AtomicBool::new(false)));
    let tasks = spawn_load(&svc.channel, &t, &calls, &stop, shape);
    calls
        .wait_oks(
            &[RECORD_METRICS, "ListAiContext"],
            1,
            Instant::now(),
            RECOVERY,
        )
        .await;

    let mut watch = health_watch(&svc).await;
    let first = next_status(&mut watch).await;
    assert_eq!(first, Some(ServingStatus::Serving as i32));

    svc.signal(libc::SIGTERM);
    let next = tokio::time::timeout(Duration::from_secs(10), next_status(&mut watch))
        .await
        .expect("a health update after SIGTERM");
    assert_eq!(next, Some(ServingStatus::NotServing as i32));
    drop(watch);
    // The slow call holds the service up: it cannot have exited.
    assert!(!svc.has_exited(), "exited with a call in flight");

    // New calls, on a new connection and on the old one, are refused
    // cleanly (the first ones may still have been accepted an instant
    // before the listener closed).
    let refusals = Calls::default();
    let until = Instant::now() + RECOVERY;
    loop {
        let fresh = Channel::from_shared(format!("http://{}", svc.addr))
            .expect("a channel URL")
            .connect_lazy();
        for (name, channel) in [
            ("new connection", fresh),
            ("old connection", svc.channel.clone()),
        ] {
            let mut orgs =
                proto::organization_service_client::OrganizationServiceClient::new(channel);
            let req = proto::ListMembersRequest {
                organization_id: t.org.to_string(),
            };
            timed(
                &refusals,
                name,
                String::new(),
                DEADLINE,
                orgs.list_members(with_deadline(req, &t.token, DEADLINE)),
            )
            .await;
        }
        let all = refusals.all();
        let bad = misbehaving(&sent(&all), &[Code::Ok, Code::Unavailable], DEADLINE);
        assert!(bad.is_empty(), "new calls after SIGTERM: {bad:#?}");
        // Done when a new connection is refused and the old one serves
        // no more.
        let last: Vec<Option<Code>> = all.iter().rev().take(2).map(|c| c.code).collect();
        if last[1] == Some(Code::Unavailable) && last[0] != Some(Code::Ok) {
            break;
        }
        let all: Vec<String> = all.iter().map(Call::brief).collect();
        assert!(Instant::now() < until, "new calls still served: {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_load(&stop, tasks).await;

    // Released, the in-flight call completes and the service exits cleanly.
    lock.rollback().await.expect("releasing the lock");
    let slow = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the in-flight call ends")
        .expect("the in-flight call's task");
    assert_eq!(
        slow.as_ref()
            .map(|_| ())
            .map_err(|s| (s.code(), s.message().to_string())),
        Ok(()),
        "the in-flight call completes"
    );
    let status = svc.wait_exit(Duration::from_secs(30)).await;
    let log = svc.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{log}"
    );
    assert!(
        !log.contains("still running after the grace period"),
        "drained within the grace period:\n{log}"
    );
    assert_no_panic(&log);
    // The load's calls were OK (in flight) or refused cleanly.
    let bad = misbehaving(
        &sent(&calls.all()),
        &[Code::Ok, Code::Unavailable],
        DEADLINE,
    );
    assert!(bad.is_empty(), "calls of the load: {bad:#?}");
    let stored: Vec<f32> = sqlx::query_scalar::<_, pgvector::Vector>(
        "SELECT embedding FROM embeddings WHERE organization_id = $1 AND entity_id = $2",
    )
    .bind(t.org)
    .bind(post)
    .fetch_one(&db.pool)
    .await
    .expect("the embedding")
    .to_vec();
    assert_eq!(stored, vector(2), "the in-flight write is committed");
}
