//! Shared Signals and Back-Channel Logout, end to end: sessiond pushes (or serves by poll)
//! signed tokens, and a receiver we did not write (`tests/signals/receiver.py`, PyJWT)
//! verifies each against the published JWKS and records what it accepted.
//!
//! The receiver needs Python 3 with `PyJWT[crypto]`. Without it these tests say so loudly
//! and pass, unless `CI` is set: then they fail.

mod causes;
mod delivery;
mod lifecycle;
mod metadata;
mod priority;
mod processes;
mod pruning;
mod refusals;
mod shutdown;
mod tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

pub const PUSH: &str = "urn:ietf:rfc:8935";
pub const POLL: &str = "urn:ietf:rfc:8936";
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The receiver process, killed when dropped.
pub struct Receiver {
    child: Child,
    pub base: String,
    /// The https port's base URL, when the receiver was given a certificate.
    pub tls_base: Option<String>,
    http: reqwest::Client,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_has_pyjwt() -> bool {
    Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the receiver for `app`, or `None` (with a loud notice) when Python lacks PyJWT
/// outside CI.
pub fn receiver(app: &TestApp) -> Option<Receiver> {
    receiver_for(&app.url("/.well-known/ssf-jwks.json"), &app.base)
}

/// Starts the receiver for a server whose JWKS is at `jwks_url` and whose `iss` is `issuer`.
pub fn receiver_for(jwks_url: &str, issuer: &str) -> Option<Receiver> {
    receiver_with(jwks_url, issuer, &[])
}

/// Starts the receiver with more command line arguments (`--tls-cert`, `--tls-key`).
pub fn receiver_with(jwks_url: &str, issuer: &str, more: &[&str]) -> Option<Receiver> {
    if !python_has_pyjwt() {
        assert!(
            std::env::var("CI").is_err(),
            "the signals receiver needs python3 with PyJWT[crypto]: pip install 'PyJWT[crypto]'"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** python3 with PyJWT[crypto] is missing: the signals receiver tests are SKIPPED \
             (pip install 'PyJWT[crypto]') ***\n"
        );
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/signals/receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--jwks-url", jwks_url])
        .args(["--issuer", issuer])
        .args(more)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the receiver");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the receiver's port");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .expect("PORT line")
        .to_owned();
    let tls_base = more.contains(&"--tls-cert").then(|| {
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the receiver's https port");
        let port = line
            .trim()
            .strip_prefix("TLS_PORT ")
            .expect("TLS_PORT line");
        format!("https://localhost:{port}")
    });
    Some(Receiver {
        child,
        base: format!("http://127.0.0.1:{port}"),
        tls_base,
        http: reqwest::Client::new(),
    })
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every claim set accepted so far, by receiver name.
    pub async fn received(&self) -> HashMap<String, Vec<Value>> {
        let body: Value = self
            .http
            .get(self.url("/received"))
            .send()
            .await
            .expect("receiver")
            .json()
            .await
            .expect("JSON");
        serde_json::from_value(body).expect("map")
    }

    /// Waits until `name` has accepted `n` claim sets (at most 40 s: a crashed replica's lease
    /// lapses after 15 s), then returns them.
    pub async fn wait_for(&self, name: &str, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            let got = self.received().await.remove(name).unwrap_or_default();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = self.received().await.remove(name).unwrap_or_default();
        panic!("{name}: waited for {n} tokens, got {}: {got:#?}", got.len());
    }

    /// Tells the receiver where the JWKS is now.
    pub async fn set_jwks(&self, url: &str) {
        self.http
            .post(self.url("/jwks/url"))
            .body(url.to_owned())
            .send()
            .await
            .expect("receiver");
    }

    pub async fn set_down(&self, name: &str, down: bool) {
        let path = if down { "down" } else { "up" };
        self.http
            .post(self.url(&format!("/{path}/{name}")))
            .send()
            .await
            .expect("receiver");
    }

    /// Verifies a token with the receiver's checks; the claims, or the reason it refused.
    pub async fn verify(&self, kind: &str, token: &str, aud: &str) -> Result<Value, Value> {
        let response = self
            .http
            .post(self.url("/verify"))
            .json(&json!({"kind": kind, "token": token, "aud": aud}))
            .send()
            .await
            .expect("receiver");
        let ok = response.status().is_success();
        let body: Value = response.json().await.expect("JSON");
        if ok { Ok(body) } else { Err(body) }
    }
}

/// A server that may push to receivers on loopback http (on PostgreSQL, with a key file).
pub async fn signals_app() -> TestApp {
    signals_app_with(|_| {}).await
}

/// [`signals_app`] with more settings.
pub async fn signals_app_with(more: impl FnOnce(&mut sessiond::settings::Settings)) -> TestApp {
    spawn_app_with(|s| {
        more(s);
        s.signals_allow_loopback_http = true;
        if s.is_postgres() {
            let path = s.data_dir.join("signals.pem");
            let pem = sessiond::signals::keys::generate_pem(jsonwebtoken::Algorithm::RS256)
                .expect("a signals key");
            std::fs::write(&path, pem).expect("writing the signals key");
            s.signals_key_file = Some(path);
        }
    })
    .await
}

pub fn manager(app: &TestApp, subject: &str) -> String {
    app.bearer(subject, &["ssf.manage"])
}

/// Creates a push stream to the receiver's `/set/<name>` (authorization `Bearer <name>`).
pub async fn push_stream(app: &TestApp, receiver: &Receiver, name: &str, events: &[&str]) -> Value {
    let answer = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/stream"))
            .header("authorization", manager(app, name))
            .json(&json!({
                "events_requested": events,
                "delivery": {
                    "method": PUSH,
                    "endpoint_url": receiver.url(&format!("/set/{name}")),
                    "authorization_header": format!("Bearer {name}"),
                },
                "description": name,
            })),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.json
}

/// A stream's status as its owner `auth` reads it (a call that is the receiver's activity).
pub async fn stream_status(app: &TestApp, auth: &str, stream_id: &str) -> Value {
    let answer = send(
        app.http
            .get(app.url(&format!("/auth/admin/api/ssf/status?stream_id={stream_id}")))
            .header("authorization", auth),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json
}

/// The value of one sample of `/metrics` (name with its labels), or 0 if absent.
pub async fn metric(app: &TestApp, sample: &str) -> f64 {
    let body = send(app.http.get(app.url("/metrics"))).await.body;
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// Revokes a session as an administrator.
pub async fn admin_revoke(app: &TestApp, user: &str, session: &str) {
    let answer = send(
        app.http
            .delete(app.url(&format!("/auth/admin/api/users/{user}/sessions/{session}")))
            .header("authorization", app.bearer("admin", EVERY_PERMISSION)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// The session ids of the `session-revoked` SETs among `claims`.
pub fn revoked_sessions(claims: &[Value]) -> Vec<String> {
    claims
        .iter()
        .filter(|c| c["events"].get(SESSION_REVOKED).is_some())
        .map(|c| {
            c["sub_id"]["session"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}
