//! The one settings type: every setting of `serve` and of the operator commands, read from
//! built-in defaults, then the TOML file (`--config PATH` or `SESSIOND_CONFIG`), then
//! `SESSIOND_…` environment variables, then flags: each layer overrides the one before.
//!
//! A setting named `foo_bar` is the flag `--foo-bar`, the variable `SESSIOND_FOO_BAR` and the
//! file key `foo-bar` (the three retention settings keep their historical variables
//! `SESSIOND_PRUNE_…`). An unknown file key or a malformed value fails with a message naming
//! the setting; [`Settings::check`] then refuses values no type can rule out (a zero limit).
//! `Debug` and `config show` redact the database password ([`DatabaseUrl`]).
//!
//! # How to add a setting
//!
//! Add one entry to the list below, where `config show` should print it:
//!
//! ```text
//! /// What it does, as `--help` shows it.
//! my_setting: Duration = Duration::from_secs(5);
//! ```
//!
//! That is all: the field of [`Settings`], its default, `--my-setting`,
//! `SESSIOND_MY_SETTING`, the file key `my-setting` and its `config show` line come from it.
//! `serve` and `config show` accept every setting; add `, in STORE` (or `RETENTION`, `TOKEN`)
//! when the operator commands that open the store (or prune, or mint tokens) need the flag
//! too. A type not used yet needs an `impl Value` in `value.rs`. Then read
//! `settings.my_setting` where it is used (wiring is in `app.rs`) and add a README row.
//!
//! This module knows nothing of the CLI (`cli.rs` flattens [`Flags`] into its commands) and
//! nothing of the layers the settings configure (`app.rs` hands them their parts).

#[macro_use]
mod define;
mod value;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{ArgMatches, Args, Command, FromArgMatches};

pub use value::{DatabaseUrl, Ratio, SecretText, Value, redact_url};

use crate::store::Synchronous;

/// Default `iss` and `aud` of tokens signed with the embedded key.
pub const EMBEDDED_ISSUER: &str = "sessiond";
pub const EMBEDDED_AUDIENCE: &str = "sessiond";

/// Groups of settings, by the commands that take their flags. Every setting is in `SERVE`
/// (`serve` and `config show`).
pub const SERVE: u8 = 1;
/// Where the data lives: `migrate`, `prune` and `users …` take these flags too.
pub const STORE: u8 = 2;
/// What `prune` deletes.
pub const RETENTION: u8 = 4;
/// What `token mint` needs.
pub const TOKEN: u8 = 8;

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

