//! Wrappers around every call of a store, each adding one thing and no behaviour:
//!
//! - [`Bounded`]: a time bound around every call of a networked store. PostgreSQL's
//!   `statement_timeout` ends slow statements on the server, but a database that vanishes
//!   without closing its connections (a dead host, a dropped network) answers nothing at all;
//!   this bound turns that into a prompt `Unavailable` instead of a hung request. Dropping the
//!   timed-out future drops its connection, so no half-done transaction is ever committed.
//! - [`Traced`]: a span per call made inside a span (a request's): `store <call>`, with the
//!   call's name and the database system, never an argument. Calls outside any span (the
//!   background tasks) make none. Only put in while traces are exported, so a server without
//!   `--otlp-endpoint` makes no span per store call.
//!
//! Every method delegates to the inner store.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument as _;

use super::{
    CheckOutcome, DynStore, Edited, FactorAttempt, FactorCheckOutcome, FactorRevocation,
    FeedBounds, FeedPage, FeedQuery, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation,
    SessionEdit, SessionPage, Store, StoreError, StoredEvent, StoredFactor, UserListQuery,
    store_methods,
};
use super::{Contact, OtpChallenge};
use super::{PasskeyChallenge, PasskeyCheck, PasskeyUse, PendingPasskey, StoredPasskey};
use crate::domain::{
    FactorKind, LoginName, Session, SessionFilter, SessionId, Time, TokenHash, User, UserId,
    UserSessionsQuery,
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
        _name: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.limit, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(Box::new(NoAnswer(self.limit)))),
        }
    }
}

/// A span around every call of the inner store.
pub struct Traced {
    inner: DynStore,
    /// The database system, OpenTelemetry's `db.system.name` (`sqlite`, `postgresql`).
    system: &'static str,
}

impl Traced {
    pub fn new(inner: DynStore, system: &'static str) -> Self {
        Self { inner, system }
    }

    async fn run<T>(
        &self,
        name: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        // Background calls (the health watch every 5 s) would each start a trace of one span.
        if tracing::Span::current().is_none() {
            return call.await;
        }
        let span = tracing::debug_span!(
            "store",
            otel.name = format_args!("store {name}"),
            otel.kind = "client",
            db.operation.name = name,
            db.system.name = self.system,
        );
        call.instrument(span).await
    }
}

/// Implements `Store` for `Bounded` and `Traced` from the trait's method list: each call goes
/// to the inner store through the wrapper's `run`, with the call's name.
macro_rules! wrapped_store {
    ($($(#[$doc:meta])* async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        wrapped_store!(@impl Bounded $(async fn $name(&self $(, $arg: $ty)*) -> $ret;)*);
        wrapped_store!(@impl Traced $(async fn $name(&self $(, $arg: $ty)*) -> $ret;)*);
    };
    (@impl $wrapper:ident $(async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for $wrapper {
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.run(stringify!($name), self.inner.$name($($arg),*)).await
            })*

            fn pools(&self) -> Vec<PoolStats> {
                self.inner.pools()
            }

            fn feed_wake(&self) -> super::FeedWake {
                self.inner.feed_wake()
            }
        }
    };
}

store_methods!(wrapped_store);
