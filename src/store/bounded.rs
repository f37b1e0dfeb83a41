//! A time bound around every call of a networked store. PostgreSQL's `statement_timeout`
//! ends slow statements on the server, but a database that vanishes without closing its
//! connections (a dead host, a dropped network) answers nothing at all; this bound turns that
//! into a prompt `Unavailable` instead of a hung request. Dropping the timed-out future drops
//! its connection, so no half-done transaction is ever committed.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    CheckOutcome, DynStore, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation,
    SessionPage, Store, StoreError, StoredEvent, UserListQuery,
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

#[async_trait]
impl Store for Bounded {
    async fn insert_session(&self, session: &Session, event: &NewEvent) -> Result<(), StoreError> {
        self.run(self.inner.insert_session(session, event)).await
    }

    async fn update_session(
        &self,
        session: &Session,
        expected: u64,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        self.run(self.inner.update_session(session, expected, event))
            .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.run(self.inner.session(id)).await
    }

    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        self.run(self.inner.session_by_token(hash)).await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<SessionPage, StoreError> {
        self.run(self.inner.list_sessions(filter)).await
    }

    async fn session_events(&self, id: &SessionId) -> Result<Vec<StoredEvent>, StoreError> {
        self.run(self.inner.session_events(id)).await
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        self.run(self.inner.insert_user(user)).await
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.run(self.inner.user(id)).await
    }

    async fn user_by_login_name(&self, name: &LoginName) -> Result<Option<User>, StoreError> {
        self.run(self.inner.user_by_login_name(name)).await
    }

    async fn begin_password_check(
        &self,
        id: &UserId,
        max_failures: u32,
        now: Time,
        stale_before: Time,
    ) -> Result<PasswordCheck, StoreError> {
        self.run(
            self.inner
                .begin_password_check(id, max_failures, now, stale_before),
        )
        .await
    }

    async fn end_password_check(
        &self,
        id: &UserId,
        outcome: CheckOutcome,
    ) -> Result<u32, StoreError> {
        self.run(self.inner.end_password_check(id, outcome)).await
    }

    async fn user_sessions(&self, query: &UserSessionsQuery) -> Result<SessionPage, StoreError> {
        self.run(self.inner.user_sessions(query)).await
    }

    async fn terminate_user_sessions(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        revocation: &Revocation,
    ) -> Result<u64, StoreError> {
        self.run(self.inner.terminate_user_sessions(user, except, revocation))
            .await
    }

    async fn update_user(
        &self,
        user: &User,
        revoke: Option<&Revocation>,
    ) -> Result<u64, StoreError> {
        self.run(self.inner.update_user(user, revoke)).await
    }

    async fn list_users(&self, query: &UserListQuery) -> Result<(Vec<User>, u64), StoreError> {
        self.run(self.inner.list_users(query)).await
    }

    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        self.run(self.inner.secret(name)).await
    }

    async fn prune(
        &self,
        terminated_before: Time,
        expired_before: Time,
        batch: u32,
    ) -> Result<PruneBatch, StoreError> {
        self.run(self.inner.prune(terminated_before, expired_before, batch))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(self.inner.ping()).await
    }

    async fn schema_ready(&self) -> Result<bool, StoreError> {
        self.run(self.inner.schema_ready()).await
    }

    async fn count_live_sessions(&self, now: Time) -> Result<u64, StoreError> {
        self.run(self.inner.count_live_sessions(now)).await
    }

    fn pools(&self) -> Vec<PoolStats> {
        self.inner.pools()
    }
}
