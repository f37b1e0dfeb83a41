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
use crate::store::rows::{SessionSearch, SqlBuilder, columns_via, session_from_row};
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

/// What the one-statement update does with a changing column.
#[derive(Clone, Copy)]
enum Part {
    /// Set to its new value.
    Set,
    /// The guard: set to its new value, and required to hold the expected one.
    Guard,
    /// Required to hold its new value already; not set.
    Kept,
    /// Required to be NULL, and set.
    SetFromNull,
    /// Required to be NULL, and left NULL.
    Null,
}

impl Indexed {
    fn name(&self) -> &'static str {
        match self {
            Self::Kept(name) | Self::SetFromNull(name) => name,
        }
    }
}

impl Value {
    fn is_null(&self) -> bool {
        matches!(
            self,
            Value::Int(None) | Value::Text(None) | Value::Blob(None)
        )
    }
}

/// SQLite's numbered placeholder `?n`.
fn param(n: usize) -> String {
    format!("?{n}")
}

/// A changing column that an index reads, and how an update in one statement treats it.
///
/// SQLite rewrites an index entry whenever its UPDATE sets a column the index reads (or a
/// column of a partial index's condition), even to the same value. So the one-statement
/// update never sets such a column on a guess: it either checks that the stored value is the
/// new one, or sets it only where it was NULL.
#[derive(Clone, Copy, Debug)]
pub enum Indexed {
    /// Expected unchanged: the update requires `column IS new value` and does not set it.
    Kept(&'static str),
    /// Expected NULL before (a partial index's condition, such as `terminated_at`): the update
    /// requires `column IS NULL` and sets it when the new value is not NULL.
    SetFromNull(&'static str),
}

/// The statements that write one table's rows, their text built on first use.
pub struct Writes {
    table: &'static Table,
    indexed: &'static [Indexed],
    insert: OnceLock<String>,
    select_changing: OnceLock<String>,
    /// One UPDATE per set of changed columns (bit i: the i-th changing column).
    updates: OnceLock<Box<[OnceLock<String>]>>,
    /// One single-statement UPDATE per set of `SetFromNull` columns given a value (bit j: the
    /// j-th such column in `indexed`).
    in_place: OnceLock<Box<[OnceLock<String>]>>,
}

impl Writes {
    pub const fn new(table: &'static Table, indexed: &'static [Indexed]) -> Self {
        Self {
            table,
            indexed,
            insert: OnceLock::new(),
            select_changing: OnceLock::new(),
            updates: OnceLock::new(),
            in_place: OnceLock::new(),
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
    /// `Conflict`. No indexed column is set unless its value changes: every index entry left
    /// alone is one SQLite does not rewrite (a termination touches the row and the two
    /// live-session indexes, not the token and user indexes).
    ///
    /// The common change (indexed columns as [`Indexed`] expects them) is one UPDATE. Any
    /// other (a new token, a user set, a conflict) finds no row there, and is read, compared
    /// and written with only the columns that differ.
    pub fn update(
        &self,
        conn: &Connection,
        row: &[Value],
        expected: i64,
    ) -> Result<(), StoreError> {
        if self.update_in_place(conn, row, expected)? {
            return Ok(());
        }
        self.update_changed(conn, row, expected)
    }

    /// The one-statement update; false if no row matched it.
    fn update_in_place(
        &self,
        conn: &Connection,
        row: &[Value],
        expected: i64,
    ) -> Result<bool, StoreError> {
        let mut given = 0usize;
        let mut bit = 0;
        for indexed in self.indexed {
            if let Indexed::SetFromNull(name) = indexed {
                if !self.value_of(row, name).is_null() {
                    given |= 1 << bit;
                }
                bit += 1;
            }
        }
        let variants = self.in_place.get_or_init(|| {
            let nullable = self
                .indexed
                .iter()
                .filter(|i| matches!(i, Indexed::SetFromNull(_)))
                .count();
            (0..1usize << nullable).map(|_| OnceLock::new()).collect()
        });
        let sql = variants[given].get_or_init(|| self.in_place_sql(given));
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(row.len() + 2);
        let mut kept: Vec<&dyn ToSql> = Vec::new();
        for (i, part) in self.in_place_parts(given) {
            match part {
                Part::Set | Part::Guard | Part::SetFromNull => values.push(&row[i]),
                Part::Kept => kept.push(&row[i]),
                Part::Null => {}
            }
        }
        values.push(&row[self.table.position(Role::Key)]);
        values.push(&expected);
        values.extend(kept);
        let changed = conn
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(params_from_iter(values)))
            .map_err(classify)?;
        Ok(changed == 1)
    }

    /// What the one-statement update does with each changing column (by its position in an
    /// encoded row), for `given` (see `in_place`).
    fn in_place_parts(&self, given: usize) -> impl Iterator<Item = (usize, Part)> + '_ {
        let mut nullable_bit = 0;
        self.table.changing().map(move |(i, column)| {
            let part = match self.indexed.iter().find(|x| x.name() == column.name) {
                None if column.role == Role::Guard => Part::Guard,
                None => Part::Set,
                Some(Indexed::Kept(_)) => Part::Kept,
                Some(Indexed::SetFromNull(_)) => {
                    let set = given & (1 << nullable_bit) != 0;
                    nullable_bit += 1;
                    if set { Part::SetFromNull } else { Part::Null }
                }
            };
            (i, part)
        })
    }

    /// `UPDATE … SET <set columns> WHERE key = ? AND guard = ? AND <kept> IS ? AND <nullable>
    /// IS NULL`; parameters in that order.
    fn in_place_sql(&self, given: usize) -> String {
        let columns = self.table.columns;
        let mut n = 0;
        let mut next = || {
            n += 1;
            param(n)
        };
        let mut sets = Vec::new();
        let mut guard = "";
        for (i, part) in self.in_place_parts(given) {
            match part {
                Part::Set | Part::SetFromNull => {
                    sets.push(format!("{} = {}", columns[i].name, next()));
                }
                Part::Guard => {
                    guard = columns[i].name;
                    sets.push(format!("{guard} = {}", next()));
                }
                Part::Kept | Part::Null => {}
            }
        }
        let key = columns[self.table.position(Role::Key)].name;
        let mut sql = format!(
            "UPDATE {} SET {} WHERE {key} = {} AND {guard} = {}",
            self.table.name,
            sets.join(", "),
            next(),
            next()
        );
        let mut nulls = Vec::new();
        for (i, part) in self.in_place_parts(given) {
            match part {
                Part::Kept => sql.push_str(&format!(" AND {} IS {}", columns[i].name, next())),
                Part::SetFromNull | Part::Null => nulls.push(columns[i].name),
                Part::Set | Part::Guard => {}
            }
        }
        for name in nulls {
            sql.push_str(&format!(" AND {name} IS NULL"));
        }
        sql
    }

    fn value_of<'a>(&self, row: &'a [Value], name: &str) -> &'a Value {
        let position = self
            .table
            .written()
            .find(|(_, c)| c.name == name)
            .map_or(0, |(i, _)| i);
        &row[position]
    }

