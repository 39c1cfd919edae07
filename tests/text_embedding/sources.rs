//! Posts written in SQL and AI context entries are embedded, and again when their text changes.
use crate::common::cosine;
use crate::common::text::{
    insert_post, log_entry, model_server, queue_counts, text_server, vector_of, EMBEDDED_WITHIN,
    MODEL,
};
use crate::common::wait::eventually;

#[tokio::test]
async fn a_post_written_in_sql_is_embedded_and_again_when_its_text_changes() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let pool = &server.db.pool;
    let post = insert_post(
        pool,
        t.org,
        t.user,
        "Morning pour-over",
        "Light roast from Kenya",
        &["coffee", "brew"],
    )
    .await;
    let (first, v1) = eventually(EMBEDDED_WITHIN, || async {
        vector_of(pool, t.org, "post", post, MODEL)
            .await
            .ok_or("no vector yet")
    })
    .await;
    assert_eq!(v1, Some(1));
    let nano = model_server();
    let text = "Morning pour-over\n\nLight roast from Kenya\n\n#coffee #brew";
    let expected = nano.embed(&[text], "passage").unwrap().remove(0);
    assert!(
        cosine(&first, &expected) > 0.999,
        "the post's text is caption, content and hashtags"
    );

    sqlx::query("UPDATE posts_content SET caption = 'Evening match highlights', content = 'Both goals in slow motion', hashtags = '{football}' WHERE post_id = $1")
        .bind(post)
        .execute(pool)
        .await
        .unwrap();
    let (second, v2) = eventually(EMBEDDED_WITHIN, || async {
        match vector_of(pool, t.org, "post", post, MODEL).await {
            Some((v, Some(2))) => Ok((v, Some(2))),
            other => Err(other.map(|(_, version)| version)),
        }
    })
    .await;
    assert_eq!(v2, Some(2));
    let expected = nano
        .embed(
            &["Evening match highlights\n\nBoth goals in slow motion\n\n#football"],
            "passage",
        )
        .unwrap()
        .remove(0);
    assert!(cosine(&second, &expected) > 0.999);
    assert!(
        cosine(&second, &first) < 0.99,
        "the vector follows the new text"
    );

    // A change of something else than the text queues nothing.
    sqlx::query("UPDATE posts_core SET status = 'published' WHERE id = $1")
        .bind(post)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(queue_counts(pool).await, (0, 0));

    // Deleted post, deleted text; the queue holds nothing of it.
    sqlx::query("DELETE FROM posts_core WHERE id = $1")
        .bind(post)
        .execute(pool)
        .await
        .unwrap();
    let texts: i64 = sqlx::query_scalar("SELECT count(*) FROM item_texts WHERE entity_id = $1")
        .bind(post)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(texts, 0);
}

#[tokio::test]
async fn ai_context_entries_logged_without_a_vector_are_embedded() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let id = log_entry(
        &server,
        &t,
        "chat",
        "Which grinder setting for espresso?",
        "Start fine, around 8 on most conical burr grinders.",
    )
    .await;
    let (stored, _) = eventually(EMBEDDED_WITHIN, || async {
        vector_of(&server.db.pool, t.org, "ai_context", id, MODEL)
            .await
            .ok_or("no vector yet")
    })
    .await;
    let expected = model_server()
        .embed(&["Which grinder setting for espresso?\n\nStart fine, around 8 on most conical burr grinders."], "passage")
        .unwrap()
        .remove(0);
    assert!(cosine(&stored, &expected) > 0.999);
}
