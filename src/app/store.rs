//! Opening the configured store: SQLite (the default, a file in the data directory) or
//! PostgreSQL, with pending migrations applied. The store it returns owns its own resources
//! (pools; the SQLite checkpointer thread) and releases them when its last clone is dropped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::settings::{Settings, redact_url};
use crate::store::{Bounded, DynStore, PgSettings, PostgresStore, SqliteStore, StoreError, Traced};

/// The PostgreSQL pool and timeouts of the settings.
pub fn pg_settings(settings: &Settings) -> PgSettings {
    PgSettings {
        max_connections: settings.db_max_connections,
        acquire_timeout: settings.db_acquire_timeout,
        statement_timeout: settings.db_statement_timeout,
    }
}

/// Opens the configured store and applies pending migrations (SQLite: creating the file;
/// PostgreSQL: under an advisory lock). An unreachable PostgreSQL is retried with backoff for
/// `db_startup_timeout`, with a log line per attempt. While traces are exported, every
/// store call is a span.
pub async fn open_store(settings: &Settings) -> anyhow::Result<DynStore> {
    let store = open_untraced(settings).await?;
    if !crate::ops::trace::installed() {
        return Ok(store);
    }
    let system = if settings.is_postgres() {
        "postgresql"
    } else {
        "sqlite"
    };
    Ok(Arc::new(Traced::new(store, system)))
}

/// The configured store, without a span per call.
async fn open_untraced(settings: &Settings) -> anyhow::Result<DynStore> {
    let url = settings.store_url();
    if settings.is_postgres() {
        let postgres = pg_settings(settings);
        let store = PostgresStore::connect(&url, &postgres)
            .with_context(|| format!("invalid PostgreSQL URL {}", redact_url(&url)))?;
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match store.migrate().await {
                Ok(()) => break,
                Err(StoreError::Unavailable(e))
                    if started.elapsed() < settings.db_startup_timeout =>
                {
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
        let limit = postgres.acquire_timeout + postgres.statement_timeout + Duration::from_secs(1);
        Ok(Arc::new(Bounded::new(Arc::new(store), limit)))
    } else if url.starts_with("sqlite:") {
        if settings.database_url.is_none() {
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!(
                    "creating the data directory {}",
                    settings.data_dir.display()
                )
            })?;
        }
        let readers = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(2)
            * 2;
        let store = SqliteStore::open(&url, readers, settings.sqlite_synchronous)
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
