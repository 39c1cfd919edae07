//! Health watches and waits, and a clean stop of the service on SIGTERM.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest, HealthCheckResponse};

use crate::common::process::ServiceProcess;
use crate::common::wait::{eventually, seen};
use crate::RECOVERY;

/// The statuses a health watch has seen so far, and the task that collects
/// them ([`watch_health`]).
pub(crate) type Watch = (Arc<Mutex<Vec<i32>>>, JoinHandle<()>);

/// A health Watch stream on a connection of its own.
pub(crate) async fn health_watch(svc: &ServiceProcess) -> tonic::Streaming<HealthCheckResponse> {
    let channel = Channel::from_shared(format!("http://{}", svc.addr))
        .expect("a channel URL")
        .connect()
        .await
        .expect("connecting");
    HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watching health")
        .into_inner()
}

/// The next status a health watch sends, if any.
pub(crate) async fn next_status(watch: &mut tonic::Streaming<HealthCheckResponse>) -> Option<i32> {
    watch.next().await.and_then(|r| r.ok()).map(|r| r.status)
}

/// Every status a health Watch stream (on a connection of its own) sends,
/// from the first one (received before this returns) until the task is
/// aborted.
pub(crate) async fn watch_health(svc: &ServiceProcess) -> Watch {
    let mut watch = health_watch(svc).await;
    let first = next_status(&mut watch)
        .await
        .expect("a first health status");
    let seen = Arc::new(Mutex::new(vec![first]));
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(r)) = watch.next().await {
                seen.lock().expect("health lock").push(r.status);
            }
        })
    };
    (seen, task)
}

/// Waits until a watch has seen health go NOT_SERVING (`watched`): the
/// service has noticed the database is gone.
pub(crate) async fn wait_not_serving(watched: &Mutex<Vec<i32>>) {
    eventually(RECOVERY, || async {
        let statuses = watched.lock().expect("health lock").clone();
        seen(
            statuses.contains(&(ServingStatus::NotServing as i32)),
            format!("health: {statuses:?} (1 SERVING, 2 NOT_SERVING)"),
        )
    })
    .await;
}

/// Health went NOT_SERVING and then SERVING again, as `seen` by a watch.
pub(crate) fn assert_health_followed_the_database(seen: &Mutex<Vec<i32>>) {
    let seen = seen.lock().expect("health lock").clone();
    let (serving, not_serving) = (
        ServingStatus::Serving as i32,
        ServingStatus::NotServing as i32,
    );
    let down = seen.iter().position(|s| *s == not_serving);
    assert!(
        down.is_some_and(|i| seen[i..].contains(&serving)),
        "health: {seen:?} (1 SERVING, 2 NOT_SERVING)"
    );
}

pub(crate) async fn wait_health(svc: &ServiceProcess, want: ServingStatus, within: Duration) {
    eventually(within, || async {
        let health = svc.health().await;
        seen(
            health == Some(want),
            format!("health {health:?}, not {want:?}:\n{}", svc.log()),
        )
    })
    .await;
}

/// SIGTERM, then a clean exit within the grace period (the service's
/// default of 30 s, plus slack).
pub(crate) async fn terminate(mut svc: ServiceProcess) -> String {
    svc.signal(libc::SIGTERM);
    let status = svc.wait_exit(Duration::from_secs(40)).await;
    let log = svc.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after SIGTERM:\n{log}"
    );
    log
}

pub(crate) fn assert_no_panic(log: &str) {
    assert!(!log.contains("panicked"), "the service panicked:\n{log}");
}
