//! Row decoding and the dynamic searches, shared by both SQL backends. Both schemas use the
//! same column names and types (TEXT, BIGINT microseconds, BLOB/BYTEA), so one decoder serves
//! both; it reads columns at the positions the column lists (`columns`) give. It runs no
//! query: each backend executes what is built here.

use super::columns::{events, sessions};
pub use super::columns::{json, to_i64};
use super::{CheckOutcome, FactorCheckOutcome, FeedRow, PasswordCheck, StoreError, StoredEvent};
use crate::domain::{
    ActivityFilter, Factors, FeedPosition, LoginName, Metadata, Session, SessionFilter, SessionId,
    SessionQuery, SortOrder, Time, TimeComparison, TokenHash, User, UserAgent, UserFactor, UserId,
    UserSessionsQuery, UserState, WebAuthNFactor,
};

pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(e))
}

pub fn comparison(op: TimeComparison) -> &'static str {
    match op {
        TimeComparison::Equals => " = ",
        TimeComparison::Greater => " > ",
        TimeComparison::GreaterOrEquals => " >= ",
        TimeComparison::Less => " < ",
        TimeComparison::LessOrEquals => " <= ",
    }
}

/// Positional access to one result row; each backend implements it for its row type with
/// [`columns_via!`]. Columns are read by position (the positions `columns` derives from the
/// column lists): a name lookup per column would cost more than the decoding itself.
pub trait Columns {
    fn text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError>;

    fn required_text(&self, i: usize) -> Result<String, StoreError> {
        self.text(i)?.ok_or_else(|| null_column(i))
    }

    fn required_int(&self, i: usize) -> Result<i64, StoreError> {
        self.int(i)?.ok_or_else(|| null_column(i))
    }

    fn time(&self, i: usize) -> Result<Option<Time>, StoreError> {
        Ok(self.int(i)?.map(Time::from_unix_micros))
    }
}

/// Implements [`Columns`] for a backend's row type: `$get` reads a column by position,
/// `$error` classifies the backend's error.
macro_rules! columns_via {
    ($row:ty, $get:ident, $error:path) => {
        impl $crate::store::rows::Columns for $row {
            fn text(&self, i: usize) -> Result<Option<String>, StoreError> {
                self.$get(i).map_err($error)
            }

            fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
                self.$get(i).map_err($error)
            }

            fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
                self.$get(i).map_err($error)
            }
        }
    };
}

pub(crate) use columns_via;

fn null_column(i: usize) -> StoreError {
    StoreError::Internal(format!("column {i} is unexpectedly NULL").into())
}

pub fn event_from_row(row: &impl Columns) -> Result<StoredEvent, StoreError> {
    let payload = row.required_text(events::PAYLOAD)?;
    Ok(StoredEvent {
        sequence: u64::try_from(row.required_int(events::SEQUENCE)?).unwrap_or_default(),
        event_type: row.required_text(events::EVENT_TYPE)?,
        payload: serde_json::from_str(&payload).map_err(internal)?,
        created_at: Time::from_unix_micros(row.required_int(events::CREATED_AT)?),
        editor: row.required_text(events::EDITOR)?,
    })
}

/// A row of the feed's SELECT: the event's columns (`events::TABLE.select_with`), then the
/// two parts of its position.
pub fn feed_row_from(row: &impl Columns) -> Result<FeedRow, StoreError> {
    let extra = events::TABLE.columns.len();
    let part = |i: usize| -> Result<u64, StoreError> {
        Ok(u64::try_from(row.required_int(i)?).unwrap_or_default())
    };
    let payload = row.required_text(events::PAYLOAD)?;
    Ok(FeedRow {
        position: FeedPosition::new(part(extra)?, part(extra + 1)?),
        session_id: row.required_text(events::SESSION_ID)?,
        user_id: row.text(events::USER_ID)?,
        event_type: row.required_text(events::EVENT_TYPE)?,
        sequence: part(events::SEQUENCE)?,
        created_at: Time::from_unix_micros(row.required_int(events::CREATED_AT)?),
        resource_owner: row.required_text(events::RESOURCE_OWNER)?,
        payload: serde_json::from_str(&payload).map_err(internal)?,
    })
}

/// Where the SQL of a dynamic query goes, with its parameters in order: each backend has its
/// own placeholder syntax, the filters below are written once.
pub trait SqlBuilder {
    fn sql(&mut self, text: &str) -> &mut Self;
    fn bind_text(&mut self, value: String) -> &mut Self;
    fn bind_int(&mut self, value: i64) -> &mut Self;
}

