//! AiContextService: logging AI interactions and retrieving them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use prost::Message as _;
use prost_types::value::Kind;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    deadline, limit, parse_uuid, principal, required_text, threshold, timestamp, to_timestamp,
    ApiState, MAX_IDEMPOTENCY_KEY,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, ai_context_service_server::AiContextService};
use crate::store::ai_context::{self as store, Cursor, NewEntry};
use crate::store::organizations::OrgRole;

/// Longest source_type, in bytes.
const MAX_SOURCE_TYPE: usize = 100;
/// Longest model name, in bytes.
const MAX_MODEL: usize = 200;
/// A stream holds at most this many times the largest message, in all: the
/// whole stream is kept in memory until it is stored, all or none.
const STREAM_BYTES_PER_MESSAGE_LIMIT: usize = 16;

pub struct AiContextApi {
    state: Arc<ApiState>,
}

impl AiContextApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        AiContextApi { state }
    }

    /// Validates one log message into an entry to store. `prefix` names the
    /// message in errors ("" for a unary call, "messages[3]." in a stream).
    fn parse_entry(
        &self,
        p: &Principal,
        r: proto::LogAiContextRequest,
        prefix: &str,
    ) -> ApiResult<NewEntry> {
        let field = |name: &str| format!("{prefix}{name}");
        let organization_id = parse_uuid(&field("organization_id"), &r.organization_id)?;
        let user_id = match p {
            // A user logs only as itself; an empty user_id means the caller.
            Principal::User(me) => {
                if !r.user_id.is_empty() && parse_uuid(&field("user_id"), &r.user_id)? != *me {
                    return Err(ApiError::PermissionDenied(format!(
                        "{} names another user: a user logs AI context only as itself \
                         (leave it empty or use your own id)",
                        field("user_id")
                    )));
                }
                *me
            }
            Principal::Service { .. } => parse_uuid(&field("user_id"), &r.user_id)?,
        };
        let source_type =
            required_text(&field("source_type"), &r.source_type, MAX_SOURCE_TYPE)?.to_string();
        let context_summary = optional_text(&field("context_summary"), r.context_summary)?;
        let ai_response = optional_text(&field("ai_response"), r.ai_response)?;
        let metadata = metadata_json(
            &field("metadata"),
            r.metadata,
            self.state.config.max_metadata_bytes,
        )?;
        let embedding = if r.embedding.is_empty() {
            None
        } else {
            self.state.check_vector(&field("embedding"), &r.embedding)?;
            if r.embedding_model.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{} is required when {} is set",
                    field("embedding_model"),
                    field("embedding")
                )));
            }
            required_text(&field("embedding_model"), &r.embedding_model, MAX_MODEL)?;
            Some((r.embedding_model, r.embedding))
        };
        let idempotency_key = if r.idempotency_key.is_empty() {
            None
        } else {
            required_text(
                &field("idempotency_key"),
                &r.idempotency_key,
                MAX_IDEMPOTENCY_KEY,
            )?;
            Some(r.idempotency_key)
        };
        let occurred_at = match &r.occurred_at {
            Some(t) => timestamp(&field("occurred_at"), t)?,
            None => chrono::Utc::now(),
        };
        Ok(NewEntry {
            id: crate::random_uuid(),
            organization_id,
            user_id,
            source_type,
            context_summary,
            ai_response,
            metadata,
            idempotency_key,
            occurred_at,
            embedding,
        })
    }
}

/// Optional free text: empty is absent (NULL); NUL bytes cannot be stored.
fn optional_text(field: &str, value: String) -> ApiResult<Option<String>> {
    if value.contains('\0') {
        return Err(ApiError::invalid(format!("{field} contains a NUL byte")));
    }
    Ok((!value.is_empty()).then_some(value))
}

