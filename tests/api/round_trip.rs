//! Every RPC of both versions works on every protocol, with the wire shapes clients expect.

use serde_json::Value;

use crate::helpers::*;

/// create → get (with token) → list (userIdQuery) → set (metadata) → delete on one client.
async fn round_trip(app: &TestApp, api: &Api, login_name: &str) {
    let user = app.add_user(login_name).await;
    let admin = app.admin();
    let auth = Some(admin.as_str());

    let created = ok(
        api,
        api.create(
            auth,
            v2::CreateSessionRequest {
                checks: Some(user_check(user.id.as_str())),
                metadata: [("k".to_owned(), b"v".to_vec())].into_iter().collect(),
                user_agent: Some(v2::UserAgent {
                    fingerprint_id: Some("fp".into()),
                    ip: Some("127.0.0.1".into()),
                    description: Some("test".into()),
                    header: Default::default(),
                }),
                ..Default::default()
            },
        )
        .await,
    );
    let details = created.message.details.clone().expect("details");
    assert_eq!(details.sequence, 1, "{api}");
    assert_eq!(details.resource_owner, INSTANCE, "{api}");
    assert_eq!(details.change_date, Some(timestamp(START)), "{api}");
    let id = created.message.session_id.clone();
    assert!(
        id.len() >= 18 && id.chars().all(|c| c.is_ascii_digit()),
        "{api}: decimal id {id:?}"
    );
    let token = created.message.session_token.clone();
    assert!(token.starts_with("sdst_"), "{api}: token {token:?}");
    match api.protocol {
        Protocol::Rest => assert_eq!(created.http_status, Some(201), "{api}"),
        Protocol::Grpc => assert_eq!(created.http_status, None),
        _ => assert_eq!(created.http_status, Some(200), "{api}"),
    }
    if let Some(json) = &created.json {
        assert_protojson_shapes(json);
        assert_eq!(json["details"]["sequence"], "1", "{api}: {json}");
        assert_eq!(json["details"]["resourceOwner"], INSTANCE, "{api}");
        assert_eq!(
            json["details"]["changeDate"], "2025-03-04T15:13:33.203Z",
            "{api}: {json}"
        );
        assert_eq!(json["sessionId"], id.as_str(), "{api}");
        assert_eq!(json["sessionToken"], token.as_str(), "{api}");
    }

    let got = ok(api, api.get(auth, get(&id, Some(&token))).await);
    let session = got.message.session.clone().expect("session");
    assert_eq!(session.id, id, "{api}");
    assert_eq!(session.sequence, 1, "{api}");
    assert_eq!(session.creation_date, Some(timestamp(START)), "{api}");
    assert_eq!(
        session.metadata.get("k").map(Vec::as_slice),
        Some(&b"v"[..])
    );
    assert_eq!(
        session
            .user_agent
            .as_ref()
            .and_then(|u| u.fingerprint_id.as_deref()),
        Some("fp"),
        "{api}"
    );
    let factor = session
        .factors
        .as_ref()
        .and_then(|f| f.user.clone())
        .expect("user factor");
    assert_eq!(factor.id, user.id.as_str(), "{api}");
    assert_eq!(factor.login_name, login_name, "{api}");
    assert_eq!(factor.organization_id, INSTANCE, "{api}");
    assert_eq!(session.expiration_date, None, "{api}");
    if let Some(json) = &got.json {
        assert_protojson_shapes(json);
        assert_eq!(json["session"]["sequence"], "1", "{api}: {json}");
        assert_eq!(
            json["session"]["metadata"]["k"], "dg==",
            "{api}: bytes are base64"
        );
        assert_eq!(
            json["session"]["factors"]["user"]["verifiedAt"],
            "2025-03-04T15:13:33.203Z"
        );
        assert!(json["session"].get("expirationDate").is_none(), "{api}");
    }

    let listed = ok(
        api,
        api.list(auth, list(vec![user_id_query(user.id.as_str())]))
            .await,
    );
    let list_details = listed.message.details.expect("list details");
    assert_eq!(list_details.total_result, 1, "{api}");
    assert_eq!(list_details.timestamp, Some(timestamp(START)), "{api}");
    assert_eq!(listed.message.sessions.len(), 1, "{api}");
    assert_eq!(listed.message.sessions[0].id, id, "{api}");
    if let Some(json) = &listed.json {
        assert_protojson_shapes(json);
        assert_eq!(json["details"]["totalResult"], "1", "{api}: {json}");
    }

    let updated = ok(api, api.set(auth, set_metadata(&id, "k2", b"v2")).await);
    let details = updated.message.details.clone().expect("details");
    assert_eq!(details.sequence, 2, "{api}");
    assert_eq!(details.resource_owner, INSTANCE, "{api}");
    let new_token = updated.message.session_token.clone();
    assert!(new_token.starts_with("sdst_"), "{api}");
    assert_ne!(new_token, token, "{api}: the token rotates");
    if let Some(json) = &updated.json {
        assert_protojson_shapes(json);
        assert_eq!(json["details"]["sequence"], "2", "{api}: {json}");
    }

    let deleted = ok(api, api.delete(auth, delete(&id, Some(&new_token))).await);
    let details = deleted.message.details.clone().expect("details");
    assert_eq!(details.sequence, 3, "{api}");
    assert_eq!(details.resource_owner, INSTANCE, "{api}");
    if let Some(json) = &deleted.json {
        assert_protojson_shapes(json);
        assert_eq!(json["details"]["sequence"], "3", "{api}: {json}");
        assert_eq!(json["details"]["resourceOwner"], INSTANCE, "{api}");
    }
    assert_eq!(app.event_count(&id).await, 3, "{api}");
}

