//! Search in TEXT mode: PostgreSQL full-text search over each item's text
//! (the 'simple' configuration, websearch syntax), the names, handles,
//! hashtags and codes people type, snippets, and organizations kept apart.
//! No text model is configured: TEXT needs none.
mod common;

use affinity::proto::{self, SearchMode};
use common::search::{ids, request, search, text_ids};
use common::server::{authed, TestServer};
use common::text::{insert_post, text_record};
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn text_search_understands_phrases_or_and_minus_as_people_type_them() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let pool = &server.db.pool;
    let latte = insert_post(
        pool,
        t.org,
        t.user,
        "Latte art at dawn",
        "Oat milk pours best",
        &[],
    )
    .await;
    let art = insert_post(
        pool,
        t.org,
        t.user,
        "Art of the pour",
        "A latte needs whole milk",
        &[],
    )
    .await;
    let tea = insert_post(
        pool,
        t.org,
        t.user,
        "Matcha morning",
        "Green tea, no milk",
        &[],
    )
    .await;

    let mut both = text_ids(&server, &t.token, t.org, "latte art").await;
    both.sort();
    let mut expected = vec![latte, art];
    expected.sort();
    assert_eq!(both, expected, "every word must match");
    assert_eq!(
        text_ids(&server, &t.token, t.org, "\"latte art\"").await,
        [latte]
    );
    assert_eq!(
        text_ids(&server, &t.token, t.org, "latte -oat").await,
        [art]
    );
    let mut either = text_ids(&server, &t.token, t.org, "matcha or pour").await;
    either.sort();
    let mut expected = vec![art, tea];
    expected.sort();
    assert_eq!(either, expected);
    assert!(text_ids(&server, &t.token, t.org, "espresso")
        .await
        .is_empty());
    // Words only of punctuation: nothing to match, not an error.
    assert!(text_ids(&server, &t.token, t.org, "#@!").await.is_empty());
}

#[tokio::test]
async fn hashtags_handles_and_codes_are_found_as_typed_with_or_without_their_sigils() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let pool = &server.db.pool;
    let post = insert_post(
        pool,
        t.org,
        t.user,
        "Saturday class with @brewlab_mtl",
        "Grinder SKU-4471 ships with firmware v2.3.1; e-mail us.",
        &["LatteArt", "coffee_lovers"],
    )
    .await;
    // A decoy on the same topic without the terms.
    insert_post(
        pool,
        t.org,
        t.user,
        "Saturday class",
        "Latte art with a grinder",
        &["coffee"],
    )
    .await;

    let found = [
        "#latteart",
        "latteart",
        "#LatteArt",
        "@brewlab_mtl",
        "brewlab_mtl",
        "brewlab",
        "brewlabmtl",
        "#coffee_lovers",
        "coffeelovers",
        "SKU-4471",
        "sku-4471",
        "sku4471",
        "SKU 4471",
        "4471",
        "v2.3.1",
        "e-mail",
        "email",
    ];
    for typed in found {
        assert_eq!(
            text_ids(&server, &t.token, t.org, typed).await,
            [post],
            "{typed:?} should find only the post carrying it"
        );
    }
    // What does not work, and is documented: a version without its `v`
    // (the parser keeps "v2.3.1" whole).
    assert!(text_ids(&server, &t.token, t.org, "2.3.1").await.is_empty());
}

#[tokio::test]
async fn snippets_mark_the_query_terms_only_when_asked() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let long = format!(
        "{} The new grinder arrives on Monday with a ceramic burr set. {}",
        "Filler words about the weather and the street. ".repeat(20),
        "More words about nothing in particular. ".repeat(20)
    );
    insert_post(&server.db.pool, t.org, t.user, "Shop news", &long, &[]).await;

    let plain = search(
        &server,
        &t.token,
        request(t.org, SearchMode::Text, "ceramic burr"),
    )
    .await
    .expect("TEXT search");
    assert_eq!(plain.hits.len(), 1);
    assert_eq!(plain.hits[0].snippet, "", "no snippet unless asked");
    assert!(plain.hits[0].text_score > 0.0 && plain.hits[0].text_score < 1.0);
    assert_eq!(plain.hits[0].vector_similarity, 0.0);
    assert_eq!(plain.model, "", "TEXT uses no model");

    let mut req = request(t.org, SearchMode::Text, "ceramic burr");
    req.with_snippets = true;
    let with = search(&server, &t.token, req)
        .await
        .expect("TEXT search with snippets");
    let snippet = &with.hits[0].snippet;
    assert!(
        snippet.contains("\u{2}ceramic\u{3} \u{2}burr\u{3}"),
        "{snippet:?}"
    );
    assert!(
        snippet.len() < long.len() / 4,
        "a passage, not the body: {snippet:?}"
    );
}