pub fn session_from_row(row: &impl Columns) -> Result<Session, StoreError> {
    use super::columns::sessions::*;
    let user = match (row.text(USER_ID)?, row.time(USER_VERIFIED_AT)?) {
        (Some(id), Some(verified_at)) => Some(UserFactor {
            id: UserId::from_trusted(id),
            verified_at,
            login_name: row.text(LOGIN_NAME)?.unwrap_or_default(),
            display_name: row.text(DISPLAY_NAME)?.unwrap_or_default(),
            organization_id: row.text(ORGANIZATION_ID)?.unwrap_or_default(),
        }),
        _ => None,
    };
    let metadata = row.required_text(METADATA)?;
    let user_agent = row.required_text(USER_AGENT)?;
    let token_hash = row.blob(TOKEN_HASH)?.unwrap_or_default();
    Ok(Session {
        id: SessionId::from_trusted(row.required_text(ID)?),
        factors: Factors {
            user,
            password_verified_at: row.time(PASSWORD_VERIFIED_AT)?,
            totp_verified_at: row.time(TOTP_VERIFIED_AT)?,
            recovery_code_verified_at: row.time(RECOVERY_CODE_VERIFIED_AT)?,
            web_auth_n: row
                .time(WEBAUTHN_VERIFIED_AT)?
                .map(|verified_at| -> Result<_, StoreError> {
                    Ok(WebAuthNFactor {
                        verified_at,
                        user_verified: row.int(WEBAUTHN_USER_VERIFIED)?.unwrap_or_default() != 0,
                    })
                })
                .transpose()?,
            otp_sms_verified_at: row.time(OTP_SMS_VERIFIED_AT)?,
            otp_email_verified_at: row.time(OTP_EMAIL_VERIFIED_AT)?,
        },
        metadata: serde_json::from_str::<Metadata>(&metadata).map_err(internal)?,
        user_agent: serde_json::from_str::<UserAgent>(&user_agent).map_err(internal)?,
        expiration: row.time(EXPIRATION)?,
        creator: row.required_text(CREATOR)?,
        resource_owner: row.required_text(RESOURCE_OWNER)?,
        creation_date: Time::from_unix_micros(row.required_int(CREATION_DATE)?),
        change_date: Time::from_unix_micros(row.required_int(CHANGE_DATE)?),
        sequence: u64::try_from(row.required_int(SEQUENCE)?).unwrap_or_default(),
        token_hash: TokenHash::from_slice(&token_hash)
            .ok_or_else(|| StoreError::Internal("stored token hash is not 32 bytes".into()))?,
        terminated_at: row.time(TERMINATED_AT)?,
    })
}

pub fn user_from_row(row: &impl Columns) -> Result<User, StoreError> {
    use super::columns::users::*;
    let state = row.required_text(STATE)?;
    let attempts = row.required_int(FAILED_PASSWORD_ATTEMPTS)?;
    Ok(User {
        id: UserId::from_trusted(row.required_text(ID)?),
        login_name: LoginName::from_trusted(row.required_text(LOGIN_NAME)?),
        display_name: row.required_text(DISPLAY_NAME)?,
        organization_id: row.required_text(ORGANIZATION_ID)?,
        state: UserState::parse(&state)
            .ok_or_else(|| StoreError::Internal(format!("unknown user state {state:?}").into()))?,
        password_hash: row.text(PASSWORD_HASH)?,
        failed_password_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_at: Time::from_unix_micros(row.required_int(CREATED_AT)?),
        updated_at: Time::from_unix_micros(row.required_int(UPDATED_AT)?),
        version: u64::try_from(row.required_int(VERSION)?).unwrap_or_default(),
    })
}

/// A page of sessions to read, and the count of every session the page is taken from.
pub struct SessionSearch<B> {
    pub select: B,
    pub count: B,
    pub end: PageEnd,
}

/// What a page's length says about the total, so that the count runs only when the page
/// cannot tell: a user has a handful of sessions, and for such a list the count read every one
/// of them a second time (a random leaf of the table each, once the table outgrows the cache).
#[derive(Clone, Copy, Debug)]
pub struct PageEnd {
    /// Where the page starts among the counted sessions; `None` when it starts at a keyset
    /// cursor, whose position only the count knows.
    start: Option<u64>,
    limit: u32,
}