    /// The update that reads the stored row first and sets only the columns that differ.
    fn update_changed(
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

/// The row of a lookup by a unique key, decoded, if there is one.
pub fn first_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(classify)?;
    let mut rows = statement.query(params).map_err(classify)?;
    rows.next().map_err(classify)?.map(decode).transpose()
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

/// Reads a page of sessions and, when the page does not tell, their count, in one read
/// transaction (one snapshot).
pub fn session_page(
    conn: &Connection,
    SessionSearch {
        select,
        count: counting,
        end,
    }: SessionSearch<Query>,
) -> Result<SessionPage, StoreError> {
    let tx = conn.unchecked_transaction().map_err(classify)?;
    let sessions = all_rows(&tx, &select.sql, params_from_iter(select.params), |row| {
        session_from_row(row)
    })?;
    let total = match end.total(sessions.len()) {
        Some(total) => total,
        None => count(&tx, &counting.sql, params_from_iter(counting.params))?,
    };
    tx.commit().map_err(classify)?;
    Ok(SessionPage { sessions, total })
}

#[cfg(test)]
mod tests {
    use super::super::SESSION_WRITES;
    use super::super::open::{Synchronous, migrate, open_writer};
    use super::*;
    use crate::store::columns::sessions;

    #[test]
    fn a_termination_is_one_update_that_sets_no_indexed_column() {
        assert_eq!(
            SESSION_WRITES.in_place_sql(1),
            "UPDATE sessions SET user_verified_at = ?1, password_verified_at = ?2, \
             metadata = ?3, user_agent = ?4, fingerprint_id = ?5, expiration = ?6, \
             change_date = ?7, sequence = ?8, terminated_at = ?9, totp_verified_at = ?10, \
             recovery_code_verified_at = ?11, webauthn_verified_at = ?12, \
             webauthn_user_verified = ?13, otp_sms_verified_at = ?14, \
             otp_email_verified_at = ?15 WHERE id = ?16 AND sequence = ?17 \
             AND user_id IS ?18 AND token_hash IS ?19 AND terminated_at IS NULL"
        );
        assert!(
            SESSION_WRITES
                .in_place_sql(0)
                .contains("otp_email_verified_at = ?14 WHERE id = ?15 AND sequence = ?16")
        );
    }

    #[tokio::test]
    async fn a_callers_visible_sessions_are_found_by_index_searches_not_a_scan() {
        use crate::domain::{SessionFilter, SortOrder};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        migrate(&path).await.unwrap();
        let conn = open_writer(&path, Synchronous::Normal).unwrap();
        let filter = SessionFilter {
            visible_to: Some("u1".into()),
            queries: Vec::new(),
            order: SortOrder::CreationDesc,
            limit: 100,
            offset: 0,
        };
        let search = crate::store::rows::session_search(Query::new, &filter);
        for query in [search.count, search.select] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", query.sql))
                .unwrap()
                .query_map(params_from_iter(query.params.iter()), |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN")),
                "{}: {plan:?}",
                query.sql
            );
        }
    }

    fn stored(conn: &Connection, id: &str) -> Vec<rusqlite::types::Value> {
        conn.query_row(
            "SELECT sequence, token_hash, terminated_at, metadata FROM sessions WHERE id = ?",
            [id],
            |row| (0..4).map(|i| row.get(i)).collect(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn updates_apply_at_their_sequence_whichever_statement_runs() {
        use rusqlite::types::Value as V;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        migrate(&path).await.unwrap();
        let conn = open_writer(&path, Synchronous::Normal).unwrap();
        let mut row: Vec<Value> = sessions::TABLE
            .written()
            .map(|(_, c)| match c.name {
                "id" => Value::Text(Some("s1".into())),
                "metadata" | "user_agent" | "creator" | "resource_owner" => {
                    Value::Text(Some("{}".into()))
                }
                "creation_date" | "change_date" | "sequence" => Value::Int(Some(1)),
                "token_hash" => Value::Blob(Some(vec![1; 32])),
                "user_id" | "fingerprint_id" => Value::Text(None),
                _ => Value::Int(None),
            })
            .collect();
        SESSION_WRITES.insert(&conn, &row).unwrap();
        let at = |name: &str| {
            sessions::TABLE
                .written()
                .position(|(_, c)| c.name == name)
                .unwrap()
        };
        let (sequence, token, terminated, metadata) = (
            at("sequence"),
            at("token_hash"),
            at("terminated_at"),
            at("metadata"),
        );

        // A plain change: one statement.
        row[sequence] = Value::Int(Some(2));
        row[metadata] = Value::Text(Some(r#"{"a":"b"}"#.into()));
        assert!(SESSION_WRITES.update_in_place(&conn, &row, 1).unwrap());
        // A new token: the one statement finds no row, the read-and-compare update writes it.
        row[sequence] = Value::Int(Some(3));
        row[token] = Value::Blob(Some(vec![2; 32]));
        assert!(!SESSION_WRITES.update_in_place(&conn, &row, 2).unwrap());
        SESSION_WRITES.update(&conn, &row, 2).unwrap();
        // A stale sequence is a conflict either way.
        row[sequence] = Value::Int(Some(4));
        row[terminated] = Value::Int(Some(9));
        assert!(matches!(
            SESSION_WRITES.update(&conn, &row, 2),
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            stored(&conn, "s1"),
            [
                V::Integer(3),
                V::Blob(vec![2; 32]),
                V::Null,
                V::Text(r#"{"a":"b"}"#.into())
            ]
        );
        // The termination at the right sequence.
        SESSION_WRITES.update(&conn, &row, 3).unwrap();
        assert_eq!(
            stored(&conn, "s1"),
            [
                V::Integer(4),
                V::Blob(vec![2; 32]),
                V::Integer(9),
                V::Text(r#"{"a":"b"}"#.into())
            ]
        );
    }
}
