//! Reads on a real streaming replica (`pg_basebackup -R` of the test's
//! cluster, `AFFINITY_READ_DATABASE_URL`): searches and lists go there,
//! shown by the service's counters; a call that must read its own write
//! sends `cache-control: no-cache` and the primary serves it; a stopped
//! replica sends reads to the primary without a failed call; the lag is a
//! Prometheus gauge; behind PgBouncer, the replica is read through a
//! PgBouncer of its own.
mod common;

use std::time::Duration;

use std::future::Future;

use affinity::config::Config;
use affinity::proto;
use affinity_testkit::cluster::{ShutdownMode, TempCluster};
use affinity_testkit::pgbouncer::PgBouncer;
use common::load::MembersLoad;
use common::pooler::{pooled_db, through, SERVER_CONNECTIONS};
use common::search::{ids, request};
use common::server::{authed, service_token, Tenant, TestServer};
use common::text::{model_server, text_record, EMBEDDED_WITHIN};
use common::wait::{eventually, seen};
use common::{sample, scrape, TestDb};
use uuid::Uuid;

const REPLICA_READS: &str = "affinity_db_reads_total{database=\"replica\"}";
const PRIMARY_READS: &str = "affinity_db_reads_total{database=\"primary\"}";

/// A server whose reads may go to a streaming replica of its database.
async fn with_replica() -> (TestServer, TempCluster) {
    with_replica_and(|_| {}).await
}

/// [`with_replica`], its configuration changed by `tweak` too.
async fn with_replica_and(tweak: impl FnOnce(&mut Config)) -> (TestServer, TempCluster) {
    let mut db = TestDb::empty().await;
    let replica = db
        .cluster()
        .start_streaming_replica()
        .expect("a streaming replica");
    let url = replica.url("affinity");
    let s = TestServer::start_with_metrics_on(db, |c| {
        c.read_database_url = Some(url);
        tweak(c);
    })
    .await;
    (s, replica)
}

/// The change of the replica's and the primary's read counters over `call`.
async fn reads_of<T>(s: &TestServer, call: impl Future<Output = T>) -> (T, f64, f64) {
    let (replica, primary) = (
        counter(s, REPLICA_READS).await,
        counter(s, PRIMARY_READS).await,
    );
    let out = call.await;
    (
        out,
        counter(s, REPLICA_READS).await - replica,
        counter(s, PRIMARY_READS).await - primary,
    )
}

async fn counter(s: &TestServer, series: &str) -> f64 {
    let addr = s.metrics_addr.expect("a metrics endpoint");
    sample(&scrape(addr).await, series).unwrap_or(0.0)
}

/// Waits until the replica answers `t`'s member list (its probe is up and
/// it has replayed the organization), counted as a replica read.
async fn replica_serves_the_tenant(s: &TestServer, t: &Tenant) {
    eventually(Duration::from_secs(30), || async {
        let got = s.orgs().list_members(members(t)).await;
        let n = got.as_ref().map_or(0, |r| r.get_ref().members.len());
        let served = counter(s, REPLICA_READS).await;
        seen(
            n == 1 && served >= 1.0,
            format!("{got:?}, {served} on the replica"),
        )
    })
    .await;
}

fn members(t: &Tenant) -> tonic::Request<proto::ListMembersRequest> {
    authed(
        proto::ListMembersRequest {
            organization_id: t.org.to_string(),
        },
        &t.token,
    )
}

