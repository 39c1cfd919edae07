//! Authentication and roles: every RPC refuses bad tokens and non-members, and a viewer only reads.

use crate::common;
use crate::common::server::{code, service_token, user_token, TestServer};
use crate::support::{eref, member, rec, search_req, server_with_posts, similar_req};
use affinity::proto::{self, Role};
use tonic::Code;
use uuid::Uuid;

// -------------------------------------------------------------- error codes

/// The codes of the four RPCs (FindSimilarContent of `source`,
/// SearchByVector of `v`, an upsert and a delete of new posts, all in
/// `org`) for requests decorated by `with`.
async fn codes(
    s: &TestServer,
    org: Uuid,
    source: Uuid,
    v: &[f32],
    with: impl FnOnce(Request4) -> Request4,
) -> [Code; 4] {
    let reqs = with(Request4 {
        similar: tonic::Request::new(similar_req(org, "post", source)),
        search: tonic::Request::new(search_req(org, v)),
        upsert: tonic::Request::new(proto::UpsertEmbeddingsRequest {
            organization_id: org.to_string(),
            embeddings: vec![rec("post", Uuid::new_v4(), "m", v)],
        }),
        delete: tonic::Request::new(proto::DeleteEmbeddingsRequest {
            organization_id: org.to_string(),
            entities: vec![eref("post", Uuid::new_v4())],
        }),
    });
    let mut c = s.similarity();
    [
        code(c.find_similar_content(reqs.similar).await),
        code(c.search_by_vector(reqs.search).await),
        code(c.upsert_embeddings(reqs.upsert).await),
        code(c.delete_embeddings(reqs.delete).await),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_similarity_rpc_refuses_a_missing_garbage_foreign_or_expired_token_as_unauthenticated(
) {
    let (s, t, a, v) = server_with_posts(7, 2).await;
    // No token; garbage; wrongly signed; expired.
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r).await,
        [Code::Unauthenticated; 4]
    );
    for bad in [
        "garbage".to_string(),
        affinity::auth::mint(
            b"another-secret-of-at-least-thirty-two-bytes",
            t.user,
            "authenticated",
            3600,
        )
        .unwrap(),
        expired_token(t.user),
    ] {
        assert_eq!(
            codes(&s, t.org, a, &v, |r| r.token(&bad)).await,
            [Code::Unauthenticated; 4],
            "{bad}"
        );
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_similarity_rpc_denies_a_non_member_even_for_an_organization_that_does_not_exist() {
    let (s, t, a, v) = server_with_posts(7, 2).await;
    let stranger = user_token(Uuid::new_v4());
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&stranger)).await,
        [Code::PermissionDenied; 4]
    );
    let nowhere = Uuid::new_v4().to_string();
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&stranger).org(&nowhere)).await,
        [Code::PermissionDenied; 4]
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_may_only_read_embeddings_while_editors_owners_and_service_role_also_write() {
    let (s, t, a, v) = server_with_posts(7, 2).await;
    let viewer = member(&s, t.org, Role::Viewer).await;
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&viewer)).await,
        [
            Code::Ok,
            Code::Ok,
            Code::PermissionDenied,
            Code::PermissionDenied
        ]
    );
    let editor = member(&s, t.org, Role::Editor).await;
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&editor)).await,
        [Code::Ok; 4]
    );
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&t.token)).await,
        [Code::Ok; 4]
    );
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&service_token())).await,
        [Code::Ok; 4]
    );
    s.shutdown().await.unwrap();
}

/// A token signed with the right secret that expired an hour ago.
fn expired_token(user: Uuid) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": user.to_string(), "role": "authenticated", "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(common::server::SECRET.as_bytes()),
    )
    .unwrap()
}

struct Request4 {
    similar: tonic::Request<proto::FindSimilarContentRequest>,
    search: tonic::Request<proto::SearchByVectorRequest>,
    upsert: tonic::Request<proto::UpsertEmbeddingsRequest>,
    delete: tonic::Request<proto::DeleteEmbeddingsRequest>,
}

impl Request4 {
    fn token(mut self, token: &str) -> Self {
        let v: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        self.similar
            .metadata_mut()
            .insert("authorization", v.clone());
        self.search
            .metadata_mut()
            .insert("authorization", v.clone());
        self.upsert
            .metadata_mut()
            .insert("authorization", v.clone());
        self.delete.metadata_mut().insert("authorization", v);
        self
    }

    fn org(mut self, org: &str) -> Self {
        self.similar.get_mut().organization_id = org.to_string();
        self.search.get_mut().organization_id = org.to_string();
        self.upsert.get_mut().organization_id = org.to_string();
        self.delete.get_mut().organization_id = org.to_string();
        self
    }
}
