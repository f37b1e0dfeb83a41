//! `sessiond sessions list|show|revoke`: sessions from an operator's shell, on the data
//! directory or `--database-url` like `users …`. Safe while a server runs on the same store:
//! every revocation is a core command (one `session.terminated` event with the reason
//! `revoked_by_operator`, under the same concurrency rules as the server's own writes).
//!
//! Output is a table for people; `--json` prints one JSON object per line for scripts.

use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{emit, store_core, user_id};
use crate::core::{Core, PageRequest, RevokedBy, SessionAction};
use crate::domain::{Error, ErrorKind, LoginName, Principal, Session, SessionId, Time, UserId};
use crate::settings::StoreFlags;

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first: a user's (terminated ones too) or every live one.
    #[command(
        after_help = "Examples:\n  sessiond sessions list --login alice@example.com --active\n  sessiond sessions list --limit 50 --json\n  sessiond sessions list --user 123456789012345678 --page-token <token printed by the last page>"
    )]
    List(ListArgs),
    /// Show one session in full.
    #[command(after_help = "Example:\n  sessiond sessions show 2439297947711435816")]
    Show(ShowArgs),
    /// End one session, or every live session of a user (optionally but one).
    #[command(
        after_help = "Examples:\n  sessiond sessions revoke 2439297947711435816\n  sessiond sessions revoke --user 123456789012345678 --except 2439297947711435816"
    )]
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this user's sessions (by user id).
    #[arg(long, conflicts_with = "login")]
    pub user: Option<String>,
    /// Only this user's sessions (by login name).
    #[arg(long)]
    pub login: Option<String>,
    /// Only sessions neither terminated nor expired.
    #[arg(long)]
    pub active: bool,
    /// Sessions per page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Where to go on: the token printed after the previous page.
    #[arg(long)]
    pub page_token: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The session's id.
    pub id: String,
    /// One JSON object instead of lines of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreFlags,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The session to end.
    #[arg(required_unless_present = "user", conflicts_with = "user")]
    pub id: Option<String>,
    /// End every live session of this user instead.
    #[arg(long)]
    pub user: Option<String>,
    /// With --user: keep this session.
    #[arg(long, requires = "user")]
    pub except: Option<String>,
    #[command(flatten)]
    pub store: StoreFlags,
}

fn fail(e: Error) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}

fn session_id(raw: &str) -> anyhow::Result<SessionId> {
    SessionId::parse(raw).map_err(fail)
}

/// A missing session named plainly; other errors as the core words them.
fn no_session(id: &str) -> impl Fn(Error) -> anyhow::Error + '_ {
    move |e| match e.kind() {
        ErrorKind::NotFound => anyhow::anyhow!("no session with id {id}"),
        _ => fail(e),
    }
}

pub async fn run(command: SessionsCommand, file: Option<&Path>) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List(args) => list(args, file).await,
        SessionsCommand::Show(args) => {
            let id = session_id(&args.id)?;
            let core = store_core(file, &args.store).await?;
            let session = core
                .admin_session(&Principal::system(), &id, SessionAction::Read)
                .await
                .map_err(no_session(&args.id))?
                .session;
            let now = core.now();
            if args.json {
                emit(&format!("{}\n", session_json(&session, now)))?;
            } else {
                emit(&details(&session, now))?;
            }
            Ok(())
        }
        SessionsCommand::Revoke(args) => revoke(args, file).await,
    }
}

async fn list(args: ListArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let core = store_core(file, &args.store).await?;
    let user = match (&args.user, &args.login) {
        (Some(id), _) => Some(user_id(id)?),
        (None, Some(login)) => Some(user_by_login(&core, login).await?),
        (None, None) => None,
    };
    let page = PageRequest {
        size: Some(args.limit),
        token: args.page_token.clone(),
    };
    let active = args.active.then_some(true);
    let system = Principal::system();
    let result = match &user {
        Some(user) => core.admin_user_sessions(&system, user, active, &page).await,
        None => core.admin_all_sessions(&system, active, &page).await,
    }
    .map_err(fail)?;
    let sessions: Vec<Session> = result.sessions.into_iter().map(|s| s.session).collect();
    let next = result.next_token;
    let now = core.now();
    let mut out = if args.json {
        sessions
            .iter()
            .map(|session| format!("{}\n", session_json(session, now)))
            .collect()
    } else {
        table(&sessions, now)
    };
    if let Some(token) = next {
        let line = format!("next page: --page-token {token}");
        // JSON lines stay parseable: the token goes to stderr there.
        if args.json {
            eprintln!("{line}");
        } else {
            out.push_str(&line);
            out.push('\n');
        }
    }
    emit(&out)
}

