//! MetricsService: recording and time-bucketed aggregation of metric points.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tonic::Request;

use super::{
    deadline, entity_ref, parse_uuid, principal, required_text, timestamp, to_timestamp,
    wants_fresh_read, ApiState, MAX_IDEMPOTENCY_KEY,
};
use crate::api::reads::read;
use crate::caches::metrics::{Key as CacheKey, Lookup};
use crate::caches::Follower as _;
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, metrics_service_server::MetricsService, Granularity};
use crate::store::metrics::{self as store, Aggregation, Bucket, NewPoint};
use crate::store::organizations::OrgRole;

mod fill;
mod top;

/// Longest metric name, in bytes.
const MAX_METRIC_NAME: usize = 200;

/// Points within this many days of now get a monthly partition created on
/// demand; older or further-future points land in the default partition.
const PARTITION_WINDOW_DAYS: i64 = 366;

/// Period covered when the request leaves `start` unset.
const DEFAULT_SPAN_DAYS: i64 = 30;

pub struct MetricsApi {
    state: Arc<ApiState>,
}

impl MetricsApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        MetricsApi { state }
    }
}

fn point(i: usize, p: &proto::MetricPoint) -> ApiResult<NewPoint> {
    let field = |f: &str| format!("points[{i}].{f}");
    let (entity_type, entity_id) = entity_ref(&field("entity"), p.entity.as_ref())?;
    let metric_name = required_text(&field("metric_name"), &p.metric_name, MAX_METRIC_NAME)?;
    if !p.value.is_finite() {
        return Err(ApiError::invalid(format!(
            "{} is {}; it must be a finite number",
            field("value"),
            p.value
        )));
    }
    let recorded_at = p
        .recorded_at
        .as_ref()
        .map(|t| timestamp(&field("recorded_at"), t))
        .transpose()?;
    Ok(NewPoint {
        entity_type,
        entity_id,
        metric_name: metric_name.to_string(),
        value: p.value,
        recorded_at,
    })
}

/// The schema function's unit for a granularity (unset: day).
fn granularity(value: i32) -> ApiResult<&'static str> {
    match Granularity::try_from(value) {
        Ok(Granularity::Unspecified | Granularity::Day) => Ok("day"),
        Ok(Granularity::Hour) => Ok("hour"),
        Ok(Granularity::Week) => Ok("week"),
        Ok(Granularity::Month) => Ok("month"),
        Err(_) => Err(ApiError::invalid(format!(
            "granularity {value} is unknown: use GRANULARITY_HOUR, _DAY, _WEEK or _MONTH"
        ))),
    }
}

/// An IANA time zone (empty: UTC); its name is the canonical spelling.
///
/// Only names of the form Area/Location (plus UTC and GMT) are taken:
/// PostgreSQL also accepts POSIX specs ("UTC+3", "<+03>-3", whose signs are
/// inverted) and resolves abbreviations ("CET", "EST", "MET") before zone
/// names, as fixed offsets without daylight saving, so bare legacy names
/// would silently give buckets that do not follow the zone.
fn time_zone(value: &str) -> ApiResult<chrono_tz::Tz> {
    if value.is_empty() {
        return Ok(chrono_tz::UTC);
    }
    let bad = || {
        ApiError::invalid(format!(
            "time_zone {:?} is not an IANA time zone name like \"Europe/Paris\" or \"UTC\"",
            value.chars().take(64).collect::<String>()
        ))
    };
    let tz: chrono_tz::Tz = value.parse().map_err(|_| bad())?;
    let name = tz.name();
    if name.contains('/') || name == "UTC" || name == "GMT" {
        Ok(tz)
    } else {
        Err(bad())
    }
}

/// The months that deserve a partition: the span of the points near now.
fn partition_span(
    points: &[NewPoint],
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let window = Duration::days(PARTITION_WINDOW_DAYS);
    let near = points
        .iter()
        .map(|p| p.recorded_at.unwrap_or(now))
        .filter(|t| *t >= now - window && *t <= now + window);
    near.fold(None, |span, t| match span {
        None => Some((t, t)),
        Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
    })
}

