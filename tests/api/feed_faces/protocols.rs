//! One watch on every protocol sees a session's creation and deletion, in order, with the
//! termination reason; the REST list pages chain by `next_cursor`.

use serde_json::Value;

use super::*;

/// `(session, type)` of the events of `sessions` in `seen`, in order.
fn of_sessions(seen: &[events::SessionEvent], sessions: &[&str]) -> Vec<(String, i32)> {
    seen.iter()
        .filter(|e| sessions.contains(&e.session_id.as_str()))
        .map(|e| (e.session_id.clone(), e.r#type))
        .collect()
}

fn assert_terminated_by_deletion(seen: &[events::SessionEvent], session: &str) {
    let terminated = seen
        .iter()
        .find(|e| {
            e.session_id == session && e.r#type == events::SessionEventType::Terminated as i32
        })
        .expect("a termination event");
    assert_eq!(terminated.reason, events::TerminationReason::Deleted as i32);
    assert!(!terminated.cursor.is_empty());
    assert!(terminated.occurred_at.is_some());
    assert_eq!(terminated.resource_owner, INSTANCE);
}

#[tokio::test]
async fn native_grpc_streams_a_creation_and_a_deletion() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let mut client = grpc_client(&app);
    let mut stream = client
        .watch_session_events(grpc_request(from_start(), &app.admin()))
        .await
        .expect("watch opens")
        .into_inner();
    let session = create_and_delete(&app, &user).await;
    let mut seen = Vec::new();
    while of_sessions(&seen, &[&session]).len() < 2 {
        let event = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("an event in time")
            .expect("no error")
            .expect("the stream goes on");
        seen.push(event);
    }
    assert_eq!(
        of_sessions(&seen, &[&session]),
        added_then_terminated(&session)
    );
    assert_terminated_by_deletion(&seen, &session);
    assert_eq!(seen[0].user_id, user.id.as_str());
    let cursors: Vec<&str> = seen.iter().map(|e| e.cursor.as_str()).collect();
    let mut unique = cursors.clone();
    unique.dedup();
    assert_eq!(cursors, unique, "each event once");
}

#[tokio::test]
async fn grpc_web_streams_over_http1_and_h2() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    for client in [&app.http, &app.h2] {
        let mut stream = open_grpc_web(client, &app, Some(&app.admin()), &from_start()).await;
        let session = create_and_delete(&app, &user).await;
        let mut seen = Vec::new();
        while of_sessions(&seen, &[&session]).len() < 2 {
            match next_grpc_web(&mut stream).await {
                WebItem::Event(event) => seen.push(event),
                WebItem::Status(code) => panic!("the stream ended early: {code:?}"),
            }
        }
        assert_eq!(
            of_sessions(&seen, &[&session]),
            added_then_terminated(&session)
        );
        assert_terminated_by_deletion(&seen, &session);
    }
}

#[tokio::test]
async fn connect_streams_json_and_proto_over_http1_and_h2() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    for client in [&app.http, &app.h2] {
        for codec in [Codec::Json, Codec::Proto] {
            let mut stream =
                open_connect(client, &app, codec, Some(&app.admin()), &from_start()).await;
            let session = create_and_delete(&app, &user).await;
            let mut seen = Vec::new();
            while of_sessions(&seen, &[&session]).len() < 2 {
                match next_connect(&mut stream).await {
                    ConnectItem::Event(event) => seen.push(event),
                    ConnectItem::End(end) => panic!("the stream ended early ({codec:?}): {end}"),
                }
            }
            assert_eq!(
                of_sessions(&seen, &[&session]),
                added_then_terminated(&session)
            );
            assert_terminated_by_deletion(&seen, &session);
        }
    }
}

#[tokio::test]
async fn a_watch_without_a_cursor_starts_now() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let before = create_and_delete(&app, &user).await;
    let mut stream = open_connect(
        &app.http,
        &app,
        Codec::Json,
        Some(&app.admin()),
        &events::WatchSessionEventsRequest::default(),
    )
    .await;
    let after = create_and_delete(&app, &user).await;
    let mut seen = Vec::new();
    while of_sessions(&seen, &[&after]).len() < 2 {
        match next_connect(&mut stream).await {
            ConnectItem::Event(event) => seen.push(event),
            ConnectItem::End(end) => panic!("the stream ended early: {end}"),
        }
    }
    // On PostgreSQL "now" is the oldest transaction still running anywhere in the cluster, so
    // a watch may begin with events committed just before it opened (never miss one); only
    // SQLite promises to leave them all out.
    let on_postgres = std::env::var(FACES_ON_POSTGRES_ENV).is_ok_and(|v| v == "1");
    if !on_postgres {
        assert!(of_sessions(&seen, &[&before]).is_empty(), "{seen:?}");
    }
}

async fn rest_list(app: &TestApp, auth: &str, query: &str) -> Answer {
    send(
        app.http
            .get(app.url(&format!("/v1/session-events?{query}")))
            .header("authorization", auth),
    )
    .await
}