#[tokio::test]
async fn every_rpc_of_both_versions_works_on_every_protocol() {
    let app = spawn_app().await;
    for (i, api) in app.apis().into_iter().enumerate() {
        round_trip(&app, &api, &format!("user{i}@example.com")).await;
    }
}

#[tokio::test]
async fn grpc_web_also_works_over_h2c() {
    let app = spawn_app().await;
    let admin = app.admin();
    let user = app.add_user("h2@example.com").await;
    let request = create_for_user(user.id.as_str());
    for text in [false, true] {
        let answer = grpc_web_call(
            &app.h2,
            &app.url("/zitadel.session.v2.SessionService/CreateSession"),
            Some(&admin),
            &prost::Message::encode_to_vec(&request),
            text,
        )
        .await;
        assert_eq!(answer.http_status, 200);
        assert_eq!(
            answer.status.as_ref().map(tonic::Status::code),
            Some(Code::Ok)
        );
        let created: v2::CreateSessionResponse =
            prost::Message::decode(answer.messages[0].as_slice()).expect("response");
        assert_eq!(created.details.map(|d| d.sequence), Some(1));
    }
}

#[tokio::test]
async fn rest_accepts_snake_case_token_in_the_query_and_proto_field_names_in_bodies() {
    let app = spawn_app().await;
    let admin = app.admin();
    let user = app.add_user("snake@example.com").await;
    let created = app.create_session_for(&user).await;

    // `?session_token=` is as good as `?sessionToken=`.
    let response = app
        .http
        .get(app.url(&format!(
            "/v2/sessions/{}?session_token={}",
            created.session_id, created.session_token
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401, "no bearer: still unauthenticated");
    let response = app
        .http
        .get(app.url(&format!(
            "/v2/sessions/{}?session_token={}",
            created.session_id, created.session_token
        )))
        .header("authorization", "Bearer sdst_wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let response = app
        .http
        .get(app.url(&format!(
            "/v2/sessions/{}?session_token={}",
            created.session_id, created.session_token
        )))
        .header("authorization", &app.bearer("nobody", &[]))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        200,
        "the token in snake case grants access"
    );
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["session"]["id"], created.session_id.as_str());

    // A proto field name in a body works like its JSON name.
    let response = app
        .http
        .post(app.url("/v2/sessions/search"))
        .header("authorization", &admin)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"queries":[{{"user_id_query":{{"id":"{}"}}}}]}}"#,
            user.id.as_str()
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["details"]["totalResult"], "1", "{json}");
}