/// The calls, each in the crate's result type (`grpc_handlers!` converts
/// to tonic's once).
impl MetricsApi {
    async fn record_metrics(
        &self,
        req: Request<proto::RecordMetricsRequest>,
    ) -> ApiResult<proto::RecordMetricsResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        if r.points.is_empty() {
            return Err(ApiError::invalid(
                "points is empty: send at least one point",
            ));
        }
        self.state.check_batch("points", r.points.len())?;
        let key = (!r.idempotency_key.is_empty())
            .then(|| required_text("idempotency_key", &r.idempotency_key, MAX_IDEMPOTENCY_KEY))
            .transpose()?;
        self.state.authorize(&p, org, OrgRole::Editor).await?;
        let points = r
            .points
            .iter()
            .enumerate()
            .map(|(i, pt)| point(i, pt))
            .collect::<ApiResult<Vec<_>>>()?;
        let pool = self.state.pool()?;

        if let Some((lo, hi)) = partition_span(&points, Utc::now()) {
            // Only an optimization: the insert below is correct without it.
            let ensured = async {
                let mut conn = pool.acquire_call(None).await?;
                let done = store::ensure_partitions(&mut conn, lo, hi).await?;
                conn.finish().await?;
                Ok::<_, sqlx::Error>(done)
            }
            .await;
            match ensured {
                Ok(true) => {}
                Ok(false) => tracing::debug!("metric partitions: another session holds the lock"),
                Err(e) => tracing::warn!(error = %e, "could not create metric partitions"),
            }
        }

        let mut db = self.state.db(&req).await?;
        let done = store::record(db.conn(), org, &points, key)
            .await
            .map_err(ApiError::from_write)?;
        db.finish().await?;
        // This replica's next read sees the points, whatever the
        // announcement's delay.
        for p in &points {
            self.state.metrics_cache.invalidate(org, p.entity_id);
        }
        // A duplicate reports the batch's size, as the first call did.
        let recorded = if done.duplicate {
            points.len() as u64
        } else {
            done.stored
        };
        let recorded = u32::try_from(recorded)
            .map_err(|_| ApiError::Internal(format!("{recorded} points recorded")))?;
        Ok(proto::RecordMetricsResponse {
            recorded,
            duplicate: done.duplicate,
        })
    }

    async fn get_metrics_aggregated(
        &self,
        req: Request<proto::GetMetricsAggregatedRequest>,
    ) -> ApiResult<proto::GetMetricsAggregatedResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        let (entity_type, entity_id) = entity_ref("entity", r.entity.as_ref())?;
        let metric_name = required_text("metric_name", &r.metric_name, MAX_METRIC_NAME)?;
        let granularity = granularity(r.granularity)?;
        let tz = time_zone(&r.time_zone)?;
        let (start, end) = range(r.start.as_ref(), r.end.as_ref())?;
        let percentiles = percentiles(&r.percentiles)?;
        // Before any reading: a range too long to fill is refused whole.
        let starts = r
            .fill_gaps
            .then(|| {
                fill::bucket_starts(granularity, tz, start, end).map_err(|fill::TooMany| {
                    ApiError::invalid(format!(
                        "fill_gaps: the range from {start} to {end} has more than {} {granularity} \
                         buckets; shorten it or choose a coarser granularity",
                        fill::MAX_BUCKETS
                    ))
                })
            })
            .transpose()?;
        // An open-ended range (`end` unset: now) is asked once: not cached.
        let key = r.end.is_some().then(|| CacheKey {
            org,
            entity_id,
            entity_type: entity_type.as_str().into(),
            metric_name: metric_name.into(),
            granularity,
            time_zone: tz.name(),
            start,
            end,
            percentiles: percentiles.iter().map(|p| p.to_bits()).collect(),
        });
        let cache = &self.state.metrics_cache;
        let lookup = match &key {
            Some(key) => cache.get(key, wants_fresh_read(&req)),
            None => cache.skip(),
        };
        let buckets = match lookup {
            Lookup::Hit(buckets) => buckets,
            Lookup::Miss(_) | Lookup::Bypass => {
                let q = Aggregation {
                    org,
                    entity_type: &entity_type,
                    entity_id,
                    metric_name,
                    granularity,
                    start,
                    end,
                    time_zone: tz.name(),
                };
                let buckets: Arc<[Bucket]> = if percentiles.is_empty() && key.is_none() {
                    // Not kept: may lag on the read replica. What the cache
                    // keeps is read on the primary: a replica's answer
                    // could predate the change its invalidation announced.
                    read!(&self.state, &req, |db| Ok(store::aggregated(db, &q).await?))
                } else if percentiles.is_empty() {
                    let mut db = self.state.db(&req).await?;
                    let buckets = store::aggregated(db.conn(), &q).await?;
                    db.finish().await?;
                    buckets
                } else {
                    // Two statements, one snapshot: the percentiles are of
                    // the points the buckets count.
                    let mut db = self.state.snapshot_db(deadline(&req)).await?;
                    let mut buckets = store::aggregated(db.conn(), &q).await?;
                    let values = store::percentiles::of(db.conn(), &q, &percentiles).await?;
                    db.finish().await?;
                    store::percentiles::attach(&mut buckets, values, percentiles.len());
                    buckets
                }
                .into();
                if let (Lookup::Miss(stamp), Some(key)) = (lookup, key) {
                    cache.put(key, stamp, buckets.clone());
                }
                buckets
            }
        };
        let filled;
        let buckets: &[Bucket] = match &starts {
            Some(starts) => {
                filled = fill::fill(&buckets, starts, percentiles.len());
                &filled
            }
            None => &buckets,
        };
        let buckets = buckets
            .iter()
            .map(|b| proto::MetricBucket {
                bucket_start: Some(to_timestamp(b.bucket_start)),
                sum: b.sum,
                avg: b.avg,
                min: b.min,
                max: b.max,
                // count(*) is never negative.
                count: u64::try_from(b.count).unwrap_or_default(),
                last: b.last,
                percentile_values: b.percentiles.clone(),
            })
            .collect();
        Ok(proto::GetMetricsAggregatedResponse { buckets })
    }
}

