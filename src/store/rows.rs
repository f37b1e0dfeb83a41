//! Row decoding and small helpers shared by both SQL backends. Both schemas use the same
//! column names and types (TEXT, BIGINT microseconds, BLOB/BYTEA), so one decoder serves both.

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::StoreError;
use crate::domain::{
    ActivityFilter, Factors, LoginName, Metadata, Session, SessionFilter, SessionId, SessionQuery,
    Time, TimeComparison, TokenHash, User, UserAgent, UserFactor, UserId, UserSessionsQuery,
    UserState,
};

/// The columns `session_from_row` reads, from `sessions s LEFT JOIN users u`.
pub const SESSION_COLUMNS: &str = "s.id, s.user_id, s.user_verified_at, s.password_verified_at, \
    s.metadata, s.user_agent, s.expiration, s.creator, s.resource_owner, s.creation_date, \
    s.change_date, s.sequence, s.token_hash, s.terminated_at, \
    u.login_name, u.display_name, u.organization_id";

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

fn get<'r, R, T>(row: &'r R, column: &'r str) -> Result<T, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(internal)
}

fn time<'r, R>(row: &'r R, column: &'r str) -> Result<Option<Time>, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(get::<R, Option<i64>>(row, column)?.map(Time::from_unix_micros))
}

pub fn session_from_row<'r, R>(row: &'r R) -> Result<Session, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let user_id: Option<String> = get(row, "user_id")?;
    let user = match (user_id, time(row, "user_verified_at")?) {
        (Some(id), Some(verified_at)) => Some(UserFactor {
            id: UserId::from_trusted(id),
            verified_at,
            login_name: get::<R, Option<String>>(row, "login_name")?.unwrap_or_default(),
            display_name: get::<R, Option<String>>(row, "display_name")?.unwrap_or_default(),
            organization_id: get::<R, Option<String>>(row, "organization_id")?.unwrap_or_default(),
        }),
        _ => None,
    };
    let metadata: String = get(row, "metadata")?;
    let user_agent: String = get(row, "user_agent")?;
    let token_hash: Vec<u8> = get(row, "token_hash")?;
    let sequence: i64 = get(row, "sequence")?;
    Ok(Session {
        id: SessionId::from_trusted(get(row, "id")?),
        factors: Factors {
            user,
            password_verified_at: time(row, "password_verified_at")?,
        },
        metadata: serde_json::from_str::<Metadata>(&metadata).map_err(internal)?,
        user_agent: serde_json::from_str::<UserAgent>(&user_agent).map_err(internal)?,
        expiration: time(row, "expiration")?,
        creator: get(row, "creator")?,
        resource_owner: get(row, "resource_owner")?,
        creation_date: Time::from_unix_micros(get(row, "creation_date")?),
        change_date: Time::from_unix_micros(get(row, "change_date")?),
        sequence: u64::try_from(sequence).unwrap_or_default(),
        token_hash: TokenHash::from_slice(&token_hash)
            .ok_or_else(|| StoreError::Internal("stored token hash is not 32 bytes".into()))?,
        terminated_at: time(row, "terminated_at")?,
    })
}

pub fn user_from_row<'r, R>(row: &'r R) -> Result<User, StoreError>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: String = get(row, "state")?;
    let attempts: i64 = get(row, "failed_password_attempts")?;
    Ok(User {
        id: UserId::from_trusted(get(row, "id")?),
        login_name: LoginName::from_trusted(get(row, "login_name")?),
        display_name: get(row, "display_name")?,
        organization_id: get(row, "organization_id")?,
        state: UserState::parse(&state)
            .ok_or_else(|| StoreError::Internal(format!("unknown user state {state:?}").into()))?,
        password_hash: get(row, "password_hash")?,
        failed_password_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_at: Time::from_unix_micros(get(row, "created_at")?),
        updated_at: Time::from_unix_micros(get(row, "updated_at")?),
    })
}

/// `WHERE …` of a session search, in SQL both backends accept.
pub fn push_session_filter<'a, DB>(qb: &mut QueryBuilder<'a, DB>, filter: &SessionFilter)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    qb.push(" WHERE s.terminated_at IS NULL");
    if let Some(user) = &filter.visible_to {
        qb.push(" AND (s.creator = ").push_bind(user.clone());
        qb.push(" OR s.user_id = ")
            .push_bind(user.clone())
            .push(")");
    }
    for query in &filter.queries {
        match query {
            SessionQuery::Ids(ids) if ids.is_empty() => {
                qb.push(" AND 1 = 0");
            }
            SessionQuery::Ids(ids) => {
                qb.push(" AND s.id IN (");
                let mut separated = qb.separated(", ");
                for id in ids {
                    separated.push_bind(id.clone());
                }
                qb.push(")");
            }
            SessionQuery::UserId(id) => {
                qb.push(" AND s.user_id = ").push_bind(id.clone());
            }
            SessionQuery::Creator(id) => {
                qb.push(" AND s.creator = ").push_bind(id.clone());
            }
            SessionQuery::UserAgentFingerprint(id) => {
                qb.push(" AND s.fingerprint_id = ").push_bind(id.clone());
            }
            SessionQuery::CreationDate(op, at) => {
                qb.push(" AND s.creation_date")
                    .push(comparison(*op))
                    .push_bind(at.unix_micros());
            }
            SessionQuery::ExpirationDate(op, at) => {
                qb.push(" AND (s.expiration")
                    .push(comparison(*op))
                    .push_bind(at.unix_micros());
                if matches!(
                    op,
                    TimeComparison::Greater | TimeComparison::GreaterOrEquals
                ) {
                    qb.push(" OR s.expiration IS NULL");
                }
                qb.push(")");
            }
        }
    }
}

/// `WHERE …` of one user's sessions; with `with_cursor`, also the keyset position.
pub fn push_user_sessions_filter<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    query: &UserSessionsQuery,
    with_cursor: bool,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    qb.push(" WHERE s.user_id = ")
        .push_bind(query.user_id.as_str().to_owned());
    if let Some(id) = &query.exclude {
        qb.push(" AND s.id <> ").push_bind(id.as_str().to_owned());
    }
    match query.activity {
        ActivityFilter::All => {}
        ActivityFilter::Active(now) => {
            qb.push(" AND s.terminated_at IS NULL AND (s.expiration IS NULL OR s.expiration > ")
                .push_bind(now.unix_micros())
                .push(")");
        }
        ActivityFilter::Inactive(now) => {
            qb.push(" AND (s.terminated_at IS NOT NULL OR s.expiration <= ")
                .push_bind(now.unix_micros())
                .push(")");
        }
    }
    if let (true, Some(after)) = (with_cursor, &query.after) {
        qb.push(" AND (s.creation_date < ")
            .push_bind(after.creation_date.unix_micros())
            .push(" OR (s.creation_date = ")
            .push_bind(after.creation_date.unix_micros())
            .push(" AND s.id < ")
            .push_bind(after.id.as_str().to_owned())
            .push("))");
    }
}
