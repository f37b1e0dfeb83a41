//! Signals across process crashes and replicas: `sessiond serve` as child processes.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::backends::{postgres_schema_url, postgres_url};
use crate::process::{Server, process_bearer};

const ISSUER: &str = "http://sessiond.test";
const ADMIN: &[&str] = &[
    "session.read",
    "session.write",
    "session.delete",
    "user.write",
    "ssf.manage",
];

fn args() -> Vec<&'static str> {
    vec![
        "--signals-allow-loopback-http",
        "true",
        "--signals-issuer",
        ISSUER,
    ]
}

async fn create_stream(
    http: &reqwest::Client,
    server: &Server,
    auth: &str,
    receiver: &Receiver,
    name: &str,
) {
    let created = send(
        http.post(server.url("/auth/admin/api/ssf/stream"))
            .header("authorization", auth)
            .json(&json!({
                "events_requested": [SESSION_REVOKED],
                "delivery": {
                    "method": PUSH,
                    "endpoint_url": receiver.url(&format!("/set/{name}")),
                    "authorization_header": format!("Bearer {name}"),
                },
            })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

async fn add_user(http: &reqwest::Client, server: &Server, auth: &str, login: &str) {
    let user = send(
        http.post(server.url("/auth/admin/api/users"))
            .header("authorization", auth)
            .json(&json!({"loginName": login, "password": "correct horse battery"})),
    )
    .await;
    assert_eq!(user.status, 201, "{}", user.body);
}

/// Creates and deletes one session of `login` on `server`; returns its id.
async fn create_and_delete(
    http: &reqwest::Client,
    server: &Server,
    auth: &str,
    login: &str,
) -> String {
    let created = send(
        http.post(server.url("/v2/sessions"))
            .header("authorization", auth)
            .json(&json!({"checks": {"user": {"loginName": login}}})),
    )
    .await;
    let id = created.json["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    let deleted = send(
        http.delete(server.url(&format!("/v2/sessions/{id}")))
            .header("authorization", auth),
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    id
}

fn distinct_jtis(claims: &[Value]) -> usize {
    claims
        .iter()
        .map(|c| c["jti"].as_str().unwrap_or_default().to_owned())
        .collect::<HashSet<_>>()
        .len()
}

#[tokio::test]
async fn signals_waiting_when_sessiond_is_killed_are_delivered_after_it_restarts() {
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(data_dir.path(), &args(), &[]).await;
    let Some(receiver) = receiver_for(&server.url("/.well-known/ssf-jwks.json"), ISSUER) else {
        return;
    };
    let http = reqwest::Client::new();
    let auth = process_bearer(data_dir.path(), "rp-kill", ADMIN);
    add_user(&http, &server, &auth, "killed").await;
    create_stream(&http, &server, &auth, &receiver, "rp-kill").await;
    receiver.wait_for("rp-kill", 1).await;
    receiver.set_down("rp-kill", true).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create_and_delete(&http, &server, &auth, "killed").await);
    }
    // Signed into the outbox and tried (the receiver refuses), then the process dies.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().await;
    receiver.set_down("rp-kill", false).await;

    let server = Server::start(data_dir.path(), &args(), &[]).await;
    receiver
        .set_jwks(&server.url("/.well-known/ssf-jwks.json"))
        .await;
    let got = receiver.wait_for("rp-kill", 6).await;
    assert_eq!(revoked_sessions(&got), ids);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver
        .received()
        .await
        .remove("rp-kill")
        .unwrap_or_default();
    assert_eq!(got.len(), 6, "none twice");
    assert_eq!(distinct_jtis(&got), 6);
    drop(server);
}

/// Opens the servers' database in this process. SQLite takes its page cache when it starts,
/// and other tests of this binary start it through the store at the same time: the layer goes
/// in first, whichever opens first.
fn open_database(path: &std::path::Path) -> rusqlite::Connection {
    sessiond::store::page_cache::install();
    rusqlite::Connection::open(path).expect("database")
}

fn stream_cursor(data_dir: &std::path::Path) -> String {
    let db = open_database(&data_dir.join("sessiond.db"));
    db.query_row(
        "SELECT cursor FROM signal_targets WHERE kind = 'stream'",
        [],
        |row| row.get(0),
    )
    .expect("the stream's cursor")
}

#[tokio::test]
async fn a_set_sent_again_after_a_crash_carries_the_same_jti() {
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(data_dir.path(), &args(), &[]).await;
    let Some(receiver) = receiver_for(&server.url("/.well-known/ssf-jwks.json"), ISSUER) else {
        return;
    };
    let http = reqwest::Client::new();
    let auth = process_bearer(data_dir.path(), "rp-again", ADMIN);
    add_user(&http, &server, &auth, "again").await;
    create_stream(&http, &server, &auth, &receiver, "rp-again").await;
    receiver.wait_for("rp-again", 1).await;
    let before = stream_cursor(data_dir.path());
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create_and_delete(&http, &server, &auth, "again").await);
    }
    let first = receiver.wait_for("rp-again", 4).await;
    server.kill().await;
    // The process died before the cursor's move was stored: put it back where it was before
    // the three revocations, as such a crash leaves it.
    let db = open_database(&data_dir.path().join("sessiond.db"));
    db.execute(
        "UPDATE signal_targets SET cursor = ?1 WHERE kind = 'stream'",
        [&before],
    )
    .expect("moving the cursor back");
    drop(db);

    let server = Server::start(data_dir.path(), &args(), &[]).await;
    receiver
        .set_jwks(&server.url("/.well-known/ssf-jwks.json"))
        .await;
    let got = receiver.wait_for("rp-again", 7).await;
    assert_eq!(revoked_sessions(&got[1..4]), ids);
    assert_eq!(revoked_sessions(&got[4..]), ids, "sent again, in order");
    let jtis = |claims: &[Value]| -> Vec<String> {
        claims
            .iter()
            .map(|c| c["jti"].as_str().expect("jti").to_owned())
            .collect()
    };
    assert_eq!(jtis(&first[1..4]), jtis(&got[4..]), "the same jti each");
    assert_eq!(distinct_jtis(&got), 4);
    drop(server);
}

