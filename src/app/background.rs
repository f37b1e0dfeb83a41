//! Work the application does beside answering requests. [`Background`] owns it: the
//! application starts each task when it starts serving and stops them all when it stops, so
//! tests and production run the same tasks. Most tasks are simply dropped at their next
//! await; a task with something to finish (the signals workers store how far each receiver
//! got) is handed the stop signal instead and given [`STOP_GRACE`] to end by itself before it
//! is aborted. The SQLite checkpointer is not here: the store owns that thread and stops it
//! when the store is dropped.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::core::{Core, Retention};
use crate::faces;

/// How long stopping waits for the tasks that finish their work on the stop signal.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The running background tasks and the signal that stops them.
pub struct Background {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
        }
    }
}

impl Background {
    /// Runs `work` until [`Background::stop`]; `name` labels its log lines.
    pub fn spawn(&mut self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let mut stop = self.stop.subscribe();
        self.tasks.spawn(async move {
            tokio::select! {
                () = work => tracing::warn!(task = name, "background task ended"),
                _ = stop.wait_for(|stopped| *stopped) => {
                    tracing::debug!(task = name, "background task stopped");
                }
            }
        });
    }

    /// Runs the task `work` makes of the stop signal: unlike [`Background::spawn`]'s, it is
    /// not dropped on [`Background::stop`] but ends by itself once the signal turns true (or
    /// is aborted after [`STOP_GRACE`]).
    pub fn spawn_with_stop<F>(
        &mut self,
        name: &'static str,
        work: impl FnOnce(watch::Receiver<bool>) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let stopping = self.stop.subscribe();
        let work = work(self.stop.subscribe());
        self.tasks.spawn(async move {
            work.await;
            if *stopping.borrow() {
                tracing::debug!(task = name, "background task stopped");
            } else {
                tracing::warn!(task = name, "background task ended");
            }
        });
    }

    /// Stops every task and waits until all have ended: a task of [`Background::spawn`] at
    /// its next await (a prune batch in progress is rolled back), one of
    /// [`Background::spawn_with_stop`] when it has finished, or after [`STOP_GRACE`].
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, all).await.is_err() {
            tracing::warn!(
                grace = ?STOP_GRACE,
                "background tasks did not stop in time; aborting them"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

/// Prunes on a schedule while serving; failures are logged and retried next time.
pub async fn prune_periodically(core: Core, retention: Retention, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match core.prune(retention, |_| {}).await {
            Ok(totals) if totals.sessions > 0 => {
                tracing::info!(
                    sessions = totals.sessions,
                    events = totals.events,
                    "pruned old sessions"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = ?error, "scheduled prune failed"),
        }
    }
}

/// Keeps gRPC health in step with the store: NOT_SERVING while it is unreachable or not
/// migrated, SERVING again once it is back.
pub async fn watch_store_health(core: Core, health: tonic_health::server::HealthReporter) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let mut last = true;
    loop {
        ticker.tick().await;
        let store = core.store();
        let ready = store.ping().await.is_ok() && store.schema_ready().await.unwrap_or(false);
        if ready != last {
            let status = if ready {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            for name in faces::grpc::service_names() {
                health.set_service_status(name, status).await;
            }
            tracing::warn!(ready, "store readiness changed");
            last = ready;
        }
    }
}
