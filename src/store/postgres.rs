//! The scale-out store: PostgreSQL (or a compatible database), shared by any number of
//! sessiond replicas. Nothing is cached in the process, so a revocation on one replica is
//! seen by every other at once.
//!
//! Concurrency: transactions run at READ COMMITTED. A session update only applies at the
//! sequence it was read at (`WHERE sequence = $n`), so concurrent writers to one session
//! serialise and the loser retries. Creating a session for a user takes a shared lock on the
//! user row and bulk revocation an exclusive one, so "revoke my other sessions" waits for
//! logins in flight and includes every session committed before it returns.
//!
//! Faults: connection errors, pool timeouts and statement timeouts surface as `Unavailable`
//! (gRPC 14 / HTTP 503); the pool reconnects by itself when the database is back.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};

use super::rows::{
    Columns, SqlBuilder, event_from_row, internal, json, select_events, select_sessions,
    select_users, session_from_row, session_search, to_i64, user_from_row, user_sessions_search,
};
use super::{
    CheckOutcome, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation, SessionPage, Store,
    StoreError, StoredEvent, UserListQuery,
};
use crate::domain::{
    LoginName, Session, SessionFilter, SessionId, Time, TokenHash, User, UserId, UserSessionsQuery,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Pool and timeout settings (from `Settings`: `db-max-connections`, `db-…-timeout`).
#[derive(Clone, Debug)]
pub struct PgSettings {
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing with Unavailable.
    pub acquire_timeout: Duration,
    /// Server-side limit of one statement (`statement_timeout`).
    pub statement_timeout: Duration,
}

impl Columns for sqlx::postgres::PgRow {
    fn text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.try_get(i).map_err(internal)
    }

    fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.try_get(i).map_err(internal)
    }

    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(i).map_err(internal)
    }
}

impl SqlBuilder for QueryBuilder<'_, Postgres> {
    fn sql(&mut self, text: &str) -> &mut Self {
        self.push(text)
    }

    fn bind_text(&mut self, value: String) -> &mut Self {
        self.push_bind(value)
    }

    fn bind_int(&mut self, value: i64) -> &mut Self {
        self.push_bind(value)
    }
}

#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (lazily: connections are made on demand and remade after failures).
    pub fn connect(url: &str, settings: &PgSettings) -> Result<Self, StoreError> {
        let timeout_ms = settings.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)
            .map_err(internal)?
            .application_name("sessiond")
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// Applies pending migrations under PostgreSQL's advisory lock, so replicas that start
    /// together never race. Fails if the database is newer than this binary.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(super::migration_error)
    }
}

/// SQLSTATE codes that mean "the database is not there right now": connection exceptions
/// (class 08), shutdown and statement timeout.
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "53300")
}

fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => match db.constraint() {
            Some(c) if c.contains("login_name") => StoreError::Duplicate("login name"),
            Some(c) if c.starts_with("session_events") => StoreError::Conflict,
            _ => StoreError::Duplicate("id"),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("40001" | "40P01") => StoreError::Conflict,
            Some(code) if unavailable_code(code) => StoreError::Unavailable(Box::new(e)),
            _ => StoreError::Internal(Box::new(e)),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::Internal(Box::new(e)),
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds the mutable columns ($1..$11) in the order INSERT and UPDATE list them.
fn bind_session<'q>(query: PgQuery<'q>, s: &'q Session) -> Result<PgQuery<'q>, StoreError> {
    let user = s.factors.user.as_ref();
    Ok(query
        .bind(user.map(|u| u.id.as_str()))
        .bind(user.map(|u| u.verified_at.unix_micros()))
        .bind(s.factors.password_verified_at.map(Time::unix_micros))
        .bind(json(&s.metadata)?)
        .bind(json(&s.user_agent)?)
        .bind(s.user_agent.fingerprint_id.as_deref())
        .bind(s.expiration.map(Time::unix_micros))
        .bind(s.change_date.unix_micros())
        .bind(to_i64(s.sequence))
        .bind(s.token_hash.as_bytes().to_vec())
        .bind(s.terminated_at.map(Time::unix_micros)))
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    session_id: &SessionId,
    sequence: u64,
    event: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, editor) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(session_id.as_str())
    .bind(to_i64(sequence))
    .bind(event.event_type)
    .bind(json(&event.payload)?)
    .bind(event.created_at.unix_micros())
    .bind(&event.editor)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Terminates the live sessions of a user inside a transaction that holds the user row
/// exclusively: one event per session, sequence + 1, then the rows themselves.
async fn terminate_in(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    user: &UserId,
    except: Option<&SessionId>,
    revocation: &Revocation,
) -> Result<u64, StoreError> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    let except = except.map(|id| id.as_str().to_owned()).unwrap_or_default();
    let payload = json(&serde_json::json!({ "reason": revocation.reason }))?;
    sqlx::query(
        "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, editor) \
         SELECT id, sequence + 1, 'session.terminated', $1, $2, $3 FROM sessions \
         WHERE user_id = $4 AND id <> $5 AND terminated_at IS NULL",
    )
    .bind(&payload)
    .bind(revocation.at.unix_micros())
    .bind(&revocation.editor)
    .bind(user.as_str())
    .bind(&except)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    let done = sqlx::query(
        "UPDATE sessions SET terminated_at = $1, change_date = $1, sequence = sequence + 1 \
         WHERE user_id = $2 AND id <> $3 AND terminated_at IS NULL",
    )
    .bind(revocation.at.unix_micros())
    .bind(user.as_str())
    .bind(&except)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected())
}

