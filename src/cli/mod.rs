//! The command line: `serve` (the default), `config show`, `migrate`, `prune`, `users …`,
//! `sessions …` (in [`sessions`]) and `token mint`. The settings' flags (and their `SESSIOND_…` variables) come from
//! [`crate::settings`], flattened into each command that takes them; every command that
//! reads settings lays them over the `--config` file.

mod factors;
mod sessions;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::app::{self, Application};
use crate::auth::{EmbeddedKey, mint};
use crate::core::{Core, NewUser, PasswordHasher, UserAction};
use crate::domain::{Clock, LoginName, Password, Permission, Principal, SystemClock, UserId};
use crate::ops::trace::Traces;
use crate::settings::{
    EMBEDDED_AUDIENCE, EMBEDDED_ISSUER, Flags, PruneFlags, ServeFlags, Settings, StoreFlags,
    TokenFlags,
};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "sessiond",
    version,
    about = "Session API server: ZITADEL SessionService v2/v2beta over gRPC, gRPC-Web, Connect and REST",
    after_help = "Examples:\n  sessiond                          # serve on 127.0.0.1:8080 with ./data\n  sessiond serve --listen 0.0.0.0:8080 --data-dir /var/lib/sessiond\n  echo 's3cret-pass' | sessiond users add --login-name alice --password-stdin\n  sessiond token mint --subject admin --permissions session.read,session.write,session.delete\n  sessiond sessions revoke --user 123456789012345678"
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
    pub serve: ServeFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default command).
    #[command(
        after_help = "Example:\n  sessiond serve --listen 127.0.0.1:8080 --data-dir ./data --instance-id my-instance"
    )]
    Serve(ServeFlags),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// List, inspect and revoke sessions.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Shared Signals and back-channel logout: signing keys, logout clients.
    #[command(subcommand)]
    Signals(crate::signals::cli::SignalsCommand),
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
    Migrate(StoreFlags),
    /// Delete old terminated and expired sessions with their events, in batches.
    #[command(
        after_help = "Example:\n  sessiond prune --terminated-before 30d --expired-before 30d"
    )]
    Prune(PruneFlags),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the settings `serve` would use with the same flags, environment and file.
    #[command(after_help = "Example:\n  sessiond --config /etc/sessiond.toml config show")]
    Show(ServeFlags),
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
    /// List or remove a user's second factors.
    #[command(subcommand)]
    Factors(factors::FactorsCommand),
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
    pub store: StoreFlags,
}

#[derive(Debug, Args)]
pub struct UserIdArgs {
    /// The user's id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreFlags,
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
    pub store: StoreFlags,
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
    pub store: StoreFlags,
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
    /// Comma-separated permissions: session.read, session.write, session.delete, user.read, user.write, ssf.manage.
    #[arg(long, value_delimiter = ',')]
    pub permissions: Vec<String>,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub settings: TokenFlags,
}

/// Parses the command line (exiting with usage errors, code 2) and runs it.
pub async fn main() -> anyhow::Result<()> {
    run(Cli::parse()).await
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.as_deref();
    // `serve` installs the subscriber itself: its settings say whether traces are exported.
    let serve_flags = match &cli.command {
        None => Some(&cli.serve),
        Some(Command::Serve(flags)) => Some(flags),
        Some(_) => None,
    };
    if let Some(flags) = serve_flags {
        return serve(cli.log_format, Settings::load(file, flags)?).await;
    }
    telemetry::init(cli.log_format, None);
    match cli.command {
        None | Some(Command::Serve(_)) => Ok(()), // served above
        Some(Command::Config(ConfigCommand::Show(flags))) => {
            emit(&Settings::load(file, &flags)?.show())
        }
        Some(Command::Users(command)) => users(command, file).await,
        Some(Command::Sessions(command)) => sessions::run(command, file).await,
        Some(Command::Signals(command)) => crate::signals::cli::run(command, file).await,
        Some(Command::Token(TokenCommand::Mint(args))) => token_mint(args, file),
        Some(Command::Migrate(flags)) => {
            let store = app::open_store(&Settings::load(file, &flags)?).await?;
            let ready = store.schema_ready().await?;
            emit(&format!("migrations applied; schema ready: {ready}\n"))
        }
        Some(Command::Prune(flags)) => {
            let settings = Settings::load(file, &flags)?;
            let core = operator_core(&settings).await?;
            let totals = core
                .prune(app::retention(&settings), |t| {
                    eprintln!("pruned {} sessions, {} events so far", t.sessions, t.events)
                })
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            emit(&format!(
                "pruned {} sessions and {} events in {} batches\n",
                totals.sessions, totals.events, totals.batches
            ))
        }
    }
}

