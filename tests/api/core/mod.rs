//! The core tier: every session rule checked on `sessiond::core::Core` itself, in process,
//! with a manual clock, on every store this run has (SQLite always, PostgreSQL when
//! `SESSIOND_TEST_POSTGRES_URL` is set; without it the PostgreSQL half is skipped with a
//! notice on stderr). No HTTP: the faces suite checks the wire, this tier the rules.
//!
//! A test runs its body once per store through [`Harness`]: `for h in harnesses().await`.

mod admin;
mod create;
mod delete;
mod factors;
mod feed;
mod feed_postgres;
mod feed_process;
mod get;
mod list;
mod lockout;
mod permissions;
mod self_service;
mod set;
mod tokens;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use sessiond::core::{
    Checks, Core, CoreSettings, CreateSession, CurrentSession, NewUser, SessionChange, SetSession,
    UserLookup,
};
use sessiond::domain::{
    Clock, Details, Error, ErrorKind, LoginName, ManualClock, Password, Permission, Permissions,
    Principal, PrincipalKind, Session, SessionId, SessionToken, Time, User, UserId,
};
use sessiond::store::StoredEvent;

use crate::backends::{Backend, backends, clock};

/// The password every user of this tier has, unless a test says otherwise.
pub const PASSWORD: &str = "correct horse battery";

/// One store with a core over it and the clock that core reads.
pub struct Harness {
    pub backend: Backend,
    pub clock: ManualClock,
    pub core: Core,
}

/// A harness per store, with default settings.
pub async fn harnesses() -> Vec<Harness> {
    harnesses_with(CoreSettings::default()).await
}

/// A harness per store, with these settings.
pub async fn harnesses_with(settings: CoreSettings) -> Vec<Harness> {
    backends()
        .await
        .into_iter()
        .map(|backend| {
            let clock = clock();
            let core = backend.core(&clock, settings.clone());
            Harness {
                backend,
                clock,
                core,
            }
        })
        .collect()
}

impl fmt::Display for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.backend.name)
    }
}

/// A caller authenticated by a JWT with `subject` and `permissions`.
pub fn caller(subject: &str, permissions: &[Permission]) -> Principal {
    Principal {
        user_id: subject.to_owned(),
        permissions: permissions
            .iter()
            .fold(Permissions::none(), |set, p| set.with(*p)),
        kind: PrincipalKind::Jwt,
    }
}

/// The login UI: every session permission.
pub fn login_ui() -> Principal {
    caller(
        "login-ui",
        &[
            Permission::SessionRead,
            Permission::SessionWrite,
            Permission::SessionDelete,
        ],
    )
}

/// An administrator: every permission.
pub fn admin() -> Principal {
    caller("admin", &Permission::ALL)
}

/// The caller a user is when it presents nothing but a JWT naming itself: no permissions.
pub fn as_user(user: &User) -> Principal {
    caller(user.id.as_str(), &[])
}

pub fn user_check(user: &User) -> Checks {
    Checks {
        user: Some(UserLookup::Id(user.id.clone())),
        ..Checks::default()
    }
}

pub fn login_check(login_name: &str, password: Option<&str>) -> Checks {
    Checks {
        user: Some(UserLookup::LoginName(
            LoginName::parse(login_name).expect("login name"),
        )),
        password: password.map(|p| Password::parse(p).expect("password")),
        ..Checks::default()
    }
}

pub fn password_check(password: &str) -> Checks {
    Checks {
        password: Some(Password::parse(password).expect("password")),
        ..Checks::default()
    }
}

