//! The fast seeder: users and live sessions written straight into sessiond's SQLite file
//! (the schema of migrations/sqlite/0001_init.sql, migrated by `sessiond migrate` first), in
//! multi-row INSERTs inside large transactions. Each session looks exactly like one that
//! CreateSession with a user check made: a `sessions` row with the SHA-256 of a fresh random
//! `sdst_…` token, and its `session.added` event. A sample of (id, token, user) is kept for
//! the queries.

use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use crate::client::SessionRef;

pub struct SeedSpec<'a> {
    /// Login names are `<prefix>-<n>@bench.example`.
    pub prefix: &'a str,
    pub sessions: usize,
    pub sessions_per_user: usize,
    /// How many sessions to remember (spread evenly over all of them).
    pub sample: usize,
    /// The `creator` of every session (the JWT subject the bench calls with).
    pub creator: &'a str,
    pub instance_id: &'a str,
    /// One PHC string every seeded user gets (hashing per user would take hours).
    pub password_hash: Option<&'a str>,
    /// Lifetime of the sessions, in seconds.
    pub lifetime_secs: i64,
}

/// The sessions GetSession and ListSessions read in the main table and the storage ceilings,
/// seeded beside the delete pool.
pub const READ_SESSIONS: usize = 10_000;

/// The newest creation time (µs) for a seed that must come wholly before one of `sessions`
/// sessions whose newest is `newest`. Seeds into one table must not share a millisecond: an id
/// is its creation millisecond and 23 random bits, so two seeds overlapping by 10,000
/// milliseconds collide (UNIQUE constraint failed) about once in 800 runs.
pub fn ending_before(newest: i64, sessions: usize) -> i64 {
    newest - (sessions as i64 + 1) * 1000
}

pub struct Seeded {
    pub sessions: Vec<SessionRef>,
    /// Every seeded user id, in order.
    pub users: Vec<String>,
    pub seconds: f64,
}

fn numeric_id(rng: &mut impl Rng) -> String {
    // The shape of sessiond's ids: a 63-bit number with 18 or 19 digits.
    rng.gen_range(100_000_000_000_000_000u64..=i64::MAX as u64)
        .to_string()
}

fn token(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    format!("sdst_{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn open(db: &Path) -> anyhow::Result<SqliteConnection> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        // 4 GiB at most, taken only as pages are touched: the random-order indexes of a
        // 10M-session seed (token hashes, sessions and events by user, ~1.3 GB) stay in
        // memory instead of being re-read and spilled at every batch.
        .pragma("cache_size", "-4194304")
        .pragma("temp_store", "memory");
    Ok(SqliteConnection::connect_with(&options).await?)
}

struct Row {
    id: String,
    user: usize,
    hash: Vec<u8>,
    at: i64,
}

/// Seeds users and sessions; `now_micros` is the creation time of the newest session.
pub async fn seed(
    conn: &mut SqliteConnection,
    spec: &SeedSpec<'_>,
    now_micros: i64,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let per_user = spec.sessions_per_user.max(1);
    let user_count = spec.sessions.div_ceil(per_user).max(1);

    // Users.
    let users: Vec<String> = (0..user_count).map(|_| numeric_id(&mut rng)).collect();
    const USER_BATCH: usize = 2000; // 10 columns: 20,000 variables per statement
    let mut tx = conn.begin().await?;
    for (chunk_no, chunk) in users.chunks(USER_BATCH).enumerate() {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO users (id, login_name, login_name_folded, display_name, organization_id, \
             state, password_hash, failed_password_attempts, created_at, updated_at) ",
        );
        qb.push_values(chunk.iter().enumerate(), |mut b, (i, id)| {
            let n = chunk_no * USER_BATCH + i;
            let login = format!("{}-{n}@bench.example", spec.prefix);
            b.push_bind(id.clone())
                .push_bind(login.clone())
                .push_bind(login.to_lowercase())
                .push_bind(format!("Bench user {n}"))
                .push_bind(spec.instance_id.to_owned())
                .push_bind("active")
                .push_bind(spec.password_hash.map(str::to_owned))
                .push_bind(0i64)
                .push_bind(now_micros - 86_400_000_000)
                .push_bind(now_micros - 86_400_000_000);
        });
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;

    // Sessions: user i % users, creation dates one millisecond apart up to now, so a user's
    // sessions are spread over the whole table.
    let step = (spec.sessions / spec.sample.max(1)).max(1);
    let mut sample = Vec::with_capacity(spec.sample.min(spec.sessions));
    const SESSION_BATCH: usize = 2000; // 15 columns: 30,000 variables (limit 32,766)
    const TX_ROWS: usize = 100_000;
    let expiration = now_micros + spec.lifetime_secs * 1_000_000;
    let lifetime = format!("{}s", spec.lifetime_secs);
    let mut done = 0usize;
    while done < spec.sessions {
        let mut tx = conn.begin().await?;
        let tx_end = (done + TX_ROWS).min(spec.sessions);
        while done < tx_end {
            let batch_end = (done + SESSION_BATCH).min(tx_end);
            let mut rows = Vec::with_capacity(batch_end - done);
            for n in done..batch_end {
                let tok = token(&mut rng);
                let at = now_micros - ((spec.sessions - n) as i64) * 1000;
                let row = Row {
                    // sessiond's own id shape: sorted by creation time.
                    id: sessiond::domain::ordered_id_from(&mut rng, at / 1000),
                    user: n % user_count,
                    hash: Sha256::digest(tok.as_bytes()).to_vec(),
                    at,
                };
                if n % step == 0 && sample.len() < spec.sample {
                    sample.push(SessionRef {
                        id: row.id.clone(),
                        token: tok,
                        user_id: users[row.user].clone(),
                    });
                }
                rows.push(row);
            }
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO sessions (id, user_id, user_verified_at, password_verified_at, \
                 metadata, user_agent, fingerprint_id, expiration, creator, resource_owner, \
                 creation_date, change_date, sequence, token_hash, terminated_at) ",
            );
            qb.push_values(rows.iter(), |mut b, r| {
                b.push_bind(r.id.clone())
                    .push_bind(users[r.user].clone())
                    .push_bind(r.at)
                    .push_bind(None::<i64>)
                    .push_bind("{}")
                    .push_bind("{}")
                    .push_bind(None::<String>)
                    .push_bind(expiration)
                    .push_bind(spec.creator.to_owned())
                    .push_bind(spec.instance_id.to_owned())
                    .push_bind(r.at)
                    .push_bind(r.at)
                    .push_bind(1i64)
                    .push_bind(r.hash.clone())
                    .push_bind(None::<i64>);
            });
            qb.build().execute(&mut *tx).await?;

            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO session_events (session_id, sequence, event_type, payload, \
                 created_at, editor) ",
            );
            qb.push_values(rows.iter(), |mut b, r| {
                let payload = serde_json::json!({
                    "userId": users[r.user],
                    "checks": ["user"],
                    "metadataKeys": [],
                    "lifetime": lifetime,
                    "userAgent": {},
                })
                .to_string();
                b.push_bind(r.id.clone())
                    .push_bind(1i64)
                    .push_bind("session.added")
                    .push_bind(payload)
                    .push_bind(r.at)
                    .push_bind(spec.creator.to_owned());
            });
            qb.build().execute(&mut *tx).await?;
            done = batch_end;
        }
        tx.commit().await?;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut *conn)
        .await?;
    Ok(Seeded {
        sessions: sample,
        users,
        seconds: started.elapsed().as_secs_f64(),
    })
}
