//! The Connect protocol beyond the typed client: chunked bodies, optional headers, empty
//! bodies and compressed bodies.

use std::io::Write;

use bytes::Bytes;
use prost::Message;
use serde_json::Value;

use crate::helpers::*;

fn chunks(body: &[u8], size: usize) -> reqwest::Body {
    let parts: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(parts))
}

/// A Connect call of a v2 procedure as the admin, with this content type.
fn call(app: &TestApp, procedure: &str, content_type: &str) -> reqwest::RequestBuilder {
    let url = app.url(&format!("/zitadel.session.v2.SessionService/{procedure}"));
    app.http
        .post(url)
        .header("content-type", content_type)
        .header("connect-protocol-version", "1")
        .header("authorization", app.admin())
}

#[tokio::test]
async fn connect_accepts_a_chunked_body() {
    let app = spawn_app().await;
    let user = app.add_user("chunked@example.com").await;
    let request = create_for_user(user.id.as_str());

    let json = serde_json::to_vec(&request).expect("JSON");
    let response = call(&app, "CreateSession", "application/json")
        .body(chunks(&json, 7))
        .send()
        .await
        .expect("request");
    assert!(
        response.headers().get("content-length").is_some()
            || response.headers().get("transfer-encoding").is_some()
    );
    assert_eq!(response.status(), 200);
    let created: Value = response.json().await.expect("JSON answer");
    assert_eq!(created["details"]["sequence"], "1", "{created}");

    let proto = request.encode_to_vec();
    let response = call(&app, "CreateSession", "application/proto")
        .body(chunks(&proto, 3))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("body");
    let created = v2::CreateSessionResponse::decode(bytes).expect("proto answer");
    assert_eq!(created.details.map(|d| d.sequence), Some(1));
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_while_streaming() {
    let app = spawn_app_with(|config| config.body_limit = 1024).await;
    let big = serde_json::to_vec(&v2::CreateSessionRequest {
        metadata: [("k".to_owned(), vec![b'x'; 4096])].into_iter().collect(),
        ..Default::default()
    })
    .expect("JSON");
    for path in [
        "/zitadel.session.v2.SessionService/CreateSession",
        "/v2/sessions",
    ] {
        let mut request = app
            .http
            .post(app.url(path))
            .header("content-type", "application/json")
            .header("authorization", app.admin())
            .body(chunks(&big, 512));
        if path.starts_with("/zitadel") {
            request = request.header("connect-protocol-version", "1");
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 413, "{path}");
        let json: Value = response.json().await.expect("JSON error");
        assert!(
            json["code"] == "resource_exhausted" || json["code"] == 8,
            "{path}: {json}"
        );
    }
}

#[tokio::test]
async fn connect_works_without_the_protocol_version_header() {
    let app = spawn_app().await;
    let user = app.add_user("noversion@example.com").await;
    let session = app.create_session_for(&user).await;
    let url = app.url("/zitadel.session.v2beta.SessionService/GetSession");
    let request = v2beta::GetSessionRequest {
        session_id: session.session_id.clone(),
        session_token: Some(session.session_token.clone()),
    };

    let response = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("authorization", app.admin())
        .body(serde_json::to_vec(&request).expect("JSON"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let json: Value = response.json().await.expect("JSON");
    assert_eq!(json["session"]["id"], session.session_id.as_str());

    let response = app
        .http
        .post(&url)
        .header("content-type", "application/proto")
        .header("authorization", app.admin())
        .body(request.encode_to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("body");
    let got = v2beta::GetSessionResponse::decode(bytes).expect("proto");
    assert_eq!(got.session.map(|s| s.id), Some(session.session_id));
}

#[tokio::test]
async fn an_empty_body_is_the_empty_request_message() {
    let app = spawn_app().await;
    for content_type in ["application/json", "application/proto"] {
        let response = call(&app, "ListSessions", content_type)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{content_type}");
    }
    // Content types may carry parameters and any case.
    let response = app
        .http
        .post(app.url("/zitadel.session.v2.SessionService/ListSessions"))
        .header("content-type", "Application/JSON; charset=utf-8")
        .header("authorization", app.admin())
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_gzip_compressed_body_is_accepted() {
    let app = spawn_app().await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(b"{}").expect("gzip");
    let body = encoder.finish().expect("gzip");
    let response = call(&app, "ListSessions", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn connect_errors_are_json_even_for_proto_calls() {
    let app = spawn_app().await;
    let response = call(&app, "GetSession", "application/proto")
        .body(
            v2::GetSessionRequest {
                session_id: "404".into(),
                session_token: None,
            }
            .encode_to_vec(),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let bytes = response.bytes().await.expect("body");
    let failure = failure_from_connect(404, &bytes);
    assert_eq!(failure.code, Code::NotFound);
    assert_eq!(failure.id(), "QUERY-SFeaa");
    let body = failure.body.expect("body");
    assert_eq!(body["message"], "Session does not exist (QUERY-SFeaa)");
    assert_eq!(
        body["details"][0]["debug"]["message"],
        "Session does not exist"
    );
}
