//! SQLite's page cache with the layer of `store::page_cache` in place: a table whose b-trees
//! rebalance with swapped pages stays exactly what was written. Its own test binary, so that
//! the layer is installed before SQLite's first connection in the process.

use std::collections::BTreeMap;

use sessiond::store::page_cache;

#[test]
fn rebalanced_pages_stay_correct_through_the_layer() {
    assert!(
        page_cache::install(),
        "the layer goes in before SQLite's first connection"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA cache_size=-4096;
         CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);
         CREATE INDEX t_v ON t (v);",
    )
    .expect("schema");
    let mut expected = BTreeMap::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..80 {
        let before = expected.clone();
        let tx = conn.unchecked_transaction().expect("begin");
        for _ in 0..400 {
            let k = (next() % 20_000) as i64;
            if next() % 3 == 0 {
                tx.execute("DELETE FROM t WHERE k = ?1", [k])
                    .expect("delete");
                expected.remove(&k);
            } else {
                let v = vec![(next() % 251) as u8; 40 + (next() % 200) as usize];
                tx.execute("INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)", (k, &v))
                    .expect("insert");
                expected.insert(k, v);
            }
        }
        // Every fifth transaction rolls back: the cache must forget its pages too.
        if round % 5 == 4 {
            tx.rollback().expect("rollback");
            expected = before;
        } else {
            tx.commit().expect("commit");
        }
    }
    assert!(
        page_cache::parked() > 0,
        "the workload made SQLite swap pages"
    );
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    let want: Vec<(i64, Vec<u8>)> = expected.into_iter().collect();
    assert_eq!(read_all(&conn), want);
    // A second connection, with a cache of its own, reads the same from the file.
    let other = rusqlite::Connection::open(&path).expect("open again");
    assert_eq!(read_all(&other), want);
}

fn read_all(conn: &rusqlite::Connection) -> Vec<(i64, Vec<u8>)> {
    let mut stmt = conn
        .prepare("SELECT k, v FROM t ORDER BY k")
        .expect("select");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}