impl PageEnd {
    /// The total, when a page of `rows` sessions shows where the counted ones end: a page
    /// shorter than its limit ends them, unless it is an empty page past the first (an offset
    /// beyond the end does not say where the end is).
    pub fn total(self, rows: usize) -> Option<u64> {
        let start = self.start?;
        let rows = u64::try_from(rows).ok()?;
        (rows < u64::from(self.limit) && (rows > 0 || start == 0)).then_some(start + rows)
    }
}

/// The page and the count of a session search (ListSessions), in SQL both backends accept;
/// `new` starts a query in the backend's builder.
pub fn session_search<B: SqlBuilder>(
    new: impl Fn(&'static str) -> B,
    filter: &SessionFilter,
) -> SessionSearch<B> {
    let mut count = new("SELECT COUNT(*) FROM sessions s");
    push_session_filter(&mut count, filter);
    let mut select = new(sessions::SELECT.as_str());
    push_session_filter(&mut select, filter);
    select.sql(match filter.order {
        SortOrder::CreationDesc => " ORDER BY s.creation_date DESC, s.id DESC",
        SortOrder::CreationAsc => " ORDER BY s.creation_date ASC, s.id ASC",
    });
    select.sql(" LIMIT ").bind_int(i64::from(filter.limit));
    select.sql(" OFFSET ").bind_int(to_i64(filter.offset));
    SessionSearch {
        select,
        count,
        end: PageEnd {
            start: Some(filter.offset),
            limit: filter.limit,
        },
    }
}

/// The page (newest first, from the keyset cursor) and the count of one user's sessions, or
/// of all sessions when the query names no user.
pub fn user_sessions_search<B: SqlBuilder>(
    new: impl Fn(&'static str) -> B,
    query: &UserSessionsQuery,
) -> SessionSearch<B> {
    let mut count = new("SELECT COUNT(*) FROM sessions s");
    push_user_sessions_filter(&mut count, query, false);
    let mut select = new(sessions::SELECT.as_str());
    push_user_sessions_filter(&mut select, query, true);
    select
        .sql(" ORDER BY s.creation_date DESC, s.id DESC LIMIT ")
        .bind_int(i64::from(query.limit));
    SessionSearch {
        select,
        count,
        end: PageEnd {
            start: query.after.is_none().then_some(0),
            limit: query.limit,
        },
    }
}

/// `WHERE …` of a session search, in SQL both backends accept.
fn push_session_filter(qb: &mut impl SqlBuilder, filter: &SessionFilter) {
    qb.sql(" WHERE s.terminated_at IS NULL");
    if let Some(user) = &filter.visible_to {
        // The sessions the caller created or is the user of, as a membership in two index
        // searches: written as `creator = ? OR user_id = ?`, SQLite answers it by reading
        // every live session (seconds at a million), whatever the caller has.
        qb.sql(" AND s.id IN (SELECT id FROM sessions WHERE creator = ")
            .bind_text(user.clone())
            .sql(" AND terminated_at IS NULL UNION ALL SELECT id FROM sessions WHERE user_id = ")
            .bind_text(user.clone())
            .sql(" AND terminated_at IS NULL)");
    }
    for query in &filter.queries {
        match query {
            SessionQuery::Ids(ids) if ids.is_empty() => {
                qb.sql(" AND 1 = 0");
            }
            SessionQuery::Ids(ids) => {
                qb.sql(" AND s.id IN (");
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        qb.sql(", ");
                    }
                    qb.bind_text(id.clone());
                }
                qb.sql(")");
            }
            SessionQuery::UserId(id) => {
                qb.sql(" AND s.user_id = ").bind_text(id.clone());
            }
            SessionQuery::Creator(id) => {
                qb.sql(" AND s.creator = ").bind_text(id.clone());
            }
            SessionQuery::UserAgentFingerprint(id) => {
                qb.sql(" AND s.fingerprint_id = ").bind_text(id.clone());
            }
            SessionQuery::CreationDate(op, at) => {
                qb.sql(" AND s.creation_date")
                    .sql(comparison(*op))
                    .bind_int(at.unix_micros());
            }
            SessionQuery::ExpirationDate(op, at) => {
                qb.sql(" AND (s.expiration")
                    .sql(comparison(*op))
                    .bind_int(at.unix_micros());
                if matches!(
                    op,
                    TimeComparison::Greater | TimeComparison::GreaterOrEquals
                ) {
                    qb.sql(" OR s.expiration IS NULL");
                }
                qb.sql(")");
            }
        }
    }
}