#[tokio::test]
async fn the_rest_list_pages_chain_by_next_cursor() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(create_and_delete(&app, &user).await);
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut after = String::from("0");
    let mut full_pages = 0;
    let ours = |seen: &[Value]| {
        seen.iter()
            .filter(|e| sessions.iter().any(|s| e["sessionId"] == s.as_str()))
            .count()
    };
    // On PostgreSQL an event is listed once no older transaction is running anywhere in the
    // cluster, so the head of the list may lag behind for a moment: an empty page then means
    // "nothing more yet", and the chain continues from the same cursor.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let answer = rest_list(&app, &app.admin(), &format!("after={after}&limit=2")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let events = answer.json["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(events.len() <= 2);
        let next = answer.json["nextCursor"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if events.is_empty() {
            if ours(&seen) == 6 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the list never shows all six events"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            assert!(!next.is_empty());
            full_pages += 1;
            seen.extend(events);
        }
        if !next.is_empty() {
            after = next;
        }
    }
    assert!(full_pages >= 3, "6 events in pages of at most 2");
    let of_ours: Vec<(String, String)> = seen
        .iter()
        .filter(|e| sessions.iter().any(|s| e["sessionId"] == s.as_str()))
        .map(|e| {
            (
                e["sessionId"].as_str().unwrap_or_default().to_owned(),
                e["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = sessions
        .iter()
        .flat_map(|s| {
            [
                (s.clone(), "SESSION_EVENT_TYPE_ADDED".to_owned()),
                (s.clone(), "SESSION_EVENT_TYPE_TERMINATED".to_owned()),
            ]
        })
        .collect();
    assert_eq!(of_ours, expected);
    let terminated = seen
        .iter()
        .find(|e| e["type"] == "SESSION_EVENT_TYPE_TERMINATED")
        .expect("a termination");
    assert_eq!(terminated["reason"], "TERMINATION_REASON_DELETED");
    assert!(terminated["sequence"].is_string(), "uint64 as a string");
}

#[tokio::test]
async fn the_list_answers_on_connect_unary_and_native_grpc_alike() {
    let app = spawn_app().await;
    let user = app.add_user("ada").await;
    let session = create_and_delete(&app, &user).await;
    list_until(
        &app,
        &app.admin(),
        &format!("after=0&user_id={}", user.id.as_str()),
        |e| e.len() == 2,
    )
    .await;
    let request = events::ListSessionEventsRequest {
        after: "0".into(),
        user_id: Some(user.id.as_str().to_owned()),
        ..Default::default()
    };
    let grpc = grpc_client(&app)
        .list_session_events(grpc_request(request.clone(), &app.admin()))
        .await
        .expect("gRPC list")
        .into_inner();
    let answer = send(
        app.h2
            .post(app.url(LIST))
            .header("content-type", "application/json")
            .header("authorization", app.admin())
            .body(format!(
                r#"{{"after":"0","userId":"{}"}}"#,
                user.id.as_str()
            )),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let connect: events::ListSessionEventsResponse =
        serde_json::from_value(answer.json.clone()).expect("a ListSessionEventsResponse");
    assert_eq!(grpc.events, connect.events);
    assert_eq!(
        of_sessions(&grpc.events, &[&session]),
        added_then_terminated(&session)
    );
}

#[tokio::test]
async fn filters_select_types_and_users_on_every_face() {
    let app = spawn_app().await;
    let ada = app.add_user("ada").await;
    let bob = app.add_user("bob").await;
    let ada_session = create_and_delete(&app, &ada).await;
    let bob_session = create_and_delete(&app, &bob).await;

    // REST: repeated and comma-separated types in every spelling.
    for query in [
        "types=terminated",
        "types=session.terminated",
        "types=SESSION_EVENT_TYPE_TERMINATED",
        "types=terminated,terminated",
    ] {
        let answer = list_until(&app, &app.admin(), &format!("after=0&{query}"), |e| {
            e.len() >= 2
        })
        .await;
        let types: Vec<&str> = answer.json["events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["type"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(types.len(), 2, "{query}: {types:?}");
        assert!(types.iter().all(|t| *t == "SESSION_EVENT_TYPE_TERMINATED"));
    }
    let answer = list_until(
        &app,
        &app.admin(),
        &format!(
            "after=0&user_id={}&types=added&types=terminated",
            bob.id.as_str()
        ),
        |e| e.len() >= 2,
    )
    .await;
    let sessions: Vec<&str> = answer.json["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["sessionId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(sessions, [bob_session.as_str(), bob_session.as_str()]);

    // gRPC: a user without session.read sees its own events only.
    list_until(&app, &app.bearer(ada.id.as_str(), &[]), "after=0", |e| {
        e.len() == 2
    })
    .await;
    let own = grpc_client(&app)
        .list_session_events(grpc_request(
            events::ListSessionEventsRequest {
                after: "0".into(),
                ..Default::default()
            },
            &app.bearer(ada.id.as_str(), &[]),
        ))
        .await
        .expect("a user lists its own events")
        .into_inner();
    assert!(!own.events.is_empty());
    assert!(
        own.events.iter().all(|e| e.session_id == ada_session),
        "{own:?}"
    );

    // Connect streaming: a type filter.
    let mut stream = open_connect(
        &app.http,
        &app,
        Codec::Proto,
        Some(&app.admin()),
        &events::WatchSessionEventsRequest {
            after: "0".into(),
            types: vec![events::SessionEventType::Added as i32],
            ..Default::default()
        },
    )
    .await;
    for _ in 0..2 {
        match next_connect(&mut stream).await {
            ConnectItem::Event(e) => {
                assert_eq!(e.r#type, events::SessionEventType::Added as i32);
            }
            ConnectItem::End(end) => panic!("ended: {end}"),
        }
    }
}