settings! {
    /// Address to listen on (HTTP/1.1 and h2c on one port).
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    /// Directory for the SQLite database and the embedded signing key.
    data_dir: PathBuf = PathBuf::from("./data"), in STORE | TOKEN;
    /// Database URL: sqlite://PATH (default sqlite://<data-dir>/sessiond.db) or postgres://…
    database_url: Option<DatabaseUrl> = None, in STORE;
    /// Instance id reported as `resourceOwner` in every `details`.
    instance_id: String = String::from("sessiond");
    /// Largest request body or gRPC message in bytes.
    body_limit: usize = 1024 * 1024;
    /// Largest request head in bytes (request line or pseudo-headers and every header field;
    /// HTTP/2 counts 32 bytes more per field): past it, 431 Request Header Fields Too Large.
    max_header_bytes: usize = 32 * 1024;
    /// Origins allowed to call from browsers, comma-separated; default: any origin.
    cors_allowed_origins: Vec<String> = Vec::new();
    /// Failed password checks after which a user is locked; 0 disables lockout.
    max_password_attempts: u32 = 10;
    /// Issuer named in TOTP enrollment URIs (shown by authenticator apps).
    totp_issuer: String = String::from("sessiond");
    /// File holding the key that seals TOTP seeds (64 hex digits); created in the data
    /// directory when unset. Every replica sharing a database needs the same key.
    factor_key_file: Option<PathBuf> = None;
    /// WebAuthn relying party id: the domain passkeys belong to (the browser's host or a
    /// parent domain of it); default `localhost`.
    webauthn_rp_id: String = String::from("localhost");
    /// Origins (scheme://host[:port]) browsers may register and use passkeys from,
    /// comma-separated; default: http://localhost:<listen port>.
    webauthn_origins: Vec<String> = Vec::new();
    /// Relying party name authenticators show when registering a passkey.
    webauthn_rp_name: String = String::from("sessiond");
    /// How long a one-time code sent by SMS or email (or returned) stays valid.
    otp_code_lifetime: Duration = Duration::from_secs(5 * 60);
    /// Link of OTP emails when a challenge names no urlTemplate: {{.Code}}, {{.UserID}},
    /// {{.LoginName}}, {{.DisplayName}}, {{.SessionID}}; unset: no link.
    otp_email_url_template: Option<String> = None;
    /// SMTP server that sends one-time codes by email; unset: email codes can only be returned.
    smtp_host: Option<String> = None;
    /// SMTP port; default 587 (starttls), 465 (tls), 25 (plain).
    smtp_port: Option<u32> = None;
    /// SMTP connection security: starttls, tls, or plain (loopback hosts only).
    smtp_security: String = String::from("starttls");
    /// SMTP user name (with smtp-password).
    smtp_username: Option<String> = None;
    /// SMTP password.
    smtp_password: Option<SecretText> = None;
    /// Sender of OTP emails, `Name <address>` or an address.
    smtp_from: String = String::from("sessiond <noreply@localhost>");
    /// Longest an SMTP submission may take.
    smtp_timeout: Duration = Duration::from_secs(10);
    /// Subject of OTP emails ({{.Code}}, {{.Link}}, {{.LoginName}}, {{.DisplayName}}).
    otp_email_subject: String = String::from("Your sign-in code");
    /// Body of OTP emails (same fields as the subject).
    otp_email_body: String = String::from("Your sign-in code is {{.Code}}. It can be used once, for a few minutes.\n{{.Link}}\n");
    /// URL the SMS webhook POSTs one-time codes to; unset: SMS codes can only be returned.
    sms_webhook_url: Option<String> = None;
    /// Secret the SMS webhook signs its requests with (X-Sessiond-Signature), 16+ characters.
    sms_webhook_secret: Option<SecretText> = None;
    /// Longest one try of the SMS webhook may take.
    sms_webhook_timeout: Duration = Duration::from_secs(5);
    /// Tries of the SMS webhook after a failed first one (with doubling backoff).
    sms_webhook_retries: u32 = 2;
    /// Cookie name that may carry a session token on the /auth/sessions endpoints.
    session_cookie: String = String::from("sessiond_session");
    /// How far from now `PATCH /auth/admin/sessions/{id}/extend` moves a session's expiry.
    session_extend_lifespan: Duration = Duration::from_secs(24 * 3600);
    /// Serve the account page at /ui/ (true or false).
    ui: bool = true;
    /// Requests in flight before new ones are refused with 503 / RESOURCE_EXHAUSTED.
    max_concurrent_requests: usize = 1024;
    /// Longest a request may take before it is answered with 504 / DEADLINE_EXCEEDED.
    request_timeout: Duration = Duration::from_secs(15);
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before exiting.
    shutdown_timeout: Duration = Duration::from_secs(30);
    /// How often an idle event stream (Server-Sent Events) sends a keepalive comment.
    feed_keepalive: Duration = Duration::from_secs(15);
    /// Size of the feed's in-memory ring: it holds this / 8 batches of at most 64 session
    /// events each; a subscriber further behind reads the store instead.
    feed_buffer: usize = 4096;
    /// Longest time the feed goes without reading the store (a lost wake-up delays at most this).
    feed_poll_interval: Duration = Duration::from_secs(1);
    /// Event feed subscribers at once on this server; more are refused (503 / RESOURCE_EXHAUSTED).
    feed_max_subscribers: usize = 10000;
    /// Run a prune this often while serving (e.g. 1h); off unless set.
    prune_interval: Option<Duration> = None;
    /// Delete sessions terminated longer ago than this.
    terminated_before: Duration = days(30), in RETENTION, env "SESSIOND_PRUNE_TERMINATED_BEFORE";
    /// Delete sessions expired longer ago than this.
    expired_before: Duration = days(30), in RETENTION, env "SESSIOND_PRUNE_EXPIRED_BEFORE";
    /// Sessions deleted per transaction.
    batch: u32 = 1000, in RETENTION, env "SESSIOND_PRUNE_BATCH";
    /// Verify bearer JWTs with the keys of this JWKS file instead of the embedded key.
    jwt_jwks_file: Option<PathBuf> = None;
    /// Verify bearer JWTs with this PEM public key instead of the embedded key.
    jwt_public_key_pem: Option<PathBuf> = None;
    /// Algorithm of --jwt-public-key-pem (e.g. RS256, ES256, EdDSA); default by key type.
    jwt_algorithm: Option<String> = None;
    /// Required `iss` of bearer JWTs (default with the embedded key: sessiond).
    jwt_issuer: Option<String> = None, in TOKEN;
    /// Required `aud` of bearer JWTs (default with the embedded key: sessiond).
    jwt_audience: Option<String> = None, in TOKEN;
    /// PostgreSQL: connections per replica.
    db_max_connections: u32 = 16, in STORE;
    /// PostgreSQL: how long a request waits for a free connection before failing (503/UNAVAILABLE).
    db_acquire_timeout: Duration = Duration::from_secs(3), in STORE;
    /// PostgreSQL: server-side limit of one statement.
    db_statement_timeout: Duration = Duration::from_secs(5), in STORE;
    /// How long to keep retrying an unreachable database at start-up.
    db_startup_timeout: Duration = Duration::from_secs(60), in STORE;
    /// SQLite: `normal` (a commit survives a crash of the process; a power loss may lose the
    /// last moments) or `full` (the log is synced at every commit: survives power loss too).
    sqlite_synchronous: Synchronous = Synchronous::Normal, in STORE;
    /// Signals: PKCS#8 PEM private key (RSA 2048+, P-256 or Ed25519) that signs Security Event
    /// Tokens and logout tokens; default: keys made in <data-dir>/signals-keys. Required on
    /// PostgreSQL (every replica must sign with the same key), where signals are off without it.
    signals_key_file: Option<PathBuf> = None, in STORE;
    /// Signals: algorithm of the keys made in the data directory (RS256, ES256 or EdDSA).
    signals_key_algorithm: String = String::from("RS256"), in STORE;
    /// Signals: how long a replaced key stays in the JWKS.
    signals_key_retention: Duration = days(4);
    /// Signals: `iss` of every token and the metadata; default: the URL a receiver called.
    signals_issuer: Option<String> = None, in STORE;
    /// Signals: also allow http receiver URLs to loopback addresses (tests, same host).
    signals_allow_loopback_http: bool = false, in STORE;
    /// Signals: how long a token is retried before it is given up (at least 24h).
    signals_retry_for: Duration = days(3);
    /// Signals: tokens a paused stream holds at most (the oldest are dropped past it).
    signals_paused_max_events: u64 = 10000;
    /// Signals: time limit of one request to a receiver.
    signals_request_timeout: Duration = Duration::from_secs(10);
    /// Signals: longest a poll request waits for an event.
    signals_poll_timeout: Duration = Duration::from_secs(30);
    /// Signals: a stream's `min_verification_interval`; sooner verification requests get 429.
    signals_min_verification_interval: Duration = Duration::from_secs(30);
    /// Signals: a stream's `inactivity_timeout`: a stream whose receiver makes no stream
    /// management call and no poll for this long is paused (announced first by a
    /// stream-updated event); off unless set.
    signals_inactivity_timeout: Option<Duration> = None;
    /// Signals: PEM file of certificate authorities trusted for https receivers, besides the
    /// system's (a private CA).
    signals_ca_file: Option<PathBuf> = None;
    /// Export traces over OTLP/gRPC to this collector (e.g. http://127.0.0.1:4317, or https://
    /// with TLS); off unless set.
    otlp_endpoint: Option<String> = None;
    /// For an https collector: PEM file of the certificate authority that signed its
    /// certificate (the public web roots when unset).
    otlp_ca_file: Option<PathBuf> = None;
    /// Fraction of the traces that start at sessiond to record (0 to 1); a request carrying a
    /// `traceparent` follows its caller's decision.
    otlp_sample_ratio: Ratio = Ratio(1.0);
}

