//! argon2id hashing and verification, run on the blocking pool behind a semaphore so that a
//! burst of password checks uses at most one thread per core and never blocks the async
//! workers that serve every other request.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::{Error, Password};

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish()
    }
}

impl PasswordHasher {
    /// `m_cost` KiB of memory, `t_cost` passes, one lane; `parallel` checks at once.
    pub fn new(m_cost: u32, t_cost: u32, parallel: usize) -> Result<Self, Error> {
        let params = Params::new(m_cost, t_cost, 1, None)
            .map_err(|e| Error::internal("SESSIOND-ARGON2-PARAMS", e.to_string()))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(parallel.max(1))),
        })
    }

    /// OWASP's recommended argon2id settings (19 MiB, 2 passes), one check per core.
    pub fn recommended() -> Result<Self, Error> {
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2);
        Self::new(19 * 1024, 2, cores)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let password = password.clone();
        let argon2 = self.argon2();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::internal("SESSIOND-ARGON2-HASH", e.to_string()))
        })
        .await
    }

    /// Whether `password` matches the PHC string `hash`. The parameters stored in the hash
    /// are the ones used, so hashes made with older settings keep working.
    pub async fn verify(&self, password: &Password, hash: &str) -> Result<bool, Error> {
        let password = password.clone();
        let hash = hash.to_owned();
        let argon2 = self.argon2();
        self.run(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| Error::internal("SESSIOND-ARGON2-STORED", e.to_string()))?;
            Ok(argon2
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::internal("SESSIOND-ARGON2-CLOSED", e))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::internal("SESSIOND-ARGON2-JOIN", e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_reject_wrong_passwords() -> Result<(), Error> {
        let hasher = PasswordHasher::new(1024, 1, 1)?;
        let right = Password::parse("correct horse")?;
        let hash = hasher.hash(&right).await?;
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(hasher.verify(&right, &hash).await?);
        assert!(
            !hasher
                .verify(&Password::parse("battery staple")?, &hash)
                .await?
        );
        Ok(())
    }
}
