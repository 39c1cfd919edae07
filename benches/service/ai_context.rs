//! LogAiContext (unary) and LogAiContextStream (1,000 entries per stream),
//! committed entries per second, against single-row INSERTs and one
//! 1,000-row INSERT. Entries carry a new idempotency key each (a known key
//! would take the cheaper duplicate path), as retrying agents send, and no
//! embedding. They are deleted afterwards so
//! that runs on a reused data directory stay comparable.

use std::collections::BTreeMap;
use std::sync::Arc;

use affinity::proto::{ai_context_service_client::AiContextServiceClient, LogAiContextRequest};
use anyhow::{Context, Result};
use prost_types::{value::Kind, Struct, Value};
use rand::Rng;
use uuid::Uuid;

use crate::drive::{compare, op, Op, Row};
use crate::env::request;
use crate::world;
use crate::Ctx;

pub const STREAM: usize = 1_000;
/// Marks the entries this benchmark writes, for the clean-up.
const SOURCE: &str = "bench_write";
const SUMMARY: &str = "User asked for a caption for the summer launch video, with three hashtags \
                       and a question to the audience about their plans for the weekend";
const RESPONSE: &str =
    "Here is a caption for the summer launch: bright mornings, long evenings and \
                        the product that keeps up with both. What are your plans this weekend? \
                        #summer #launch #weekend";
const METADATA: &str = r#"{"model": "gpt-4o", "confidence": 0.9}"#;

const SQL_ONE: &str = "INSERT INTO ai_context_logs (id, organization_id, user_id, source_type,
         context_summary, ai_response, metadata, idempotency_key, occurred_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, now())";
const SQL_MANY: &str = "INSERT INTO ai_context_logs (id, organization_id, user_id, source_type,
         context_summary, ai_response, metadata, idempotency_key, occurred_at)
     SELECT t.id, t.org, t.usr, $4, $5, $6, $7::jsonb, t.key, now()
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $8::text[]) AS t(id, org, usr, key)";

/// (organization, user) pairs of members that log.
type Writers = Arc<Vec<(Uuid, Uuid)>>;

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let w = &ctx.world;
    let mut r = world::rng(w.seed, "ai-writers");
    let writers: Writers = Arc::new(
        (0..1000)
            .map(|_| {
                let org = world::pick(&w.weights, r.random());
                let members = &w.members[org];
                let user = members[r.random_range(0..members.len())];
                (w.org_id(org), w.user_id(user))
            })
            .collect(),
    );

    let mut rows = compare(
        "LogAiContext (unary) vs single-row INSERT",
        &unary_rpc(ctx, &writers),
        Some(&unary_sql(ctx, &writers)),
        &ctx.concurrency,
        ctx.timing,
    )
    .await;
    rows.extend(
        compare(
            &format!("LogAiContextStream ({STREAM} per stream) vs one {STREAM}-row INSERT"),
            &stream_rpc(ctx, &writers),
            Some(&many_sql(ctx, &writers)),
            &ctx.concurrency,
            ctx.timing,
        )
        .await,
    );

    let t = std::time::Instant::now();
    let deleted = sqlx::query("DELETE FROM ai_context_logs WHERE source_type = $1")
        .bind(SOURCE)
        .execute(&ctx.pool)
        .await
        .context("deleting the benchmark's entries")?
        .rows_affected();
    sqlx::query("VACUUM (ANALYZE) ai_context_logs")
        .execute(&ctx.pool)
        .await?;
    eprintln!(
        "  removed the {deleted} entries written, in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(rows)
}

fn message(writers: &Writers, i: u64) -> LogAiContextRequest {
    let (org, user) = writers[i as usize % writers.len()];
    let metadata = Struct {
        fields: BTreeMap::from([
            ("model".to_string(), string("gpt-4o")),
            (
                "confidence".to_string(),
                Value {
                    kind: Some(Kind::NumberValue(0.9)),
                },
            ),
        ]),
    };
    LogAiContextRequest {
        organization_id: org.to_string(),
        user_id: user.to_string(),
        source_type: SOURCE.into(),
        context_summary: SUMMARY.into(),
        ai_response: RESPONSE.into(),
        metadata: Some(metadata),
        embedding: Vec::new(),
        embedding_model: String::new(),
        idempotency_key: Uuid::new_v4().to_string(),
        occurred_at: None,
        session_id: String::new(),
        parent_id: String::new(),
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn unary_rpc(ctx: &Ctx, writers: &Writers) -> Op {
    let writers = writers.clone();
    let (channels, auth) = (ctx.channels.clone(), ctx.service_auth.clone());
    op(move |i| {
        let msg = message(&writers, i);
        let mut client = AiContextServiceClient::new(crate::pick(&channels, i));
        let auth = auth.clone();
        async move {
            client.log_ai_context(request(msg, &auth)).await?;
            Ok(1)
        }
    })
}

fn stream_rpc(ctx: &Ctx, writers: &Writers) -> Op {
    let writers = writers.clone();
    let (channels, auth) = (ctx.channels.clone(), ctx.service_auth.clone());
    op(move |i| {
        let first = i * STREAM as u64;
        let msgs: Vec<LogAiContextRequest> = (first..first + STREAM as u64)
            .map(|j| message(&writers, j))
            .collect();
        let mut client = AiContextServiceClient::new(crate::pick(&channels, i));
        let auth = auth.clone();
        async move {
            let r = client
                .log_ai_context_stream(request(tokio_stream::iter(msgs), &auth))
                .await?;
            Ok(r.into_inner().stored)
        }
    })
}

fn unary_sql(ctx: &Ctx, writers: &Writers) -> Op {
    let (writers, pool) = (writers.clone(), ctx.pool.clone());
    op(move |i| {
        let (org, user) = writers[i as usize % writers.len()];
        let key = Uuid::new_v4().to_string();
        let pool = pool.clone();
        async move {
            sqlx::query(SQL_ONE)
                .bind(Uuid::new_v4())
                .bind(org)
                .bind(user)
                .bind(SOURCE)
                .bind(SUMMARY)
                .bind(RESPONSE)
                .bind(METADATA)
                .bind(key)
                .execute(&pool)
                .await?;
            Ok(1)
        }
    })
}

fn many_sql(ctx: &Ctx, writers: &Writers) -> Op {
    let (writers, pool) = (writers.clone(), ctx.pool.clone());
    op(move |i| {
        let first = i * STREAM as u64;
        let (mut ids, mut orgs, mut users, mut keys) = (vec![], vec![], vec![], vec![]);
        for j in first..first + STREAM as u64 {
            let (org, user) = writers[j as usize % writers.len()];
            ids.push(Uuid::new_v4());
            orgs.push(org);
            users.push(user);
            keys.push(Uuid::new_v4().to_string());
        }
        let pool = pool.clone();
        async move {
            let done = sqlx::query(SQL_MANY)
                .bind(ids)
                .bind(orgs)
                .bind(users)
                .bind(SOURCE)
                .bind(SUMMARY)
                .bind(RESPONSE)
                .bind(METADATA)
                .bind(keys)
                .execute(&pool)
                .await?;
            Ok(done.rows_affected())
        }
    })
}