/// [start, end) from the request: `end` unset is now, `start` unset is
/// [`DEFAULT_SPAN_DAYS`] before `end`.
fn range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let end = match end {
        Some(t) => timestamp("end", t)?,
        None => Utc::now(),
    };
    let start = match start {
        Some(t) => timestamp("start", t)?,
        None => end - Duration::days(DEFAULT_SPAN_DAYS),
    };
    if start > end {
        return Err(ApiError::invalid(format!(
            "start ({start}) is after end ({end})"
        )));
    }
    Ok((start, end))
}

/// Most percentiles one request may ask for.
const MAX_PERCENTILES: usize = 8;

fn percentiles(values: &[f64]) -> ApiResult<Vec<f64>> {
    if values.len() > MAX_PERCENTILES {
        return Err(ApiError::invalid(format!(
            "percentiles has {} values; at most {MAX_PERCENTILES}",
            values.len()
        )));
    }
    for (i, &v) in values.iter().enumerate() {
        if !(0.0..=1.0).contains(&v) {
            return Err(ApiError::invalid(format!(
                "percentiles[{i}] is {v}; each must be in [0, 1] (0.95 for p95)"
            )));
        }
    }
    Ok(values.to_vec())
}

grpc_handlers! {
    MetricsService for MetricsApi {
        rpc record_metrics(proto::RecordMetricsRequest) -> proto::RecordMetricsResponse;
        rpc get_metrics_aggregated(proto::GetMetricsAggregatedRequest) -> proto::GetMetricsAggregatedResponse;
        rpc get_top_entities(proto::GetTopEntitiesRequest) -> proto::GetTopEntitiesResponse;
    }
}
