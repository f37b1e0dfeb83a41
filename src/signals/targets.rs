//! What a receiver may configure, checked at the boundary: receiver URLs (https only; http to
//! a loopback address only when allowed; link-local and cloud metadata addresses never, by
//! literal address here and by every resolved address at delivery, see [`SafeResolver`]),
//! client ids, subjects (and how many a stream may remove); and the sealing of the `Authorization` header a receiver gives us
//! (AES-256-GCM with the server's sealing key, bound to the target it belongs to: the
//! database never holds it in clear, and no answer or log line ever shows it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore as _;
use reqwest::Url;
use serde_json::Value;

use crate::domain::{Error, error_ids};
use crate::store::signals::TargetKind;

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_argument(error_ids::SIGNALS_INVALID, message.into())
}

/// Whether an address must never receive a signal: link-local (cloud metadata services
/// answer at 169.254.169.254 and fd00:ec2::254), unspecified, broadcast.
pub fn forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_address(IpAddr::V4(v4));
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)
        }
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The longest receiver URL, and the longest subject (as JSON), in bytes.
const MAX_URL_BYTES: usize = 2048;
const MAX_SUBJECT_BYTES: usize = 2048;

/// The most subjects a receiver may remove from one stream. A stream's worker reads all of
/// them for every page of events it signs, so their number bounds that work and the rows a
/// stream keeps; removing one more is refused until one is added back.
pub const MAX_REMOVED_SUBJECTS: u32 = 10_000;

/// A receiver URL, checked.
pub fn receiver_url(text: &str, allow_loopback_http: bool) -> Result<Url, Error> {
    if text.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "a receiver URL must be at most {MAX_URL_BYTES} bytes"
        )));
    }
    let url = Url::parse(text).map_err(|_| invalid(format!("{text:?} is not an absolute URL")))?;
    if url.fragment().is_some() {
        return Err(invalid("a receiver URL must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "a receiver URL must not carry credentials; use the authorization header",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback_http && is_loopback_host(&url) => {}
        "http" if allow_loopback_http => {
            return Err(invalid(
                "http receiver URLs are allowed only to loopback addresses",
            ));
        }
        _ => return Err(invalid("a receiver URL must use https")),
    }
    let forbidden = match url.host() {
        Some(url::Host::Ipv4(ip)) => forbidden_address(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => forbidden_address(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "metadata.google.internal" || d == "metadata"
        }
        None => return Err(invalid("a receiver URL needs a host")),
    };
    if forbidden {
        return Err(invalid(
            "receiver URLs to link-local or cloud metadata addresses are refused",
        ));
    }
    Ok(url)
}

/// Resolves receiver host names for the HTTP client, refusing every forbidden address, so a
/// name that points at a metadata service is never connected to.
#[derive(Clone, Debug, Default)]
pub struct SafeResolver;

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !forbidden_address(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(
                    format!("{host} resolves to no address a signal may be sent to").into(),
                );
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Adds the certificate authorities of a PEM file to the ones an https receiver's certificate
/// may chain to (`--signals-ca-file`).
pub fn trust_authorities(
    builder: reqwest::ClientBuilder,
    path: &std::path::Path,
) -> anyhow::Result<reqwest::ClientBuilder> {
    use anyhow::Context as _;
    let pem = std::fs::read(path)
        .with_context(|| format!("signals-ca-file: reading {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("signals-ca-file: {} is not PEM", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "signals-ca-file: {} holds no certificate",
        path.display()
    );
    Ok(certificates
        .into_iter()
        .fold(builder, reqwest::ClientBuilder::add_root_certificate))
}

/// A client id or stream id: 1 to 200 RFC 3986 unreserved characters.
pub fn target_id(what: &str, id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what}: 1 to 200 characters of A-Z a-z 0-9 - . _ ~"
        )))
    }
}

