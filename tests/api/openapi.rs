//! The OpenAPI document (`openapi/openapi.json`, served at `/openapi.json`) against the server:
//!
//! - the served document is the file;
//! - it documents exactly the HTTP routes there are: the `google.api.http` rules of every
//!   SessionService method in the compiled descriptor set, plus `ops::openapi::HTTP_ROUTES`;
//! - `HTTP_ROUTES` is what the faces register (their `.route(…)` calls) and what the running
//!   server answers: every documented operation is routed and asks for the credentials the
//!   document says, and on every documented path the server's `Allow` header lists exactly the
//!   documented methods;
//! - every operation documents the errors of its face in that face's shape.
//!
//! What the answers look like is checked against the document by `tests/openapi/run.sh`
//! (schemathesis).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::Value;

use sessiond::ops::openapi::{DOCUMENT, HTTP_ROUTES, PAGE_ROUTES};

use crate::helpers::*;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi/openapi.json is JSON")
}

/// `/v2/sessions/{session_id}` and `/v2/sessions/{sessionId}` both become `/v2/sessions/{}`.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// `(METHOD, normalized path)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let upper = method.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) || matches!(upper.as_str(), "HEAD" | "OPTIONS") {
                out.insert((upper, normalize(path)));
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// google.api.http rules from the descriptor set. prost drops unknown fields, so these minimal
// descriptor messages declare the `google.api.http` extension (field 72295728 of
// MethodOptions) as an ordinary field.
// ------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, Message)]
struct FileSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<File>,
}

#[derive(Clone, PartialEq, Message)]
struct File {
    #[prost(string, tag = "2")]
    package: String,
    #[prost(message, repeated, tag = "6")]
    service: Vec<Service>,
}

#[derive(Clone, PartialEq, Message)]
struct Service {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, repeated, tag = "2")]
    method: Vec<Method>,
}

#[derive(Clone, PartialEq, Message)]
struct Method {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "4")]
    options: Option<MethodOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodOptions {
    #[prost(message, optional, tag = "72295728")]
    http: Option<HttpRule>,
}

#[derive(Clone, PartialEq, Message)]
struct HttpRule {
    #[prost(string, tag = "2")]
    get: String,
    #[prost(string, tag = "3")]
    put: String,
    #[prost(string, tag = "4")]
    post: String,
    #[prost(string, tag = "5")]
    delete: String,
    #[prost(string, tag = "6")]
    patch: String,
    #[prost(string, tag = "7")]
    body: String,
    #[prost(message, optional, tag = "8")]
    custom: Option<CustomPattern>,
    #[prost(message, repeated, tag = "11")]
    additional_bindings: Vec<HttpRule>,
}

#[derive(Clone, PartialEq, Message)]
struct CustomPattern {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    path: String,
}

/// One REST rule: the RPC, the verb, the path template and whether it takes a body.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) rpc: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: bool,
}

fn rules_of(rpc: &str, rule: &HttpRule, out: &mut Vec<Rule>) {
    let patterns = [
        ("GET", &rule.get),
        ("PUT", &rule.put),
        ("POST", &rule.post),
        ("DELETE", &rule.delete),
        ("PATCH", &rule.patch),
    ];
    for (method, path) in patterns {
        if !path.is_empty() {
            out.push(Rule {
                rpc: rpc.to_owned(),
                method: method.to_owned(),
                path: path.clone(),
                body: !rule.body.is_empty(),
            });
        }
    }
    if let Some(custom) = &rule.custom {
        out.push(Rule {
            rpc: rpc.to_owned(),
            method: custom.kind.to_ascii_uppercase(),
            path: custom.path.clone(),
            body: !rule.body.is_empty(),
        });
    }
    for binding in &rule.additional_bindings {
        rules_of(rpc, binding, out);
    }
}

