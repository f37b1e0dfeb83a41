//! A time bound around every call of a networked store. PostgreSQL's `statement_timeout`
//! ends slow statements on the server, but a database that vanishes without closing its
//! connections (a dead host, a dropped network) answers nothing at all; this bound turns that
//! into a prompt `Unavailable` instead of a hung request. Dropping the timed-out future drops
//! its connection, so no half-done transaction is ever committed.
//!
//! It adds no behaviour but the bound: every method delegates to the inner store.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    CheckOutcome, DynStore, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation,
    SessionPage, Store, StoreError, StoredEvent, UserListQuery, store_methods,
};
use crate::domain::{
    LoginName, Session, SessionFilter, SessionId, Time, TokenHash, User, UserId, UserSessionsQuery,
};

pub struct Bounded {
    inner: DynStore,
    limit: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within {0:?}")]
struct NoAnswer(Duration);

impl Bounded {
    pub fn new(inner: DynStore, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.limit, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(Box::new(NoAnswer(self.limit)))),
        }
    }
}

/// Implements `Store` for `Bounded` from the trait's method list: each call goes to the inner
/// store under the time bound.
macro_rules! bounded_store {
    ($($(#[$doc:meta])* async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for Bounded {
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.run(self.inner.$name($($arg),*)).await
            })*

            fn pools(&self) -> Vec<PoolStats> {
                self.inner.pools()
            }
        }
    };
}

store_methods!(bounded_store);