/// A subject of the add/remove subject endpoints, as canonical JSON (sorted keys), of at
/// most [`MAX_SUBJECT_BYTES`].
pub fn subject(value: &Value) -> Result<String, Error> {
    let format = value
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("subject: an object with a \"format\" member"))?;
    if format.is_empty() || value.as_object().is_none_or(|o| o.len() < 2) {
        return Err(invalid("subject: a format and its identifying members"));
    }
    let text = value.to_string();
    if text.len() > MAX_SUBJECT_BYTES {
        return Err(invalid(format!(
            "subject: at most {MAX_SUBJECT_BYTES} bytes of JSON"
        )));
    }
    Ok(text)
}

/// Seals and opens receivers' `Authorization` headers.
#[derive(Clone)]
pub struct HeaderSealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for HeaderSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderSealer(***)")
    }
}

const NONCE_LEN: usize = 12;

fn associated(kind: TargetKind, id: &str) -> String {
    format!("sessiond-signals-authorization:{}:{id}", kind.as_str())
}

impl HeaderSealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    pub fn seal(&self, kind: TargetKind, id: &str, header: &str) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated(kind, id);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: header.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| seal_error())?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn open(&self, kind: TargetKind, id: &str, sealed: &[u8]) -> Result<String, Error> {
        if sealed.len() <= NONCE_LEN {
            return Err(seal_error());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| seal_error())?;
        let aad = associated(kind, id);
        let opened = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| seal_error())?;
        String::from_utf8(opened).map_err(|_| seal_error())
    }
}

fn seal_error() -> Error {
    Error::internal(
        error_ids::SIGNALS_SEAL,
        std::io::Error::other("a receiver's authorization header does not open with this key"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_urls_are_https_or_loopback_http_and_never_metadata() {
        assert!(receiver_url("https://rp.example/events", false).is_ok());
        assert!(receiver_url("http://rp.example/events", false).is_err());
        assert!(receiver_url("http://127.0.0.1:9/e", false).is_err());
        assert!(receiver_url("http://127.0.0.1:9/e", true).is_ok());
        assert!(receiver_url("http://[::1]:9/e", true).is_ok());
        assert!(receiver_url("http://10.0.0.1/e", true).is_err());
        assert!(receiver_url("https://169.254.169.254/latest", true).is_err());
        assert!(receiver_url("https://[fe80::1]/e", true).is_err());
        assert!(receiver_url("https://[::ffff:169.254.169.254]/e", true).is_err());
        assert!(receiver_url("https://metadata.google.internal/x", true).is_err());
        assert!(receiver_url("https://u:p@rp.example/", true).is_err());
        assert!(receiver_url("https://rp.example/#f", true).is_err());
        assert!(receiver_url("ftp://rp.example/", true).is_err());
        assert!(receiver_url("not a url", true).is_err());
        let long = format!("https://rp.example/{}", "a".repeat(MAX_URL_BYTES));
        assert!(receiver_url(&long, true).is_err());
    }

    #[test]
    fn subjects_need_a_format_and_a_member_and_stay_small() {
        let email = serde_json::json!({"format": "email", "email": "a@example.com"});
        assert_eq!(
            subject(&email).unwrap(),
            r#"{"email":"a@example.com","format":"email"}"#
        );
        assert!(subject(&serde_json::json!({"format": "email"})).is_err());
        assert!(subject(&serde_json::json!({"email": "a@example.com"})).is_err());
        assert!(subject(&serde_json::json!("a@example.com")).is_err());
        let huge = serde_json::json!({"format": "opaque", "id": "x".repeat(MAX_SUBJECT_BYTES)});
        assert!(subject(&huge).is_err());
    }

    #[test]
    fn a_sealed_header_opens_only_for_its_target() {
        let sealer = HeaderSealer::new(&[7; 32]);
        let sealed = sealer.seal(TargetKind::Stream, "a", "Bearer xyz").unwrap();
        assert!(!sealed.windows(3).any(|w| w == b"xyz"));
        assert_eq!(
            sealer.open(TargetKind::Stream, "a", &sealed).unwrap(),
            "Bearer xyz"
        );
        assert!(sealer.open(TargetKind::Stream, "b", &sealed).is_err());
        assert!(sealer.open(TargetKind::Logout, "a", &sealed).is_err());
    }
}
