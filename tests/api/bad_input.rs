//! Bad input on every protocol: always a 4xx (or a non-OK, non-INTERNAL gRPC status), never a
//! 5xx, and the server keeps serving afterwards.

use prost::Message;

use crate::helpers::*;

const LIMIT: usize = 4096;

async fn small_app() -> TestApp {
    spawn_app_with(|config| config.body_limit = LIMIT).await
}

impl Answer {
    /// A REST (`google.rpc.Status` JSON) rejection with this HTTP status and numeric code.
    #[track_caller]
    fn assert_rest(&self, status: u16, code: Code, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.json);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        assert_eq!(self.json["code"], code as i32, "{what}: {}", self.json);
        assert!(self.json["message"].is_string(), "{what}: {}", self.json);
        assert_eq!(
            self.json["details"][0]["@type"], "type.googleapis.com/zitadel.v1.ErrorDetail",
            "{what}"
        );
    }

    /// A Connect rejection with this HTTP status and code name.
    #[track_caller]
    fn assert_connect(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.json);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        assert_eq!(self.json["code"], code, "{what}: {}", self.json);
        assert!(self.json["message"].is_string(), "{what}: {}", self.json);
    }
}

fn connect(app: &TestApp, method: &str, content_type: Option<&str>) -> reqwest::RequestBuilder {
    connect_bare(app, method, content_type).header("connect-protocol-version", "1")
}

/// A Connect call without `Connect-Protocol-Version`.
fn connect_bare(
    app: &TestApp,
    method: &str,
    content_type: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = app
        .http
        .post(app.url(&format!("/zitadel.session.v2.SessionService/{method}")))
        .header("authorization", app.admin());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request
}

fn rest(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    app.http
        .request(method, app.url(path))
        .header("authorization", app.admin())
}

/// Native gRPC and both gRPC-Web variants of one raw request message.
async fn grpc_codes(app: &TestApp, method: &str, message: &[u8]) -> Vec<(String, tonic::Status)> {
    let path = format!("/zitadel.session.v2.SessionService/{method}");
    let admin = app.admin();
    let mut out = Vec::new();
    let native = grpc_raw(&app.channel, &path, Some(&admin), message.to_vec()).await;
    out.push(("gRPC".to_owned(), native.expect_err("bad input must fail")));
    for text in [false, true] {
        let answer = grpc_web_call(&app.http, &app.url(&path), Some(&admin), message, text).await;
        assert_eq!(answer.http_status, 200);
        out.push((
            format!("gRPC-Web (text: {text})"),
            answer.status.expect("grpc-status"),
        ));
    }
    out
}

/// The server still answers real requests on every protocol.
async fn assert_still_serving(app: &TestApp) {
    let admin = app.admin();
    for api in app.apis() {
        ok(&api, api.create(Some(&admin), Default::default()).await);
        ok(&api, api.list(Some(&admin), Default::default()).await);
    }
}

