//! The request edges of every face: whatever a route cannot take (a path parameter that does
//! not decode, a bad query, a bad body) is answered in the route's face's shape, never in
//! axum's plain text; Duration and Timestamp inputs are held to protobuf's ranges on every
//! protocol; and the self-service face refuses session ids that cannot be one.

use reqwest::Method;
use serde_json::{Value, json};
use sessiond::domain::error_ids;
use sessiond::faces::{Face, SERVICES};
use sessiond::ops::openapi::HTTP_ROUTES;

use crate::helpers::*;

/// The HTTP faces, by the shape of their errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Rest,
    Kratos,
    /// Kratos' shape, with bearer credentials (the Kratos admin session API).
    KratosAdmin,
    Admin,
}

/// The shape of the face that owns `path`.
fn shape_of(path: &str) -> Shape {
    match Face::of(path, None) {
        Face::Admin => Shape::Admin,
        Face::SelfService => Shape::Kratos,
        Face::KratosAdmin => Shape::KratosAdmin,
        _ => Shape::Rest,
    }
}

/// A route of an HTTP face: its verb, path template and shape.
struct Route {
    method: Method,
    template: String,
    shape: Shape,
    /// For an RPC's REST rule: whether the rule takes a body (`body: "*"`).
    rule_body: Option<bool>,
}

/// A 501 from a method the server declares but does not implement (it answers so whatever
/// the input); every other answer to bad input is a client error.
fn client_error_or_unimplemented(answer: &Answer) -> bool {
    answer.status < 500 || (answer.status == 501 && answer.body.contains("SESSIOND-UNIMPLEMENTED"))
}

/// Every route of the REST, self-service and admin faces, from the services' lists and the
/// HTTP route list.
fn routes() -> Vec<Route> {
    let mut out: Vec<Route> = SERVICES
        .iter()
        .flat_map(|s| s.rpcs)
        .map(|rpc| Route {
            method: Method::from_bytes(rpc.http.verb.as_str().as_bytes()).expect("verb"),
            template: rpc.http.path.to_owned(),
            shape: Shape::Rest,
            rule_body: Some(rpc.http.body),
        })
        .collect();
    for (method, path) in HTTP_ROUTES {
        let shape = match shape_of(path) {
            Shape::Rest => continue,
            shape => shape,
        };
        out.push(Route {
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            template: (*path).to_owned(),
            shape,
            rule_body: None,
        });
    }
    assert!(out.len() > 20, "{} routes", out.len());
    out
}

/// The template with every parameter replaced by `value`.
fn fill(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { value } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
    json: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.unwrap_or_default();
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
        json,
    }
}

/// Asserts that an answer is a success, or an error in the face's shape.
#[track_caller]
fn assert_in_shape(shape: Shape, answer: &Answer, what: &str) {
    if answer.status < 400 {
        return;
    }
    assert!(
        answer.content_type.starts_with("application/json"),
        "{what}: {} {:?} {}",
        answer.status,
        answer.content_type,
        answer.body
    );
    let json = &answer.json;
    let status = u64::from(answer.status);
    match shape {
        Shape::Rest => {
            assert!(json["code"].is_u64(), "{what}: {}", answer.body);
            assert!(json["message"].is_string(), "{what}: {}", answer.body);
            assert!(
                json["details"][0]["id"].is_string(),
                "{what}: {}",
                answer.body
            );
        }
        Shape::Kratos | Shape::KratosAdmin => {
            assert_eq!(json["error"]["code"], status, "{what}: {}", answer.body);
            assert!(json["error"]["id"].is_string(), "{what}: {}", answer.body);
            assert!(
                json["error"]["reason"].is_string(),
                "{what}: {}",
                answer.body
            );
        }
        Shape::Admin => {
            assert_eq!(json["statusCode"], status, "{what}: {}", answer.body);
            assert!(json["code"].is_string(), "{what}: {}", answer.body);
            assert!(json["message"].is_string(), "{what}: {}", answer.body);
        }
    }
}

