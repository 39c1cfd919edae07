//! What a request carries: the caller, and its fields validated (each
//! refusal names the field).

use tonic::Request;
use uuid::Uuid;

use crate::auth::{self, Principal};
use crate::error::{ApiError, ApiResult};

/// The caller, from the request the interceptor authenticated.
pub fn principal<T>(req: &Request<T>) -> ApiResult<Principal> {
    auth::principal(req)
}

/// Only `service_role` may do this.
pub fn require_service(p: &Principal, what: &str) -> ApiResult<()> {
    if p.is_service() {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "{what} needs a service_role token"
        )))
    }
}

/// A required UUID field.
pub fn parse_uuid(field: &str, value: &str) -> ApiResult<Uuid> {
    if value.is_empty() {
        return Err(ApiError::invalid(format!("{field} is required")));
    }
    Uuid::parse_str(value)
        .map_err(|_| ApiError::invalid(format!("{field} is not a UUID: {:?}", truncate(value, 64))))
}

/// Longest idempotency_key (LogAiContext, RecordMetrics), in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// A required, bounded text field (entity types, metric names, models...).
pub fn required_text<'a>(field: &str, value: &'a str, max_len: usize) -> ApiResult<&'a str> {
    if value.is_empty() {
        return Err(ApiError::invalid(format!("{field} is required")));
    }
    if value.len() > max_len {
        return Err(ApiError::invalid(format!(
            "{field} is longer than {max_len} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::invalid(format!("{field} contains a NUL byte")));
    }
    Ok(value)
}

/// A required entity reference: its type (lower snake case) and UUID.
pub fn entity_ref(field: &str, e: Option<&crate::proto::EntityRef>) -> ApiResult<(String, Uuid)> {
    let e = e.ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
    Ok((
        entity_type(&format!("{field}.entity_type"), &e.entity_type)?,
        parse_uuid(&format!("{field}.entity_id"), &e.entity_id)?,
    ))
}

/// An entity type: lower snake case, as the contract says.
pub fn entity_type(field: &str, value: &str) -> ApiResult<String> {
    let v = required_text(field, value, 64)?;
    let ok = v.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(ApiError::invalid(format!(
            "{field} must be lower snake case, like \"post\""
        )));
    }
    Ok(v.to_string())
}

/// max_results / page sizes: 0 means `default`, more than 1000 is refused.
pub fn limit(field: &str, value: u32, default: u32) -> ApiResult<i64> {
    match value {
        0 => Ok(i64::from(default)),
        v if v > 1000 => Err(ApiError::invalid(format!("{field} is {v}; at most 1000"))),
        v => Ok(i64::from(v)),
    }
}

/// A cosine similarity threshold in [-1, 1].
pub fn threshold(value: f32) -> ApiResult<f64> {
    if !value.is_finite() || !(-1.0..=1.0).contains(&value) {
        return Err(ApiError::invalid(format!(
            "similarity_threshold is {value}; it must be in [-1, 1]"
        )));
    }
    Ok(f64::from(value))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A protobuf timestamp as chrono, refusing out-of-range values.
pub fn timestamp(
    field: &str,
    ts: &prost_types::Timestamp,
) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    // PostgreSQL's timestamptz spans 4713 BC to 294276 AD; keep to years 1..=9999.
    const MIN: i64 = -62_135_596_800; // 0001-01-01
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59
    if ts.seconds < MIN || ts.seconds > MAX || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(ApiError::invalid(format!(
            "{field} is out of range (years 1 to 9999)"
        )));
    }
    chrono::DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
        .ok_or_else(|| ApiError::invalid(format!("{field} is out of range")))
}

pub fn to_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Whether the client asked for an answer read from the database now
/// (`cache-control: no-cache`), e.g. right after writing through another
/// replica: no cache answers it, and no read replica either.
pub fn wants_fresh_read<T>(req: &Request<T>) -> bool {
    req.metadata()
        .get_all("cache-control")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
}
