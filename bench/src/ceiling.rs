//! The SQLite storage ceiling: what the store itself can do, with nothing of sessiond around it.
//!
//! One thread (one core) runs, with rusqlite, exactly the statements sessiond's SQLite store
//! runs for an operation: the point reads on a read-only connection (a Delete's session read
//! and a Create's second read of the user on the writing connection, inside the job, as the
//! store's `edit_session` and `insert_session` do), and the writes on a writing connection with the writer's pragmas, grouped in transactions of `batch` jobs, each
//! job in its own savepoint (`BEGIN IMMEDIATE`, `SAVEPOINT job` … `RELEASE job`, `COMMIT`), as
//! `src/store/sqlite/writer.rs` does. No network, no runtime, no core logic. The statement
//! texts are those the store builds from its column lists (`src/store/columns.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rusqlite::types::Value;
use rusqlite::{Connection, params};
use serde::Serialize;
use sessiond::store::Synchronous;
use sessiond::store::sqlite_tuning::{open_reader, open_writer};
use sha2::{Digest, Sha256};

use crate::client::SessionRef;

/// `SELECT` of a session with its user's names joined in (`sessions::SELECT`), by id.
pub const SESSION_BY_ID: &str = "SELECT s.id, s.user_id, s.user_verified_at, \
     s.password_verified_at, s.metadata, s.user_agent, s.fingerprint_id, s.expiration, \
     s.creator, s.resource_owner, s.creation_date, s.change_date, s.sequence, s.token_hash, \
     s.terminated_at, s.totp_verified_at, s.recovery_code_verified_at, \
     s.webauthn_verified_at, s.webauthn_user_verified, s.otp_sms_verified_at, \
     s.otp_email_verified_at, u.login_name, u.display_name, u.organization_id \
     FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ?";
/// Columns of `SESSION_BY_ID`, and the positions the delete binds from it.
const SESSION_COLUMNS: usize = 24;
const SEQUENCE: usize = 12;
const USER_ID: usize = 1;
const TOKEN_HASH: usize = 13;
const USER_COLUMNS: &str = "SELECT id, login_name, login_name_folded, display_name, \
     organization_id, state, password_hash, failed_password_attempts, created_at, updated_at, \
     version FROM users";
/// A termination in one statement (`Writes::update`, its single-statement form with
/// `terminated_at` given): every changing column but the indexed ones is set, the user and
/// token hash must still be the ones read and `terminated_at` NULL, so only the row and the two
/// live-session index entries change.
const UPDATE_TERMINATED: &str = "UPDATE sessions SET user_verified_at = ?1, \
     password_verified_at = ?2, metadata = ?3, user_agent = ?4, fingerprint_id = ?5, \
     expiration = ?6, change_date = ?7, sequence = ?8, terminated_at = ?9, \
     totp_verified_at = ?10, recovery_code_verified_at = ?11, webauthn_verified_at = ?12, \
     webauthn_user_verified = ?13, otp_sms_verified_at = ?14, otp_email_verified_at = ?15 \
     WHERE id = ?16 AND sequence = ?17 AND user_id IS ?18 AND token_hash IS ?19 \
     AND terminated_at IS NULL";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, user_verified_at, \
     password_verified_at, metadata, user_agent, fingerprint_id, expiration, creator, \
     resource_owner, creation_date, change_date, sequence, token_hash, terminated_at, \
     totp_verified_at, recovery_code_verified_at, webauthn_verified_at, \
     webauthn_user_verified, otp_sms_verified_at, otp_email_verified_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21)";
const INSERT_EVENT: &str = "INSERT INTO session_events (session_id, sequence, event_type, \
     payload, created_at, editor, user_id, resource_owner) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// One timed run of the bare loop.
#[derive(Clone, Debug, Serialize)]
pub struct CeilingRound {
    pub batch: usize,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    /// CPU of this process per operation (the loop is all it runs meanwhile).
    pub cpu_us_per_op: f64,
    /// Cores' worth of CPU other processes used meanwhile.
    pub other_cores: f64,
    /// The delete pool ran out before the time did.
    pub exhausted: bool,
}