#[tokio::test]
async fn json_input_is_read_the_protojson_way() {
    let app = spawn_app().await;
    let admin = app.admin();
    let user = app.add_user("lenient@example.com").await;
    let created = app.create_session_for(&user).await;
    let bodies = [
        // Unknown fields are ignored.
        format!(r#"{{"unknownField":1,"queries":[{{"idsQuery":{{"ids":["{}"]}}}}]}}"#, created.session_id),
        // Enums by name or by number; 64-bit integers as strings or numbers.
        r#"{"sortingColumn":"SESSION_FIELD_NAME_CREATION_DATE","query":{"offset":"0","limit":10,"asc":true}}"#.to_owned(),
        r#"{"sortingColumn":1,"query":{"offset":0}}"#.to_owned(),
        // Timestamps with any offset.
        r#"{"queries":[{"creationDateQuery":{"creationDate":"2025-03-04T16:13:33.203+01:00","method":"TIMESTAMP_QUERY_METHOD_EQUALS"}}]}"#.to_owned(),
    ];
    for body in &bodies {
        for (url, connect) in [
            (app.url("/v2/sessions/search"), false),
            (
                app.url("/zitadel.session.v2.SessionService/ListSessions"),
                true,
            ),
        ] {
            let mut request = app
                .http
                .post(&url)
                .header("authorization", &admin)
                .header("content-type", "application/json")
                .body(body.clone());
            if connect {
                request = request.header("connect-protocol-version", "1");
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 200, "{url} {body}");
            let json: Value = response.json().await.expect("JSON");
            assert_eq!(json["details"]["totalResult"], "1", "{url} {body}: {json}");
            assert_eq!(json["sessions"][0]["id"], created.session_id.as_str());
        }
    }
}

#[tokio::test]
async fn rest_and_connect_also_work_over_h2c() {
    let app = spawn_app().await;
    let admin = app.admin();
    let response = app
        .h2
        .post(app.url("/v2/sessions"))
        .header("authorization", &admin)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("REST over h2c");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 201);
    let response = app
        .h2
        .post(app.url("/zitadel.session.v2beta.SessionService/ListSessions"))
        .header("authorization", &admin)
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body("{}")
        .send()
        .await
        .expect("Connect over h2c");
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["details"]["totalResult"], "1", "{json}");
}

#[tokio::test]
async fn the_rest_path_id_wins_over_an_id_in_the_body() {
    let app = spawn_app().await;
    let admin = app.admin();
    let user = app.add_user("path@example.com").await;
    let one = app.create_session_for(&user).await;
    let other = app.create_session_for(&user).await;
    let response = app
        .http
        .patch(app.url(&format!("/v2/sessions/{}", one.session_id)))
        .header("authorization", &admin)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"sessionId":"{}","metadata":{{"k":"dg=="}}}}"#,
            other.session_id
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(app.event_count(&one.session_id).await, 2);
    assert_eq!(app.event_count(&other.session_id).await, 1);
}

#[tokio::test]
async fn messages_many_times_the_codec_buffer_arrive_whole_both_ways() {
    let app = spawn_app().await;
    let admin = app.admin();
    let auth = Some(admin.as_str());
    // Values of every byte, 24 KiB in all: far past the codec's starting buffer.
    let metadata: std::collections::HashMap<String, Vec<u8>> = (0..3)
        .map(|k| {
            let value = (0..8 * 1024).map(|i| ((i * 7 + k) % 256) as u8).collect();
            (format!("big{k}"), value)
        })
        .collect();
    for api in app.apis() {
        let created = ok(
            &api,
            api.create(
                auth,
                v2::CreateSessionRequest {
                    metadata: metadata.clone(),
                    ..Default::default()
                },
            )
            .await,
        );
        let id = created.message.session_id.clone();
        let got = ok(&api, api.get(auth, get(&id, None)).await);
        let session = got.message.session.expect("session");
        assert_eq!(session.metadata, metadata, "{api}");
    }
}
