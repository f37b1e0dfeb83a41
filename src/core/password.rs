//! argon2id hashing and verification on a fixed pool of worker threads, one per core.
//!
//! Each worker owns its argon2 memory (19 MiB with the recommended settings) and reuses it
//! for every check: no allocation per check, and memory stays at workers × m_cost however
//! many checks arrive (a thread pool that allocates per check leaves one malloc arena per
//! thread holding tens of MiB). Checks never run on the async workers, so a burst of logins
//! cannot starve other requests. The queue in front of the workers is bounded: past it,
//! checks are refused at once with RESOURCE_EXHAUSTED instead of waiting longer than any
//! client would.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::domain::error_ids;
use crate::domain::{Error, ErrorKind, Password};

/// Work for a worker, given the worker's reusable memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    jobs: SyncSender<Job>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish()
    }
}

fn failed(id: &'static str, e: impl std::fmt::Display) -> Error {
    Error::internal(id, e.to_string())
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>) {
    let mut memory = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&mut memory),
            Err(_) => return,
        }
    }
}

/// Runs argon2 with `params` into `out`, growing the worker's memory if needed.
fn compute(
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), Error> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        grow(memory, blocks);
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .map_err(|e| failed(error_ids::ARGON2_FAILED, e))
}

/// Size of a transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// Grows a worker's memory to `blocks` blocks, in new memory that the kernel is asked to back
/// with huge pages before it is first touched. argon2 reads its memory at data-dependent
/// places: over 19 MiB of 4 KiB pages most of those reads miss the TLB, over 2 MiB pages
/// almost none do (bench/ANALYSIS.md, "argon2 on huge pages"). Where the kernel has none to
/// give, or does not do this, the memory is ordinary pages and nothing else changes.
fn grow(memory: &mut Vec<Block>, blocks: usize) {
    // A new, untouched buffer: the old one holds nothing a check needs.
    let mut fresh: Vec<Block> = Vec::with_capacity(blocks);
    let start = fresh.as_mut_ptr() as usize;
    let end = start + blocks * std::mem::size_of::<Block>();
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let length = end.saturating_sub(aligned) / HUGE_PAGE * HUGE_PAGE;
    if length > 0 {
        // SAFETY: the range lies inside `fresh`'s allocation, which this function owns; the
        // advice changes only how the kernel backs the pages, never their contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, length, libc::MADV_HUGEPAGE);
        }
    }
    fresh.resize(blocks, Block::default());
    *memory = fresh;
}

