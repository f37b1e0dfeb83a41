//! Opaque page tokens for keyset pagination of a user's sessions.
//!
//! A token is the position after the last session of a page (creation time and id) plus an
//! HMAC-SHA256 tag over that position and the scope it was issued for (which list, for whom).
//! The key is a secret in the store, shared by all replicas. A garbled token, a token made up
//! by a client, or one issued for another list is rejected with InvalidArgument. Keyset
//! pagination returns every session exactly once even while new sessions are created.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Core;
use crate::domain::{Error, PageCursor, Session, SessionId, Time, error_ids};

pub const DEFAULT_PAGE_SIZE: u32 = 250;
pub const MAX_PAGE_SIZE: u32 = 1000;
pub(super) const TAG_LEN: usize = 16;

/// A page as the client asked for it.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// 1..=MAX_PAGE_SIZE; `None` for the default.
    pub size: Option<u32>,
    pub token: Option<String>,
}

/// One page and where the next one starts.
#[derive(Debug)]
pub struct SessionPageResult<T = Session> {
    pub sessions: Vec<T>,
    pub total: u64,
    pub next_token: Option<String>,
}

fn invalid_token() -> Error {
    Error::invalid_argument(
        error_ids::PAGE_TOKEN_INVALID,
        "page_token is invalid or was issued for another list",
    )
}

impl PageRequest {
    pub fn size(&self) -> Result<u32, Error> {
        match self.size {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            Some(_) => Err(Error::invalid_argument(
                error_ids::PAGE_SIZE_INVALID,
                format!("page_size must be between 1 and {MAX_PAGE_SIZE}"),
            )),
        }
    }
}

impl Core {
    pub(super) async fn page_key(&self) -> Result<[u8; 32], Error> {
        let key = self
            .page_key
            .get_or_try_init(|| async { self.store.secret("page-token").await })
            .await?;
        Ok(*key)
    }

    pub(super) fn tag(key: &[u8; 32], scope: &str, payload: &[u8]) -> Result<[u8; TAG_LEN], Error> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|e| Error::internal(error_ids::HMAC_FAILED, e.to_string()))?;
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        Ok(tag)
    }

    pub(super) async fn encode_page_token(
        &self,
        scope: &str,
        cursor: &PageCursor,
    ) -> Result<String, Error> {
        let mut payload = cursor.creation_date.unix_micros().to_be_bytes().to_vec();
        payload.extend_from_slice(cursor.id.as_str().as_bytes());
        let tag = Self::tag(&self.page_key().await?, scope, &payload)?;
        payload.extend_from_slice(&tag);
        Ok(URL_SAFE_NO_PAD.encode(payload))
    }

    pub(super) async fn decode_page_token(
        &self,
        scope: &str,
        token: &str,
    ) -> Result<PageCursor, Error> {
        if token.len() > 512 {
            return Err(invalid_token());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid_token())?;
        if bytes.len() < 8 + 1 + TAG_LEN {
            return Err(invalid_token());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let expected = Self::tag(&self.page_key().await?, scope, payload)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_slice(), tag)) {
            return Err(invalid_token());
        }
        let (time, id) = payload.split_at(8);
        let micros = i64::from_be_bytes(<[u8; 8]>::try_from(time).map_err(|_| invalid_token())?);
        let id = std::str::from_utf8(id).map_err(|_| invalid_token())?;
        Ok(PageCursor {
            creation_date: Time::from_unix_micros(micros),
            id: SessionId::parse(id).map_err(|_| invalid_token())?,
        })
    }
}
