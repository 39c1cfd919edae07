//! The benchmark's world: its sizes, deterministic ids, organizations of very
//! different sizes, memberships and a clustered embedding model.
//!
//! Everything here is a pure function of the seed, so a run that reuses a
//! loaded data directory rebuilds the same ids and query sets without
//! reading them back from the database.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

/// Organizations that hold the content (besides every user's personal one).
pub const ORGS: usize = 100;
/// Embedding models: posts (FindSimilarContent) and documents (SearchByVector, RAG).
pub const POST_MODEL: &str = "text-embedding-3-small";
pub const POST_DIM: usize = 1536;
pub const DOC_MODEL: &str = "all-minilm-l6-v2";
pub const DOC_DIM: usize = 384;
/// Metrics recorded for every metric post; the busy post records the first only.
pub const METRICS: [&str; 3] = ["impressions", "likes", "reach"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// About 1/100 of full: a few minutes in all.
    Small,
    /// The sizes of issue 4.
    Full,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Full => "full",
        }
    }
}

/// How much of everything.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Per dimension (1536 posts and 384 documents).
    pub embeddings_per_dim: usize,
    pub users: usize,
    pub ai_entries: usize,
    /// Posts with a year of hourly points per metric.
    pub hourly_posts: usize,
    /// Posts with a year of daily points per metric.
    pub daily_posts: usize,
    /// The busy post records a point every this many seconds for a year.
    pub busy_step_secs: i64,
    /// Topic centroids of the embedding model.
    pub topics: usize,
}

impl Scale {
    pub fn of(size: Size) -> Scale {
        match size {
            // 200k + 200k embeddings, 50k users, 1M AI context entries and
            // 550*3*8760 + 5000*3*365 + 525,600 = 20.45M metric points.
            Size::Full => Scale {
                embeddings_per_dim: 200_000,
                users: 50_000,
                ai_entries: 1_000_000,
                hourly_posts: 550,
                daily_posts: 5_000,
                busy_step_secs: 60,
                topics: 256,
            },
            Size::Small => Scale {
                embeddings_per_dim: 2_000,
                users: 500,
                ai_entries: 10_000,
                hourly_posts: 4,
                daily_posts: 50,
                busy_step_secs: 300,
                topics: 32,
            },
        }
    }

    pub fn metric_points(&self) -> u64 {
        let per_series_hourly = 365 * 24;
        (self.hourly_posts * METRICS.len() * per_series_hourly
            + self.daily_posts * METRICS.len() * 365) as u64
            + (365 * 86_400 / self.busy_step_secs) as u64
    }
}

/// What a deterministic id names.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Kind {
    Org = 1,
    User = 2,
    Post = 3,
    Document = 4,
    MetricPost = 5,
    AiEntry = 6,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finalizer: a cheap, well-spread bijection.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random-looking (v4) UUID that is a pure function of (seed, kind, i):