#[tokio::test]
async fn malformed_json_and_wrong_json_types_are_bad_requests() {
    let app = small_app().await;
    let bodies: [(&str, &[u8]); 6] = [
        ("truncated JSON", b"{\"checks\":"),
        ("wrong type", b"{\"checks\":5}"),
        (
            "wrong nested type",
            b"{\"checks\":{\"user\":{\"userId\":7}}}",
        ),
        ("not an object", b"[]"),
        (
            "invalid UTF-8",
            b"{\"checks\":{\"user\":{\"loginName\":\"\xff\xfe\"}}}",
        ),
        ("bad base64 bytes", b"{\"metadata\":{\"k\":\"***\"}}"),
    ];
    for (what, body) in bodies {
        let answer = send(
            rest(&app, reqwest::Method::POST, "/v2/sessions")
                .header("content-type", "application/json")
                .body(body.to_vec()),
        )
        .await;
        answer.assert_rest(400, Code::InvalidArgument, &format!("REST {what}"));

        let answer = send(
            rest(&app, reqwest::Method::PATCH, "/v2beta/sessions/123")
                .header("content-type", "application/json")
                .body(body.to_vec()),
        )
        .await;
        answer.assert_rest(400, Code::InvalidArgument, &format!("REST PATCH {what}"));

        if what != "not an object" {
            let answer =
                send(connect(&app, "CreateSession", Some("application/json")).body(body.to_vec()))
                    .await;
            answer.assert_connect(400, "invalid_argument", &format!("Connect {what}"));
        }
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_and_never_internal() {
    let app = small_app().await;
    let messages: [(&str, Vec<u8>); 4] = [
        // Field 1 (session_id) says 5 bytes follow, one does.
        ("truncated field", vec![0x0a, 0x05, 0x31]),
        // Field 1 holds bytes that are not UTF-8.
        ("invalid UTF-8 string", vec![0x0a, 0x02, 0xc3, 0x28]),
        // Wire type 7 does not exist.
        ("invalid wire type", vec![0x0f, 0x00]),
        // A varint that never ends.
        ("unterminated varint", vec![0x08, 0xff, 0xff, 0xff]),
    ];
    for (what, message) in &messages {
        for method in ["GetSession", "DeleteSession"] {
            for (protocol, status) in grpc_codes(&app, method, message).await {
                assert_eq!(
                    status.code(),
                    Code::InvalidArgument,
                    "{protocol} {method} {what}: {status:?}"
                );
            }
            let answer =
                send(connect(&app, method, Some("application/proto")).body(message.clone())).await;
            answer.assert_connect(400, "invalid_argument", &format!("Connect {what}"));
        }
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn a_missing_session_id_is_invalid_argument() {
    let app = small_app().await;
    let admin = app.admin();
    for api in app.apis() {
        if api.protocol == Protocol::Rest {
            // An empty path segment matches no route at all.
            fails_with(
                &api,
                api.delete(Some(&admin), delete("", None)).await,
                Code::NotFound,
            );
            continue;
        }
        let outcome = api.delete(Some(&admin), delete("", None)).await;
        let failure = fails(&api, outcome, Code::InvalidArgument, "SESSIOND-ID-INVALID");
        assert!(
            failure.message.contains("between 1 and 200 runes"),
            "{api}: {failure:?}"
        );
        let outcome = api.get(Some(&admin), get("", None)).await;
        fails(&api, outcome, Code::InvalidArgument, "SESSIOND-ID-INVALID");
        let outcome = api.set(Some(&admin), set_metadata("", "k", b"v")).await;
        fails(&api, outcome, Code::InvalidArgument, "SESSIOND-ID-INVALID");
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn identifiers_over_two_hundred_characters_are_invalid_arguments() {
    let app = small_app().await;
    let admin = app.admin();
    let long = "1".repeat(201);
    let just_right = "1".repeat(200);
    for api in app.apis() {
        let outcome = api.get(Some(&admin), get(&long, None)).await;
        fails(&api, outcome, Code::InvalidArgument, "SESSIOND-ID-INVALID");
        let outcome = api.set(Some(&admin), set_metadata(&long, "k", b"v")).await;
        fails(&api, outcome, Code::InvalidArgument, "SESSIOND-ID-INVALID");
        let outcome = api.delete(Some(&admin), delete(&long, None)).await;
        fails(&api, outcome, Code::InvalidArgument, "SESSIOND-ID-INVALID");
        // 200 is allowed: the session simply does not exist.
        let outcome = api.get(Some(&admin), get(&just_right, None)).await;
        fails(&api, outcome, Code::NotFound, "QUERY-SFeaa");
        fails(
            &api,
            api.create(Some(&admin), create_for_user(&long)).await,
            Code::InvalidArgument,
            "SESSIOND-USERID-INVALID",
        );
        fails(
            &api,
            api.create(Some(&admin), login_by_name(&long)).await,
            Code::InvalidArgument,
            "SESSIOND-LOGINNAME-INVALID",
        );
        fails(
            &api,
            api.create(
                Some(&admin),
                v2::CreateSessionRequest {
                    metadata: [("k".repeat(201), b"v".to_vec())].into_iter().collect(),
                    ..Default::default()
                },
            )
            .await,
            Code::InvalidArgument,
            "SESSIOND-REQUEST-INVALID",
        );
        fails(
            &api,
            api.get(Some(&admin), get("123", Some(&"t".repeat(501))))
                .await,
            Code::InvalidArgument,
            "SESSIOND-REQUEST-INVALID",
        );
    }
    assert_still_serving(&app).await;
}

fn oversized_create() -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        metadata: [("big".to_owned(), vec![b'x'; 2 * LIMIT])]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_as_too_large() {
    let app = small_app().await;
    let admin = app.admin();
    let request = oversized_create();

    let answer = send(
        rest(&app, reqwest::Method::POST, "/v2/sessions")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&request).expect("JSON")),
    )
    .await;
    answer.assert_rest(413, Code::ResourceExhausted, "REST");

    let answer = send(
        connect(&app, "CreateSession", Some("application/json"))
            .body(serde_json::to_vec(&request).expect("JSON")),
    )
    .await;
    answer.assert_connect(413, "resource_exhausted", "Connect JSON");

    let answer = send(
        connect(&app, "CreateSession", Some("application/proto")).body(request.encode_to_vec()),
    )
    .await;
    answer.assert_connect(413, "resource_exhausted", "Connect proto");

    for (protocol, status) in grpc_codes(&app, "CreateSession", &request.encode_to_vec()).await {
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{protocol}: {status:?}"
        );
    }
    // Through the typed clients too.
    for api in app.apis() {
        let failure = match api.create(Some(&admin), oversized_create()).await {
            Ok(reply) => panic!("{api}: accepted an oversized body: {reply:?}"),
            Err(failure) => failure,
        };
        assert_eq!(failure.code, Code::ResourceExhausted, "{api}: {failure:?}");
    }
    // Just under the limit is fine.
    let fits = v2::CreateSessionRequest {
        metadata: [("k".to_owned(), vec![b'x'; LIMIT / 2])]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    for api in app.apis() {
        ok(&api, api.create(Some(&admin), fits.clone()).await);
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_unsupported_media_type() {
    let app = small_app().await;
    for content_type in ["text/plain", "application/xml", "multipart/form-data"] {
        let answer = send(
            rest(&app, reqwest::Method::POST, "/v2/sessions")
                .header("content-type", content_type)
                .body("{}"),
        )
        .await;
        answer.assert_rest(415, Code::InvalidArgument, &format!("REST {content_type}"));

        let answer = send(connect(&app, "CreateSession", Some(content_type)).body("{}")).await;
        answer.assert_connect(415, "invalid_argument", &format!("Connect {content_type}"));
    }
    // Connect needs a content type; REST takes a body without one as JSON.
    let answer = send(connect(&app, "ListSessions", None).body("{}")).await;
    answer.assert_connect(415, "invalid_argument", "Connect without content type");
    let answer = send(rest(&app, reqwest::Method::POST, "/v2/sessions/search").body("{}")).await;
    assert_eq!(
        answer.status, 200,
        "REST without content type: {}",
        answer.json
    );
    // An encoding the server does not know is refused rather than misread; gzip that does
    // not inflate is a bad request.
    let answer = send(
        connect(&app, "ListSessions", Some("application/json"))
            .header("content-encoding", "br")
            .body("{}"),
    )
    .await;
    answer.assert_connect(415, "unimplemented", "Connect br");
    let answer = send(
        connect(&app, "ListSessions", Some("application/json"))
            .header("content-encoding", "gzip")
            .body("{}"),
    )
    .await;
    answer.assert_connect(400, "invalid_argument", "Connect bad gzip");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn unknown_routes_are_not_found_in_json() {
    let app = small_app().await;
    for (method, path) in [
        (reqwest::Method::GET, "/"),
        (reqwest::Method::GET, "/nope"),
        (reqwest::Method::POST, "/v3/sessions"),
        (reqwest::Method::GET, "/v2/sessions/1/extra"),
        (reqwest::Method::DELETE, "/v2/sessions/"),
        (
            reqwest::Method::POST,
            "/zitadel.session.v2.SessionService/Nope",
        ),
        (
            reqwest::Method::POST,
            "/zitadel.session.v3.SessionService/ListSessions",
        ),
    ] {
        let answer = send(
            rest(&app, method.clone(), path)
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
        answer.assert_rest(404, Code::NotFound, &format!("{method} {path}"));
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn unknown_grpc_methods_are_unimplemented() {
    let app = small_app().await;
    for path in [
        "/zitadel.session.v2.SessionService/Nope",
        "/zitadel.session.v2beta.SessionService/Nope",
        "/zitadel.session.v3.SessionService/ListSessions",
        "/foo.Bar/Baz",
    ] {
        let status = grpc_raw(&app.channel, path, Some(&app.admin()), Vec::new())
            .await
            .expect_err("unknown method");
        assert_eq!(status.code(), Code::Unimplemented, "gRPC {path}");
        for text in [false, true] {
            let answer = grpc_web_call(&app.http, &app.url(path), None, &[], text).await;
            assert_eq!(answer.http_status, 200, "gRPC-Web {path}");
            let status = answer.status.expect("grpc-status");
            assert_eq!(status.code(), Code::Unimplemented, "gRPC-Web {path}");
        }
    }
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn a_wrong_http_method_is_method_not_allowed() {
    let app = small_app().await;
    for (method, path) in [
        (reqwest::Method::PUT, "/v2/sessions"),
        (reqwest::Method::GET, "/v2/sessions"),
        (reqwest::Method::DELETE, "/v2beta/sessions"),
        (reqwest::Method::POST, "/v2/sessions/123"),
        (reqwest::Method::PUT, "/v2beta/sessions/123"),
    ] {
        let answer = send(
            rest(&app, method.clone(), path)
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
        // grpc-gateway answers a wrong verb with 405 and code 12 (Unimplemented).
        answer.assert_rest(405, Code::Unimplemented, &format!("{method} {path}"));
    }
    // Connect unary calls are POST only.
    let answer = send(
        app.http
            .get(app.url("/zitadel.session.v2.SessionService/ListSessions"))
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(answer.status, 405, "Connect GET");
    // gRPC-Web is POST only.
    let answer = send(
        app.http
            .get(app.url("/zitadel.session.v2.SessionService/ListSessions"))
            .header("content-type", "application/grpc-web+proto"),
    )
    .await;
    assert_eq!(answer.status, 405, "gRPC-Web GET");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn malformed_connect_headers_are_bad_requests() {
    let app = small_app().await;
    let answer = send(
        connect_bare(&app, "ListSessions", Some("application/json"))
            .header("connect-protocol-version", "2")
            .body("{}"),
    )
    .await;
    answer.assert_connect(400, "invalid_argument", "protocol version 2");
    for timeout in ["soon", "-1", "12345678901"] {
        let answer = send(
            connect(&app, "ListSessions", Some("application/json"))
                .header("connect-timeout-ms", timeout)
                .body("{}"),
        )
        .await;
        answer.assert_connect(400, "invalid_argument", &format!("timeout {timeout}"));
    }
    let answer = send(
        connect(&app, "ListSessions", Some("application/json"))
            .header("connect-timeout-ms", "5000")
            .body("{}"),
    )
    .await;
    assert_eq!(answer.status, 200, "a valid timeout");
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn native_grpc_over_http1_is_refused_with_a_client_error() {
    let app = small_app().await;
    let answer = send(
        app.http
            .post(app.url("/zitadel.session.v2.SessionService/ListSessions"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(frame(0, &[])),
    )
    .await;
    assert!(
        (400..500).contains(&answer.status),
        "gRPC needs HTTP/2: {}",
        answer.status
    );
    assert_still_serving(&app).await;
}

#[tokio::test]
async fn truncated_grpc_web_frames_are_refused_without_a_server_error() {
    let app = small_app().await;
    let url = app.url("/zitadel.session.v2.SessionService/ListSessions");
    // A frame header announcing 100 bytes, followed by 3.
    let mut body = vec![0, 0, 0, 0, 100];
    body.extend_from_slice(b"abc");
    let response = app
        .http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("authorization", app.admin())
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let answer = parse_grpc_web(status, headers, &bytes);
    assert!(status < 500, "HTTP {status}");
    let code = answer.status.expect("grpc-status").code();
    assert!(
        !matches!(code, Code::Ok | Code::Internal | Code::Unknown),
        "{code:?}"
    );
    // Invalid base64 in gRPC-Web text.
    let response = app
        .http
        .post(&url)
        .header("content-type", "application/grpc-web-text")
        .header("authorization", app.admin())
        .body("!!!not base64!!!")
        .send()
        .await
        .expect("request");
    assert!(response.status().as_u16() < 500, "{}", response.status());
    assert_still_serving(&app).await;
}