/// Every `google.api.http` rule of every `SessionService`, `UserService` and of the
/// `SessionEventService` in the compiled descriptor set (whose streaming method has none).
pub(crate) fn descriptor_rules() -> Vec<Rule> {
    let set = FileSet::decode(sessiond::faces::pb::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set decodes");
    let mut rules = Vec::new();
    for file in &set.file {
        let served = |s: &&Service| {
            matches!(
                s.name.as_str(),
                "SessionService" | "UserService" | "SessionEventService"
            )
        };
        for service in file.service.iter().filter(served) {
            for method in &service.method {
                let rpc = format!("{}.{}/{}", file.package, service.name, method.name);
                if rpc == "sessiond.events.v1.SessionEventService/WatchSessionEvents" {
                    continue;
                }
                let rule = method
                    .options
                    .as_ref()
                    .and_then(|o| o.http.as_ref())
                    .unwrap_or_else(|| panic!("{rpc} has no google.api.http rule"));
                rules_of(&rpc, rule, &mut rules);
            }
        }
    }
    rules
}

// ------------------------------------------------------------------------------------------
// The faces' `.route(…)` calls
// ------------------------------------------------------------------------------------------

/// Faces whose routes are generated from the services' lists of RPCs (REST rules, Connect
/// procedures) and checked against the descriptor by `drift.rs` and the tests below; every other file's `.route(…)` calls
/// must be in `HTTP_ROUTES`.
/// `sse.rs` serves the event list's REST rule (and its stream), `connect_stream.rs` the
/// event watch's Connect procedure.
const GENERATED_ROUTES: &[&str] = &["rest.rs", "connect.rs", "sse.rs", "connect_stream.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src/") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `const NAME: &str = "…";` items of a file.
fn str_consts(source: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in source.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("const ")
            .or(line.strip_prefix("pub const "))
        else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(':') else {
            continue;
        };
        let Some((ty, value)) = rest.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_end_matches(';').trim();
        if ty.trim() == "&str" && value.starts_with('"') && value.ends_with('"') {
            out.insert(name.trim().to_owned(), value.trim_matches('"').to_owned());
        }
    }
    out
}

/// The expression from `start` (just after an opening parenthesis) to its closing one.
fn until_close(text: &str, start: usize) -> &str {
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..start + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses after {:?}", &text[start..]);
}

/// A route's path argument: `"…"`, `&format!("…")` or a string constant.
fn route_path(arg: &str, consts: &BTreeMap<String, String>, file: &Path) -> String {
    let arg = arg.trim();
    let template = if let Some(inner) = arg.strip_prefix("&format!(") {
        inner.trim_end_matches(')').trim()
    } else {
        arg
    };
    if let Some(literal) = template.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !arg.starts_with("&format!") {
            return literal.to_owned();
        }
        // format!: `{{`/`}}` are braces, `{NAME}` a string constant of the file.
        let mut out = String::new();
        let mut rest = literal;
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(r) = rest.strip_prefix("{{") {
                out.push('{');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("}}") {
                out.push('}');
                rest = r;
            } else {
                let end = rest.find('}').expect("closing brace");
                let name = &rest[1..end];
                let value = consts.get(name).unwrap_or_else(|| {
                    panic!(
                        "{}: route path {arg} uses {{{name}}}, which is no string constant of the \
                         file; teach tests/api/openapi.rs to read it",
                        file.display()
                    )
                });
                out.push_str(value);
                rest = &rest[end + 1..];
            }
        }
        out.push_str(rest);
        return out;
    }
    consts.get(template).cloned().unwrap_or_else(|| {
        panic!(
            "{}: cannot read the route path {arg}; teach tests/api/openapi.rs to read it",
            file.display()
        )
    })
}

