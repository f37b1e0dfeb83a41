//! The store's connections open their files through `sessiond-log`, a thin layer over SQLite's
//! own unix VFS that changes one thing: how a commit's frames reach the write-ahead log.
//!
//! SQLite appends each frame of a commit with two `pwrite`s of its own (the 24-byte frame
//! header, then the page), so a commit of N pages costs 2N system calls, and since a frame is
//! 4,120 bytes, each page of the log file is prepared and finished by the kernel about three
//! times. Profiles of the writer thread put those writes at about 40% of its time. Here the
//! frames of a commit are gathered in memory as SQLite appends them and handed to the kernel
//! in one write once the commit frame's page is in, before SQLite publishes the commit to
//! other connections and before it returns: what a commit leaves in the operating system's
//! cache, and when, is what it was, so durability is unchanged (a crash of the process
//! loses no acknowledged commit; `synchronous=full` still syncs the log on every commit,
//! and a sync always writes out what is gathered first).
//!
//! The rules (`write`, `write_out`, and the methods `written_then!` defines):
//! - only appends to the log are gathered; any other write to the log file (SQLite rewriting
//!   a frame in place) first writes out what is gathered, then goes straight through;
//! - every other operation on the log file (read, sync, size, truncate, lock, close, file
//!   control) first writes out what is gathered, so SQLite never sees the file without it;
//! - the commit frame (a frame header whose "database size" field is not zero) ends a
//!   gathering: the write of its page writes everything out, and a failure is that write's
//!   error, which SQLite turns into a failed commit;
//! - the database file's shared-memory barrier and locks, which SQLite uses to publish a
//!   commit, write out whatever its log still holds (nothing, after a commit frame); if that
//!   ever fails the process aborts rather than publish frames the log does not have.
//!
//! Only the main database file and its log are wrapped; journals and temporary files are
//! SQLite's own unix files, untouched.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

const NAME_C: &CStr = c"sessiond-log";
/// The name connections pass to open their files through this layer.
pub const NAME: &str = match NAME_C.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the VFS name is ASCII"),
};

/// Bytes gathered before they are written out even without a commit frame (a transaction
/// larger than this is written in pieces of this size, as SQLite appends it).
const GATHER_LIMIT: usize = 4 * 1024 * 1024;
/// Size of a log frame's header; its bytes 4..8 are the database size after a commit, zero in
/// the frames before the commit's last.
const FRAME_HEADER: usize = 24;
/// The most one write to the unix file takes: it writes at most 128 KiB - 1 bytes per system
/// call, masking larger sizes (a write of exactly 128 KiB would write nothing).
const WRITE_CHUNK: usize = 124 * 1024;

static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the layer with SQLite (once per process; later calls answer the first's outcome).
pub fn register() -> Result<(), String> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: registration happens once, with a VFS that lives for the whole process.
            unsafe { register_once() }
        })
        .clone()
}

unsafe fn register_once() -> Result<(), String> {
    // SAFETY (whole function): SQLite's own functions with valid arguments; the new VFS is
    // leaked, so it outlives every connection.
    unsafe {
        let base = ffi::sqlite3_vfs_find(c"unix".as_ptr());
        if base.is_null() {
            return Err("SQLite has no unix VFS".into());
        }
        let size = usize::try_from((*base).szOsFile).map_err(|e| e.to_string())?;
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: c_int::try_from(inner_offset() + size).map_err(|e| e.to_string())?,
            mxPathname: (*base).mxPathname,
            pNext: ptr::null_mut(),
            zName: NAME_C.as_ptr(),
            pAppData: base.cast(),
            xOpen: Some(open),
            xDelete: Some(delete),
            xAccess: Some(access),
            xFullPathname: Some(full_pathname),
            xDlOpen: Some(dl_open),
            xDlError: Some(dl_error),
            xDlSym: Some(dl_sym),
            xDlClose: Some(dl_close),
            xRandomness: Some(randomness),
            xSleep: Some(sleep),
            xCurrentTime: Some(current_time),
            xGetLastError: Some(last_error),
            xCurrentTimeInt64: Some(current_time_i64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        match ffi::sqlite3_vfs_register(vfs, 0) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!("registering the {NAME} VFS failed: {rc}")),
        }
    }
}

