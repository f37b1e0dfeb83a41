//! The stores under test: SQLite always, PostgreSQL when `SESSIOND_TEST_POSTGRES_URL` is set
//! (each test in a schema of its own, so tests run in parallel). Without the variable the
//! PostgreSQL half is skipped, and says so loudly on stderr.

use std::sync::Arc;
use std::sync::Once;

use sessiond::core::{Core, CoreSettings, PasswordHasher};
use sessiond::domain::{Clock, ManualClock};
use sessiond::settings::Settings;
use sessiond::store::DynStore;

use crate::helpers::START;

pub const POSTGRES_ENV: &str = "SESSIOND_TEST_POSTGRES_URL";

static SKIP_NOTICE: Once = Once::new();

/// A store with what keeps it alive (a temp dir, a schema name).
pub struct Backend {
    pub name: &'static str,
    pub store: DynStore,
    pub config: Settings,
    _dir: tempfile::TempDir,
}

impl Backend {
    /// A core over this store with a manual clock and cheap password hashing.
    pub fn core(&self, clock: &ManualClock, settings: CoreSettings) -> Core {
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let hasher = PasswordHasher::new(1024, 1, 4).expect("argon2 parameters");
        Core::new(self.store.clone(), clock, hasher, settings).with_factor_key(&[7; 32])
    }
}

/// A fresh, empty schema on the test PostgreSQL server, as a URL whose connections use it.
pub async fn postgres_schema_url(base: &str) -> String {
    use sqlx::Connection;
    let schema = format!("sessiond_test_{}", sessiond::domain::new_numeric_id());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("creating a test schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// The PostgreSQL base URL, or `None` (with a loud notice) when the suite should skip it.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            SKIP_NOTICE.call_once(|| {
                // Written to the process's stderr directly, past the test harness's capture,
                // so the skip is visible even when every test passes.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** {POSTGRES_ENV} is not set: the PostgreSQL half of the core, storage contract, \
                     concurrency and replica tests was SKIPPED. Set it (e.g. \
                     postgres://postgres@127.0.0.1:5432/test) to run it. ***\n"
                );
            });
            None
        }
    }
}

/// Every backend available to this run.
pub async fn backends() -> Vec<Backend> {
    let mut out = vec![open("sqlite", None).await];
    if let Some(base) = postgres_url() {
        out.push(open("postgres", Some(postgres_schema_url(&base).await)).await);
    }
    out
}

/// Opens a store in a fresh temp dir: SQLite there, or the database at `database_url`.
async fn open(name: &'static str, database_url: Option<String>) -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Settings {
        database_url: database_url.map(Into::into),
        ..Settings::for_test(dir.path())
    };
    let store = sessiond::app::open_store(&config)
        .await
        .unwrap_or_else(|e| panic!("opening {name}: {e:?}"));
    Backend {
        name,
        store,
        config,
        _dir: dir,
    }
}

pub fn clock() -> ManualClock {
    ManualClock::new(START)
}
