//! Typed configuration of the server. Built from flags and `SESSIOND_…` environment variables
//! (see `cli.rs`); `Debug` redacts anything that may hold a secret.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the data lives.
#[derive(Clone)]
pub struct StoreConfig {
    /// Directory for the SQLite file and the embedded signing key.
    pub data_dir: PathBuf,
    /// Overrides the default `sqlite://<data-dir>/sessiond.db`; `postgres://…` selects
    /// PostgreSQL.
    pub database_url: Option<String>,
    /// PostgreSQL pool and timeouts.
    pub postgres: crate::store::PgSettings,
    /// How long to keep retrying an unreachable database at start-up.
    pub startup_timeout: std::time::Duration,
    /// SQLite: how often a commit reaches the disk.
    pub sqlite_synchronous: crate::store::Synchronous,
}

impl StoreConfig {
    /// The embedded default in `data_dir`, with default PostgreSQL settings.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database_url: None,
            postgres: crate::store::PgSettings::default(),
            startup_timeout: std::time::Duration::from_secs(60),
            sqlite_synchronous: crate::store::Synchronous::default(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }

    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("sessiond.db").display()),
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("postgres", &self.postgres)
            .field("startup_timeout", &self.startup_timeout)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// How bearer JWTs are verified.
#[derive(Clone, Debug, Default)]
pub struct JwtConfig {
    pub jwks_file: Option<PathBuf>,
    pub public_key_pem: Option<PathBuf>,
    /// Algorithm for `public_key_pem` (default: by key type).
    pub algorithm: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Default `iss` and `aud` of tokens signed with the embedded key.
pub const EMBEDDED_ISSUER: &str = "sessiond";
pub const EMBEDDED_AUDIENCE: &str = "sessiond";

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    /// Reported as `resourceOwner`.
    pub instance_id: String,
    pub jwt: JwtConfig,
    /// Largest request body or gRPC message, in bytes.
    pub body_limit: usize,
    /// Origins allowed to call from a browser; empty: any origin.
    pub cors_allowed_origins: Vec<String>,
    /// Failed password checks before lockout; 0: no lockout.
    pub max_password_attempts: u32,
    /// Cookie that may carry a session token on the self-service endpoints.
    pub session_cookie: String,
    /// Requests in flight before new ones are refused (503 / RESOURCE_EXHAUSTED).
    pub max_concurrent_requests: usize,
    /// Longest a request may take (504 / DEADLINE_EXCEEDED).
    pub request_timeout: std::time::Duration,
}

impl ServerConfig {
    /// Defaults for everything but where the data lives.
    pub fn new(store: StoreConfig) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store,
            instance_id: String::from("sessiond"),
            jwt: JwtConfig::default(),
            body_limit: 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            max_password_attempts: 10,
            session_cookie: String::from("sessiond_session"),
            max_concurrent_requests: 1024,
            request_timeout: std::time::Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("sqlite://./data/sessiond.db"),
            "sqlite://./data/sessiond.db"
        );
        let cfg = StoreConfig {
            database_url: Some("postgres://a:pw@h/db".into()),
            ..StoreConfig::new("d")
        };
        assert!(!format!("{cfg:?}").contains("pw@"));
    }
}
