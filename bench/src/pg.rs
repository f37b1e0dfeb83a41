//! PostgreSQL in the bench: a fresh database, seeded with SQL; the statements sessiond's
//! PostgreSQL store runs for DeleteSession, CreateSession and GetSession as `pgbench -f`
//! scripts (the storage ceiling), and `pgbench -S` for reads.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::client::SessionRef;

/// Seeded sessions `n` have id `SESSION_BASE + n`, user `USER_BASE + n / 10`, login name
/// `pg-<n / 10>@bench.example` and a token derived from `n` (see [`token`]).
const SESSION_BASE: i64 = 100_000_000_000_000_000;
const USER_BASE: i64 = 200_000_000_000_000_000;
/// Ids of the sessions the create script inserts start here.
const CREATE_BASE: i64 = 300_000_000_000_000_000;

/// The token of seeded session `n`: `sdst_` and the base64url of SHA-256("bench-n").
pub fn token(n: i64) -> String {
    format!(
        "sdst_{}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(format!("bench-{n}").as_bytes()))
    )
}

pub fn session(n: i64) -> SessionRef {
    SessionRef {
        id: (SESSION_BASE + n).to_string(),
        token: token(n),
        user_id: (USER_BASE + n / 10).to_string(),
    }
}

pub fn login(u: i64) -> String {
    format!("pg-{u}@bench.example")
}

/// Runs `psql` on `url` with `sql`; fails with psql's message.
pub fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `url` with its database replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// Seeds sessions `from..to` (each with its `session.added` event) and their users.
pub fn seed(url: &str, from: i64, to: i64, now: i64) -> anyhow::Result<()> {
    let expiration = now + 7 * 86_400_000_000;
    psql(
        url,
        &format!(
            "INSERT INTO users (id, login_name, login_name_folded, display_name, \
             organization_id, state, password_hash, failed_password_attempts, created_at, \
             updated_at) \
             SELECT ({USER_BASE} + u)::text, 'pg-' || u || '@bench.example', \
             'pg-' || u || '@bench.example', 'Bench user ' || u, 'sessiond', 'active', NULL, 0, \
             {now} - 86400000000, {now} - 86400000000 \
             FROM generate_series({from} / 10, ({to} - 1) / 10) u ON CONFLICT DO NOTHING"
        ),
    )?;
    psql(
        url,
        &format!(
            "INSERT INTO sessions (id, user_id, user_verified_at, password_verified_at, metadata, \
             user_agent, fingerprint_id, expiration, creator, resource_owner, creation_date, \
             change_date, sequence, token_hash, terminated_at) \
             SELECT ({SESSION_BASE} + n)::text, ({USER_BASE} + n / 10)::text, {now} - n, NULL, \
             '{{}}', '{{}}', NULL, {expiration}, 'bench', 'sessiond', {now} - n, {now} - n, 1, \
             sha256(convert_to('sdst_' || rtrim(translate(encode(sha256(convert_to('bench-' || \
             n, 'UTF8')), 'base64'), '+/', '-_'), '='), 'UTF8')), NULL \
             FROM generate_series({from}, {to} - 1) n"
        ),
    )?;
    psql(
        url,
        &format!(
            "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, \
             editor, user_id, resource_owner) \
             SELECT ({SESSION_BASE} + n)::text, 1, 'session.added', \
             '{{\"userId\":\"' || ({USER_BASE} + n / 10) || '\",\"checks\":[\"user\"],\
             \"metadataKeys\":[],\"lifetime\":\"604800s\",\"userAgent\":{{}}}}', {now} - n, \
             'bench', ({USER_BASE} + n / 10)::text, 'sessiond' \
             FROM generate_series({from}, {to} - 1) n"
        ),
    )?;
    psql(url, "VACUUM ANALYZE")?;
    Ok(())
}

const SESSION_COLUMNS: &str = "s.id, s.user_id, s.user_verified_at, s.password_verified_at, \
     s.metadata, s.user_agent, s.fingerprint_id, s.expiration, s.creator, s.resource_owner, \
     s.creation_date, s.change_date, s.sequence, s.token_hash, s.terminated_at, \
     s.totp_verified_at, s.recovery_code_verified_at, s.webauthn_verified_at, \
     s.webauthn_user_verified, s.otp_sms_verified_at, s.otp_email_verified_at, u.login_name, \
     u.display_name, u.organization_id FROM sessions s LEFT JOIN users u ON u.id = s.user_id";
const USER_COLUMNS: &str = "id, login_name, login_name_folded, display_name, organization_id, \
     state, password_hash, failed_password_attempts, created_at, updated_at, version FROM users";
const EVENT_COLUMNS: &str = "session_id, sequence, event_type, payload, created_at, editor, \
     user_id, resource_owner";

