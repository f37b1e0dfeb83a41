//! The optional TOML configuration file (`--config PATH` or `SESSIOND_CONFIG`).
//!
//! Precedence, highest first: command-line flags, `SESSIOND_…` environment variables, the
//! file, built-in defaults. Keys are the flag names without dashes in front
//! (`listen = "0.0.0.0:8080"`, `database-url = "postgres://…"`, `request-timeout = "15s"`).
//! An unknown key or a value of the wrong form is an error naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::cli::ServeArgs;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    instance_id: Option<String>,
    body_limit: Option<usize>,
    cors_allowed_origins: Option<Vec<String>>,
    max_password_attempts: Option<u32>,
    session_cookie: Option<String>,
    max_concurrent_requests: Option<usize>,
    request_timeout: Option<String>,
    shutdown_timeout: Option<String>,
    prune_interval: Option<String>,
    terminated_before: Option<String>,
    expired_before: Option<String>,
    batch: Option<u32>,
    jwt_jwks_file: Option<PathBuf>,
    jwt_public_key_pem: Option<PathBuf>,
    jwt_algorithm: Option<String>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    db_max_connections: Option<u32>,
    db_acquire_timeout: Option<String>,
    db_statement_timeout: Option<String>,
    db_startup_timeout: Option<String>,
    sqlite_synchronous: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid configuration file {}: {e}", path.display()))
    }

    /// Fills every setting of `args` that was left at its default (neither a flag nor an
    /// environment variable) from the file.
    pub fn apply(self, args: &mut ServeArgs, matches: &ArgMatches) -> anyhow::Result<()> {
        let unset = |id: &str| {
            !matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let duration = |key: &str, value: &str| {
            humantime::parse_duration(value).with_context(|| {
                format!("configuration file: {key}: {value:?} is not a duration like 15s or 1h")
            })
        };
        if let (Some(v), true) = (self.listen, unset("listen")) {
            args.listen = v.parse::<SocketAddr>().with_context(|| {
                format!("configuration file: listen: {v:?} is not an address like 127.0.0.1:8080")
            })?;
        }
        macro_rules! plain {
            ($field:ident, $id:literal, $target:expr) => {
                if let (Some(v), true) = (self.$field, unset($id)) {
                    $target = v;
                }
            };
        }
        macro_rules! optional {
            ($field:ident, $id:literal, $target:expr) => {
                if let (Some(v), true) = (self.$field, unset($id)) {
                    $target = Some(v);
                }
            };
        }
        macro_rules! timed {
            ($field:ident, $id:literal, $key:literal, $target:expr) => {
                if let (Some(v), true) = (self.$field, unset($id)) {
                    $target = duration($key, &v)?;
                }
            };
        }
        plain!(data_dir, "data_dir", args.store.data_dir);
        optional!(database_url, "database_url", args.store.database_url);
        plain!(instance_id, "instance_id", args.instance_id);
        plain!(body_limit, "body_limit", args.body_limit);
        plain!(
            cors_allowed_origins,
            "cors_allowed_origins",
            args.cors_allowed_origins
        );
        plain!(
            max_password_attempts,
            "max_password_attempts",
            args.max_password_attempts
        );
        plain!(session_cookie, "session_cookie", args.session_cookie);
        plain!(
            max_concurrent_requests,
            "max_concurrent_requests",
            args.max_concurrent_requests
        );
        plain!(batch, "batch", args.retention.batch);
        plain!(
            db_max_connections,
            "db_max_connections",
            args.store.db_max_connections
        );
        optional!(jwt_jwks_file, "jwt_jwks_file", args.jwt.jwt_jwks_file);
        optional!(
            jwt_public_key_pem,
            "jwt_public_key_pem",
            args.jwt.jwt_public_key_pem
        );
        optional!(jwt_algorithm, "jwt_algorithm", args.jwt.jwt_algorithm);
        optional!(jwt_issuer, "jwt_issuer", args.jwt.jwt_issuer);
        optional!(jwt_audience, "jwt_audience", args.jwt.jwt_audience);
        timed!(
            request_timeout,
            "request_timeout",
            "request-timeout",
            args.request_timeout
        );
        timed!(
            shutdown_timeout,
            "shutdown_timeout",
            "shutdown-timeout",
            args.shutdown_timeout
        );
        timed!(
            terminated_before,
            "terminated_before",
            "terminated-before",
            args.retention.terminated_before
        );
        timed!(
            expired_before,
            "expired_before",
            "expired-before",
            args.retention.expired_before
        );
        timed!(
            db_acquire_timeout,
            "db_acquire_timeout",
            "db-acquire-timeout",
            args.store.db_acquire_timeout
        );
        timed!(
            db_statement_timeout,
            "db_statement_timeout",
            "db-statement-timeout",
            args.store.db_statement_timeout
        );
        timed!(
            db_startup_timeout,
            "db_startup_timeout",
            "db-startup-timeout",
            args.store.db_startup_timeout
        );
        if let (Some(v), true) = (self.sqlite_synchronous, unset("sqlite_synchronous")) {
            args.store.sqlite_synchronous = v
                .parse()
                .map_err(|e| anyhow::anyhow!("sqlite-synchronous: {e}"))?;
        }
        if let (Some(v), true) = (self.prune_interval, unset("prune_interval")) {
            args.prune_interval = Some(duration("prune-interval", &v)?);
        }
        check(args)
    }
}

/// Checks settings whose form clap cannot check, whatever their source.
pub fn check(args: &ServeArgs) -> anyhow::Result<()> {
    if args.body_limit == 0 {
        bail!("body-limit: must be at least 1 byte");
    }
    if args.max_concurrent_requests == 0 {
        bail!("max-concurrent-requests: must be at least 1");
    }
    if args.request_timeout.is_zero() {
        bail!("request-timeout: must be longer than 0s");
    }
    if args.store.db_max_connections == 0 {
        bail!("db-max-connections: must be at least 1");
    }
    if args.session_cookie.is_empty()
        || !args
            .session_cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        bail!(
            "session-cookie: {:?} is not a valid cookie name",
            args.session_cookie
        );
    }
    if args
        .prune_interval
        .is_some_and(|d| d < Duration::from_secs(1))
    {
        bail!("prune-interval: must be at least 1s");
    }
    Ok(())
}
