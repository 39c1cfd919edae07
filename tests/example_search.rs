//! The Node BFF's search box (`examples/bff-node`, `AFFINITY_SEARCH`): a
//! signed-in user's full-text search over the organization's posts, with
//! snippets as HTML, through `@grpc/grpc-js` against a real server.
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::examples::{array_of, bff_node, run_json, str_of};
use common::server::TestServer;
use common::text::insert_post;
use tokio::process::Command;
use uuid::Uuid;

fn search_box(s: &TestServer, token: &str, org: Uuid, query: &str) -> Command {
    let mut cmd = bff_node();
    cmd.env("AFFINITY_ADDR", s.addr.to_string())
        .env("AFFINITY_TOKEN", token)
        .env("AFFINITY_ORG_ID", org.to_string())
        .env("AFFINITY_SEARCH", query);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn bff_node_search_box_shows_a_signed_in_users_matches_with_marked_snippets() {
    bff_node(); // installed, or fail before starting anything
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = s.new_tenant().await;
    let pool = &s.db.pool;
    let latte = insert_post(
        pool,
        t.org,
        t.user,
        "Latte art & milk \"tonight\"",
        "Bring a pitcher",
        &["latteart"],
    )
    .await;
    insert_post(pool, t.org, t.user, "Matcha morning", "Green tea", &[]).await;
    insert_post(pool, other.org, other.user, "Latte art elsewhere", "", &[]).await;

    let out = run_json(
        search_box(&s, &t.token, t.org, "latte art"),
        "the BFF's search box",
    )
    .await;
    assert_eq!(str_of(&out, "/query"), "latte art");
    let results = array_of(&out, "/results");
    assert_eq!(
        results.len(),
        1,
        "only the organization's matching post: {out}"
    );
    assert_eq!(str_of(&out, "/results/0/entity_id"), latte.to_string());
    let html = str_of(&out, "/results/0/snippet_html");
    assert!(
        html.contains("<mark>Latte</mark> <mark>art</mark>"),
        "{html}"
    );
    assert!(
        html.contains("&amp; milk &quot;tonight&quot;"),
        "the text is escaped: {html}"
    );

    // Another organization's user sees nothing of it: refused, exit 1.
    let mut cmd = search_box(&s, &other.token, t.org, "latte art");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the BFF finished")
        .expect("the BFF ran");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&latte.to_string()));
}