#[tokio::test]
async fn three_replicas_on_one_postgresql_deliver_each_set_once() {
    let Some(base_url) = postgres_url() else {
        return;
    };
    let database_url = postgres_schema_url(&base_url).await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    sessiond::auth::EmbeddedKey::load_or_create(data_dir.path()).expect("key");
    let key_file = data_dir.path().join("signals.pem");
    let pem = sessiond::signals::keys::generate_pem(jsonwebtoken::Algorithm::ES256).expect("key");
    std::fs::write(&key_file, pem).expect("writing the key");
    let config = sessiond::settings::Settings {
        database_url: Some(database_url.clone().into()),
        ..sessiond::settings::Settings::for_test(data_dir.path())
    };
    drop(sessiond::app::open_store(&config).await.expect("migrating"));
    let env = [("SESSIOND_DATABASE_URL", database_url.as_str())];
    let key = key_file.to_str().expect("path").to_owned();
    let mut replica_args = args();
    replica_args.extend(["--signals-key-file", key.as_str()]);
    let replicas = [
        Server::start(data_dir.path(), &replica_args, &env).await,
        Server::start(data_dir.path(), &replica_args, &env).await,
        Server::start(data_dir.path(), &replica_args, &env).await,
    ];
    let Some(receiver) = receiver_for(&replicas[2].url("/.well-known/ssf-jwks.json"), ISSUER)
    else {
        return;
    };
    let http = reqwest::Client::new();
    let auth = process_bearer(data_dir.path(), "rp-replicas", ADMIN);
    add_user(&http, &replicas[0], &auth, "replicated").await;
    create_stream(&http, &replicas[1], &auth, &receiver, "rp-replicas").await;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(create_and_delete(&http, &replicas[i % 3], &auth, "replicated").await);
    }
    let got = receiver.wait_for("rp-replicas", 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_after = receiver
        .received()
        .await
        .remove("rp-replicas")
        .unwrap_or_default();
    assert_eq!(got_after.len(), 10, "each SET once: {got_after:#?}");
    assert_eq!(distinct_jtis(&got_after), 10);
    let mut revoked = revoked_sessions(&got);
    revoked.sort();
    ids.sort();
    assert_eq!(revoked, ids);
}

fn cli(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("running sessiond")
}

#[test]
fn the_command_line_rotates_the_key_and_manages_logout_clients() {
    let data_dir = tempfile::tempdir().expect("dir");
    let rotated = cli(
        data_dir.path(),
        &["signals", "rotate-key", "--algorithm", "EdDSA"],
    );
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("(EdDSA)"));
    let added = cli(
        data_dir.path(),
        &[
            "signals",
            "logout-clients",
            "add",
            "--client-id",
            "shop",
            "--uri",
            "https://shop.example/logout",
            "--sessions",
            "client",
            "--signals-issuer",
            "https://login.example",
        ],
    );
    assert!(added.status.success(), "{added:?}");
    let refused = cli(
        data_dir.path(),
        &[
            "signals",
            "logout-clients",
            "add",
            "--client-id",
            "meta",
            "--uri",
            "https://169.254.169.254/",
            "--signals-issuer",
            "https://login.example",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("metadata"),
        "{refused:?}"
    );
    let listed = cli(data_dir.path(), &["signals", "logout-clients", "list"]);
    let line: Value = serde_json::from_slice(&listed.stdout).expect("one client as a JSON line");
    assert_eq!(line["clientId"], "shop");
    assert_eq!(line["sessions"], "client");
    let removed = cli(
        data_dir.path(),
        &["signals", "logout-clients", "remove", "shop"],
    );
    assert!(removed.status.success(), "{removed:?}");
    let again = cli(
        data_dir.path(),
        &["signals", "logout-clients", "remove", "shop"],
    );
    assert!(!again.status.success());
}

#[tokio::test]
async fn signals_are_off_on_postgresql_without_a_key_file_and_say_why() {
    let Some(base_url) = postgres_url() else {
        return;
    };
    let database_url = postgres_schema_url(&base_url).await;
    let app = spawn_app_with(|s| s.database_url = Some(database_url.into())).await;
    let answer = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/stream"))
            .header("authorization", manager(&app, "r"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json["code"], "FAILED_PRECONDITION");
    assert!(
        answer.json["message"]
            .as_str()
            .unwrap()
            .contains("--signals-key-file")
    );
}
