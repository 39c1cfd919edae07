//! Embeddings: unit vectors near their topic's centroid, computed from a
//! few numbers while writing.

use super::words::TOPICS;

pub(super) const DIM: usize = 1536;
/// Noise relative to a topic centroid: two posts of the same topic land at a
/// cosine similarity around 0.6, posts of unrelated topics around 0.
const NOISE: f32 = 0.8;

/// What an embedding is made of; the vector itself is computed while writing
/// (6 KB each would be a lot to keep around for no reason).
#[derive(Debug, Clone)]
pub(super) struct Emb {
    pub(super) seed: u64,
    pub(super) main: usize,
    pub(super) second: usize,
    pub(super) mix: f32,
}

pub(super) struct Embedder {
    centroids: Vec<Vec<f32>>,
}

impl Embedder {
    pub(super) fn new(seed: u64) -> Self {
        let mut sm = SplitMix(seed);
        let centroids = (0..TOPICS.len())
            .map(|_| (0..DIM).map(|_| sm.unit()).collect())
            .collect();
        Self { centroids }
    }

    /// A unit vector: the main topic's centroid, a bit of a second topic and
    /// noise.
    pub(super) fn fill(&self, e: &Emb, out: &mut [f32]) {
        let mut sm = SplitMix(e.seed);
        let a = &self.centroids[e.main % self.centroids.len()];
        let b = &self.centroids[e.second % self.centroids.len()];
        let mut norm = 0f32;
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + e.mix * y + NOISE * sm.unit();
            norm += *o * *o;
        }
        let inv = 1.0 / norm.sqrt().max(f32::MIN_POSITIVE);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// A tiny fast generator for the bulk noise of embeddings (ChaCha is
/// needlessly slow for ten million floats in a debug build).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}
