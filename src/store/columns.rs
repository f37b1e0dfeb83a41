//! The column lists: one per table, the only place a table's columns are named in order.
//! Each backend derives from them its SELECT column lists, its INSERT and UPDATE statements
//! (text built once, on first use) and the positions the row decoders in `rows` read; each
//! line says how the column's value is taken from the domain value.
//!
//! This module writes no SQL of its own beyond those column lists: filters, bulk statements
//! and anything a backend does differently stay in the backend modules.

use super::{NewEvent, StoreError};
use crate::domain::{Session, SessionId, Time, User, UserFactor};

/// A count or sequence as the databases store it (BIGINT), saturating.
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A value stored as JSON text (metadata, user agent, event payloads).
pub fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(Box::new(e)))
}

/// A column value as both backends bind it. `None` is SQL NULL; the variant still names the
/// column's type, which PostgreSQL needs to bind a NULL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl Value {
    fn text(value: impl Into<String>) -> Self {
        Value::Text(Some(value.into()))
    }

    fn int(value: i64) -> Self {
        Value::Int(Some(value))
    }

    fn time(at: Option<Time>) -> Self {
        Value::Int(at.map(Time::unix_micros))
    }
}

/// What the statements do with a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Identifies the row: inserted, and what an update finds its row by.
    Key,
    /// Inserted once, never updated.
    Fixed,
    /// Inserted and updated.
    Changes,
    /// Inserted and updated; an update applies only while the stored value is still the one
    /// the writer read (optimistic concurrency).
    Guard,
    /// Read only: an expression over a joined table. Joined columns come last.
    Joined,
}

#[derive(Debug)]
pub struct Column {
    /// The column's name; for a joined column, the SQL expression SELECT reads.
    pub name: &'static str,
    pub role: Role,
}

/// One table's columns in order, and what SELECT reads them from.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// The FROM clause of SELECT: the table (with its alias) and any joins.
    pub from: &'static str,
    /// Prefix of the table's own columns in SELECT, e.g. `s.`.
    pub alias: &'static str,
    pub columns: &'static [Column],
}

impl Table {
    /// `SELECT` of every column, in list order, `FROM` the table and its joins.
    pub fn select(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| match c.role {
                Role::Joined => c.name.to_owned(),
                _ => format!("{}{}", self.alias, c.name),
            })
            .collect();
        format!("SELECT {} FROM {}", columns.join(", "), self.from)
    }

    /// `SELECT` of every column and then `extra` (expressions the backend adds, such as a
    /// position), `FROM` the table and its joins.
    pub fn select_with(&self, extra: &str) -> String {
        let select = self.select();
        let from = format!(" FROM {}", self.from);
        match select.strip_suffix(&from) {
            Some(columns) => format!("{columns}, {extra}{from}"),
            None => select,
        }
    }

    /// The columns INSERT writes (all but the joined ones), with their positions in an
    /// encoded row.
    pub fn written(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.role != Role::Joined)
    }

    /// The columns UPDATE may change, with their positions in an encoded row.
    pub fn changing(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.written()
            .filter(|(_, c)| matches!(c.role, Role::Changes | Role::Guard))
    }

    /// Position in an encoded row of the (first) column with this role.
    pub fn position(&self, role: Role) -> usize {
        self.columns
            .iter()
            .position(|c| c.role == role)
            .unwrap_or_default()
    }

    fn name_of(&self, role: Role) -> &'static str {
        self.columns[self.position(role)].name
    }

    /// `INSERT` of an encoded row; `param(n)` writes the backend's placeholder `n` (from 1).
    pub fn insert(&self, param: fn(usize) -> String) -> String {
        let names: Vec<&str> = self.written().map(|(_, c)| c.name).collect();
        let params: Vec<String> = (1..=names.len()).map(param).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            names.join(", "),
            params.join(", ")
        )
    }

    /// `UPDATE` of every changing column, applied only where the guard column still holds the
    /// value read. Parameters: [`Table::update_params`].
    pub fn update(&self, param: fn(usize) -> String) -> String {
        let mut n = 0;
        let mut next = || {
            n += 1;
            param(n)
        };
        let sets: Vec<String> = self
            .changing()
            .map(|(_, c)| format!("{} = {}", c.name, next()))
            .collect();
        let (key, guard) = (next(), next());
        format!(
            "UPDATE {} SET {} WHERE {} = {key} AND {} = {guard}",
            self.name,
            sets.join(", "),
            self.name_of(Role::Key),
            self.name_of(Role::Guard)
        )
    }

    /// The parameters of [`Table::update`]: the changing columns of `row`, its key and the
    /// guard value read.
    pub fn update_params(&self, mut row: Vec<Value>, expected: Value) -> Vec<Value> {
        let key = std::mem::replace(&mut row[self.position(Role::Key)], Value::Int(None));
        let mut params: Vec<Value> = self
            .changing()
            .map(|(i, _)| std::mem::replace(&mut row[i], Value::Int(None)))
            .collect();
        params.push(key);
        params.push(expected);
        params
    }

    /// `SELECT` of the changing columns of the row with key `param(1)` whose guard column
    /// holds `param(2)`.
    pub fn select_changing(&self, param: fn(usize) -> String) -> String {
        let names: Vec<&str> = self.changing().map(|(_, c)| c.name).collect();
        format!(
            "SELECT {} FROM {} WHERE {} = {} AND {} = {}",
            names.join(", "),
            self.name,
            self.name_of(Role::Key),
            param(1),
            self.name_of(Role::Guard),
            param(2)
        )
    }

    /// `UPDATE` of only the changing columns whose bits are set in `mask` (bit i: the i-th
    /// changing column), of the row with the key given last.
    pub fn update_some(&self, mask: u64, param: fn(usize) -> String) -> String {
        let names: Vec<&str> = self
            .changing()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, (_, c))| c.name)
            .collect();
        let sets: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name} = {}", param(i + 1)))
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {} = {}",
            self.name,
            sets.join(", "),
            self.name_of(Role::Key),
            param(names.len() + 1)
        )
    }
}

