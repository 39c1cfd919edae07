//! The service as a whole: authentication, health, reflection, startup on
//! each kind of database, shutdown, and the embedded default.
#[path = "../common/mod.rs"]
mod common;

mod embedded;
mod health_reflection;
mod refusals;
mod startup;
mod unix_socket;

use affinity_testkit::test_config;
use common::server::SECRET;

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