impl PostgresStore {
    /// Runs the count and the page of a session search in one transaction (one snapshot).
    async fn session_page(
        &self,
        (mut count, mut select): (QueryBuilder<'_, Postgres>, QueryBuilder<'_, Postgres>),
    ) -> Result<SessionPage, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let total: i64 = count
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let rows = select.build().fetch_all(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        let sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionPage {
            sessions,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_session(&self, session: &Session, event: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        if let Some(user) = session.user_id() {
            sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR SHARE")
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        bind_session(
            sqlx::query(
                "INSERT INTO sessions (user_id, user_verified_at, password_verified_at, metadata, \
                 user_agent, fingerprint_id, expiration, change_date, sequence, token_hash, \
                 terminated_at, creator, resource_owner, creation_date, id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            ),
            session,
        )?
        .bind(&session.creator)
        .bind(&session.resource_owner)
        .bind(session.creation_date.unix_micros())
        .bind(session.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        insert_event(&mut tx, &session.id, session.sequence, event).await?;
        tx.commit().await.map_err(classify)
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_sequence: u64,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let updated = bind_session(
            sqlx::query(
                "UPDATE sessions SET user_id = $1, user_verified_at = $2, \
                 password_verified_at = $3, metadata = $4, user_agent = $5, fingerprint_id = $6, \
                 expiration = $7, change_date = $8, sequence = $9, token_hash = $10, \
                 terminated_at = $11 WHERE id = $12 AND sequence = $13",
            ),
            session,
        )?
        .bind(session.id.as_str())
        .bind(to_i64(expected_sequence))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        insert_event(&mut tx, &session.id, session.sequence, event).await?;
        tx.commit().await.map_err(classify)
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(select_sessions!(" WHERE s.id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(select_sessions!(" WHERE s.token_hash = $1"))
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<SessionPage, StoreError> {
        self.session_page(session_search(QueryBuilder::new, filter))
            .await
    }

    async fn session_events(&self, id: &SessionId) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(select_events!(" WHERE session_id = $1 ORDER BY sequence"))
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, login_name, login_name_folded, display_name, organization_id, \
             state, password_hash, failed_password_attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(user.id.as_str())
        .bind(user.login_name.as_str())
        .bind(user.login_name.folded())
        .bind(&user.display_name)
        .bind(&user.organization_id)
        .bind(user.state.as_str())
        .bind(&user.password_hash)
        .bind(i64::from(user.failed_password_attempts))
        .bind(user.created_at.unix_micros())
        .bind(user.updated_at.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(select_users!(" WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_login_name(&self, name: &LoginName) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(select_users!(" WHERE login_name_folded = $1"))
            .bind(name.folded())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn begin_password_check(
        &self,
        id: &UserId,
        max_failures: u32,
        now: Time,
        stale_before: Time,
    ) -> Result<PasswordCheck, StoreError> {
        let granted: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET \
             password_checks_pending = CASE WHEN password_checks_pending_since < $1 THEN 1 \
                 ELSE password_checks_pending + 1 END, \
             password_checks_pending_since = $2 \
             WHERE id = $3 AND state = 'active' AND ($4 = 0 OR failed_password_attempts + \
                 CASE WHEN password_checks_pending_since < $1 THEN 0 ELSE password_checks_pending END < $4) \
             RETURNING failed_password_attempts",
        )
        .bind(stale_before.unix_micros())
        .bind(now.unix_micros())
        .bind(id.as_str())
        .bind(i64::from(max_failures))
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        if let Some(failures) = granted {
            return Ok(PasswordCheck::Granted {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
            });
        }
        // Refused: locked (too many failures, or no longer active), or busy.
        let current: Option<(i64, String)> =
            sqlx::query_as("SELECT failed_password_attempts, state FROM users WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        Ok(match current {
            Some((_, state)) if state != "active" => PasswordCheck::Locked,
            Some((f, _)) if max_failures > 0 && f >= i64::from(max_failures) => {
                PasswordCheck::Locked
            }
            Some(_) => PasswordCheck::Busy,
            None => PasswordCheck::Locked,
        })
    }

    async fn end_password_check(
        &self,
        id: &UserId,
        outcome: CheckOutcome,
    ) -> Result<u32, StoreError> {
        let outcome = match outcome {
            CheckOutcome::Passed => "passed",
            CheckOutcome::Failed => "failed",
            CheckOutcome::Aborted => "aborted",
        };
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET password_checks_pending = GREATEST(password_checks_pending - 1, 0), \
             failed_password_attempts = CASE $1 WHEN 'passed' THEN 0 WHEN 'failed' \
                 THEN failed_password_attempts + 1 ELSE failed_password_attempts END \
             WHERE id = $2 RETURNING failed_password_attempts",
        )
        .bind(outcome)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(failures.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)))
    }

    async fn user_sessions(&self, query: &UserSessionsQuery) -> Result<SessionPage, StoreError> {
        self.session_page(user_sessions_search(QueryBuilder::new, query))
            .await
    }

    async fn terminate_user_sessions(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        revocation: &Revocation,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let count = terminate_in(&mut tx, user, except, revocation).await?;
        tx.commit().await.map_err(classify)?;
        Ok(count)
    }

    async fn update_user(
        &self,
        user: &User,
        revoke: Option<&Revocation>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let updated = sqlx::query(
            "UPDATE users SET login_name = $1, login_name_folded = $2, display_name = $3, \
             organization_id = $4, state = $5, password_hash = $6, failed_password_attempts = $7, \
             updated_at = $8 WHERE id = $9",
        )
        .bind(user.login_name.as_str())
        .bind(user.login_name.folded())
        .bind(&user.display_name)
        .bind(&user.organization_id)
        .bind(user.state.as_str())
        .bind(&user.password_hash)
        .bind(i64::from(user.failed_password_attempts))
        .bind(user.updated_at.unix_micros())
        .bind(user.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        let revoked = match revoke {
            Some(revocation) => terminate_in(&mut tx, &user.id, None, revocation).await?,
            None => 0,
        };
        tx.commit().await.map_err(classify)?;
        Ok(revoked)
    }

    async fn list_users(&self, query: &UserListQuery) -> Result<(Vec<User>, u64), StoreError> {
        let folded = query.login_name.as_ref().map(LoginName::folded);
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE $1::TEXT IS NULL OR login_name_folded = $1",
        )
        .bind(folded.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let rows = sqlx::query(select_users!(
            " WHERE $1::TEXT IS NULL OR login_name_folded = $1 \
             ORDER BY login_name_folded LIMIT $2 OFFSET $3"
        ))
        .bind(folded)
        .bind(i64::from(query.limit))
        .bind(to_i64(query.offset))
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((users, u64::try_from(total).unwrap_or_default()))
    }

    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let mut fresh = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fresh);
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh.to_vec())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        <[u8; 32]>::try_from(value.as_slice())
            .map_err(|_| StoreError::Internal(format!("secret {name} is not 32 bytes").into()))
    }

    async fn prune(
        &self,
        terminated_before: Time,
        expired_before: Time,
        batch: u32,
    ) -> Result<PruneBatch, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE (terminated_at IS NOT NULL AND terminated_at < $1) \
             OR (expiration IS NOT NULL AND expiration < $2) LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(terminated_before.unix_micros())
        .bind(expired_before.unix_micros())
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        if ids.is_empty() {
            return Ok(PruneBatch::default());
        }
        let events = sqlx::query("DELETE FROM session_events WHERE session_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        let sessions = sqlx::query("DELETE FROM sessions WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        tx.commit().await.map_err(classify)?;
        Ok(PruneBatch { sessions, events })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn count_live_sessions(&self, now: Time) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE terminated_at IS NULL \
             AND (expiration IS NULL OR expiration > $1)",
        )
        .bind(now.unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    fn pools(&self) -> Vec<PoolStats> {
        vec![PoolStats {
            name: "postgres",
            open: self.pool.size(),
            idle: self.pool.num_idle(),
        }]
    }

    async fn schema_ready(&self) -> Result<bool, StoreError> {
        super::schema_ready(&MIGRATOR, &self.pool).await
    }
}
