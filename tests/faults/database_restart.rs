//! A database restarted or refusing connections under load: UNAVAILABLE in time, then recovery.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use affinity_testkit::cluster::ShutdownMode;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::calls::{misbehaving, Call, Calls};
use crate::common::process::ServiceProcess;
use crate::common::server::{new_tenant, Tenant};
use crate::common::TestDb;
use crate::health::{
    assert_health_followed_the_database, assert_no_panic, terminate, wait_health, wait_not_serving,
    watch_health, Watch,
};
use crate::load::{
    spawn_load, stop_load, Shape, LOG_AI_CONTEXT, RECORD_METRICS, UPSERT_EMBEDDINGS,
};
use crate::stored::assert_writes_kept;
use crate::{DEADLINE, RECOVERY, STARTUP};

// --- The database restarted under a load ---------------------------------

/// The load the database outages meet: every writer but the stream, and
/// the reader.
const OUTAGE_LOAD: Shape = Shape {
    metric_points: 20,
    embeddings: 3,
    stream_entries: 0,
    reads: true,
    deadline: DEADLINE,
};
/// A load's calls, its stop flag and its tasks.
type RunningLoad = (Calls, Arc<AtomicBool>, Vec<JoinHandle<()>>);

/// The writers of [`OUTAGE_LOAD`].
const OUTAGE_WRITERS: [&str; 3] = [RECORD_METRICS, UPSERT_EMBEDDINGS, LOG_AI_CONTEXT];

/// A service over a database of its own, under [`OUTAGE_LOAD`] (each
/// writer has succeeded three times), with its health watched: the
/// database (which keeps every commit through a crash: `synchronous_commit`
/// on), the service, its tenant, the watch ([`watch_health`]) and the load
/// (its calls, its stop, its tasks).
async fn under_load() -> (TestDb, ServiceProcess, Tenant, Watch, RunningLoad) {
    let db = TestDb::empty_durable().await;
    let mut svc = ServiceProcess::spawn(&db.url, &[]);
    svc.wait_serving(STARTUP).await;
    let t = new_tenant(&svc.channel).await;
    let watch = watch_health(&svc).await;
    let (calls, stop) = (Calls::default(), Arc::new(AtomicBool::new(false)));
    let tasks = spawn_load(&svc.channel, &t, &calls, &stop, OUTAGE_LOAD);
    calls
        .wait_oks(&OUTAGE_WRITERS, 3, Instant::now(), RECOVERY)
        .await;
    (db, svc, t, watch, (calls, stop, tasks))
}

