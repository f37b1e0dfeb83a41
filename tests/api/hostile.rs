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

/// One hostile request on a factor route, and the face whose error shape it must answer in.
struct FactorCase {
    face: Face,
    method: Method,
    path: String,
    body: Vec<u8>,
    what: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Face {
    /// `google.rpc.Status` JSON: `{"code": <number>, "message", "details"}`.
    Rest,
    /// Connect: `{"code": "<name>", "message", "details"}`.
    Connect,
    /// gRPC-Web (binary): the status in the trailers.
    GrpcWeb,
}

/// Values for a field that must hold a WebAuthn credential (a JSON object), none of them one.
fn credential_values() -> Vec<(&'static str, String)> {
    // Two of these stay under the suite's 64 KiB body limit, so the parser sees them.
    let huge = "A".repeat(30_000);
    let many_keys: Vec<String> = (0..4000).map(|i| format!("\"k{i}\":{i}")).collect();
    vec![
        ("a string", "\"garbage\"".into()),
        ("a number", "5".into()),
        ("an array", "[1,2,3]".into()),
        ("null", "null".into()),
        ("true", "true".into()),
        ("an empty object", "{}".into()),
        (
            "fields of the wrong type",
            "{\"id\":1,\"rawId\":[1,2],\"type\":{},\"response\":\"x\"}".into(),
        ),
        (
            "responses of the wrong type",
            "{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"public-key\",\"response\":{\"attestationObject\":5,\"clientDataJSON\":[],\"authenticatorData\":{},\"signature\":null,\"userHandle\":7}}".into(),
        ),
        (
            "unicode and NUL in base64 fields",
            "{\"id\":\"\\u0000\",\"rawId\":\"\u{1F4A5}\u{202E}\",\"type\":\"public-key\",\"response\":{\"attestationObject\":\"\u{00E9}\",\"clientDataJSON\":\"\\u0000\",\"authenticatorData\":\"\u{0661}\",\"signature\":\"%%\"}}".into(),
        ),
        (
            "well-formed but bogus bytes",
            "{\"id\":\"AAAA\",\"rawId\":\"AAAA\",\"type\":\"public-key\",\"response\":{\"attestationObject\":\"oWNmbXRkbm9uZQ\",\"clientDataJSON\":\"e30\",\"authenticatorData\":\"AAAA\",\"signature\":\"AAAA\",\"userHandle\":\"\"}}".into(),
        ),
        (
            "huge base64 fields",
            format!(
                "{{\"id\":\"{huge}\",\"rawId\":\"{huge}\",\"type\":\"public-key\",\"response\":{{\"attestationObject\":\"AA\",\"clientDataJSON\":\"AA\"}}}}"
            ),
        ),
        ("thousands of keys", format!("{{{}}}", many_keys.join(","))),
        ("deep nesting", {
            let depth = 5_000;
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }),
        ("deep arrays", {
            let depth = 5_000;
            format!("{{\"id\":{}{}}}", "[".repeat(depth), "]".repeat(depth))
        }),
    ]
}

/// Values for a one-time or TOTP code, none of them one.
fn code_values() -> Vec<(&'static str, String)> {
    vec![
        ("huge", format!("\"{}\"", "1".repeat(60_000))),
        (
            "arabic-indic digits",
            "\"\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}\u{0667}\u{0668}\"".into(),
        ),
        (
            "emoji",
            "\"\u{1F4A5}\u{1F4A5}\u{1F4A5}\u{1F4A5}\u{1F4A5}\u{1F4A5}\"".into(),
        ),
        ("NUL", "\"1234\\u00005678\"".into()),
        ("right-to-left override", "\"\u{202E}12345678\"".into()),
        ("empty", "\"\"".into()),
        ("a number", "12345678".into()),
        ("an object", "{}".into()),
        ("an array", "[\"12345678\"]".into()),
    ]
}

/// Values for RegisterPasskey's `domain` and `authenticator`.
fn registration_values() -> Vec<(&'static str, String)> {
    vec![
        ("NUL domain", "{\"domain\":\"local\\u0000host\"}".into()),
        (
            "huge domain",
            format!("{{\"domain\":\"{}\"}}", "a".repeat(60_000)),
        ),
        (
            "unicode domain",
            "{\"domain\":\"\u{4F8B}\u{3048}.\u{30C6}\u{30B9}\u{30C8}\"}".into(),
        ),
        ("foreign domain", "{\"domain\":\"evil.test\"}".into()),
        (
            "domain of the wrong type",
            "{\"domain\":[\"localhost\"]}".into(),
        ),
        (
            "unknown authenticator name",
            "{\"authenticator\":\"PASSKEY_AUTHENTICATOR_NOPE\"}".into(),
        ),
        (
            "authenticator out of range",
            "{\"authenticator\":99}".into(),
        ),
        ("negative authenticator", "{\"authenticator\":-1}".into()),
        (
            "authenticator of the wrong type",
            "{\"authenticator\":{}}".into(),
        ),
        (
            "a registration code",
            "{\"code\":{\"id\":\"1\",\"code\":\"x\"}}".into(),
        ),
        ("a code of the wrong type", "{\"code\":\"x\"}".into()),
    ]
}

/// `{"a": value}` merged into an object given as JSON text (`fields` without braces).
fn object(fields: &[(&str, &str)]) -> Vec<u8> {
    let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", inner.join(",")).into_bytes()
}

/// The hostile JSON requests on the factor routes of the REST and Connect faces, for a real
/// user (with a pending passkey registration) and a real session (with a WebAuthN and
/// one-time-code challenges), so the bad values reach every layer that reads them.
fn factor_cases(user: &str, passkey: &str, session: &str) -> Vec<FactorCase> {
    let mut out = Vec::new();
    let mut push = |face, method: Method, path: String, body: Vec<u8>, what: String| {
        out.push(FactorCase {
            face,
            method,
            path,
            body,
            what,
        })
    };
    let user_json = format!("\"{user}\"");
    let passkey_json = format!("\"{passkey}\"");
    let session_json = format!("\"{session}\"");
    for (what, value) in credential_values() {
        push(
            Face::Rest,
            Method::POST,
            format!("/v2/users/{user}/passkeys/{passkey}"),
            object(&[("publicKeyCredential", &value), ("passkeyName", "\"k\"")]),
            format!("publicKeyCredential: {what}"),
        );
        push(
            Face::Connect,
            Method::POST,
            "/zitadel.user.v2.UserService/VerifyPasskeyRegistration".into(),
            object(&[
                ("userId", &user_json),
                ("passkeyId", &passkey_json),
                ("publicKeyCredential", &value),
                ("passkeyName", "\"k\""),
            ]),
            format!("publicKeyCredential: {what}"),
        );
        let checks = format!("{{\"webAuthN\":{{\"credentialAssertionData\":{value}}}}}");
        for v in ["v2", "v2beta"] {
            push(
                Face::Rest,
                Method::PATCH,
                format!("/{v}/sessions/{session}"),
                object(&[("checks", &checks)]),
                format!("checks.webAuthN.credentialAssertionData: {what}"),
            );
            push(
                Face::Connect,
                Method::POST,
                format!("/zitadel.session.{v}.SessionService/SetSession"),
                object(&[("sessionId", &session_json), ("checks", &checks)]),
                format!("checks.webAuthN.credentialAssertionData: {what}"),
            );
        }
        // `"webAuthN": null` is the field left out (proto3 JSON), a SetSession without checks.
        if value == "null" {
            continue;
        }
        let bare = format!("{{\"webAuthN\":{value}}}");
        push(
            Face::Connect,
            Method::POST,
            "/zitadel.session.v2.SessionService/SetSession".into(),
            object(&[("sessionId", &session_json), ("checks", &bare)]),
            format!("checks.webAuthN: {what}"),
        );
    }
    for (what, value) in code_values() {
        for check in ["otpEmail", "otpSms", "totp", "recoveryCode"] {
            let checks = format!("{{\"{check}\":{{\"code\":{value}}}}}");
            push(
                Face::Rest,
                Method::PATCH,
                format!("/v2/sessions/{session}"),
                object(&[("checks", &checks)]),
                format!("checks.{check}.code: {what}"),
            );
            push(
                Face::Connect,
                Method::POST,
                "/zitadel.session.v2.SessionService/SetSession".into(),
                object(&[("sessionId", &session_json), ("checks", &checks)]),
                format!("checks.{check}.code: {what}"),
            );
        }
        push(
            Face::Rest,
            Method::POST,
            format!("/v2/users/{user}/totp/verify"),
            object(&[("code", &value)]),
            format!("VerifyTOTPRegistration code: {what}"),
        );
    }
    for (what, body) in registration_values() {
        push(
            Face::Rest,
            Method::POST,
            format!("/v2/users/{user}/passkeys"),
            body.clone().into_bytes(),
            format!("RegisterPasskey: {what}"),
        );
        let with_user = format!("{{\"userId\":{user_json},{}", &body[1..]);
        push(
            Face::Connect,
            Method::POST,
            "/zitadel.user.v2.UserService/RegisterPasskey".into(),
            with_user.into_bytes(),
            format!("RegisterPasskey: {what}"),
        );
    }
    // Factor routes for users and passkeys that do not exist, or whose ids cannot be ids.
    let strangers = [
        ("unknown user", "999999999".to_owned()),
        ("201-char user id", "9".repeat(201)),
        ("encoded NUL in the user id", "1%00".to_owned()),
        ("unicode user id", "%C3%B8%E2%9C%93".to_owned()),
    ];
    for (what, id) in &strangers {
        for (method, path) in [
            (Method::POST, format!("/v2/users/{id}/otp_email")),
            (Method::POST, format!("/v2/users/{id}/otp_sms")),
            (Method::DELETE, format!("/v2/users/{id}/otp_email")),
            (Method::POST, format!("/v2/users/{id}/totp")),
            (Method::POST, format!("/v2/users/{id}/passkeys")),
            (Method::POST, format!("/v2/users/{id}/passkeys/_search")),
            (Method::POST, format!("/v2/users/{id}/passkeys/{passkey}")),
            (Method::DELETE, format!("/v2/users/{id}/passkeys/{passkey}")),
            (Method::POST, format!("/v2/users/{id}/recovery_codes")),
        ] {
            push(Face::Rest, method, path, b"{}".to_vec(), (*what).into());
        }
    }
    for (what, id) in [
        ("unknown user", "\"999999999\"".to_owned()),
        ("201-char user id", format!("\"{}\"", "9".repeat(201))),
        ("NUL in the user id", "\"1\\u0000\"".to_owned()),
        ("user id of the wrong type", "[1]".to_owned()),
    ] {
        for m in [
            "AddOTPEmail",
            "AddOTPSMS",
            "RemoveOTPEmail",
            "RegisterTOTP",
            "RegisterPasskey",
            "ListPasskeys",
            "GenerateRecoveryCodes",
        ] {
            push(
                Face::Connect,
                Method::POST,
                format!("/zitadel.user.v2.UserService/{m}"),
                object(&[("userId", &id)]),
                format!("{m}: {what}"),
            );
        }
        push(
            Face::Connect,
            Method::POST,
            "/zitadel.user.v2.UserService/RemovePasskey".into(),
            object(&[("userId", &id), ("passkeyId", &passkey_json)]),
            format!("RemovePasskey: {what}"),
        );
    }
    for (what, id) in [
        ("unknown passkey", "\"424242\"".to_owned()),
        ("201-char passkey id", format!("\"{}\"", "4".repeat(201))),
        ("NUL in the passkey id", "\"4\\u0000\"".to_owned()),
        ("passkey id of the wrong type", "{}".to_owned()),
    ] {
        for m in ["RemovePasskey", "VerifyPasskeyRegistration"] {
            push(
                Face::Connect,
                Method::POST,
                format!("/zitadel.user.v2.UserService/{m}"),
                object(&[
                    ("userId", &user_json),
                    ("passkeyId", &id),
                    ("publicKeyCredential", "{}"),
                    ("passkeyName", "\"k\""),
                ]),
                format!("{m}: {what}"),
            );
        }
    }
    out
}

/// The same fields over gRPC-Web, encoded as protobuf: Structs nested past any sane depth or
/// holding thousands of fields, codes that are huge or no digits, enums out of range.
fn factor_grpc_web_cases(user: &str, passkey: &str, session: &str) -> Vec<FactorCase> {
    use prost::Message;
    use prost_types::value::Kind;
    use sessiond::faces::pb::zitadel::user::v2 as user_pb;
    fn deep(depth: usize) -> prost_types::Struct {
        let mut value = prost_types::Value {
            kind: Some(Kind::NumberValue(1.0)),
        };
        for _ in 0..depth {
            value = prost_types::Value {
                kind: Some(Kind::StructValue(prost_types::Struct {
                    fields: [("a".to_owned(), value)].into(),
                })),
            };
        }
        match value.kind {
            Some(Kind::StructValue(s)) => s,
            _ => unreachable!("depth ≥ 1"),
        }
    }
    fn wide(n: usize) -> prost_types::Struct {
        prost_types::Struct {
            fields: (0..n)
                .map(|i| {
                    (
                        format!("k{i}"),
                        prost_types::Value {
                            kind: Some(Kind::StringValue("\u{1F4A5}".into())),
                        },
                    )
                })
                .collect(),
        }
    }
    fn bogus() -> prost_types::Struct {
        let text = |s: &str| prost_types::Value {
            kind: Some(Kind::StringValue(s.into())),
        };
        let response = prost_types::Struct {
            fields: [
                ("attestationObject".to_owned(), text("oWNmbXRkbm9uZQ")),
                ("clientDataJSON".to_owned(), text("e30")),
                ("authenticatorData".to_owned(), text("AAAA")),
                ("signature".to_owned(), text("AAAA")),
            ]
            .into(),
        };
        prost_types::Struct {
            fields: [
                ("id".to_owned(), text("AAAA")),
                ("rawId".to_owned(), text("AAAA")),
                ("type".to_owned(), text("public-key")),
                (
                    "response".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::StructValue(response)),
                    },
                ),
            ]
            .into(),
        }
    }
    let structs: Vec<(&str, Vec<u8>)> = [
        ("a Struct nested 200 deep", deep(200)),
        ("a Struct nested 1000 deep", deep(1_000)),
        ("a Struct of 3000 fields", wide(3_000)),
        ("a well-formed but bogus credential", bogus()),
    ]
    .into_iter()
    .map(|(what, s)| (what, s.encode_to_vec()))
    .collect();
    let mut out = Vec::new();
    for (what, encoded) in &structs {
        // Field 3 of VerifyPasskeyRegistrationRequest is the Struct: splice its bytes in by
        // hand, so a Struct too deep for the decoder still reaches the server.
        let mut verify = user_pb::VerifyPasskeyRegistrationRequest {
            user_id: user.into(),
            passkey_id: passkey.into(),
            public_key_credential: None,
            passkey_name: "k".into(),
        }
        .encode_to_vec();
        prost::encoding::bytes::encode(3, encoded, &mut verify);
        out.push(FactorCase {
            face: Face::GrpcWeb,
            method: Method::POST,
            path: "/zitadel.user.v2.UserService/VerifyPasskeyRegistration".into(),
            body: verify,
            what: format!("publicKeyCredential: {what}"),
        });
        // SetSessionRequest.checks (3) → Checks.webAuthN (3) → credentialAssertionData (1),
        // in v2 and v2beta alike.
        let mut check = Vec::new();
        prost::encoding::bytes::encode(1, encoded, &mut check);
        let mut checks = Vec::new();
        prost::encoding::bytes::encode(3, &check, &mut checks);
        let mut set = v2::SetSessionRequest {
            session_id: session.into(),
            ..Default::default()
        }
        .encode_to_vec();
        prost::encoding::bytes::encode(3, &checks, &mut set);
        for v in ["v2", "v2beta"] {
            out.push(FactorCase {
                face: Face::GrpcWeb,
                method: Method::POST,
                path: format!("/zitadel.session.{v}.SessionService/SetSession"),
                body: set.clone(),
                what: format!("checks.webAuthN.credentialAssertionData: {what}"),
            });
        }
    }
    for (what, code) in [
        ("a huge code", "1".repeat(60_000)),
        (
            "arabic-indic digits",
            "\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}".into(),
        ),
        ("NUL", "123\u{0}5678".into()),
    ] {
        let otp = || Some(v2::CheckOtp { code: code.clone() });
        for checks in [
            v2::Checks {
                otp_email: otp(),
                ..Default::default()
            },
            v2::Checks {
                otp_sms: otp(),
                ..Default::default()
            },
            v2::Checks {
                totp: Some(v2::CheckTotp { code: code.clone() }),
                ..Default::default()
            },
        ] {
            out.push(FactorCase {
                face: Face::GrpcWeb,
                method: Method::POST,
                path: "/zitadel.session.v2.SessionService/SetSession".into(),
                body: v2::SetSessionRequest {
                    session_id: session.into(),
                    checks: Some(checks),
                    ..Default::default()
                }
                .encode_to_vec(),
                what: format!("codes: {what}"),
            });
        }
    }
    for (what, request) in [
        (
            "authenticator out of range",
            user_pb::RegisterPasskeyRequest {
                user_id: user.into(),
                authenticator: 99,
                ..Default::default()
            },
        ),
        (
            "NUL domain",
            user_pb::RegisterPasskeyRequest {
                user_id: user.into(),
                domain: "local\u{0}host".into(),
                ..Default::default()
            },
        ),
        (
            "unknown user",
            user_pb::RegisterPasskeyRequest {
                user_id: "999999999".into(),
                ..Default::default()
            },
        ),
    ] {
        out.push(FactorCase {
            face: Face::GrpcWeb,
            method: Method::POST,
            path: "/zitadel.user.v2.UserService/RegisterPasskey".into(),
            body: request.encode_to_vec(),
            what: format!("RegisterPasskey: {what}"),
        });
    }
    out.push(FactorCase {
        face: Face::GrpcWeb,
        method: Method::POST,
        path: "/zitadel.user.v2.UserService/AddOTPEmail".into(),
        body: user_pb::AddOtpEmailRequest {
            user_id: "999999999".into(),
        }
        .encode_to_vec(),
        what: "AddOTPEmail: unknown user".into(),
    });
    out
}

