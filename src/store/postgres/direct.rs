//! Connections kept beside sqlx's pool for the statements that are a whole request's work on
//! their own: the point reads and the one-statement session writes.
//!
//! sqlx's pool sends a `Sync` and waits for PostgreSQL's answer every time a connection is
//! returned to it, so a point read through the pool costs two round trips. Here a connection
//! whose statement ran to its end (its last answer read) goes straight back to the idle list,
//! and a point read is one round trip.
//!
//! What makes skipping the check safe: a lease only returns its connection when the statement
//! finished with a result or a database error (after which PostgreSQL's protocol is in step:
//! the driver reads the outstanding `ReadyForQuery` before its next statement). A lease dropped
//! mid-statement (its caller's future cancelled, e.g. by `Bounded`'s timeout) or ended by an
//! I/O or protocol error closes its connection instead, so no half-read answer reaches the next
//! caller; the server ends that backend and rolls back what it had not committed.
//!
//! Not here: transactions. A transaction dropped without commit leaves a `ROLLBACK` queued on
//! its connection, which only the next use would send; sqlx's pool sends it on return, so
//! transactions stay there.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a connection may sit idle and still be used without a liveness check first: one
/// idle longer may have been closed by the server meanwhile.
pub(super) const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A fixed number of connections, made on demand and remade after a failure.
#[derive(Debug)]
pub struct Direct {
    options: PgConnectOptions,
    /// Connections not in use, with when each was last used (most recent last).
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    /// One permit per connection that may exist.
    permits: Semaphore,
    size: u32,
    acquire_timeout: Duration,
}

impl Direct {
    pub fn new(options: PgConnectOptions, size: u32, acquire_timeout: Duration) -> Self {
        let size = size.max(1);
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size as usize),
            size,
            acquire_timeout,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection for one statement: an idle one (checked first if it idled long), or a
    /// new one while fewer than the size exist. Waits at most the acquire timeout, then fails
    /// as sqlx's pool does (`PoolTimedOut`).
    pub async fn lease(&self) -> Result<Lease<'_>, sqlx::Error> {
        tokio::time::timeout(self.acquire_timeout, self.lease_now())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    async fn lease_now(&self) -> Result<Lease<'_>, sqlx::Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let found = self.idle().pop();
        let conn = match found {
            Some((mut conn, used)) if used.elapsed() >= IDLE_CHECK => match conn.ping().await {
                Ok(()) => conn,
                Err(_) => self.options.connect().await?,
            },
            Some((conn, _)) => conn,
            None => self.options.connect().await?,
        };
        Ok(Lease {
            conn,
            direct: self,
            permit,
        })
    }

    /// Connections made and not in use.
    pub fn counts(&self) -> (u32, usize) {
        let idle = self.idle().len();
        let busy = self.size as usize - self.permits.available_permits();
        (u32::try_from(idle + busy).unwrap_or(u32::MAX), idle)
    }
}

/// One connection on loan. Returned to the idle list by [`Lease::settle`] when its statement
/// finished; closed if the lease is dropped without it.
pub struct Lease<'a> {
    // Dropped in this order: the connection (closing it) before the permit is free again.
    conn: PgConnection,
    direct: &'a Direct,
    permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection, for one statement.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Ends the loan with the statement's result: the connection is kept for the next caller
    /// if the statement finished (with rows or a database error), closed otherwise.
    pub fn settle<T>(self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if matches!(result, Ok(_) | Err(sqlx::Error::Database(_))) {
            self.release();
        }
        result
    }

    /// Ends the loan of a connection whose statement finished: kept for the next caller.
    pub fn release(self) {
        let Lease {
            conn,
            direct,
            permit,
        } = self;
        direct.idle().push((conn, Instant::now()));
        drop(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_times_out_as_unavailable_when_every_connection_is_out() {
        let options: PgConnectOptions = "postgres://nobody@127.0.0.1:1/none"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let direct = Direct::new(options, 1, Duration::from_millis(50));
        // The one permit is taken by hand: no connection is needed to see the wait fail.
        let held = direct.permits.acquire().await;
        assert!(held.is_ok());
        assert!(matches!(
            direct.lease().await.err(),
            Some(sqlx::Error::PoolTimedOut)
        ));
    }
}
