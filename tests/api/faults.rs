//! PostgreSQL faults: a database that is not there yet at start, one that refuses
//! connections while serving, and one that goes silent (a blackholed network). Requests fail
//! fast with UNAVAILABLE in every face's shape and service recovers by itself. The database
//! is reached through a TCP proxy the test controls. Needs `SESSIOND_TEST_POSTGRES_URL`.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;

use crate::backends::{postgres_schema_url, postgres_url};
use crate::helpers::*;

async fn app_through(proxy_port: u16, schema_url: String) -> TestApp {
    spawn_app_with(move |config| {
        config.database_url = Some(through(&schema_url, proxy_port).into());
        config.db_acquire_timeout = Duration::from_millis(500);
        config.db_statement_timeout = Duration::from_millis(1000);
        config.db_startup_timeout = Duration::from_secs(20);
    })
    .await
}

#[tokio::test]
async fn a_database_that_comes_up_late_is_waited_for_then_served() {
    let Some(base) = postgres_url() else { return };
    let schema_url = postgres_schema_url(&base).await;
    // A free port where nothing listens yet.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let up = upstream(&base);
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Proxy::start(port, up).await
    });
    let started = Instant::now();
    let app = app_through(port, schema_url).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the server waited for the database"
    );
    let _proxy = late.await.expect("proxy");
    let user = app.add_user("late").await;
    let created = app.create_session_for(&user).await;
    assert!(!created.session_id.is_empty());
}

async fn rest_status(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: &str,
    body: Option<Value>,
) -> (u16, Value, Duration) {
    let started = Instant::now();
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("authorization", auth);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

#[tokio::test]
async fn a_lost_database_fails_requests_fast_in_every_shape_and_service_recovers() {
    let Some(base) = postgres_url() else { return };
    let proxy = Proxy::start(0, upstream(&base)).await;
    let app = app_through(proxy.port, postgres_schema_url(&base).await).await;
    let user = app.add_user("fragile").await;
    let created = app.create_session_for(&user).await;
    let admin = app.bearer("admin", &[ALL_SESSION_PERMISSIONS, &["user.read"]].concat());
    let token = created.session_token.clone();

    for mode in [REFUSE, BLACKHOLE] {
        proxy.set(mode);
        let bound = Duration::from_secs(4);

        let (status, body, took) = rest_status(
            &app,
            reqwest::Method::GET,
            &format!("/v2/sessions/{}", created.session_id),
            &admin,
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (503, Some(14)),
            "REST, mode {mode}: {body}"
        );
        assert!(took < bound, "REST answered in {took:?}");

        let (status, body, _) = rest_status(
            &app,
            reqwest::Method::POST,
            "/zitadel.session.v2.SessionService/ListSessions",
            &admin,
            Some(serde_json::json!({})),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("unavailable")),
            "Connect, mode {mode}: {body}"
        );

        let grpc = app
            .api(Protocol::Grpc, Version::V2)
            .get(Some(&admin), get(&created.session_id, None))
            .await;
        let failure = grpc.expect_err("gRPC must fail");
        assert_eq!(failure.code, Code::Unavailable, "gRPC, mode {mode}");

        let started = Instant::now();
        let answer = whoami(&app, &token).await;
        assert_eq!(answer.status, 503, "self-service, mode {mode}");
        let body = answer.json;
        assert_eq!(body["error"]["code"], 503, "{body}");
        assert!(started.elapsed() < bound);

        let (status, body, _) = rest_status(
            &app,
            reqwest::Method::GET,
            &format!("/auth/admin/api/users/{}/sessions", user.id),
            &admin,
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("SERVICE_UNAVAILABLE")),
            "admin, mode {mode}: {body}"
        );

        let ready = get_path(&app, "/readyz").await;
        assert_eq!(ready.status, 503, "readyz, mode {mode}");

        // Back to normal: the next requests succeed without a restart.
        proxy.set(FORWARD);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, _, _) = rest_status(
                &app,
                reqwest::Method::GET,
                &format!("/v2/sessions/{}", created.session_id),
                &admin,
                None,
            )
            .await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "service did not recover after mode {mode}"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(get_path(&app, "/readyz").await.status, 200);
    }
}
