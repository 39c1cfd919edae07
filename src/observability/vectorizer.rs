//! The vectorizer's series: the queue (sampled by the vectorizer), items
//! embedded and failed, and the time each batch takes.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Handed numbers by the vectorizer.
#[derive(Clone)]
pub struct VectorizerMetrics {
    /// Items in the queue by state: `pending` (waiting or being embedded),
    /// `failed` (set aside).
    pub queue: IntGaugeVec,
    pub oldest_pending_seconds: Gauge,
    pub embedded: IntCounter,
    /// Failed attempts by kind: `unavailable`, `refused`, `bad_answer`, `database`.
    pub failures: IntCounterVec,
    pub set_aside: IntCounter,
    pub batch_seconds: Histogram,
}

impl VectorizerMetrics {
    pub(super) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = VectorizerMetrics {
            queue: IntGaugeVec::new(
                Opts::new(
                    "affinity_vectorizer_queue_items",
                    "Items in the embedding queue by state: pending (waiting or being embedded) \
                     or failed (set aside until requeued), as last sampled.",
                ),
                &["state"],
            )?,
            oldest_pending_seconds: Gauge::new(
                "affinity_vectorizer_oldest_pending_seconds",
                "Age of the oldest pending item of the embedding queue, as last sampled (0: none).",
            )?,
            embedded: IntCounter::new(
                "affinity_vectorizer_items_embedded_total",
                "Items whose vector this replica stored.",
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "affinity_vectorizer_failures_total",
                    "Items of failed batches, by kind: unavailable (released, not counted \
                     against the item), refused, bad_answer, database.",
                ),
                &["kind"],
            )?,
            set_aside: IntCounter::new(
                "affinity_vectorizer_items_set_aside_total",
                "Items this replica set aside after AFFINITY_VECTORIZER_MAX_ATTEMPTS failures.",
            )?,
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "affinity_vectorizer_batch_seconds",
                    "Time of one batch: the request to the endpoint and storing its vectors.",
                )
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )?,
        };
        registry.register(Box::new(m.queue.clone()))?;
        registry.register(Box::new(m.oldest_pending_seconds.clone()))?;
        registry.register(Box::new(m.embedded.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.set_aside.clone()))?;
        registry.register(Box::new(m.batch_seconds.clone()))?;
        Ok(m)
    }
}
