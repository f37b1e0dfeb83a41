//! The one writing connection, on a thread of its own, with group commit.
//!
//! SQLite lets one connection write at a time, and a commit costs far more than the few
//! statements of a typical change. So every change is a job sent to one thread, which takes
//! whatever jobs are waiting (up to [`MAX_BATCH`]) and runs them in a single transaction,
//! each inside its own savepoint: a job that fails is rolled back alone, the others commit
//! together. Callers hear back only after the commit, so an acknowledged change is as durable
//! as the `synchronous` setting makes any commit. Under light load a batch is one job and
//! nothing waits for company; under heavy load the batches grow by themselves.
//!
//! The thread runs the statements directly on the connection: no per-statement hand-off
//! between threads, which would cost more than the statements. It knows no table: the jobs
//! bring their statements.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::open::classify;
use crate::store::StoreError;

/// Most jobs committed together.
const MAX_BATCH: usize = 256;
/// Jobs waiting for the writer before callers wait to queue (back-pressure).
const QUEUE: usize = 4096;

/// A change to run on the writer's connection.
trait Job: Send {
    /// Runs the change; true if it succeeded (and its savepoint is to be kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Reports the outcome: the job's own result if the transaction committed, else
    /// `commit_failed`.
    fn finish(self: Box<Self>, commit_failed: Option<&StoreError>);
}

struct Call<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(StoreError::Internal(
                "a store write panicked; it was rolled back".into(),
            ))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit_failed: Option<&StoreError>) {
        let result = match (self.result, commit_failed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Some(e)) | (None, Some(e)) => Err(copy_error(e)),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(StoreError::Internal("a store write never ran".into())),
        };
        // The caller may have gone away (cancelled request); the change stands regardless.
        let _ = self.reply.send(result);
    }
}

fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Duplicate(what) => StoreError::Duplicate(what),
        StoreError::Unavailable(source) => StoreError::Unavailable(source.to_string().into()),
        StoreError::Internal(source) => StoreError::Internal(source.to_string().into()),
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

/// Handle to the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    busy: Arc<AtomicBool>,
}

impl Writer {
    pub fn start(conn: Connection) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let busy = Arc::new(AtomicBool::new(false));
        let flag = busy.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, &flag))?;
        Ok(Self { jobs, busy })
    }

    /// Runs `work` in the next group commit and returns its result once committed.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Call {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether a batch is being written right now.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// Jobs waiting for the next batch.
    pub fn queued(&self) -> usize {
        QUEUE - self.jobs.capacity()
    }
}

fn run(conn: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>, busy: &AtomicBool) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        busy.store(true, Ordering::Relaxed);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let failed = commit_batch(&conn, &mut batch).err();
        for job in batch.drain(..) {
            job.finish(failed.as_ref());
        }
        busy.store(false, Ordering::Relaxed);
    }
}

/// One transaction around the whole batch, one savepoint around each job.
fn commit_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    exec(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        let step = exec(conn, "SAVEPOINT job").and_then(|()| {
            if job.run(conn) {
                exec(conn, "RELEASE job")
            } else {
                exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
            }
        });
        if let Err(e) = step {
            let _ = exec(conn, "ROLLBACK");
            return Err(e);
        }
    }
    exec(conn, "COMMIT").inspect_err(|_| {
        let _ = exec(conn, "ROLLBACK");
    })
}

fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        // Before SQLite starts in this process, as the store does (other tests open stores).
        super::super::page_cache::install();
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER PRIMARY KEY);")
            .unwrap();
        (Writer::start(conn).unwrap(), dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_or_panicking_job_is_rolled_back_alone() {
        let (writer, dir) = writer();
        let mut calls = Vec::new();
        for n in 0..200i64 {
            let writer = writer.clone();
            calls.push(tokio::spawn(async move {
                writer
                    .write(move |conn| {
                        conn.execute("INSERT INTO t (n) VALUES (?)", [n])
                            .map_err(classify)?;
                        match n % 4 {
                            1 => Err(StoreError::Conflict),
                            3 if n == 103 => panic!("job {n} panics"),
                            _ => Ok(n),
                        }
                    })
                    .await
            }));
        }
        let mut ok = Vec::new();
        for call in calls {
            match call.await.unwrap() {
                Ok(n) => ok.push(n),
                Err(StoreError::Conflict) => {}
                Err(StoreError::Internal(e)) => assert!(e.to_string().contains("panicked")),
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(ok.len(), 149, "every job but the 50 failures and the panic");
        // The writer survived the panic, and exactly the successful jobs' rows are stored.
        let count = writer
            .write(|conn| {
                conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(classify)
            })
            .await
            .unwrap();
        assert_eq!(count, 149);
        let reader = Connection::open(dir.path().join("w.db")).unwrap();
        let stored: Vec<i64> = reader
            .prepare("SELECT n FROM t ORDER BY n")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        ok.sort_unstable();
        assert_eq!(stored, ok);
    }

    #[tokio::test]
    async fn a_caller_hears_back_only_after_the_commit() {
        let (writer, dir) = writer();
        writer
            .write(|conn| {
                conn.execute("INSERT INTO t (n) VALUES (7)", [])
                    .map_err(classify)
            })
            .await
            .unwrap();
        // Another connection sees the row as soon as the write returned.
        let other = Connection::open(dir.path().join("w.db")).unwrap();
        let n: i64 = other
            .query_row("SELECT n FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 7);
    }
}