/// Metadata as the requests carry it.
pub fn metadata(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// A SetSession that changes nothing yet.
pub fn set(id: &SessionId) -> SetSession {
    SetSession {
        session_id: id.clone(),
        checks: Checks::default(),
        metadata: BTreeMap::new(),
        lifetime: None,
        otp_challenges: Default::default(),
        web_auth_n_challenge: None,
    }
}

/// A created session: its id and its (current) token.
pub struct Created {
    pub id: SessionId,
    pub token: SessionToken,
}

impl Harness {
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// A user without a password.
    pub async fn user(&self, login_name: &str) -> User {
        self.add_user(login_name, None).await
    }

    /// A user whose password is [`PASSWORD`].
    pub async fn user_with_password(&self, login_name: &str) -> User {
        self.add_user(login_name, Some(PASSWORD)).await
    }

    async fn add_user(&self, login_name: &str, password: Option<&str>) -> User {
        self.core
            .add_user(NewUser {
                login_name: LoginName::parse(login_name).expect("login name"),
                display_name: None,
                organization_id: None,
                password: password.map(|p| Password::parse(p).expect("password")),
            })
            .await
            .unwrap_or_else(|e| panic!("{self}: adding {login_name}: {e:?}"))
    }

    /// The user as the store has it now.
    pub async fn stored_user(&self, id: &UserId) -> User {
        self.backend
            .store
            .user(id)
            .await
            .expect("reading a user")
            .expect("the user exists")
    }

    /// Creates a session as the login UI with `request`; panics on failure.
    pub async fn create(&self, request: CreateSession) -> Created {
        let change = self
            .core
            .create_session(&login_ui(), request)
            .await
            .unwrap_or_else(|e| panic!("{self}: creating a session: {e:?}"));
        Created {
            id: change.session_id,
            token: change.token.expect("a new session has a token"),
        }
    }

    /// A session that checked `user`, created by the login UI.
    pub async fn session_for(&self, user: &User) -> Created {
        self.create(CreateSession {
            checks: user_check(user),
            ..CreateSession::default()
        })
        .await
    }

    /// A session for `user` that expires after `lifetime`.
    pub async fn session_for_with_lifetime(&self, user: &User, lifetime: Duration) -> Created {
        self.create(CreateSession {
            checks: user_check(user),
            lifetime: Some(lifetime),
            ..CreateSession::default()
        })
        .await
    }

    /// A session for `user` with a `lifetime` of seconds, `elapsed` seconds later.
    pub async fn expired_session_for(&self, user: &User, lifetime: u64, elapsed: u64) -> Created {
        let created = self
            .session_for_with_lifetime(user, Duration::from_secs(lifetime))
            .await;
        self.advance(Duration::from_secs(elapsed));
        created
    }

    /// Asserts that the session expires `lifetime` from now.
    pub async fn assert_expires_in(&self, id: &SessionId, lifetime: Duration) {
        let expiration = self.stored(id).await.expiration;
        assert_eq!(expiration, Some(after(self.now(), lifetime)), "{self}");
    }

    /// Creates as the login UI, expecting a refusal of this kind and id that writes nothing.
    pub async fn create_refused(&self, request: CreateSession, kind: ErrorKind, id: &str) -> Error {
        let error = fails(
            self,
            self.core.create_session(&login_ui(), request).await,
            kind,
            id,
        );
        assert_eq!(self.live_sessions().await, 0, "{self}: nothing was written");
        error
    }

    /// Sets as the login UI, expecting a refusal of this kind and id.
    pub async fn set_refused(&self, request: SetSession, kind: ErrorKind, id: &str) -> Error {
        fails(
            self,
            self.core.set_session(&login_ui(), request).await,
            kind,
            id,
        )
    }

    /// Deletes as the login UI (`session.delete`, no token); panics on failure.
    pub async fn delete(&self, id: &SessionId) -> Details {
        succeeds(self, self.core.delete_session(&login_ui(), id, None).await)
    }

    /// Sets `request` as the login UI; panics on failure.
    pub async fn set(&self, request: SetSession) -> SessionChange {
        self.core
            .set_session(&login_ui(), request)
            .await
            .unwrap_or_else(|e| panic!("{self}: setting a session: {e:?}"))
    }

    /// The session as the store has it now, terminated or not.
    pub async fn stored(&self, id: &SessionId) -> Session {
        self.backend
            .store
            .session(id)
            .await
            .expect("reading a session")
            .unwrap_or_else(|| panic!("{self}: session {id} is stored"))
    }

    pub async fn events(&self, id: &SessionId) -> Vec<StoredEvent> {
        self.backend
            .store
            .session_events(id)
            .await
            .expect("reading events")
    }

    /// The event types of a session's log, oldest first.
    pub async fn event_types(&self, id: &SessionId) -> Vec<String> {
        self.events(id)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// The self-service view of a session token; panics unless it is current.
    pub async fn current(&self, token: &SessionToken) -> CurrentSession {
        self.core
            .current_session(token)
            .await
            .unwrap_or_else(|e| panic!("{self}: the token should be current: {e:?}"))
    }
}

/// Asserts that `result` failed with this kind and error id; returns the error.
#[track_caller]
pub fn fails<T: fmt::Debug>(
    harness: &Harness,
    result: Result<T, Error>,
    kind: ErrorKind,
    id: &str,
) -> Error {
    match result {
        Ok(value) => panic!("{harness}: expected {kind:?} ({id}), got {value:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{harness}: kind of {e:?}");
            assert_eq!(e.id(), id, "{harness}: id of {e:?}");
            e
        }
    }
}

/// Asserts that `result` succeeded; returns the value.
#[track_caller]
pub fn succeeds<T>(harness: &Harness, result: Result<T, Error>) -> T {
    result.unwrap_or_else(|e| panic!("{harness}: expected success, got {e:?}"))
}

/// An hour.
pub const HOUR: Duration = Duration::from_secs(3600);

/// A session id nobody created.
pub fn unknown_id() -> SessionId {
    SessionId::parse("1000000000000000001").expect("session id")
}

/// A time `by` after `t`.
pub fn after(t: Time, by: Duration) -> Time {
    t.saturating_add(by)
}

impl Harness {
    /// How many live sessions the store holds, as a caller with `session.read` counts them.
    pub async fn live_sessions(&self) -> u64 {
        let (_, details) = self
            .core
            .list_sessions(&login_ui(), sessiond::core::ListSessions::default())
            .await
            .expect("listing sessions");
        details.total_result
    }
}