/// The HTTP methods a method router expression registers (`get(h).post(h)`,
/// `axum::routing::delete(h)`, …).
fn router_methods(expr: &str, file: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    for (i, _) in expr.char_indices() {
        let before_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !before_ok {
            continue;
        }
        for name in [
            "get", "post", "put", "patch", "delete", "head", "options", "any",
        ] {
            if expr[i..].starts_with(&format!("{name}(")) {
                assert!(
                    name != "any",
                    "{}: a route for any method ({expr}); list its methods",
                    file.display()
                );
                out.push(name.to_ascii_uppercase());
            }
        }
    }
    assert!(
        !out.is_empty(),
        "{}: no method in {expr}; teach tests/api/openapi.rs to read it",
        file.display()
    );
    out
}

/// `(METHOD, path)` of every `.route(…)` call under `src/` outside [`GENERATED_ROUTES`].
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut out = BTreeSet::new();
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if GENERATED_ROUTES.contains(&name) {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("reading a source file");
        // Comments may mention `.route(`; code only.
        let code: String = source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let consts = str_consts(&code);
        let mut from = 0;
        while let Some(at) = code[from..].find(".route(") {
            let start = from + at + ".route(".len();
            let args = until_close(&code, start);
            // The path argument ends at the first comma outside parentheses.
            let mut depth = 0;
            let split = args
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    c == ',' && depth == 0
                })
                .map(|(i, _)| i)
                .unwrap_or_else(|| panic!("{}: .route({args}) has one argument", file.display()));
            let path = route_path(&args[..split], &consts, &file);
            for method in router_methods(&args[split + 1..], &file) {
                out.insert((method, path.clone()));
            }
            from = start + args.len();
        }
    }
    out
}

/// The API routes and the account page's (which the document leaves out).
fn listed_routes() -> BTreeSet<(String, String)> {
    HTTP_ROUTES
        .iter()
        .chain(PAGE_ROUTES)
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

fn show(set: &BTreeSet<(String, String)>) -> String {
    set.iter()
        .map(|(m, p)| format!("\n  {m} {p}"))
        .collect::<String>()
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_served_document_is_the_file_in_the_repository() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let served = response.text().await.expect("body");
    let file = std::fs::read_to_string(repo().join("openapi/openapi.json"))
        .expect("reading openapi/openapi.json");
    assert!(
        served == file,
        "/openapi.json differs from openapi/openapi.json"
    );
    let doc: Value = serde_json::from_str(&served).expect("JSON");
    assert_eq!(doc["openapi"], "3.0.3");
}

#[test]
fn the_descriptor_has_a_rest_rule_for_every_session_method() {
    let rules = descriptor_rules();
    // 5 session RPCs × 2 packages, 16 UserService RPCs and the event list, one binding each:
    // if this changes, so must the document.
    assert_eq!(rules.len(), 10 + 16 + 1, "{rules:#?}");
    for rule in &rules {
        assert!(
            rule.path.starts_with("/v2/")
                || rule.path.starts_with("/v2beta/")
                || rule.path == "/v1/session-events",
            "{rule:?}"
        );
    }
}

#[test]
fn the_document_describes_every_route_and_no_other() {
    let doc = document();
    let mut expected: BTreeSet<(String, String)> = descriptor_rules()
        .into_iter()
        .map(|r| (r.method, normalize(&r.path)))
        .collect();
    expected.extend(
        HTTP_ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), normalize(p))),
    );
    let documented = documented(&doc);
    let missing: BTreeSet<_> = expected.difference(&documented).cloned().collect();
    let extra: BTreeSet<_> = documented.difference(&expected).cloned().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "openapi/openapi.json is out of date.\nRoutes it does not document:{}\nOperations it \
         documents that are no route:{}",
        show(&missing),
        show(&extra)
    );
}

