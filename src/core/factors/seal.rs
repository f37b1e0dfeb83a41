//! Sealing TOTP seeds at rest: AES-256-GCM with a random 96-bit nonce per seed and the user
//! id as associated data, so a sealed seed opens only for the user it was made for. The key
//! is the server's (a file in the data directory, created on first start, or a file every
//! replica is given); the database holds only `nonce || ciphertext`.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::domain::{Error, UserId, error_ids};

/// File name of the sealing key inside the data directory.
pub const FACTOR_KEY_FILE: &str = "factor-seal.key";

const NONCE_LEN: usize = 12;

/// Seals and opens seeds with the server's key.
#[derive(Clone)]
pub struct SeedSealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SeedSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedSealer(***)")
    }
}

fn key_error() -> Error {
    Error::internal(
        error_ids::FACTOR_KEY,
        std::io::Error::other("a sealed seed does not open with this server's factor key"),
    )
}

impl SeedSealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    pub fn seal(&self, user: &UserId, seed: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: seed,
                    aad: user.as_str().as_bytes(),
                },
            )
            .map_err(|_| key_error())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, user: &UserId, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        if sealed.len() <= NONCE_LEN {
            return Err(key_error());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| key_error())?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: user.as_str().as_bytes(),
                },
            )
            .map_err(|_| key_error())
    }
}

/// What the store keeps to recognise the factor key (an HMAC of a fixed text under it; the
/// key cannot be recovered from it).
pub fn factor_key_fingerprint(key: &[u8; 32]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut out = [0u8; 32];
    if let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) {
        mac.update(b"sessiond factor key check");
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Reads the 32-byte key at `path` (hex), creating it (owner-only) when missing.
pub fn load_or_create_factor_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        write_private(path, hex.as_bytes())?;
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the factor key {}: {e}", path.display()))?;
    let text = text.trim();
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .unwrap_or_default();
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "the factor key {} must hold 64 hexadecimal digits (32 bytes)",
            path.display()
        )
    })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(std::fs::write(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_seed_opens_only_for_its_user_and_key() {
        let sealer = SeedSealer::new(&[7; 32]);
        let alice = UserId::from_trusted("alice".into());
        let bob = UserId::from_trusted("bob".into());
        let sealed = sealer.seal(&alice, b"seed bytes").expect("seal");
        assert!(!sealed.windows(4).any(|w| w == b"seed"));
        assert_eq!(sealer.open(&alice, &sealed).expect("open"), b"seed bytes");
        assert!(sealer.open(&bob, &sealed).is_err());
        assert!(SeedSealer::new(&[8; 32]).open(&alice, &sealed).is_err());
        assert!(sealer.open(&alice, &sealed[..5]).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(FACTOR_KEY_FILE);
        let first = load_or_create_factor_key(&path).expect("created");
        let again = load_or_create_factor_key(&path).expect("read");
        assert_eq!(first, again);
        std::fs::write(dir.path().join("bad"), "zz").expect("write");
        assert!(load_or_create_factor_key(&dir.path().join("bad")).is_err());
    }
}
