//! Point reads of sessions, grouped into one statement while others are out.
//!
//! A read of one session by id (or by token hash) is the whole store work of a GetSession and
//! the first half of a DeleteSession. Profiled under load on two cores, such a read costs far
//! more around the statement than in it: sessiond's `send` that wakes a backend, the backend's
//! per-statement work (bind, executor start and end, its answer), the wake-up of a request
//! thread by the answer. A quarter of sessiond's CPU alone was the kernel waking the other end
//! of a socket. None of that grows with the number of rows a statement returns.
//!
//! So at most a few (one per core) of these statements are out at once. A read that finds
//! fewer out goes at once, alone: at low load nothing waits and nothing changes. A read that
//! finds them all out is queued, and the next statement to finish takes every queued key
//! (up to [`MAX_KEYS`]) into one `… WHERE s.id = ANY($1)`. Under load the statements, round
//! trips and wake-ups per read fall with the size of the group.
//!
//! What a read sees is unchanged: a read only joins a statement that has not been sent yet,
//! and each statement takes its own snapshot (READ COMMITTED), so every write acknowledged
//! before the read was asked is visible to it, as to a statement of its own. The statements
//! run in tasks of their own: a caller that gives up (its deadline) leaves the others' answer
//! alone. They are spawned on the runtime the store was opened on, the requests' runtime,
//! never on a caller's runtime of lower priority.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sqlx::Postgres;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::direct::Direct;
use super::{classify, session_from_row};
use crate::domain::Session;
use crate::store::StoreError;

/// The most keys one statement asks for; more queued go in the next one.
pub const MAX_KEYS: usize = 256;

type Answer = Result<Option<Session>, StoreError>;
type Waiter<K> = (K, oneshot::Sender<Answer>);

/// Grouped point reads by one key (a session id, a token hash). Clones share one queue.
pub struct Grouped<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Grouped<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K> std::fmt::Debug for Grouped<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouped")
            .field("in_flight", &self.shared.in_flight)
            .finish_non_exhaustive()
    }
}

struct Shared<K> {
    /// The session `SELECT` with `= ANY($1)` on the key's column.
    sql: String,
    key_of: fn(&Session) -> K,
    direct: Arc<Direct>,
    runtime: Option<Handle>,
    in_flight: usize,
    state: Mutex<State<K>>,
}

struct State<K> {
    queued: Vec<Waiter<K>>,
    /// Tasks running statements; each takes the queue again when its statement is done.
    running: usize,
}

impl<K> Grouped<K>
where
    K: Clone + Eq + Hash + Send + 'static,
    Vec<K>: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
{
    /// `sql` selects sessions whose key is in the array `$1`; `key_of` reads the key back off
    /// a session. At most `in_flight` statements are out at once (at least one).
    pub fn new(
        sql: String,
        key_of: fn(&Session) -> K,
        direct: Arc<Direct>,
        in_flight: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                sql,
                key_of,
                direct,
                runtime: Handle::try_current().ok(),
                in_flight: in_flight.max(1),
                state: Mutex::new(State {
                    queued: Vec::new(),
                    running: 0,
                }),
            }),
        }
    }

    /// The session with this key, read alone or with others queued beside it.
    pub async fn read(&self, key: K) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut state = self.shared.state();
            state.queued.push((key, answer));
            let start = state.running < self.shared.in_flight;
            if start {
                state.running += 1;
            }
            start
        };
        if start {
            let shared = self.shared.clone();
            match &self.shared.runtime {
                Some(runtime) => drop(runtime.spawn(shared.run())),
                None => drop(tokio::spawn(shared.run())),
            }
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the session read ended without an answer".into(),
            ))
        })
    }
}

impl<K> Shared<K> {
    fn state(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K> Shared<K>
where
    K: Clone + Eq + Hash + Send + 'static,
    Vec<K>: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
{
    /// Runs statements for the queue until it is empty.
    async fn run(self: Arc<Self>) {
        let mut running = Running {
            shared: &self,
            done: false,
        };
        loop {
            let group = {
                let mut state = self.state();
                if state.queued.is_empty() {
                    // Under the lock: a read queued after this sees the task gone and starts one.
                    state.running -= 1;
                    running.done = true;
                    return;
                }
                let mut group = std::mem::take(&mut state.queued);
                if group.len() > MAX_KEYS {
                    // The first MAX_KEYS go now; the rest wait for the next statement.
                    state.queued = group.split_off(MAX_KEYS);
                }
                group
            };
            self.answer(group).await;
        }
    }

    /// One statement for every key of `group`; each waiter gets its own session (or none).
    async fn answer(&self, group: Vec<Waiter<K>>) {
        let mut wanted: HashMap<K, usize> = HashMap::with_capacity(group.len());
        for (key, _) in &group {
            *wanted.entry(key.clone()).or_default() += 1;
        }
        let keys: Vec<K> = wanted.keys().cloned().collect();
        match self.select(keys).await {
            Ok(sessions) => {
                let mut found: HashMap<K, Session> = sessions
                    .into_iter()
                    .map(|s| ((self.key_of)(&s), s))
                    .collect();
                for (key, answer) in group {
                    let left = wanted.get_mut(&key).map_or(0, |n| {
                        *n -= 1;
                        *n
                    });
                    let session = if left == 0 {
                        found.remove(&key)
                    } else {
                        found.get(&key).cloned()
                    };
                    let _ = answer.send(Ok(session));
                }
            }
            Err(e) => {
                for (_, answer) in group {
                    let _ = answer.send(Err(copy_of(&e)));
                }
            }
        }
    }

    async fn select(&self, keys: Vec<K>) -> Result<Vec<Session>, StoreError> {
        let mut lease = self.direct.lease().await.map_err(classify)?;
        let rows = sqlx::query(&self.sql)
            .bind(keys)
            .fetch_all(lease.conn())
            .await;
        let rows = lease.settle(rows).map_err(classify)?;
        rows.iter().map(session_from_row).collect()
    }
}

/// A running task's place in the count, given back if the task ends without emptying the
/// queue (a panic): the reads queued then are answered with an error rather than left waiting.
struct Running<'a, K> {
    shared: &'a Shared<K>,
    done: bool,
}

impl<K> Drop for Running<'_, K> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.shared.state();
            state.running -= 1;
            // Dropping the senders answers their reads with "ended without an answer".
            state.queued.clear();
        }
    }
}

/// The same failure for each read of a group (the error's source is kept as text).
fn copy_of(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Duplicate(what) => StoreError::Duplicate(what),
        StoreError::Unavailable(source) => StoreError::Unavailable(source.to_string().into()),
        StoreError::Internal(source) => StoreError::Internal(source.to_string().into()),
    }
}
