//! Retention: terminated and long-expired sessions are kept (with their event log) until an
//! explicit prune deletes them, in batches so no transaction grows large and replicas keep
//! serving meanwhile.

use std::time::Duration;

use super::Core;
use crate::domain::{Error, Time};

/// What to delete.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Delete sessions terminated longer ago than this.
    pub terminated: Duration,
    /// Delete sessions expired longer ago than this.
    pub expired: Duration,
    pub batch: u32,
}

/// Running totals of a prune.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneTotals {
    pub sessions: u64,
    pub events: u64,
    pub batches: u64,
}

fn before(now: Time, age: Duration) -> Time {
    let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
    Time::from_unix_micros(now.unix_micros().saturating_sub(micros))
}

impl Core {
    /// Deletes batch after batch until nothing old is left, calling `progress` after each.
    pub async fn prune(
        &self,
        retention: Retention,
        mut progress: impl FnMut(&PruneTotals),
    ) -> Result<PruneTotals, Error> {
        let now = self.clock.now();
        let (terminated_before, expired_before) = (
            before(now, retention.terminated),
            before(now, retention.expired),
        );
        let mut totals = PruneTotals::default();
        loop {
            let batch = self
                .store
                .prune(terminated_before, expired_before, retention.batch.max(1))
                .await?;
            if batch.sessions == 0 {
                return Ok(totals);
            }
            totals.sessions += batch.sessions;
            totals.events += batch.events;
            totals.batches += 1;
            progress(&totals);
            tokio::task::yield_now().await;
        }
    }
}
