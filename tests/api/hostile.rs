//! The table-driven hostile-input suite: every route of every face and protocol against a
//! list of bad inputs. Each case must be answered within a second, with a client error in
//! the face's shape (or, for an input that happens to be well-formed, a normal answer), and
//! never a 5xx, a gRPC INTERNAL/UNKNOWN, a hang or a dropped connection. The server must
//! still serve afterwards. Prints `N cases, 0 server errors`.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;

use crate::helpers::*;

struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    what: String,
}

fn deep_json(depth: usize) -> Vec<u8> {
    let mut v = "[".repeat(depth).into_bytes();
    v.extend("]".repeat(depth).into_bytes());
    v
}

fn json_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("truncated JSON", b"{\"checks\":{\"user\"".to_vec()),
        ("JSON array", b"[]".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("JSON string", b"\"text\"".to_vec()),
        ("wrong types", b"{\"checks\":5,\"metadata\":[1],\"lifetime\":true,\"query\":\"x\",\"loginName\":{},\"password\":7,\"revokeSessions\":\"no\"}".to_vec()),
        ("invalid UTF-8", b"{\"sessionId\":\"\xff\xfe\xfd\",\"loginName\":\"\xc3\x28\"}".to_vec()),
        ("deep nesting", deep_json(20_000)),
        ("binary garbage", (0..=255u8).cycle().take(3000).collect()),
        ("invalid duration", b"{\"lifetime\":\"forever\",\"checks\":{\"user\":{\"userId\":\"1\"}}}".to_vec()),
        ("hostile factor fields", "{\"userId\":\"1\\u0000\",\"code\":\"\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}\",\"count\":\"99999999999\",\"totpSecret\":\"!!!\",\"profile\":{\"givenName\":\"\"},\"email\":{\"email\":\"x\"},\"checks\":{\"user\":{\"userId\":\"1\"},\"totp\":{\"code\":\"12345\"},\"recoveryCode\":{\"code\":\"\"}}}".as_bytes().to_vec()),
        ("factor fields of the wrong type", b"{\"userId\":7,\"code\":123456,\"count\":[],\"totpSecret\":{},\"profile\":\"x\",\"checks\":{\"totp\":\"123456\",\"recoveryCode\":5}}".to_vec()),
        ("hostile one-time-code fields", "{\"userId\":\"1\",\"email\":{\"email\":\"a@b\\u0000c\",\"isVerified\":true},\"phone\":{\"phone\":\"+1\\u202e555\",\"isVerified\":true},\"checks\":{\"user\":{\"userId\":\"1\"},\"otpSms\":{\"code\":\"\"},\"otpEmail\":{\"code\":\"1\\u0000\"}},\"challenges\":{\"otpSms\":{\"returnCode\":\"yes\"},\"otpEmail\":{\"sendCode\":{\"urlTemplate\":\"{{.Code}\\n{{.Nope}}{{\"}}}}".as_bytes().to_vec()),
        ("one-time-code fields of the wrong type", b"{\"checks\":{\"otpSms\":{\"code\":12345678},\"otpEmail\":[]},\"challenges\":{\"otpSms\":5,\"otpEmail\":{\"returnCode\":1,\"sendCode\":{}}},\"phone\":{\"phone\":[]}}".to_vec()),
        ("a huge url template", format!("{{\"checks\":{{\"user\":{{\"userId\":\"1\"}}}},\"challenges\":{{\"otpEmail\":{{\"sendCode\":{{\"urlTemplate\":\"{}\"}}}}}}}}", "{{.Code}}".repeat(5000)).into_bytes()),
        ("negative duration", b"{\"lifetime\":\"-5s\"}".to_vec()),
        ("overflowing numbers", b"{\"query\":{\"offset\":\"99999999999999999999999\",\"limit\":-1}}".to_vec()),
        ("SQL injection", b"{\"checks\":{\"user\":{\"loginName\":\"' OR '1'='1' --\"}},\"loginName\":\"x'); DROP TABLE users; --\",\"password\":\"x\"}".to_vec()),
        ("huge body", vec![b' '; 2 * 1024 * 1024]),
    ]
}

fn ids() -> Vec<(&'static str, String)> {
    vec![
        ("201-char id", "9".repeat(201)),
        ("encoded slash", "a%2Fb".into()),
        ("encoded NUL", "a%00b".into()),
        ("invalid percent-escape", "%FF%FE".into()),
        ("unicode", "%C3%B8%E2%9C%93".into()),
        ("SQL injection", "1%27%20OR%20%271%27%3D%271".into()),
        ("dot segments", "..%2F..%2Fetc%2Fpasswd".into()),
    ]
}

/// gRPC-Web bodies that lie about themselves.
fn grpc_web_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut lying = vec![0u8, 0, 0, 0x10, 0];
    lying.extend_from_slice(b"short");
    let mut compressed = vec![1u8, 0, 0, 0, 2];
    compressed.extend_from_slice(&[0x0a, 0x00]);
    let mut huge_prefix = vec![0u8, 0x7f, 0xff, 0xff, 0xff];
    huge_prefix.extend_from_slice(&[0u8; 8]);
    vec![
        ("length prefix lies", lying),
        ("compressed flag without encoding", compressed),
        ("absurd length prefix", huge_prefix),
        ("no frame at all", b"\x00\x00".to_vec()),
        ("malformed protobuf", vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff]),
    ]
}

