//! Page tokens taken from another organization or forged yield nothing of it.
use affinity::proto;
use tonic::Code;

use crate::common::server::authed;
use crate::world;

#[tokio::test(flavor = "multi_thread")]
async fn page_tokens_taken_from_another_organization_or_forged_yield_nothing_of_it() {
    let w = world().await;
    let a_org = w.a.org.to_string();
    let list = |page_token: String| {
        let mut c = w.s.ai_context();
        let token = w.a.token.clone();
        let org = a_org.clone();
        async move {
            c.list_ai_context(authed(
                proto::ListAiContextRequest {
                    organization_id: org,
                    page_token,
                    ..Default::default()
                },
                &token,
            ))
            .await
        }
    };
    // B's token in A's listing: refused, or A's entries only.
    match list(w.b_page_token.clone()).await {
        Ok(r) => {
            let r = r.into_inner();
            assert!(
                r.entries.iter().all(|e| e.organization_id == a_org),
                "B's page token showed another organization's entries: {:?}",
                r.entries
            );
        }
        Err(s) => assert_eq!(s.code(), Code::InvalidArgument, "{s:?}"),
    }
    // B's token in B's organization, by A: denied like any call into B.
    let denied =
        w.s.ai_context()
            .list_ai_context(authed(
                proto::ListAiContextRequest {
                    organization_id: w.b.org.to_string(),
                    page_token: w.b_page_token.clone(),
                    ..Default::default()
                },
                &w.a.token,
            ))
            .await
            .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // Forged tokens: random bytes, and B's token with a byte changed.
    let mut tampered = w.b_page_token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    for forged in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "%%%not base64%%%".to_string(),
        String::from_utf8(tampered).unwrap(),
    ] {
        match list(forged.clone()).await {
            Ok(r) => assert!(
                r.into_inner()
                    .entries
                    .iter()
                    .all(|e| e.organization_id == a_org),
                "{forged}"
            ),
            Err(s) => assert_eq!(s.code(), Code::InvalidArgument, "{forged}: {s:?}"),
        }
    }
}
