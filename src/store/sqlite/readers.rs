//! Read connections, and the background checkpointer.
//!
//! In WAL mode a reader never waits for the writer, and a point lookup by primary key or
//! token hash takes microseconds. Such lookups run right where they are asked for, on the
//! caller's thread, with a connection from a small idle list: handing them to another thread
//! would cost several times the lookup. Queries whose cost grows with the data (lists, counts)
//! run on the blocking pool instead, a bounded number at a time, so they never hold up the
//! async workers. Nothing here writes data: the checkpointer only copies the log back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::open::{BUSY_TIMEOUT, classify, connect};
use crate::store::StoreError;

/// Page cache of each read connection, in KiB (SQLite's negative `cache_size`).
pub const READER_CACHE_KIB: i64 = 4 * 1024;
/// How often the checkpointer copies the write-ahead log into the database file. Each round
/// is a burst of page copies and a sync of the log that competes with the requests for the
/// cores; short rounds keep the bursts small: under deletes at half their maximum rate the p99
/// was 2.9–3.8 ms with 5 ms against 3.8–7.9 ms with 10 ms and 6.4–6.8 ms with 50 ms, at the
/// same throughput and CPU per delete (bench/ANALYSIS.md, "The checkpointer's period and the
/// write tail").
const CHECKPOINT_EVERY: Duration = Duration::from_millis(5);

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    open: AtomicU32,
    /// Bounds the queries that run on the blocking pool.
    blocking: Arc<Semaphore>,
}

impl Readers {
    pub fn new(path: &Path, max_blocking: usize) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            max_idle: max_blocking + 4,
            open: AtomicU32::new(0),
            blocking: Arc::new(Semaphore::new(max_blocking.max(1))),
        }
    }

    /// Runs a short read on this thread.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match self.lock().pop() {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let out = work(&conn);
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
        } else {
            drop(idle);
            drop(conn);
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        out
    }

    /// Runs a read whose cost grows with the data on the blocking pool.
    pub async fn read_blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .blocking
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite readers are closed".into()))?;
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.read(work))
            .await
            .map_err(|_| StoreError::Internal("a store read panicked".into()))?
    }

    /// Connections open now, and how many of them are idle.
    pub fn stats(&self) -> (u32, usize) {
        (self.open.load(Ordering::Relaxed), self.lock().len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = open_reader(&self.path)?;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }
}

/// Opens a read-only connection with the readers' settings.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
        .map_err(classify)?;
    conn.pragma_update(None, "temp_store", "memory")
        .map_err(classify)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Copies the write-ahead log back into the database file every [`CHECKPOINT_EVERY`] on a
/// thread of its own, so the writer's commits seldom pay for it. Stops when `stop`'s sender
/// is dropped.
///
/// Under a steady stream of writes a background checkpoint never catches up with the end of
/// the log (the writer appends while it copies), so SQLite neither syncs the database nor lets
/// the log start over; the log grows to the writer's auto-checkpoint size, and the writer's
/// own checkpoint there (sync the log, copy the rest, sync the database) and the first commit
/// after it (which syncs the restarted log's header) are the only disk waits on a request's
/// path. Two things keep them short and rare:
///
/// - after a round that copied pages, at most every [`SYNC_EVERY`], the checkpointer syncs
///   the database file itself, so when the writer's checkpoint syncs it there is little left
///   to write (before, everything copied since the last restart was flushed there, tens of
///   milliseconds behind the checkpointer's own writes in the disk's queue). Syncing after
///   every round wrote the pages that every write touches again each time: 22 % more bytes
///   per delete against 12 %, for no shorter tail;
/// - the log restarts every `WAL_PAGES_BEFORE_RESTART` pages (`open.rs`), so at thousands of
///   writes per second the writer waits a few times a minute rather than every second.
///
/// A reader never searches the log's copied part, so the larger log costs reads nothing. Once
/// no write has come for [`QUIET_BEFORE_TRUNCATE`], the checkpointer empties the log file, so
/// an idle server keeps no large log on disk.
pub fn start_checkpointer(path: &Path, stop: mpsc::Receiver<()>) -> Result<(), StoreError> {
    let mut checkpointer = Checkpointer::open(path)?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = checkpointer.round(Instant::now()) {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; will retry");
                }
            }
        })
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
    Ok(())
}

/// How often, at most, a round syncs the pages copied back.
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// How long the log must stay unchanged (every page copied back) before it is emptied.
const QUIET_BEFORE_TRUNCATE: Duration = Duration::from_secs(1);

/// What a checkpoint round did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// Nothing new in the log.
    Idle,
    /// Pages copied back.
    Copied,
    /// The log was quiet and fully copied, and is now empty.
    Truncated,
}

