//! The command line: `serve` (the default), `users add` and `token mint`. Every flag can also
//! be set through an environment variable `SESSIOND_<FLAG>`; a flag given on the command line
//! wins over the environment.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::app;
use crate::auth::{EmbeddedKey, mint};
use crate::config::{JwtConfig, ServerConfig, StoreConfig, redact_url};
use crate::config_file::FileConfig;
use crate::core::{Core, CoreSettings, NewUser, PasswordHasher, Retention, UserAction};
use crate::domain::{Clock, LoginName, Password, Permission, Principal, SystemClock, UserId};
use crate::store::{PgSettings, Synchronous};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "sessiond",
    version,
    about = "Session API server: ZITADEL SessionService v2/v2beta over gRPC, gRPC-Web, Connect and REST",
    after_help = "Examples:\n  sessiond                          # serve on 127.0.0.1:8080 with ./data\n  sessiond serve --listen 0.0.0.0:8080 --data-dir /var/lib/sessiond\n  echo 's3cret-pass' | sessiond users add --login-name alice --password-stdin\n  sessiond token mint --subject admin --permissions session.read,session.write,session.delete"
)]
pub struct Cli {
    /// Optional TOML configuration file; flags and SESSIOND_… variables override it.
    #[arg(long, env = "SESSIOND_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    #[arg(
        long,
        env = "SESSIOND_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default command).
    #[command(
        after_help = "Example:\n  sessiond serve --listen 127.0.0.1:8080 --data-dir ./data --instance-id my-instance"
    )]
    Serve(Box<ServeArgs>),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage bearer tokens signed with the embedded key.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the effective configuration (defaults, file, environment, flags), secrets redacted.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply pending database migrations and exit (serve also does this at start).
    #[command(
        after_help = "Example:\n  sessiond migrate --database-url postgres://sessiond@db/sessiond"
    )]
    Migrate(StoreArgs),
    /// Delete old terminated and expired sessions with their events, in batches.
    #[command(
        after_help = "Example:\n  sessiond prune --terminated-before 30d --expired-before 30d"
    )]
    Prune(PruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the settings `serve` would use with the same flags, environment and file.
    #[command(after_help = "Example:\n  sessiond --config /etc/sessiond.toml config show")]
    Show(Box<ServeArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for the SQLite database and the embedded signing key.
    #[arg(long, env = "SESSIOND_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://PATH (default sqlite://<data-dir>/sessiond.db) or postgres://…
    #[arg(long, env = "SESSIOND_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL: connections per replica.
    #[arg(long, env = "SESSIOND_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// PostgreSQL: how long a request waits for a free connection before failing (503/UNAVAILABLE).
    #[arg(long, env = "SESSIOND_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub db_acquire_timeout: Duration,
    /// PostgreSQL: server-side limit of one statement.
    #[arg(long, env = "SESSIOND_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub db_statement_timeout: Duration,
    /// How long to keep retrying an unreachable database at start-up.
    #[arg(long, env = "SESSIOND_DB_STARTUP_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub db_startup_timeout: Duration,
    /// SQLite: `normal` (a commit survives a crash of the process; a power loss may lose the
    /// last moments) or `full` (the log is synced at every commit: survives power loss too).
    #[arg(long, env = "SESSIOND_SQLITE_SYNCHRONOUS", default_value = "normal")]
    pub sqlite_synchronous: Synchronous,
}

impl StoreArgs {
    fn config(&self) -> StoreConfig {
        StoreConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            postgres: PgSettings {
                max_connections: self.db_max_connections,
                acquire_timeout: self.db_acquire_timeout,
                statement_timeout: self.db_statement_timeout,
            },
            startup_timeout: self.db_startup_timeout,
            sqlite_synchronous: self.sqlite_synchronous,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Delete sessions terminated longer ago than this.
    #[arg(long, env = "SESSIOND_PRUNE_TERMINATED_BEFORE", default_value = "30d", value_parser = humantime::parse_duration)]
    pub terminated_before: Duration,
    /// Delete sessions expired longer ago than this.
    #[arg(long, env = "SESSIOND_PRUNE_EXPIRED_BEFORE", default_value = "30d", value_parser = humantime::parse_duration)]
    pub expired_before: Duration,
    /// Sessions deleted per transaction.
    #[arg(long, env = "SESSIOND_PRUNE_BATCH", default_value_t = 1000)]
    pub batch: u32,
}

impl RetentionArgs {
    fn retention(&self) -> Retention {
        Retention {
            terminated: self.terminated_before,
            expired: self.expired_before,
            batch: self.batch,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// Verify bearer JWTs with the keys of this JWKS file instead of the embedded key.
    #[arg(long, env = "SESSIOND_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// Verify bearer JWTs with this PEM public key instead of the embedded key.
    #[arg(long, env = "SESSIOND_JWT_PUBLIC_KEY_PEM")]
    pub jwt_public_key_pem: Option<PathBuf>,
    /// Algorithm of --jwt-public-key-pem (e.g. RS256, ES256, EdDSA); default by key type.
    #[arg(long, env = "SESSIOND_JWT_ALGORITHM")]
    pub jwt_algorithm: Option<String>,
    /// Required `iss` of bearer JWTs (default with the embedded key: sessiond).
    #[arg(long, env = "SESSIOND_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of bearer JWTs (default with the embedded key: sessiond).
    #[arg(long, env = "SESSIOND_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

impl JwtArgs {
    fn config(&self) -> JwtConfig {
        JwtConfig {
            jwks_file: self.jwt_jwks_file.clone(),
            public_key_pem: self.jwt_public_key_pem.clone(),
            algorithm: self.jwt_algorithm.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (HTTP/1.1 and h2c on one port).
    #[arg(long, env = "SESSIOND_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Instance id reported as `resourceOwner` in every `details`.
    #[arg(long, env = "SESSIOND_INSTANCE_ID", default_value = "sessiond")]
    pub instance_id: String,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Largest request body or gRPC message in bytes.
    #[arg(long, env = "SESSIOND_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Origins allowed to call from browsers, comma-separated; default: any origin.
    #[arg(long, env = "SESSIOND_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// Failed password checks after which a user is locked; 0 disables lockout.
    #[arg(long, env = "SESSIOND_MAX_PASSWORD_ATTEMPTS", default_value_t = 10)]
    pub max_password_attempts: u32,
    /// Cookie name that may carry a session token on the /auth/sessions endpoints.
    #[arg(
        long,
        env = "SESSIOND_SESSION_COOKIE",
        default_value = "sessiond_session"
    )]
    pub session_cookie: String,
    /// Requests in flight before new ones are refused with 503 / RESOURCE_EXHAUSTED.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// Longest a request may take before it is answered with 504 / DEADLINE_EXCEEDED.
    #[arg(long, env = "SESSIOND_REQUEST_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before exiting.
    #[arg(long, env = "SESSIOND_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Run a prune this often while serving (e.g. 1h); off unless set.
    #[arg(long, env = "SESSIOND_PRUNE_INTERVAL", value_parser = humantime::parse_duration)]
    pub prune_interval: Option<Duration>,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

impl ServeArgs {
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            store: self.store.config(),
            instance_id: self.instance_id.clone(),
            jwt: self.jwt.config(),
            body_limit: self.body_limit,
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            max_password_attempts: self.max_password_attempts,
            session_cookie: self.session_cookie.clone(),
            max_concurrent_requests: self.max_concurrent_requests,
            request_timeout: self.request_timeout,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user and print its id.
    #[command(
        after_help = "Example:\n  echo 's3cret-pass' | sessiond users add --login-name alice@example.com --display-name Alice --password-stdin"
    )]
    Add(UsersAddArgs),
    /// List users as JSON lines, or the one with --login-name.
    #[command(after_help = "Example:\n  sessiond users list --limit 50")]
    List(UsersListArgs),
    /// Print one user as JSON.
    #[command(after_help = "Example:\n  sessiond users show 123456789012345678")]
    Show(UserIdArgs),
    /// Lock a user and end all its sessions.
    #[command(after_help = "Example:\n  sessiond users lock 123456789012345678")]
    Lock(UserIdArgs),
    /// Deactivate a user and end all its sessions.
    #[command(after_help = "Example:\n  sessiond users deactivate 123456789012345678")]
    Deactivate(UserIdArgs),
    /// Make a locked or deactivated user active again (clears failed password checks).
    #[command(after_help = "Example:\n  sessiond users reactivate 123456789012345678")]
    Reactivate(UserIdArgs),
    /// Set a new password read from stdin; ends the user's sessions unless --keep-sessions.
    #[command(
        after_help = "Example:\n  echo 'n3w-passw0rd' | sessiond users set-password 123456789012345678 --password-stdin"
    )]
    SetPassword(SetPasswordArgs),
}

#[derive(Debug, Args)]
pub struct UsersListArgs {
    #[arg(long)]
    pub login_name: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct UserIdArgs {
    /// The user's id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct SetPasswordArgs {
    /// The user's id.
    pub id: String,
    /// Read the new password from standard input (first line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Keep the user's sessions instead of ending them.
    #[arg(long)]
    pub keep_sessions: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct UsersAddArgs {
    #[arg(long)]
    pub login_name: String,
    #[arg(long)]
    pub display_name: Option<String>,
    #[arg(long)]
    pub organization_id: Option<String>,
    /// Read the password from standard input (first line).
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a JWT signed with the embedded key.
    #[command(
        after_help = "Example:\n  sessiond token mint --subject admin --permissions session.read,session.write,session.delete --ttl 1h"
    )]
    Mint(TokenMintArgs),
}

#[derive(Debug, Args)]
pub struct TokenMintArgs {
    /// The `sub` claim: the caller's user id.
    #[arg(long)]
    pub subject: String,
    /// Comma-separated permissions: session.read, session.write, session.delete, user.read, user.write.
    #[arg(long, value_delimiter = ',')]
    pub permissions: Vec<String>,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    #[arg(long, env = "SESSIOND_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[arg(long, env = "SESSIOND_JWT_ISSUER", default_value = crate::config::EMBEDDED_ISSUER)]
    pub jwt_issuer: String,
    #[arg(long, env = "SESSIOND_JWT_AUDIENCE", default_value = crate::config::EMBEDDED_AUDIENCE)]
    pub jwt_audience: String,
}

/// Runs the parsed command line.
/// Parses the command line (exiting with usage errors, code 2) and runs it.
pub async fn main() -> anyhow::Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    run(cli, &matches).await
}

/// The serve settings after the configuration file, checked.
fn effective(
    mut args: ServeArgs,
    config: Option<&Path>,
    matches: &clap::ArgMatches,
) -> anyhow::Result<ServeArgs> {
    match config {
        Some(path) => FileConfig::load(path)?.apply(&mut args, matches)?,
        None => crate::config_file::check(&args)?,
    }
    Ok(args)
}

/// Runs a parsed command line; `matches` tells which settings came from flags or the
/// environment (those win over the configuration file).
pub async fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    telemetry::init(cli.log_format);
    let config = cli.config.as_deref();
    match cli.command {
        None => serve(effective(cli.serve, config, matches)?).await,
        Some(Command::Serve(args)) => {
            let sub = matches.subcommand_matches("serve").unwrap_or(matches);
            serve(effective(*args, config, sub)?).await
        }
        Some(Command::Config(ConfigCommand::Show(args))) => {
            let sub = matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("show"))
                .unwrap_or(matches);
            print!("{}", show(&effective(*args, config, sub)?));
            Ok(())
        }
        Some(Command::Users(command)) => users(command).await,
        Some(Command::Token(TokenCommand::Mint(args))) => token_mint(args),
        Some(Command::Migrate(args)) => {
            let store = app::open_store(&args.config()).await?;
            let ready = store.schema_ready().await?;
            println!("migrations applied; schema ready: {ready}");
            Ok(())
        }
        Some(Command::Prune(args)) => {
            let core = operator_core(&args.store).await?;
            let totals = core
                .prune(args.retention.retention(), |t| {
                    eprintln!("pruned {} sessions, {} events so far", t.sessions, t.events)
                })
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            println!(
                "pruned {} sessions and {} events in {} batches",
                totals.sessions, totals.events, totals.batches
            );
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config();
    let app = app::build(&config, Arc::new(SystemClock)).await?;
    tokio::spawn(app::watch_store_health(
        app.core.clone(),
        app.health.clone(),
    ));
    if let Some(every) = args.prune_interval {
        tokio::spawn(app::prune_periodically(
            app.core.clone(),
            args.retention.retention(),
            every,
        ));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, store = ?config.store, "sessiond listening (HTTP/1.1 and h2c)");
    // On SIGTERM/SIGINT: stop accepting, let in-flight requests finish, but never wait
    // longer than the shutdown timeout.
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown_signal().await;
        let _ = stopping.send(());
    };
    let deadline = args.shutdown_timeout;
    tokio::select! {
        served = app::serve(listener, app.router, signal) => served?,
        () = async move {
            if stopped.await.is_ok() {
                tokio::time::sleep(deadline).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(?deadline, "shutdown timeout reached with requests still in flight");
        }
    }
    tracing::info!("sessiond stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

async fn operator_core(store: &StoreArgs) -> anyhow::Result<Core> {
    let store = app::open_store(&store.config()).await?;
    Ok(Core::new(
        store,
        Arc::new(SystemClock),
        PasswordHasher::recommended()?,
        CoreSettings::default(),
    ))
}

fn read_password_stdin(new: bool) -> anyhow::Result<Password> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from stdin")?;
    let line = input.lines().next().unwrap_or_default().to_owned();
    let parsed = if new {
        Password::parse_new(line)
    } else {
        Password::parse(line)
    };
    parsed.map_err(|e| anyhow::anyhow!("{}", e.message()))
}

fn user_id(raw: &str) -> anyhow::Result<UserId> {
    UserId::parse(raw).map_err(|e| anyhow::anyhow!("{}", e.message()))
}

fn print_user(user: &crate::domain::User) {
    println!("{}", crate::faces::admin::user_json(user));
}

async fn users(command: UsersCommand) -> anyhow::Result<()> {
    let system = Principal::system();
    let fail = |e: crate::domain::Error| anyhow::anyhow!("{}", e.message());
    match command {
        UsersCommand::Add(args) => {
            let login_name = LoginName::parse(args.login_name).map_err(fail)?;
            let password = if args.password_stdin {
                Some(read_password_stdin(true)?)
            } else {
                None
            };
            let core = operator_core(&args.store).await?;
            let user = core
                .add_user(NewUser {
                    login_name,
                    display_name: args.display_name,
                    organization_id: args.organization_id,
                    password,
                })
                .await
                .map_err(fail)?;
            println!("{}", user.id);
        }
        UsersCommand::List(args) => {
            let login_name = args
                .login_name
                .map(LoginName::parse)
                .transpose()
                .map_err(fail)?;
            let core = operator_core(&args.store).await?;
            let (users, _) = core
                .list_users(&system, login_name, args.offset, args.limit)
                .await
                .map_err(fail)?;
            users.iter().for_each(print_user);
        }
        UsersCommand::Show(args) => {
            let core = operator_core(&args.store).await?;
            print_user(
                &core
                    .get_user(&system, &user_id(&args.id)?)
                    .await
                    .map_err(fail)?,
            );
        }
        UsersCommand::Lock(args) => change_state(args, UserAction::Lock).await?,
        UsersCommand::Deactivate(args) => change_state(args, UserAction::Deactivate).await?,
        UsersCommand::Reactivate(args) => change_state(args, UserAction::Reactivate).await?,
        UsersCommand::SetPassword(args) => {
            let password = read_password_stdin(true)?;
            let core = operator_core(&args.store).await?;
            let (_, revoked) = core
                .set_password(&system, &user_id(&args.id)?, &password, !args.keep_sessions)
                .await
                .map_err(fail)?;
            eprintln!("password changed; {revoked} session(s) ended");
        }
    }
    Ok(())
}

async fn change_state(args: UserIdArgs, action: UserAction) -> anyhow::Result<()> {
    let core = operator_core(&args.store).await?;
    let (user, revoked) = core
        .change_user_state(&Principal::system(), &user_id(&args.id)?, action)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    print_user(&user);
    eprintln!("{revoked} session(s) ended");
    Ok(())
}

fn token_mint(args: TokenMintArgs) -> anyhow::Result<()> {
    for name in &args.permissions {
        if Permission::parse(name).is_none() {
            anyhow::bail!(
                "unknown permission {name:?}: use session.read, session.write, session.delete, user.read, user.write"
            );
        }
    }
    let key = EmbeddedKey::load_or_create(&args.data_dir)?;
    let settings = crate::auth::JwtSettings {
        issuer: args.jwt_issuer,
        audience: args.jwt_audience,
    };
    let token = mint(
        &key,
        &settings,
        &args.subject,
        &args.permissions,
        args.ttl,
        SystemClock.now(),
    )?;
    println!("{token}");
    Ok(())
}

/// The effective serve settings as TOML, with the database password redacted.
fn show(args: &ServeArgs) -> String {
    fn opt<T: std::fmt::Debug>(v: &Option<T>) -> String {
        v.as_ref()
            .map_or_else(|| String::from("(unset)"), |v| format!("{v:?}"))
    }
    let d = |d: &Duration| format!("{:?}", humantime::format_duration(*d).to_string());
    let lines = [
        ("listen", format!("{:?}", args.listen.to_string())),
        (
            "data-dir",
            format!("{:?}", args.store.data_dir.display().to_string()),
        ),
        (
            "database-url",
            args.store.database_url.as_deref().map_or_else(
                || String::from("(embedded SQLite)"),
                |u| format!("{:?}", redact_url(u)),
            ),
        ),
        ("instance-id", format!("{:?}", args.instance_id)),
        ("body-limit", args.body_limit.to_string()),
        (
            "cors-allowed-origins",
            format!("{:?}", args.cors_allowed_origins),
        ),
        (
            "max-password-attempts",
            args.max_password_attempts.to_string(),
        ),
        ("session-cookie", format!("{:?}", args.session_cookie)),
        (
            "max-concurrent-requests",
            args.max_concurrent_requests.to_string(),
        ),
        ("request-timeout", d(&args.request_timeout)),
        ("shutdown-timeout", d(&args.shutdown_timeout)),
        (
            "prune-interval",
            args.prune_interval
                .as_ref()
                .map_or_else(|| String::from("(off)"), d),
        ),
        ("terminated-before", d(&args.retention.terminated_before)),
        ("expired-before", d(&args.retention.expired_before)),
        ("batch", args.retention.batch.to_string()),
        (
            "jwt-jwks-file",
            opt(&args
                .jwt
                .jwt_jwks_file
                .as_ref()
                .map(|p| p.display().to_string())),
        ),
        (
            "jwt-public-key-pem",
            opt(&args
                .jwt
                .jwt_public_key_pem
                .as_ref()
                .map(|p| p.display().to_string())),
        ),
        ("jwt-algorithm", opt(&args.jwt.jwt_algorithm)),
        ("jwt-issuer", opt(&args.jwt.jwt_issuer)),
        ("jwt-audience", opt(&args.jwt.jwt_audience)),
        (
            "db-max-connections",
            args.store.db_max_connections.to_string(),
        ),
        ("db-acquire-timeout", d(&args.store.db_acquire_timeout)),
        ("db-statement-timeout", d(&args.store.db_statement_timeout)),
        ("db-startup-timeout", d(&args.store.db_startup_timeout)),
        (
            "sqlite-synchronous",
            format!("{:?}", args.store.sqlite_synchronous.to_string()),
        ),
    ];
    lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}
