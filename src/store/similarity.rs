//! Embeddings: similarity search, upserts and deletes (the SQL).
//!
//! Every statement is scoped to one organization by a bound
//! `organization_id`; vectors are always bound parameters. The only text
//! spliced into SQL is the cast expression of a dimension's HNSW index,
//! built from an integer dimension and a closed set of index types.

use crate::db::sql;
use std::collections::{HashMap, HashSet};

use pgvector::Vector;
use sqlx::{Acquire, FromRow, PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use super::search::ItemFilter;

/// How a dimension's HNSW index stores its vectors (`vector_index_dimensions.index_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexType {
    Vector,
    Halfvec,
}

/// The searchable form of one dimension: the cast its partial HNSW index is
/// built on (`embedding_index_expression(dim)`), which a query must order by
/// to use that index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexCast {
    pub dimension: i32,
    pub index_type: IndexType,
}

impl IndexCast {
    fn type_name(&self) -> &'static str {
        match self.index_type {
            IndexType::Vector => "vector",
            IndexType::Halfvec => "halfvec",
        }
    }

    /// `embedding::vector(384)`, `embedding::halfvec(3072)`: the same text as
    /// the schema's `embedding_index_expression(dim)`.
    pub fn expression(&self) -> String {
        format!("embedding::{}({})", self.type_name(), self.dimension)
    }

    /// Parameter `$n` (bound as a `vector`) cast to the index's type.
    fn parameter(&self, n: usize) -> String {
        match self.index_type {
            IndexType::Vector => format!("${n}::vector({})", self.dimension),
            IndexType::Halfvec => format!("${n}::vector::halfvec({})", self.dimension),
        }
    }
}

fn cast_of(dimension: i32, index_type: &str) -> Option<IndexCast> {
    let index_type = match index_type {
        "vector" => IndexType::Vector,
        "halfvec" => IndexType::Halfvec,
        _ => return None,
    };
    Some(IndexCast {
        dimension,
        index_type,
    })
}

/// The index cast of `dimension`, if that dimension has an index.
pub async fn index_cast<'e>(
    db: impl PgExecutor<'e>,
    dimension: i32,
) -> sqlx::Result<Option<IndexCast>> {
    let kind: Option<String> =
        sql::query_scalar("SELECT index_type FROM vector_index_dimensions WHERE dimension = $1")
            .bind(dimension)
            .fetch_optional(db)
            .await?;
    Ok(kind.and_then(|k| cast_of(dimension, &k)))
}

/// Every searchable dimension's index cast.
pub async fn index_casts<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<Vec<IndexCast>> {
    let rows: Vec<(i32, String)> = sql::query_as(
        "SELECT dimension, index_type FROM vector_index_dimensions ORDER BY dimension",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.iter().filter_map(|(d, t)| cast_of(*d, t)).collect())
}

/// One result: an item and its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Hit {
    pub entity_type: String,
    pub entity_id: Uuid,
    pub similarity: f64,
}

/// Whether the item has at least one embedding in `org`.
pub async fn has_embedding<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    entity_type: &str,
    entity_id: Uuid,
) -> sqlx::Result<bool> {
    sql::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM embeddings
                        WHERE organization_id = $1 AND entity_type = $2 AND entity_id = $3)",
    )
    .bind(org)
    .bind(entity_type)
    .bind(entity_id)
    .fetch_one(db)
    .await
}

/// A row of the schema's `find_similar_content`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SimilarRow {
    pub organization_id: Uuid,
    pub entity_type: String,
    pub entity_id: Uuid,
    pub similarity: f64,
}