struct Checkpointer {
    conn: Connection,
    /// The database file, for syncing what a round copied.
    database: std::fs::File,
    /// The log's frames and the frames copied, as of the last round.
    last: (i64, i64),
    /// `PRAGMA data_version` as of the last round.
    version: i64,
    /// Since when the log has not changed.
    quiet_since: Instant,
    /// When the database file was last synced by a round.
    synced: Option<Instant>,
}

impl Checkpointer {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // No waiting for locks: a passive checkpoint takes none that it waits for, and the
        // truncation must not hold the write lock while a long read finishes; a busy round is
        // simply tried again.
        conn.busy_timeout(Duration::ZERO).map_err(classify)?;
        let database = std::fs::File::open(path).map_err(|e| StoreError::Internal(Box::new(e)))?;
        Ok(Self {
            conn,
            database,
            last: (0, 0),
            version: 0,
            quiet_since: Instant::now(),
            synced: None,
        })
    }

    fn round(&mut self, now: Instant) -> Result<Round, StoreError> {
        let (_, log, copied) = self.checkpoint("PASSIVE")?;
        // The log's counts alone can repeat once it has started over; the data version moves
        // with every commit of another connection.
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .map_err(classify)?;
        if (log, copied) != self.last || version != self.version {
            self.last = (log, copied);
            self.version = version;
            self.quiet_since = now;
            if copied == 0 {
                return Ok(Round::Idle);
            }
            // Extra to what SQLite syncs itself (the database whenever a checkpoint reaches
            // the log's end, always before the log starts over): durability does not rest on
            // it, only how much the writer's checkpoint finds left to flush.
            if self
                .synced
                .is_none_or(|at| now.duration_since(at) >= SYNC_EVERY)
            {
                self.synced = Some(now);
                self.database
                    .sync_data()
                    .map_err(|e| StoreError::Internal(Box::new(e)))?;
            }
            return Ok(Round::Copied);
        }
        if log > 0 && copied == log && now.duration_since(self.quiet_since) >= QUIET_BEFORE_TRUNCATE
        {
            // Takes the write lock: a write arriving now waits for an empty log's truncation.
            let (busy, log, copied) = self.checkpoint("TRUNCATE")?;
            self.last = (log, copied);
            if !busy {
                return Ok(Round::Truncated);
            }
        }
        Ok(Round::Idle)
    }

    /// Runs one checkpoint: whether a lock held it off, the log's frames and how many of
    /// them are copied back.
    fn checkpoint(&self, mode: &str) -> Result<(bool, i64, i64), StoreError> {
        self.conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
                Ok((row.get::<_, i64>(0)? != 0, row.get(1)?, row.get(2)?))
            })
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_len(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    #[test]
    fn a_round_copies_the_log_back_and_a_quiet_log_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch("CREATE TABLE t (v BLOB); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        // A reader whose snapshot includes the log's last frame holds the truncation off.
        let reader = Connection::open(&path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .unwrap();
        let mut checkpointer = Checkpointer::open(&path).unwrap();
        let t0 = Instant::now();

        assert_eq!(checkpointer.round(t0).unwrap(), Round::Copied);
        let (log, copied) = checkpointer.last;
        assert!(log > 0 && copied == log, "{log} {copied}");
        assert!(wal_len(&path) > 0);
        // Unchanged, but not yet quiet for long enough.
        assert_eq!(
            checkpointer.round(t0 + Duration::from_millis(500)).unwrap(),
            Round::Idle
        );
        assert!(wal_len(&path) > 0);
        assert_eq!(
            checkpointer.round(t0 + QUIET_BEFORE_TRUNCATE).unwrap(),
            Round::Idle
        );
        assert!(wal_len(&path) > 0);
        // Tried again once the reader is done.
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(
            checkpointer
                .round(t0 + QUIET_BEFORE_TRUNCATE + CHECKPOINT_EVERY)
                .unwrap(),
            Round::Truncated
        );
        assert_eq!(wal_len(&path), 0);
        // Nothing left to do until the next write.
        assert_eq!(
            checkpointer.round(t0 + 3 * QUIET_BEFORE_TRUNCATE).unwrap(),
            Round::Idle
        );
        let t1 = t0 + 4 * QUIET_BEFORE_TRUNCATE;
        writer.execute("INSERT INTO t VALUES (x'00')", []).unwrap();
        assert_eq!(checkpointer.round(t1).unwrap(), Round::Copied);
        assert_eq!(checkpointer.synced, Some(t1));
        // Copied again, but synced at most every SYNC_EVERY.
        writer.execute("INSERT INTO t VALUES (x'01')", []).unwrap();
        assert_eq!(
            checkpointer.round(t1 + SYNC_EVERY / 2).unwrap(),
            Round::Copied
        );
        assert_eq!(checkpointer.synced, Some(t1));
        let rows: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
    }
}