impl Settings {
    /// Defaults, then the file at `file` (if any), then the flags and variables `flags` saw;
    /// checked.
    pub fn load<const GROUPS: u8>(
        file: Option<&Path>,
        flags: &Flags<GROUPS>,
    ) -> anyhow::Result<Self> {
        let mut settings = Self::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration file {}", path.display()))?;
            let layer: FileLayer = toml::from_str(&text).map_err(|e| {
                anyhow::anyhow!("invalid configuration file {}: {e}", path.display())
            })?;
            settings.apply_file(layer)?;
        }
        settings.apply_flags(&flags.matches);
        settings.check()?;
        Ok(settings)
    }

    /// The defaults with the data in `data_dir` and port 0 (the system picks a free port).
    pub fn for_test(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// The database to open, with its password: `database_url`, else the SQLite file in
    /// `data_dir`.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("sessiond.db").display()),
        }
    }

    /// Whether the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url.as_ref().is_some_and(|u| {
            u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://")
        })
    }

    /// The WebAuthn relying party: the settings, with the origin derived from the listen
    /// port when none is set.
    pub fn passkeys(&self) -> crate::core::PasskeySettings {
        let origins = if self.webauthn_origins.is_empty() {
            vec![format!("http://localhost:{}", self.listen.port())]
        } else {
            self.webauthn_origins.clone()
        };
        crate::core::PasskeySettings {
            rp_id: self.webauthn_rp_id.clone(),
            rp_name: self.webauthn_rp_name.clone(),
            origins,
        }
    }

    /// Checks what the types cannot, whatever the source of the value.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Err(e) = self.passkeys().relying_party() {
            bail!("webauthn-rp-id / webauthn-origins: {e}");
        }
        if self.body_limit == 0 {
            bail!("body-limit: must be at least 1 byte");
        }
        if !(8192..=16 * 1024 * 1024).contains(&self.max_header_bytes) {
            bail!("max-header-bytes: must be between 8192 and 16777216");
        }
        if self.max_concurrent_requests == 0 {
            bail!("max-concurrent-requests: must be at least 1");
        }
        if self.request_timeout.is_zero() {
            bail!("request-timeout: must be longer than 0s");
        }
        if self.feed_keepalive.is_zero() {
            bail!("feed-keepalive: must be longer than 0s");
        }
        if !matches!(
            self.signals_key_algorithm.as_str(),
            "RS256" | "ES256" | "EdDSA"
        ) {
            bail!("signals-key-algorithm: must be RS256, ES256 or EdDSA");
        }
        if self
            .signals_inactivity_timeout
            .is_some_and(|t| t < Duration::from_secs(60))
        {
            bail!("signals-inactivity-timeout: must be at least 1m");
        }
        if let Some(issuer) = &self.signals_issuer
            && let Err(e) = crate::signals::face::check_issuer(issuer)
        {
            bail!("signals-issuer: {e}");
        }
        if self.signals_retry_for < days(1) {
            bail!("signals-retry-for: must be at least 24h (receivers may be down that long)");
        }
        if self.db_max_connections == 0 {
            bail!("db-max-connections: must be at least 1");
        }
        if !(1..=1 << 20).contains(&self.feed_buffer) {
            bail!("feed-buffer: must be between 1 and 1048576 events");
        }
        if self.feed_poll_interval < Duration::from_millis(10) {
            bail!("feed-poll-interval: must be at least 10ms");
        }
        if self.session_cookie.is_empty()
            || !self
                .session_cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            bail!(
                "session-cookie: {:?} is not a valid cookie name",
                self.session_cookie
            );
        }
        if self
            .prune_interval
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            bail!("prune-interval: must be at least 1s");
        }
        Ok(())
    }
}

