//! The application: one object, built from [`Settings`] and a clock, that owns everything the
//! server runs (the bound listener, the router over the faces, the core with its store, and
//! the background tasks), so `sessiond serve` and the test harness run the same server.
//!
//! - [`Application::build`] opens the store, builds the core, the authenticator and the faces
//!   ([`router`], the one place the faces are put together) and binds the listener; tests
//!   bind port 0 and read [`Application::address`].
//! - [`Application::run_until`] starts the background tasks ([`Background`]: store health,
//!   the prune schedule), serves until the shutdown future resolves, then stops accepting,
//!   lets in-flight requests finish for at most `shutdown-timeout`, and stops the background
//!   tasks (the signals workers store each receiver's progress first). A new background
//!   worker is one `background.spawn(…)` line there.
//!
//! The store owns its own resources (the SQLite checkpointer thread, the PostgreSQL pool) and
//! releases them when its last clone is dropped: when the application is, unless a caller
//! keeps a [`Core`] (the tests do). Serving itself (protocols, limits, draining) is in
//! `serve.rs`.

mod background;
mod serve;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use background::{Background, prune_periodically, watch_store_health};
pub use serve::{Limits, serve};
pub use store::{open_store, pg_settings};

use crate::auth::{Authenticator, JwtSettings, JwtVerifier, KeySource, load_keys};
use crate::core::{Core, CoreSettings, PasswordHasher, Retention, load_or_create_factor_key};
use crate::domain::Clock;
use crate::faces::{self, FaceState, ProtocolSwitch, SessionApi};
use crate::ops::Ops;
use crate::settings::{EMBEDDED_AUDIENCE, EMBEDDED_ISSUER, Settings, redact_url};
use crate::signals::{HeaderSealer, KeyRing, SignalSettings, Signals};

/// A built server, listening but not yet serving.
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    core: Core,
    health: tonic_health::server::HealthReporter,
    signals: Option<Signals>,
}

impl Application {
    /// Builds everything from the settings and binds `settings.listen`. The clock is a
    /// parameter so tests can move time.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let jwt = jwt_settings(&settings)?;
        let keys = load_keys(&key_source(&settings)?)?;
        let store = open_store(&settings).await?;
        let factor_key = load_or_create_factor_key(&factor_key_path(&settings))?;
        check_factor_key(&store, &settings, &factor_key).await?;
        let core = Core::new(
            store,
            clock.clone(),
            PasswordHasher::recommended()?,
            core_settings(&settings),
        )
        .with_factor_key(&factor_key)
        .with_delivery(delivery(&settings)?);
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in faces::grpc::service_names() {
            health
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let auth = Authenticator::new(JwtVerifier::new(keys, jwt), core.clone());
        let signals = signals(&settings, &core, clock)?;
        let router = router(
            &settings,
            auth,
            core.clone(),
            health_service,
            signals.clone(),
        )?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let address = listener.local_addr()?;
        Ok(Self {
            settings,
            listener,
            address,
            router,
            core,
            health,
            signals,
        })
    }

    /// The address the listener is bound to (with the port the system chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The core under the faces (tests add users and read state through it).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Serves, with the background tasks running, until `shutdown` resolves; then drains
    /// in-flight requests for at most `shutdown-timeout` and stops the background tasks.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let (settings, core) = (self.settings, self.core);
        tracing::info!(
            address = %self.address,
            store = %redact_url(&settings.store_url()),
            "sessiond listening (HTTP/1.1 and h2c)"
        );
        let mut background = Background::default();
        if let Some(signals) = self.signals {
            background.spawn_with_stop("signals", |stop| signals.run(stop));
        }
        background.spawn(
            "store health",
            watch_store_health(core.clone(), self.health),
        );
        if let Some(every) = settings.prune_interval {
            let retention = retention(&settings);
            background.spawn("prune", prune_periodically(core.clone(), retention, every));
        }

        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let feed = core.feed().clone();
        let signal = async move {
            shutdown.await;
            // Event streams never finish by themselves: end them so the drain can.
            feed.shutdown();
            let _ = stopping.send(());
        };
        let deadline = settings.shutdown_timeout;
        let limits = Limits {
            max_header_bytes: settings.max_header_bytes,
        };
        let served = tokio::select! {
            served = serve(self.listener, self.router, limits, signal) => served.context("serving"),
            () = async move {
                if stopped.await.is_ok() {
                    tokio::time::sleep(deadline).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(?deadline, "shutdown timeout reached with requests still in flight");
                Ok(())
            }
        };
        background.stop().await;
        tracing::info!("sessiond stopped");
        served
    }
}

