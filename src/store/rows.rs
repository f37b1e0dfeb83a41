//! Row decoding and small helpers shared by both SQL backends. Both schemas use the same
//! column names and types (TEXT, BIGINT microseconds, BLOB/BYTEA), so one decoder serves both.

use super::{StoreError, StoredEvent};
use crate::domain::{
    ActivityFilter, Factors, LoginName, Metadata, Session, SessionFilter, SessionId, SessionQuery,
    SortOrder, Time, TimeComparison, TokenHash, User, UserAgent, UserFactor, UserId,
    UserSessionsQuery, UserState,
};

/// `SELECT` of the columns `session_from_row` reads (from `sessions s LEFT JOIN users u`),
/// followed by `$tail`: a `&'static str`, so no query text is built per request.
macro_rules! select_sessions {
    ($tail:literal) => {
        concat!(
            "SELECT s.id, s.user_id, s.user_verified_at, s.password_verified_at, s.metadata, \
             s.user_agent, s.expiration, s.creator, s.resource_owner, s.creation_date, \
             s.change_date, s.sequence, s.token_hash, s.terminated_at, u.login_name, \
             u.display_name, u.organization_id FROM sessions s LEFT JOIN users u \
             ON u.id = s.user_id",
            $tail
        )
    };
}

/// `SELECT` of the columns `user_from_row` reads, followed by `$tail`.
macro_rules! select_users {
    ($tail:literal) => {
        concat!(
            "SELECT id, login_name, display_name, organization_id, state, password_hash, \
             failed_password_attempts, created_at, updated_at FROM users",
            $tail
        )
    };
}

/// `SELECT` of the columns `event_from_row` reads, followed by `$tail`.
macro_rules! select_events {
    ($tail:literal) => {
        concat!(
            "SELECT sequence, event_type, payload, created_at, editor FROM session_events",
            $tail
        )
    };
}

pub(crate) use {select_events, select_sessions, select_users};

pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(e))
}

pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(internal)
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

/// Positional access to one result row; each backend implements it for its row type. Columns
/// are read by position (the order of `select_sessions!` / `select_users!`): a name lookup
/// per column would cost more than the decoding itself.
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

fn null_column(i: usize) -> StoreError {
    StoreError::Internal(format!("column {i} is unexpectedly NULL").into())
}

pub fn event_from_row(row: &impl Columns) -> Result<StoredEvent, StoreError> {
    let payload = row.required_text(2)?;
    Ok(StoredEvent {
        sequence: u64::try_from(row.required_int(0)?).unwrap_or_default(),
        event_type: row.required_text(1)?,
        payload: serde_json::from_str(&payload).map_err(internal)?,
        created_at: Time::from_unix_micros(row.required_int(3)?),
        editor: row.required_text(4)?,
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
    let user = match (row.text(1)?, row.time(2)?) {
        (Some(id), Some(verified_at)) => Some(UserFactor {
            id: UserId::from_trusted(id),
            verified_at,
            login_name: row.text(14)?.unwrap_or_default(),
            display_name: row.text(15)?.unwrap_or_default(),
            organization_id: row.text(16)?.unwrap_or_default(),
        }),
        _ => None,
    };
    let metadata = row.required_text(4)?;
    let user_agent = row.required_text(5)?;
    let token_hash = row.blob(12)?.unwrap_or_default();
    Ok(Session {
        id: SessionId::from_trusted(row.required_text(0)?),
        factors: Factors {
            user,
            password_verified_at: row.time(3)?,
        },
        metadata: serde_json::from_str::<Metadata>(&metadata).map_err(internal)?,
        user_agent: serde_json::from_str::<UserAgent>(&user_agent).map_err(internal)?,
        expiration: row.time(6)?,
        creator: row.required_text(7)?,
        resource_owner: row.required_text(8)?,
        creation_date: Time::from_unix_micros(row.required_int(9)?),
        change_date: Time::from_unix_micros(row.required_int(10)?),
        sequence: u64::try_from(row.required_int(11)?).unwrap_or_default(),
        token_hash: TokenHash::from_slice(&token_hash)
            .ok_or_else(|| StoreError::Internal("stored token hash is not 32 bytes".into()))?,
        terminated_at: row.time(13)?,
    })
}

pub fn user_from_row(row: &impl Columns) -> Result<User, StoreError> {
    let state = row.required_text(4)?;
    let attempts = row.required_int(6)?;
    Ok(User {
        id: UserId::from_trusted(row.required_text(0)?),
        login_name: LoginName::from_trusted(row.required_text(1)?),
        display_name: row.required_text(2)?,
        organization_id: row.required_text(3)?,
        state: UserState::parse(&state)
            .ok_or_else(|| StoreError::Internal(format!("unknown user state {state:?}").into()))?,
        password_hash: row.text(5)?,
        failed_password_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_at: Time::from_unix_micros(row.required_int(7)?),
        updated_at: Time::from_unix_micros(row.required_int(8)?),
    })
}

/// The count and the page of a session search (ListSessions), in SQL both backends accept;
/// `new` starts a query in the backend's builder.
pub fn session_search<B: SqlBuilder>(
    new: impl Fn(&'static str) -> B,
    filter: &SessionFilter,
) -> (B, B) {
    let mut count = new("SELECT COUNT(*) FROM sessions s");
    push_session_filter(&mut count, filter);
    let mut select = new(select_sessions!(""));
    push_session_filter(&mut select, filter);
    select.sql(match filter.order {
        SortOrder::CreationDesc => " ORDER BY s.creation_date DESC, s.id DESC",
        SortOrder::CreationAsc => " ORDER BY s.creation_date ASC, s.id ASC",
    });
    select.sql(" LIMIT ").bind_int(i64::from(filter.limit));
    select.sql(" OFFSET ").bind_int(to_i64(filter.offset));
    (count, select)
}

/// The count and the page (newest first, from the keyset cursor) of one user's sessions.
pub fn user_sessions_search<B: SqlBuilder>(
    new: impl Fn(&'static str) -> B,
    query: &UserSessionsQuery,
) -> (B, B) {
    let mut count = new("SELECT COUNT(*) FROM sessions s");
    push_user_sessions_filter(&mut count, query, false);
    let mut select = new(select_sessions!(""));
    push_user_sessions_filter(&mut select, query, true);
    select
        .sql(" ORDER BY s.creation_date DESC, s.id DESC LIMIT ")
        .bind_int(i64::from(query.limit));
    (count, select)
}

/// `WHERE …` of a session search, in SQL both backends accept.
fn push_session_filter(qb: &mut impl SqlBuilder, filter: &SessionFilter) {
    qb.sql(" WHERE s.terminated_at IS NULL");
    if let Some(user) = &filter.visible_to {
        qb.sql(" AND (s.creator = ").bind_text(user.clone());
        qb.sql(" OR s.user_id = ").bind_text(user.clone()).sql(")");
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

/// `WHERE …` of one user's sessions; with `with_cursor`, also the keyset position.
fn push_user_sessions_filter(
    qb: &mut impl SqlBuilder,
    query: &UserSessionsQuery,
    with_cursor: bool,
) {
    qb.sql(" WHERE s.user_id = ")
        .bind_text(query.user_id.as_str().to_owned());
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
