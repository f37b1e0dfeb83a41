//! The keys that sign Security Event Tokens and logout tokens: their own, never the
//! bearer-token key. RS256 by default (what every receiver supports), ES256 or EdDSA by
//! setting. Each key's `kid` is its RFC 7638 thumbprint. RS256 and ES256 tokens are signed
//! with OpenSSL (an RSA-2048 signature costs a third of what the pure-Rust `rsa` crate
//! takes, and revocations are signed once per target); EdDSA tokens with `jsonwebtoken`.
//! Batches of tokens are signed on threads of their own ([`on_signing_thread`]), one per
//! core, at a lower CPU priority than the threads that answer requests.
//!
//! Where they live: a directory `signals-keys/` in the data directory, one PKCS#8 PEM file
//! per key (mode 0600), named `<unix seconds>-<algorithm>.pem`; the newest is the signing
//! key. Rotating writes a newer file; the older keys stay in the JWKS for the retention
//! window after the key that replaced them was made (events signed with them may still be
//! in an outbox or retried), then their files are deleted. With a configured key file, that
//! key signs and is the only one published: the operator rotates by replacing the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::domain::Time;

/// The directory of generated keys inside the data directory.
pub const KEY_DIR: &str = "signals-keys";

/// How often the signer looks at the key directory for a rotation done by another process.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The algorithms a signals key may use.
pub fn parse_algorithm(name: &str) -> anyhow::Result<Algorithm> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => bail!("signals-key-algorithm: {other:?} is not one of RS256, ES256, EdDSA"),
    }
}

fn file_tag(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "es256",
        Algorithm::EdDSA => "eddsa",
        _ => "rs256",
    }
}

/// What computes the signatures of a key.
enum Signer {
    /// RS256 (RSASSA-PKCS1-v1_5) or ES256 by OpenSSL.
    OpenSsl(PKey<Private>),
    /// EdDSA by `jsonwebtoken`.
    Jwt(EncodingKey),
}

/// One private key, ready to sign.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    signer: Signer,
    /// The public JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from PKCS#8 PEM text; the algorithm follows from the key type.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            if key.size() < 256 {
                bail!("RSA signals keys must have at least 2048 bits");
            }
            let public = key.to_public_key();
            let members = json!({
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            });
            let der = key.to_pkcs1_der().context("encoding the RSA key")?;
            let rsa = Rsa::private_key_from_der(der.as_bytes()).context("the RSA key")?;
            let key = PKey::from_rsa(rsa).context("the RSA key")?;
            return Ok(Self::new(Algorithm::RS256, Signer::OpenSsl(key), members));
        }
        if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &key.public_key(),
                false,
            );
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                bail!("the P-256 key has no affine coordinates");
            };
            let members = json!({
                "crv": "P-256",
                "kty": "EC",
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
            });
            let der = key.to_pkcs8_der().context("encoding the P-256 key")?;
            let key = PKey::private_key_from_pkcs8(der.as_bytes()).context("the P-256 key")?;
            return Ok(Self::new(Algorithm::ES256, Signer::OpenSsl(key), members));
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            let members = json!({
                "crv": "Ed25519",
                "kty": "OKP",
                "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
            });
            let der = key.to_pkcs8_der().context("encoding the Ed25519 key")?;
            return Ok(Self::new(
                Algorithm::EdDSA,
                Signer::Jwt(EncodingKey::from_ed_der(der.as_bytes())),
                members,
            ));
        }
        bail!("not a PKCS#8 PEM private key of RSA (2048+ bits), P-256 or Ed25519")
    }

    fn new(alg: Algorithm, signer: Signer, members: Value) -> Self {
        let kid = thumbprint(&members);
        let mut jwk = members;
        if let Some(object) = jwk.as_object_mut() {
            object.insert("kid".into(), Value::String(kid.clone()));
            object.insert("alg".into(), Value::String(alg_name(alg).into()));
            object.insert("use".into(), Value::String("sig".into()));
        }
        Self {
            kid,
            alg,
            signer,
            jwk,
        }
    }

    /// Signs `claims` as a compact JWS with this JOSE `typ`.
    pub fn sign(&self, typ: &str, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(self.alg);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        let key = match &self.signer {
            Signer::Jwt(encoding) => {
                return jsonwebtoken::encode(&header, claims, encoding).context("signing a token");
            }
            Signer::OpenSsl(key) => key,
        };
        // RFC 7515 compact serialization: header.payload.signature, each base64url.
        let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), key)?;
        signer.update(token.as_bytes())?;
        let signature = signer.sign_to_vec()?;
        let signature = if self.alg == Algorithm::ES256 {
            // OpenSSL gives a DER ECDSA-Sig-Value; JWS wants R || S, 32 bytes each (RFC 7518
            // section 3.4).
            let sig = EcdsaSig::from_der(&signature)?;
            let mut raw = sig.r().to_vec_padded(32)?;
            raw.extend(sig.s().to_vec_padded(32)?);
            raw
        } else {
            signature
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "RS256",
    }
}

