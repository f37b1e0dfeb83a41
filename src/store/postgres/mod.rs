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
//! Connections: `db-max-connections` (at least two) is shared by two sets. Most are `direct`
//! connections, each running one statement at a time and trusted again as soon as it ran to
//! its end: the point reads, the one-statement session writes and the record of a code's
//! check, one round trip each. The rest form sqlx's pool, for transactions and the other
//! modules' statements.
//!
//! Faults: connection errors, pool timeouts and statement timeouts surface as `Unavailable`
//! (gRPC 14 / HTTP 503); both sets reconnect by themselves when the database is back.
//!
//! The session event feed (global positions that hold although commits land out of order,
//! `LISTEN/NOTIFY` between replicas) is explained in `feed`.
//!
//! Rows are written and read from the column lists (`columns`); the user directory's own
//! statements (password checks, bulk revocation, the user list) are in `users`. Nothing here
//! bounds a call's time: `Bounded` does.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection as _, Postgres, QueryBuilder, Row, Transaction};

use super::columns::{Appended, Table, Value, events, sessions, users as user_columns};
use super::rows::{
    SessionSearch, SqlBuilder, columns_via, event_from_row, fresh_secret, internal, outcome_name,
    secret_bytes, session_from_row, session_search, to_i64, user_from_row, user_sessions_search,
};
use super::{
    CheckOutcome, Edited, FactorAttempt, FactorCheckOutcome, FeedBounds, FeedPage, FeedQuery,
    FeedWake, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation, SessionEdit, SessionPage,
    Store, StoreError, StoredEvent, UserListQuery,
};
use super::{Contact, FactorRevocation, OtpChallenge, StoredFactor};
use super::{PasskeyChallenge, PasskeyCheck, PasskeyUse, PendingPasskey, StoredPasskey};
use crate::domain::{
    FactorKind, LoginName, Session, SessionFilter, SessionId, Time, TokenHash, User, UserId,
    UserSessionsQuery,
};

mod direct;
mod factors;
mod feed;
mod grouped;
mod passkeys;
pub(crate) mod signals;
mod users;

use self::direct::{Direct, IDLE_CHECK};
use self::feed::PgFeed;
use self::grouped::Grouped;

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

columns_via!(PgRow, try_get, internal);

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

/// The share of `max_connections` that sqlx's pool gets (at least one): transactions and the
/// statements of factors, passkeys, signals and the feed. The rest are `Direct` connections
/// for the one-statement session and user reads and session writes, which carry the traffic.
const POOLED_SHARE: u32 = 4;

#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    direct: Arc<Direct>,
    feed: Arc<PgFeed>,
    /// Point reads of sessions by id and by token hash (see `grouped`).
    by_id: Grouped<String>,
    by_token: Grouped<Vec<u8>>,
}