/// What is wrong with a factor case's answer, if anything: a server error, a success where
/// only a refusal can come, or a refusal not in the face's error shape.
async fn judge(app: &TestApp, admin: &str, case: &FactorCase) -> Option<String> {
    if case.face == Face::GrpcWeb {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            grpc_web_call(
                &app.http,
                &app.url(&case.path),
                Some(admin),
                &case.body,
                false,
            ),
        )
        .await;
        let Ok(answer) = answer else {
            return Some("no answer within two seconds".into());
        };
        return match answer.status {
            None => Some(format!("no grpc-status (HTTP {})", answer.http_status)),
            Some(s) if s.code() == Code::Ok => Some("succeeded".into()),
            Some(s)
                if matches!(s.code(), Code::Internal | Code::Unknown) || s.message().is_empty() =>
            {
                Some(format!("gRPC {:?}: {:?}", s.code(), s.message()))
            }
            Some(_) => None,
        };
    }
    let mut request = app
        .http
        .request(case.method.clone(), app.url(&case.path))
        .header("content-type", "application/json")
        .header("authorization", admin)
        .body(case.body.clone());
    if case.face == Face::Connect {
        request = request.header("connect-protocol-version", "1");
    }
    let Ok(answer) = tokio::time::timeout(Duration::from_secs(2), send(request)).await else {
        return Some("no answer within two seconds".into());
    };
    let status = answer.status;
    if !(400..500).contains(&status) {
        return Some(format!("HTTP {status}: {}", answer.body));
    }
    let json = &answer.json;
    let code = match case.face {
        Face::Rest => json["code"]
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Code::from_i32),
        Face::Connect => json["code"].as_str().map(connect_code_of),
        Face::GrpcWeb => unreachable!("answered above"),
    };
    let Some(code) = code else {
        return Some(format!("HTTP {status}, no error code: {}", answer.body));
    };
    // A body past the limit is 413 with RESOURCE_EXHAUSTED (429 otherwise).
    if http_status_of(code) != status && !(status == 413 && code == Code::ResourceExhausted) {
        return Some(format!("HTTP {status} for {code:?}: {}", answer.body));
    }
    if json["message"].as_str().is_none_or(str::is_empty) {
        return Some(format!("HTTP {status}, no message: {}", answer.body));
    }
    None
}

