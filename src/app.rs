//! Wiring: open the store, build the core, the authenticator and the faces, and serve them
//! on one listener (HTTP/1.1 and h2c) until a shutdown future resolves. Tests call the same
//! functions with a listener bound to port 0.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::serve::ListenerExt;
use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Authenticator, JwtSettings, JwtVerifier, KeySource, load_keys};
use crate::config::{EMBEDDED_AUDIENCE, EMBEDDED_ISSUER, ServerConfig, StoreConfig, redact_url};
use crate::core::{Core, CoreSettings, PasswordHasher};
use crate::domain::Clock;
use crate::faces::{self, FaceState, ProtocolSwitch, SessionApi};
use crate::ops::Ops;
use crate::store::{Bounded, DynStore, PostgresStore, SqliteStore, StoreError};

/// Opens the configured store and applies pending migrations (SQLite: creating the file;
/// PostgreSQL: under an advisory lock). An unreachable PostgreSQL is retried with backoff for
/// `startup_timeout`, with a log line per attempt.
pub async fn open_store(config: &StoreConfig) -> anyhow::Result<DynStore> {
    let url = config.url();
    if config.is_postgres() {
        let store = PostgresStore::connect(&url, &config.postgres)
            .with_context(|| format!("invalid PostgreSQL URL {}", redact_url(&url)))?;
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match store.migrate().await {
                Ok(()) => break,
                Err(StoreError::Unavailable(e)) if started.elapsed() < config.startup_timeout => {
                    tracing::warn!(
                        database = %redact_url(&url),
                        error = %e,
                        retry_in = ?delay,
                        "database not reachable yet; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)).with_context(|| {
                        format!("preparing PostgreSQL database {}", redact_url(&url))
                    });
                }
            }
        }
        // Every call is bounded: waiting for a connection, then running the statement.
        let limit = config.postgres.acquire_timeout
            + config.postgres.statement_timeout
            + Duration::from_secs(1);
        Ok(Arc::new(Bounded::new(Arc::new(store), limit)))
    } else if url.starts_with("sqlite:") {
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
        }
        let readers = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(2)
            * 2;
        let store = SqliteStore::open(&url, readers, config.sqlite_synchronous)
            .await
            .with_context(|| format!("opening SQLite database {url}"))?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!(
            "unsupported database URL {}: use sqlite://PATH or postgres://…",
            redact_url(&url)
        )
    }
}

/// The JWT settings in force: the configured issuer and audience, or the embedded defaults.
pub fn jwt_settings(config: &ServerConfig) -> anyhow::Result<JwtSettings> {
    let external = config.jwt.jwks_file.is_some() || config.jwt.public_key_pem.is_some();
    match (&config.jwt.issuer, &config.jwt.audience) {
        (Some(issuer), Some(audience)) => Ok(JwtSettings {
            issuer: issuer.clone(),
            audience: audience.clone(),
        }),
        _ if external => anyhow::bail!(
            "--jwt-issuer and --jwt-audience are required with --jwt-jwks-file or --jwt-public-key-pem"
        ),
        (issuer, audience) => Ok(JwtSettings {
            issuer: issuer.clone().unwrap_or_else(|| EMBEDDED_ISSUER.to_owned()),
            audience: audience
                .clone()
                .unwrap_or_else(|| EMBEDDED_AUDIENCE.to_owned()),
        }),
    }
}

/// Where verification keys come from, per the configuration.
pub fn key_source(config: &ServerConfig) -> anyhow::Result<KeySource> {
    Ok(match (&config.jwt.jwks_file, &config.jwt.public_key_pem) {
        (Some(_), Some(_)) => {
            anyhow::bail!("set only one of --jwt-jwks-file and --jwt-public-key-pem")
        }
        (Some(path), None) => KeySource::JwksFile(path.clone()),
        (None, Some(path)) => KeySource::PublicKeyPem {
            path: path.clone(),
            algorithm: config
                .jwt
                .algorithm
                .as_deref()
                .map(|a| {
                    jsonwebtoken::Algorithm::from_str(a)
                        .map_err(|_| anyhow::anyhow!("--jwt-algorithm: unknown algorithm {a:?}"))
                })
                .transpose()?,
        },
        (None, None) => KeySource::Embedded(config.store.data_dir.clone()),
    })
}

/// A built server: its router, the core beneath it, and the gRPC health reporter.
pub struct App {
    pub router: Router,
    pub core: Core,
    pub health: tonic_health::server::HealthReporter,
}

/// Builds everything from a configuration. The clock is a parameter so tests can move time.
pub async fn build(config: &ServerConfig, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
    let settings = jwt_settings(config)?;
    let keys = load_keys(&key_source(config)?)?;
    let store = open_store(&config.store).await?;
    let core = Core::new(
        store,
        clock,
        PasswordHasher::recommended()?,
        CoreSettings {
            instance_id: config.instance_id.clone(),
            max_password_attempts: config.max_password_attempts,
            ..CoreSettings::default()
        },
    );
    let auth = Authenticator::new(JwtVerifier::new(keys, settings), core.clone());
    let api = SessionApi::new(auth);
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in faces::grpc::service_names() {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let grpc = faces::grpc::service(api.clone(), config.body_limit, health_service)?;
    let ops = Ops::new(
        core.clone(),
        config.max_concurrent_requests,
        config.request_timeout,
    );
    let http = faces::router(
        FaceState {
            api,
            body_limit: config.body_limit,
            session_cookie: config.session_cookie.clone(),
        },
        ops.routes(),
    );
    let router = ops
        .observe(Router::new().fallback_service(ProtocolSwitch::new(grpc, http)))
        .layer(cors(&config.cors_allowed_origins)?);
    Ok(App {
        router,
        core,
        health,
    })
}

/// CORS for browsers calling gRPC-Web, Connect or REST from another origin.
fn cors(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let allow_origin = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).with_context(|| format!("invalid CORS origin {o:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    let allow_headers = [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-session-token",
        "x-request-id",
    ]
    .map(HeaderName::from_static);
    let expose_headers = [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
        // Paging of the self-service list (Kratos SDKs in browsers read them).
        "link",
        "x-total-count",
    ]
    .map(HeaderName::from_static);
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(allow_headers)
        .expose_headers(expose_headers)
        .max_age(std::time::Duration::from_secs(7200)))
}

/// Serves `router` on `listener` (HTTP/1.1 and h2c) until `shutdown` resolves, then stops
/// accepting and waits for in-flight requests to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Prunes on a schedule while serving; failures are logged and retried next time.
pub async fn prune_periodically(core: Core, retention: crate::core::Retention, every: Duration) {
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
