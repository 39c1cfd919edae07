//! AI context metadata: the request's protobuf Struct as JSON for the
//! jsonb column, and stored JSON back as a Struct.

use std::collections::BTreeMap;

use prost_types::value::Kind;

use crate::error::{ApiError, ApiResult};

/// The metadata Struct as a JSON object's text, refusing what JSON or jsonb
/// cannot hold (NaN, infinities, NUL characters) and more than `max_bytes`.
pub(crate) fn metadata_json(
    field: &str,
    metadata: Option<prost_types::Struct>,
    max_bytes: usize,
) -> ApiResult<String> {
    let Some(s) = metadata else {
        return Ok("{}".to_string());
    };
    let value = struct_to_json(field, s)?;
    let text = serde_json::to_string(&value)
        .map_err(|e| ApiError::Internal(format!("serializing metadata: {e}")))?;
    if text.len() > max_bytes {
        return Err(ApiError::ResourceExhausted(format!(
            "{field} is {} bytes of JSON; at most {max_bytes}",
            text.len()
        )));
    }
    Ok(text)
}

fn struct_to_json(path: &str, s: prost_types::Struct) -> ApiResult<serde_json::Value> {
    let mut map = serde_json::Map::with_capacity(s.fields.len());
    for (k, v) in s.fields {
        if k.contains('\0') {
            return Err(ApiError::invalid(format!(
                "{path} has a key with a NUL character"
            )));
        }
        let v = value_to_json(&format!("{path}.{k}"), v)?;
        map.insert(k, v);
    }
    Ok(serde_json::Value::Object(map))
}

fn value_to_json(path: &str, v: prost_types::Value) -> ApiResult<serde_json::Value> {
    use serde_json::Value as J;
    Ok(match v.kind {
        // An unset kind is not valid protobuf JSON; store it as null.
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(b),
        Some(Kind::NumberValue(n)) => {
            J::Number(serde_json::Number::from_f64(n).ok_or_else(|| {
                ApiError::invalid(format!("{path} is NaN or infinite: JSON cannot hold it"))
            })?)
        }
        Some(Kind::StringValue(s)) => {
            if s.contains('\0') {
                return Err(ApiError::invalid(format!(
                    "{path} contains a NUL character"
                )));
            }
            J::String(s)
        }
        Some(Kind::StructValue(s)) => struct_to_json(path, s)?,
        Some(Kind::ListValue(l)) => J::Array(
            l.values
                .into_iter()
                .enumerate()
                .map(|(i, v)| value_to_json(&format!("{path}[{i}]"), v))
                .collect::<ApiResult<_>>()?,
        ),
    })
}

/// Stored metadata as a Struct (always an object when written through the
/// API; anything else is wrapped as {"value": ...}).
pub(crate) fn json_to_struct(v: serde_json::Value) -> prost_types::Struct {
    let fields = match v {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
        other => BTreeMap::from([("value".to_string(), json_to_value(other))]),
    };
    prost_types::Struct { fields }
}

fn json_to_value(v: serde_json::Value) -> prost_types::Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(n) => n.as_f64().map_or(Kind::NullValue(0), Kind::NumberValue),
        J::String(s) => Kind::StringValue(s),
        J::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        J::Object(_) => Kind::StructValue(json_to_struct(v)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::NumberValue(n)),
        }
    }

    #[test]
    fn metadata_refuses_non_finite_numbers_and_nul() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let s = prost_types::Struct {
                fields: BTreeMap::from([("x".to_string(), num(bad))]),
            };
            assert!(matches!(
                metadata_json("metadata", Some(s), 1024),
                Err(ApiError::InvalidArgument(_))
            ));
        }
        let s = prost_types::Struct {
            fields: BTreeMap::from([(
                "x".to_string(),
                prost_types::Value {
                    kind: Some(Kind::StringValue("a\0b".into())),
                },
            )]),
        };
        assert!(matches!(
            metadata_json("metadata", Some(s), 1024),
            Err(ApiError::InvalidArgument(_))
        ));
    }

    #[test]
    fn metadata_round_trips_through_json() {
        let s = prost_types::Struct {
            fields: BTreeMap::from([
                ("n".to_string(), num(0.9)),
                (
                    "l".to_string(),
                    prost_types::Value {
                        kind: Some(Kind::ListValue(prost_types::ListValue {
                            values: vec![
                                num(1.0),
                                prost_types::Value {
                                    kind: Some(Kind::BoolValue(true)),
                                },
                            ],
                        })),
                    },
                ),
            ]),
        };
        let text = metadata_json("metadata", Some(s.clone()), 1024).unwrap();
        let back = json_to_struct(serde_json::from_str(&text).unwrap());
        assert_eq!(back, s);
        assert!(matches!(
            metadata_json("metadata", Some(s), 5),
            Err(ApiError::ResourceExhausted(_))
        ));
    }
}