/// RFC 7638: SHA-256 of the required members, in lexicographic order without whitespace
/// (`serde_json` keeps object keys sorted), base64url.
pub fn thumbprint(members: &Value) -> String {
    let canonical = members.to_string();
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

/// A new private key as PKCS#8 PEM.
pub fn generate_pem(alg: Algorithm) -> anyhow::Result<String> {
    let mut rng = rand::rngs::OsRng;
    let pem = match alg {
        Algorithm::RS256 => rsa::RsaPrivateKey::new(&mut rng, 2048)
            .context("generating an RSA key")?
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding the RSA key")?,
        Algorithm::ES256 => p256::SecretKey::random(&mut rng)
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding the P-256 key")?,
        Algorithm::EdDSA => ed25519_dalek::SigningKey::generate(&mut rng)
            .to_pkcs8_pem(LineEnding::LF)
            .context("encoding the Ed25519 key")?,
        other => bail!("{other:?} is not a signals algorithm"),
    };
    Ok(pem.to_string())
}

/// Where the keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Generated keys in this directory, of this algorithm, older ones published for this long.
    Directory {
        dir: PathBuf,
        alg: Algorithm,
        retention: Duration,
    },
    /// One configured key file.
    File(PathBuf),
}

/// The keys in force: the signing key and every public key still published.
#[derive(Debug)]
pub struct Keys {
    pub signing: Arc<SigningKey>,
    pub published: Vec<Value>,
}

/// Loads the keys, creating the first key (or a key of a newly configured algorithm) in a
/// key directory, and deleting keys past their retention.
pub fn load(source: &KeySource, now: Time) -> anyhow::Result<Keys> {
    match source {
        KeySource::File(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading the signals key {}", path.display()))?;
            let key = SigningKey::from_pem(&pem)
                .with_context(|| format!("the signals key {}", path.display()))?;
            let published = vec![key.jwk.clone()];
            Ok(Keys {
                signing: Arc::new(key),
                published,
            })
        }
        KeySource::Directory {
            dir,
            alg,
            retention,
        } => {
            let mut files = key_files(dir)?;
            if files.last().is_none_or(|(_, tag, _)| tag != file_tag(*alg)) {
                rotate(dir, *alg, now)?;
                files = key_files(dir)?;
            }
            let Some((_, _, newest)) = files.last() else {
                bail!("no signals key in {}", dir.display());
            };
            let signing = Arc::new(read_key(newest)?);
            let mut published = vec![signing.jwk.clone()];
            // A key is published until `retention` after its successor was made.
            for pair in files.windows(2).rev() {
                let ((_, _, older), (replaced_at, _, _)) = (&pair[0], &pair[1]);
                let until = replaced_at.saturating_add(retention.as_secs());
                if until > now.unix_parts().0.max(0) as u64 {
                    published.push(read_key(older)?.jwk);
                } else {
                    let _ = std::fs::remove_file(older);
                }
            }
            Ok(Keys { signing, published })
        }
    }
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signals key {}", path.display()))?;
    SigningKey::from_pem(&pem).with_context(|| format!("the signals key {}", path.display()))
}

/// The key files of a directory, oldest first: (made at, algorithm tag, path).
fn key_files(dir: &Path) -> anyhow::Result<Vec<(u64, String, PathBuf)>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((made, tag)) = name
            .strip_suffix(".pem")
            .and_then(|stem| stem.split_once('-'))
        else {
            continue;
        };
        if let Ok(made) = made.parse::<u64>() {
            files.push((made, tag.to_owned(), path.clone()));
        }
    }
    files.sort();
    Ok(files)
}

/// Makes a new signing key of `alg` in `dir` (mode 0600); the previous ones stay published
/// for the retention window. Returns the new key's `kid`.
pub fn rotate(dir: &Path, alg: Algorithm, now: Time) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let newest = key_files(dir)?.last().map_or(0, |(made, _, _)| *made);
    // Names order keys: never reuse or go below the newest one's second.
    let made = (now.unix_parts().0.max(0) as u64).max(newest + 1);
    let pem = generate_pem(alg)?;
    let key = SigningKey::from_pem(&pem)?;
    let mut name = String::new();
    let _ = write!(name, "{made}-{}.pem", file_tag(alg));
    write_private(&dir.join(name), &pem)?;
    Ok(key.kid)
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The keys of a running server: reloaded at most every second, so a rotation by the
/// command line takes effect without a restart.
pub struct KeyRing {
    source: KeySource,
    state: Mutex<(Arc<Keys>, Instant)>,
}

