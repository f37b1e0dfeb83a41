//! Refusals in each face's own shape: no credentials (401 / UNAUTHENTICATED), a malformed
//! cursor (400 / INVALID_ARGUMENT), an expired cursor (410 / FAILED_PRECONDITION), an
//! unknown event type.

use super::*;

/// The gRPC code a watch ends with, however the stream reports it.
async fn grpc_watch_code(
    app: &TestApp,
    request: events::WatchSessionEventsRequest,
    auth: Option<&str>,
) -> tonic::Code {
    let mut client = grpc_client(app);
    let request = match auth {
        Some(auth) => grpc_request(request, auth),
        None => tonic::Request::new(request),
    };
    match client.watch_session_events(request).await {
        Err(status) => status.code(),
        Ok(response) => {
            let mut stream = response.into_inner();
            match tokio::time::timeout(WAIT, stream.message()).await {
                Ok(Err(status)) => status.code(),
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }
}

async fn grpc_web_watch_code(
    app: &TestApp,
    request: &events::WatchSessionEventsRequest,
    auth: Option<&str>,
) -> tonic::Code {
    let mut stream = open_grpc_web(&app.http, app, auth, request).await;
    match next_grpc_web(&mut stream).await {
        WebItem::Status(code) => code,
        WebItem::Event(event) => panic!("expected an error, got {event:?}"),
    }
}

async fn connect_watch_error(
    app: &TestApp,
    codec: Codec,
    request: &events::WatchSessionEventsRequest,
    auth: Option<&str>,
) -> Value {
    let mut stream = open_connect(&app.http, app, codec, auth, request).await;
    match next_connect(&mut stream).await {
        ConnectItem::End(end) => end["error"].clone(),
        ConnectItem::Event(event) => panic!("expected an error, got {event:?}"),
    }
}

async fn sse_answer(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Answer {
    let response = open_sse(&app.http, &app.url(path), headers).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        json,
    }
}

fn watch_after(after: &str) -> events::WatchSessionEventsRequest {
    events::WatchSessionEventsRequest {
        after: after.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn without_credentials_every_face_answers_unauthenticated_in_its_shape() {
    let app = spawn_app().await;
    assert_eq!(
        grpc_watch_code(&app, from_start(), None).await,
        Code::Unauthenticated
    );
    assert_eq!(
        grpc_web_watch_code(&app, &from_start(), None).await,
        Code::Unauthenticated
    );
    for codec in [Codec::Json, Codec::Proto] {
        let error = connect_watch_error(&app, codec, &from_start(), None).await;
        assert_eq!(error["code"], "unauthenticated", "{codec:?}: {error}");
    }
    let list = send(app.http.get(app.url("/v1/session-events"))).await;
    assert_eq!(
        (list.status, &list.json["code"]),
        (401, &Value::from(16)),
        "{}",
        list.body
    );
    let sse = sse_answer(&app, "/v1/session-events", &[]).await;
    assert_eq!(
        (sse.status, &sse.json["code"]),
        (401, &Value::from(16)),
        "{}",
        sse.body
    );
    assert_eq!(sse.header("content-type"), Some("application/json"));
    let mine = sse_answer(&app, "/auth/sessions/events", &[]).await;
    assert_eq!(mine.status, 401);
    assert_eq!(mine.json["error"]["code"], 401, "{}", mine.body);
    let forged = sse_answer(
        &app,
        "/auth/sessions/events",
        &[("x-session-token", "nope")],
    )
    .await;
    assert_eq!(forged.status, 401, "{}", forged.body);
}

#[tokio::test]
async fn a_malformed_cursor_is_a_bad_request_in_every_shape() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let me = login(&app, &user).await;
    let admin = app.admin();
    for bad in ["not-a-cursor", "-1", "1.2.3"] {
        assert_eq!(
            grpc_watch_code(&app, watch_after(bad), Some(&admin)).await,
            Code::InvalidArgument,
            "{bad}"
        );
        assert_eq!(
            grpc_web_watch_code(&app, &watch_after(bad), Some(&admin)).await,
            Code::InvalidArgument
        );
        let error = connect_watch_error(&app, Codec::Json, &watch_after(bad), Some(&admin)).await;
        assert_eq!(error["code"], "invalid_argument", "{error}");
        let list = send(
            app.http
                .get(app.url(&format!("/v1/session-events?after={bad}")))
                .header("authorization", &admin),
        )
        .await;
        assert_eq!(
            (list.status, &list.json["code"]),
            (400, &Value::from(3)),
            "{}",
            list.body
        );
        let sse = sse_answer(
            &app,
            "/v1/session-events",
            &[("authorization", &admin), ("last-event-id", bad)],
        )
        .await;
        assert_eq!(
            (sse.status, &sse.json["code"]),
            (400, &Value::from(3)),
            "{}",
            sse.body
        );
        let mine = sse_answer(
            &app,
            &format!("/auth/sessions/events?after={bad}"),
            &[("x-session-token", &me.token)],
        )
        .await;
        assert_eq!(mine.status, 400, "{}", mine.body);
        assert_eq!(mine.json["error"]["code"], 400, "{}", mine.body);
    }
    let unknown_type = send(
        app.http
            .get(app.url("/v1/session-events?types=deleted"))
            .header("authorization", &admin),
    )
    .await;
    assert_eq!(unknown_type.status, 400, "{}", unknown_type.body);
    assert!(
        unknown_type.body.contains("deleted"),
        "{}",
        unknown_type.body
    );
    let unspecified = grpc_watch_code(
        &app,
        events::WatchSessionEventsRequest {
            types: vec![0],
            ..Default::default()
        },
        Some(&admin),
    )
    .await;
    assert_eq!(unspecified, Code::InvalidArgument);
}

#[tokio::test]
async fn a_malformed_connect_stream_request_is_refused_with_an_end_of_stream_error() {
    let app = spawn_app().await;
    for body in [
        Vec::new(),
        vec![0, 0, 0],
        vec![1, 0, 0, 0, 0],
        vec![0, 0, 0, 0, 9, 1],
    ] {
        let response = app
            .http
            .post(app.url(WATCH))
            .header("content-type", "application/connect+proto")
            .header("authorization", app.admin())
            .body(body.clone())
            .send()
            .await
            .expect("Connect request");
        assert_eq!(response.status(), 200);
        let mut stream = (Incoming::new(response), Codec::Proto);
        match next_connect(&mut stream).await {
            ConnectItem::End(end) => {
                assert_eq!(end["error"]["code"], "invalid_argument", "{body:?}: {end}")
            }
            ConnectItem::Event(e) => panic!("{e:?}"),
        }
    }
    let wrong_type = send(
        app.http
            .post(app.url(WATCH))
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await;
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.body);
}

#[tokio::test]
async fn an_expired_cursor_is_gone_in_every_shape() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let early = create_and_delete(&app, &user).await;
    let kept = login(&app, &user).await;
    let first = list_until(&app, &app.admin(), "after=0&limit=1", |e| !e.is_empty()).await;
    let cursor = first.json["events"][0]["cursor"]
        .as_str()
        .expect("a first event")
        .to_owned();
    assert_eq!(first.json["events"][0]["sessionId"], early.as_str());
    app.advance(Duration::from_secs(3600));
    let pruned = app
        .core
        .store()
        .prune(app.now(), sessiond::domain::Time::from_unix_micros(0), 100)
        .await
        .expect("pruning");
    assert_eq!(pruned.sessions, 1);
    let admin = app.admin();

    let list = send(
        app.http
            .get(app.url(&format!("/v1/session-events?after={cursor}")))
            .header("authorization", &admin),
    )
    .await;
    assert_eq!(
        (list.status, &list.json["code"]),
        (410, &Value::from(9)),
        "{}",
        list.body
    );
    assert!(list.body.contains("resync"), "{}", list.body);
    let sse = sse_answer(
        &app,
        "/v1/session-events",
        &[("authorization", &admin), ("last-event-id", &cursor)],
    )
    .await;
    assert_eq!(
        (sse.status, &sse.json["code"]),
        (410, &Value::from(9)),
        "{}",
        sse.body
    );
    let mine = sse_answer(
        &app,
        &format!("/auth/sessions/events?after={cursor}"),
        &[("x-session-token", &kept.token)],
    )
    .await;
    assert_eq!(mine.status, 410, "{}", mine.body);
    assert_eq!(mine.json["error"]["code"], 410, "{}", mine.body);
    assert_eq!(
        grpc_watch_code(&app, watch_after(&cursor), Some(&admin)).await,
        Code::FailedPrecondition
    );
    let error = connect_watch_error(&app, Codec::Proto, &watch_after(&cursor), Some(&admin)).await;
    assert_eq!(error["code"], "failed_precondition", "{error}");
    let unary = send(
        app.http
            .post(app.url(LIST))
            .header("content-type", "application/json")
            .header("authorization", &admin)
            .body(format!(r#"{{"after":"{cursor}"}}"#)),
    )
    .await;
    assert_eq!(
        (unary.status, &unary.json["code"]),
        (410, &Value::from("failed_precondition")),
        "{}",
        unary.body
    );

    // "0" still reads what is left: the kept session's creation.
    let rest = list_until(&app, &admin, "after=0", |e| !e.is_empty()).await;
    assert_eq!(rest.json["events"][0]["sessionId"], kept.id.as_str());
}

#[tokio::test]
async fn a_query_that_is_not_utf_8_is_refused_not_guessed() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let kept = login(&app, &user).await;
    let admin = app.admin();
    let list = send(
        app.http
            .get(app.url("/v1/session-events?user_id=%FF"))
            .header("authorization", &admin),
    )
    .await;
    assert_eq!(
        (list.status, &list.json["code"]),
        (400, &Value::from(3)),
        "{}",
        list.body
    );
    let sse = sse_answer(
        &app,
        "/v1/session-events?after=%C3",
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(
        (sse.status, &sse.json["code"]),
        (400, &Value::from(3)),
        "{}",
        sse.body
    );
    let mine = sse_answer(
        &app,
        "/auth/sessions/events?types=%FFterminated",
        &[("x-session-token", &kept.token)],
    )
    .await;
    assert_eq!(mine.status, 400, "{}", mine.body);
    assert_eq!(mine.json["error"]["code"], 400, "{}", mine.body);
    // Well-formed percent-encoding of UTF-8 is read as ever.
    let fine = send(
        app.http
            .get(app.url("/v1/session-events?after=0&types=%74erminated"))
            .header("authorization", &admin),
    )
    .await;
    assert_eq!(fine.status, 200, "{}", fine.body);
}

#[tokio::test]
async fn a_user_may_not_name_another_user() {
    let app = spawn_app().await;
    let ada = app.add_user("ada").await;
    let bob = app.add_user("bob").await;
    let answer = send(
        app.http
            .get(app.url(&format!("/v1/session-events?user_id={}", bob.id.as_str())))
            .header("authorization", app.bearer(ada.id.as_str(), &[])),
    )
    .await;
    assert_eq!(
        (answer.status, &answer.json["code"]),
        (403, &Value::from(7)),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn the_self_service_stream_refuses_a_client_that_does_not_ask_for_a_stream() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let me = login(&app, &user).await;
    let answer = send(
        app.http
            .get(app.url("/auth/sessions/events"))
            .header("accept", "application/json")
            .header("x-session-token", &me.token),
    )
    .await;
    assert_eq!(answer.status, 406, "{}", answer.body);
    assert_eq!(answer.json["error"]["code"], 406, "{}", answer.body);
    // Only a client that asks for the stream gets one, so nothing else is held open.
    for accept in ["*/*", "text/*"] {
        let answer = send(
            app.http
                .get(app.url("/auth/sessions/events"))
                .header("accept", accept)
                .header("x-session-token", &me.token),
        )
        .await;
        assert_eq!(answer.status, 406, "{accept}: {}", answer.body);
    }
    let answer = send(
        app.http
            .get(app.url("/auth/sessions/events"))
            .header("x-session-token", &me.token),
    )
    .await;
    assert_eq!(answer.status, 406, "{}", answer.body);
}