fn cases(admin: &str) -> Vec<Case> {
    let auth = vec![("authorization", admin.to_owned())];
    let mut out = Vec::new();
    let json_routes: Vec<(Method, String)> = {
        let mut r = Vec::new();
        for v in ["v2", "v2beta"] {
            r.push((Method::POST, format!("/{v}/sessions")));
            r.push((Method::POST, format!("/{v}/sessions/search")));
            r.push((Method::PATCH, format!("/{v}/sessions/123")));
            r.push((Method::DELETE, format!("/{v}/sessions/123")));
            for m in [
                "ListSessions",
                "GetSession",
                "CreateSession",
                "SetSession",
                "DeleteSession",
            ] {
                r.push((
                    Method::POST,
                    format!("/zitadel.session.{v}.SessionService/{m}"),
                ));
            }
        }
        r.push((Method::POST, "/auth/admin/api/users".into()));
        r.push((Method::PUT, "/auth/admin/api/users/123/password".into()));
        r.push((
            Method::DELETE,
            "/auth/admin/api/users/123/factors/totp".into(),
        ));
        for path in [
            "/v2/users/human",
            "/v2/users/123/totp",
            "/v2/users/123/totp/verify",
            "/v2/users/123/recovery_codes",
            "/v2/users/123/otp_sms",
            "/v2/users/123/otp_email",
        ] {
            r.push((Method::POST, path.into()));
        }
        for path in ["/v2/users/123/otp_sms", "/v2/users/123/otp_email"] {
            r.push((Method::DELETE, path.into()));
        }
        for m in [
            "AddHumanUser",
            "RegisterTOTP",
            "VerifyTOTPRegistration",
            "RemoveTOTP",
            "GenerateRecoveryCodes",
            "RemoveRecoveryCodes",
            "ListAuthenticationMethodTypes",
            "AddOTPSMS",
            "RemoveOTPSMS",
            "AddOTPEmail",
            "RemoveOTPEmail",
        ] {
            r.push((Method::POST, format!("/zitadel.user.v2.UserService/{m}")));
        }
        r
    };
    for (method, path) in &json_routes {
        for (what, body) in json_bodies() {
            out.push(Case {
                method: method.clone(),
                path: path.clone(),
                content_type: Some("application/json"),
                headers: auth.clone(),
                body,
                what: what.into(),
            });
        }
        out.push(Case {
            method: method.clone(),
            path: path.clone(),
            content_type: Some("text/xml"),
            headers: auth.clone(),
            body: b"<x/>".to_vec(),
            what: "wrong content type".into(),
        });
        out.push(Case {
            method: method.clone(),
            path: path.clone(),
            content_type: Some("application/json"),
            headers: vec![
                ("authorization", admin.to_owned()),
                ("content-encoding", "br".into()),
            ],
            body: b"{}".to_vec(),
            what: "unknown encoding".into(),
        });
        out.push(Case {
            method: method.clone(),
            path: path.clone(),
            content_type: Some("application/json"),
            headers: vec![
                ("authorization", admin.to_owned()),
                ("content-encoding", "gzip".into()),
            ],
            body: b"not gzip".to_vec(),
            what: "corrupt gzip".into(),
        });
        out.push(Case {
            method: Method::TRACE,
            path: path.clone(),
            content_type: None,
            headers: auth.clone(),
            body: Vec::new(),
            what: "wrong method".into(),
        });
    }
    // Connect with protobuf bodies.
    for v in ["v2", "v2beta"] {
        for m in [
            "ListSessions",
            "GetSession",
            "CreateSession",
            "SetSession",
            "DeleteSession",
        ] {
            for (what, body) in [
                ("malformed protobuf", vec![0xff, 0xff, 0xff, 0xff]),
                ("truncated varint", vec![0x0a, 0x80]),
                ("invalid UTF-8 string", vec![0x0a, 0x02, 0xff, 0xfe]),
            ] {
                out.push(Case {
                    method: Method::POST,
                    path: format!("/zitadel.session.{v}.SessionService/{m}"),
                    content_type: Some("application/proto"),
                    headers: auth.clone(),
                    body,
                    what: what.into(),
                });
            }
            for (what, body) in grpc_web_bodies() {
                out.push(Case {
                    method: Method::POST,
                    path: format!("/zitadel.session.{v}.SessionService/{m}"),
                    content_type: Some("application/grpc-web+proto"),
                    headers: auth.clone(),
                    body: body.clone(),
                    what: format!("gRPC-Web: {what}"),
                });
                out.push(Case {
                    method: Method::POST,
                    path: format!("/zitadel.session.{v}.SessionService/{m}"),
                    content_type: Some("application/grpc-web-text"),
                    headers: auth.clone(),
                    body: STANDARD.encode(&body).into_bytes(),
                    what: format!("gRPC-Web text: {what}"),
                });
            }
            out.push(Case {
                method: Method::POST,
                path: format!("/zitadel.session.{v}.SessionService/{m}"),
                content_type: Some("application/grpc-web-text"),
                headers: auth.clone(),
                body: b"!!!not base64!!!".to_vec(),
                what: "gRPC-Web text: bad base64".into(),
            });
        }
    }
    // Ids in paths, on every route that takes one.
    for (what, id) in ids() {
        for (method, path) in [
            (Method::GET, format!("/v2/sessions/{id}")),
            (Method::GET, format!("/v2beta/sessions/{id}")),
            (Method::PATCH, format!("/v2/sessions/{id}")),
            (Method::DELETE, format!("/v2/sessions/{id}")),
            (Method::DELETE, format!("/auth/sessions/{id}")),
            (Method::GET, format!("/auth/admin/api/users/{id}")),
            (Method::GET, format!("/auth/admin/api/users/{id}/sessions")),
            (
                Method::DELETE,
                format!("/auth/admin/api/users/{id}/sessions"),
            ),
            (
                Method::DELETE,
                format!("/auth/admin/api/users/1/sessions/{id}"),
            ),
            (Method::POST, format!("/auth/admin/api/users/{id}/lock")),
        ] {
            out.push(Case {
                method,
                path,
                content_type: Some("application/json"),
                headers: auth.clone(),
                body: b"{}".to_vec(),
                what: what.into(),
            });
        }
    }
    // Query strings: page sizes and tokens, tokens in queries.
    for query in [
        "page_size=-1",
        "page_size=0",
        "page_size=99999999999999999999",
        "page_size=abc",
        "page_token=%%%",
        "page_token=AAAA",
        "pageSize=-5",
        "pageToken=garbage",
        "active=maybe",
        "sessionToken=%FF",
        "offset=-1&limit=1e9",
    ] {
        for path in [
            "/auth/sessions",
            "/auth/admin/api/users/1/sessions",
            "/auth/admin/api/users",
            "/v2/sessions/1",
        ] {
            out.push(Case {
                method: Method::GET,
                path: format!("{path}?{query}"),
                content_type: None,
                headers: auth.clone(),
                body: Vec::new(),
                what: format!("query {query}"),
            });
        }
    }
    // Self-service with hostile credentials.
    for (what, header, value) in [
        (
            "huge session token",
            "x-session-token",
            "x".repeat(16 * 1024),
        ),
        (
            "SQL in token",
            "x-session-token",
            "sdst_' OR 1=1 --".to_owned(),
        ),
        (
            "cookie soup",
            "cookie",
            "=;;sessiond_session;;a=b=c; sessiond_session=\"".to_owned(),
        ),
        ("bearer soup", "authorization", "Bearer    ".to_owned()),
        (
            "huge JWT",
            "authorization",
            format!("Bearer {}", "a.".repeat(20_000)),
        ),
    ] {
        for (method, path) in [
            (Method::GET, "/auth/sessions/whoami"),
            (Method::GET, "/auth/sessions"),
            (Method::DELETE, "/auth/sessions"),
            (Method::POST, "/v2/sessions/search"),
        ] {
            out.push(Case {
                method,
                path: path.into(),
                content_type: Some("application/json"),
                headers: vec![(header, value.clone())],
                body: b"{}".to_vec(),
                what: what.into(),
            });
        }
    }
    out
}

