//! Traces over OTLP/gRPC: `sessiond serve --otlp-endpoint` against a real receiver in the
//! test. Requests carrying a W3C `traceparent` continue the caller's trace; the request span
//! has the access log's labels and the answer's status, store calls and password checks are
//! its children, the resource names the service, no secret is in any exported value, and the
//! last spans are sent at shutdown. Without the setting nothing connects to a collector.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::otlp::{ExportedSpan, OtlpReceiver};
use crate::helpers::{send, v2};
use crate::process::{Server, process_bearer};

const PASSWORD: &str = "Tr4ced-but-n0t-Leaked!";
const WRONG_PASSWORD: &str = "Wr0ng-and-n0t-Leaked?";
/// The caller's trace: one trace id, a parent span per request.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REST_CREATE_PARENT: &str = "00f067aa0ba902b7";
const REST_GET_PARENT: &str = "1111111111111111";
const WHOAMI_PARENT: &str = "2222222222222222";
const WRONG_PARENT: &str = "3333333333333333";
/// A second trace, for the gRPC call.
const GRPC_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const GRPC_PARENT: &str = "b7ad6b7169203331";
/// A trace its caller does not sample (flags 00).
const UNSAMPLED: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

/// A ListSessions over REST in the caller's trace (parent `REST_GET_PARENT`), then SIGTERM.
async fn list_in_a_trace_and_stop(server: Server, data_dir: &std::path::Path) {
    let auth = process_bearer(data_dir, "caller", &["session.read"]);
    let answer = reqwest::Client::new()
        .post(server.url("/v2/sessions/search"))
        .header("authorization", &auth)
        .header("traceparent", traceparent(TRACE, REST_GET_PARENT))
        .json(&json!({}))
        .send()
        .await
        .expect("list");
    assert_eq!(answer.status(), 200);
    assert!(server.terminate().await.success());
}

/// The request span of `method` (its `method` attribute) that is a child of the caller's
/// span `parent` in `trace`.
fn request_span<'a>(
    spans: &'a [ExportedSpan],
    trace: &str,
    parent: &str,
    method: &str,
) -> &'a ExportedSpan {
    spans
        .iter()
        .find(|s| {
            s.trace_id() == trace
                && s.parent_span_id() == parent
                && s.attribute("method").as_deref() == Some(method)
        })
        .unwrap_or_else(|| {
            let names: Vec<String> = spans
                .iter()
                .map(|s| format!("{} {} {}", s.span.name, s.trace_id(), s.parent_span_id()))
                .collect();
            panic!("no request span for {method} under {trace}-{parent}; got {names:#?}")
        })
}

/// Spans of `trace` that are direct children of `parent`.
fn children<'a>(spans: &'a [ExportedSpan], parent: &ExportedSpan) -> Vec<&'a ExportedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id() == parent.trace_id() && s.parent_span_id() == parent.span_id())
        .collect()
}

/// The span's status code (0 unset, 1 ok, 2 error).
fn status_code(span: &ExportedSpan) -> i32 {
    span.span.status.as_ref().map_or(0, |status| status.code)
}

/// Face, protocol, method, status and code of a request span, and its kind (2: server).
fn assert_labels(span: &ExportedSpan, face: &str, protocol: &str, status: &str, code: &str) {
    let method = span.attribute("method").unwrap_or_default();
    assert_eq!(span.attribute("face").as_deref(), Some(face), "{method}");
    assert_eq!(
        span.attribute("protocol").as_deref(),
        Some(protocol),
        "{method}"
    );
    assert_eq!(
        span.attribute("status").as_deref(),
        Some(status),
        "{method}"
    );
    assert_eq!(span.attribute("code").as_deref(), Some(code), "{method}");
    assert_eq!(span.span.kind, 2, "{method} is a server span");
    assert_eq!(span.span.name, format!("{face} {method}"));
}

