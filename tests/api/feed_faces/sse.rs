//! Server-Sent Events: `/v1/session-events` with `Accept: text/event-stream` and the
//! self-service `/auth/sessions/events`; resuming by `Last-Event-ID` and `?after=`;
//! keepalive comments.

use super::*;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The next `n` events of a stream.
async fn take(stream: &mut Incoming, n: usize) -> Vec<SseEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(next_sse_event(stream).await.expect("the stream goes on"));
    }
    out
}

#[tokio::test]
async fn sse_streams_events_and_resumes_by_last_event_id_or_after() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let first = create_and_delete(&app, &user).await;
    let url = app.url("/v1/session-events?after=0");
    let response = open_sse(&app.http, &url, &[("authorization", &app.admin())]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(header(&response, "cache-control"), Some("no-cache"));
    assert_eq!(header(&response, "x-accel-buffering"), Some("no"));
    let mut stream = Incoming::new(response);
    let seen = take(&mut stream, 2).await;
    assert_eq!(seen[0].event, "session.added");
    assert_eq!(seen[1].event, "session.terminated");
    assert_eq!(seen[1].data["sessionId"], first.as_str());
    assert_eq!(seen[1].data["reason"], "TERMINATION_REASON_DELETED");
    assert_eq!(seen[1].data["cursor"], seen[1].id.as_str());
    let second = create_and_delete(&app, &user).await;
    let live = take(&mut stream, 2).await;
    assert_eq!(live[0].data["sessionId"], second.as_str());
    drop(stream);

    // A reconnect sends the last id it saw: the stream goes on after it, even though the URL
    // still says after=0.
    let response = open_sse(
        &app.http,
        &url,
        &[
            ("authorization", &app.admin()),
            ("last-event-id", &seen[1].id),
        ],
    )
    .await;
    let mut resumed = Incoming::new(response);
    let again = take(&mut resumed, 2).await;
    let ids: Vec<&str> = again.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [live[0].id.as_str(), live[1].id.as_str()]);

    // ?after= alone does the same.
    let response = open_sse(
        &app.h2,
        &app.url(&format!("/v1/session-events?after={}", seen[0].id)),
        &[("authorization", &app.admin())],
    )
    .await;
    let mut after = Incoming::new(response);
    let next = take(&mut after, 1).await;
    assert_eq!(next[0].id, seen[1].id);
}

#[tokio::test]
async fn sse_filters_by_type_and_user() {
    let app = spawn_app().await;
    let ada = app.add_user("ada").await;
    let bob = app.add_user("bob").await;
    create_and_delete(&app, &ada).await;
    let bobs = create_and_delete(&app, &bob).await;
    let url = app.url(&format!(
        "/v1/session-events?after=0&types=session.terminated&user_id={}",
        bob.id.as_str()
    ));
    let mut stream =
        Incoming::new(open_sse(&app.http, &url, &[("authorization", &app.admin())]).await);
    let seen = take(&mut stream, 1).await;
    assert_eq!(seen[0].event, "session.terminated");
    assert_eq!(seen[0].data["sessionId"], bobs.as_str());
    let later = create_and_delete(&app, &bob).await;
    let next = take(&mut stream, 1).await;
    assert_eq!(next[0].event, "session.terminated");
    assert_eq!(next[0].data["sessionId"], later.as_str());
}

#[tokio::test]
async fn the_self_service_stream_sees_a_revocation_from_another_device_then_ends() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let other_user = app.add_user("bob").await;
    let laptop = login(&app, &user).await;
    let phone = login(&app, &user).await;
    let response = open_sse(
        &app.http,
        &app.url("/auth/sessions/events"),
        &[("x-session-token", &laptop.token)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut stream = Incoming::new(response);

    // Another user's sessions are not shown; the phone signs the laptop out.
    create_and_delete(&app, &other_user).await;
    let answer = send(
        app.http
            .delete(app.url("/auth/sessions"))
            .header("x-session-token", &phone.token),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A watch from now may begin with the user's events committed just before it opened
    // (PostgreSQL): the creations of the two sessions. Nothing of the other user's.
    let event = loop {
        let event = next_sse_event(&mut stream).await.expect("the revocation");
        assert_eq!(event.data["userId"], user.id.as_str());
        if event.event != "session.added" {
            break event;
        }
    };
    assert_eq!(event.event, "session.terminated");
    assert_eq!(event.data["sessionId"], laptop.id.as_str());
    assert_eq!(event.data["userId"], user.id.as_str());
    assert_eq!(event.data["reason"], "TERMINATION_REASON_REVOKED_OTHERS");
    assert!(
        stream.ends_within(WAIT).await,
        "the stream of a session that ended ends too"
    );

    // Reconnecting with the revoked session is refused in Kratos' shape.
    let response = open_sse(
        &app.http,
        &app.url("/auth/sessions/events"),
        &[
            ("x-session-token", &laptop.token),
            ("last-event-id", &event.id),
        ],
    )
    .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], 401);
}

#[tokio::test]
async fn the_self_service_stream_takes_the_session_cookie_as_a_browser_sends_it() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let tab = login(&app, &user).await;
    let admin_revoked = login(&app, &user).await;
    let cookie = format!("sessiond_session={}", tab.token);
    let mut stream = Incoming::new(
        open_sse(
            &app.h2,
            &app.url("/auth/sessions/events?types=terminated"),
            &[("cookie", &cookie)],
        )
        .await,
    );
    let answer = send(
        app.http
            .delete(app.url(&format!(
                "/auth/admin/api/users/{}/sessions/{}",
                user.id.as_str(),
                admin_revoked.id
            )))
            .header("authorization", app.admin()),
    )
    .await;
    assert!(answer.status < 300, "{}", answer.body);
    let event = next_sse_event(&mut stream).await.expect("the revocation");
    assert_eq!(event.data["sessionId"], admin_revoked.id.as_str());
    assert_eq!(event.data["reason"], "TERMINATION_REASON_REVOKED_BY_ADMIN");
}

#[tokio::test]
async fn an_idle_stream_sends_keepalive_comments() {
    let app = spawn_app_with(|s| s.feed_keepalive = Duration::from_millis(100)).await;
    let response = open_sse(
        &app.http,
        &app.url("/v1/session-events"),
        &[("authorization", &app.admin())],
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut stream = Incoming::new(response);
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let block = stream.sse_block().await.expect("a keepalive");
        assert_eq!(block, [": keepalive"]);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
