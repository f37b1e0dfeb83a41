//! Route drift: every unary method of every `SessionService` and `UserService` (and of the
//! `SessionEventService`) in the compiled descriptor set is in the services' lists
//! (`sessiond::faces::SERVICES`) with the descriptor's `google.api.http` rule, and answers on
//! every protocol. (The one streaming method, `WatchSessionEvents`, has no REST rule; the feed
//! tests call it on every protocol.) Each is called without credentials and must say
//! Unauthenticated; a method missing a route on any protocol would say 404 / Unimplemented
//! instead.

use std::collections::BTreeSet;

use http::uri::PathAndQuery;
use prost::Message;
use prost_types::FileDescriptorSet;
use sessiond::faces::SERVICES;
use sessiond::faces::rpc::RpcInfo;

use crate::helpers::*;

/// The RPC of the services' lists with this service and method name.
fn listed(service: &str, method: &str) -> Option<&'static RpcInfo> {
    SERVICES
        .iter()
        .flat_map(|s| s.rpcs)
        .find(|r| r.service == service && r.method == method)
}

/// A concrete path for a template: every parameter becomes `123`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "123" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// The services whose unary methods the lists must hold.
const SERVICE_NAMES: [&str; 3] = ["SessionService", "UserService", "SessionEventService"];

/// `(package, service, method)` of every unary method of every served service.
fn session_methods() -> Vec<(String, String, String)> {
    let set = FileDescriptorSet::decode(sessiond::faces::pb::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set decodes");
    let mut methods = Vec::new();
    for file in &set.file {
        let package = file.package().to_owned();
        for service in &file.service {
            if !SERVICE_NAMES.contains(&service.name()) {
                continue;
            }
            for method in service.method.iter().filter(|m| !m.server_streaming()) {
                methods.push((
                    package.clone(),
                    format!("{package}.{}", service.name()),
                    method.name().to_owned(),
                ));
            }
        }
    }
    methods
}

#[test]
fn the_descriptor_holds_both_session_services_the_user_service_and_the_event_list() {
    let methods = session_methods();
    let services: BTreeSet<&str> = methods.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "sessiond.events.v1.SessionEventService",
            "zitadel.session.v2.SessionService",
            "zitadel.session.v2beta.SessionService",
            "zitadel.user.v2.UserService"
        ])
    );
    assert_eq!(methods.len(), 10 + 16 + 1, "{methods:?}");
}

#[test]
fn the_rest_table_covers_exactly_the_methods_of_the_descriptor() {
    let in_descriptor: BTreeSet<(String, String)> = session_methods()
        .into_iter()
        .map(|(_, service, method)| (service, method))
        .collect();
    let in_table: BTreeSet<(String, String)> = SERVICES
        .iter()
        .flat_map(|s| s.rpcs)
        .map(|r| (r.service.to_owned(), r.method.to_owned()))
        .collect();
    assert_eq!(in_descriptor, in_table);
}

#[test]
fn the_listed_rest_rules_are_the_rules_of_the_descriptor() {
    let rules = crate::openapi::descriptor_rules();
    assert!(!rules.is_empty());
    for rule in rules {
        let (service, method) = rule.rpc.split_once('/').expect("service/method");
        let rpc = listed(service, method).unwrap_or_else(|| panic!("{} is not listed", rule.rpc));
        assert_eq!(
            (rpc.http.verb.as_str(), rpc.http.path, rpc.http.body),
            (rule.method.as_str(), rule.path.as_str(), rule.body),
            "{}",
            rule.rpc
        );
    }
}

async fn native_grpc_code(app: &TestApp, service: &str, method: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = PathAndQuery::try_from(format!("/{service}/{method}")).expect("path");
    // `()` is the empty message: every request type accepts it.
    let result: Result<tonic::Response<()>, tonic::Status> = grpc
        .unary(
            tonic::Request::new(()),
            path,
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn every_method_of_every_version_is_routed_on_every_protocol() {
    let app = spawn_app().await;
    let methods = session_methods();
    assert!(!methods.is_empty());
    for (package, service, method) in methods {
        let version = package.rsplit('.').next().expect("version segment");
        let procedure = app.url(&format!("/{service}/{method}"));

        let code = native_grpc_code(&app, &service, &method).await;
        assert_eq!(code, Code::Unauthenticated, "gRPC {service}/{method}");

        for text in [false, true] {
            let answer = grpc_web_call(&app.http, &procedure, None, &[], text).await;
            assert_eq!(answer.http_status, 200, "gRPC-Web {service}/{method}");
            let status = answer.status.expect("grpc-status");
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "gRPC-Web (text: {text}) {service}/{method}: {status:?}"
            );
        }

        for (content_type, body) in [
            ("application/json", b"{}".to_vec()),
            ("application/proto", Vec::new()),
        ] {
            let response = app
                .http
                .post(&procedure)
                .header("content-type", content_type)
                .header("connect-protocol-version", "1")
                .body(body)
                .send()
                .await
                .expect("Connect request");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("body");
            assert_eq!(
                status,
                401,
                "Connect {content_type} {service}/{method}: {}",
                String::from_utf8_lossy(&bytes)
            );
            let failure = failure_from_connect(status, &bytes);
            assert_eq!(
                (status, failure.code),
                (401, Code::Unauthenticated),
                "Connect {content_type} {service}/{method}"
            );
        }

        let rule = listed(&service, &method)
            .unwrap_or_else(|| panic!("no REST route for {method} in the table"))
            .http;
        assert!(rule.path.starts_with(&format!("/{version}/")), "{method}");
        let url = app.url(&concrete(rule.path));
        let verb = reqwest::Method::from_bytes(rule.verb.as_str().as_bytes()).expect("verb");
        let mut request = app.http.request(verb.clone(), &url);
        if verb != reqwest::Method::GET {
            request = request
                .header("content-type", "application/json")
                .body("{}");
        }
        let response = request.send().await.expect("REST request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        assert_eq!(
            status,
            401,
            "REST {verb} {url}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let failure = failure_from_rest(status, &bytes);
        assert_eq!(
            (status, failure.code),
            (401, Code::Unauthenticated),
            "REST {verb} {url}"
        );
    }
}
