//! The SQL of each capability. Handlers in `crate::api` call these; they
//! take a pool or a transaction and return plain rows.
pub mod ai_context;
pub mod maintenance;
pub mod metrics;
pub mod organizations;
pub mod similarity;

/// The HNSW candidate list (`hnsw.ef_search`) for a search of `k` results:
/// at least 200 (pgvector's default is 40), because the organization filter
/// sits behind the index: with 40, organizations holding 5-40% of the rows
/// got recall@10 of 0.88-0.93; with 200, at least 0.98 (BENCHMARKS.md). At
/// most 1000, pgvector's limit. The schema's `find_similar_content` uses the
/// same rule.
pub fn ef_search(k: i64) -> i64 {
    k.clamp(200, 1000)
}