/// `WHERE …` of one user's (or all) sessions; with `with_cursor`, also the keyset position.
fn push_user_sessions_filter(
    qb: &mut impl SqlBuilder,
    query: &UserSessionsQuery,
    with_cursor: bool,
) {
    match &query.user_id {
        Some(user) => qb
            .sql(" WHERE s.user_id = ")
            .bind_text(user.as_str().to_owned()),
        None => qb.sql(" WHERE 1 = 1"),
    };
    if let Some(id) = &query.exclude {
        qb.sql(" AND s.id <> ").bind_text(id.as_str().to_owned());
    }
    match query.activity {
        ActivityFilter::All => {}
        ActivityFilter::Active(now) => {
            qb.sql(" AND s.terminated_at IS NULL AND (s.expiration IS NULL OR s.expiration > ")
                .bind_int(now.unix_micros())
                .sql(")");
        }
        ActivityFilter::Inactive(now) => {
            qb.sql(" AND (s.terminated_at IS NOT NULL OR s.expiration <= ")
                .bind_int(now.unix_micros())
                .sql(")");
        }
    }
    if let (true, Some(after)) = (with_cursor, &query.after) {
        qb.sql(" AND (s.creation_date < ")
            .bind_int(after.creation_date.unix_micros())
            .sql(" OR (s.creation_date = ")
            .bind_int(after.creation_date.unix_micros())
            .sql(" AND s.id < ")
            .bind_text(after.id.as_str().to_owned())
            .sql("))");
    }
}

/// How a password check ended, as the password-check statements name it.
pub fn outcome_name(outcome: CheckOutcome) -> &'static str {
    match outcome {
        CheckOutcome::Passed => "passed",
        CheckOutcome::Failed => "failed",
        CheckOutcome::Aborted => "aborted",
        CheckOutcome::PassedUnregistered => "passed-unregistered",
        CheckOutcome::FailedUnregistered => "failed-unregistered",
    }
}

/// A failure count as read back from the database.
pub fn failures(count: i64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Why a password check was refused, from the user's failure count and state (`None`: no
/// such user): locked (too many failures, or no longer active), or busy.
pub fn refusal(current: Option<(i64, String)>, max_failures: u32) -> PasswordCheck {
    match current {
        Some((_, state)) if state != UserState::Active.as_str() => PasswordCheck::Locked,
        Some((f, _)) if crate::domain::locked_out(failures(f), max_failures) => {
            PasswordCheck::Locked
        }
        Some(_) => PasswordCheck::Busy,
        None => PasswordCheck::Locked,
    }
}

/// Why a check of a code was refused, as `refusal` tells it of a password check.
pub fn factor_refusal(current: Option<(i64, String)>, max_failures: u32) -> FactorCheckOutcome {
    match refusal(current, max_failures) {
        PasswordCheck::Busy => FactorCheckOutcome::Busy,
        PasswordCheck::Locked | PasswordCheck::Granted { .. } => FactorCheckOutcome::Locked,
    }
}

/// A secret as read back: exactly 32 bytes.
pub fn secret_bytes(value: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(value)
        .map_err(|_| StoreError::Internal("a stored secret is not 32 bytes".into()))
}

/// A fresh random secret, stored unless another replica stored one first.
pub fn fresh_secret() -> [u8; 32] {
    let mut fresh = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fresh);
    fresh
}

#[cfg(test)]
mod tests {
    use super::PageEnd;

    #[test]
    fn only_a_page_that_shows_the_end_gives_the_total() {
        let at = |start, limit| PageEnd {
            start: Some(start),
            limit,
        };
        assert_eq!(at(0, 10).total(3), Some(3), "a short first page");
        assert_eq!(at(0, 10).total(0), Some(0), "an empty first page");
        assert_eq!(at(20, 10).total(4), Some(24), "a short later page");
        assert_eq!(
            at(0, 10).total(10),
            None,
            "a full page may have more after it"
        );
        assert_eq!(at(20, 10).total(0), None, "an empty page past the end");
        assert_eq!(at(0, 0).total(0), None, "a page of nothing says nothing");
        let cursor = PageEnd {
            start: None,
            limit: 10,
        };
        assert_eq!(cursor.total(3), None, "a page after a cursor");
    }
}
