//! Every RPC of the contract on a real Citus cluster (a coordinator and
//! two workers), the schema distributed by `affinity distribute`.
mod common;

use common::citus::distributed_server;
use common::rpcs::every_rpc_answers;

#[tokio::test(flavor = "multi_thread")]
async fn on_citus_every_rpc_answers() {
    let Some(s) = distributed_server().await else {
        return;
    };
    every_rpc_answers(&s).await;
    s.shutdown().await.expect("a clean stop");
}
