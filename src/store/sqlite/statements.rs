//! Running statements on a rusqlite connection: binding the column lists' values, inserting
//! and updating rows from them, decoding result rows, and the dynamic search queries.
//!
//! Statement text is built once per table (and, for updates, once per set of changed
//! columns) and prepared once per connection; nothing here formats SQL per call. Which
//! statements a store call runs, and on which connection, is the caller's business.

use std::sync::OnceLock;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, params, params_from_iter};

use super::open::classify;
use crate::store::columns::{Role, Table, Value};
use crate::store::rows::{SqlBuilder, columns_via, session_from_row};
use crate::store::{SessionPage, StoreError};

columns_via!(rusqlite::Row<'_>, get, classify);

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(value_ref(self)))
    }
}

fn value_ref(value: &Value) -> ValueRef<'_> {
    match value {
        Value::Int(Some(v)) => ValueRef::Integer(*v),
        Value::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
        Value::Blob(Some(v)) => ValueRef::Blob(v),
        Value::Int(None) | Value::Text(None) | Value::Blob(None) => ValueRef::Null,
    }
}

/// SQLite's numbered placeholder `?n`.
fn param(n: usize) -> String {
    format!("?{n}")
}

/// The statements that write one table's rows, their text built on first use.
pub struct Writes {
    table: &'static Table,
    insert: OnceLock<String>,
    select_changing: OnceLock<String>,
    /// One UPDATE per set of changed columns (bit i: the i-th changing column).
    updates: OnceLock<Box<[OnceLock<String>]>>,
}

impl Writes {
    pub const fn new(table: &'static Table) -> Self {
        Self {
            table,
            insert: OnceLock::new(),
            select_changing: OnceLock::new(),
            updates: OnceLock::new(),
        }
    }

    /// Inserts a row encoded from the table's list.
    pub fn insert(&self, conn: &Connection, row: &[Value]) -> Result<(), StoreError> {
        let sql = self.insert.get_or_init(|| self.table.insert(param));
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute(params_from_iter(row)))
            .map(drop)
            .map_err(classify)
    }

    /// Writes `row` over the stored one if its guard column still holds `expected`; else
    /// `Conflict`. Only the columns that differ are set: every indexed column left out is an
    /// index entry SQLite does not rewrite (a termination touches the row and the two
    /// live-session indexes, not the token and user indexes).
    pub fn update(
        &self,
        conn: &Connection,
        row: &[Value],
        expected: i64,
    ) -> Result<(), StoreError> {
        let key = &row[self.table.position(Role::Key)];
        let select = self
            .select_changing
            .get_or_init(|| self.table.select_changing(param));
        let mut changed = 0u64;
        let mut values: Vec<&Value> = Vec::new();
        {
            let mut statement = conn.prepare_cached(select).map_err(classify)?;
            let mut rows = statement.query(params![key, expected]).map_err(classify)?;
            let Some(stored) = rows.next().map_err(classify)? else {
                return Err(StoreError::Conflict);
            };
            for (bit, (i, _)) in self.table.changing().enumerate() {
                if value_ref(&row[i]) != stored.get_ref(bit).map_err(classify)? {
                    changed |= 1 << bit;
                    values.push(&row[i]);
                }
            }
        }
        if changed == 0 {
            return Ok(());
        }
        values.push(key);
        let updates = self.updates.get_or_init(|| {
            let sets = 1usize << self.table.changing().count();
            (0..sets).map(|_| OnceLock::new()).collect()
        });
        let sql = updates[usize::try_from(changed).unwrap_or_default()]
            .get_or_init(|| self.table.update_some(changed, param));
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute(params_from_iter(values)))
            .map(drop)
            .map_err(classify)
    }
}

/// A dynamic query: SQL with `?` placeholders and its parameters in order.
pub struct Query {
    sql: String,
    params: Vec<rusqlite::types::Value>,
}

impl Query {
    pub fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            params: Vec::new(),
        }
    }
}

impl SqlBuilder for Query {
    fn sql(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    fn bind_text(&mut self, value: String) -> &mut Self {
        self.sql.push('?');
        self.params.push(rusqlite::types::Value::Text(value));
        self
    }

    fn bind_int(&mut self, value: i64) -> &mut Self {
        self.sql.push('?');
        self.params.push(rusqlite::types::Value::Integer(value));
        self
    }
}

/// The rows of a prepared statement, decoded.
pub fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(classify)?;
    let mut rows = statement.query(params).map_err(classify)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(classify)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// One integer (a count) from a prepared statement.
pub fn count(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(sql)
        .and_then(|mut st| st.query_row(params, |row| row.get(0)))
        .map_err(classify)?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Runs a count and a page of sessions in one read transaction (one snapshot).
pub fn session_page(
    conn: &Connection,
    (count_query, select): (Query, Query),
) -> Result<SessionPage, StoreError> {
    let tx = conn.unchecked_transaction().map_err(classify)?;
    let total = count(&tx, &count_query.sql, params_from_iter(count_query.params))?;
    let sessions = all_rows(&tx, &select.sql, params_from_iter(select.params), |row| {
        session_from_row(row)
    })?;
    tx.commit().map_err(classify)?;
    Ok(SessionPage { sessions, total })
}
