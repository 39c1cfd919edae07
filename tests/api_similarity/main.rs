//! SimilarityService through a real client, server and database: the four
//! RPCs, their error codes, isolation between organizations, all-or-none
//! upserts, and FindSimilarContent agreeing with the schema's
//! `find_similar_content`.
#[path = "../common/mod.rs"]
mod common;
mod support;

mod access;
mod errors;
mod find_similar;
mod index;
mod isolation;
mod search_by_vector;
mod sql_agreement;
mod writes;