/// Restarts PostgreSQL in `mode` while four clients write and read with a
/// deadline, then checks every call, health, and every acknowledged write.
/// Seen failing: with `synchronous_commit` off (immediate mode loses
/// acknowledged writes); health never left SERVING before the service
/// probed the database.
async fn database_restart_under_load(mode: ShutdownMode) {
    // synchronous_commit on: an immediate shutdown must not lose what the
    // service acknowledged (with the throwaway default, off, this test
    // fails: acknowledged commits still in WAL buffers are lost).
    let (mut db, svc, t, (health, watcher), (calls, stop, tasks)) = under_load().await;
    let (shape, writers) = (OUTAGE_LOAD, OUTAGE_WRITERS);
    let readers = [
        "ListAiContext",
        "GetMetricsAggregated",
        "UserHasOrgPermission",
    ];

    let down = Instant::now();
    tokio::task::block_in_place(|| db.cluster().stop_with(mode)).expect("stopping PostgreSQL");
    // A while without any server: calls must fail fast, not wait. Until
    // the service has noticed, and each writer has met the outage.
    wait_not_serving(&health).await;
    calls
        .wait_for(Code::Unavailable, &writers, 3, down, RECOVERY)
        .await;
    tokio::task::block_in_place(|| db.cluster().restart_stopped())
        .expect("starting PostgreSQL again");
    let up = Instant::now();

    // The service recovers by itself: each kind of call succeeds again.
    calls.wait_oks(&writers, 3, up, RECOVERY).await;
    calls.wait_oks(&readers, 1, up, RECOVERY).await;
    wait_health(&svc, ServingStatus::Serving, RECOVERY).await;
    stop_load(&stop, tasks).await;
    watcher.abort();
    assert_health_followed_the_database(&health);

    let all = calls.all();
    let during: Vec<&Call> = all
        .iter()
        .filter(|c| c.started >= down && c.started < up)
        .collect();
    let unavailable = all
        .iter()
        .filter(|c| c.code == Some(Code::Unavailable))
        .count();
    eprintln!(
        "{mode:?}: {} calls, {} while PostgreSQL was down, {unavailable} UNAVAILABLE",
        all.len(),
        during.len()
    );
    // The outage was seen by the clients (else this test proved nothing).
    assert!(unavailable > 0, "no call failed during the outage");
    let bad = misbehaving(&all, &[Code::Ok, Code::Unavailable], DEADLINE);
    assert!(
        bad.is_empty(),
        "calls that were neither OK nor UNAVAILABLE within their deadline: {bad:#?}\n{}",
        svc.log()
    );
    assert_writes_kept(&db.pool, t.org, &all, shape).await;
    let log = terminate(svc).await;
    assert_no_panic(&log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_fast_restart_under_load_gives_unavailable_then_recovers_and_keeps_acknowledged_writes(
) {
    database_restart_under_load(ShutdownMode::Fast).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_crash_restart_under_load_gives_unavailable_then_recovers_and_keeps_acknowledged_writes(
) {
    database_restart_under_load(ShutdownMode::Immediate).await;
}

/// PostgreSQL up but refusing connections (57P03, as during a long crash
/// recovery) for longer than the calls' deadline: the calls must still end
/// UNAVAILABLE, within their deadline, not DEADLINE_EXCEEDED after waiting
/// for a connection that cannot come. Seen failing before the service
/// probed the database: every call waiting then ended DEADLINE_EXCEEDED
/// (sqlx's pool retries "not accepting connections" until its 10 s acquire
/// timeout).
#[tokio::test(flavor = "multi_thread")]
async fn while_the_database_refuses_connections_during_recovery_calls_are_unavailable_within_their_deadline(
) {
    let (mut db, svc, t, (health, watcher), (calls, stop, tasks)) = under_load().await;
    let (shape, writers) = (OUTAGE_LOAD, OUTAGE_WRITERS);

    tokio::task::block_in_place(|| {
        db.cluster().stop_with(ShutdownMode::Fast)?;
        db.cluster().start_refusing_connections()
    })
    .expect("restarting PostgreSQL as a standby");
    let refusing = Instant::now();
    // Calls meet the refusing server for longer than their deadline: until
    // the service has noticed, and each writer has been refused a call it
    // made a deadline after the refusals began.
    wait_not_serving(&health).await;
    calls
        .wait_for(
            Code::Unavailable,
            &writers,
            1,
            refusing + DEADLINE,
            RECOVERY,
        )
        .await;
    tokio::task::block_in_place(|| db.cluster().promote()).expect("promoting PostgreSQL");
    let up = Instant::now();
    calls.wait_oks(&writers, 3, up, RECOVERY).await;
    wait_health(&svc, ServingStatus::Serving, RECOVERY).await;
    stop_load(&stop, tasks).await;
    watcher.abort();
    assert_health_followed_the_database(&health);

    let all = calls.all();
    let refused: Vec<&Call> = all
        .iter()
        .filter(|c| c.started >= refusing && c.started + c.elapsed < up)
        .collect();
    assert!(!refused.is_empty(), "calls met the refusing server");
    let bad = misbehaving(&all, &[Code::Ok, Code::Unavailable], DEADLINE);
    assert!(
        bad.is_empty(),
        "calls that were neither OK nor UNAVAILABLE within their deadline: {bad:#?}"
    );
    assert_writes_kept(&db.pool, t.org, &all, shape).await;
    let log = terminate(svc).await;
    assert_no_panic(&log);
}
