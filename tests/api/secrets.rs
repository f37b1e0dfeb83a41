//! Nothing secret at rest or in logs: after a workload that sends passwords, session tokens
//! (in headers, cookies, query strings and bodies), JWTs, a TOTP seed and recovery codes,
//! neither the database files nor
//! the server's log at the most verbose level contain any of them in clear.

use serde_json::{Value, json};

use crate::helpers::send;
use crate::process::{Server, process_bearer};

fn find_in(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_token_password_or_jwt_reaches_the_database_files_or_the_trace_log() {
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(data_dir.path(), &[], &[("RUST_LOG", "trace")]).await;
    let auth = process_bearer(
        data_dir.path(),
        "auditor",
        &[
            "session.read",
            "session.write",
            "session.delete",
            "user.write",
            "user.read",
        ],
    );
    let jwt = auth.trim_start_matches("Bearer ").to_owned();
    let password = "Sup3r-Secret-Passw0rd!";
    let new_password = "An0ther-Secret-Passw0rd?";
    let http = reqwest::Client::new();

    let user: Value = send(
        http.post(server.url("/auth/admin/api/users"))
            .header("authorization", &auth)
            .json(&json!({"loginName": "audited", "password": password})),
    )
    .await
    .json;
    let user_id = user["id"].as_str().expect("id").to_owned();

    let mut tokens = Vec::new();
    for _ in 0..3 {
        let checks = json!({"checks": {"user": {"loginName": "audited"}, "password": {"password": password}}});
        let create = http.post(server.url("/v2/sessions"));
        let created: Value = send(create.header("authorization", &auth).json(&checks))
            .await
            .json;
        let id = created["sessionId"].as_str().expect("id").to_owned();
        let token = created["sessionToken"].as_str().expect("token").to_owned();
        // The token travels in every place a client may put it.
        let got = http
            .get(server.url(&format!("/v2/sessions/{id}?sessionToken={token}")))
            .header("authorization", &auth)
            .send()
            .await
            .expect("get");
        assert_eq!(got.status(), 200);
        for request in [
            http.get(server.url("/auth/sessions/whoami"))
                .header("x-session-token", &token),
            http.get(server.url("/auth/sessions/whoami"))
                .header("cookie", format!("sessiond_session={token}")),
            http.get(server.url("/auth/sessions"))
                .header("authorization", format!("Bearer {token}")),
        ] {
            assert_eq!(request.send().await.expect("self-service").status(), 200);
        }
        let rotated: Value = send(
            http.patch(server.url(&format!("/v2/sessions/{id}")))
                .header("authorization", &auth)
                .json(&json!({"metadata": {"k": "dg=="}})),
        )
        .await
        .json;
        tokens.push(token);
        tokens.push(
            rotated["sessionToken"]
                .as_str()
                .expect("new token")
                .to_owned(),
        );
    }
    // A wrong password, a password change, and a delete with a (stale) token in the body.
    let wrong = http
        .post(server.url("/v2/sessions"))
        .header("authorization", &auth)
        .json(&json!({"checks": {"user": {"loginName": "audited"}, "password": {"password": "Wr0ng-Guess-Passw0rd"}}}))
        .send()
        .await
        .expect("wrong password");
    assert_eq!(wrong.status(), 400);
    let changed = http
        .put(server.url(&format!("/auth/admin/api/users/{user_id}/password")))
        .header("authorization", &auth)
        .json(&json!({"password": new_password, "revokeSessions": false}))
        .send()
        .await
        .expect("password change");
    assert_eq!(changed.status(), 200);
    let stale = http
        .delete(server.url("/v2/sessions/1"))
        .header("authorization", &auth)
        .json(&json!({"sessionToken": tokens[0]}))
        .send()
        .await
        .expect("delete");
    assert_eq!(stale.status(), 403);

    // Second factors: a TOTP seed (shown once at enrollment) and recovery codes.
    let registered: Value = send(
        http.post(server.url(&format!("/v2/users/{user_id}/totp")))
            .header("authorization", &auth)
            .json(&json!({})),
    )
    .await
    .json;
    let totp_secret = registered["secret"].as_str().expect("secret").to_owned();
    let seed = totp_rs::Secret::Encoded(totp_secret.clone())
        .to_bytes()
        .expect("base32");
    // The server runs on the wall clock.
    let now = {
        use sessiond::domain::Clock;
        u64::try_from(sessiond::domain::SystemClock.now().unix_micros() / 1_000_000)
            .expect("after 1970")
    };
    let code = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, seed.clone())
        .generate(now);
    let verified = http
        .post(server.url(&format!("/v2/users/{user_id}/totp/verify")))
        .header("authorization", &auth)
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("verify");
    assert_eq!(verified.status(), 200);
    let generated: Value = send(
        http.post(server.url(&format!("/v2/users/{user_id}/recovery_codes")))
            .header("authorization", &auth)
            .json(&json!({"count": 3})),
    )
    .await
    .json;
    let recovery_codes: Vec<String> = generated["recoveryCodes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    let used = http
        .post(server.url("/v2/sessions"))
        .header("authorization", &auth)
        .json(&json!({"checks": {"user": {"loginName": "audited"}, "recoveryCode": {"code": recovery_codes[0]}}}))
        .send()
        .await
        .expect("recovery code check");
    assert_eq!(used.status(), 201);

    let log = server.log_text();
    assert!(
        log.lines().count() > 30,
        "the trace log is suspiciously short"
    );
    server.kill().await;

    let mut secrets: Vec<(&str, String)> = vec![
        ("password", password.to_owned()),
        ("new password", new_password.to_owned()),
        ("wrong password", "Wr0ng-Guess-Passw0rd".to_owned()),
        ("JWT", jwt.clone()),
        (
            "JWT signature",
            jwt.rsplit('.').next().unwrap_or_default().to_owned(),
        ),
    ];
    secrets.extend(tokens.iter().map(|t| ("session token", t.clone())));
    secrets.push(("TOTP secret", totp_secret.clone()));
    secrets.extend(recovery_codes.iter().map(|c| ("recovery code", c.clone())));
    secrets.extend(
        recovery_codes
            .iter()
            .map(|c| ("recovery code without its dash", c.replace('-', ""))),
    );
    for (what, secret) in &secrets {
        assert!(
            !find_in(log.as_bytes(), secret),
            "the trace log contains a {what}"
        );
    }
    let mut files = 0;
    for path in files_below(data_dir.path()) {
        let bytes = std::fs::read(&path).expect("read");
        files += 1;
        for (what, secret) in &secrets {
            assert!(
                !find_in(&bytes, secret),
                "{} contains a {what}",
                path.display()
            );
        }
        assert!(
            !bytes.windows(seed.len()).any(|w| w == seed.as_slice()),
            "{} contains the TOTP seed",
            path.display()
        );
    }
    assert!(files >= 2, "expected the database files in the data dir");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "secrets: {} secrets checked against {} log lines and {files} data files",
        secrets.len(),
        log.lines().count()
    );
}

/// Every file below `dir`, in its subdirectories too.
fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files
}
