//! The bundled migrations on an empty database: the schema is built directly,
//! and its SQL functions behave as documented.
#[path = "../common/mod.rs"]
mod common;

mod metrics;
mod organizations;
mod schema;
mod similarity;

use sqlx::PgPool;
use uuid::Uuid;

/// A vector of `dim` dimensions pointing mostly along axis `axis`.
fn unit_vector(dim: usize, axis: usize, noise: f32) -> Vec<f32> {
    (0..dim)
        .map(|i| {
            if i == axis {
                1.0
            } else {
                noise * ((i * 7 + axis) % 13) as f32 / 13.0
            }
        })
        .collect()
}

fn vector_literal(v: &[f32]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

async fn new_user(pool: &PgPool) -> (Uuid, Uuid) {
    let user = Uuid::new_v4();
    let org: Uuid = sqlx::query_scalar("SELECT ensure_user_profile($1)")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap();
    (user, org)
}