/// `pub const NAME: usize = n;` for each name in turn: a column's position in SELECT.
macro_rules! positions {
    ($n:expr;) => {};
    ($n:expr; $first:ident $($rest:ident)*) => {
        #[allow(dead_code)] // a column the decoder does not read
        pub const $first: usize = $n;
        positions!($n + 1; $($rest)*);
    };
}

/// One table's list: a module with the [`Table`], each column's position (a constant named
/// after it), the SELECT of all columns (built once) and `encode`, which turns the domain
/// value into a row of [`Value`]s in list order.
macro_rules! table {
    (
        $(#[$doc:meta])*
        pub mod $module:ident = $name:literal from $from:literal alias $alias:literal;
        encode $value:ident: $ty:ty;
        $( $column:ident = $sql:literal, $role:ident $(=> $encode:expr)?; )*
    ) => {
        $(#[$doc])*
        pub mod $module {
            #[allow(unused_imports)]
            use super::*;

            positions!(0; $($column)*);

            pub static TABLE: Table = Table {
                name: $name,
                from: $from,
                alias: $alias,
                columns: &[$(Column { name: $sql, role: Role::$role }),*],
            };

            /// `SELECT` of every column from the table and its joins; queries append to it.
            pub static SELECT: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| TABLE.select());

            /// The written columns of one row, in list order.
            pub fn encode($value: &$ty) -> Result<Vec<Value>, StoreError> {
                Ok(vec![$($($encode,)?)*])
            }
        }
    };
}

fn user_factor(session: &Session) -> Option<&UserFactor> {
    session.factors.user.as_ref()
}

table! {
    /// Current state of every session, with its user's names joined in.
    pub mod sessions = "sessions" from "sessions s LEFT JOIN users u ON u.id = s.user_id" alias "s.";
    encode s: Session;
    ID = "id", Key => Value::text(s.id.as_str());
    USER_ID = "user_id", Changes => Value::Text(user_factor(s).map(|u| u.id.as_str().to_owned()));
    USER_VERIFIED_AT = "user_verified_at", Changes => Value::time(user_factor(s).map(|u| u.verified_at));
    PASSWORD_VERIFIED_AT = "password_verified_at", Changes => Value::time(s.factors.password_verified_at);
    METADATA = "metadata", Changes => Value::text(json(&s.metadata)?);
    USER_AGENT = "user_agent", Changes => Value::text(json(&s.user_agent)?);
    FINGERPRINT_ID = "fingerprint_id", Changes => Value::Text(s.user_agent.fingerprint_id.clone());
    EXPIRATION = "expiration", Changes => Value::time(s.expiration);
    CREATOR = "creator", Fixed => Value::text(s.creator.as_str());
    RESOURCE_OWNER = "resource_owner", Fixed => Value::text(s.resource_owner.as_str());
    CREATION_DATE = "creation_date", Fixed => Value::int(s.creation_date.unix_micros());
    CHANGE_DATE = "change_date", Changes => Value::int(s.change_date.unix_micros());
    SEQUENCE = "sequence", Guard => Value::int(to_i64(s.sequence));
    TOKEN_HASH = "token_hash", Changes => Value::Blob(Some(s.token_hash.as_bytes().to_vec()));
    TERMINATED_AT = "terminated_at", Changes => Value::time(s.terminated_at);
    TOTP_VERIFIED_AT = "totp_verified_at", Changes => Value::time(s.factors.totp_verified_at);
    RECOVERY_CODE_VERIFIED_AT = "recovery_code_verified_at", Changes => Value::time(s.factors.recovery_code_verified_at);
    WEBAUTHN_VERIFIED_AT = "webauthn_verified_at", Changes => Value::time(s.factors.web_auth_n.map(|w| w.verified_at));
    WEBAUTHN_USER_VERIFIED = "webauthn_user_verified", Changes => Value::Int(s.factors.web_auth_n.map(|w| i64::from(w.user_verified)));
    OTP_SMS_VERIFIED_AT = "otp_sms_verified_at", Changes => Value::time(s.factors.otp_sms_verified_at);
    OTP_EMAIL_VERIFIED_AT = "otp_email_verified_at", Changes => Value::time(s.factors.otp_email_verified_at);
    LOGIN_NAME = "u.login_name", Joined;
    DISPLAY_NAME = "u.display_name", Joined;
    ORGANIZATION_ID = "u.organization_id", Joined;
}

table! {
    /// The users sessions are for. The password-check counters (`password_checks_pending*`)
    /// are not listed: only the password-check statements touch them.
    pub mod users = "users" from "users" alias "";
    encode u: User;
    ID = "id", Key => Value::text(u.id.as_str());
    LOGIN_NAME = "login_name", Changes => Value::text(u.login_name.as_str());
    LOGIN_NAME_FOLDED = "login_name_folded", Changes => Value::text(u.login_name.folded());
    DISPLAY_NAME = "display_name", Changes => Value::text(u.display_name.as_str());
    ORGANIZATION_ID = "organization_id", Changes => Value::text(u.organization_id.as_str());
    STATE = "state", Changes => Value::text(u.state.as_str());
    PASSWORD_HASH = "password_hash", Changes => Value::Text(u.password_hash.clone());
    FAILED_PASSWORD_ATTEMPTS = "failed_password_attempts", Changes => Value::int(i64::from(u.failed_password_attempts));
    CREATED_AT = "created_at", Fixed => Value::int(u.created_at.unix_micros());
    UPDATED_AT = "updated_at", Changes => Value::int(u.updated_at.unix_micros());
    VERSION = "version", Guard => Value::int(to_i64(u.version));
}

/// An event as appended to a session's log.
pub struct Appended<'a> {
    pub session: &'a SessionId,
    pub sequence: u64,
    pub event: &'a NewEvent,
    /// The session's user and resource owner, copied so the feed filters without a join.
    pub user_id: Option<&'a str>,
    pub resource_owner: &'a str,
}