#[tokio::test]
async fn requests_continue_the_callers_trace_with_store_and_password_spans_and_no_secret() {
    let receiver = OtlpReceiver::start().await;
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        data_dir.path(),
        &["--otlp-endpoint", &receiver.endpoint],
        &[],
    )
    .await;
    let auth = process_bearer(
        data_dir.path(),
        "tracer",
        &["session.read", "session.write", "user.read", "user.write"],
    );
    let http = reqwest::Client::new();

    let user: Value = send(
        http.post(server.url("/auth/admin/api/users"))
            .header("authorization", &auth)
            .json(&json!({"loginName": "traced", "password": PASSWORD})),
    )
    .await
    .json;
    let user_id = user["id"].as_str().expect("user id").to_owned();

    // REST CreateSession with a password, then GetSession with the token in the query.
    let created = http
        .post(server.url("/v2/sessions"))
        .header("authorization", &auth)
        .header("traceparent", traceparent(TRACE, REST_CREATE_PARENT))
        .header("tracestate", "vendor=opaque")
        .json(&json!({"checks": {"user": {"loginName": "traced"}, "password": {"password": PASSWORD}}}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let session_id = created["sessionId"].as_str().expect("id").to_owned();
    let token = created["sessionToken"].as_str().expect("token").to_owned();
    let got = http
        .get(server.url(&format!("/v2/sessions/{session_id}?sessionToken={token}")))
        .header("authorization", &auth)
        .header("traceparent", traceparent(TRACE, REST_GET_PARENT))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), 200);
    // Self-service with the session token in a header, and an admin route with an id.
    let whoami = http
        .get(server.url("/auth/sessions/whoami"))
        .header("x-session-token", &token)
        .header("traceparent", traceparent(TRACE, WHOAMI_PARENT))
        .send()
        .await
        .expect("whoami");
    assert_eq!(whoami.status(), 200);
    let mine = http
        .get(server.url("/auth/sessions"))
        .header("authorization", format!("Bearer {token}"))
        .header("traceparent", traceparent(TRACE, WHOAMI_PARENT))
        .send()
        .await
        .expect("my sessions");
    assert_eq!(mine.status(), 200);
    let wrong = http
        .post(server.url("/v2/sessions"))
        .header("authorization", &auth)
        .header("traceparent", traceparent(TRACE, WRONG_PARENT))
        .json(&json!({"checks": {"user": {"loginName": "traced"}, "password": {"password": WRONG_PASSWORD}}}))
        .send()
        .await
        .expect("wrong password");
    assert_eq!(wrong.status(), 400);
    let listed = http
        .get(server.url(&format!("/auth/admin/api/users/{user_id}/sessions")))
        .header("authorization", &auth)
        .send()
        .await
        .expect("admin list");
    assert_eq!(listed.status(), 200);

    // A caller that does not sample its trace: nothing of it is recorded.
    let unsampled = http
        .get(server.url("/healthz"))
        .header("traceparent", format!("00-{UNSAMPLED}-{GRPC_PARENT}-00"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(unsampled.status(), 200);
    let own = http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(own.status(), 200);

    // gRPC GetSession in another trace, and one that fails (NOT_FOUND).
    let channel = tonic::transport::Channel::from_shared(server.base.clone())
        .expect("uri")
        .connect()
        .await
        .expect("gRPC connection");
    let mut grpc = v2::session_service_client::SessionServiceClient::new(channel);
    let mut request = tonic::Request::new(v2::GetSessionRequest {
        session_id: session_id.clone(),
        session_token: Some(token.clone()),
    });
    let metadata = request.metadata_mut();
    metadata.insert("authorization", auth.parse().expect("metadata"));
    metadata.insert(
        "traceparent",
        traceparent(GRPC_TRACE, GRPC_PARENT)
            .parse()
            .expect("metadata"),
    );
    grpc.get_session(request).await.expect("gRPC GetSession");
    let mut missing = tonic::Request::new(v2::GetSessionRequest {
        session_id: "404404404".into(),
        session_token: None,
    });
    missing
        .metadata_mut()
        .insert("authorization", auth.parse().expect("metadata"));
    let status = grpc
        .get_session(missing)
        .await
        .expect_err("unknown session");
    assert_eq!(status.code(), tonic::Code::NotFound);

    // The last spans are sent on the way out (the batch interval is 5 s; this is faster).
    let stopped = Instant::now();
    assert!(server.terminate().await.success());
    assert!(stopped.elapsed() < Duration::from_secs(10));
    let spans = receiver.spans();

    // REST CreateSession: a child of the caller's span, with store and password children.
    let create = request_span(&spans, TRACE, REST_CREATE_PARENT, "CreateSession");
    assert_labels(create, "session.v2", "rest", "201", "201");
    assert_eq!(
        create.span.trace_state, "vendor=opaque",
        "tracestate goes on"
    );
    let below = children(&spans, create);
    assert!(
        below.iter().any(|s| s.span.name.starts_with("store ")
            && s.attribute("db.system.name").as_deref() == Some("sqlite")),
        "no store span under CreateSession: {below:#?}"
    );
    assert!(
        below.iter().any(|s| s.span.name == "password.verify"),
        "no password check span under CreateSession: {below:#?}"
    );
    let insert = below
        .iter()
        .find(|s| s.span.name == "store insert_session")
        .expect("the session's insert is a store span");
    assert_eq!(
        insert.attribute("db.operation.name").as_deref(),
        Some("insert_session")
    );
    assert_eq!(insert.span.kind, 3, "a store call is a client span");

    // A failed check is the client's error, with its password check span.
    let wrong = request_span(&spans, TRACE, WRONG_PARENT, "CreateSession");
    assert_labels(wrong, "session.v2", "rest", "400", "400");
    assert_ne!(status_code(wrong), 2, "a wrong password is no server error");
    assert!(
        children(&spans, wrong)
            .iter()
            .any(|s| s.span.name == "password.verify")
    );

    let get = request_span(&spans, TRACE, REST_GET_PARENT, "GetSession");
    assert_labels(get, "session.v2", "rest", "200", "200");
    assert!(
        children(&spans, get)
            .iter()
            .any(|s| s.span.name.starts_with("store "))
    );

    let whoami = request_span(&spans, TRACE, WHOAMI_PARENT, "GET /auth/sessions/whoami");
    assert_labels(whoami, "self-service", "http", "200", "200");

    // Routes are named by their template, never by a path with ids.
    let admin = spans
        .iter()
        .find(|s| {
            s.attribute("face").as_deref() == Some("admin")
                && s.attribute("method").is_some_and(|m| m.starts_with("GET "))
        })
        .expect("the admin request's span");
    assert_eq!(
        admin.attribute("method").as_deref(),
        Some("GET /auth/admin/api/users/{id}/sessions")
    );
    assert_ne!(
        admin.trace_id(),
        TRACE,
        "no traceparent: a trace of its own"
    );
    assert!(admin.parent_span_id().is_empty(), "a root span");

    // gRPC: the status is the gRPC code; a failure is an error only when the server failed.
    let over_grpc = request_span(&spans, GRPC_TRACE, GRPC_PARENT, "GetSession");
    assert_labels(over_grpc, "session.v2", "grpc", "200", "0");
    let not_found = spans
        .iter()
        .find(|s| {
            s.attribute("protocol").as_deref() == Some("grpc")
                && s.attribute("code").as_deref() == Some("5")
        })
        .expect("the NOT_FOUND call's span");
    assert_ne!(not_found.trace_id(), GRPC_TRACE);
    assert_ne!(status_code(not_found), 2, "NOT_FOUND is no server error");

    assert!(spans.iter().all(|s| s.trace_id() != UNSAMPLED));
    assert!(
        spans
            .iter()
            .any(|s| s.attribute("method").as_deref() == Some("GET /healthz")),
        "a /healthz without traceparent is traced"
    );

    // Every span carries the service's resource.
    for span in &spans {
        assert_eq!(
            span.resource_attribute("service.name").as_deref(),
            Some("sessiond")
        );
        assert_eq!(
            span.resource_attribute("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    // No secret anywhere: not the password, the session token, the JWT or its signature.
    let jwt = auth.trim_start_matches("Bearer ");
    let secrets = [
        ("password", PASSWORD),
        ("wrong password", WRONG_PASSWORD),
        ("session token", token.as_str()),
        ("JWT", jwt),
        ("JWT signature", jwt.rsplit('.').next().unwrap_or_default()),
    ];
    assert!(spans.len() >= 10, "too few spans: {}", spans.len());
    for span in &spans {
        for value in span.every_value() {
            for (what, secret) in secrets {
                assert!(
                    !value.contains(secret),
                    "span {:?} carries the {what}",
                    span.span.name
                );
            }
        }
    }
}

#[tokio::test]
async fn on_postgresql_store_spans_name_the_database_system() {
    let Some(base) = crate::backends::postgres_url() else {
        return;
    };
    let database_url = crate::backends::postgres_schema_url(&base).await;
    let receiver = OtlpReceiver::start().await;
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        data_dir.path(),
        &["--otlp-endpoint", &receiver.endpoint],
        &[("SESSIOND_DATABASE_URL", &database_url)],
    )
    .await;
    list_in_a_trace_and_stop(server, data_dir.path()).await;
    let spans = receiver.spans();
    let list = request_span(&spans, TRACE, REST_GET_PARENT, "ListSessions");
    let store = children(&spans, list)
        .into_iter()
        .find(|s| s.span.name == "store list_sessions")
        .expect("the list's store span");
    assert_eq!(
        store.attribute("db.system.name").as_deref(),
        Some("postgresql")
    );
}

/// A public login with an unknown name answers as a wrong password does, and costs the same
/// argon2id computation (a `password.hash` span), so timing does not tell names apart.
#[tokio::test]
async fn a_login_with_an_unknown_name_costs_one_password_computation() {
    const UNKNOWN_PARENT: &str = "4444444444444444";
    let receiver = OtlpReceiver::start().await;
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        data_dir.path(),
        &["--otlp-endpoint", &receiver.endpoint],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let flow: Value = send(http.get(server.url("/auth/self-service/login/api")))
        .await
        .json;
    let flow = flow["id"].as_str().expect("flow id").to_owned();
    let answer = http
        .post(server.url(&format!("/auth/self-service/login?flow={flow}")))
        .header("traceparent", traceparent(TRACE, UNKNOWN_PARENT))
        .json(&json!({"method": "password", "identifier": "nobody", "password": WRONG_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(answer.status(), 400);
    assert!(server.terminate().await.success());
    let spans = receiver.spans();
    let login = spans
        .iter()
        .find(|s| s.trace_id() == TRACE && s.parent_span_id() == UNKNOWN_PARENT)
        .expect("the login's request span");
    let below = children(&spans, login);
    assert!(
        below.iter().any(|s| s.span.name == "password.hash"),
        "no password computation for an unknown name: {below:#?}"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_connects_to_a_collector() {
    let receiver = OtlpReceiver::start().await;
    let data_dir = tempfile::tempdir().expect("dir");
    // The exporter's own variables point at the receiver: were an exporter built, it would
    // send there.
    let server = Server::start(
        data_dir.path(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &receiver.endpoint),
        ],
    )
    .await;
    list_in_a_trace_and_stop(server, data_dir.path()).await;
    assert_eq!(receiver.connections(), 0);
    assert!(receiver.spans().is_empty());
}

#[tokio::test]
async fn an_unreachable_collector_delays_neither_requests_nor_shutdown() {
    // A port nothing listens on.
    let endpoint = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(data_dir.path(), &["--otlp-endpoint", &endpoint], &[]).await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    for _ in 0..20 {
        let answer = http
            .get(server.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(answer.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 requests took {:?}",
        started.elapsed()
    );
    let stopping = Instant::now();
    assert!(server.terminate().await.success());
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        stopping.elapsed()
    );
}

#[tokio::test]
async fn a_malformed_endpoint_is_refused_at_start_naming_the_setting() {
    let data_dir = tempfile::tempdir().expect("dir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "not a url",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .output()
        .await
        .expect("running sessiond");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("otlp-endpoint"), "{stderr}");
}

/// With `--otlp-sample-ratio 0` a trace that starts at sessiond is not recorded, while a
/// request whose caller sampled its trace still is (the caller's decision wins).
#[tokio::test]
async fn a_sample_ratio_of_zero_records_only_the_traces_callers_sampled() {
    let receiver = OtlpReceiver::start().await;
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        data_dir.path(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint,
            "--otlp-sample-ratio",
            "0",
        ],
        &[],
    )
    .await;
    let auth = process_bearer(data_dir.path(), "caller", &["session.read"]);
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let answer = http
            .post(server.url("/v2/sessions/search"))
            .header("authorization", &auth)
            .json(&json!({}))
            .send()
            .await
            .expect("list");
        assert_eq!(answer.status(), 200);
    }
    list_in_a_trace_and_stop(server, data_dir.path()).await;
    let spans = receiver.spans();
    request_span(&spans, TRACE, REST_GET_PARENT, "ListSessions");
    assert!(
        spans.iter().all(|s| s.trace_id() == TRACE),
        "traces started here were recorded: {:#?}",
        spans
            .iter()
            .map(|s| (&s.span.name, s.trace_id()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_sample_ratio_outside_zero_to_one_is_refused_at_start_naming_the_setting() {
    let data_dir = tempfile::tempdir().expect("dir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-sample-ratio",
            "1.5",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .output()
        .await
        .expect("running sessiond");
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("otlp-sample-ratio"), "{stderr}");
}

/// Runs the `openssl` command with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A certificate authority (`ca.pem`, in `dir`) and a server certificate for `localhost` it
/// signed, with its key (returned, PEM), made by the `openssl` command.
pub(crate) fn localhost_certificate(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &new_key[..],
            &["-days", "1", "-subj", "/CN=test authority"],
        ]
        .concat()
        .into_iter()
        .chain(["-keyout", "ca.key", "-out", "ca.pem"])
        .collect::<Vec<_>>(),
    );
    openssl(
        dir,
        &[&["req"], &new_key[..], &["-subj", "/CN=localhost"]]
            .concat()
            .into_iter()
            .chain(["-keyout", "server.key", "-out", "server.csr"])
            .collect::<Vec<_>>(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    (
        std::fs::read(dir.join("server.pem")).expect("certificate"),
        std::fs::read(dir.join("server.key")).expect("key"),
    )
}

/// An https collector is reached over TLS and trusted through `--otlp-ca-file`; without it
/// the public roots do not vouch for the test authority's certificate, so nothing is sent, and the
/// server serves and stops all the same.
#[tokio::test]
async fn an_https_collector_is_trusted_through_the_given_authority_only() {
    let certificates = tempfile::tempdir().expect("dir");
    let (certificate, key) = localhost_certificate(certificates.path());
    let ca_file = certificates.path().join("ca.pem");

    let receiver = OtlpReceiver::start_tls(&certificate, &key).await;
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        data_dir.path(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint,
            "--otlp-ca-file",
            ca_file.to_str().expect("path"),
        ],
        &[],
    )
    .await;
    list_in_a_trace_and_stop(server, data_dir.path()).await;
    request_span(&receiver.spans(), TRACE, REST_GET_PARENT, "ListSessions");

    let untrusted = OtlpReceiver::start_tls(&certificate, &key).await;
    let data_dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        data_dir.path(),
        &["--otlp-endpoint", &untrusted.endpoint],
        &[],
    )
    .await;
    list_in_a_trace_and_stop(server, data_dir.path()).await;
    assert!(untrusted.spans().is_empty());
}
