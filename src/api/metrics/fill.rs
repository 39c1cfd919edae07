//! Gap filling: every bucket of a range in a time zone, the empty ones made
//! up as the contract says (count and sum 0, the rest carried forward).
//!
//! Bucket starts are computed here the way PostgreSQL's
//! `date_trunc(unit, t, zone)` computes them (the buckets of the unfilled
//! answer), so the two line up. An hour keeps the offset of the instant
//! truncated (a repeated local hour is two buckets). Days, weeks from
//! Monday and calendar months are local wall-clock steps turned back into
//! instants with PostgreSQL's rules for local times a daylight-saving
//! change skips (the offset before the change) or repeats (the offset after
//! it, the later instant).

use chrono::{
    DateTime, Datelike, Duration, LocalResult, Months, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::store::metrics::Bucket;

/// Most buckets a filled answer may have.
pub const MAX_BUCKETS: usize = 10_000;

/// The range holds more than [`MAX_BUCKETS`] buckets.
#[derive(Debug)]
pub struct TooMany;

fn truncate(unit: &str, t: NaiveDateTime) -> NaiveDateTime {
    let date = t.date();
    let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN);
    match unit {
        "week" => midnight(date - Duration::days(i64::from(date.weekday().num_days_from_monday()))),
        "month" => midnight(date.with_day(1).unwrap_or(date)),
        _ => midnight(date),
    }
}

fn step(unit: &str, t: NaiveDateTime) -> Option<NaiveDateTime> {
    match unit {
        "week" => t.checked_add_signed(Duration::days(7)),
        "month" => t.checked_add_months(Months::new(1)),
        _ => t.checked_add_signed(Duration::days(1)),
    }
}

/// A local wall-clock time as an instant, as PostgreSQL reads it.
fn instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.with_timezone(&Utc).max(b.with_timezone(&Utc))),
        LocalResult::None => {
            // Skipped by a change: the offset in force a day before it.
            let before = local.and_utc().checked_sub_signed(Duration::days(1))?;
            let offset = tz.offset_from_utc_datetime(&before.naive_utc());
            let t = local.checked_sub_signed(Duration::seconds(i64::from(
                chrono::Offset::fix(&offset).local_minus_utc(),
            )))?;
            Some(t.and_utc())
        }
    }
}

/// The start of the hour holding `t`, in `t`'s own offset.
fn hour_of(tz: Tz, t: DateTime<Utc>) -> DateTime<Utc> {
    let local = t.with_timezone(&tz);
    t - Duration::seconds(i64::from(local.minute() * 60 + local.second()))
        - Duration::nanoseconds(i64::from(local.nanosecond()))
}

/// The next bucket start after `t` (a start itself).
fn next(unit: &str, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if unit == "hour" {
        // An offset change of half an hour moves the next local hour.
        let mut probe = t + Duration::hours(1);
        loop {
            let start = hour_of(tz, probe);
            if start > t {
                return Some(start);
            }
            probe += Duration::minutes(30);
        }
    }
    // The bucket's own local start (a skipped midnight starts the day later).
    let mut local = truncate(unit, t.with_timezone(&tz).naive_local());
    loop {
        local = step(unit, local)?;
        let start = instant(tz, local)?;
        // Never again an instant already given (a repeated local time).
        if start > t {
            return Some(start);
        }
    }
}

/// The start of every bucket that meets [start, end), oldest first.
pub fn bucket_starts(
    unit: &str,
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, TooMany> {
    let mut out: Vec<DateTime<Utc>> = Vec::new();
    if start >= end {
        return Ok(out);
    }
    let first = if unit == "hour" {
        Some(hour_of(tz, start))
    } else {
        instant(tz, truncate(unit, start.with_timezone(&tz).naive_local()))
    };
    let mut at = first;
    while let Some(t) = at.filter(|t| *t < end) {
        if out.len() == MAX_BUCKETS {
            return Err(TooMany);
        }
        out.push(t);
        at = next(unit, tz, t);
    }
    Ok(out)
}

/// An empty bucket: nothing counted, the rest of `before` carried forward
/// (zeros before the first point).
fn empty(bucket_start: DateTime<Utc>, before: Option<&Bucket>, percentiles: usize) -> Bucket {
    match before {
        Some(b) => Bucket {
            bucket_start,
            sum: 0.0,
            count: 0,
            ..b.clone()
        },
        None => Bucket {
            bucket_start,
            sum: 0.0,
            avg: 0.0,
            min: 0.0,
            max: 0.0,
            count: 0,
            last: 0.0,
            percentiles: vec![0.0; percentiles],
        },
    }
}

/// `buckets` (oldest first) with an empty bucket at every start of `starts`
/// they lack. A bucket whose start is not among `starts` is kept in order:
/// filling never drops an answer.
pub fn fill(buckets: &[Bucket], starts: &[DateTime<Utc>], percentiles: usize) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::with_capacity(starts.len().max(buckets.len()));
    let mut found = buckets.iter().peekable();
    for &start in starts {
        while let Some(b) = found.next_if(|b| b.bucket_start <= start) {
            out.push(b.clone());
        }
        if out.last().is_none_or(|b| b.bucket_start < start) {
            out.push(empty(start, out.last(), percentiles));
        }
    }
    out.extend(found.cloned());
    out
}