async fn user_by_login(core: &Core, login: &str) -> anyhow::Result<UserId> {
    let name = LoginName::parse(login.to_owned()).map_err(fail)?;
    let (users, _) = core
        .list_users(&Principal::system(), Some(name), 0, 1)
        .await
        .map_err(fail)?;
    users
        .into_iter()
        .next()
        .map(|user| user.id)
        .ok_or_else(|| anyhow::anyhow!("no user with login name {login}"))
}

async fn revoke(args: RevokeArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let system = Principal::system();
    let core = store_core(file, &args.store).await?;
    if let Some(user) = &args.user {
        let user = user_id(user)?;
        let except = args.except.as_deref().map(session_id).transpose()?;
        let ended = core
            .admin_revoke_user_sessions(&system, &user, except.as_ref(), RevokedBy::Operator)
            .await
            .map_err(fail)?;
        emit(&format!("{ended} session(s) of user {user} ended\n"))?;
        return Ok(());
    }
    let raw = args.id.unwrap_or_default();
    let id = session_id(&raw)?;
    let (session, already) = core
        .operator_revoke_session(&system, &id)
        .await
        .map_err(no_session(&raw))?;
    let at = session.terminated_at.map(short).unwrap_or_default();
    if already {
        emit(&format!(
            "session {id} was already ended (terminated {at})\n"
        ))?;
    } else {
        emit(&format!("session {id} revoked (terminated {at})\n"))?;
    }
    Ok(())
}

fn state(session: &Session, now: Time) -> &'static str {
    if session.is_terminated() {
        "terminated"
    } else if session.is_expired(now) {
        "expired"
    } else {
        "active"
    }
}

/// A time to the second, for the table.
fn short(t: Time) -> String {
    let full = t.to_rfc3339();
    match full.get(..19) {
        Some(seconds) => format!("{seconds}Z"),
        None => full,
    }
}

fn login(session: &Session) -> &str {
    session
        .factors
        .user
        .as_ref()
        .map_or("-", |u| u.login_name.as_str())
}

fn table(sessions: &[Session], now: Time) -> String {
    let mut rows = vec![
        [
            "ID",
            "USER",
            "LOGIN",
            "CREATED",
            "LAST ACTIVE",
            "EXPIRES",
            "STATE",
        ]
        .map(String::from),
    ];
    for s in sessions {
        rows.push([
            s.id.to_string(),
            s.user_id().map_or("-", UserId::as_str).to_owned(),
            login(s).to_owned(),
            short(s.creation_date),
            short(s.change_date),
            s.expiration.map_or_else(|| "never".to_owned(), short),
            state(s, now).to_owned(),
        ]);
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn details(s: &Session, now: Time) -> String {
    let agent = &s.user_agent;
    let lines = [
        ("id", s.id.to_string()),
        (
            "user id",
            s.user_id().map_or("-", UserId::as_str).to_owned(),
        ),
        ("login name", login(s).to_owned()),
        ("created", s.creation_date.to_rfc3339()),
        ("last change", s.change_date.to_rfc3339()),
        (
            "expires",
            s.expiration
                .map_or_else(|| "never".to_owned(), Time::to_rfc3339),
        ),
        (
            "terminated at",
            s.terminated_at
                .map_or_else(|| "-".to_owned(), Time::to_rfc3339),
        ),
        ("state", state(s, now).to_owned()),
        (
            "user agent",
            agent.description.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        (
            "fingerprint",
            agent
                .fingerprint_id
                .clone()
                .unwrap_or_else(|| "-".to_owned()),
        ),
        ("ip", agent.ip.clone().unwrap_or_else(|| "-".to_owned())),
        ("metadata keys", {
            let keys: Vec<&str> = s.metadata.0.keys().map(String::as_str).collect();
            if keys.is_empty() {
                "-".to_owned()
            } else {
                keys.join(", ")
            }
        }),
        ("sequence", s.sequence.to_string()),
    ];
    lines
        .iter()
        .map(|(name, value)| format!("{:<15}{value}\n", format!("{name}:")))
        .collect()
}

/// One session as the JSON a script reads (the same fields as `show`).
fn session_json(s: &Session, now: Time) -> Value {
    json!({
        "id": s.id.as_str(),
        "userId": s.user_id().map(UserId::as_str),
        "loginName": s.factors.user.as_ref().map(|u| u.login_name.as_str()),
        "created": s.creation_date.to_rfc3339(),
        "changed": s.change_date.to_rfc3339(),
        "expires": s.expiration.map(Time::to_rfc3339),
        "terminatedAt": s.terminated_at.map(Time::to_rfc3339),
        "state": state(s, now),
        "userAgent": s.user_agent,
        "metadataKeys": s.metadata.0.keys().collect::<Vec<_>>(),
        "sequence": s.sequence,
    })
}
