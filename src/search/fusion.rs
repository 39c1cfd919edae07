//! HYBRID's fusion of the vector and the full-text candidate lists:
//! weighted reciprocal rank fusion (Cormack et al., 2009), as Qdrant's Query
//! API and Supabase's hybrid search function fuse. Ranks, not scores: a
//! cosine similarity and a text rank are on scales that do not compare.

use std::collections::HashMap;

use uuid::Uuid;

use crate::store::search::TextHit;
use crate::store::similarity::Hit;

/// RRF's constant: a hit at rank r scores 1 / (K + r). 60, as in the paper
/// and in Qdrant and Supabase.
pub const RRF_K: f64 = 60.0;

/// One item of a search's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub entity_type: String,
    pub entity_id: Uuid,
    /// The ranking score of this answer (higher first).
    pub score: f64,
    /// Cosine similarity when the vector side found it, else 0.
    pub vector_similarity: f64,
    /// Full-text rank when the lexical side found it, else 0.
    pub text_score: f64,
}

/// The two lists fused, best first (ties by entity type, then id), at most
/// `k`. `weight` is the vector list's share in [0, 1]: 1 ranks as VECTOR,
/// 0 as TEXT, with the other list breaking ties.
pub fn fuse(vector: &[Hit], text: &[TextHit], weight: f64, k: usize) -> Vec<Found> {
    let mut by_item: HashMap<(&str, Uuid), Found> =
        HashMap::with_capacity(vector.len() + text.len());
    for (rank, h) in vector.iter().enumerate() {
        let f = entry(&mut by_item, &h.entity_type, h.entity_id);
        f.vector_similarity = h.similarity;
        f.score += weight / (RRF_K + rank as f64 + 1.0);
    }
    for (rank, h) in text.iter().enumerate() {
        let f = entry(&mut by_item, &h.entity_type, h.entity_id);
        f.text_score = h.rank;
        f.score += (1.0 - weight) / (RRF_K + rank as f64 + 1.0);
    }
    let mut found: Vec<Found> = by_item.into_values().collect();
    // At weight 1 or 0 one list's contributions are all 0: its order still
    // breaks ties between items the other list ranks alike (or lacks).
    found.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.vector_similarity.total_cmp(&a.vector_similarity))
            .then_with(|| b.text_score.total_cmp(&a.text_score))
            .then_with(|| a.entity_type.cmp(&b.entity_type))
            .then_with(|| a.entity_id.cmp(&b.entity_id))
    });
    found.truncate(k);
    found
}

fn entry<'m, 'a>(
    by_item: &'m mut HashMap<(&'a str, Uuid), Found>,
    entity_type: &'a str,
    entity_id: Uuid,
) -> &'m mut Found {
    by_item
        .entry((entity_type, entity_id))
        .or_insert_with(|| Found {
            entity_type: entity_type.to_string(),
            entity_id,
            score: 0.0,
            vector_similarity: 0.0,
            text_score: 0.0,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: u128, similarity: f64) -> Hit {
        Hit {
            entity_type: "post".into(),
            entity_id: Uuid::from_u128(id),
            similarity,
        }
    }

    fn t(id: u128, rank: f64) -> TextHit {
        TextHit {
            entity_type: "post".into(),
            entity_id: Uuid::from_u128(id),
            rank,
        }
    }

    fn ids(found: &[Found]) -> Vec<u128> {
        found.iter().map(|f| f.entity_id.as_u128()).collect()
    }

    #[test]
    fn an_item_both_lists_rank_well_comes_first() {
        let found = fuse(&[v(1, 0.9), v(2, 0.8)], &[t(2, 0.5), t(3, 0.4)], 0.5, 10);
        assert_eq!(ids(&found), [2, 1, 3]);
        assert_eq!(found[0].vector_similarity, 0.8);
        assert_eq!(found[0].text_score, 0.5);
        assert_eq!(found[2].vector_similarity, 0.0);
    }

    #[test]
    fn weight_one_ranks_as_the_vector_list_and_zero_as_the_text_list() {
        let vector = [v(1, 0.9), v(2, 0.8), v(3, 0.7)];
        let text = [t(3, 0.5), t(2, 0.4), t(4, 0.3)];
        assert_eq!(ids(&fuse(&vector, &text, 1.0, 10)), [1, 2, 3, 4]);
        assert_eq!(ids(&fuse(&vector, &text, 0.0, 10)), [3, 2, 4, 1]);
    }

    #[test]
    fn weight_shifts_the_fusion_toward_its_list() {
        let vector = [v(1, 0.9), v(2, 0.8)];
        let text = [t(2, 0.5), t(1, 0.1)];
        assert_eq!(ids(&fuse(&vector, &text, 0.8, 10))[0], 1);
        assert_eq!(ids(&fuse(&vector, &text, 0.2, 10))[0], 2);
    }

    #[test]
    fn at_most_k_items_come_back() {
        let vector: Vec<Hit> = (0..20).map(|i| v(i, 0.5)).collect();
        assert_eq!(fuse(&vector, &[], 0.5, 7).len(), 7);
    }
}