pub struct Ceiling {
    writer: Connection,
    reader: Connection,
    /// Next unused session of the delete pool (this copy of the data has them all live).
    cursor: usize,
    rng: rand::rngs::StdRng,
    /// Ids of the sessions the loop created.
    created: std::collections::HashSet<String>,
}

impl Ceiling {
    /// Opens `db` as sessiond's SQLite store opens it: one writing and one reading connection.
    pub fn open(db: &Path) -> anyhow::Result<Self> {
        use rand::SeedableRng;
        // The store's own opening: its VFS, pragmas and caches.
        let writer = open_writer(db, Synchronous::Normal)?;
        let reader = open_reader(db)?;
        Ok(Self {
            writer,
            reader,
            cursor: 0,
            rng: rand::rngs::StdRng::from_entropy(),
            created: std::collections::HashSet::new(),
        })
    }

    fn exec(&self, sql: &str) -> anyhow::Result<()> {
        self.writer.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    /// One group commit of `jobs`, each in its own savepoint.
    fn commit<T>(
        &self,
        jobs: &[T],
        mut job: impl FnMut(&Connection, &T) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.exec("BEGIN IMMEDIATE")?;
        for j in jobs {
            self.exec("SAVEPOINT job")?;
            job(&self.writer, j)?;
            self.exec("RELEASE job")?;
        }
        self.exec("COMMIT")
    }

    /// DeleteSession: in the group commit, the session read by id on the writer's connection,
    /// the termination in one statement and the `session.terminated` event.
    fn delete_batch(&mut self, pool: &[SessionRef], batch: usize) -> anyhow::Result<usize> {
        let end = (self.cursor + batch).min(pool.len());
        let jobs = &pool[self.cursor..end];
        self.cursor = end;
        let now = crate::now_micros();
        self.commit(jobs, |conn, s| {
            let row = read_session(conn, &s.id)?;
            let Value::Integer(sequence) = row[SEQUENCE] else {
                anyhow::bail!("session {} has no sequence", s.id);
            };
            let changed = conn.prepare_cached(UPDATE_TERMINATED)?.execute(params![
                row[2],
                row[3],
                row[4],
                row[5],
                row[6],
                row[7],
                now,
                sequence + 1,
                now,
                row[15],
                row[16],
                row[17],
                row[18],
                row[19],
                row[20],
                s.id,
                sequence,
                row[USER_ID],
                row[TOKEN_HASH]
            ])?;
            if changed != 1 {
                anyhow::bail!("session {} changed under the loop", s.id);
            }
            conn.prepare_cached(INSERT_EVENT)?.execute(params![
                s.id,
                sequence + 1,
                "session.terminated",
                r#"{"reason":"deleted"}"#,
                now,
                "bench",
                s.user_id,
                "sessiond"
            ])?;
            Ok(())
        })?;
        Ok(jobs.len())
    }

    /// CreateSession with a user check: the user by login name; in the group commit the
    /// session row, its `session.added` event and the user again by id (`insert_session`).
    fn create_batch(&mut self, logins: &[String], batch: usize) -> anyhow::Result<usize> {
        let now = crate::now_micros();
        let mut jobs = Vec::with_capacity(batch);
        for k in 0..batch {
            let login = &logins[(self.created.len() + k) % logins.len()];
            let user = read_user(&self.reader, "login_name_folded", &login.to_lowercase())?;
            let mut bytes = [0u8; 32];
            self.rng.fill_bytes(&mut bytes);
            let token = format!("sdst_{}", URL_SAFE_NO_PAD.encode(bytes));
            // sessiond draws again when a new id collides (same millisecond, same random low
            // bits); the loop, at many ids per millisecond, avoids the collision up front.
            let mut id = sessiond::domain::ordered_id_from(&mut self.rng, now / 1000);
            while !self.created.insert(id.clone()) {
                id = sessiond::domain::ordered_id_from(&mut self.rng, now / 1000);
            }
            let payload = serde_json::json!({
                "userId": user,
                "checks": ["user"],
                "metadataKeys": [],
                "lifetime": null,
                "userAgent": {},
            })
            .to_string();
            jobs.push((id, user, Sha256::digest(token.as_bytes()).to_vec(), payload));
        }
        self.commit(&jobs, |conn, (id, user, hash, payload)| {
            conn.prepare_cached(INSERT_SESSION)?.execute(params![
                id,
                user,
                now,
                None::<i64>,
                "{}",
                "{}",
                None::<String>,
                None::<i64>,
                "bench",
                "sessiond",
                now,
                now,
                1i64,
                hash,
                None::<i64>,
                None::<i64>,
                None::<i64>,
                None::<i64>,
                None::<i64>,
                None::<i64>,
                None::<i64>
            ])?;
            conn.prepare_cached(INSERT_EVENT)?.execute(params![
                id,
                1i64,
                "session.added",
                payload,
                now,
                "bench",
                user,
                "sessiond"
            ])?;
            read_user(conn, "id", user)?;
            Ok(())
        })?;
        Ok(jobs.len())
    }

    /// Runs `op` ("delete", "create" or "get") for `seconds` in batches of `batch`.
    pub fn run(
        &mut self,
        op: &str,
        batch: usize,
        seconds: f64,
        reads: &[SessionRef],
        deletes: &[SessionRef],
        logins: &[String],
    ) -> anyhow::Result<CeilingRound> {
        let batch = batch.max(1);
        let pid = std::process::id();
        let (cpu0, jiffies0) = (
            crate::procfs::cpu_seconds(pid),
            crate::procfs::machine_jiffies(),
        );
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(seconds);
        let mut ops = 0u64;
        let mut exhausted = false;
        let mut k = 0usize;
        while Instant::now() < deadline {
            let done = match op {
                "delete" => self.delete_batch(deletes, batch)?,
                "create" => self.create_batch(logins, batch)?,
                _ => {
                    for _ in 0..batch {
                        read_session(&self.reader, &reads[k % reads.len()].id)?;
                        k += 1;
                    }
                    batch
                }
            };
            ops += done as u64;
            if done < batch {
                exhausted = true;
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = crate::procfs::cpu_seconds(pid) - cpu0;
        let jiffies1 = crate::procfs::machine_jiffies();
        let busy = jiffies1.0.saturating_sub(jiffies0.0) as f64
            / jiffies1.1.saturating_sub(jiffies0.1).max(1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        Ok(CeilingRound {
            batch,
            ops,
            seconds: elapsed,
            ops_per_s: ops as f64 / elapsed.max(1e-9),
            cpu_us_per_op: cpu * 1e6 / ops.max(1) as f64,
            other_cores: (busy * cores - cpu / elapsed.max(1e-9)).max(0.0),
            exhausted,
        })
    }
}

/// A session by id with its columns fetched as the decoder does: on the read connection for a
/// Get, on the writer's inside its transaction for a Delete (`SqliteStore::edit_session`).
fn read_session(conn: &Connection, id: &str) -> anyhow::Result<Vec<Value>> {
    let mut statement = conn.prepare_cached(SESSION_BY_ID)?;
    let mut rows = statement.query([id])?;
    let Some(row) = rows.next()? else {
        anyhow::bail!("session {id} not found");
    };
    (0..SESSION_COLUMNS)
        .map(|i| Ok(Value::from(row.get_ref(i)?)))
        .collect()
}

/// A user by one column with its columns fetched as the decoder does: by login name on the
/// read connection before a create, by id on the writer's inside the create's job.
fn read_user(conn: &Connection, filter: &str, key: &str) -> anyhow::Result<String> {
    let sql = format!("{USER_COLUMNS} WHERE {filter} = ?");
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query([key])?;
    let Some(row) = rows.next()? else {
        anyhow::bail!("user {key} not found");
    };
    for i in 0..11 {
        row.get_ref(i)?;
    }
    Ok(row.get(0)?)
}