impl<'a> Appended<'a> {
    /// The event `session.sequence` of `session`.
    pub fn of(session: &'a Session, event: &'a NewEvent) -> Self {
        Self {
            session: &session.id,
            sequence: session.sequence,
            event,
            user_id: user_factor(session).map(|u| u.id.as_str()),
            resource_owner: session.resource_owner.as_str(),
        }
    }
}

table! {
    /// The append-only log of every session's changes.
    pub mod events = "session_events" from "session_events" alias "";
    encode e: Appended<'_>;
    SESSION_ID = "session_id", Key => Value::text(e.session.as_str());
    SEQUENCE = "sequence", Fixed => Value::int(to_i64(e.sequence));
    EVENT_TYPE = "event_type", Fixed => Value::text(e.event.event_type);
    PAYLOAD = "payload", Fixed => Value::text(json(&e.event.payload)?);
    CREATED_AT = "created_at", Fixed => Value::int(e.event.created_at.unix_micros());
    EDITOR = "editor", Fixed => Value::text(e.event.editor.as_str());
    USER_ID = "user_id", Fixed => Value::Text(e.user_id.map(str::to_owned));
    RESOURCE_OWNER = "resource_owner", Fixed => Value::text(e.resource_owner);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dollar(n: usize) -> String {
        format!("${n}")
    }

    #[test]
    fn statements_follow_the_list() {
        assert_eq!(
            events::TABLE.insert(dollar),
            "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, \
             editor, user_id, resource_owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        assert_eq!(
            users::TABLE.update(dollar),
            "UPDATE users SET login_name = $1, login_name_folded = $2, display_name = $3, \
             organization_id = $4, state = $5, password_hash = $6, failed_password_attempts = $7, \
             updated_at = $8, version = $9 WHERE id = $10 AND version = $11"
        );
        assert_eq!(
            sessions::TABLE.update_some(0b101, dollar),
            "UPDATE sessions SET user_id = $1, password_verified_at = $2 WHERE id = $3"
        );
        assert!(sessions::SELECT.starts_with("SELECT s.id, s.user_id, "));
        assert!(sessions::SELECT.contains("u.organization_id FROM sessions s LEFT JOIN users u"));
        assert_eq!(sessions::ORGANIZATION_ID, sessions::TABLE.columns.len() - 1);
    }

    #[test]
    fn joined_columns_come_last() {
        for table in [&sessions::TABLE, &users::TABLE, &events::TABLE] {
            let first_joined = table.columns.iter().position(|c| c.role == Role::Joined);
            let written = table.written().count();
            assert_eq!(first_joined.unwrap_or(written), written, "{}", table.name);
            assert!(table.changing().count() <= 64, "{}", table.name);
        }
    }
}