/// The router over every face: gRPC, gRPC-Web, Connect, REST, self-service, admin and the
/// operational endpoints on one port, with the observe layer (limits, metrics, access log)
/// and CORS around them.
pub fn router(
    settings: &Settings,
    auth: Authenticator,
    core: Core,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    signals: Option<Signals>,
) -> anyhow::Result<Router> {
    let api = SessionApi::new(auth);
    let grpc = faces::grpc::service(api.clone(), settings.body_limit, health_service)?;
    let ops = Ops::new(
        core,
        settings.max_concurrent_requests,
        settings.request_timeout,
        signals.clone(),
    );
    let http = faces::router(
        FaceState {
            api,
            body_limit: settings.body_limit,
            session_cookie: settings.session_cookie.clone(),
            feed_keepalive: settings.feed_keepalive,
            signals,
        },
        ops.routes(),
    );
    let http = if settings.ui {
        http.merge(faces::ui::routes())
    } else {
        http
    };
    let served = ops.observe(Router::new().fallback_service(ProtocolSwitch::new(grpc, http)));
    Ok(cors_for_browsers(
        served,
        cors(&settings.cors_allowed_origins)?,
    ))
}

/// CORS around everything a browser can call; native gRPC, which no browser page can make,
/// goes around it, so its answers carry no `Vary` header made up for caches that never see
/// them.
fn cors_for_browsers(served: Router, cors: CorsLayer) -> Router {
    use tower::ServiceExt as _;
    let browsers = served.clone().layer(cors);
    Router::new().fallback_service(tower::service_fn(move |request: http::Request<Body>| {
        let route = if faces::grpc::is_native_grpc(&request) {
            served.clone()
        } else {
            browsers.clone()
        };
        route.oneshot(request)
    }))
}