fn fresh<T>(mut req: tonic::Request<T>) -> tonic::Request<T> {
    req.metadata_mut()
        .insert("cache-control", "no-cache".parse().expect("a header value"));
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_go_to_the_replica_and_a_no_cache_read_sees_its_own_write_on_the_primary() {
    let (s, _replica) = with_replica().await;
    let t = s.new_tenant().await;
    replica_serves_the_tenant(&s, &t).await;

    // A write, then its read with no-cache: the primary, at once.
    let member = Uuid::new_v4();
    s.add_member(t.org, member, proto::Role::Viewer).await;
    let primary_before = counter(&s, PRIMARY_READS).await;
    let listed = s
        .orgs()
        .list_members(fresh(members(&t)))
        .await
        .expect("ListMembers")
        .into_inner();
    assert_eq!(listed.members.len(), 2, "the write is read back");
    assert_eq!(counter(&s, PRIMARY_READS).await, primary_before + 1.0);

    // Searches go there too, once replicated.
    let post = Uuid::new_v4();
    let mut v = vec![0.0f32; 384];
    v[0] = 1.0;
    s.similarity()
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: t.org.to_string(),
                embeddings: vec![proto::EmbeddingRecord {
                    entity: Some(proto::EntityRef {
                        entity_type: "post".into(),
                        entity_id: post.to_string(),
                    }),
                    vector: v.clone(),
                    model: "m".into(),
                }],
            },
            &service_token(),
        ))
        .await
        .expect("UpsertEmbeddings");
    let replica_before = counter(&s, REPLICA_READS).await;
    eventually(Duration::from_secs(30), || {
        let (mut sim, v, token, org) = (s.similarity(), v.clone(), t.token.clone(), t.org);
        async move {
            let got = sim
                .search_by_vector(authed(
                    proto::SearchByVectorRequest {
                        organization_id: org.to_string(),
                        vector: v,
                        ..Default::default()
                    },
                    &token,
                ))
                .await;
            let n = got.as_ref().map_or(0, |r| r.get_ref().items.len());
            seen(n == 1, format!("{got:?}"))
        }
    })
    .await;
    assert!(counter(&s, REPLICA_READS).await > replica_before);
    let scraped = scrape(s.metrics_addr.expect("metrics")).await;
    assert_eq!(sample(&scraped, "affinity_read_replica_up"), Some(1.0));
    let lag = sample(&scraped, "affinity_read_replica_lag_seconds").expect("the lag gauge");
    assert!(lag >= 0.0, "{lag}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_replica_sends_reads_to_the_primary_without_a_failed_call() {
    let (s, mut replica) = with_replica().await;
    let t = s.new_tenant().await;
    eventually(Duration::from_secs(30), || async {
        let n = s
            .orgs()
            .list_members(members(&t))
            .await
            .map_or(0, |r| r.get_ref().members.len());
        seen(n == 1, "the replica has not caught up")
    })
    .await;

    let load = MembersLoad::start(&s, &t, 4);
    let primary_before = counter(&s, PRIMARY_READS).await;
    replica
        .stop_with(ShutdownMode::Fast)
        .expect("stopping the replica");
    // Reads keep being answered, by the primary.
    eventually(Duration::from_secs(30), || async {
        let served = counter(&s, PRIMARY_READS).await - primary_before;
        seen(served >= 50.0, format!("{served} reads on the primary"))
    })
    .await;
    let codes = load.stop().await;
    let failed: Vec<_> = codes.iter().filter(|c| **c != tonic::Code::Ok).collect();
    assert!(failed.is_empty(), "{failed:?} of {} calls", codes.len());
    // The probe notices too.
    eventually(Duration::from_secs(10), || async {
        let up = sample(
            &scrape(s.metrics_addr.expect("metrics")).await,
            "affinity_read_replica_up",
        );
        seen(up == Some(0.0), format!("affinity_read_replica_up {up:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_searches_ai_context_searches_and_uncached_aggregations_read_the_replica() {
    let base_url = model_server().base_url();
    let (s, _replica) = with_replica_and(|c| affinity_testkit::with_text_model(c, &base_url)).await;
    let t = s.new_tenant().await;
    let note = Uuid::new_v4();
    s.similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: vec![text_record(
                    "note",
                    note,
                    "Latte art workshop on Saturday at the roastery",
                )],
            },
            &service_token(),
        ))
        .await
        .expect("IndexTexts");
    let search = |mode: proto::SearchMode| {
        let mut r = request(t.org, mode, "latte art");
        r.with_snippets = true;
        r
    };
    // Embedded on the primary and replayed on the replica: HYBRID finds
    // the note by both sides there.
    eventually(EMBEDDED_WITHIN, || async {
        let got = s
            .similarity()
            .search(authed(search(proto::SearchMode::Hybrid), &t.token))
            .await;
        let hit = got
            .as_ref()
            .ok()
            .and_then(|r| r.get_ref().hits.first().cloned());
        seen(
            hit.is_some_and(|h| h.vector_similarity > 0.0 && h.text_score > 0.0),
            format!("{got:?}"),
        )
    })
    .await;

    for mode in [proto::SearchMode::Hybrid, proto::SearchMode::Text] {
        let (got, on_replica, on_primary) =
            reads_of(&s, s.similarity().search(authed(search(mode), &t.token))).await;
        let got = got.expect("Search").into_inner();
        assert_eq!(ids(&got), vec![note], "{mode:?}: {got:?}");
        assert!(!got.hits[0].snippet.is_empty(), "{mode:?}: {got:?}");
        assert_eq!((on_replica, on_primary), (1.0, 0.0), "{mode:?}");
    }
    // The same search that must be fresh: the primary.
    let (got, on_replica, on_primary) = reads_of(
        &s,
        s.similarity()
            .search(fresh(authed(search(proto::SearchMode::Hybrid), &t.token))),
    )
    .await;
    assert_eq!(ids(&got.expect("Search").into_inner()), vec![note]);
    assert_eq!((on_replica, on_primary), (0.0, 1.0), "no-cache");

    let mut v = vec![0.0f32; 384];
    v[0] = 1.0;
    for (what, query) in [
        (
            "by text",
            proto::SearchAiContextRequest {
                organization_id: t.org.to_string(),
                query_text: "latte art".into(),
                ..Default::default()
            },
        ),
        (
            "by vector",
            proto::SearchAiContextRequest {
                organization_id: t.org.to_string(),
                vector: v.clone(),
                ..Default::default()
            },
        ),
    ] {
        let (got, on_replica, on_primary) = reads_of(
            &s,
            s.ai_context().search_ai_context(authed(query, &t.token)),
        )
        .await;
        got.unwrap_or_else(|e| panic!("SearchAiContext {what}: {e:?}"));
        assert_eq!(
            (on_replica, on_primary),
            (1.0, 0.0),
            "SearchAiContext {what}"
        );
    }

    // An aggregation up to now is asked once: the replica. One with an
    // end is kept by the cache, so it is read where the cache's
    // invalidations come from: the primary.
    let aggregation = |end: Option<prost_types::Timestamp>| proto::GetMetricsAggregatedRequest {
        organization_id: t.org.to_string(),
        entity: Some(proto::EntityRef {
            entity_type: "post".into(),
            entity_id: note.to_string(),
        }),
        metric_name: "views".into(),
        granularity: proto::Granularity::Day as i32,
        end,
        ..Default::default()
    };
    let (got, on_replica, on_primary) = reads_of(
        &s,
        s.metrics()
            .get_metrics_aggregated(authed(aggregation(None), &t.token)),
    )
    .await;
    got.expect("GetMetricsAggregated up to now");
    assert_eq!((on_replica, on_primary), (1.0, 0.0), "up to now");
    let end = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    };
    let (got, on_replica, _) = reads_of(
        &s,
        s.metrics()
            .get_metrics_aggregated(authed(aggregation(Some(end)), &t.token)),
    )
    .await;
    got.expect("GetMetricsAggregated with an end");
    assert_eq!(on_replica, 0.0, "a cached aggregation");
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_pgbouncer_reads_go_to_the_replica_through_a_pooler_of_its_own() {
    let (mut db, bouncer) = pooled_db().await;
    let replica = db
        .cluster()
        .start_streaming_replica()
        .expect("a streaming replica");
    let replica_bouncer = PgBouncer::start(replica.socket_dir(), SERVER_CONNECTIONS)
        .await
        .expect("pgbouncer before the replica");
    let (behind, read_url) = (through(&bouncer, &db), replica_bouncer.url("affinity"));
    let s = TestServer::start_with_metrics_on(db, |c| {
        behind(c);
        c.read_database_url = Some(read_url);
    })
    .await;
    let t = s.new_tenant().await;
    replica_serves_the_tenant(&s, &t).await;
    // Read after read on the replica, each answered from there.
    for _ in 0..20 {
        let (got, on_replica, on_primary) = reads_of(&s, s.orgs().list_members(members(&t))).await;
        assert_eq!(got.expect("ListMembers").into_inner().members.len(), 1);
        assert_eq!((on_replica, on_primary), (1.0, 0.0));
    }
    let (got, on_replica, on_primary) =
        reads_of(&s, s.orgs().list_members(fresh(members(&t)))).await;
    got.expect("ListMembers with no-cache");
    assert_eq!((on_replica, on_primary), (0.0, 1.0), "no-cache");
}
