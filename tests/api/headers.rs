//! One limit on the request head for every protocol (`max-header-bytes`): past it, 431 over
//! HTTP/1.1 and h2 and a failed call over gRPC, while the server keeps serving; over h2 the
//! same connection serves the next request. A head just under the limit is served.

use std::error::Error as _;

use bytes::Bytes;
use http::StatusCode;
use tokio::net::TcpStream;

use crate::helpers::*;

/// The default `max-header-bytes`.
const LIMIT: usize = 32 * 1024;

/// Twice the limit: refused, yet well below what h2 treats as abuse (four times).
const OVER: usize = 2 * LIMIT;

/// Room left for the request line, the other headers and HTTP/2's 32 bytes per field.
const UNDER: usize = LIMIT - 2 * 1024;

fn filler(len: usize) -> String {
    "a".repeat(len)
}

/// One request per face, each with an `x-filler` header of `len` bytes; `auth` covers all.
fn requests(
    app: &TestApp,
    client: &reqwest::Client,
    auth: &str,
    len: usize,
) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let list = "/zitadel.session.v2.SessionService/ListSessions";
    let with = |request: reqwest::RequestBuilder| {
        request
            .header("authorization", auth)
            .header("x-filler", filler(len))
    };
    vec![
        (
            "Connect",
            with(client.post(app.url(list)))
                .header("content-type", "application/json")
                .body("{}"),
        ),
        (
            "REST",
            with(client.post(app.url("/v2/sessions/search")))
                .header("content-type", "application/json")
                .body("{}"),
        ),
        (
            "gRPC-Web",
            with(client.post(app.url(list)))
                .header("content-type", "application/grpc-web+proto")
                .header("x-grpc-web", "1")
                .body(vec![0u8; 5]),
        ),
        ("admin", with(client.get(app.url("/auth/admin/api/users")))),
        ("health", with(client.get(app.url("/healthz")))),
    ]
}

fn everything(app: &TestApp) -> String {
    app.bearer(
        "ops",
        &[
            "session.read",
            "session.write",
            "session.delete",
            "user.read",
            "user.write",
        ],
    )
}

async fn status_of(request: reqwest::RequestBuilder) -> StatusCode {
    request.send().await.expect("an answer").status()
}

#[tokio::test]
async fn a_header_over_the_limit_is_answered_431_on_every_http_face_over_both_protocols() {
    let app = spawn_app().await;
    let auth = everything(&app);
    for (protocol, client) in [("HTTP/1.1", &app.http), ("h2", &app.h2)] {
        for (face, request) in requests(&app, client, &auth, OVER) {
            assert_eq!(
                status_of(request).await,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{face} over {protocol}"
            );
        }
        // The server keeps serving.
        for (face, request) in requests(&app, client, &auth, 0) {
            assert_eq!(
                status_of(request).await,
                StatusCode::OK,
                "{face} over {protocol}"
            );
        }
    }
}

#[tokio::test]
async fn a_header_just_under_the_limit_is_served_on_every_face_and_protocol() {
    let app = spawn_app().await;
    let auth = everything(&app);
    for (protocol, client) in [("HTTP/1.1", &app.http), ("h2", &app.h2)] {
        for (face, request) in requests(&app, client, &auth, UNDER) {
            assert_eq!(
                status_of(request).await,
                StatusCode::OK,
                "{face} over {protocol}"
            );
        }
    }
    let mut grpc = v2::session_service_client::SessionServiceClient::new(app.channel.clone());
    grpc.list_sessions(list_request(&app.admin(), UNDER))
        .await
        .expect("served over gRPC");
}

#[tokio::test]
async fn the_limit_is_a_setting() {
    let app = spawn_app_with(|settings| settings.max_header_bytes = 8 * 1024).await;
    for client in [&app.http, &app.h2] {
        let big = client
            .get(app.url("/healthz"))
            .header("x-filler", filler(9 * 1024));
        assert_eq!(
            status_of(big).await,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let small = client
            .get(app.url("/healthz"))
            .header("x-filler", filler(6 * 1024));
        assert_eq!(status_of(small).await, StatusCode::OK);
    }
}

/// `GET path` on an h2 connection with an `x-filler` header of `len` bytes.
async fn h2_get(
    connection: &h2::client::SendRequest<Bytes>,
    app: &TestApp,
    path: &str,
    len: usize,
) -> StatusCode {
    let mut sender = connection
        .clone()
        .ready()
        .await
        .expect("the connection is open");
    let request = http::Request::get(app.url(path))
        .header("x-filler", filler(len))
        .body(())
        .expect("request");
    let (response, _) = sender.send_request(request, true).expect("sent");
    response.await.expect("an answer").status()
}

#[tokio::test]
async fn over_h2_the_connection_survives_a_refused_request() {
    let app = spawn_app().await;
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let (connection, driver) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let driver = tokio::spawn(driver);

    assert_eq!(
        h2_get(&connection, &app, "/healthz", OVER).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // The next requests on the same connection (one reusing the HPACK state) are served.
    assert_eq!(
        h2_get(&connection, &app, "/healthz", 0).await,
        StatusCode::OK
    );
    assert_eq!(
        h2_get(&connection, &app, "/readyz", 100).await,
        StatusCode::OK
    );
    // Several refused and served requests in flight at once on that connection.
    let (refused, served) = tokio::join!(
        h2_get(&connection, &app, "/healthz", OVER),
        h2_get(&connection, &app, "/healthz", UNDER),
    );
    assert_eq!(refused, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(served, StatusCode::OK);
    assert!(!driver.is_finished(), "the connection is still open");
}

fn list_request(auth: &str, len: usize) -> tonic::Request<v2::ListSessionsRequest> {
    let mut request = tonic::Request::new(v2::ListSessionsRequest::default());
    let metadata = request.metadata_mut();
    metadata.insert("authorization", auth.parse().expect("metadata"));
    metadata.insert("x-filler", filler(len).parse().expect("metadata"));
    request
}

#[tokio::test]
async fn over_grpc_a_header_over_the_limit_fails_the_call_and_the_channel_still_works() {
    let app = spawn_app().await;
    let admin = app.admin();
    let mut grpc = v2::session_service_client::SessionServiceClient::new(app.channel.clone());
    grpc.list_sessions(list_request(&admin, 0))
        .await
        .expect("served before");
    let refused = grpc
        .list_sessions(list_request(&admin, OVER))
        .await
        .expect_err("refused");
    assert_ne!(refused.code(), Code::Ok);
    // The stream was answered (tonic maps the HTTP status), the connection was not torn down.
    assert!(
        refused.message().contains("431") && refused.source().is_none(),
        "{refused:?}"
    );
    grpc.list_sessions(list_request(&admin, 0))
        .await
        .expect("served after, on the same channel");
}