/// The metadata Struct as a JSON object's text, refusing what JSON or jsonb
/// cannot hold (NaN, infinities, NUL characters) and more than `max_bytes`.
fn metadata_json(
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
fn json_to_struct(v: serde_json::Value) -> prost_types::Struct {
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

fn entry(e: store::Entry, similarity: f32) -> proto::AiContextEntry {
    proto::AiContextEntry {
        id: e.id.to_string(),
        organization_id: e.organization_id.to_string(),
        user_id: e.user_id.to_string(),
        source_type: e.source_type,
        context_summary: e.context_summary.unwrap_or_default(),
        ai_response: e.ai_response.unwrap_or_default(),
        metadata: Some(json_to_struct(e.metadata)),
        occurred_at: Some(to_timestamp(e.occurred_at)),
        similarity,
    }
}

// ------------------------------------------------------------- page tokens
//
// A page token is base64url of: version (1 byte), organization id (16), user
// filter flag (1) and id (16, zero when unset), then the last entry's
// occurred_at (i64 microseconds, big-endian) and id (16). It carries the
// organization and filter it was issued for so that a token reused with
// another organization or filter is refused; it needs no signature, because
// every query is confined to the organization the caller is authorized for.

const TOKEN_VERSION: u8 = 1;
const TOKEN_LEN: usize = 1 + 16 + 1 + 16 + 8 + 16;

fn encode_page_token(org: Uuid, user: Option<Uuid>, c: Cursor) -> String {
    let mut b = Vec::with_capacity(TOKEN_LEN);
    b.push(TOKEN_VERSION);
    b.extend_from_slice(org.as_bytes());
    b.push(u8::from(user.is_some()));
    b.extend_from_slice(user.unwrap_or(Uuid::nil()).as_bytes());
    b.extend_from_slice(&c.occurred_at.timestamp_micros().to_be_bytes());
    b.extend_from_slice(c.id.as_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

fn decode_page_token(token: &str, org: Uuid, user: Option<Uuid>) -> ApiResult<Option<Cursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad =
        || ApiError::invalid("page_token is not a token from a previous ListAiContext response");
    let b = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    if b.len() != TOKEN_LEN || b[0] != TOKEN_VERSION {
        return Err(bad());
    }
    let uuid_at =
        |i: usize| -> ApiResult<Uuid> { Uuid::from_slice(&b[i..i + 16]).map_err(|_| bad()) };
    let token_org = uuid_at(1)?;
    let token_user = match b[17] {
        0 => None,
        1 => Some(uuid_at(18)?),
        _ => return Err(bad()),
    };
    if token_org != org || token_user != user {
        return Err(ApiError::invalid(
            "page_token was issued for another organization_id or user_id filter",
        ));
    }
    let mut micros = [0u8; 8];
    micros.copy_from_slice(&b[34..42]);
    let occurred_at =
        chrono::DateTime::from_timestamp_micros(i64::from_be_bytes(micros)).ok_or_else(bad)?;
    Ok(Some(Cursor {
        occurred_at,
        id: uuid_at(42)?,
    }))
}

fn optional_uuid(field: &str, value: &str) -> ApiResult<Option<Uuid>> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_uuid(field, value).map(Some)
    }
}

#[tonic::async_trait]
impl AiContextService for AiContextApi {
    async fn log_ai_context(
        &self,
        req: Request<proto::LogAiContextRequest>,
    ) -> Result<Response<proto::LogAiContextResponse>, Status> {
        let p = principal(&req)?;
        let deadline = deadline(&req);
        let e = self.parse_entry(&p, req.into_inner(), "")?;
        self.state
            .authorize(&p, e.organization_id, OrgRole::Editor)
            .await?;
        // A user's own profile exists (they are a member); a user id named by
        // service_role may be new.
        let mut db = self.state.db_until(deadline).await?;
        let (id, duplicate) = store::log_one(db.conn(), e, p.is_service())
            .await
            .map_err(ApiError::from_write)?;
        db.finish().await?;
        Ok(Response::new(proto::LogAiContextResponse {
            id: id.to_string(),
            duplicate,
        }))
    }

    async fn log_ai_context_stream(
        &self,
        req: Request<tonic::Streaming<proto::LogAiContextRequest>>,
    ) -> Result<Response<proto::LogAiContextStreamResponse>, Status> {
        let p = principal(&req)?;
        let deadline = deadline(&req);
        let mut stream = req.into_inner();
        let max_bytes = self
            .state
            .config
            .max_message_bytes
            .saturating_mul(STREAM_BYTES_PER_MESSAGE_LIMIT);
        let mut received = 0usize;
        let mut bytes = 0usize;
        let mut entries = Vec::new();
        let mut authorized = HashSet::new();
        let mut new_users = HashSet::new();
        let mut keys = HashSet::new();
        // Everything is validated and authorized before anything is stored,
        // so that the first bad message fails the stream with nothing stored.
        while let Some(msg) = stream.message().await? {
            received += 1;
            self.state.check_batch("the stream", received)?;
            bytes = bytes.saturating_add(msg.encoded_len());
            if bytes > max_bytes {
                return Err(ApiError::ResourceExhausted(format!(
                    "the stream is over {max_bytes} bytes; split it"
                ))
                .into());
            }
            let e = self.parse_entry(&p, msg, &format!("messages[{}].", received - 1))?;
            if !authorized.contains(&e.organization_id) {
                self.state
                    .authorize(&p, e.organization_id, OrgRole::Editor)
                    .await?;
                authorized.insert(e.organization_id);
            }
            // A key repeated within the stream is a duplicate of its first use.
            if let Some(k) = &e.idempotency_key {
                if !keys.insert((e.organization_id, k.clone())) {
                    continue;
                }
            }
            if p.is_service() {
                new_users.insert(e.user_id);
            }
            entries.push(e);
        }
        let stored = if entries.is_empty() {
            0
        } else {
            let users: Vec<Uuid> = new_users.into_iter().collect();
            let mut db = self.state.db_until(deadline).await?;
            let stored = store::log_many(db.conn(), entries, &users)
                .await
                .map_err(ApiError::from_write)?;
            db.finish().await?;
            stored
        };
        Ok(Response::new(proto::LogAiContextStreamResponse {
            stored,
            duplicates: (received as u64).saturating_sub(stored),
        }))
    }

    async fn search_ai_context(
        &self,
        req: Request<proto::SearchAiContextRequest>,
    ) -> Result<Response<proto::SearchAiContextResponse>, Status> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        self.state.check_vector("vector", &r.vector)?;
        let threshold = threshold(r.similarity_threshold)?;
        let limit = limit("max_results", r.max_results, 10)?;
        let user_id = optional_uuid("user_id", &r.user_id)?;
        let model = if r.model.is_empty() {
            None
        } else {
            Some(required_text("model", &r.model, MAX_MODEL)?)
        };
        self.state
            .check_batch("source_types", r.source_types.len())?;
        for (i, s) in r.source_types.iter().enumerate() {
            required_text(&format!("source_types[{i}]"), s, MAX_SOURCE_TYPE)?;
        }
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        let mut db = self.state.db(&req).await?;
        let rows = store::search(
            db.conn(),
            &store::Search {
                organization_id: org,
                vector: &r.vector,
                model,
                threshold,
                limit,
                user_id,
                source_types: &r.source_types,
            },
        )
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "vector has {} dimensions, which have no index",
                r.vector.len()
            ))
        })?;
        db.finish().await?;
        Ok(Response::new(proto::SearchAiContextResponse {
            entries: rows
                .into_iter()
                .map(|r| entry(r.entry, r.similarity as f32))
                .collect(),
        }))
    }

    async fn list_ai_context(
        &self,
        req: Request<proto::ListAiContextRequest>,
    ) -> Result<Response<proto::ListAiContextResponse>, Status> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let user_id = optional_uuid("user_id", &r.user_id)?;
        let page_size = limit("page_size", r.page_size, 50)?;
        let after = decode_page_token(&r.page_token, org, user_id)?;
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        // One row more than the page tells whether another page follows.
        let mut db = self.state.db(&req).await?;
        let mut rows = store::list(db.conn(), org, user_id, after, page_size + 1)
            .await
            .map_err(ApiError::from)?;
        db.finish().await?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next_page_token = match rows.last() {
            Some(last) if more => encode_page_token(
                org,
                user_id,
                Cursor {
                    occurred_at: last.occurred_at,
                    id: last.id,
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListAiContextResponse {
            entries: rows.into_iter().map(|e| entry(e, 0.0)).collect(),
            next_page_token,
        }))
    }
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

    #[test]
    fn page_tokens_are_bound_to_organization_and_filter() {
        let org = Uuid::new_v4();
        let user = Some(Uuid::new_v4());
        let c = Cursor {
            occurred_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        let t = encode_page_token(org, user, c);
        assert_eq!(decode_page_token(&t, org, user).unwrap(), Some(c));
        assert!(decode_page_token(&t, Uuid::new_v4(), user).is_err());
        assert!(decode_page_token(&t, org, None).is_err());
        assert!(decode_page_token("garbage!", org, user).is_err());
        assert!(decode_page_token(&t[..t.len() - 2], org, user).is_err());
    }
}
