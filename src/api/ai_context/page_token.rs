//! ListAiContext's page tokens.
//!
//! A page token is base64url of: version (1 byte), organization id (16), user
//! filter flag (1) and id (16, zero when unset), then the last entry's
//! occurred_at (i64 microseconds, big-endian) and id (16); version 2 adds the
//! session filter: a flag (1) and the session id's bytes (the rest). It
//! carries the organization and filters it was issued for so that a token
//! reused with another organization or filter is refused; it needs no
//! signature, because every query is confined to the organization the caller
//! is authorized for. Version 1 tokens (no session filter) are still taken.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::store::ai_context::{Cursor, ListFilter};

const TOKEN_VERSION: u8 = 2;
const V1_LEN: usize = 1 + 16 + 1 + 16 + 8 + 16;

pub(super) fn encode_page_token(org: Uuid, filter: &ListFilter, c: Cursor) -> String {
    let session = filter.session_id.as_deref().unwrap_or_default();
    let mut b = Vec::with_capacity(V1_LEN + 1 + session.len());
    b.push(TOKEN_VERSION);
    b.extend_from_slice(org.as_bytes());
    b.push(u8::from(filter.user_id.is_some()));
    b.extend_from_slice(filter.user_id.unwrap_or(Uuid::nil()).as_bytes());
    b.extend_from_slice(&c.occurred_at.timestamp_micros().to_be_bytes());
    b.extend_from_slice(c.id.as_bytes());
    b.push(u8::from(filter.session_id.is_some()));
    b.extend_from_slice(session.as_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

pub(super) fn decode_page_token(
    token: &str,
    org: Uuid,
    filter: &ListFilter,
) -> ApiResult<Option<Cursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad =
        || ApiError::invalid("page_token is not a token from a previous ListAiContext response");
    let b = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let session = match b.first() {
        Some(1) if b.len() == V1_LEN => None,
        Some(2) if b.len() > V1_LEN => match b[V1_LEN] {
            0 if b.len() == V1_LEN + 1 => None,
            1 => Some(std::str::from_utf8(&b[V1_LEN + 1..]).map_err(|_| bad())?),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    let uuid_at =
        |i: usize| -> ApiResult<Uuid> { Uuid::from_slice(&b[i..i + 16]).map_err(|_| bad()) };
    let token_org = uuid_at(1)?;
    let token_user = match b[17] {
        0 => None,
        1 => Some(uuid_at(18)?),
        _ => return Err(bad()),
    };
    if token_org != org || token_user != filter.user_id || session != filter.session_id.as_deref() {
        return Err(ApiError::invalid(
            "page_token was issued for another organization_id, user_id or session_id filter",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_are_bound_to_organization_and_filters() {
        let org = Uuid::new_v4();
        let user = ListFilter {
            user_id: Some(Uuid::new_v4()),
            session_id: None,
        };
        let session = ListFilter {
            user_id: None,
            session_id: Some("run-7".into()),
        };
        let c = Cursor {
            occurred_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        let t = encode_page_token(org, &user, c);
        assert_eq!(decode_page_token(&t, org, &user).unwrap(), Some(c));
        assert!(decode_page_token(&t, Uuid::new_v4(), &user).is_err());
        assert!(decode_page_token(&t, org, &ListFilter::default()).is_err());
        assert!(decode_page_token("garbage!", org, &user).is_err());
        assert!(decode_page_token(&t[..t.len() - 2], org, &user).is_err());
        let s = encode_page_token(org, &session, c);
        assert_eq!(decode_page_token(&s, org, &session).unwrap(), Some(c));
        let other = ListFilter {
            session_id: Some("run-8".into()),
            ..session.clone()
        };
        assert!(decode_page_token(&s, org, &other).is_err());
        assert!(decode_page_token(&s, org, &ListFilter::default()).is_err());
    }

    #[test]
    fn version_1_tokens_still_page_without_a_session() {
        let org = Uuid::new_v4();
        let c = Cursor {
            occurred_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
            id: Uuid::new_v4(),
        };
        let t = encode_page_token(org, &ListFilter::default(), c);
        let mut b = URL_SAFE_NO_PAD.decode(&t).unwrap();
        b.truncate(V1_LEN);
        b[0] = 1;
        let v1 = URL_SAFE_NO_PAD.encode(b);
        assert_eq!(
            decode_page_token(&v1, org, &ListFilter::default()).unwrap(),
            Some(c)
        );
    }
}