/// The pgbench scripts: each transaction of a script is one sessiond operation, with the
/// statements sessiond's PostgreSQL store sends for it (same text and shape; constants where
/// sessiond binds values that do not change the work). Variables: `i` counts each client's
/// transactions (`-D i=0`), `base` and `per` place each client in its own range of sessions.
pub fn scripts(dir: &Path) -> anyhow::Result<[(&'static str, std::path::PathBuf); 3]> {
    let get = format!(
        "\\set n random(0, :reads - 1)\n\
         \\set sid {SESSION_BASE} + :n\n\
         SELECT {SESSION_COLUMNS} WHERE s.id = :sid::text;\n"
    );
    // DeleteSession: the read, then one statement (its own transaction) with the guarded
    // update of every changing column (`Table::update`) and the `session.terminated` event,
    // inserted only if the update found its row.
    let delete = format!(
        "\\set i :i + 1\n\
         \\set n :base + :client_id * :per + :i\n\
         \\set sid {SESSION_BASE} + :n\n\
         \\set uid {USER_BASE} + :n / 10\n\
         SELECT {SESSION_COLUMNS} WHERE s.id = :sid::text;\n\
         WITH changed AS (UPDATE sessions SET user_id = :uid::text, \
         user_verified_at = 1700000000000000, password_verified_at = NULL, metadata = '{{}}', \
         user_agent = '{{}}', fingerprint_id = NULL, expiration = 1900000000000000, \
         change_date = 1800000000000000, sequence = 2, \
         token_hash = sha256(convert_to('t' || :n::text, 'UTF8')), \
         terminated_at = 1800000000000000, totp_verified_at = NULL, \
         recovery_code_verified_at = NULL, webauthn_verified_at = NULL, \
         webauthn_user_verified = NULL, otp_sms_verified_at = NULL, otp_email_verified_at = NULL \
         WHERE id = :sid::text AND sequence = 1 RETURNING 1) \
         INSERT INTO session_events ({EVENT_COLUMNS}) SELECT :sid::text, 2, \
         'session.terminated', '{{\"reason\":\"deleted\"}}', 1800000000000000, 'bench', \
         :uid::text, 'sessiond' FROM changed;\n"
    );
    // CreateSession with a user check: the user by login name; one statement (its own
    // transaction) with the user's share lock, the session row and its event; then the user
    // again by id. (pgbench reads `:name` even inside a string literal, hence the space in
    // `: null`.)
    let create = format!(
        "\\set i :i + 1\n\
         \\set sid {CREATE_BASE} + :base + :client_id * 1000000000 + :i\n\
         \\set u random(0, :users - 1)\n\
         \\set uid {USER_BASE} + :u\n\
         SELECT {USER_COLUMNS} WHERE login_name_folded = 'pg-' || :u::text || '@bench.example';\n\
         WITH locked AS (SELECT 1 FROM users WHERE id = :uid::text FOR SHARE), \
         added AS (INSERT INTO sessions (id, user_id, user_verified_at, password_verified_at, \
         metadata, user_agent, fingerprint_id, expiration, creator, resource_owner, \
         creation_date, change_date, sequence, token_hash, terminated_at, totp_verified_at, \
         recovery_code_verified_at, webauthn_verified_at, webauthn_user_verified, \
         otp_sms_verified_at, otp_email_verified_at) SELECT :sid::text, :uid::text, \
         1800000000000000, NULL, '{{}}', '{{}}', NULL, NULL, 'bench', 'sessiond', \
         1800000000000000, 1800000000000000, 1, sha256(convert_to(:sid::text, 'UTF8')), NULL, \
         NULL, NULL, NULL, NULL, NULL, NULL FROM (SELECT count(*) FROM locked) AS lock \
         RETURNING 1) \
         INSERT INTO session_events ({EVENT_COLUMNS}) SELECT :sid::text, 1, 'session.added', \
         '{{\"userId\":\"' || :uid::text || '\",\"checks\":[\"user\"],\"metadataKeys\":[],\
         \"lifetime\": null,\"userAgent\":{{}}}}', 1800000000000000, 'bench', :uid::text, \
         'sessiond' FROM added;\n\
         SELECT {USER_COLUMNS} WHERE id = :uid::text;\n"
    );
    let mut out = Vec::new();
    for (name, text) in [("get", get), ("create", create), ("delete", delete)] {
        let path = dir.join(format!("pgbench-{name}.sql"));
        std::fs::write(&path, text)?;
        out.push((name, path));
    }
    out.try_into()
        .map_err(|_| anyhow::anyhow!("three scripts expected"))
}

/// One pgbench run.
#[derive(Clone, Debug, Serialize)]
pub struct PgbenchRound {
    pub tps: f64,
    pub latency_ms: f64,
    pub transactions: u64,
    pub failed: u64,
    /// Cores' worth of the machine busy meanwhile (PostgreSQL and pgbench included).
    pub busy_cores: f64,
}

/// Runs pgbench (`-M prepared`, `clients` connections, 2 threads) for `seconds`; `script`
/// is a file or `None` for the built-in `-S`.
pub fn pgbench(
    url: &str,
    script: Option<&Path>,
    clients: usize,
    seconds: u64,
    vars: &[(&str, i64)],
) -> anyhow::Result<PgbenchRound> {
    let mut cmd = Command::new("pgbench");
    cmd.args(["-n", "-M", "prepared", "-j", "2"]).args([
        "-c",
        &clients.to_string(),
        "-T",
        &seconds.max(1).to_string(),
    ]);
    match script {
        Some(path) => {
            cmd.arg("-f").arg(path);
        }
        None => {
            cmd.arg("-S");
        }
    }
    for (name, value) in vars {
        cmd.args(["-D", &format!("{name}={value}")]);
    }
    cmd.arg(url);
    let jiffies0 = crate::procfs::machine_jiffies();
    let out = cmd.output().context("running pgbench")?;
    let jiffies1 = crate::procfs::machine_jiffies();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(
        out.status.success() && !err.contains("aborted"),
        "pgbench failed: {}{}",
        text.trim(),
        err.trim()
    );
    let field = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let busy = jiffies1.0.saturating_sub(jiffies0.0) as f64
        / jiffies1.1.saturating_sub(jiffies0.1).max(1) as f64;
    Ok(PgbenchRound {
        tps: field("tps ="),
        latency_ms: field("latency average ="),
        transactions: field("number of transactions actually processed:") as u64,
        failed: field("number of failed transactions:").max(0.0) as u64,
        busy_cores: busy * std::thread::available_parallelism().map_or(1, usize::from) as f64,
    })
}