impl PostgresStore {
    /// Connects (lazily: connections are made on demand and remade after failures).
    pub fn connect(url: &str, settings: &PgSettings) -> Result<Self, StoreError> {
        let timeout_ms = settings.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)
            .map_err(internal)?
            .application_name("sessiond")
            .options([("statement_timeout", timeout_ms.as_str())]);
        // The feed's listener keeps a connection of its own, outside the requests' pool.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options.clone());
        let total = settings.max_connections.max(2);
        let pooled = (total / POOLED_SHARE).max(1);
        // Every statement of the direct connections finds rows by a unique key, so their
        // generic plan is the best one. PostgreSQL would otherwise plan the grouped reads
        // (`= ANY($1)`) again on every execution: a custom plan for a one-element array is
        // estimated cheaper than the generic one, and planning (statistics included) cost
        // more than the read itself.
        let direct_options = options
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        let direct = Direct::new(direct_options, total - pooled, settings.acquire_timeout);
        // sqlx checks every connection on its return to the pool, so one handed out again
        // within `IDLE_CHECK` of its last use skips the liveness round trip; one idle longer
        // is checked first, as sqlx does by default.
        let pool = PgPoolOptions::new()
            .max_connections(pooled)
            .acquire_timeout(settings.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_CHECK {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        let direct = Arc::new(direct);
        // One statement per core at a time is as much as the database's cores can use for
        // reads of this size; more reads queue and go out together.
        let reads = std::thread::available_parallelism()
            .map_or(2, std::num::NonZero::get)
            .max(2)
            .min(usize::try_from(total - pooled).unwrap_or(1));
        let by_id = Grouped::new(
            format!("{} WHERE s.id = ANY($1)", *sessions::SELECT),
            |s| s.id.as_str().to_owned(),
            direct.clone(),
            reads,
        );
        let by_token = Grouped::new(
            format!("{} WHERE s.token_hash = ANY($1)", *sessions::SELECT),
            |s| s.token_hash.as_bytes().to_vec(),
            direct.clone(),
            reads,
        );
        let store = Self {
            pool,
            direct,
            feed: Arc::new(PgFeed::new(listen_pool)),
            by_id,
            by_token,
        };
        // The feed listens from the start, not from its first subscriber.
        store.feed.start(&store.pool);
        Ok(store)
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

/// PostgreSQL's numbered placeholder `$n`.
fn param(n: usize) -> String {
    format!("${n}")
}

/// A table's INSERT and guarded UPDATE, built once from its column list.
struct Writes {
    table: &'static Table,
    insert: LazyLock<String>,
    update: LazyLock<String>,
}

static USER_WRITES: Writes = Writes {
    table: &user_columns::TABLE,
    insert: LazyLock::new(|| user_columns::TABLE.insert(param)),
    update: LazyLock::new(|| user_columns::TABLE.update(param)),
};

/// `INSERT INTO session_events (…) SELECT <event parameters> FROM {from}`: the event row,
/// written once per row of `from`. Its parameters follow the `before` ones of the statement.
fn event_from(from: &str, before: usize) -> String {
    let names: Vec<&str> = events::TABLE.written().map(|(_, c)| c.name).collect();
    let params: Vec<String> = (before + 1..=before + names.len()).map(param).collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM {from}",
        events::TABLE.name,
        names.join(", "),
        params.join(", ")
    )
}

/// A session write and its event as one statement: one round trip, one implicit transaction
/// (no `BEGIN`/`COMMIT`). The event is inserted once per row the session write returns, so
/// the statement's row count says whether the session was written.
///
/// Update: the guarded UPDATE of every changing column (`Table::update`), then the event.
/// Parameters: `Table::update_params`, then the event's columns.
static UPDATE_SESSION: LazyLock<String> = LazyLock::new(|| {
    let before = sessions::TABLE.changing().count() + 2;
    format!(
        "WITH changed AS ({} RETURNING 1) {}",
        sessions::TABLE.update(param),
        event_from("changed", before)
    )
});

/// Insert of a session without a user: the row, then its first event. Parameters: the
/// session's columns, then the event's.
static INSERT_SESSION: LazyLock<String> = LazyLock::new(|| {
    let before = sessions::TABLE.written().count();
    format!(
        "WITH added AS ({} RETURNING 1) {}",
        sessions::TABLE.insert(param),
        event_from("added", before)
    )
});

/// Insert of a session for a user: a shared lock on the user's row first (bulk revocation
/// takes it exclusively, see the module header), then the row and its first event. The
/// count over the lock's rows makes the insert wait for the lock and still insert when no
/// user row exists. Parameters: the session's columns, the event's, then the user id.
static INSERT_USER_SESSION: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = sessions::TABLE.written().map(|(_, c)| c.name).collect();
    let params: Vec<String> = (1..=names.len()).map(param).collect();
    let user = param(names.len() + events::TABLE.written().count() + 1);
    format!(
        "WITH locked AS (SELECT 1 FROM users WHERE id = {user} FOR SHARE), \
         added AS (INSERT INTO {} ({}) SELECT {} FROM (SELECT count(*) FROM locked) AS lock \
         RETURNING 1) {}",
        sessions::TABLE.name,
        names.join(", "),
        params.join(", "),
        event_from("added", names.len())
    )
});

/// The point reads, built once from the column lists.
static EVENTS_OF_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE session_id = $1 ORDER BY sequence",
        *events::SELECT
    )
});
static USER_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE id = $1", *user_columns::SELECT));
static USER_BY_LOGIN_NAME: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE login_name_folded = $1", *user_columns::SELECT));