/// Serves until SIGTERM/SIGINT; with `--otlp-endpoint`, exports traces and sends the last
/// ones before exiting.
async fn serve(format: LogFormat, settings: Settings) -> anyhow::Result<()> {
    let endpoint = settings.otlp_endpoint.as_deref().filter(|e| !e.is_empty());
    let (traces, layer) = match endpoint {
        Some(endpoint) => {
            let (traces, layer) = Traces::start(
                endpoint,
                settings.otlp_ca_file.as_deref(),
                settings.otlp_sample_ratio.0,
            )?;
            (Some(traces), Some(layer))
        }
        None => (None, None),
    };
    telemetry::init(format, layer);
    let served = async {
        let app = Application::build(settings, Arc::new(SystemClock)).await?;
        app.run_until(shutdown_signal()).await
    }
    .await;
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    served
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

/// The core an operator command works on: the configured store, the wall clock.
async fn operator_core(settings: &Settings) -> anyhow::Result<Core> {
    let store = app::open_store(settings).await?;
    Ok(Core::new(
        store,
        Arc::new(SystemClock),
        PasswordHasher::recommended()?,
        app::core_settings(settings),
    ))
}

/// [`operator_core`] with the settings of `flags` over the file.
async fn store_core<const G: u8>(file: Option<&Path>, flags: &Flags<G>) -> anyhow::Result<Core> {
    operator_core(&Settings::load(file, flags)?).await
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

fn user_line(user: &crate::domain::User) -> String {
    format!("{}\n", crate::faces::admin::user_json(user))
}

fn print_user(user: &crate::domain::User) -> anyhow::Result<()> {
    emit(&user_line(user))
}

/// Writes to stdout; a reader that stopped early (`| head`) is not an error.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn users(command: UsersCommand, file: Option<&Path>) -> anyhow::Result<()> {
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
            let core = store_core(file, &args.store).await?;
            let user = core
                .add_user(NewUser {
                    login_name,
                    display_name: args.display_name,
                    organization_id: args.organization_id,
                    password,
                })
                .await
                .map_err(fail)?;
            emit(&format!("{}\n", user.id))?;
        }
        UsersCommand::List(args) => {
            let login_name = args
                .login_name
                .map(LoginName::parse)
                .transpose()
                .map_err(fail)?;
            let core = store_core(file, &args.store).await?;
            let (users, _) = core
                .list_users(&system, login_name, args.offset, args.limit)
                .await
                .map_err(fail)?;
            let lines: String = users.iter().map(user_line).collect();
            emit(&lines)?;
        }
        UsersCommand::Show(args) => {
            let core = store_core(file, &args.store).await?;
            print_user(
                &core
                    .get_user(&system, &user_id(&args.id)?)
                    .await
                    .map_err(fail)?,
            )?;
        }
        UsersCommand::Lock(args) => change_state(file, args, UserAction::Lock).await?,
        UsersCommand::Deactivate(args) => change_state(file, args, UserAction::Deactivate).await?,
        UsersCommand::Reactivate(args) => change_state(file, args, UserAction::Reactivate).await?,
        UsersCommand::SetPassword(args) => {
            let password = read_password_stdin(true)?;
            let core = store_core(file, &args.store).await?;
            let (_, revoked) = core
                .set_password(&system, &user_id(&args.id)?, &password, !args.keep_sessions)
                .await
                .map_err(fail)?;
            eprintln!("password changed; {revoked} session(s) ended");
        }
        UsersCommand::Factors(command) => factors::run(command, file).await?,
    }
    Ok(())
}

async fn change_state(
    file: Option<&Path>,
    args: UserIdArgs,
    action: UserAction,
) -> anyhow::Result<()> {
    let core = store_core(file, &args.store).await?;
    let (user, revoked) = core
        .change_user_state(&Principal::system(), &user_id(&args.id)?, action)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    print_user(&user)?;
    eprintln!("{revoked} session(s) ended");
    Ok(())
}

fn token_mint(args: TokenMintArgs, file: Option<&Path>) -> anyhow::Result<()> {
    for name in &args.permissions {
        if Permission::parse(name).is_none() {
            anyhow::bail!(
                "unknown permission {name:?}: use session.read, session.write, session.delete, user.read, user.write"
            );
        }
    }
    let settings = Settings::load(file, &args.settings)?;
    let key = EmbeddedKey::load_or_create(&settings.data_dir)?;
    // Signed with the embedded key: its default claims unless others are set.
    let claims = crate::auth::JwtSettings {
        issuer: settings
            .jwt_issuer
            .unwrap_or_else(|| EMBEDDED_ISSUER.to_owned()),
        audience: settings
            .jwt_audience
            .unwrap_or_else(|| EMBEDDED_AUDIENCE.to_owned()),
    };
    let token = mint(
        &key,
        &claims,
        &args.subject,
        &args.permissions,
        args.ttl,
        SystemClock.now(),
    )?;
    emit(&format!("{token}\n"))
}