/// A wrapped file: SQLite's handle (whose methods are this layer's), what this layer keeps,
/// and the unix VFS's own file after it.
#[repr(C)]
struct File {
    handle: ffi::sqlite3_file,
    /// For a database file: its log, while open on the same connection.
    log_of_db: *mut File,
    /// For a log: its database file.
    db_of_log: *mut File,
    /// For a log: the appends gathered and not yet written out.
    log: Option<Log>,
}

/// Appends to a log file gathered in memory (see the module's rules).
#[derive(Default)]
struct Log {
    /// Offset in the file of `bytes[0]`.
    at: i64,
    bytes: Vec<u8>,
    /// The last append was a commit frame's header: its page ends the gathering.
    commit_header: bool,
}

const fn inner_offset() -> usize {
    // The unix VFS's file starts 8-byte aligned, as SQLite's own allocation is.
    std::mem::size_of::<File>().div_ceil(16) * 16
}

unsafe fn base_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `pAppData` of this layer's VFS is the unix VFS (see `register_once`).
    unsafe { (*vfs).pAppData.cast() }
}

unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: SQLite allocated `szOsFile` bytes for the file, which covers the unix file.
    unsafe { file.cast::<u8>().add(inner_offset()).cast() }
}

unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: the unix file was opened successfully, so it has its methods (static in SQLite).
    unsafe { &*(*inner(file)).pMethods }
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY (whole function): SQLite hands a block of `szOsFile` bytes; a file other than a
    // database or its log is the unix VFS's own file in that block, so SQLite calls only
    // the unix methods on it; a wrapped one is initialised before its methods are set.
    unsafe {
        let base = base_vfs(vfs);
        let Some(base_open) = (*base).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        let is_db = flags & ffi::SQLITE_OPEN_MAIN_DB != 0;
        let is_log = flags & ffi::SQLITE_OPEN_WAL != 0;
        if !is_db && !is_log {
            return base_open(base, name, file, flags, out_flags);
        }
        let ours = file.cast::<File>();
        ptr::write(
            ours,
            File {
                handle: ffi::sqlite3_file {
                    pMethods: ptr::null(),
                },
                log_of_db: ptr::null_mut(),
                db_of_log: ptr::null_mut(),
                log: is_log.then(Log::default),
            },
        );
        let rc = base_open(base, name, inner(file), flags, out_flags);
        if rc != ffi::SQLITE_OK {
            ptr::drop_in_place(ours);
            (*file).pMethods = ptr::null();
            return rc;
        }
        if (*(*inner(file)).pMethods).iVersion < 3 {
            // Without shared memory the log cannot be used; never the case for unix files.
            methods(file).xClose.map(|close| close(inner(file)));
            ptr::drop_in_place(ours);
            (*file).pMethods = ptr::null();
            return ffi::SQLITE_CANTOPEN;
        }
        if is_log {
            let db = ffi::sqlite3_database_file_object(name).cast::<File>();
            if !db.is_null() && ptr::eq((*db).handle.pMethods, &IO_METHODS) {
                (*ours).db_of_log = db;
                (*db).log_of_db = ours;
            }
        }
        (*file).pMethods = &IO_METHODS;
        ffi::SQLITE_OK
    }
}

/// Writes out what a log file has gathered (nothing to do for a database file).
unsafe fn write_out(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is one of this layer's open files.
    unsafe {
        let ours = file.cast::<File>();
        let Some(log) = (*ours).log.as_mut() else {
            return ffi::SQLITE_OK;
        };
        log.commit_header = false;
        if log.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = methods(file).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut at = log.at;
        for chunk in log.bytes.chunks(WRITE_CHUNK) {
            #[cfg(test)]
            tests::LOG_WRITES.with(|n| n.set(n.get() + 1));
            let len = chunk.len() as c_int; // at most WRITE_CHUNK
            rc = write(inner(file), chunk.as_ptr().cast(), len, at);
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += i64::from(len);
        }
        // Gathered bytes are written once: on a failure SQLite fails the commit, rolls back
        // and writes the frames again (from the same offset) on its next try.
        log.bytes.clear();
        if log.bytes.capacity() > GATHER_LIMIT * 2 {
            log.bytes.shrink_to(GATHER_LIMIT);
        }
        rc
    }
}