/// The schema's `find_similar_content`, narrowed to `org`: the RPC and the
/// SQL function give the same answers because the RPC is the function.
/// On Citus the function's own scan settings stay on the coordinator: the
/// call runs in a transaction whose `SET LOCAL`s reach the workers.
pub async fn find_similar_content(
    conn: &mut PgConnection,
    org: Uuid,
    entity_type: &str,
    entity_id: Uuid,
    threshold: f64,
    max_results: i32,
    target_entity_types: &[String],
) -> sqlx::Result<Vec<SimilarRow>> {
    let call = sql::query_as(
        "SELECT organization_id, entity_type, entity_id, similarity
         FROM find_similar_content($1, $2, $3, $4, $5, $6)",
    )
    .bind(entity_type)
    .bind(entity_id)
    .bind(threshold)
    .bind(max_results)
    .bind(target_entity_types)
    .bind(org);
    if !super::on_citus() {
        return call.fetch_all(conn).await;
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    super::begin_nearest_with(&mut tx, super::schema_ef_search(i64::from(max_results))).await?;
    let rows = call.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// A nearest-neighbour query within one organization and one dimension.
pub struct VectorQuery<'a> {
    pub organization_id: Uuid,
    pub vector: &'a [f32],
    pub cast: IndexCast,
    /// None: every model of the vector's dimension.
    pub model: Option<&'a str>,
    /// None: every entity type.
    pub entity_types: Option<&'a [String]>,
    pub threshold: f64,
    pub max_results: i64,
}

/// The nearest-neighbour statement for a dimension and a set of filters.
/// Parameters: $1 organization, $2 dimension, $3 vector, $4 limit, then
/// $5 model and/or the entity types (in that order) when filtered, then
/// the item filter's (which joins each embedding's item text).
pub fn search_sql(
    cast: IndexCast,
    by_model: bool,
    by_type: bool,
    filter: Option<&ItemFilter>,
) -> String {
    let expr = format!("e.{}", cast.expression());
    let param = cast.parameter(3);
    let mut filters = String::new();
    let mut n = 5;
    if by_model {
        filters.push_str(&format!(" AND e.model = ${n}"));
        n += 1;
    }
    if by_type {
        filters.push_str(&format!(" AND e.entity_type = ANY (${n}::text[])"));
        n += 1;
    }
    let join = match filter {
        Some(f) => {
            filters.push_str(&f.sql(&mut n));
            " JOIN item_texts t ON t.organization_id = e.organization_id \
             AND t.entity_type = e.entity_type AND t.entity_id = e.entity_id"
        }
        None => "",
    };
    // The distance once per row: where the plan is an exact scan, the
    // select list and the sort key would each cast and compare every row.
    format!(
        "SELECT entity_type, entity_id, (1 - distance)::double precision AS similarity
         FROM (SELECT e.entity_type, e.entity_id, {expr} <=> {param} AS distance
               FROM embeddings e{join}
               WHERE e.organization_id = $1 AND e.dimension = $2{filters}
               ORDER BY distance
               LIMIT $4) nearest
         ORDER BY distance"
    )
}

/// Most rows one search reads from the index while making up for items that
/// have several models (pgvector's `hnsw.max_scan_tuples` is 20,000).
const MAX_FETCH: i64 = 16_000;

/// Items nearest to `q.vector` in its organization, most similar first (ties
/// by entity type, then id), at least `q.threshold` similar, at most
/// `q.max_results`. An item with embeddings of several models (possible
/// when `q.model` is None) appears once, with its best similarity.
///
/// Runs in a transaction with `hnsw.iterative_scan = strict_order` (so the
/// organization, model and type filters cannot starve the HNSW scan), as a
/// cursor: planned (with the actual values: the organization's size decides
/// between the HNSW index and an exact scan) before `hnsw.ef_search` is
/// raised to [`super::ef_search`] (see [`super::fetch_nearest`]).
pub async fn search<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    q: &VectorQuery<'_>,
) -> sqlx::Result<Vec<Hit>> {
    Ok(walk(db, q, None).await?.0)
}

