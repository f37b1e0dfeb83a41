//! A user's second factors on the admin face and on the command line.

use crate::helpers::*;

#[tokio::test]
async fn the_admin_face_lists_and_removes_factors_in_its_own_shape() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let user = app.add_user("admin-factors@example.com").await;
    let id = user.id.as_str();
    enroll_totp(&app, &api, &auth, id).await;
    generate_recovery_codes(&api, &auth, id, 4).await;
    let base = app.url(&format!("/auth/admin/api/users/{id}/factors"));
    let listed = send(app.http.get(&base).header("authorization", &auth)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let data = listed.json["data"].as_array().expect("data").clone();
    assert_eq!(data.len(), 2, "{}", listed.body);
    assert_eq!(data[0]["kind"], "recovery_codes");
    assert_eq!(data[0]["remainingCodes"], 4);
    assert_eq!(data[1]["kind"], "totp");
    assert_eq!(data[1]["state"], "ready");
    assert!(!listed.body.to_ascii_lowercase().contains("secret"));

    let kept = app.create_session_for(&user).await;
    let removed = send(
        app.http
            .delete(format!("{base}/totp?revokeSessions=false"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json["revokedSessions"], 0);
    let sessions = app.api(Protocol::Grpc, Version::V2);
    session_of(&app, &sessions, &kept.session_id).await;
    let removed = send(
        app.http
            .delete(format!("{base}/recovery_codes"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json["revokedSessions"], 1);

    let again = send(
        app.http
            .delete(format!("{base}/totp"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert_eq!(again.json["statusCode"], 404);
    for (path, status) in [("/sms", 400), ("/totp?revokeSessions=maybe", 400)] {
        let bad = send(
            app.http
                .delete(format!("{base}{path}"))
                .header("authorization", &auth),
        )
        .await;
        assert_eq!(bad.status, status, "{path}: {}", bad.body);
        assert_eq!(bad.json["code"], "VALIDATION_FAILED", "{path}");
    }
    let reader = app.bearer("reader", &["user.read"]);
    let denied = send(
        app.http
            .delete(format!("{base}/totp"))
            .header("authorization", &reader),
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let unknown = send(
        app.http
            .get(app.url("/auth/admin/api/users/404/factors"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(unknown.json["code"], "USER_NOT_FOUND", "{}", unknown.body);
}

/// `sessiond users factors …` against a data directory.
fn factors_cli(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["users", "factors"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("running sessiond")
}

#[tokio::test]
async fn the_command_line_lists_and_removes_a_users_factors() {
    use sessiond::core::{Core, CoreSettings, NewUser, PasswordHasher};
    use sessiond::domain::{LoginName, Principal};

    let dir = tempfile::tempdir().expect("dir");
    let settings = sessiond::settings::Settings {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let store = sessiond::app::open_store(&settings).await.expect("store");
    let core = Core::new(
        store,
        std::sync::Arc::new(crate::backends::clock()),
        PasswordHasher::new(1024, 1, 1).expect("hasher"),
        CoreSettings::default(),
    );
    let user = core
        .add_user(NewUser {
            login_name: LoginName::parse("cli@example.com").expect("name"),
            display_name: None,
            organization_id: None,
            password: None,
        })
        .await
        .expect("user");
    let system = Principal::system();
    core.generate_recovery_codes(&system, &user.id, 3, false)
        .await
        .expect("codes");
    let id = user.id.as_str();

    let listed = factors_cli(dir.path(), &["list", id]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("one JSON line");
    assert_eq!(line["kind"], "recovery_codes");
    assert_eq!(line["remainingCodes"], 3);

    let removed = factors_cli(
        dir.path(),
        &["remove", id, "recovery_codes", "--keep-sessions"],
    );
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&removed.stderr).trim_end(),
        "recovery_codes removed; 0 session(s) ended"
    );
    let again = factors_cli(dir.path(), &["remove", id, "recovery_codes"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no recovery codes"));
    let unknown = factors_cli(dir.path(), &["remove", id, "sms"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("totp, recovery_codes"));
    let empty = factors_cli(dir.path(), &["list", id]);
    assert!(empty.status.success());
    assert!(empty.stdout.is_empty());
}
