//! The real server (`Application::build` + `run_until`) on 127.0.0.1:0 with a fresh data directory
//! and a [`ManualClock`]; users, bearer JWTs and one [`Api`] client per protocol and version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use sessiond::app::Application;
use sessiond::auth::{EmbeddedKey, JwtSettings, mint};
use sessiond::core::{Core, NewUser};
use sessiond::domain::{LoginName, ManualClock, Password, SessionId, Time, User};
use sessiond::settings::Settings;

use super::{ALL_SESSION_PERMISSIONS, Api, Protocol, START, Version, create_for_user, seconds, v2};

/// A running server and what a test needs to drive it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub core: Core,
    pub clock: ManualClock,
    pub data_dir: tempfile::TempDir,
    /// HTTP/1.1 only.
    pub http: reqwest::Client,
    /// HTTP/2 over cleartext (prior knowledge).
    pub h2: reqwest::Client,
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Set to run the whole faces suite on PostgreSQL (with `SESSIOND_TEST_POSTGRES_URL`)
/// instead of SQLite; CI does both.
pub const FACES_ON_POSTGRES_ENV: &str = "SESSIOND_TEST_FACES_ON_POSTGRES";

fn faces_postgres_url() -> Option<String> {
    let wanted = std::env::var(FACES_ON_POSTGRES_ENV).is_ok_and(|v| v == "1");
    if !wanted {
        return None;
    }
    let url = std::env::var(crate::backends::POSTGRES_ENV)
        .ok()
        .filter(|u| !u.is_empty());
    assert!(
        url.is_some(),
        "{FACES_ON_POSTGRES_ENV}=1 needs {} too",
        crate::backends::POSTGRES_ENV
    );
    url
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns a server whose settings `configure` may adjust first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("creating a temp dir");
    let mut settings = Settings::for_test(data_dir.path());
    if let Some(url) = faces_postgres_url() {
        settings.database_url = Some(crate::backends::postgres_schema_url(&url).await.into());
    }
    configure(&mut settings);
    let clock = ManualClock::new(START);
    let app = Application::build(settings, Arc::new(clock.clone()))
        .await
        .expect("building the app");
    let addr = app.address();
    let core = app.core().clone();
    let (shutdown, signal) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = signal.await;
    }));
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("HTTP/1.1 client");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let channel = Channel::from_shared(base.clone())
        .expect("channel URL")
        .connect_lazy();
    TestApp {
        addr,
        base,
        core,
        clock,
        data_dir,
        http,
        h2,
        channel,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signals shutdown and hands back the server task (which resolves once `serve` returns).
    pub fn trigger_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server
            .take()
            .expect("the server was already shut down")
    }

    /// A user without a password (no hashing: cheap).
    pub async fn add_user(&self, login_name: &str) -> User {
        self.add_user_with(login_name, None).await
    }

    /// A user with an argon2id password (one hash, tens of milliseconds).
    pub async fn add_user_with_password(&self, login_name: &str, password: &str) -> User {
        self.add_user_with(login_name, Some(password)).await
    }

    async fn add_user_with(&self, login_name: &str, password: Option<&str>) -> User {
        self.core
            .add_user(NewUser {
                login_name: LoginName::parse(login_name).expect("valid login name"),
                display_name: None,
                organization_id: None,
                password: password.map(|p| Password::parse(p).expect("valid password")),
            })
            .await
            .expect("adding a user")
    }

    /// `Bearer <JWT>` signed with the embedded key, valid for an hour from the clock's now.
    pub fn bearer(&self, subject: &str, permissions: &[&str]) -> String {
        self.bearer_with(subject, permissions, Duration::from_secs(3600))
    }

    pub fn bearer_with(&self, subject: &str, permissions: &[&str], ttl: Duration) -> String {
        let key = EmbeddedKey::load(self.data_dir.path()).expect("the embedded key");
        let jwt = mint_jwt(
            &key,
            "sessiond",
            "sessiond",
            subject,
            permissions,
            ttl,
            self.now(),
        );
        format!("Bearer {jwt}")
    }

    /// `sub: "admin"` with every session permission.
    pub fn admin(&self) -> String {
        self.bearer("admin", ALL_SESSION_PERMISSIONS)
    }

    pub fn now(&self) -> Time {
        use sessiond::domain::Clock;
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn api(&self, protocol: Protocol, version: Version) -> Api {
        Api {
            protocol,
            version,
            base: self.base.clone(),
            http: self.http.clone(),
            channel: self.channel.clone(),
        }
    }

    /// One client per protocol and version: 6 × 2.
    pub fn apis(&self) -> Vec<Api> {
        Protocol::ALL
            .into_iter()
            .flat_map(|p| Version::ALL.into_iter().map(move |v| (p, v)))
            .map(|(p, v)| self.api(p, v))
            .collect()
    }

    /// The v2 clients only, one per protocol.
    pub fn v2_apis(&self) -> Vec<Api> {
        Protocol::ALL
            .into_iter()
            .map(|p| self.api(p, Version::V2))
            .collect()
    }

    /// Number of events in a session's log.
    pub async fn event_count(&self, session_id: &str) -> usize {
        let id = SessionId::parse(session_id).expect("session id");
        self.core
            .store()
            .session_events(&id)
            .await
            .expect("reading events")
            .len()
    }

    /// Creates a session for `user` that expires after `secs` seconds (gRPC, as above).
    pub async fn create_expiring_session_for(
        &self,
        user: &User,
        secs: i64,
    ) -> v2::CreateSessionResponse {
        self.api(Protocol::Grpc, Version::V2)
            .create(
                Some(&self.admin()),
                v2::CreateSessionRequest {
                    lifetime: Some(seconds(secs)),
                    ..create_for_user(user.id.as_str())
                },
            )
            .await
            .expect("creating an expiring session")
            .message
    }

    /// Creates a session for `user` via the core's v2 API on gRPC (fast path for setup).
    pub async fn create_session_for(&self, user: &User) -> v2::CreateSessionResponse {
        self.api(Protocol::Grpc, Version::V2)
            .create(Some(&self.admin()), create_for_user(user.id.as_str()))
            .await
            .expect("creating a session")
            .message
    }
}

/// Signs a JWT with `key`.
pub fn mint_jwt(
    key: &EmbeddedKey,
    issuer: &str,
    audience: &str,
    subject: &str,
    permissions: &[&str],
    ttl: Duration,
    now: Time,
) -> String {
    let permissions: Vec<String> = permissions.iter().map(|p| (*p).to_owned()).collect();
    mint(
        key,
        &JwtSettings {
            issuer: issuer.into(),
            audience: audience.into(),
        },
        subject,
        &permissions,
        ttl,
        now,
    )
    .expect("minting a JWT")
}