/// Credentials each face accepts: an admin JWT, or a session token for self-service.
struct Callers {
    admin: String,
    session_token: String,
}

async fn callers(app: &TestApp) -> Callers {
    let alice = app.add_user("alice").await;
    let session = app.create_session_for(&alice).await;
    Callers {
        admin: app.bearer(
            "admin",
            &[
                "session.read",
                "session.write",
                "session.delete",
                "user.read",
                "user.write",
            ],
        ),
        session_token: session.session_token,
    }
}

fn request(
    app: &TestApp,
    callers: &Callers,
    route: &Route,
    url_path: &str,
) -> reqwest::RequestBuilder {
    let request = app.http.request(route.method.clone(), app.url(url_path));
    match route.shape {
        Shape::Kratos => request.header("x-session-token", &callers.session_token),
        Shape::Rest | Shape::Admin | Shape::KratosAdmin => {
            request.header("authorization", &callers.admin)
        }
    }
}

#[tokio::test]
async fn a_path_parameter_that_does_not_decode_is_refused_in_the_shape_of_its_face() {
    let app = spawn_app().await;
    let callers = callers(&app).await;
    let mut checked = 0;
    for route in routes().iter().filter(|r| r.template.contains('{')) {
        for bad in ["%FF%FE", "%C0%AF"] {
            let path = fill(&route.template, bad);
            let what = format!("{} {path} ({:?})", route.method, route.shape);
            let answer = send(
                request(&app, &callers, route, &path)
                    .header("content-type", "application/json")
                    .body("{}"),
            )
            .await;
            assert_eq!(answer.status, 400, "{what}: {}", answer.body);
            assert_in_shape(route.shape, &answer, &what);
            assert!(
                answer.body.contains("Invalid UTF-8"),
                "{what}: {}",
                answer.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} cases");
}

#[tokio::test]
async fn the_rest_face_answers_an_undecodable_session_id_with_a_google_rpc_status() {
    let app = spawn_app().await;
    let answer = send(
        app.http
            .get(app.url("/v2/sessions/%FF%FE"))
            .header("authorization", app.admin()),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let failure = failure_from_rest(400, answer.body.as_bytes());
    assert_eq!(failure.code, Code::InvalidArgument);
    assert_eq!(failure.id(), error_ids::HTTP_REJECTED);
    assert!(failure.message.contains("Invalid UTF-8 in `session_id`"));
}

#[tokio::test]
async fn a_bad_query_on_any_route_is_answered_in_the_shape_of_its_face() {
    let app = spawn_app().await;
    let callers = callers(&app).await;
    let queries = [
        "page_size=abc&pageSize=-1&active=maybe&limit=x&offset=-1",
        "sessionToken=",
        "%FF%FE=%FF&page_token=%00",
    ];
    for route in routes() {
        for query in queries {
            let path = format!("{}?{query}", fill(&route.template, "1"));
            let what = format!("{} {path} ({:?})", route.method, route.shape);
            let mut request = request(&app, &callers, &route, &path);
            if route.method != Method::GET {
                request = request
                    .header("content-type", "application/json")
                    .body("{}");
            }
            let answer = send(request).await;
            assert!(
                client_error_or_unimplemented(&answer),
                "{what}: {}",
                answer.body
            );
            assert_in_shape(route.shape, &answer, &what);
        }
    }
    // Routes that read the query refuse the bad one.
    for path in [
        "/auth/sessions?page_size=abc",
        "/auth/admin/api/users?limit=x",
        "/auth/admin/api/users/1/sessions?active=maybe",
        "/auth/admin/sessions?active=maybe",
        "/auth/admin/identities/1/sessions?page_size=abc",
        "/v2/sessions/1?sessionToken=",
    ] {
        let shape = shape_of(path.split('?').next().unwrap_or_default());
        let route = Route {
            method: Method::GET,
            template: path.to_owned(),
            shape,
            rule_body: None,
        };
        let answer = send(request(&app, &callers, &route, path)).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert_in_shape(shape, &answer, path);
    }
}

/// What a bad body is, its headers and its bytes.
type BadBody = (&'static str, Vec<(&'static str, &'static str)>, Vec<u8>);

#[tokio::test]
async fn a_bad_body_on_any_route_is_answered_in_the_shape_of_its_face() {
    let app = spawn_app_with(|config| config.body_limit = 1024).await;
    let callers = callers(&app).await;
    let bodies: [BadBody; 5] = [
        (
            "truncated JSON",
            vec![("content-type", "application/json")],
            b"{\"x\":".to_vec(),
        ),
        (
            "JSON array",
            vec![("content-type", "application/json")],
            b"[1]".to_vec(),
        ),
        (
            "wrong content type",
            vec![("content-type", "text/xml")],
            b"<x/>".to_vec(),
        ),
        (
            "unknown encoding",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
            b"{}".to_vec(),
        ),
        (
            "too large",
            vec![("content-type", "application/json")],
            vec![b' '; 4096],
        ),
    ];
    for route in routes() {
        let takes_body = route.rule_body.unwrap_or(
            route.method != Method::GET
                && (route.template.ends_with("/users") || route.template.ends_with("/password")),
        );
        for (what, headers, body) in &bodies {
            let path = fill(&route.template, "1");
            let what = format!("{} {path} ({:?}): {what}", route.method, route.shape);
            let mut request = request(&app, &callers, &route, &path).body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let answer = send(request).await;
            assert!(
                client_error_or_unimplemented(&answer),
                "{what}: {}",
                answer.body
            );
            if takes_body {
                assert!(
                    [400, 413, 415].contains(&answer.status),
                    "{what}: {} {}",
                    answer.status,
                    answer.body
                );
            }
            assert_in_shape(route.shape, &answer, &what);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Durations and timestamps
// ------------------------------------------------------------------------------------------

fn duration(seconds: i64, nanos: i32) -> pbjson_types::Duration {
    pbjson_types::Duration { seconds, nanos }
}

#[tokio::test]
async fn a_lifetime_beyond_the_range_of_a_duration_is_invalid_on_every_protocol() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let admin = app.admin();
    let existing = app.create_session_for(&alice).await;
    for api in app.apis() {
        for lifetime in [
            duration(315_576_000_001, 0),
            duration(i64::MAX, 999_999_999),
            duration(-315_576_000_001, 0),
        ] {
            let create = v2::CreateSessionRequest {
                lifetime: Some(lifetime),
                ..create_for_user(alice.id.as_str())
            };
            let outcome = api.create(Some(&admin), create).await;
            fails(
                &api,
                outcome,
                Code::InvalidArgument,
                error_ids::LIFETIME_INVALID,
            );
            let set = v2::SetSessionRequest {
                session_id: existing.session_id.clone(),
                lifetime: Some(lifetime),
                ..Default::default()
            };
            let outcome = api.set(Some(&admin), set).await;
            fails(
                &api,
                outcome,
                Code::InvalidArgument,
                error_ids::LIFETIME_INVALID,
            );
        }
    }
}

#[tokio::test]
async fn a_lifetime_whose_seconds_and_nanos_disagree_in_sign_is_invalid_on_binary_protocols() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let admin = app.admin();
    // JSON has one number for a duration, so only the binary protocols can say this.
    for protocol in [Protocol::Grpc, Protocol::GrpcWeb, Protocol::ConnectProto] {
        let api = app.api(protocol, Version::V2);
        for lifetime in [duration(1, -1), duration(5, 1_000_000_000)] {
            let create = v2::CreateSessionRequest {
                lifetime: Some(lifetime),
                ..create_for_user(alice.id.as_str())
            };
            let outcome = api.create(Some(&admin), create).await;
            fails(
                &api,
                outcome,
                Code::InvalidArgument,
                error_ids::LIFETIME_INVALID,
            );
        }
    }
}

#[tokio::test]
async fn a_timestamp_beyond_the_range_of_a_timestamp_is_invalid_in_list_queries() {
    use v2::search_query::Query;
    let app = spawn_app().await;
    let admin = app.admin();
    let queries = |at: Timestamp| {
        [
            Query::CreationDateQuery(v2::CreationDateQuery {
                creation_date: Some(at),
                method: 0,
            }),
            Query::ExpirationDateQuery(v2::ExpirationDateQuery {
                expiration_date: Some(at),
                method: 0,
            }),
        ]
    };
    let out_of_range = [
        Timestamp {
            seconds: 253_402_300_800,
            nanos: 0,
        },
        Timestamp {
            seconds: -62_135_596_801,
            nanos: 0,
        },
        Timestamp {
            seconds: 0,
            nanos: -1,
        },
        Timestamp {
            seconds: 0,
            nanos: 1_000_000_000,
        },
    ];
    // JSON cannot carry these (a timestamp is a date there): binary protocols only.
    for protocol in [
        Protocol::Grpc,
        Protocol::GrpcWeb,
        Protocol::GrpcWebText,
        Protocol::ConnectProto,
    ] {
        for version in Version::ALL {
            let api = app.api(protocol, version);
            for at in out_of_range {
                for query in queries(at) {
                    let outcome = api.list(Some(&admin), list(vec![query])).await;
                    fails(
                        &api,
                        outcome,
                        Code::InvalidArgument,
                        error_ids::REQUEST_INVALID,
                    );
                }
            }
        }
    }
    // In JSON, a date before year 1 is no timestamp.
    for version in ["v2", "v2beta"] {
        for field in ["creationDateQuery", "expirationDateQuery"] {
            let date = if field == "creationDateQuery" {
                "creationDate"
            } else {
                "expirationDate"
            };
            let body = json!({ "queries": [{ field: { date: "0000-12-31T23:59:59Z" } }] });
            let answer = send(
                app.http
                    .post(app.url(&format!("/{version}/sessions/search")))
                    .header("authorization", &admin)
                    .json(&body),
            )
            .await;
            let failure = failure_from_rest(answer.status, answer.body.as_bytes());
            assert_eq!(
                (answer.status, failure.code),
                (400, Code::InvalidArgument),
                "{version} {field}: {}",
                answer.body
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Session ids on the self-service face
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoking_an_id_that_cannot_be_a_session_id_is_a_bad_request() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = app.create_session_for(&alice).await;
    for id in [
        "a%2Fb",
        "%zz",
        "a%20b",
        "%C3%BC",
        "'%20OR%20'1'='1",
        "a.b",
        "a%2Eb",
    ] {
        let answer = send(
            app.http
                .delete(app.url(&format!("/auth/sessions/{id}")))
                .header("x-session-token", &current.session_token)
                .header("x-request-id", "edge-test"),
        )
        .await;
        assert_eq!(answer.status, 400, "{id}: {}", answer.body);
        assert_in_shape(Shape::Kratos, &answer, id);
        assert_eq!(
            answer.json["error"]["id"],
            error_ids::SESSION_ID_INVALID,
            "{id}"
        );
        assert_eq!(answer.json["error"]["request"], "edge-test", "{id}");
    }
}

#[tokio::test]
async fn revoking_a_well_formed_id_that_is_not_mine_still_answers_204() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let current = app.create_session_for(&alice).await;
    let bobs = app.create_session_for(&bob).await;
    for id in [
        "1234567890123456789",
        "some-session_1",
        bobs.session_id.as_str(),
    ] {
        let answer = send(
            app.http
                .delete(app.url(&format!("/auth/sessions/{id}")))
                .header("x-session-token", &current.session_token),
        )
        .await;
        assert_eq!(answer.status, 204, "{id}: {}", answer.body);
    }
    assert_eq!(
        app.event_count(&bobs.session_id).await,
        1,
        "bob's session untouched"
    );
}

#[tokio::test]
async fn the_session_service_keeps_answering_odd_ids_with_not_found() {
    let app = spawn_app().await;
    let admin = app.admin();
    for api in app.v2_apis() {
        let outcome = api.get(Some(&admin), get("a.b", None)).await;
        fails(&api, outcome, Code::NotFound, error_ids::SESSION_NOT_FOUND);
    }
}
