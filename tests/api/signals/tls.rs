//! Push delivery over https: a receiver whose certificate chains to a certificate authority
//! given by `--signals-ca-file` gets its SETs; one whose certificate does not is refused, and
//! its SETs wait in the outbox until it presents a trusted certificate.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::helpers::*;
use crate::traces::localhost_certificate;

/// A certificate authority (`ca.pem`) and a certificate for `localhost` it signed, in
/// `dir/<name>/`; returns the paths of the certificate and of its key.
fn authority_and_localhost(dir: &std::path::Path, name: &str) -> (String, String) {
    let dir = dir.join(name);
    std::fs::create_dir(&dir).expect("dir");
    let (certificate, key) = localhost_certificate(&dir);
    let (cert_path, key_path) = (dir.join("localhost.pem"), dir.join("localhost.key"));
    std::fs::write(&cert_path, certificate).expect("certificate");
    std::fs::write(&key_path, key).expect("key");
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    (path(cert_path), path(key_path))
}

#[tokio::test]
async fn sets_reach_an_https_receiver_trusted_through_the_ca_file_and_wait_while_it_is_not() {
    let dir = tempfile::tempdir().expect("dir");
    let (trusted_cert, trusted_key) = authority_and_localhost(dir.path(), "trusted");
    let (cert, key) = authority_and_localhost(dir.path(), "stranger");
    let ca_file = dir.path().join("trusted").join("ca.pem");
    let app = signals_app_with(|s| s.signals_ca_file = Some(ca_file)).await;
    let Some(receiver) = receiver_with(
        &app.url("/.well-known/ssf-jwks.json"),
        &app.base,
        &["--tls-cert", &cert, "--tls-key", &key],
    ) else {
        return;
    };
    let endpoint = format!("{}/set/tls", receiver.tls_base.as_deref().expect("https"));
    let created = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/stream"))
            .header("authorization", manager(&app, "tls"))
            .json(&json!({
                "events_requested": [SESSION_REVOKED],
                "delivery": {
                    "method": PUSH,
                    "endpoint_url": endpoint,
                    "authorization_header": "Bearer tls",
                },
            })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);

    // A certificate from an authority nobody trusts: refused, and retried.
    const RETRIED: &str = "sessiond_signals_deliveries_total{kind=\"stream\",outcome=\"retried\"}";
    let mut retried = 0.0;
    for _ in 0..50 {
        retried = metric(&app, RETRIED).await;
        if retried >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(retried >= 2.0, "the untrusted receiver is tried again");
    assert!(!receiver.received().await.contains_key("tls"));

    // The receiver presents a certificate of the trusted authority: the waiting SET arrives,
    // and the next one too.
    let reload = receiver
        .http
        .post(receiver.url("/tls/use"))
        .body(format!("{trusted_cert}\n{trusted_key}"))
        .send()
        .await
        .expect("receiver");
    assert!(reload.status().is_success());
    let got = receiver.wait_for("tls", 1).await;
    assert!(got[0]["events"].get(VERIFICATION).is_some());
    let alice = app.add_user("alice").await;
    let session = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &session).await;
    let got = receiver.wait_for("tls", 2).await;
    assert_eq!(revoked_sessions(&got), [session]);
}

#[tokio::test]
async fn a_ca_file_that_holds_no_certificate_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("file");
    let mut settings = sessiond::settings::Settings::for_test(dir.path());
    settings.signals_ca_file = Some(empty);
    let clock = std::sync::Arc::new(sessiond::domain::ManualClock::new(START));
    let error = match sessiond::app::Application::build(settings, clock).await {
        Ok(_) => panic!("a server with an empty CA file"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("signals-ca-file"), "{error}");
}
