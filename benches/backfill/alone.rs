//! The model alone: the same texts, in batches of the service's size, sent
//! by as many concurrent senders as the service has vectorizer workers, in
//! the request body the service sends. Nothing else runs: no database, no
//! service. Its rate is the most the service could reach.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::procfs;

/// One measurement of the model alone.
#[derive(Debug, Clone)]
pub struct AloneRound {
    pub items: usize,
    pub secs: f64,
    /// CPU seconds the embedding server used meanwhile.
    pub model_cpu: f64,
}

impl AloneRound {
    pub fn rate(&self) -> f64 {
        items_f64(self.items) / self.secs
    }
}

pub fn items_f64(n: usize) -> f64 {
    // Counts of one run: exact in f64.
    n as f64
}

/// What the alone side needs to know.
pub struct Model<'a> {
    /// The OpenAI-style base URL (`{base}/embeddings`), as the service gets.
    pub base_url: &'a str,
    pub name: &'a str,
    pub batch: usize,
    /// Requests in flight at once (the service's vectorizer workers).
    pub concurrency: usize,
    /// The embedding server's pid, for its CPU time.
    pub pid: u32,
}

/// Embeds `texts` (all of them, in order, batch after batch) and times it.
pub async fn run(model: &Model<'_>, texts: Arc<Vec<String>>) -> Result<AloneRound> {
    // A fresh client per round, as a freshly started service has.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .context("the HTTP client")?;
    let endpoint = format!("{}/embeddings", model.base_url.trim_end_matches('/'));
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = procfs::cpu_secs(model.pid).context("the model's CPU time")?;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..model.concurrency.max(1) {
        let (http, endpoint, texts, next) =
            (http.clone(), endpoint.clone(), texts.clone(), next.clone());
        let (name, batch) = (model.name.to_string(), model.batch.max(1));
        senders.spawn(async move {
            loop {
                let start = next.fetch_add(1, Ordering::Relaxed) * batch;
                let Some(chunk) = texts.get(start..(start + batch).min(texts.len())) else {
                    return Ok::<_, anyhow::Error>(());
                };
                if chunk.is_empty() {
                    return Ok(());
                }
                embed(&http, &endpoint, &name, chunk).await?;
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.context("a sender panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = procfs::cpu_secs(model.pid).context("the model's CPU time")?;
    Ok(AloneRound {
        items: texts.len(),
        secs,
        model_cpu: cpu_after - cpu_before,
    })
}

/// One request, in the service's body (src/embedding/wire.rs): model, input
/// as an array, base64 vectors, the passage input type.
async fn embed(
    http: &reqwest::Client,
    endpoint: &str,
    model: &str,
    texts: &[String],
) -> Result<()> {
    let body = json!({
        "model": model,
        "input": texts,
        "encoding_format": "base64",
        "input_type": "passage",
    });
    let response = http
        .post(endpoint)
        .json(&body)
        .send()
        .await
        .context("the embedding server")?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .context("the embedding server's answer")?;
    if !status.is_success() {
        bail!(
            "the embedding server answered HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // Read as the service reads it: the answer parsed, one vector per text.
    let answer: serde_json::Value = serde_json::from_slice(&bytes).context("its answer")?;
    let got = answer["data"].as_array().map_or(0, Vec::len);
    if got != texts.len() {
        bail!("{got} vectors for {} texts", texts.len());
    }
    Ok(())
}

/// A few batches first, so that neither side pays for a cold server.
pub async fn warm_up(model: &Model<'_>, texts: &[String]) -> Result<()> {
    let n = (model.batch * 4).min(texts.len());
    let sample = Arc::new(texts[..n].to_vec());
    run(model, sample).await.map(|_| ())
}