/// [`search`], with the items' texts passing `filter` (checked inside the
/// scan). Also says whether the scan was complete: false when it ended
/// before `q.max_results` items (the index gives up after
/// `hnsw.max_scan_tuples` rows, as it may under a selective filter).
pub async fn walk<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    q: &VectorQuery<'_>,
    filter: Option<&ItemFilter>,
) -> sqlx::Result<(Vec<Hit>, bool)> {
    let k = q.max_results.max(1);
    let sql = search_sql(q.cast, q.model.is_some(), q.entity_types.is_some(), filter);
    let vector = Vector::from(q.vector.to_vec());
    let mut tx = db.begin().await?;
    super::begin_nearest(&mut tx).await?;
    let declare = format!("DECLARE nearest_items NO SCROLL CURSOR FOR {sql}");

    let mut fetch = k;
    let (hits, complete) = loop {
        let mut query = sql::query(&declare)
            .bind(q.organization_id)
            .bind(q.cast.dimension)
            .bind(&vector)
            .bind(fetch);
        if let Some(model) = q.model {
            query = query.bind(model);
        }
        if let Some(types) = q.entity_types {
            query = query.bind(types);
        }
        if let Some(f) = filter {
            query = f.bind(query);
        }
        query.execute(&mut *tx).await?;
        let rows = super::fetch_nearest(&mut tx, "nearest_items", super::ef_search(k))
            .await?
            .iter()
            .map(Hit::from_row)
            .collect::<sqlx::Result<Vec<Hit>>>()?;
        let fetched = rows.len() as i64;
        // Rows come nearest first: the first row of an item is its best.
        let mut seen = HashSet::with_capacity(rows.len());
        let mut hits = Vec::with_capacity(rows.len());
        for hit in rows {
            if seen.insert((hit.entity_type.clone(), hit.entity_id)) {
                hits.push(hit);
            }
        }
        // Fewer distinct items than asked although the index had more rows:
        // some items came several times (several models); read further.
        if (hits.len() as i64) < k && fetched == fetch && fetch < MAX_FETCH {
            fetch = (fetch * 4).min(MAX_FETCH);
            continue;
        }
        break (hits, fetched == fetch);
    };
    tx.commit().await?;

    let mut hits: Vec<Hit> = hits
        .into_iter()
        .filter(|h| h.similarity >= q.threshold)
        .collect();
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.entity_type.cmp(&b.entity_type))
            .then_with(|| a.entity_id.cmp(&b.entity_id))
    });
    hits.truncate(k as usize);
    Ok((hits, complete))
}

/// One embedding to insert or replace.
#[derive(Debug, Clone)]
pub struct NewEmbedding {
    pub entity_type: String,
    pub entity_id: Uuid,
    pub model: String,
    pub vector: Vec<f32>,
}

/// Inserts or replaces `records` in `org`, all or none, in one statement.
/// Several records for the same (entity, model): the last one wins, as if
/// they were applied in order. Returns how many records were applied.
pub async fn upsert<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    records: &[NewEmbedding],
) -> sqlx::Result<u64> {
    // ON CONFLICT DO UPDATE may not touch a row twice in one statement:
    // keep the last record of each key.
    let mut last: HashMap<(&str, Uuid, &str), usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        last.insert((r.entity_type.as_str(), r.entity_id, r.model.as_str()), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();

    let mut types = Vec::with_capacity(keep.len());
    let mut ids = Vec::with_capacity(keep.len());
    let mut models = Vec::with_capacity(keep.len());
    let mut dims = Vec::with_capacity(keep.len());
    let mut vectors = Vec::with_capacity(keep.len());
    for i in keep {
        let r = &records[i];
        types.push(r.entity_type.as_str());
        ids.push(r.entity_id);
        models.push(r.model.as_str());
        dims.push(r.vector.len() as i32);
        vectors.push(Vector::from(r.vector.clone()));
    }

    // One statement: one transaction, so every record is written or none.
    sql::query(
        "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
         SELECT $1, t.entity_type, t.entity_id, t.model, t.dimension, t.embedding
         FROM unnest($2::text[], $3::uuid[], $4::text[], $5::integer[], $6::vector[])
              AS t(entity_type, entity_id, model, dimension, embedding)
         ON CONFLICT (organization_id, entity_type, entity_id, model) DO UPDATE
         SET embedding = EXCLUDED.embedding, dimension = EXCLUDED.dimension,
             updated_at = EXCLUDED.updated_at",
    )
    .bind(org)
    .bind(&types)
    .bind(&ids)
    .bind(&models)
    .bind(&dims)
    .bind(&vectors)
    .execute(db)
    .await?;
    Ok(records.len() as u64)
}

/// Deletes every model's embedding of `entities` in `org` (and only there).
/// Returns the number of rows deleted.
pub async fn delete<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    entities: &[(String, Uuid)],
) -> sqlx::Result<u64> {
    let types: Vec<&str> = entities.iter().map(|e| e.0.as_str()).collect();
    let ids: Vec<Uuid> = entities.iter().map(|e| e.1).collect();
    let done = sql::query(
        "DELETE FROM embeddings e
         USING unnest($2::text[], $3::uuid[]) AS t(entity_type, entity_id)
         WHERE e.organization_id = $1 AND e.entity_type = t.entity_type AND e.entity_id = t.entity_id",
    )
    .bind(org)
    .bind(&types)
    .bind(&ids)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
