//! Operating the store: migrations refuse a database newer than the binary, `sessiond
//! migrate` and `sessiond prune` from the command line, and readiness.

use std::process::Command;
use std::time::Duration;

use sessiond::settings::Settings;

use crate::backends::{backends, clock};
use crate::helpers::*;

#[tokio::test]
async fn a_database_migrated_by_a_newer_sessiond_is_refused_with_a_clear_message() {
    for b in backends().await {
        let pool_url = b.config.store_url();
        // Record a migration this binary does not know, as a newer sessiond would.
        match b.name {
            "sqlite" => {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&pool_url)
                    .await
                    .expect("sqlite");
                sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990001, 'from the future', 1, x'00', 0)")
                    .execute(&mut conn).await.expect("insert");
            }
            _ => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&pool_url)
                    .await
                    .expect("postgres");
                sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990001, 'from the future', true, '\\x00', 0)")
                    .execute(&mut conn).await.expect("insert");
            }
        }
        let error = match sessiond::app::open_store(&b.config).await {
            Ok(_) => panic!("{}: a newer database was accepted", b.name),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains("newer than this sessiond"),
            "{}: {error}",
            b.name
        );
    }
}

fn sessiond(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("running sessiond")
}

#[tokio::test]
async fn migrate_and_prune_work_from_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let migrate = sessiond(&["migrate"], dir.path());
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("schema ready: true"));

    // Sessions created and ended in 2025 (the test clock) are long past any 30-day retention.
    let store = sessiond::app::open_store(&Settings::for_test(dir.path()))
        .await
        .expect("store");
    let backend_clock = clock();
    let core = sessiond::core::Core::new(
        store,
        std::sync::Arc::new(backend_clock.clone()),
        sessiond::core::PasswordHasher::new(1024, 1, 1).expect("hasher"),
        sessiond::core::CoreSettings::default(),
    );
    let user = core
        .add_user(sessiond::core::NewUser {
            login_name: sessiond::domain::LoginName::parse("pruned").expect("name"),
            display_name: None,
            organization_id: None,
            password: None,
        })
        .await
        .expect("user");
    let principal = sessiond::domain::Principal::system();
    let mut ended = Vec::new();
    for _ in 0..3 {
        let created = core
            .create_session(
                &principal,
                sessiond::core::CreateSession {
                    checks: sessiond::core::Checks {
                        user: Some(sessiond::core::UserLookup::Id(user.id.clone())),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        core.delete_session(&principal, &created.session_id, None)
            .await
            .expect("delete");
        ended.push(created.session_id);
    }
    let live = core
        .create_session(
            &principal,
            sessiond::core::CreateSession {
                lifetime: Some(Duration::from_secs(10 * 365 * 24 * 3600)),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    drop(core);

    let prune = sessiond(
        &[
            "prune",
            "--terminated-before",
            "30d",
            "--expired-before",
            "30d",
            "--batch",
            "2",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&prune.stdout);
    assert!(
        prune.status.success(),
        "{}",
        String::from_utf8_lossy(&prune.stderr)
    );
    assert!(
        stdout.contains("pruned 3 sessions and 6 events in 2 batches"),
        "{stdout}"
    );

    let store = sessiond::app::open_store(&Settings::for_test(dir.path()))
        .await
        .expect("store");
    for id in &ended {
        assert!(store.session(id).await.expect("read").is_none());
    }
    assert!(
        store
            .session(&live.session_id)
            .await
            .expect("read")
            .is_some()
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    assert_eq!(get_path(&app, "/healthz").await.status, 200);
    let ready = get_path(&app, "/readyz").await;
    assert_eq!(ready.json["status"], "ready", "{}", ready.body);
}
