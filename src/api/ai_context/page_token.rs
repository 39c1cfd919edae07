//! ListAiContext's page tokens.
//!
//! A page token is base64url of: version (1 byte), organization id (16), user
//! filter flag (1) and id (16, zero when unset), then the last entry's
//! occurred_at (i64 microseconds, big-endian) and id (16). It carries the
//! organization and filter it was issued for so that a token reused with
//! another organization or filter is refused; it needs no signature, because
//! every query is confined to the organization the caller is authorized for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::store::ai_context::Cursor;

const TOKEN_VERSION: u8 = 1;
const TOKEN_LEN: usize = 1 + 16 + 1 + 16 + 8 + 16;

pub(super) fn encode_page_token(org: Uuid, user: Option<Uuid>, c: Cursor) -> String {
    let mut b = Vec::with_capacity(TOKEN_LEN);
    b.push(TOKEN_VERSION);
    b.extend_from_slice(org.as_bytes());
    b.push(u8::from(user.is_some()));
    b.extend_from_slice(user.unwrap_or(Uuid::nil()).as_bytes());
    b.extend_from_slice(&c.occurred_at.timestamp_micros().to_be_bytes());
    b.extend_from_slice(c.id.as_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

pub(super) fn decode_page_token(
    token: &str,
    org: Uuid,
    user: Option<Uuid>,
) -> ApiResult<Option<Cursor>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