#[tokio::test]
async fn no_hostile_input_on_any_route_causes_a_server_error() {
    let app = spawn_app_with(|config| config.body_limit = 64 * 1024).await;
    let admin = app.bearer("admin", EVERY_PERMISSION);
    let all = cases(&admin);
    let mut server_errors = Vec::new();
    for case in &all {
        let mut request = app
            .http
            .request(case.method.clone(), app.url(&case.path))
            .body(case.body.clone());
        if let Some(ct) = case.content_type {
            request = request.header("content-type", ct);
        }
        for (k, v) in &case.headers {
            request = request.header(*k, v.as_str());
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(1), request.send()).await;
        let verdict = match outcome {
            Err(_) => Some("no answer within a second".to_owned()),
            Ok(Err(e)) => Some(format!("transport error: {e}")),
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                let grpc = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let _ = response.bytes().await;
                match (status, grpc.as_deref()) {
                    (s, _) if s >= 500 => Some(format!("HTTP {s}")),
                    (_, Some("2" | "13")) => Some(format!("gRPC status {grpc:?}")),
                    _ => None,
                }
            }
        };
        if let Some(verdict) = verdict {
            server_errors.push(format!(
                "{} {} [{}]: {verdict} after {:?}",
                case.method,
                case.path,
                case.what,
                started.elapsed()
            ));
        }
    }
    // Still serving.
    assert_eq!(get_path(&app, "/healthz").await.status, 200);
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "hostile input: {} cases, {} server errors",
        all.len(),
        server_errors.len()
    );
    assert!(
        server_errors.is_empty(),
        "{} server errors:\n{}",
        server_errors.len(),
        server_errors.join("\n")
    );
    assert!(all.len() > 500);
}