/// A real user (with a verified email and phone, one-time codes by both, a passkey and a
/// pending second registration) and a real session of it holding a WebAuthN challenge and
/// one-time-code challenges.
struct FactorTarget {
    user: String,
    /// The pending registration.
    passkey: String,
    session: String,
    /// The registered passkey's authenticator, and the session's request options for it.
    key: webauthn_authenticator_rs::softpasskey::SoftPasskey,
    options: serde_json::Value,
}

async fn factor_target(app: &TestApp, admin: &str) -> FactorTarget {
    let added = send(
        app.http
            .post(app.url("/v2/users/human"))
            .header("authorization", admin)
            .json(&serde_json::json!({
                "username": "hostile@example.com",
                "profile": {"givenName": "Hostile", "familyName": "Input"},
                "email": {"email": "hostile@example.com", "isVerified": true},
                "phone": {"phone": "+15555550100", "isVerified": true},
                "password": {"password": FACTOR_PASSWORD},
            })),
    )
    .await;
    assert_eq!(added.status, 200, "AddHumanUser: {}", added.body);
    let user = added.json["userId"].as_str().expect("userId").to_owned();
    for factor in ["otp_email", "otp_sms"] {
        let answer = send(
            app.http
                .post(app.url(&format!("/v2/users/{user}/{factor}")))
                .header("authorization", admin)
                .json(&serde_json::json!({})),
        )
        .await;
        assert_eq!(answer.status, 200, "{factor}: {}", answer.body);
    }
    let mut key = crate::passkeys::authenticator();
    crate::passkeys::register(
        &app.user_api(UserProtocol::Grpc),
        admin,
        &user,
        &mut key,
        "key",
    )
    .await;
    let pending = send(
        app.http
            .post(app.url(&format!("/v2/users/{user}/passkeys")))
            .header("authorization", admin)
            .json(&serde_json::json!({"domain": "localhost"})),
    )
    .await;
    assert_eq!(pending.status, 200, "RegisterPasskey: {}", pending.body);
    let passkey = pending.json["passkeyId"]
        .as_str()
        .expect("passkeyId")
        .to_owned();
    let created = send(
        app.http
            .post(app.url("/v2/sessions"))
            .header("authorization", admin)
            .json(&serde_json::json!({
                "checks": {"user": {"userId": user}},
                "challenges": {
                    "webAuthN": {"domain": "localhost", "userVerificationRequirement": "USER_VERIFICATION_REQUIREMENT_REQUIRED"},
                    "otpEmail": {"returnCode": {}},
                    "otpSms": {"returnCode": true},
                },
            })),
    )
    .await;
    assert_eq!(created.status, 201, "CreateSession: {}", created.body);
    let session = created.json["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_owned();
    // Struct numbers arrive as doubles; the authenticator wants integers back.
    let options = crate::passkeys::from_struct(
        serde_json::from_value(
            created.json["challenges"]["webAuthN"]["publicKeyCredentialRequestOptions"].clone(),
        )
        .expect("request options"),
    );
    FactorTarget {
        user,
        passkey,
        session,
        key,
        options,
    }
}

#[tokio::test]
async fn hostile_factor_fields_are_client_errors_in_each_faces_shape() {
    let app = crate::passkeys::passkey_app_with(|config| {
        config.body_limit = 64 * 1024;
        config.max_password_attempts = 0;
    })
    .await;
    let admin = app.bearer("admin", EVERY_PERMISSION);
    let mut target = factor_target(&app, &admin).await;
    let (user, passkey, session) = (&target.user, &target.passkey, &target.session);
    let mut all = factor_cases(user, passkey, session);
    all.extend(factor_grpc_web_cases(user, passkey, session));
    let mut wrong = Vec::new();
    for case in &all {
        if let Some(verdict) = judge(&app, &admin, case).await {
            wrong.push(format!(
                "{:?} {} {} [{}]: {verdict:.300}",
                case.face, case.method, case.path, case.what
            ));
        }
    }
    // Still serving, and the session's WebAuthN challenge survived every refusal: the real
    // passkey answers it.
    assert_eq!(get_path(&app, "/healthz").await.status, 200);
    let signed = crate::passkeys::assertion(&mut target.key, target.options.clone());
    let sessions = app.api(Protocol::Grpc, Version::V2);
    ok(
        &sessions,
        sessions
            .set(
                Some(&admin),
                set(&target.session, crate::passkeys::with_webauthn(signed)),
            )
            .await,
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "hostile factor input: {} cases, {} wrong answers",
        all.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(all.len() > 300, "{} cases", all.len());
}