impl KeyRing {
    pub fn new(source: KeySource, now: Time) -> anyhow::Result<Self> {
        let keys = load(&source, now)?;
        Ok(Self {
            source,
            state: Mutex::new((Arc::new(keys), Instant::now())),
        })
    }

    /// The keys in force now.
    pub fn keys(&self, now: Time) -> Arc<Keys> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.1.elapsed() >= RELOAD_EVERY {
            state.1 = Instant::now();
            match load(&self.source, now) {
                Ok(keys) => state.0 = Arc::new(keys),
                Err(e) => tracing::warn!(error = ?e, "reloading the signals keys failed"),
            }
        }
        state.0.clone()
    }

    /// Reloads at once (after a rotation in this process).
    pub fn reload(&self, now: Time) -> anyhow::Result<()> {
        let keys = load(&self.source, now)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = (Arc::new(keys), Instant::now());
        Ok(())
    }
}

/// The nice value of the signing threads where the idle policy is refused.
const SIGNING_NICE: libc::c_int = 19;

/// Puts the calling thread below every ordinary one: signing is background work, and under
/// load the threads that answer requests and the session writer come first. `SCHED_IDLE`
/// threads are preempted as soon as an ordinary thread wants the core and run on what the
/// machine leaves idle; under saturation tokens are signed later instead of the API answering
/// slower. Measured against nice 10 in the same runs, DeleteSession with 10 streams attached
/// kept a larger share of its rate (`bench/ANALYSIS.md`, "Shared Signals"). The price: where
/// other processes keep every core busy, signing waits for them.
pub(crate) fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler and setpriority with pid 0 change the calling thread
        // only (on Linux, scheduling policy and nice value are per thread).
        unsafe {
            if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
                libc::setpriority(libc::PRIO_PROCESS, 0, SIGNING_NICE);
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that sign tokens, one per core, at a lower CPU priority than the rest of the
/// process; started at the first use.
fn signing_threads() -> &'static Mutex<std::sync::mpsc::Sender<Job>> {
    static THREADS: OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    THREADS.get_or_init(|| {
        let (send, receive) = std::sync::mpsc::channel::<Job>();
        let receive = Arc::new(Mutex::new(receive));
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        for n in 0..threads {
            let receive = receive.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("signals-sign-{n}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        let job = receive
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a signing thread");
            }
        }
        Mutex::new(send)
    })
}

/// Runs `work` on a signing thread and waits for its result without holding an async
/// worker. Signing never uses more threads than the machine has cores.
pub async fn on_signing_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    signing_threads()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(Box::new(move || {
            let _ = done.send(work());
        }))
        .map_err(|_| anyhow::anyhow!("no signing thread runs"))?;
    result.await.context("a signing thread stopped")
}

/// How many signing threads a batch of tokens is split over.
pub fn signing_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // The RSA key of RFC 7638, section 3.1.
        let members = json!({
            "e": "AQAB",
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        });
        assert_eq!(
            thumbprint(&members),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn every_algorithm_makes_a_key_that_signs() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::from_pem(&generate_pem(alg).unwrap()).unwrap();
            assert_eq!(key.alg, alg);
            assert_eq!(key.jwk["kid"], key.kid.as_str());
            let token = key.sign("secevent+jwt", &json!({"a": 1})).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
            assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
            // Another implementation verifies it against the published JWK.
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let claims = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
                .unwrap()
                .claims;
            assert_eq!(claims, json!({"a": 1}));
            // A token signed by another key does not verify.
            let other = SigningKey::from_pem(&generate_pem(alg).unwrap()).unwrap();
            let forged = other.sign("secevent+jwt", &json!({"a": 1})).unwrap();
            assert!(jsonwebtoken::decode::<Value>(&forged, &decoding, &validation).is_err());
        }
    }

    #[test]
    fn a_rotated_key_stays_published_for_the_retention_window() {
        let dir = tempfile::tempdir().unwrap();
        let source = KeySource::Directory {
            dir: dir.path().to_owned(),
            alg: Algorithm::ES256,
            retention: Duration::from_secs(3600),
        };
        let t0 = Time::from_unix_parts(1_700_000_000, 0);
        let first = load(&source, t0).unwrap();
        let second_kid = rotate(dir.path(), Algorithm::ES256, t0).unwrap();
        let after = load(&source, t0).unwrap();
        assert_eq!(after.signing.kid, second_kid);
        assert_eq!(after.published.len(), 2);
        assert!(after.published.contains(&first.signing.jwk));
        let later = Time::from_unix_parts(1_700_000_000 + 7200, 0);
        let expired = load(&source, later).unwrap();
        assert_eq!(expired.published.len(), 1);
        assert_eq!(expired.signing.kid, second_kid);
    }
}
