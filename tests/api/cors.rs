//! CORS for browsers: gRPC-Web, Connect and REST preflights, and the headers exposed to
//! scripts on real answers.

use crate::helpers::*;

const ORIGIN: &str = "https://app.example.com";

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn list_of(value: &str) -> Vec<String> {
    value.split(',').map(|s| s.trim().to_owned()).collect()
}

async fn preflight(app: &TestApp, path: &str, method: &str, headers: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", ORIGIN)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("preflight")
}

#[tokio::test]
async fn grpc_web_preflights_are_allowed() {
    let app = spawn_app().await;
    let response = preflight(
        &app,
        "/zitadel.session.v2.SessionService/CreateSession",
        "POST",
        "content-type,x-grpc-web,x-user-agent,authorization,grpc-timeout",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert!(list_of(&header(&response, "access-control-allow-methods")).contains(&"post".into()));
    let allowed = list_of(&header(&response, "access-control-allow-headers"));
    for wanted in [
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "authorization",
        "grpc-timeout",
    ] {
        assert!(
            allowed.contains(&wanted.to_owned()),
            "{wanted}: {allowed:?}"
        );
    }
    assert_eq!(header(&response, "access-control-max-age"), "7200");
}

#[tokio::test]
async fn connect_and_rest_preflights_are_allowed() {
    let app = spawn_app().await;
    for (path, method, headers) in [
        (
            "/zitadel.session.v2.SessionService/ListSessions",
            "POST",
            "content-type,connect-protocol-version,connect-timeout-ms,authorization",
        ),
        ("/v2/sessions/123", "DELETE", "content-type,authorization"),
        (
            "/v2beta/sessions/123",
            "PATCH",
            "content-type,authorization",
        ),
        ("/v2/sessions/123", "GET", "authorization"),
    ] {
        let response = preflight(&app, path, method, headers).await;
        assert_eq!(response.status(), 200, "{method} {path}");
        assert_eq!(header(&response, "access-control-allow-origin"), "*");
        let methods = list_of(&header(&response, "access-control-allow-methods"));
        assert!(
            methods.contains(&method.to_ascii_lowercase()),
            "{method}: {methods:?}"
        );
        let allowed = list_of(&header(&response, "access-control-allow-headers"));
        for wanted in headers.split(',') {
            assert!(
                allowed.contains(&wanted.to_owned()),
                "{wanted}: {allowed:?}"
            );
        }
    }
}

/// An unauthenticated gRPC-Web ListSessions, as a page of [`ORIGIN`] sends it.
async fn grpc_web_list_from_a_page(app: &TestApp, client: &reqwest::Client) -> reqwest::Response {
    client
        .post(app.url("/zitadel.session.v2.SessionService/ListSessions"))
        .header("origin", ORIGIN)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(0, &[]))
        .send()
        .await
        .expect("gRPC-Web call")
}

#[tokio::test]
async fn answers_expose_the_grpc_status_headers_to_scripts() {
    let app = spawn_app().await;
    let response = grpc_web_list_from_a_page(&app, &app.http).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    let exposed = list_of(&header(&response, "access-control-expose-headers"));
    for wanted in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(
            exposed.contains(&wanted.to_owned()),
            "{wanted}: {exposed:?}"
        );
    }
    // The call itself was unauthenticated: the status is readable in the answer.
    let status = header(&response, "grpc-status");
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let parsed = parse_grpc_web(200, headers, &body);
    assert_eq!(
        parsed.status.map(|s| s.code()),
        Some(Code::Unauthenticated),
        "header grpc-status: {status:?}"
    );
}

#[tokio::test]
async fn only_configured_origins_are_allowed_when_a_list_is_set() {
    let app = spawn_app_with(|config| {
        config.cors_allowed_origins = vec![ORIGIN.to_owned()];
    })
    .await;
    let path = "/zitadel.session.v2.SessionService/ListSessions";
    let allowed = preflight(&app, path, "POST", "content-type").await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(header(&allowed, "access-control-allow-origin"), ORIGIN);

    let other = app
        .http
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(other.status().as_u16() < 500);
    assert_eq!(header(&other, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn native_grpc_answers_carry_no_cors_headers_and_grpc_web_ones_do() {
    let app = spawn_app().await;
    let path = "/zitadel.session.v2.SessionService/ListSessions";
    // Native gRPC: no browser page can make it, so nothing of CORS, Origin or not.
    for content_type in ["application/grpc", "application/grpc+proto"] {
        let response = app
            .h2
            .post(app.url(path))
            .header("origin", ORIGIN)
            .header("content-type", content_type)
            .header("te", "trailers")
            .body(frame(0, &[]))
            .send()
            .await
            .expect("gRPC call");
        assert_eq!(response.status(), 200, "{content_type}");
        assert_eq!(header(&response, "content-type"), "application/grpc");
        for name in response.headers().keys() {
            assert!(
                name != "vary" && !name.as_str().starts_with("access-control-"),
                "{content_type}: {name}"
            );
        }
    }
    // The same call as gRPC-Web, over HTTP/2 as well: CORS as for every browser call.
    let response = grpc_web_list_from_a_page(&app, &app.h2).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert!(header(&response, "vary").contains("origin"));
}