/// ids look like real auth-provider ids to the indexes, yet every run can
/// recompute them.
pub fn uid(seed: u64, kind: Kind, i: u64) -> Uuid {
    let a = mix(seed ^ mix((kind as u64) << 48 ^ mix(i)));
    let b = mix(a ^ 0x5851_F42D_4C95_7F2D);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A fresh RNG for one purpose, independent of every other stream.
pub fn rng(seed: u64, stream: &str) -> ChaCha8Rng {
    let mut h = seed;
    for b in stream.bytes() {
        h = mix(h ^ u64::from(b));
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// Share of the content of each organization: one holds 40%, four 5% each,
/// five 2.5% each, and 90 between 0.49% and 0.12% (most under 0.5%).
pub fn org_weights() -> Vec<f64> {
    let mut w = vec![0.40];
    w.extend([0.05; 4]);
    w.extend([0.025; 5]);
    let (hi, lo) = (0.0049, 0.001_211);
    w.extend((0..90).map(|i| hi - (hi - lo) * i as f64 / 89.0));
    debug_assert_eq!(w.len(), ORGS);
    w
}

/// An organization size class of the similarity scenarios.
#[derive(Debug, Clone)]
pub struct Class {
    pub name: &'static str,
    pub orgs: std::ops::Range<usize>,
}

pub fn classes() -> Vec<Class> {
    vec![
        Class {
            name: "largest (40%)",
            orgs: 0..1,
        },
        Class {
            name: "~5%",
            orgs: 1..5,
        },
        Class {
            name: "small (<0.5%)",
            orgs: 10..ORGS,
        },
    ]
}

/// Roles, in the order of the schema's `org_role`.
pub const ROLES: [&str; 4] = ["viewer", "editor", "admin", "owner"];

/// The world every run rebuilds from the seed.
pub struct World {
    pub seed: u64,
    pub size: Size,
    pub scale: Scale,
    pub weights: Vec<f64>,
    /// First item index of each organization, in each embedding set (both
    /// dimensions share the layout), plus the total at the end.
    pub starts: Vec<usize>,
    /// (organization, role index) of each user's shared-organization memberships.
    pub memberships: Vec<Vec<(usize, usize)>>,
    /// Users of each organization; the first one is its owner.
    pub members: Vec<Vec<usize>>,
}

impl World {
    pub fn new(seed: u64, size: Size) -> World {
        let scale = Scale::of(size);
        let weights = org_weights();
        let starts = ranges(&weights, scale.embeddings_per_dim);

        // User k < 100 owns organization k (and comes first among its
        // members); every user also joins one to three organizations drawn
        // by size, with a mix of roles.
        let mut r = rng(seed, "memberships");
        let mut memberships = vec![Vec::new(); scale.users];
        let mut members = vec![Vec::new(); ORGS];
        for (k, org_members) in members.iter_mut().enumerate() {
            memberships[k].push((k, 3));
            org_members.push(k);
        }
        for (u, mine) in memberships.iter_mut().enumerate() {
            let n = r.random_range(1..=3);
            for _ in 0..n {
                let org = pick(&weights, r.random());
                if mine.iter().any(|(o, _)| *o == org) {
                    continue;
                }
                let role = match r.random_range(0..100) {
                    0..50 => 0,
                    50..85 => 1,
                    85..98 => 2,
                    _ => 3,
                };
                mine.push((org, role));
                members[org].push(u);
            }
        }
        World {
            seed,
            size,
            scale,
            weights,
            starts,
            memberships,
            members,
        }
    }

    pub fn org_id(&self, org: usize) -> Uuid {
        uid(self.seed, Kind::Org, org as u64)
    }

    pub fn user_id(&self, user: usize) -> Uuid {
        uid(self.seed, Kind::User, user as u64)
    }

    /// The personal organization of a user.
    pub fn personal_org_id(&self, user: usize) -> Uuid {
        uid(self.seed, Kind::Org, (ORGS + user) as u64)
    }

    /// The organization holding embedding item `i` (of either dimension).
    pub fn org_of_item(&self, i: usize) -> usize {
        self.starts.partition_point(|&s| s <= i) - 1
    }

    pub fn items_of(&self, org: usize) -> std::ops::Range<usize> {
        self.starts[org]..self.starts[org + 1]
    }

    /// The organization of metric post `j`, drawn by the same weights (a
    /// golden-ratio sequence spreads hourly and daily posts alike).
    pub fn org_of_metric_post(&self, j: usize) -> usize {
        pick(&self.weights, (j as f64 * 0.618_033_988_749_895).fract())
    }
}

/// Item ranges proportional to the weights, covering exactly `n` items.
fn ranges(weights: &[f64], n: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| ((w * n as f64).round() as usize).max(1))
        .collect();
    let sum: usize = counts.iter().sum();
    // Rounding leftovers go to (or come from) the largest organization.
    counts[0] = (counts[0] + n).saturating_sub(sum);
    let mut starts = vec![0];
    for c in counts {
        starts.push(starts.last().copied().unwrap_or(0) + c);
    }
    starts
}

/// The organization at cumulative share `x` in [0, 1).
pub fn pick(weights: &[f64], x: f64) -> usize {
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if x < acc {
            return i;
        }
    }
    weights.len() - 1
}

/// Clustered embeddings: a vector is a topic centroid, plus a point of a
/// low-dimensional subspace shared by every topic, plus a little isotropic
/// noise, normalized. Neighbours are then meaningful (same topic, nearby
/// in the subspace), as with real embeddings, and recall can be measured.
pub struct VectorModel {
    pub dim: usize,
    centroids: Vec<Vec<f32>>,
    basis: Vec<Vec<f32>>,
    /// The topics each organization writes about.
    org_topics: Vec<Vec<usize>>,
}

const SUBSPACE: usize = 16;

impl VectorModel {
    pub fn new(world: &World, dim: usize) -> VectorModel {
        let mut r = rng(world.seed, &format!("model-{dim}"));
        let unit = |r: &mut ChaCha8Rng| {
            let mut v: Vec<f32> = (0..dim).map(|_| r.random_range(-1.0f32..1.0)).collect();
            normalize(&mut v);
            v
        };
        let topics = world.scale.topics;
        let centroids = (0..topics).map(|_| unit(&mut r)).collect();
        let basis = (0..SUBSPACE).map(|_| unit(&mut r)).collect();
        // The largest organization covers every topic; the others a number
        // of topics that grows with their size (at least 3).
        let org_topics = world
            .weights
            .iter()
            .map(|w| {
                let n = ((w * 2.5 * topics as f64) as usize).clamp(3, topics);
                (0..n).map(|_| r.random_range(0..topics)).collect()
            })
            .collect();
        VectorModel {
            dim,
            centroids,
            basis,
            org_topics,
        }
    }

    /// A vector of organization `org`'s content into `out` (len `dim`).
    pub fn sample(&self, org: usize, r: &mut impl Rng, out: &mut [f32]) {
        let topics = &self.org_topics[org];
        let c = &self.centroids[topics[r.random_range(0..topics.len())]];
        out.copy_from_slice(c);
        // |subspace part| ~ 0.6 and |noise| ~ 0.3 next to the unit centroid.
        let a = 0.6 * (3.0 / SUBSPACE as f32).sqrt();
        for b in &self.basis {
            let coef = a * r.random_range(-1.0f32..1.0);
            for (o, x) in out.iter_mut().zip(b) {
                *o += coef * x;
            }
        }
        let noise = 0.3 * (3.0 / self.dim as f32).sqrt();
        for o in out.iter_mut() {
            *o += noise * r.random_range(-1.0f32..1.0);
        }
        normalize(out);
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}
