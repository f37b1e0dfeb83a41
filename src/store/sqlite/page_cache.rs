//! SQLite's own page cache, with one page number kept out of its bookkeeping.
//!
//! When SQLite rebalances a b-tree it may swap the page numbers of two sibling pages, and
//! it parks one of them for the swap under the page number of the locking page
//! (`0x40000000 / page size + 1`, page 262,145 with 4 KiB pages), a page no database uses.
//! The default cache (`pcache1`) remembers the largest page number it has ever held, and at
//! the end of every write transaction drops the pages past the end of the database; when
//! that largest number lies more than a hash table's length past the end (always, for a
//! database under 1 GiB once a swap happened) it walks the whole hash table to do so. With
//! the writer's 64 MiB cache that walk was a quarter of the writer thread's time under a
//! stream of DeleteSession requests (bench/ANALYSIS.md, "The writer's cache walked at every
//! commit").
//!
//! [`install`] puts a thin layer over the default cache's methods that files the parked page
//! under number 0 instead, which SQLite never uses for a page: everything else is the default
//! cache unchanged. Pages are found by their number only through `xFetch` and `xRekey`, and
//! both translate the parked number; pcache1 itself files and frees the page by the number it
//! was given, so it stays consistent. `xTruncate`, which would have dropped a page still
//! under the parked number, drops one filed under 0 too, so the cache holds exactly what it
//! held before.
//!
//! SQLite takes a page cache only before it is initialised (the first connection opened in
//! the process), so [`install`] runs once, before the store opens its first connection. If
//! SQLite was already initialised by something else in the process, the default cache stays
//! and everything works as before, only with the walk.

use std::os::raw::{c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// Where SQLite's locking byte lies, and so which page number it parks pages under.
const PENDING_BYTE: u32 = 0x4000_0000;

/// The default cache's methods, as SQLite gave them before [`install`] replaced them.
struct Inner(ffi::sqlite3_pcache_methods2);

// The methods are plain C function pointers and a null argument; SQLite calls them from any
// thread, as it would call the default cache itself.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// Pages parked through the layer since the process started.
static PARKED: AtomicU64 = AtomicU64::new(0);

/// One cache: the default cache's object and the page number SQLite parks pages under.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    parked: c_uint,
    m: &'static ffi::sqlite3_pcache_methods2,
}

/// Puts the layer over SQLite's default page cache, once per process; true if it is in
/// place. Must run before SQLite's first connection in the process.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        // SAFETY: SQLITE_CONFIG_GETPCACHE2 writes the current methods into the struct passed;
        // SQLITE_CONFIG_PCACHE2 copies the struct passed. Both refuse (SQLITE_MISUSE) once
        // SQLite is initialised, which leaves the default cache in place.
        unsafe {
            let mut current: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
            if ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_GETPCACHE2,
                &mut current as *mut ffi::sqlite3_pcache_methods2,
            ) != ffi::SQLITE_OK
                || current.xCreate.is_none()
            {
                tracing::debug!("SQLite already initialised: its default page cache stays");
                return false;
            }
            let inner = INNER.get_or_init(|| Inner(current));
            let layered = ffi::sqlite3_pcache_methods2 {
                iVersion: inner.0.iVersion,
                pArg: std::ptr::null_mut(),
                xInit: Some(init),
                xShutdown: Some(shutdown),
                xCreate: Some(create),
                xCachesize: Some(cachesize),
                xPagecount: Some(pagecount),
                xFetch: Some(fetch),
                xUnpin: Some(unpin),
                xRekey: Some(rekey),
                xTruncate: Some(truncate),
                xDestroy: Some(destroy),
                xShrink: inner.0.xShrink.map(|_| shrink as unsafe extern "C" fn(_)),
            };
            let done = ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PCACHE2,
                &layered as *const ffi::sqlite3_pcache_methods2,
            ) == ffi::SQLITE_OK;
            if !done {
                tracing::debug!("SQLite refused the page cache: its default cache stays");
            }
            done
        }
    })
}

/// How many times SQLite parked a page through the layer (each a swap of two page numbers
/// that would have set off the walk), for tests and diagnostics.
pub fn parked() -> u64 {
    PARKED.load(Ordering::Relaxed)
}

/// The default cache's methods; SQLite calls the functions below only after `install`
/// stored them.
fn methods() -> Option<&'static ffi::sqlite3_pcache_methods2> {
    INNER.get().map(|inner| &inner.0)
}

/// SAFETY (for every function below): SQLite calls them with caches made by `create`, so
/// each `*mut sqlite3_pcache` is a `Box<Cache>` turned into a pointer, alive until `destroy`.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a Cache {
    unsafe { &*(p as *const Cache) }
}

/// The number the default cache files `key` under.
fn filed(cache: &Cache, key: c_uint) -> c_uint {
    if key == cache.parked { 0 } else { key }
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    let Some(m) = methods() else {
        return ffi::SQLITE_MISUSE;
    };
    unsafe { m.xInit.map_or(ffi::SQLITE_OK, |f| f(m.pArg)) }
}

unsafe extern "C" fn shutdown(_: *mut c_void) {
    if let Some(m) = methods()
        && let Some(f) = m.xShutdown
    {
        unsafe { f(m.pArg) }
    }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some((m, make)) = methods().and_then(|m| Some((m, m.xCreate?))) else {
        return std::ptr::null_mut();
    };
    let inner = unsafe { make(page_size, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let parked = PENDING_BYTE / u32::try_from(page_size.max(1)).unwrap_or(1) + 1;
    Box::into_raw(Box::new(Cache { inner, parked, m })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    let c = unsafe { cache(p) };
    if let Some(f) = c.m.xCachesize {
        unsafe { f(c.inner, pages) }
    }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    let c = unsafe { cache(p) };
    c.m.xPagecount.map_or(0, |f| unsafe { f(c.inner) })
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let c = unsafe { cache(p) };
    c.m.xFetch.map_or(std::ptr::null_mut(), |f| unsafe {
        f(c.inner, filed(c, key), create)
    })
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    let c = unsafe { cache(p) };
    if let Some(f) = c.m.xUnpin {
        unsafe { f(c.inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = unsafe { cache(p) };
    if new == c.parked {
        PARKED.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(f) = c.m.xRekey {
        unsafe { f(c.inner, page, filed(c, old), filed(c, new)) }
    }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let c = unsafe { cache(p) };
    let m = c.m;
    if limit <= c.parked
        && let (Some(fetch), Some(unpin)) = (m.xFetch, m.xUnpin)
    {
        // A page still under the parked number would have been dropped: drop it from 0. One
        // lookup of hash slot 0 per truncation (each commit, each reader's cache reset); no
        // flag tracks whether a page is parked, so nothing can fall out of step with pcache1.
        unsafe {
            let page = fetch(c.inner, 0, 0);
            if !page.is_null() {
                unpin(c.inner, page, 1);
            }
        }
    }
    if let Some(f) = m.xTruncate {
        unsafe { f(c.inner, limit) }
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let c = unsafe { Box::from_raw(p as *mut Cache) };
    if let Some(f) = c.m.xDestroy {
        unsafe { f(c.inner) }
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    let c = unsafe { cache(p) };
    if let Some(f) = c.m.xShrink {
        unsafe { f(c.inner) }
    }
}
