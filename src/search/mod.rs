//! Search (SimilarityService.Search): the full-text and the vector
//! candidate lists of one organization, each with the filters inside its
//! scan, fused for HYBRID (`fusion`), with snippets when asked. Qdrant's
//! Query API is the model: each side over-fetches, then the fusion ranks.

pub mod fusion;

use sqlx::PgConnection;
use uuid::Uuid;

pub use fusion::Found;

use crate::store::search::{self as store, ItemFilter};
use crate::store::similarity::{Hit, IndexCast, VectorQuery};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text,
    Vector,
    Hybrid,
}

/// The vector side's query: a vector of an indexed dimension.
pub struct QueryVector<'a> {
    pub vector: &'a [f32],
    pub cast: IndexCast,
    /// None: every model of the dimension.
    pub model: Option<&'a str>,
}

/// A checked search request.
pub struct Search<'a> {
    pub organization_id: Uuid,
    pub mode: Mode,
    /// TEXT and HYBRID: what the user typed.
    pub text: Option<&'a str>,
    /// VECTOR and HYBRID.
    pub vector: Option<QueryVector<'a>>,
    /// None: every type.
    pub entity_types: Option<&'a [String]>,
    pub filter: &'a ItemFilter,
    pub max_results: i64,
    /// HYBRID: the vector list's share in [0, 1].
    pub vector_weight: f64,
    /// VECTOR: the lowest similarity returned.
    pub threshold: f64,
}

/// How many candidates each side of HYBRID brings to the fusion for `k`
/// results: more than `k`, so that an item ranked low by one side and high
/// by the other can come up.
pub fn candidates(k: i64) -> i64 {
    (k * 2).clamp(50, 1000)
}

/// The answer to `s`, best first, at most `s.max_results` items. HYBRID
/// runs its two sides at once when the caller has a `spare` connection
/// (each side then reads its own snapshot), else one after the other.
pub async fn run(
    conn: &mut PgConnection,
    spare: Option<&mut PgConnection>,
    s: &Search<'_>,
) -> sqlx::Result<Vec<Found>> {
    let k = s.max_results.max(1);
    let per_side = match s.mode {
        Mode::Hybrid => candidates(k),
        Mode::Text | Mode::Vector => k,
    };
    let (text, vector) = match spare {
        Some(other) if s.mode == Mode::Hybrid => tokio::try_join!(
            text_side(conn, s, per_side),
            vector_side(other, s, per_side)
        )?,
        _ => (
            text_side(&mut *conn, s, per_side).await?,
            vector_side(conn, s, per_side).await?,
        ),
    };
    let weight = match s.mode {
        Mode::Text => 0.0,
        Mode::Vector => 1.0,
        Mode::Hybrid => s.vector_weight,
    };
    let mut found = fusion::fuse(&vector, &text, weight, k as usize);
    // One list alone: its own score is the answer's score.
    for f in &mut found {
        match s.mode {
            Mode::Text => f.score = f.text_score,
            Mode::Vector => f.score = f.vector_similarity,
            Mode::Hybrid => {}
        }
    }
    Ok(found)
}

/// The full-text candidates (none in VECTOR mode).
async fn text_side(
    conn: &mut PgConnection,
    s: &Search<'_>,
    per_side: i64,
) -> sqlx::Result<Vec<store::TextHit>> {
    match (s.mode, s.text) {
        (Mode::Text | Mode::Hybrid, Some(q)) => {
            store::text_search(
                conn,
                s.organization_id,
                q,
                s.entity_types,
                s.filter,
                per_side,
            )
            .await
        }
        _ => Ok(Vec::new()),
    }
}

/// The vector candidates (none in TEXT mode).
async fn vector_side(
    conn: &mut PgConnection,
    s: &Search<'_>,
    per_side: i64,
) -> sqlx::Result<Vec<Hit>> {
    match (s.mode, &s.vector) {
        (Mode::Vector | Mode::Hybrid, Some(v)) => {
            let q = VectorQuery {
                organization_id: s.organization_id,
                vector: v.vector,
                cast: v.cast,
                model: v.model,
                entity_types: s.entity_types,
                // HYBRID fuses ranks: no threshold on its candidates.
                threshold: if s.mode == Mode::Vector {
                    s.threshold
                } else {
                    -1.0
                },
                max_results: per_side,
            };
            store::nearest(conn, &q, s.filter).await
        }
        _ => Ok(Vec::new()),
    }
}

/// Each found item's snippet for `text` (items without text get none).
pub async fn snippets(
    conn: &mut PgConnection,
    org: Uuid,
    text: &str,
    found: &[Found],
) -> sqlx::Result<Vec<String>> {
    let items: Vec<(String, Uuid)> = found
        .iter()
        .map(|f| (f.entity_type.clone(), f.entity_id))
        .collect();
    let mut by_item = store::snippets(conn, org, text, &items).await?;
    Ok(items
        .iter()
        .map(|i| by_item.remove(i).unwrap_or_default())
        .collect())
}