/// Shared Signals and back-channel logout, per the settings: on SQLite with keys in the data
/// directory unless a key file is given; on PostgreSQL only with a key file (replicas must
/// sign with one key), off otherwise.
pub fn signals(
    settings: &Settings,
    core: &Core,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<Signals>> {
    let url = settings.store_url();
    let source = match &settings.signals_key_file {
        Some(path) => crate::signals::KeySource::File(path.clone()),
        None if settings.is_postgres() => {
            tracing::info!("signals are off: on PostgreSQL they need --signals-key-file");
            return Ok(None);
        }
        None => crate::signals::KeySource::Directory {
            dir: settings.data_dir.join(crate::signals::keys::KEY_DIR),
            alg: crate::signals::keys::parse_algorithm(&settings.signals_key_algorithm)?,
            retention: settings.signals_key_retention,
        },
    };
    // Two pools: one for the routes, one for the background workers (`Signals::run`).
    let connect = || -> anyhow::Result<crate::store::signals::DynSignalStore> {
        Ok(if settings.is_postgres() {
            Arc::new(crate::store::signals::PgSignalStore::connect(
                &url,
                settings.db_acquire_timeout,
            )?)
        } else {
            Arc::new(crate::store::signals::SqliteSignalStore::connect(&url)?)
        })
    };
    let keys = KeyRing::new(source, core.now())?;
    let sealer = HeaderSealer::new(&load_or_create_factor_key(&factor_key_path(settings))?);
    Ok(Some(Signals::new(
        connect()?,
        connect()?,
        core.store().clone(),
        clock,
        keys,
        sealer,
        SignalSettings {
            issuer: settings.signals_issuer.clone(),
            allow_loopback_http: settings.signals_allow_loopback_http,
            retry_for: settings.signals_retry_for,
            paused_max_events: settings.signals_paused_max_events,
            request_timeout: settings.signals_request_timeout,
            poll_timeout: settings.signals_poll_timeout,
            min_verification_interval: settings.signals_min_verification_interval,
            inactivity_timeout: settings.signals_inactivity_timeout,
            ca_file: settings.signals_ca_file.clone(),
        },
    )?))
}

/// The core's settings.
pub fn core_settings(settings: &Settings) -> CoreSettings {
    CoreSettings {
        instance_id: settings.instance_id.clone(),
        max_password_attempts: settings.max_password_attempts,
        session_extend_lifespan: settings.session_extend_lifespan,
        totp_issuer: settings.totp_issuer.clone(),
        passkeys: settings.passkeys(),
        otp_code_lifetime: settings.otp_code_lifetime,
        otp_email_url_template: settings.otp_email_url_template.clone(),
        ..CoreSettings::default()
    }
}

/// Refuses a factor key other than the one the database's sealed seeds and code hashes were
/// made with. The first server to start records the key's fingerprint in the store; every
/// later start (each replica on PostgreSQL, or a server whose key file went missing and was
/// created afresh) must present the same key.
pub async fn check_factor_key(
    store: &crate::store::DynStore,
    settings: &Settings,
    key: &[u8; 32],
) -> anyhow::Result<()> {
    let fingerprint = crate::core::factor_key_fingerprint(key);
    let recorded = store
        .claim_secret("factor-key-fingerprint", fingerprint)
        .await
        .map_err(|e| anyhow::anyhow!("recording the factor key's fingerprint: {e}"))?;
    if recorded != fingerprint {
        anyhow::bail!(
            "the factor key {} is not the key this database's TOTP seeds were sealed with: \
             every server sharing a database needs the same key (--factor-key-file)",
            factor_key_path(settings).display()
        );
    }
    Ok(())
}

/// The channels that send one-time codes: SMTP when a host is set, the SMS webhook when a
/// URL is set.
pub fn delivery(settings: &Settings) -> anyhow::Result<crate::delivery::Delivery> {
    use crate::delivery::{Delivery, SmtpSecurity, SmtpSettings, WebhookSettings};
    let smtp = match &settings.smtp_host {
        None => None,
        Some(host) => Some(SmtpSettings {
            host: host.clone(),
            port: settings
                .smtp_port
                .map(|p| {
                    u16::try_from(p).map_err(|_| anyhow::anyhow!("smtp-port: {p} is not a port"))
                })
                .transpose()?,
            security: SmtpSecurity::parse(&settings.smtp_security)?,
            credentials: match (&settings.smtp_username, &settings.smtp_password) {
                (Some(user), Some(password)) => Some((user.clone(), password.expose().to_owned())),
                (None, None) => None,
                _ => anyhow::bail!("smtp-username and smtp-password are set together"),
            },
            from: settings.smtp_from.clone(),
            subject: settings.otp_email_subject.clone(),
            body: settings.otp_email_body.clone(),
            timeout: settings.smtp_timeout,
        }),
    };
    let webhook = match (&settings.sms_webhook_url, &settings.sms_webhook_secret) {
        (None, _) => None,
        (Some(_), None) => {
            anyhow::bail!("sms-webhook-url needs sms-webhook-secret to sign requests")
        }
        (Some(url), Some(secret)) => Some(WebhookSettings {
            url: url.clone(),
            secret: secret.expose().to_owned(),
            timeout: settings.sms_webhook_timeout,
            retries: settings.sms_webhook_retries,
            backoff: std::time::Duration::from_millis(200),
        }),
    };
    Delivery::new(smtp, webhook)
}

/// Where the key that seals TOTP seeds is kept.
pub fn factor_key_path(settings: &Settings) -> std::path::PathBuf {
    settings
        .factor_key_file
        .clone()
        .unwrap_or_else(|| settings.data_dir.join(crate::core::FACTOR_KEY_FILE))
}

/// What a prune deletes.
pub fn retention(settings: &Settings) -> Retention {
    Retention {
        terminated: settings.terminated_before,
        expired: settings.expired_before,
        batch: settings.batch,
    }
}

/// The JWT settings in force: the configured issuer and audience, or the embedded defaults.
pub fn jwt_settings(settings: &Settings) -> anyhow::Result<JwtSettings> {
    let external = settings.jwt_jwks_file.is_some() || settings.jwt_public_key_pem.is_some();
    match (&settings.jwt_issuer, &settings.jwt_audience) {
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

/// Where verification keys come from, per the settings.
pub fn key_source(settings: &Settings) -> anyhow::Result<KeySource> {
    Ok(
        match (&settings.jwt_jwks_file, &settings.jwt_public_key_pem) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set only one of --jwt-jwks-file and --jwt-public-key-pem")
            }
            (Some(path), None) => KeySource::JwksFile(path.clone()),
            (None, Some(path)) => KeySource::PublicKeyPem {
                path: path.clone(),
                algorithm: settings
                    .jwt_algorithm
                    .as_deref()
                    .map(|a| {
                        jsonwebtoken::Algorithm::from_str(a).map_err(|_| {
                            anyhow::anyhow!("--jwt-algorithm: unknown algorithm {a:?}")
                        })
                    })
                    .transpose()?,
            },
            (None, None) => KeySource::Embedded(settings.data_dir.clone()),
        },
    )
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