#[test]
fn rest_bodies_and_path_parameters_follow_the_descriptor() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    for rule in descriptor_rules() {
        let (path, item) = paths
            .iter()
            .find(|(p, _)| normalize(p) == normalize(&rule.path))
            .unwrap_or_else(|| panic!("{} {} is not documented", rule.method, rule.path));
        let operation = &item[rule.method.to_ascii_lowercase()];
        assert_eq!(
            operation.get("requestBody").is_some(),
            rule.body,
            "{} {path} ({}): a request body exactly when the rule has one",
            rule.method,
            rule.rpc
        );
        let package = rule.rpc.split('/').next().unwrap_or_default();
        let package = package
            .trim_end_matches(".SessionService")
            .trim_end_matches(".SessionEventService")
            .trim_end_matches(".UserService");
        let success = operation["responses"]
            .as_object()
            .and_then(|r| r.iter().find(|(status, _)| status.starts_with('2')))
            .map(|(_, response)| response["content"]["application/json"]["schema"]["$ref"].clone())
            .unwrap_or(Value::Null);
        let rpc_name = rule.rpc.rsplit('/').next().unwrap_or_default();
        assert_eq!(
            success,
            Value::String(format!("#/components/schemas/{package}.{rpc_name}Response")),
            "{} {path}: the success answer is the RPC's response message",
            rule.method
        );
        assert_path_parameters(&doc, path, operation);
    }
}

/// Resolves a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => doc
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {pointer}")),
        None => value,
    }
}

fn assert_path_parameters(doc: &Value, path: &str, operation: &Value) {
    let in_template: BTreeSet<&str> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    let declared: BTreeSet<&str> = operation["parameters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| resolve(doc, p))
        .filter(|p| p["in"] == "path")
        .map(|p| p["name"].as_str().expect("parameter name"))
        .collect();
    assert_eq!(in_template, declared, "{path}: path parameters");
}

#[test]
fn every_operation_declares_its_path_parameters_and_its_faces_errors() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let what = format!("{} {path}", method.to_ascii_uppercase());
            assert_path_parameters(&doc, path, operation);
            assert!(
                operation["operationId"].is_string(),
                "{what}: no operationId"
            );
            let responses = operation["responses"].as_object().expect("responses");
            let prefix = if path.starts_with("/v2/")
                || path.starts_with("/v2beta/")
                || path.starts_with("/v1/")
            {
                "Rest"
            } else if path.starts_with("/auth/admin/sessions")
                || path.starts_with("/auth/admin/identities")
            {
                "Kratos"
            } else if path.starts_with("/auth/admin/") {
                "Admin"
            } else if path.starts_with("/auth/") {
                "Kratos"
            } else {
                "Ops"
            };
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            let mut wanted = vec!["503", "504"];
            if secured {
                wanted.extend(["401", "500"]);
            }
            if operation.get("requestBody").is_some() {
                wanted.extend(["400", "413", "415"]);
            }
            for status in wanted {
                assert!(responses.contains_key(status), "{what}: no {status} answer");
            }
            for (status, response) in responses {
                if status.starts_with('2') || (prefix == "Ops" && !status.starts_with('5')) {
                    continue;
                }
                if let Some(name) = response["$ref"].as_str() {
                    // `Kratos400LoginFlow`: the face's 400, or the login flow it answers.
                    assert!(
                        name.starts_with(&format!("#/components/responses/{prefix}{status}")),
                        "{what}: {status} is {name}, not the {prefix} shape"
                    );
                } else {
                    assert!(
                        what.starts_with("GET /readyz") && status == "503",
                        "{what}: {status} has no shared error answer"
                    );
                }
            }
        }
    }
}

#[test]
fn the_route_list_is_what_the_faces_register() {
    let registered = registered_routes();
    let listed = listed_routes();
    let unlisted: BTreeSet<_> = registered.difference(&listed).cloned().collect();
    let stale: BTreeSet<_> = listed.difference(&registered).cloned().collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "ops::openapi::HTTP_ROUTES is out of date (and so, probably, openapi/openapi.json).\n\
         Registered by a face but not listed:{}\nListed but registered nowhere:{}",
        show(&unlisted),
        show(&stale)
    );
}

/// A concrete URL path for a template: every parameter becomes `1`.
fn concrete(path: &str) -> String {
    normalize(path).replace("{}", "1")
}

