//! Row decoding and small helpers shared by both SQL backends. Both schemas use the same
//! column names and types (TEXT, BIGINT microseconds, BLOB/BYTEA), so one decoder serves both.

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

/// The columns `user_from_row` reads, in its order.
pub const USER_COLUMNS: &str = "id, login_name, display_name, organization_id, state, \
    password_hash, failed_password_attempts, created_at, updated_at";

/// Positional access to one result row; each backend implements it for its row type. Columns
/// are read by position (the order of [`SESSION_COLUMNS`] / [`USER_COLUMNS`]): a name lookup
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

/// `WHERE …` of a session search, in SQL both backends accept.
pub fn push_session_filter(qb: &mut impl SqlBuilder, filter: &SessionFilter) {
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
pub fn push_user_sessions_filter(
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