/// The file key and flag name of a setting: its field name with dashes.
fn key(id: &str) -> String {
    id.replace('_', "-")
}

/// The clap argument of one setting: `--key`, its variable, its help and default.
fn arg<T: Value>(id: &'static str, env: Option<&str>, doc: &[&str], default: &T) -> clap::Arg {
    let mut help = doc
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ");
    if help.ends_with('.') {
        help.pop();
    }
    if let Some(default) = default.help() {
        help.push_str(&format!(" [default: {default}]"));
    }
    let env = env.map_or_else(
        || format!("SESSIOND_{}", id.to_ascii_uppercase()),
        str::to_owned,
    );
    let arg = clap::Arg::new(id)
        .long(key(id))
        .value_name(id.to_ascii_uppercase())
        .env(env)
        .help(help);
    T::flag(arg)
}

/// The flags (and their `SESSIOND_…` variables) of the settings in `GROUPS`, to flatten into
/// a clap command; [`Settings::load`] lays them over the file.
#[derive(Clone, Debug)]
pub struct Flags<const GROUPS: u8> {
    matches: ArgMatches,
}

/// Every setting: `serve` and `config show`.
pub type ServeFlags = Flags<SERVE>;
/// The store settings: `migrate` and `users …`.
pub type StoreFlags = Flags<STORE>;
/// The store and retention settings: `prune`.
pub type PruneFlags = Flags<{ STORE | RETENTION }>;
/// The key and claims settings: `token mint`.
pub type TokenFlags = Flags<TOKEN>;