#[tokio::test]
async fn the_server_routes_exactly_the_documented_methods_with_the_documented_security() {
    let app = spawn_app().await;
    let doc = document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let url = app.url(&concrete(path));
        let documented: BTreeSet<String> = item
            .as_object()
            .expect("path item")
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        for method in METHODS {
            let mut request = app.http.request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                &url,
            );
            if method != "GET" {
                request = request
                    .header("content-type", "application/json")
                    .body("{}");
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let allow = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response.text().await.unwrap_or_default();
            let what = format!("{method} {path} ({url}) without credentials");
            match item.get(method.to_ascii_lowercase()) {
                Some(operation) => {
                    let public = operation["security"].as_array().is_some_and(Vec::is_empty);
                    if public {
                        // Routed and not asking for credentials; `{}` may still be refused
                        // as input (the login needs a flow and a method).
                        assert!(
                            (200..300).contains(&status)
                                || ((400..500).contains(&status) && status != 401 && status != 405),
                            "{what}: documented without security, answered {status} {body}"
                        );
                    } else {
                        assert_eq!(
                            status, 401,
                            "{what}: documented with security, answered {status} {body}"
                        );
                    }
                }
                None => {
                    assert_eq!(
                        status, 405,
                        "{what}: undocumented, answered {status} {body}"
                    );
                    let allowed: BTreeSet<String> = allow
                        .split(',')
                        .map(|m| m.trim().to_owned())
                        .filter(|m| !m.is_empty() && m != "HEAD")
                        .collect();
                    assert_eq!(
                        allowed, documented,
                        "{what}: the server allows {allow:?}, the document has {documented:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_schema_reference_resolves() {
    let doc = document();
    fn walk(doc: &Value, value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(pointer)) = map.get("$ref") {
                    assert!(
                        pointer.starts_with("#/")
                            && doc.pointer(pointer.trim_start_matches('#')).is_some(),
                        "{at}: dangling $ref {pointer}"
                    );
                }
                for (key, v) in map {
                    walk(doc, v, &format!("{at}/{key}"));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(doc, v, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    walk(&doc, &doc, "#");
}

/// Load shedding answers 503 in each face's shape; the self-service and admin shapes repeat
/// the HTTP status in the body, which must be the 503 that is sent (the document says so).
#[tokio::test]
async fn shed_answers_repeat_the_status_they_are_sent_with() {
    let app = spawn_app_with(|c| c.max_concurrent_requests = 1).await;
    // One request held in flight: its body never ends until `more` is dropped.
    let (more, chunks) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    more.send(Ok(bytes::Bytes::from_static(b"{")))
        .await
        .expect("first chunk");
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    });
    let held = tokio::spawn(
        app.http
            .post(app.url("/v2/sessions"))
            .header("authorization", app.admin())
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    let mut shedding = false;
    for _ in 0..200 {
        let status = app
            .http
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("GET /healthz")
            .status();
        if status == 503 {
            shedding = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(shedding, "the held request never filled the one slot");

    let admin = app
        .http
        .get(app.url("/auth/admin/api/users"))
        .header("authorization", app.bearer("ops", &["user.read"]))
        .send()
        .await
        .expect("admin request");
    assert_eq!(admin.status(), 503);
    let body: Value = admin.json().await.expect("admin JSON");
    assert_eq!(body["statusCode"], 503, "{body}");
    assert_eq!(body["error"], "Service Unavailable", "{body}");

    let own = app
        .http
        .get(app.url("/auth/sessions/whoami"))
        .header("x-session-token", "sdst_x")
        .send()
        .await
        .expect("self-service request");
    assert_eq!(own.status(), 503);
    let body: Value = own.json().await.expect("self-service JSON");
    assert_eq!(body["error"]["code"], 503, "{body}");
    assert_eq!(body["error"]["status"], "Service Unavailable", "{body}");

    drop(more);
    let _ = held.await;
}
