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
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::open::{BUSY_TIMEOUT, classify};
use crate::store::StoreError;

/// Page cache of each read connection, in KiB (SQLite's negative `cache_size`).
const READER_CACHE_KIB: i64 = 4 * 1024;
/// How often the checkpointer copies the write-ahead log into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);

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
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(classify)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
            .map_err(classify)?;
        conn.pragma_update(None, "temp_store", "memory")
            .map_err(classify)?;
        conn.set_prepared_statement_cache_capacity(32);
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }
}

/// Copies the write-ahead log back into the database file every [`CHECKPOINT_EVERY`] on a
/// thread of its own, so the writer's commits seldom pay for it: when the log reaches the
/// writer's auto-checkpoint size, nearly all of it has been copied already and the writer's
/// own checkpoint (which lets the log start over) is short. Stops when `stop`'s sender is
/// dropped.
pub fn start_checkpointer(path: &Path, stop: mpsc::Receiver<()>) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; will retry");
                }
            }
        })
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
    Ok(())
}
