//! The data: `n` vectors of 1536 dimensions over one large organization
//! (half of them), 20 medium ones (1% each) and many small ones (0.1%
//! each); held-out query vectors per size class; and each query's exact 10
//! nearest neighbours in its organization, computed while the rows are
//! generated (an exact scan of half a million rows per query would take
//! longer than the benchmark).

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{anyhow, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

pub const DIM: usize = 1536;
pub const MODEL: &str = "text-embedding-3-small";
pub const K: usize = 10;
const TOPICS: usize = 200;
const SUBSPACE: usize = 16;
const MEDIUM_ORGS: usize = 20;

/// Organizations of one size, and the queries asked of them.
pub struct Class {
    pub name: &'static str,
    pub orgs: Range<usize>,
    pub per_org: usize,
}

pub struct Layout {
    pub sizes: Vec<usize>,
    pub classes: Vec<Class>,
}

/// Half the rows in one organization, 1% in each of 20, the rest in
/// organizations of 0.1%.
pub fn layout(n: usize) -> Layout {
    let large = n / 2;
    let medium = n / 100;
    let small = (n / 1000).max(1);
    let smalls = (n - large - MEDIUM_ORGS * medium) / small;
    let mut sizes = vec![large];
    sizes.extend(std::iter::repeat_n(medium, MEDIUM_ORGS));
    sizes.extend(std::iter::repeat_n(small, smalls));
    let classes = vec![
        Class {
            name: "large (50%)",
            orgs: 0..1,
            per_org: large,
        },
        Class {
            name: "medium (1%)",
            orgs: 1..1 + MEDIUM_ORGS,
            per_org: medium,
        },
        Class {
            name: "small (0.1%)",
            orgs: 1 + MEDIUM_ORGS..1 + MEDIUM_ORGS + smalls,
            per_org: small,
        },
    ];
    Layout { sizes, classes }
}

/// The id of row `row` of organization `org` (organization ids are the
/// service's own).
pub fn entity_id(org: usize, row: usize) -> Uuid {
    Uuid::from_u64_pair(org as u64 + 1, row as u64)
}

/// Topic centroids, a shared subspace and noise, as real embeddings cluster
/// by topic with a low intrinsic dimension; each organization writes about
/// a few topics (the large one about all).
pub struct Model {
    seed: u64,
    centroids: Vec<Vec<f32>>,
    basis: Vec<Vec<f32>>,
    org_topics: Vec<Vec<usize>>,
}

fn rng(seed: u64, what: &str, i: usize) -> ChaCha8Rng {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in what.bytes().chain((i as u64).to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(h)
}

fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
}

/// In eight lanes, so that it vectorizes.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

impl Model {
    pub fn new(seed: u64, layout: &Layout) -> Model {
        let mut r = rng(seed, "model", 0);
        let unit = |r: &mut ChaCha8Rng| {
            let mut v: Vec<f32> = (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect();
            normalize(&mut v);
            v
        };
        let centroids = (0..TOPICS).map(|_| unit(&mut r)).collect();
        let basis = (0..SUBSPACE).map(|_| unit(&mut r)).collect();
        let org_topics = layout
            .sizes
            .iter()
            .enumerate()
            .map(|(org, _)| match org {
                0 => (0..TOPICS).collect(),
                o if o <= MEDIUM_ORGS => (0..20).map(|_| r.random_range(0..TOPICS)).collect(),
                _ => (0..5).map(|_| r.random_range(0..TOPICS)).collect(),
            })
            .collect();
        Model {
            seed,
            centroids,
            basis,
            org_topics,
        }
    }

    /// A vector of organization `org`'s content into `out`.
    fn sample(&self, org: usize, r: &mut impl Rng, out: &mut [f32]) {
        let topics = &self.org_topics[org];
        out.copy_from_slice(&self.centroids[topics[r.random_range(0..topics.len())]]);
        let a = 0.6 * (3.0 / SUBSPACE as f32).sqrt();
        for b in &self.basis {
            let coef = a * r.random_range(-1.0f32..1.0);
            out.iter_mut().zip(b).for_each(|(o, x)| *o += coef * x);
        }
        let noise = 0.3 * (3.0 / DIM as f32).sqrt();
        out.iter_mut()
            .for_each(|o| *o += noise * r.random_range(-1.0f32..1.0));
        normalize(out);
    }
}

/// A query: its organization, vector and exact nearest rows.
pub struct Query {
    pub class: usize,
    pub org: usize,
    pub vector: Vec<f32>,
    /// (cosine distance, row), nearest first.
    pub truth: Vec<(f32, usize)>,
}

/// `per_class` queries in each class, spread over its organizations.
pub fn queries(model: &Model, layout: &Layout, per_class: usize) -> Vec<Query> {
    let mut out = Vec::new();
    for (c, class) in layout.classes.iter().enumerate() {
        for q in 0..per_class {
            let org = class.orgs.start + q % class.orgs.len();
            let mut r = rng(model.seed, "query", out.len());
            let mut vector = vec![0f32; DIM];
            model.sample(org, &mut r, &mut vector);
            out.push(Query {
                class: c,
                org,
                vector,
                truth: Vec::new(),
            });
        }
    }
    out
}

/// COPYs every row into `embeddings` (binary) from a generator thread, then
/// vacuums and analyzes it; fills the `truth` of each query given (none:
/// the truth is already known).
/// Returns the rows copied.
pub async fn load(
    pool: &PgPool,
    model: std::sync::Arc<Model>,
    layout_sizes: Vec<usize>,
    org_ids: Vec<Uuid>,
    mut queries: Vec<Query>,
) -> Result<(u64, Vec<Query>)> {
    let mut conn = pool.acquire().await?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let producer = tokio::task::spawn_blocking(move || -> Result<Vec<Query>> {
        let mut by_org: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, q) in queries.iter().enumerate() {
            by_org.entry(q.org).or_default().push(i);
        }
        let mut buf = Vec::with_capacity(2 << 20);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&[0u8; 8]);
        let mut v = vec![0f32; DIM];
        for (org, &size) in layout_sizes.iter().enumerate() {
            let mut r = rng(model.seed, "rows", org);
            let asked = by_org.get(&org).cloned().unwrap_or_default();
            for row in 0..size {
                model.sample(org, &mut r, &mut v);
                for &qi in &asked {
                    let d = 1.0 - dot(&queries[qi].vector, &v);
                    keep_nearest(&mut queries[qi].truth, d, row);
                }
                row_bytes(&mut buf, org_ids[org], entity_id(org, row), &v);
                if buf.len() >= 1 << 20 {
                    let full = std::mem::replace(&mut buf, Vec::with_capacity(2 << 20));
                    tx.blocking_send(full)
                        .map_err(|_| anyhow!("the COPY stopped"))?;
                }
            }
        }
        buf.extend_from_slice(&(-1i16).to_be_bytes());
        tx.blocking_send(buf)
            .map_err(|_| anyhow!("the COPY stopped"))?;
        Ok(queries)
    });
    let mut copy = conn
        .copy_in_raw(
            "COPY embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    while let Some(buf) = rx.recv().await {
        copy.send(buf).await?;
    }
    match producer.await.context("the row generator panicked")? {
        Ok(q) => {
            let rows = copy.finish().await?;
            sqlx::raw_sql("VACUUM ANALYZE embeddings")
                .execute(&mut *conn)
                .await?;
            Ok((rows, q))
        }
        Err(e) => {
            copy.abort(format!("generator failed: {e}")).await?;
            Err(e)
        }
    }
}

fn keep_nearest(truth: &mut Vec<(f32, usize)>, d: f32, row: usize) {
    if truth.len() == K && d >= truth[K - 1].0 {
        return;
    }
    let at = truth.partition_point(|&(x, _)| x <= d);
    truth.insert(at, (d, row));
    truth.truncate(K);
}

/// One row in COPY's binary form; pgvector's is two int16 then float4s.
fn row_bytes(b: &mut Vec<u8>, org: Uuid, id: Uuid, v: &[f32]) {
    let field = |b: &mut Vec<u8>, bytes: &[u8]| {
        b.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        b.extend_from_slice(bytes);
    };
    b.extend_from_slice(&6i16.to_be_bytes());
    field(b, org.as_bytes());
    field(b, b"post");
    field(b, id.as_bytes());
    field(b, MODEL.as_bytes());
    field(b, &(DIM as i32).to_be_bytes());
    b.extend_from_slice(&(4 + 4 * DIM as i32).to_be_bytes());
    b.extend_from_slice(&(DIM as i16).to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    for x in v {
        b.extend_from_slice(&x.to_be_bytes());
    }
}