/// Binds the values in order.
fn bind_values(mut query: PgQuery<'_>, values: Vec<Value>) -> PgQuery<'_> {
    for value in values {
        query = match value {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
        };
    }
    query
}

impl Writes {
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        row: Vec<Value>,
    ) -> Result<(), StoreError> {
        bind_values(sqlx::query(&self.insert), row)
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Writes `row` if its guard column still holds `expected`; otherwise `Conflict`.
    async fn update(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        row: Vec<Value>,
        expected: u64,
    ) -> Result<(), StoreError> {
        let params = self
            .table
            .update_params(row, Value::Int(Some(to_i64(expected))));
        let done = bind_values(sqlx::query(&self.update), params)
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }
}

/// Deletes the rows of these sessions from `table` (`sessions` or `session_events`).
async fn delete_ids(
    tx: &mut Transaction<'_, Postgres>,
    table: &'static str,
    ids: &[String],
) -> Result<u64, StoreError> {
    let sql = if table == "sessions" {
        "DELETE FROM sessions WHERE id = ANY($1)"
    } else {
        "DELETE FROM session_events WHERE session_id = ANY($1)"
    };
    let done = sqlx::query(sql)
        .bind(ids)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(done.rows_affected())
}

impl PostgresStore {
    /// After a commit that appended `count` events: the feed's wake-ups.
    fn appended_if(&self, count: u64) {
        if count > 0 {
            self.feed.appended(&self.pool);
        }
    }

    /// Runs one of the one-statement session writes (`UPDATE_SESSION`, `INSERT_SESSION`,
    /// `INSERT_USER_SESSION`); whether it wrote the session and its event. Wakes the feed
    /// when it did.
    async fn write_session(&self, sql: &str, params: Vec<Value>) -> Result<bool, StoreError> {
        let mut lease = self.direct.lease().await.map_err(classify)?;
        let done = bind_values(sqlx::query(sql), params)
            .execute(lease.conn())
            .await;
        let done = lease.settle(done).map_err(classify)?;
        let written = done.rows_affected() == 1;
        self.appended_if(u64::from(written));
        Ok(written)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(classify)
    }

    /// The first row `query` returns, decoded, if there is one.
    async fn first<T>(
        &self,
        query: PgQuery<'_>,
        decode: impl Fn(&PgRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut lease = self.direct.lease().await.map_err(classify)?;
        let row = query.fetch_optional(lease.conn()).await;
        let row = lease.settle(row).map_err(classify)?;
        row.as_ref().map(decode).transpose()
    }

    /// Reads the page of a session search and, when the page does not tell, the count, in one
    /// transaction (one snapshot).
    async fn session_page(
        &self,
        SessionSearch {
            mut select,
            mut count,
            end,
        }: SessionSearch<QueryBuilder<'_, Postgres>>,
    ) -> Result<SessionPage, StoreError> {
        let mut tx = self.begin().await?;
        let rows = select.build().fetch_all(&mut *tx).await.map_err(classify)?;
        let total = match end.total(rows.len()) {
            Some(total) => total,
            None => {
                let total: i64 = count
                    .build_query_scalar()
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                u64::try_from(total).unwrap_or_default()
            }
        };
        tx.commit().await.map_err(classify)?;
        let sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionPage { sessions, total })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_session(
        &self,
        session: &Session,
        event: &NewEvent,
    ) -> Result<Option<User>, StoreError> {
        let mut params = sessions::encode(session)?;
        params.extend(events::encode(&Appended::of(session, event))?);
        let sql = match session.user_id() {
            Some(user) => {
                params.push(Value::Text(Some(user.as_str().to_owned())));
                &*INSERT_USER_SESSION
            }
            None => &*INSERT_SESSION,
        };
        self.write_session(sql, params).await?;
        // After the commit: a change to the user that commits later sees the session (its
        // revocation ends it), one that committed earlier shows here.
        match session.user_id() {
            Some(user) => self.user(user).await,
            None => Ok(None),
        }
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_sequence: u64,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let mut params = sessions::TABLE.update_params(
            sessions::encode(session)?,
            Value::Int(Some(to_i64(expected_sequence))),
        );
        params.extend(events::encode(&Appended::of(session, event))?);
        if self.write_session(&UPDATE_SESSION, params).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn edit_session(
        &self,
        id: &SessionId,
        edit: SessionEdit,
    ) -> Result<Option<Edited>, StoreError> {
        // A point read, then the guarded update at the sequence read: two round trips and no
        // row lock held in between; another replica's change in between is a `Conflict`,
        // which the caller retries with a fresh read.
        let Some(before) = self.session(id).await? else {
            return Ok(None);
        };
        let Some((after, event)) = edit(&before) else {
            return Ok(Some(Edited {
                before,
                after: None,
            }));
        };
        self.update_session(&after, before.sequence, &event).await?;
        Ok(Some(Edited {
            before,
            after: Some(after),
        }))
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.by_id.read(id.as_str().to_owned()).await
    }

    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        self.by_token.read(hash.as_bytes().to_vec()).await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<SessionPage, StoreError> {
        self.session_page(session_search(QueryBuilder::new, filter))
            .await
    }

    async fn session_events(&self, id: &SessionId) -> Result<Vec<StoredEvent>, StoreError> {
        let mut lease = self.direct.lease().await.map_err(classify)?;
        let rows = sqlx::query(&EVENTS_OF_SESSION)
            .bind(id.as_str())
            .fetch_all(lease.conn())
            .await;
        let rows = lease.settle(rows).map_err(classify)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        USER_WRITES
            .insert(&mut tx, user_columns::encode(user)?)
            .await?;
        tx.commit().await.map_err(classify)
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let query = sqlx::query(&USER_BY_ID).bind(id.as_str());
        self.first(query, user_from_row).await
    }

    async fn user_by_login_name(&self, name: &LoginName) -> Result<Option<User>, StoreError> {
        let query = sqlx::query(&USER_BY_LOGIN_NAME).bind(name.folded());
        self.first(query, user_from_row).await
    }

    async fn begin_password_check(
        &self,
        id: &UserId,
        max_failures: u32,
        now: Time,
        stale_before: Time,
    ) -> Result<PasswordCheck, StoreError> {
        users::begin_check(&self.pool, id, max_failures, now, stale_before).await
    }

    async fn end_password_check(
        &self,
        id: &UserId,
        outcome: CheckOutcome,
    ) -> Result<u32, StoreError> {
        users::end_check(&self.pool, id, outcome_name(outcome)).await
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
        let mut tx = self.begin().await?;
        let count = users::terminate_sessions(&mut tx, user, except, revocation).await?;
        tx.commit().await.map_err(classify)?;
        self.appended_if(count);
        Ok(count)
    }

    async fn update_user(
        &self,
        user: &User,
        expected_version: u64,
        revoke: Option<&Revocation>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        USER_WRITES
            .update(&mut tx, user_columns::encode(user)?, expected_version)
            .await?;
        let revoked = match revoke {
            Some(revocation) => {
                users::terminate_sessions(&mut tx, &user.id, None, revocation).await?
            }
            None => 0,
        };
        tx.commit().await.map_err(classify)?;
        self.appended_if(revoked);
        Ok(revoked)
    }

    async fn list_users(&self, query: &UserListQuery) -> Result<(Vec<User>, u64), StoreError> {
        let mut tx = self.begin().await?;
        let page = users::list(&mut tx, query).await?;
        tx.commit().await.map_err(classify)?;
        Ok(page)
    }

    async fn user_factors(&self, user: &UserId) -> Result<Vec<StoredFactor>, StoreError> {
        factors::of_user(&self.pool, user).await
    }

    async fn save_factor(
        &self,
        factor: &StoredFactor,
        codes: Option<&[Vec<u8>]>,
        revoke: Option<&FactorRevocation>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let revoked = factors::save(&mut tx, factor, codes, revoke).await?;
        tx.commit().await.map_err(classify)?;
        self.appended_if(revoked);
        Ok(revoked)
    }

    async fn remove_factor(
        &self,
        user: &UserId,
        kind: FactorKind,
        revoke: Option<&FactorRevocation>,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin().await?;
        let revoked = factors::remove(&mut tx, user, kind, revoke).await?;
        tx.commit().await.map_err(classify)?;
        self.appended_if(revoked.unwrap_or(0));
        Ok(revoked)
    }

    async fn record_factor_check(
        &self,
        user: &UserId,
        attempt: &FactorAttempt,
        max_failures: u32,
        now: Time,
        stale_before: Time,
    ) -> Result<FactorCheckOutcome, StoreError> {
        let query = factors::record_check(user, attempt, max_failures, now, stale_before);
        let recorded = self
            .first(query, |row| factors::recorded(row, max_failures))
            .await?;
        // No row: there is no such user, which no check passes.
        Ok(recorded.unwrap_or(FactorCheckOutcome::Locked))
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError> {
        passkeys::of_user(&self.pool, user).await
    }

    async fn begin_passkey_registration(&self, pending: &PendingPasskey) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        passkeys::begin_registration(&mut tx, pending).await?;
        tx.commit().await.map_err(classify)
    }

    async fn passkey_registration(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<PendingPasskey>, StoreError> {
        passkeys::registration(&self.pool, user, id).await
    }

    async fn complete_passkey_registration(
        &self,
        passkey: &StoredPasskey,
        revoke: Option<&FactorRevocation>,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin().await?;
        let revoked = passkeys::complete_registration(&mut tx, passkey, revoke).await?;
        if revoked.is_none() {
            return Ok(None);
        }
        tx.commit().await.map_err(classify)?;
        self.appended_if(revoked.unwrap_or(0));
        Ok(revoked)
    }

    async fn remove_passkey(
        &self,
        user: &UserId,
        id: &str,
        revoke: Option<&FactorRevocation>,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin().await?;
        let revoked = passkeys::remove(&mut tx, user, id, revoke).await?;
        tx.commit().await.map_err(classify)?;
        self.appended_if(revoked.unwrap_or(0));
        Ok(revoked)
    }

    async fn set_passkey_challenge(&self, challenge: &PasskeyChallenge) -> Result<(), StoreError> {
        passkeys::set_challenge(&self.pool, challenge).await
    }

    async fn passkey_check(
        &self,
        session: &SessionId,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyCheck>, StoreError> {
        passkeys::check(&self.pool, session, credential_id).await
    }

    async fn update_session_with_passkey(
        &self,
        session: &Session,
        expected_sequence: u64,
        event: &NewEvent,
        used: &PasskeyUse,
    ) -> Result<bool, StoreError> {
        let mut params = sessions::TABLE.update_params(
            sessions::encode(session)?,
            Value::Int(Some(to_i64(expected_sequence))),
        );
        params.extend(events::encode(&Appended::of(session, event))?);
        let mut tx = self.begin().await?;
        // Dropping the transaction rolls it back.
        if !passkeys::use_passkey(&mut tx, used).await? {
            return Ok(false);
        }
        // The user's row before the session's, as a bulk revocation takes them.
        users::end_check(
            &mut *tx,
            &used.user_id,
            outcome_name(CheckOutcome::PassedUnregistered),
        )
        .await?;
        let done = bind_values(sqlx::query(&UPDATE_SESSION), params)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        tx.commit().await.map_err(classify)?;
        self.appended_if(1);
        Ok(true)
    }

    async fn insert_user_with(
        &self,
        user: &User,
        factors: &[StoredFactor],
        contacts: &[Contact],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        USER_WRITES
            .insert(&mut tx, user_columns::encode(user)?)
            .await?;
        for factor in factors {
            factors::save(&mut tx, factor, None, None).await?;
        }
        for contact in contacts {
            factors::save_contact(&mut tx, contact).await?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn user_contacts(&self, user: &UserId) -> Result<Vec<Contact>, StoreError> {
        factors::contacts(&self.pool, user).await
    }

    async fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        factors::save_contact(&mut tx, contact).await?;
        tx.commit().await.map_err(classify)
    }

    async fn save_otp_challenge(&self, challenge: &OtpChallenge) -> Result<(), StoreError> {
        factors::save_challenge(&self.pool, challenge).await
    }

    async fn otp_challenge(
        &self,
        session: &SessionId,
        kind: FactorKind,
    ) -> Result<Option<OtpChallenge>, StoreError> {
        factors::challenge(&self.pool, session, kind).await
    }

    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        self.claim_secret(name, fresh_secret()).await
    }

    async fn claim_secret(&self, name: &str, value: [u8; 32]) -> Result<[u8; 32], StoreError> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value.to_vec())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        secret_bytes(&value)
    }

    async fn prune(
        &self,
        terminated_before: Time,
        expired_before: Time,
        batch: u32,
    ) -> Result<PruneBatch, StoreError> {
        let mut tx = self.begin().await?;
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
        feed::raise_horizon(&mut tx, &ids).await?;
        let events = delete_ids(&mut tx, "session_events", &ids).await?;
        let sessions = delete_ids(&mut tx, "sessions", &ids).await?;
        tx.commit().await.map_err(classify)?;
        Ok(PruneBatch { sessions, events })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut lease = self.direct.lease().await.map_err(classify)?;
        let done = sqlx::query("SELECT 1").execute(lease.conn()).await;
        lease.settle(done).map_err(classify)?;
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

    async fn feed_events(&self, query: &FeedQuery) -> Result<FeedPage, StoreError> {
        feed::page(&self.pool, query).await
    }

    async fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        feed::bounds(&self.pool).await
    }

    fn feed_wake(&self) -> FeedWake {
        self.feed.wake(&self.pool)
    }

    fn pools(&self) -> Vec<PoolStats> {
        let (open, idle) = self.direct.counts();
        vec![
            PoolStats {
                name: "postgres",
                open: self.pool.size(),
                idle: self.pool.num_idle(),
            },
            PoolStats {
                name: "postgres_direct",
                open,
                idle,
            },
        ]
    }

    async fn schema_ready(&self) -> Result<bool, StoreError> {
        // On the connections requests use, like `ping`: readiness is theirs.
        let mut lease = self.direct.lease().await.map_err(classify)?;
        let applied: Result<Vec<i64>, _> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(lease.conn())
                .await;
        match lease.settle(applied) {
            Ok(applied) => Ok(super::migrations_applied(&MIGRATOR, &applied)),
            // No migrations table yet.
            Err(sqlx::Error::Database(_)) => Ok(false),
            Err(e) => Err(StoreError::Unavailable(Box::new(e))),
        }
    }
}
