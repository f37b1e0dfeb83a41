//! `sessiond users factors list|remove`: a user's second factors, for the operator. Listing
//! shows no secret; removing ends the user's sessions unless `--keep-sessions`.

use std::path::Path;

use clap::{Args, Subcommand};

use super::{emit, store_core, user_id};
use crate::domain::{FactorKind, Principal};
use crate::settings::StoreFlags;

#[derive(Debug, Subcommand)]
pub enum FactorsCommand {
    /// List a user's factors as JSON lines (kind, state, times; never a secret).
    #[command(after_help = "Example:\n  sessiond users factors list 123456789012345678")]
    List(FactorsListArgs),
    /// Remove one of a user's factors and end its sessions.
    #[command(
        after_help = "Examples:\n  sessiond users factors remove 123456789012345678 totp\n  sessiond users factors remove 123456789012345678 passkey 987654321098765432"
    )]
    Remove(FactorsRemoveArgs),
}

#[derive(Debug, Args)]
pub struct FactorsListArgs {
    /// The user's id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Debug, Args)]
pub struct FactorsRemoveArgs {
    /// The user's id.
    pub id: String,
    /// The factor: totp, recovery_codes, otp_sms, otp_email, or passkey (with its id).
    pub kind: String,
    /// The passkey's id (as `list` shows it), when the factor is a passkey.
    pub passkey_id: Option<String>,
    /// Keep the user's sessions instead of ending them.
    #[arg(long)]
    pub keep_sessions: bool,
    #[command(flatten)]
    pub store: StoreFlags,
}

pub async fn run(command: FactorsCommand, file: Option<&Path>) -> anyhow::Result<()> {
    let system = Principal::system();
    let fail = |e: crate::domain::Error| anyhow::anyhow!("{}", e.message());
    match command {
        FactorsCommand::List(args) => {
            let id = user_id(&args.id)?;
            let core = store_core(file, &args.store).await?;
            let factors = core.user_factors(&system, &id).await.map_err(fail)?;
            let passkeys = core.list_passkeys(&system, &id).await.map_err(fail)?;
            let lines: String = factors
                .iter()
                .map(|f| format!("{}\n", crate::faces::admin::factor_json(f)))
                .chain(
                    passkeys
                        .iter()
                        .map(|p| format!("{}\n", crate::faces::admin::passkey_json(p))),
                )
                .collect();
            emit(&lines)?;
        }
        FactorsCommand::Remove(args) if args.kind == "passkey" => {
            let id = user_id(&args.id)?;
            let passkey = args
                .passkey_id
                .ok_or_else(|| anyhow::anyhow!("which passkey? give its id after `passkey`"))?;
            let core = store_core(file, &args.store).await?;
            let change = core
                .remove_passkey(&system, &id, &passkey, !args.keep_sessions)
                .await
                .map_err(fail)?;
            eprintln!(
                "passkey {passkey} removed; {} session(s) ended",
                change.revoked
            );
        }
        FactorsCommand::Remove(args) => {
            if args.passkey_id.is_some() {
                anyhow::bail!("only a passkey is removed by id");
            }
            let id = user_id(&args.id)?;
            let kind = FactorKind::parse(&args.kind).map_err(fail)?;
            let core = store_core(file, &args.store).await?;
            let change = core
                .remove_factor(&system, &id, kind, !args.keep_sessions)
                .await
                .map_err(fail)?;
            eprintln!(
                "{} removed; {} session(s) ended",
                kind.as_str(),
                change.revoked
            );
        }
    }
    Ok(())
}
