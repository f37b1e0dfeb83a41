//! Verification keys for bearer JWTs, and the embedded Ed25519 signing key.
//!
//! With no key configured, the server creates an Ed25519 key in its data directory on first
//! start (mode 0600) and trusts tokens it signs; `sessiond token mint` signs with the same
//! file. Production points the server at the identity provider's JWKS or PEM instead.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding,
};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// File name of the embedded signing key inside the data directory.
pub const EMBEDDED_KEY_FILE: &str = "jwt-signing-key.pem";
/// `kid` of tokens signed with the embedded key.
pub const EMBEDDED_KEY_ID: &str = "sessiond-embedded";

/// Where verification keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// The embedded key in this data directory (created if missing).
    Embedded(PathBuf),
    /// A JWKS document (`{"keys":[…]}`) on disk.
    JwksFile(PathBuf),
    /// One PEM public key on disk, used with `algorithm`.
    PublicKeyPem {
        path: PathBuf,
        algorithm: Option<Algorithm>,
    },
}

/// One key a JWT may be verified with, pinned to one algorithm.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The embedded Ed25519 key.
pub struct EmbeddedKey {
    signing: SigningKey,
}

impl EmbeddedKey {
    /// Loads the key from `data_dir`, creating it (and the directory) on first use.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(EMBEDDED_KEY_FILE);
        if path.exists() {
            return Self::load(data_dir);
        }
        std::fs::create_dir_all(data_dir)?;
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
        write_private(&path, pem.as_bytes())?;
        Ok(Self { signing })
    }

    /// Loads an existing key; fails if there is none.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(EMBEDDED_KEY_FILE);
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "reading the signing key {}: {e} (start `sessiond serve` once to create it)",
                path.display()
            )
        })?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "the signing key {} is not an Ed25519 PKCS#8 PEM: {e}",
                path.display()
            )
        })?;
        Ok(Self { signing })
    }

    pub fn encoding_key(&self) -> anyhow::Result<EncodingKey> {
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
        Ok(EncodingKey::from_ed_pem(pem.as_bytes())?)
    }

    pub fn verify_key(&self) -> anyhow::Result<VerifyKey> {
        let pem = self
            .signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
        Ok(VerifyKey {
            kid: Some(EMBEDDED_KEY_ID.to_owned()),
            algorithm: Algorithm::EdDSA,
            key: DecodingKey::from_ed_pem(pem.as_bytes())?,
        })
    }
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

type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// Loads every verification key of a source.
pub fn load_keys(source: &KeySource) -> anyhow::Result<Vec<VerifyKey>> {
    match source {
        KeySource::Embedded(dir) => Ok(vec![EmbeddedKey::load_or_create(dir)?.verify_key()?]),
        KeySource::JwksFile(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading JWKS file {}: {e}", path.display()))?;
            let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("JWKS file {} is not a JWK set: {e}", path.display())
            })?;
            let mut keys = Vec::new();
            for jwk in &set.keys {
                let algorithm = match jwk.common.key_algorithm {
                    Some(alg) => jwk_algorithm(alg)?,
                    None => default_algorithm(&jwk.algorithm)?,
                };
                keys.push(VerifyKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key: DecodingKey::from_jwk(jwk)?,
                });
            }
            if keys.is_empty() {
                anyhow::bail!("JWKS file {} holds no keys", path.display());
            }
            Ok(keys)
        }
        KeySource::PublicKeyPem { path, algorithm } => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading public key {}: {e}", path.display()))?;
            let attempts: [(Algorithm, PemParser); 3] = [
                (Algorithm::EdDSA, DecodingKey::from_ed_pem),
                (Algorithm::RS256, DecodingKey::from_rsa_pem),
                (Algorithm::ES256, DecodingKey::from_ec_pem),
            ];
            for (default_alg, parse) in attempts {
                if let Ok(key) = parse(&pem) {
                    let algorithm = algorithm.unwrap_or(default_alg);
                    return Ok(vec![VerifyKey {
                        kid: None,
                        algorithm,
                        key,
                    }]);
                }
            }
            anyhow::bail!(
                "{} is not an Ed25519, RSA or EC public key in PEM form",
                path.display()
            )
        }
    }
}

fn jwk_algorithm(alg: KeyAlgorithm) -> anyhow::Result<Algorithm> {
    Ok(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        other => anyhow::bail!("JWK algorithm {other:?} is not accepted for bearer tokens"),
    })
}

fn default_algorithm(params: &AlgorithmParameters) -> anyhow::Result<Algorithm> {
    Ok(match params {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => anyhow::bail!("unsupported EC curve in JWKS"),
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => {
            anyhow::bail!("symmetric (oct) keys are not accepted for bearer tokens")
        }
    })
}