impl<const GROUPS: u8> FromArgMatches for Flags<GROUPS> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self {
            matches: matches.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.matches = matches.clone();
        Ok(())
    }
}

impl<const GROUPS: u8> Args for Flags<GROUPS> {
    fn augment_args(command: Command) -> Command {
        command.args(Settings::args(GROUPS))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<const G: u8>(args: &[&str]) -> Flags<G> {
        let command = Flags::<G>::augment_args(Command::new("t"));
        let matches = command.try_get_matches_from(args).expect("valid flags");
        Flags::from_arg_matches(&matches).expect("flags")
    }

    #[test]
    fn flags_override_defaults_and_groups_limit_the_flags() {
        let flags = parse::<SERVE>(&["t", "--listen", "0.0.0.0:1", "--prune-interval", "1h"]);
        let settings = Settings::load(None, &flags).expect("settings");
        assert_eq!(settings.listen, SocketAddr::from(([0, 0, 0, 0], 1)));
        assert_eq!(settings.prune_interval, Some(Duration::from_secs(3600)));
        assert_eq!(settings.body_limit, 1024 * 1024);
        let store = Flags::<STORE>::augment_args(Command::new("t"));
        assert!(
            store
                .clone()
                .try_get_matches_from(["t", "--data-dir", "x"])
                .is_ok()
        );
        assert!(store.try_get_matches_from(["t", "--listen", "x"]).is_err());
    }

    #[test]
    fn show_prints_every_setting_once_with_the_password_redacted() {
        let settings = Settings {
            database_url: Some("postgres://a:pw@h/db".into()),
            ..Settings::default()
        };
        let shown = settings.show();
        assert_eq!(shown.lines().count(), Settings::args(SERVE).len());
        assert!(shown.contains("database-url = \"postgres://a:***@h/db\""));
        assert!(shown.contains("terminated-before = \"30days\""));
        assert!(shown.contains("prune-interval = (off)"));
        assert!(!format!("{settings:?}").contains("pw@"));
    }
}