impl PasswordHasher {
    /// `m_cost` KiB of memory, `t_cost` passes, one lane; `workers` threads, and at most
    /// 32 checks waiting per worker.
    pub fn new(m_cost: u32, t_cost: u32, workers: usize) -> Result<Self, Error> {
        let params = Params::new(m_cost, t_cost, 1, None)
            .map_err(|e| failed(error_ids::ARGON2_PARAMS, e))?;
        let workers = workers.max(1);
        let (jobs, receiver) = sync_channel::<Job>(workers * 32);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..workers {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || worker(receiver))
                .map_err(|e| failed(error_ids::ARGON2_THREAD, e))?;
        }
        Ok(Self { params, jobs })
    }

    /// OWASP's recommended argon2id settings (19 MiB, 2 passes), one worker per core.
    pub fn recommended() -> Result<Self, Error> {
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2);
        Self::new(19 * 1024, 2, cores)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(work(memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::new(
                    ErrorKind::ResourceExhausted,
                    error_ids::PASSWORD_BUSY,
                    "too many password checks in progress, retry shortly",
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(failed(
                    error_ids::ARGON2_GONE,
                    "the password workers stopped",
                ));
            }
        }
        result
            .await
            .map_err(|e| failed(error_ids::ARGON2_LOST, e))?
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`) for a new password.
    #[tracing::instrument(level = "debug", name = "password.hash", skip_all)]
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let password = password.clone();
        let params = self.params.clone();
        self.run(move |memory| {
            let mut salt = [0u8; 16];
            OsRng.fill_bytes(&mut salt);
            let mut out = [0u8; 32];
            compute(
                params.clone(),
                password.expose().as_bytes(),
                &salt,
                &mut out,
                memory,
            )?;
            let salt =
                SaltString::encode_b64(&salt).map_err(|e| failed(error_ids::ARGON2_SALT, e))?;
            let output = Output::new(&out).map_err(|e| failed(error_ids::ARGON2_OUTPUT, e))?;
            let phc = PasswordHash {
                algorithm: argon2::ARGON2ID_IDENT,
                version: Some(Version::V0x13.into()),
                params: params
                    .try_into()
                    .map_err(|e| failed(error_ids::ARGON2_PARAMS, e))?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await
    }

    /// Whether `password` matches the PHC string `hash`, in constant time. The parameters
    /// stored in the hash are the ones used, so hashes made with older settings keep working.
    #[tracing::instrument(level = "debug", name = "password.verify", skip_all)]
    pub async fn verify(&self, password: &Password, hash: &str) -> Result<bool, Error> {
        let password = password.clone();
        let hash = hash.to_owned();
        self.run(move |memory| {
            let phc = PasswordHash::new(&hash).map_err(|e| failed(error_ids::ARGON2_STORED, e))?;
            if phc.algorithm != argon2::ARGON2ID_IDENT {
                return Err(failed(
                    error_ids::ARGON2_STORED,
                    "stored hash is not argon2id",
                ));
            }
            let params = Params::try_from(&phc).map_err(|e| failed(error_ids::ARGON2_STORED, e))?;
            let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
                return Err(failed(
                    error_ids::ARGON2_STORED,
                    "stored hash lacks salt or output",
                ));
            };
            let mut salt_bytes = [0u8; 64];
            let salt = salt
                .decode_b64(&mut salt_bytes)
                .map_err(|e| failed(error_ids::ARGON2_STORED, e))?;
            let mut out = vec![0u8; expected.len()];
            compute(params, password.expose().as_bytes(), salt, &mut out, memory)?;
            Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hash` verifies `right` and refuses `wrong`.
    async fn assert_verifies(
        hasher: &PasswordHasher,
        hash: &str,
        right: &str,
        wrong: &str,
    ) -> Result<(), Error> {
        assert!(
            hasher.verify(&Password::parse(right)?, hash).await?,
            "{right}"
        );
        assert!(
            !hasher.verify(&Password::parse(wrong)?, hash).await?,
            "{wrong}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn hashes_verify_and_reject_wrong_passwords() -> Result<(), Error> {
        let hasher = PasswordHasher::new(1024, 1, 1)?;
        let right = Password::parse("correct horse")?;
        let hash = hasher.hash(&right).await?;
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(!hash.contains("correct horse"));
        assert_verifies(&hasher, &hash, "correct horse", "battery staple").await
    }

    /// A PHC string made by the `argon2` crate itself, with its own memory handling.
    fn reference_hash(
        password: &str,
        salt: &[u8],
        m_cost: u32,
        t_cost: u32,
    ) -> Result<String, Error> {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let salt = SaltString::encode_b64(salt).map_err(|e| failed("t", e))?;
        let params = Params::new(m_cost, t_cost, 1, None).map_err(|e| failed("t", e))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| failed("t", e))?
            .to_string())
    }

    #[tokio::test]
    async fn hashes_from_the_reference_implementation_verify() -> Result<(), Error> {
        let reference = reference_hash("from elsewhere", b"0123456789abcdef", 2048, 2)?;
        let hasher = PasswordHasher::new(1024, 1, 1)?;
        assert_verifies(&hasher, &reference, "from elsewhere", "from nowhere").await
    }

    #[tokio::test]
    async fn memory_grown_onto_huge_pages_hashes_as_the_reference_does() -> Result<(), Error> {
        // Larger than several huge pages, so the advised range is not empty.
        let reference = reference_hash("on huge pages", b"fedcba9876543210", 19 * 1024, 1)?;
        let hasher = PasswordHasher::new(1024, 1, 1)?;
        // The worker's memory first grows to 1 MiB, then to 19 MiB.
        let small = hasher.hash(&Password::parse("warm-up")?).await?;
        assert_verifies(&hasher, &small, "warm-up", "cold").await?;
        assert_verifies(&hasher, &reference, "on huge pages", "on small pages").await
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() -> Result<(), Error> {
        let hasher = PasswordHasher::new(8 * 1024, 1, 1)?;
        let password = Password::parse("slow to hash")?;
        let checks: Vec<_> = (0..40)
            .map(|_| {
                let (hasher, password) = (hasher.clone(), password.clone());
                tokio::spawn(async move { hasher.hash(&password).await })
            })
            .collect();
        let mut refused = 0;
        for check in checks {
            if let Ok(Err(e)) = check.await {
                assert_eq!(e.kind(), ErrorKind::ResourceExhausted);
                refused += 1;
            }
        }
        assert!(
            refused > 0,
            "40 slow checks on a queue of 32 must refuse some"
        );
        Ok(())
    }
}
