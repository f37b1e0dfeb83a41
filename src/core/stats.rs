//! What the core has done since start, for the metrics endpoint: counted where it happens
//! (after the store confirmed the write), read without locks.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct CoreStats {
    sessions_created: AtomicU64,
    sessions_terminated: AtomicU64,
    password_checks_passed: AtomicU64,
    password_checks_failed: AtomicU64,
}

/// A snapshot of [`CoreStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub sessions_created: u64,
    pub sessions_terminated: u64,
    pub password_checks_passed: u64,
    pub password_checks_failed: u64,
}

impl CoreStats {
    pub(super) fn created(&self) {
        self.sessions_created.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn terminated(&self, n: u64) {
        self.sessions_terminated.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn password_check(&self, passed: bool) {
        let counter = if passed {
            &self.password_checks_passed
        } else {
            &self.password_checks_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            sessions_created: self.sessions_created.load(Ordering::Relaxed),
            sessions_terminated: self.sessions_terminated.load(Ordering::Relaxed),
            password_checks_passed: self.password_checks_passed.load(Ordering::Relaxed),
            password_checks_failed: self.password_checks_failed.load(Ordering::Relaxed),
        }
    }
}
