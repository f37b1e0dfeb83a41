//! Every refusal of the signals routes, in the admin face's error shape: missing credentials
//! or `ssf.manage`, receiver URLs that are not allowed, streams and clients that are not the
//! caller's or do not exist, a client id taken, and hostile JSON (wrong types, too long,
//! transmitter members changed, not JSON, too large); unknown members are ignored; and a
//! stream's bound on removed subjects.

use serde_json::{Value, json};
use sessiond::settings::Settings;
use sessiond::signals::targets::MAX_REMOVED_SUBJECTS;

use super::metadata::assert_admin_error;
use super::*;
use crate::helpers::*;

#[tokio::test]
async fn every_refusal_of_the_signals_routes_comes_in_the_admin_error_shape() {
    let app = signals_app_with(|s| s.body_limit = 64 * 1024).await;
    let owner = manager(&app, "owner");
    let stream = "/auth/admin/api/ssf/stream";
    let clients = "/auth/admin/api/backchannel-logout-clients";
    let call = |method: &str, path: &str, auth: &str, body: Option<Value>| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = app
            .http
            .request(method, app.url(path))
            .header("authorization", auth);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request)
    };
    let created = call(
        "POST",
        stream,
        &owner,
        Some(json!({"events_requested": [SESSION_REVOKED]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json["stream_id"].as_str().unwrap().to_owned();
    let client = call(
        "POST",
        clients,
        &owner,
        Some(json!({"clientId": "shop", "backchannelLogoutUri": "https://shop.example/bcl"})),
    )
    .await;
    assert_eq!(client.status, 201, "{}", client.body);

    // Without ssf.manage: every route, even on what exists.
    let with_id = json!({"stream_id": id});
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", stream.to_owned(), None),
        ("GET", format!("{stream}?stream_id={id}"), None),
        ("POST", stream.to_owned(), Some(json!({}))),
        ("PATCH", stream.to_owned(), Some(with_id.clone())),
        ("PUT", stream.to_owned(), Some(with_id.clone())),
        ("DELETE", format!("{stream}?stream_id={id}"), None),
        (
            "GET",
            format!("/auth/admin/api/ssf/status?stream_id={id}"),
            None,
        ),
        (
            "POST",
            "/auth/admin/api/ssf/status".to_owned(),
            Some(json!({"stream_id": id, "status": "paused"})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/subjects/add".to_owned(),
            Some(json!({"stream_id": id, "subject": {"format": "opaque", "id": "1"}})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/subjects/remove".to_owned(),
            Some(json!({"stream_id": id, "subject": {"format": "opaque", "id": "1"}})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/verify".to_owned(),
            Some(with_id.clone()),
        ),
        (
            "POST",
            format!("/auth/admin/api/ssf/poll/{id}"),
            Some(json!({})),
        ),
        ("GET", clients.to_owned(), None),
        (
            "POST",
            clients.to_owned(),
            Some(json!({"clientId": "x", "backchannelLogoutUri": "https://x.example/"})),
        ),
        ("DELETE", format!("{clients}/shop"), None),
    ];
    let reader = app.bearer("owner", &["session.read", "session.delete", "user.write"]);
    for (method, path, body) in &routes {
        let what = format!("{method} {path} without ssf.manage");
        let answer = call(method, path, &reader, body.clone()).await;
        assert_admin_error(&answer, 403, "FORBIDDEN", &what);
        assert!(
            answer.json["message"]
                .as_str()
                .unwrap()
                .contains("ssf.manage")
        );
        let anonymous = send(
            app.http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(path),
                )
                .json(body.as_ref().unwrap_or(&json!({}))),
        )
        .await;
        assert_admin_error(
            &anonymous,
            401,
            "ADMIN_AUTH_REQUIRED",
            &format!("{method} {path}"),
        );
    }
    // Nothing was changed by the refused calls.
    let still = call(
        "GET",
        &format!("/auth/admin/api/ssf/status?stream_id={id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(still.json["status"], "enabled", "{}", still.body);

    // Receiver URLs: https, or http to loopback when allowed; never link-local or metadata.
    for url in [
        "not a URL",
        "/relative/path",
        "http://example.com/events",
        "http://192.168.1.10/events",
        "https://169.254.169.254/latest/meta-data",
        "http://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/events",
        "https://[::ffff:169.254.169.254]/events",
        "https://metadata.google.internal/computeMetadata",
        "https://user:secret@rp.example/events",
        "https://rp.example/events#fragment",
        "ftp://rp.example/events",
    ] {
        let push = call(
            "POST",
            stream,
            &owner,
            Some(json!({"delivery": {"method": PUSH, "endpoint_url": url}})),
        )
        .await;
        assert_admin_error(&push, 400, "VALIDATION_FAILED", url);
        let logout = call(
            "POST",
            clients,
            &owner,
            Some(json!({"clientId": "bad", "backchannelLogoutUri": url})),
        )
        .await;
        assert_admin_error(&logout, 400, "VALIDATION_FAILED", url);
        assert!(!push.body.contains("secret") && !logout.body.contains("secret"));
    }

    // Unknown streams and clients, and another receiver's stream, are not found.
    let stranger = manager(&app, "stranger");
    for (auth, stream_id) in [(&owner, "nope"), (&stranger, id.as_str())] {
        let target = json!({"stream_id": stream_id});
        for (method, path, body) in [
            ("GET", format!("{stream}?stream_id={stream_id}"), None),
            ("PATCH", stream.to_owned(), Some(target.clone())),
            ("PUT", stream.to_owned(), Some(target.clone())),
            ("DELETE", format!("{stream}?stream_id={stream_id}"), None),
            (
                "GET",
                format!("/auth/admin/api/ssf/status?stream_id={stream_id}"),
                None,
            ),
            (
                "POST",
                "/auth/admin/api/ssf/status".to_owned(),
                Some(json!({"stream_id": stream_id, "status": "paused"})),
            ),
            (
                "POST",
                "/auth/admin/api/ssf/subjects/add".to_owned(),
                Some(json!({"stream_id": stream_id, "subject": {"format": "opaque", "id": "1"}})),
            ),
            (
                "POST",
                "/auth/admin/api/ssf/verify".to_owned(),
                Some(target.clone()),
            ),
            (
                "POST",
                format!("/auth/admin/api/ssf/poll/{stream_id}"),
                Some(json!({})),
            ),
        ] {
            let answer = call(method, &path, auth, body).await;
            assert_admin_error(&answer, 404, "NOT_FOUND", &format!("{method} {path}"));
        }
    }
    let gone = call("DELETE", &format!("{clients}/nope"), &owner, None).await;
    assert_admin_error(&gone, 404, "NOT_FOUND", "an unknown client");
    let listed = call("GET", stream, &stranger, None).await;
    assert_eq!(
        listed.json,
        json!([]),
        "another receiver's streams are not listed"
    );

    // A client id is registered once.
    let twice = call(
        "POST",
        clients,
        &owner,
        Some(json!({"clientId": "shop", "backchannelLogoutUri": "https://other.example/bcl"})),
    )
    .await;
    assert_admin_error(&twice, 409, "ALREADY_EXISTS", "a duplicate client id");

    // Hostile JSON: wrong types, too long, transmitter members changed, not JSON at all.
    let long = "x".repeat(1001);
    let many: Vec<String> = (0..65).map(|i| format!("urn:example:{i}")).collect();
    let with = |members: Value| {
        let mut body = json!({"stream_id": id});
        body.as_object_mut()
            .unwrap()
            .extend(members.as_object().unwrap().clone());
        body
    };
    let bad: Vec<(&str, String, Value)> = vec![
        ("POST", stream.to_owned(), json!([SESSION_REVOKED])),
        ("POST", stream.to_owned(), json!("a string")),
        (
            "POST",
            stream.to_owned(),
            json!({"events_requested": SESSION_REVOKED}),
        ),
        (
            "POST",
            stream.to_owned(),
            json!({"events_requested": [1, 2]}),
        ),
        ("POST", stream.to_owned(), json!({"events_requested": many})),
        (
            "POST",
            stream.to_owned(),
            json!({"events_requested": ["x".repeat(513)]}),
        ),
        ("POST", stream.to_owned(), json!({"description": 5})),
        ("POST", stream.to_owned(), json!({"description": long})),
        ("POST", stream.to_owned(), json!({"delivery": PUSH})),
        ("POST", stream.to_owned(), json!({"delivery": [PUSH]})),
        (
            "POST",
            stream.to_owned(),
            json!({"delivery": {"method": 8935}}),
        ),
        (
            "POST",
            stream.to_owned(),
            json!({"delivery": {"method": "urn:example:email"}}),
        ),
        (
            "POST",
            stream.to_owned(),
            json!({"delivery": {"method": PUSH}}),
        ),
        (
            "POST",
            stream.to_owned(),
            json!({"delivery": {"method": PUSH, "endpoint_url": ["https://rp.example/"]}}),
        ),
        (
            "POST",
            stream.to_owned(),
            json!({"delivery": {"method": PUSH, "endpoint_url": "https://rp.example/",
                   "authorization_header": "Bearer a\r\nX-Injected: 1"}}),
        ),
        (
            "POST",
            stream.to_owned(),
            json!({"iss": "https://evil.example"}),
        ),
        ("POST", stream.to_owned(), json!({"aud": "someone-else"})),
        ("POST", stream.to_owned(), json!({"stream_id": "mine"})),
        ("PATCH", stream.to_owned(), json!({"stream_id": 5})),
        (
            "PATCH",
            stream.to_owned(),
            with(json!({"events_delivered": []})),
        ),
        (
            "PATCH",
            stream.to_owned(),
            with(json!({"inactivity_timeout": 1})),
        ),
        ("PUT", stream.to_owned(), with(json!({"delivery": null}))),
        (
            "POST",
            "/auth/admin/api/ssf/status".to_owned(),
            with(json!({"status": 1})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/status".to_owned(),
            with(json!({"status": "off"})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/status".to_owned(),
            with(json!({})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/status".to_owned(),
            with(json!({"status": "paused", "reason": long})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/verify".to_owned(),
            with(json!({"state": 5})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/verify".to_owned(),
            with(json!({"state": long})),
        ),
        ("POST", "/auth/admin/api/ssf/verify".to_owned(), json!({})),
        (
            "POST",
            "/auth/admin/api/ssf/subjects/add".to_owned(),
            with(json!({})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/subjects/add".to_owned(),
            with(json!({"subject": "alice@example.com"})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/subjects/add".to_owned(),
            with(json!({"subject": {"format": "email"}})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/subjects/add".to_owned(),
            with(json!({"subject": {"format": "opaque", "id": "x".repeat(3000)}})),
        ),
        (
            "POST",
            "/auth/admin/api/ssf/subjects/remove".to_owned(),
            with(json!({"subject": {"format": "opaque", "id": "1"}, "verified": "yes"})),
        ),
        (
            "POST",
            format!("/auth/admin/api/ssf/poll/{id}"),
            json!({"maxEvents": -1}),
        ),
        (
            "POST",
            format!("/auth/admin/api/ssf/poll/{id}"),
            json!({"returnImmediately": "yes"}),
        ),
        (
            "POST",
            format!("/auth/admin/api/ssf/poll/{id}"),
            json!({"ack": "jti"}),
        ),
        (
            "POST",
            format!("/auth/admin/api/ssf/poll/{id}"),
            json!({"ack": [1]}),
        ),
        (
            "POST",
            format!("/auth/admin/api/ssf/poll/{id}"),
            json!({"setErrs": []}),
        ),
        (
            "POST",
            format!("/auth/admin/api/ssf/poll/{id}"),
            json!({"setErrs": {"jti": {"description": "no err"}}}),
        ),
        (
            "POST",
            clients.to_owned(),
            json!({"backchannelLogoutUri": "https://x.example/"}),
        ),
        (
            "POST",
            clients.to_owned(),
            json!({"clientId": 5, "backchannelLogoutUri": "https://x.example/"}),
        ),
        (
            "POST",
            clients.to_owned(),
            json!({"clientId": "a b", "backchannelLogoutUri": "https://x.example/"}),
        ),
        (
            "POST",
            clients.to_owned(),
            json!({"clientId": "x".repeat(201), "backchannelLogoutUri": "https://x.example/"}),
        ),
        ("POST", clients.to_owned(), json!({"clientId": "x"})),
        (
            "POST",
            clients.to_owned(),
            json!({"clientId": "x", "backchannelLogoutUri": "https://x.example/",
                   "sessionRequired": "yes"}),
        ),
        (
            "POST",
            clients.to_owned(),
            json!({"clientId": "x", "backchannelLogoutUri": "https://x.example/",
                   "sessions": "mine"}),
        ),
        (
            "POST",
            clients.to_owned(),
            json!({"clientId": "x", "backchannelLogoutUri": "https://x.example/",
                   "sessions": ["all"]}),
        ),
    ];
    for (method, path, body) in bad {
        let what = format!("{method} {path} {body}");
        let answer = call(method, &path, &owner, Some(body)).await;
        assert_admin_error(&answer, 400, "VALIDATION_FAILED", &what);
    }
    // Bodies that are no JSON object at all.
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (body, what) in [
        ("{\"events_requested\": [".to_owned(), "truncated JSON"),
        ("not json".to_owned(), "not JSON"),
        (nested, "JSON nested too deep"),
    ] {
        let answer = send(
            app.http
                .post(app.url(stream))
                .header("authorization", &owner)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_admin_error(&answer, 400, "VALIDATION_FAILED", what);
    }
    let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(80 * 1024));
    let answer = send(
        app.http
            .post(app.url(stream))
            .header("authorization", &owner)
            .header("content-type", "application/json")
            .body(huge),
    )
    .await;
    assert_admin_error(&answer, 413, "PAYLOAD_TOO_LARGE", "a body over the limit");
    let typed = send(
        app.http
            .post(app.url(stream))
            .header("authorization", &owner)
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_admin_error(&typed, 415, "UNSUPPORTED_MEDIA_TYPE", "text/plain");

    // Unknown members are ignored (SSF 1.0): accepted, not stored, not echoed.
    let unknown = call(
        "POST",
        stream,
        &owner,
        Some(json!({
            "events_requested": [SESSION_REVOKED],
            "format": "email",
            "x-extension": {"nested": [1, 2, 3]},
            "delivery": {"method": POLL, "extra": true},
        })),
    )
    .await;
    assert_eq!(unknown.status, 201, "{}", unknown.body);
    assert!(
        unknown.json.get("x-extension").is_none(),
        "{}",
        unknown.body
    );
    assert!(unknown.json.get("format").is_none(), "{}", unknown.body);
    assert!(
        unknown.json["delivery"].get("extra").is_none(),
        "{}",
        unknown.body
    );
    let unknown_client = call(
        "POST",
        clients,
        &owner,
        Some(
            json!({"clientId": "blog", "backchannelLogoutUri": "https://blog.example/",
                    "frontchannelLogoutUri": "https://blog.example/fc"}),
        ),
    )
    .await;
    assert_eq!(unknown_client.status, 201, "{}", unknown_client.body);
    assert!(unknown_client.json.get("frontchannelLogoutUri").is_none());

    // None of the refusals created a stream or a client.
    let mine = call("GET", stream, &owner, None).await;
    assert_eq!(mine.json.as_array().unwrap().len(), 2, "{}", mine.body);
    let registered = call("GET", clients, &owner, None).await;
    assert_eq!(
        registered.json["data"].as_array().unwrap().len(),
        2,
        "{}",
        registered.body
    );
}

/// Removes `n` subjects from a stream in one statement, past the routes (as `filler-1` …).
async fn remove_subjects_directly(settings: &Settings, stream_id: &str, n: u32) {
    use sqlx::Connection;
    let url = settings.store_url();
    let sql = |param: &str| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO signal_removed_subjects (target_id, subject) \
             SELECT {param}, '{{\"format\":\"opaque\",\"id\":\"filler-' || i || '\"}}' FROM n"
        )
    };
    if settings.is_postgres() {
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("postgres");
        sqlx::query(&sql("$1"))
            .bind(stream_id)
            .execute(&mut conn)
            .await
            .expect("removing subjects");
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        sqlx::query(&sql("?1"))
            .bind(stream_id)
            .execute(&mut conn)
            .await
            .expect("removing subjects");
    }
}

#[tokio::test]
async fn a_stream_at_its_bound_of_removed_subjects_refuses_one_more_until_one_is_added_back() {
    let mut settings = None;
    let app = signals_app_with(|s| settings = Some(s.clone())).await;
    let owner = manager(&app, "owner");
    let created = send(
        app.http
            .post(app.url("/auth/admin/api/ssf/stream"))
            .header("authorization", &owner)
            .json(&json!({"events_requested": [SESSION_REVOKED]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json["stream_id"].as_str().unwrap().to_owned();
    remove_subjects_directly(&settings.expect("the settings"), &id, MAX_REMOVED_SUBJECTS).await;
    let change = |route: &str, subject: &str| {
        send(
            app.http
                .post(app.url(&format!("/auth/admin/api/ssf/subjects/{route}")))
                .header("authorization", &owner)
                .json(&json!({"stream_id": id, "subject": {"format": "opaque", "id": subject}})),
        )
    };

    let refused = change("remove", "one-more").await;
    assert_admin_error(
        &refused,
        400,
        "VALIDATION_FAILED",
        "one removal past the bound",
    );
    let message = refused.json["message"].as_str().unwrap();
    assert!(
        message.contains(&MAX_REMOVED_SUBJECTS.to_string()),
        "{message}"
    );
    // Removing a subject already removed is no change, so the bound does not refuse it.
    assert_eq!(change("remove", "filler-1").await.status, 204);
    // Adding one back makes room for one more, and only one.
    assert_eq!(change("add", "filler-1").await.status, 200);
    assert_eq!(change("remove", "one-more").await.status, 204);
    let again = change("remove", "filler-1").await;
    assert_admin_error(&again, 400, "VALIDATION_FAILED", "the bound again");
}