/// For a database file: writes out what its log has gathered, where SQLite cannot be told
/// of a failure (it is about to publish the commit); aborts the process on a failure.
unsafe fn write_out_log_of(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is one of this layer's open files; its log, if linked, is open.
    unsafe {
        let log = (*file.cast::<File>()).log_of_db;
        if log.is_null() {
            return;
        }
        let rc = write_out(log.cast());
        if rc != ffi::SQLITE_OK {
            eprintln!(
                "sessiond: writing the SQLite log failed ({rc}) where the commit cannot be \
                 undone; stopping rather than publish frames the log does not hold"
            );
            std::process::abort();
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file it opened once; nothing uses it afterwards.
    unsafe {
        let written = write_out(file);
        let ours = file.cast::<File>();
        if !(*ours).db_of_log.is_null() {
            (*(*ours).db_of_log).log_of_db = ptr::null_mut();
        }
        if !(*ours).log_of_db.is_null() {
            (*(*ours).log_of_db).db_of_log = ptr::null_mut();
        }
        let rc = match methods(file).xClose {
            Some(close) => close(inner(file)),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(ours);
        if written != ffi::SQLITE_OK {
            written
        } else {
            rc
        }
    }
}

/// Defines the file method `$name`: writes out what the file has gathered, then calls the unix
/// file's `$method` with SQLite's own arguments (answering `$missing` if it has none).
macro_rules! written_then {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: `file` is one of this layer's open files; the arguments are SQLite's.
            unsafe {
                let rc = write_out(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                methods(file).$method.map_or($missing, |f| f(inner(file), $($arg),*))
            }
        }
    };
}

written_then!(read, xRead, (buf: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64), ffi::SQLITE_IOERR_READ);
written_then!(truncate, xTruncate, (size: ffi::sqlite3_int64), ffi::SQLITE_IOERR_TRUNCATE);
written_then!(sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
written_then!(file_size, xFileSize, (size: *mut ffi::sqlite3_int64), ffi::SQLITE_IOERR_FSTAT);
written_then!(lock, xLock, (level: c_int), ffi::SQLITE_IOERR_LOCK);
written_then!(unlock, xUnlock, (level: c_int), ffi::SQLITE_IOERR_UNLOCK);
written_then!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
written_then!(file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);

// SAFETY (the methods below): SQLite's own arguments, passed on to the unix file's methods.

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `buf` holds `amount` bytes (SQLite's contract); the log is this file's own.
    unsafe {
        let ours = file.cast::<File>();
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if let Some(log) = (*ours).log.as_mut() {
            let end = log.at + log.bytes.len() as i64;
            let appends = log.bytes.is_empty() || offset == end;
            if appends && log.bytes.len() + len <= GATHER_LIMIT {
                if log.bytes.is_empty() {
                    log.at = offset;
                }
                let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
                log.bytes.extend_from_slice(bytes);
                if log.commit_header && len > FRAME_HEADER {
                    // The commit frame's page: the commit is complete.
                    return write_out(file);
                }
                log.commit_header = len == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
                return ffi::SQLITE_OK;
            }
            let rc = write_out(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            #[cfg(test)]
            tests::LOG_WRITES.with(|n| n.set(n.get() + 1));
        }
        match methods(file).xWrite {
            Some(write) => write(inner(file), buf, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwards to the unix file.
    unsafe { methods(file).xSectorSize.map_or(4096, |f| f(inner(file))) }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: forwards to the unix file.
    unsafe {
        methods(file)
            .xDeviceCharacteristics
            .map_or(0, |f| f(inner(file)))
    }
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwards SQLite's own arguments to the unix file.
    unsafe {
        match methods(file).xShmMap {
            Some(map) => map(inner(file), region, size, extend, out),
            None => ffi::SQLITE_IOERR_SHMMAP,
        }
    }
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: forwards to the unix file after the log is written out.
    unsafe {
        write_out_log_of(file);
        match methods(file).xShmLock {
            Some(lock) => lock(inner(file), offset, n, flags),
            None => ffi::SQLITE_IOERR_SHMLOCK,
        }
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: as `shm_lock`.
    unsafe {
        write_out_log_of(file);
        if let Some(barrier) = methods(file).xShmBarrier {
            barrier(inner(file));
        }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: as `shm_lock`.
    unsafe {
        write_out_log_of(file);
        match methods(file).xShmUnmap {
            Some(unmap) => unmap(inner(file), delete),
            None => ffi::SQLITE_OK,
        }
    }
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwards SQLite's own arguments to the unix file.
    unsafe {
        match methods(file).xFetch {
            Some(fetch) => fetch(inner(file), offset, amount, out),
            None => {
                *out = ptr::null_mut();
                ffi::SQLITE_OK
            }
        }
    }
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: forwards SQLite's own arguments to the unix file.
    unsafe {
        match methods(file).xUnfetch {
            Some(unfetch) => unfetch(inner(file), offset, page),
            None => ffi::SQLITE_OK,
        }
    }
}

// The VFS's own entry points: the unix VFS's, called with the unix VFS.

/// Defines the entry point `$name`, which calls the unix VFS's `$method` with the unix VFS and
/// SQLite's own arguments, or answers `$missing` if the unix VFS has none.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs, $($arg: $ty),*) -> $ret {
            // SAFETY: forwards SQLite's own arguments to the unix VFS.
            unsafe {
                let base = base_vfs(vfs);
                (*base).$method.map_or($missing, |f| f(base, $($arg),*))
            }
        }
    };
}

type DlSymbol = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

forward!(delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int, ffi::SQLITE_IOERR_DELETE);
forward!(access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_ACCESS);
forward!(full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int, ffi::SQLITE_CANTOPEN);
forward!(dl_open, xDlOpen, (name: *const c_char) -> *mut c_void, ptr::null_mut());
forward!(dl_error, xDlError, (n: c_int, out: *mut c_char) -> (), ());
forward!(dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char) -> DlSymbol, None);
forward!(dl_close, xDlClose, (handle: *mut c_void) -> (), ());
forward!(randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int, 0);
forward!(sleep, xSleep, (micros: c_int) -> c_int, 0);
forward!(current_time, xCurrentTime, (out: *mut f64) -> c_int, ffi::SQLITE_ERROR);
forward!(last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int, 0);
forward!(current_time_i64, xCurrentTimeInt64, (out: *mut ffi::sqlite3_int64) -> c_int, ffi::SQLITE_ERROR);

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    thread_local! {
        /// Writes this thread made to log files.
        pub(super) static LOG_WRITES: Cell<usize> = const { Cell::new(0) };
    }

    fn open(path: &Path, vfs: &str) -> Connection {
        register().unwrap();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags_and_vfs(path, flags, vfs).unwrap()
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*), sum(length(v)) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_commit_is_in_the_log_file_when_it_returns_whatever_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let writer = open(&path, NAME);
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .unwrap();
        writer.pragma_update(None, "synchronous", "NORMAL").unwrap();
        // Small enough for the log to restart (and its header to be written again) on the way.
        writer
            .pragma_update(None, "wal_autocheckpoint", 300)
            .unwrap();
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        // SQLite's own VFS on its own descriptor: it sees only what reached the file.
        let plain = open(&path, "unix");
        let mut rows = 0;
        // One page to several times the gathering limit, across the 128 KiB write bound.
        for pages in [1_i64, 2, 31, 32, 33, 64, 100, 500, 1_500, 3_000] {
            let tx = writer.unchecked_transaction().unwrap();
            for _ in 0..pages {
                tx.execute("INSERT INTO t (v) VALUES (randomblob(3000))", [])
                    .unwrap();
            }
            tx.commit().unwrap();
            rows += pages;
            assert_eq!(count(&plain), rows, "after a commit of {pages} rows");
        }
        // A rolled-back savepoint inside a commit, and a rolled-back transaction.
        writer
            .execute_batch(
                "BEGIN; INSERT INTO t (v) VALUES (randomblob(100)); SAVEPOINT s; \
                 INSERT INTO t (v) VALUES (randomblob(100)); ROLLBACK TO s; RELEASE s; COMMIT; \
                 BEGIN; DELETE FROM t; ROLLBACK;",
            )
            .unwrap();
        rows += 1;
        assert_eq!(count(&plain), rows);
        let check: String = plain
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_commit_reaches_the_log_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = open(&path, NAME);
        writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .unwrap();
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        let before = LOG_WRITES.with(Cell::get);
        let tx = writer.unchecked_transaction().unwrap();
        for _ in 0..20 {
            tx.execute("INSERT INTO t (v) VALUES (randomblob(3000))", [])
                .unwrap();
        }
        tx.commit().unwrap();
        // 20 pages of rows and a few of the tree: about 90 KB, one write (SQLite's own
        // appends would be two per page).
        assert_eq!(LOG_WRITES.with(Cell::get) - before, 1);
        let plain = open(&path, "unix");
        assert_eq!(count(&plain), 20);
    }
}
