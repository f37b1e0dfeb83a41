//! `sessiond signals …`: the signing keys and the back-channel logout clients from an
//! operator's shell, on the data directory or `--database-url` like `users …`. Safe while a
//! server runs: a rotated key is picked up by running servers within a second; a client
//! added here is served by the servers' workers like one added through the admin API.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::LogoutClient;
use super::face::client_json;
use crate::app;
use crate::domain::{Clock, SystemClock};
use crate::settings::{Settings, StoreFlags};
use crate::store::signals::TargetKind;

#[derive(Debug, Subcommand)]
pub enum SignalsCommand {
    /// Make a new signing key in the data directory; the previous one stays published in the
    /// JWKS for --signals-key-retention.
    #[command(after_help = "Example:\n  sessiond signals rotate-key --algorithm ES256")]
    RotateKey(RotateArgs),
    /// Manage back-channel logout clients.
    #[command(subcommand)]
    LogoutClients(LogoutClientsCommand),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// RS256, ES256 or EdDSA (default: --signals-key-algorithm).
    #[arg(long)]
    pub algorithm: Option<String>,
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Debug, Subcommand)]
pub enum LogoutClientsCommand {
    /// Register a client: it receives a logout token whenever one of its sessions ends.
    #[command(
        after_help = "Example:\n  sessiond signals logout-clients add --client-id shop --uri https://shop.example/backchannel-logout --sessions client --signals-issuer https://login.example"
    )]
    Add(AddArgs),
    /// List the clients as JSON lines.
    List(StoreOnly),
    /// Remove a client.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct StoreOnly {
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    pub client_id: String,
    /// The client's backchannel_logout_uri.
    #[arg(long)]
    pub uri: String,
    /// The client needs `sid` (always sent).
    #[arg(long)]
    pub session_required: bool,
    /// `all` sessions, or `client`: only sessions whose metadata client_id is the client's.
    #[arg(long, default_value = "all")]
    pub sessions: String,
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    pub client_id: String,
    #[command(flatten)]
    pub store: StoreFlags,
}

pub async fn run(command: SignalsCommand, file: Option<&Path>) -> anyhow::Result<()> {
    match command {
        SignalsCommand::RotateKey(args) => {
            let settings = Settings::load(file, &args.store)?;
            if settings.signals_key_file.is_some() {
                anyhow::bail!(
                    "the signals key is the configured --signals-key-file: replace that file to rotate"
                );
            }
            let name = args
                .algorithm
                .unwrap_or_else(|| settings.signals_key_algorithm.clone());
            let alg = super::keys::parse_algorithm(&name)?;
            let dir = settings.data_dir.join(super::keys::KEY_DIR);
            let kid = super::keys::rotate(&dir, alg, SystemClock.now())?;
            crate::cli::emit(&format!("new signing key {kid} ({name})\n"))
        }
        SignalsCommand::LogoutClients(command) => logout_clients(command, file).await,
    }
}

async fn signals(settings: &Settings) -> anyhow::Result<super::Signals> {
    let store = app::open_store(settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let core = crate::core::Core::new(
        store,
        clock.clone(),
        crate::core::PasswordHasher::recommended()?,
        app::core_settings(settings),
    );
    app::signals(settings, &core, clock)?
        .context("signals are off: on PostgreSQL, give --signals-key-file")
}

async fn logout_clients(command: LogoutClientsCommand, file: Option<&Path>) -> anyhow::Result<()> {
    let message = |e: crate::domain::Error| anyhow::anyhow!("{}", e.message());
    match command {
        LogoutClientsCommand::Add(args) => {
            let settings = Settings::load(file, &args.store)?;
            let issuer = settings
                .signals_issuer
                .clone()
                .context("--signals-issuer is required: the `iss` of the logout tokens")?;
            let signals = signals(&settings).await?;
            let row = signals
                .add_logout_client(LogoutClient {
                    client_id: &args.client_id,
                    uri: &args.uri,
                    session_required: args.session_required,
                    sessions: &args.sessions,
                    issuer: &issuer,
                })
                .await
                .map_err(message)?;
            crate::cli::emit(&format!("{}\n", client_json(&row)))
        }
        LogoutClientsCommand::List(args) => {
            let signals = signals(&Settings::load(file, &args.store)?).await?;
            let rows = signals
                .store()
                .targets(Some(TargetKind::Logout))
                .await
                .map_err(|e| message(e.into()))?;
            let lines: String = rows
                .iter()
                .map(|r| format!("{}\n", client_json(r)))
                .collect();
            crate::cli::emit(&lines)
        }
        LogoutClientsCommand::Remove(args) => {
            let signals = signals(&Settings::load(file, &args.store)?).await?;
            let removed = signals
                .store()
                .delete_target(TargetKind::Logout, &args.client_id)
                .await
                .map_err(|e| message(e.into()))?;
            if !removed {
                anyhow::bail!("no back-channel logout client {}", args.client_id);
            }
            crate::cli::emit(&format!("removed {}\n", args.client_id))
        }
    }
}