#[tokio::test]
async fn texts_given_to_index_texts_are_searchable_at_once_by_type() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let doc = Uuid::new_v4();
    let note = Uuid::new_v4();
    let indexed = server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: vec![
                    text_record("help_doc", doc, "Resetting the grinder: hold both buttons"),
                    text_record("note", note, "Grinder arrives Monday"),
                ],
            },
            &t.token,
        ))
        .await
        .expect("IndexTexts")
        .into_inner();
    assert_eq!(indexed.queued_for_embedding, 0, "no text model here");

    let mut req = request(t.org, SearchMode::Text, "grinder");
    req.entity_types = vec!["help_doc".into()];
    assert_eq!(
        ids(&search(&server, &t.token, req).await.expect("by type")),
        [doc]
    );
    let mut all = text_ids(&server, &t.token, t.org, "grinder").await;
    all.sort();
    let mut expected = vec![doc, note];
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn nothing_of_another_organization_is_ranked_or_revealed() {
    let server = TestServer::start().await;
    let ours = server.new_tenant().await;
    let theirs = server.new_tenant().await;
    let pool = &server.db.pool;
    let mine = insert_post(
        pool,
        ours.org,
        ours.user,
        "Cold brew recipe",
        "",
        &["coldbrew"],
    )
    .await;
    // Many of theirs, better matches than ours: none may come back.
    for _ in 0..5 {
        insert_post(
            pool,
            theirs.org,
            theirs.user,
            "Cold brew cold brew",
            "cold brew",
            &["coldbrew"],
        )
        .await;
    }
    let mut req = request(ours.org, SearchMode::Text, "cold brew");
    req.max_results = 100;
    req.with_snippets = true;
    let r = search(&server, &ours.token, req).await.expect("our search");
    assert_eq!(ids(&r), [mine]);

    // Their organization, asked by our user: refused, whatever it holds.
    let theirs_asked = search(
        &server,
        &ours.token,
        request(theirs.org, SearchMode::Text, "cold brew"),
    )
    .await;
    assert_eq!(
        theirs_asked.map_err(|s| s.code()).err(),
        Some(Code::PermissionDenied)
    );
    let nowhere = search(
        &server,
        &ours.token,
        request(Uuid::new_v4(), SearchMode::Text, "cold brew"),
    )
    .await;
    assert_eq!(
        nowhere.map_err(|s| s.code()).err(),
        Some(Code::PermissionDenied)
    );
}

#[tokio::test]
async fn a_query_of_only_excluded_words_finds_the_organizations_other_items_only() {
    let server = TestServer::start().await;
    let ours = server.new_tenant().await;
    let theirs = server.new_tenant().await;
    let pool = &server.db.pool;
    insert_post(pool, ours.org, ours.user, "Oat milk latte", "", &[]).await;
    let tea = insert_post(pool, ours.org, ours.user, "Green tea", "", &[]).await;
    insert_post(pool, theirs.org, theirs.user, "Green tea too", "", &[]).await;

    assert_eq!(
        text_ids(&server, &ours.token, ours.org, "-oat").await,
        [tea]
    );
    assert_eq!(
        text_ids(&server, &ours.token, ours.org, "espresso or -milk").await,
        [tea]
    );
}

/// The index names an organization by the last 12 hex digits of its id
/// (migration 15): two organizations sharing them share posting lists, and
/// each row's own organization still decides.
#[tokio::test]
async fn an_organization_sharing_our_index_tag_sees_none_of_ours() {
    let server = TestServer::start().await;
    let ours = server.new_tenant().await;
    let pool = &server.db.pool;
    let tag = &ours.org.to_string()[24..];
    let twin: Uuid = format!("00000000-0000-4000-8000-{tag}")
        .parse()
        .expect("a uuid");
    assert_ne!(twin, ours.org);
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'twin', $1::text)")
        .bind(twin)
        .execute(pool)
        .await
        .expect("the twin organization");
    let mine = insert_post(pool, ours.org, ours.user, "Cold brew recipe", "", &[]).await;
    for _ in 0..3 {
        insert_post(pool, twin, ours.user, "Cold brew cold brew", "", &[]).await;
    }
    assert_eq!(
        text_ids(&server, &ours.token, ours.org, "cold brew").await,
        [mine]
    );
    assert_eq!(
        text_ids(&server, &ours.token, ours.org, "\"cold brew\"").await,
        [mine]
    );
    assert_eq!(
        text_ids(&server, &ours.token, ours.org, "-tea").await,
        [mine]
    );
}

/// A document whose organization-qualified form would not fit a tsvector
/// (a word near its 2,047-byte limit; about a megabyte of distinct words)
/// is indexed under its organization only, and found by its own words.
#[tokio::test]
async fn texts_too_large_to_qualify_by_organization_are_still_found_by_their_words() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let (plain, long_word, many_words) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let word = "x".repeat(2040);
    let words: Vec<String> = (0..40_000).map(|i| format!("k{i:019}")).collect();
    let texts = vec![
        text_record("note", plain, "Grinder manual, page one"),
        text_record("note", long_word, &format!("{word} grinder blades")),
        text_record(
            "note",
            many_words,
            &format!("grinder parts {}", words.join(" ")),
        ),
    ];
    server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts,
            },
            &t.token,
        ))
        .await
        .expect("IndexTexts");

    let mut all = text_ids(&server, &t.token, t.org, "grinder").await;
    all.sort();
    let mut expected = vec![plain, long_word, many_words];
    expected.sort();
    assert_eq!(all, expected);
    assert_eq!(
        text_ids(&server, &t.token, t.org, "\"grinder blades\"").await,
        [long_word]
    );
    assert_eq!(
        text_ids(&server, &t.token, t.org, "grinder -blades -parts").await,
        [plain]
    );
    assert_eq!(
        text_ids(&server, &t.token, t.org, "k0000000000000039999").await,
        [many_words]
    );
    assert!(text_ids(&server, &t.token, t.org, "espresso")
        .await
        .is_empty());
}
