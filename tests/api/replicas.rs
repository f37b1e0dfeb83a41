//! Three `sessiond serve` processes on one PostgreSQL database behave as one service: a
//! session created on A and revoked on B is gone on C at once, and its token is refused by
//! all three. Needs `SESSIOND_TEST_POSTGRES_URL`; skipped loudly without it.

use serde_json::{Value, json};

use crate::backends::{postgres_schema_url, postgres_url};
use crate::helpers::send;
use crate::process::{Server, process_bearer};

#[tokio::test]
async fn a_session_revoked_on_one_replica_is_gone_on_all_of_them_at_once() {
    let Some(base_url) = postgres_url() else {
        return;
    };
    let database_url = postgres_schema_url(&base_url).await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    // One signing key for all replicas, as production would share one JWKS.
    sessiond::auth::EmbeddedKey::load_or_create(data_dir.path()).expect("key");
    let config = sessiond::settings::Settings {
        database_url: Some(database_url.clone().into()),
        ..sessiond::settings::Settings::for_test(data_dir.path())
    };
    let store = sessiond::app::open_store(&config).await.expect("migrating");
    drop(store);

    let env = [("SESSIOND_DATABASE_URL", database_url.as_str())];
    let replicas = [
        Server::start(data_dir.path(), &[], &env).await,
        Server::start(data_dir.path(), &[], &env).await,
        Server::start(data_dir.path(), &[], &env).await,
    ];
    let http = reqwest::Client::new();
    let bearer = process_bearer(
        data_dir.path(),
        "admin",
        &[
            "session.read",
            "session.write",
            "session.delete",
            "user.write",
        ],
    );

    let user: Value = http
        .post(format!("{}/auth/admin/api/users", replicas[0].base))
        .header("authorization", &bearer)
        .json(&json!({"loginName": "replicated", "password": "correct horse battery"}))
        .send()
        .await
        .expect("create user")
        .json()
        .await
        .expect("user json");
    assert!(user["id"].is_string(), "{user}");

    let checks = json!({"checks": {"user": {"loginName": "replicated"}, "password": {"password": "correct horse battery"}}});
    let create = http.post(format!("{}/v2/sessions", replicas[0].base));
    let created: Value = send(create.header("authorization", &bearer).json(&checks))
        .await
        .json;
    let id = created["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    let token = created["sessionToken"].as_str().expect("token").to_owned();

    for r in &replicas {
        let status = send(
            http.get(format!("{}/auth/sessions/whoami", r.base))
                .header("x-session-token", &token),
        )
        .await
        .status;
        assert_eq!(status, 200, "every replica sees the new session");
    }

    let deleted = http
        .delete(format!("{}/v2/sessions/{id}", replicas[1].base))
        .header("authorization", &bearer)
        .json(&json!({}))
        .send()
        .await
        .expect("delete on B");
    assert_eq!(deleted.status(), 200);

    let got = http
        .get(format!("{}/v2/sessions/{id}", replicas[2].base))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("get on C");
    assert_eq!(got.status(), 404, "revoked on B, gone on C at once");

    for r in &replicas {
        let whoami = http
            .get(format!("{}/auth/sessions/whoami", r.base))
            .header("x-session-token", &token)
            .send()
            .await
            .expect("whoami");
        assert_eq!(
            whoami.status(),
            401,
            "{}: the revoked token is refused",
            r.base
        );
        let as_bearer = http
            .post(format!("{}/v2/sessions/search", r.base))
            .header("authorization", format!("Bearer {token}"))
            .json(&json!({}))
            .send()
            .await
            .expect("list");
        assert_eq!(
            as_bearer.status(),
            401,
            "{}: the revoked token is no bearer either",
            r.base
        );
    }
}
