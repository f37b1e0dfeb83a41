//! Push delivery over https: a receiver whose certificate chains to a certificate authority
//! given by `--signals-ca-file` gets its SETs; one whose certificate does not is refused, and
//! its SETs wait in the outbox until it presents a trusted certificate.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::helpers::*;

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A certificate authority `<ca>.pem` in `dir` and a certificate for `localhost` it signed,
/// `<ca>-localhost.pem` with its key `<ca>-localhost.key`.
fn authority_and_localhost(dir: &Path, ca: &str) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_key, ca_pem) = (format!("{ca}.key"), format!("{ca}.pem"));
    let subject = format!("/CN={ca}");
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", &subject];
    args.extend(key);
    args.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    openssl(dir, &args);
    let (server_key, csr, server_pem) = (
        format!("{ca}-localhost.key"),
        format!("{ca}-localhost.csr"),
        format!("{ca}-localhost.pem"),
    );
    let mut args = vec!["req", "-subj", "/CN=localhost"];
    args.extend(key);
    args.extend(["-keyout", &server_key, "-out", &csr]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("localhost.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "localhost.ext",
            "-out",
            &server_pem,
        ],
    );
}

#[tokio::test]
async fn sets_reach_an_https_receiver_trusted_through_the_ca_file_and_wait_while_it_is_not() {
    let dir = tempfile::tempdir().expect("dir");
    authority_and_localhost(dir.path(), "trusted");
    authority_and_localhost(dir.path(), "stranger");
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let ca_file = dir.path().join("trusted.pem");
    let app = signals_app_with(|s| s.signals_ca_file = Some(ca_file)).await;
    let (cert, key) = (
        path("stranger-localhost.pem"),
        path("stranger-localhost.key"),
    );
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
        .body(format!(
            "{}\n{}",
            path("trusted-localhost.pem"),
            path("trusted-localhost.key")
        ))
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
