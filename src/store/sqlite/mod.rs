//! The embedded default store: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one connection
//! (no `SQLITE_BUSY` storms, no lock upgrades) while reads use a pool of several. With
//! `synchronous=NORMAL` a committed transaction survives a crash of the process; a power loss
//! may lose the last transactions but never corrupts the file.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::rows::{
    SESSION_COLUMNS, internal, json, push_session_filter, push_user_sessions_filter,
    session_from_row, to_i64, user_from_row,
};
use super::{
    CheckOutcome, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation, SessionPage, Store,
    StoreError, StoredEvent, UserListQuery,
};
use crate::domain::{
    LoginName, Session, SessionFilter, SessionId, SortOrder, Time, TokenHash, User, UserId,
    UserSessionsQuery,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or `sqlite::memory:`)
    /// and applies pending migrations.
    pub async fn open(url: &str, readers: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(internal)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(classify)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(super::migration_error)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .map_err(classify)?;
        Ok(Self { writer, reader })
    }
}

fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            if db.message().contains("login_name") {
                StoreError::Duplicate("login name")
            } else if db.message().contains("session_events") {
                StoreError::Conflict
            } else {
                StoreError::Duplicate("id")
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        _ => StoreError::Internal(Box::new(e)),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_session(&self, session: &Session, event: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        bind_session(
            sqlx::query(
                "INSERT INTO sessions (user_id, user_verified_at, password_verified_at, metadata, \
             user_agent, fingerprint_id, expiration, change_date, sequence, token_hash, \
             terminated_at, creator, resource_owner, creation_date, id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let updated = bind_session(
            sqlx::query(
                "UPDATE sessions SET user_id = ?, user_verified_at = ?, password_verified_at = ?, \
             metadata = ?, user_agent = ?, fingerprint_id = ?, expiration = ?, change_date = ?, \
             sequence = ?, token_hash = ?, terminated_at = ? WHERE id = ? AND sequence = ?",
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
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = ?"
        );
        let row = sqlx::query(&sql)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<SessionPage, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(classify)?;
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM sessions s");
        push_session_filter(&mut count, filter);
        let total: i64 = count
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await
            .map_err(classify)?;

        let mut select = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s LEFT JOIN users u ON u.id = s.user_id"
        ));
        push_session_filter(&mut select, filter);
        select.push(match filter.order {
            SortOrder::CreationDesc => " ORDER BY s.creation_date DESC, s.id DESC",
            SortOrder::CreationAsc => " ORDER BY s.creation_date ASC, s.id ASC",
        });
        select.push(" LIMIT ").push_bind(i64::from(filter.limit));
        select.push(" OFFSET ").push_bind(to_i64(filter.offset));
        let rows = select
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(classify)?;
        let sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionPage {
            sessions,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }

    async fn session_events(&self, id: &SessionId) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, payload, created_at, editor FROM session_events \
             WHERE session_id = ? ORDER BY sequence",
        )
        .bind(id.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let payload: String = row.try_get("payload").map_err(internal)?;
                let sequence: i64 = row.try_get("sequence").map_err(internal)?;
                Ok(StoredEvent {
                    sequence: u64::try_from(sequence).unwrap_or_default(),
                    event_type: row.try_get("event_type").map_err(internal)?,
                    payload: serde_json::from_str(&payload).map_err(internal)?,
                    created_at: Time::from_unix_micros(
                        row.try_get("created_at").map_err(internal)?,
                    ),
                    editor: row.try_get("editor").map_err(internal)?,
                })
            })
            .collect()
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, login_name, login_name_folded, display_name, organization_id, \
             state, password_hash, failed_password_attempts, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_login_name(&self, name: &LoginName) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE login_name_folded = ?")
            .bind(name.folded())
            .fetch_optional(&self.reader)
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
             password_checks_pending = CASE WHEN password_checks_pending_since < ?1 THEN 1 \
                 ELSE password_checks_pending + 1 END, \
             password_checks_pending_since = ?2 \
             WHERE id = ?3 AND state = 'active' AND (?4 = 0 OR failed_password_attempts + \
                 CASE WHEN password_checks_pending_since < ?1 THEN 0 ELSE password_checks_pending END < ?4) \
             RETURNING failed_password_attempts",
        )
        .bind(stale_before.unix_micros())
        .bind(now.unix_micros())
        .bind(id.as_str())
        .bind(i64::from(max_failures))
        .fetch_optional(&self.writer)
        .await
        .map_err(classify)?;
        if let Some(failures) = granted {
            return Ok(PasswordCheck::Granted {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
            });
        }
        // Refused: locked (too many failures, or no longer active), or busy.
        let current: Option<(i64, String)> =
            sqlx::query_as("SELECT failed_password_attempts, state FROM users WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&self.writer)
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
            "UPDATE users SET password_checks_pending = MAX(password_checks_pending - 1, 0), \
             failed_password_attempts = CASE ?1 WHEN 'passed' THEN 0 WHEN 'failed' \
                 THEN failed_password_attempts + 1 ELSE failed_password_attempts END \
             WHERE id = ?2 RETURNING failed_password_attempts",
        )
        .bind(outcome)
        .bind(id.as_str())
        .fetch_optional(&self.writer)
        .await
        .map_err(classify)?;
        Ok(failures.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)))
    }

    async fn user_sessions(&self, query: &UserSessionsQuery) -> Result<SessionPage, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(classify)?;
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM sessions s");
        push_user_sessions_filter(&mut count, query, false);
        let total: i64 = count
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await
            .map_err(classify)?;

        let mut select = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s LEFT JOIN users u ON u.id = s.user_id"
        ));
        push_user_sessions_filter(&mut select, query, true);
        select
            .push(" ORDER BY s.creation_date DESC, s.id DESC LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = select
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(classify)?;
        let sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionPage {
            sessions,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }

    async fn terminate_user_sessions(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        revocation: &Revocation,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let count = terminate_in(&mut tx, user, except, revocation).await?;
        tx.commit().await.map_err(classify)?;
        Ok(count)
    }

    async fn update_user(
        &self,
        user: &User,
        revoke: Option<&Revocation>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let updated = sqlx::query(
            "UPDATE users SET login_name = ?, login_name_folded = ?, display_name = ?, \
             organization_id = ?, state = ?, password_hash = ?, failed_password_attempts = ?, \
             updated_at = ? WHERE id = ?",
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
        let mut conn = self.reader.acquire().await.map_err(classify)?;
        let folded = query.login_name.as_ref().map(LoginName::folded);
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE ? IS NULL OR login_name_folded = ?",
        )
        .bind(folded.clone())
        .bind(folded.clone())
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
        let rows = sqlx::query(
            "SELECT * FROM users WHERE ? IS NULL OR login_name_folded = ? \
             ORDER BY login_name_folded LIMIT ? OFFSET ?",
        )
        .bind(folded.clone())
        .bind(folded)
        .bind(i64::from(query.limit))
        .bind(to_i64(query.offset))
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
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
            "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh.to_vec())
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.writer)
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
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE (terminated_at IS NOT NULL AND terminated_at < ?) \
             OR (expiration IS NOT NULL AND expiration < ?) LIMIT ?",
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
        let mut deleted = PruneBatch::default();
        for (table, column) in [("session_events", "session_id"), ("sessions", "id")] {
            let mut qb =
                QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE {column} IN ("));
            let mut separated = qb.separated(", ");
            for id in &ids {
                separated.push_bind(id.clone());
            }
            qb.push(")");
            let n = qb
                .build()
                .execute(&mut *tx)
                .await
                .map_err(classify)?
                .rows_affected();
            if table == "sessions" {
                deleted.sessions = n;
            } else {
                deleted.events = n;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(deleted)
    }

    async fn count_live_sessions(&self, now: Time) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE terminated_at IS NULL \
             AND (expiration IS NULL OR expiration > ?)",
        )
        .bind(now.unix_micros())
        .fetch_one(&self.reader)
        .await
        .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    fn pools(&self) -> Vec<PoolStats> {
        vec![
            PoolStats {
                name: "sqlite_writer",
                open: self.writer.size(),
                idle: self.writer.num_idle(),
            },
            PoolStats {
                name: "sqlite_reader",
                open: self.reader.size(),
                idle: self.reader.num_idle(),
            },
        ]
    }

    async fn schema_ready(&self) -> Result<bool, StoreError> {
        super::schema_ready(&MIGRATOR, &self.reader).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the mutable columns in the order both INSERT and UPDATE list them.
fn bind_session<'q>(query: SqliteQuery<'q>, s: &'q Session) -> Result<SqliteQuery<'q>, StoreError> {
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

/// Terminates the live sessions of a user inside a transaction: one event per session,
/// sequence + 1, then the rows themselves.
async fn terminate_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    user: &UserId,
    except: Option<&SessionId>,
    revocation: &Revocation,
) -> Result<u64, StoreError> {
    let except = except.map(|id| id.as_str().to_owned()).unwrap_or_default();
    let payload = json(&serde_json::json!({ "reason": revocation.reason }))?;
    sqlx::query(
        "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, editor) \
         SELECT id, sequence + 1, 'session.terminated', ?, ?, ? FROM sessions \
         WHERE user_id = ? AND id <> ? AND terminated_at IS NULL",
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
        "UPDATE sessions SET terminated_at = ?, change_date = ?, sequence = sequence + 1 \
         WHERE user_id = ? AND id <> ? AND terminated_at IS NULL",
    )
    .bind(revocation.at.unix_micros())
    .bind(revocation.at.unix_micros())
    .bind(user.as_str())
    .bind(&except)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected())
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    session_id: &SessionId,
    sequence: u64,
    event: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, editor) \
         VALUES (?, ?, ?, ?, ?, ?)",
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
