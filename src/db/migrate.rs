//! The bundled migrations (`migrations/`), embedded in the binary.
use sqlx::migrate::Migrator;

/// Phases 01-04 of the schema refactoring. sqlx runs each file in its own
/// transaction, records it in `_sqlx_migrations`, and holds an advisory lock
/// while migrating, so replicas starting together apply each phase once.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
