//! Every RPC of the contract through a real PgBouncer (Debian's 1.18) in
//! transaction mode, the direct URL beside it for migrations, LISTEN and
//! advisory locks (the vectorizer's claims too).
mod common;

use common::pooler::{pooled_db, through};
use common::rpcs::every_rpc_answers;
use common::server::TestServer;
use common::text::model_server;

#[tokio::test(flavor = "multi_thread")]
async fn behind_pgbouncer_in_transaction_mode_every_rpc_answers() {
    let (db, bouncer) = pooled_db().await;
    let model = model_server().base_url();
    let pooled = through(&bouncer, &db);
    let s = TestServer::start_with(db, |c| {
        pooled(c);
        affinity_testkit::with_text_model(c, &model);
    })
    .await;
    every_rpc_answers(&s).await;
    s.shutdown().await.expect("a clean stop");
}
