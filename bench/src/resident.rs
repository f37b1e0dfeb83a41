//! Keeps a seeded database in the page cache while it is measured.
//!
//! The figures of this bench are those of a server whose database the operating system holds
//! in memory, as it does on any machine with free memory once the file has been read or
//! written. Some virtual machines do not: their host reclaims the guest's clean, idle page
//! cache within a minute or two (seen on the bench machine: a 500 MB file just written kept
//! 83 MB in memory after 60 s and 3 MB after 120 s, with 20 GB free). A database seeded
//! minutes before its write rounds is then read back from the disk one page at a time by
//! sessiond's single writer thread, and the first rounds measure the host's disk instead of
//! sessiond (DeleteSession's first round ran at 694 and 891 req/s in two such runs, against
//! ~6,000 once warm).
//!
//! [`pin`] maps the database file and locks the mapping (`mlock`), which reads it once and
//! keeps its pages in the page cache, shared with sessiond's own reads, until the returned
//! handle is dropped; nothing is copied and no CPU is spent while the measurement runs. Pages
//! appended later (new sessions, new events) are written by the run itself; those written
//! minutes before an operation can still have been reclaimed, a small remainder.
//! The write-ahead log is pinned as it stands at the start of each operation: sessiond writes
//! it again from its start after each checkpoint, and a log frame (4,120 bytes, not aligned to
//! pages) written over a page the host reclaimed makes the kernel read that page back first.
//! Where locking is not allowed (no `CAP_IPC_LOCK` and a small `RLIMIT_MEMLOCK`), the file
//! is read through once instead, which holds only until the host reclaims it, and the log says
//! so.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A locked mapping of a file; unlocked and unmapped on drop.
pub struct Pinned {
    addr: *mut libc::c_void,
    len: usize,
}

// The mapping is only unmapped through the handle; nothing reads through the pointer.
unsafe impl Send for Pinned {}
unsafe impl Sync for Pinned {}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` are exactly what mmap returned for this handle.
        unsafe {
            libc::munlock(self.addr, self.len);
            libc::munmap(self.addr, self.len);
        }
    }
}

/// How a file was brought into memory.
pub enum Resident {
    /// Locked in memory until dropped.
    Locked(Pinned),
    /// Read through once (locking was refused); the operating system may drop it again.
    Read,
}

impl Resident {
    pub fn describe(&self) -> String {
        match self {
            Self::Locked(p) => format!("{:.0} MB locked in memory", p.len as f64 / 1048576.0),
            Self::Read => "read once (mlock refused: its pages may be reclaimed again)".into(),
        }
    }
}

/// Brings `path` into the page cache and keeps it there while the handle lives.
pub fn pin(path: &Path) -> std::io::Result<Resident> {
    let file = File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if len == 0 {
        return Ok(Resident::Read);
    }
    // SAFETY: a fresh shared, read-only mapping of an open file; it is never dereferenced.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let pinned = Pinned { addr, len };
    // SAFETY: the range is the mapping just made.
    if unsafe { libc::mlock(addr, len) } == 0 {
        return Ok(Resident::Locked(pinned));
    }
    drop(pinned);
    read_through(&file)?;
    Ok(Resident::Read)
}

fn read_through(mut file: &File) -> std::io::Result<()> {
    use std::io::Read;
    let mut buf = vec![0u8; 4 << 20];
    while file.read(&mut buf)? > 0 {}
    Ok(())
}

/// [`pin`] on a blocking thread, for callers on the runtime.
pub async fn pin_async(path: &Path) -> anyhow::Result<Resident> {
    let path = path.to_owned();
    Ok(tokio::task::spawn_blocking(move || pin(&path)).await??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_file_is_in_memory_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let resident = pin(&path).unwrap();
        // Either way the file must still read back unchanged; a lock must cover every page.
        if let Resident::Locked(p) = &resident {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
            let pages = p.len.div_ceil(page);
            let mut vec = vec![0u8; pages];
            // SAFETY: querying residency of our own mapping.
            let rc = unsafe { libc::mincore(p.addr, p.len, vec.as_mut_ptr()) };
            assert_eq!(rc, 0);
            assert!(vec.iter().all(|b| b & 1 == 1), "every page resident");
        }
        drop(resident);
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 1 << 20]);
        assert!(pin(&dir.path().join("empty-missing")).is_err());
    }
}
