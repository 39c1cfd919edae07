//! Search requests and their answers in tests.
#![allow(dead_code)]

use affinity::proto::{self, SearchMode};
use tonic::Status;
use uuid::Uuid;

use super::server::{authed, TestServer};

/// A request of `mode` for `text` in `org`, every other field unset.
pub fn request(org: Uuid, mode: SearchMode, text: &str) -> proto::SearchRequest {
    proto::SearchRequest {
        organization_id: org.to_string(),
        query_text: text.to_string(),
        mode: mode as i32,
        ..Default::default()
    }
}

/// The call's answer.
pub async fn search(
    server: &TestServer,
    token: &str,
    req: proto::SearchRequest,
) -> Result<proto::SearchResponse, Status> {
    server
        .similarity()
        .search(authed(req, token))
        .await
        .map(tonic::Response::into_inner)
}

/// The ids of the hits, best first.
pub fn ids(r: &proto::SearchResponse) -> Vec<Uuid> {
    r.hits
        .iter()
        .map(|h| {
            h.entity
                .as_ref()
                .expect("a hit names its item")
                .entity_id
                .parse()
                .expect("a UUID")
        })
        .collect()
}

/// The ids a TEXT search for `text` finds in `org`.
pub async fn text_ids(server: &TestServer, token: &str, org: Uuid, text: &str) -> Vec<Uuid> {
    let r = search(server, token, request(org, SearchMode::Text, text))
        .await
        .unwrap_or_else(|s| panic!("TEXT search for {text:?}: {s:?}"));
    ids(&r)
}
