//! The labels of a request in access logs and metrics: face, protocol and method, all of
//! bounded cardinality. RPCs are named from the services' tables ([`crate::faces::SERVICES`]),
//! other routes by their template (every segment that is no literal of a route is `{id}`);
//! the public signals routes by their route, an issuer's path of any length included.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use crate::faces::{Face, SERVICES};

/// Which face, protocol and method a request is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub face: &'static str,
    pub protocol: &'static str,
    pub method: Cow<'static, str>,
}

/// The face label of a gRPC or Connect service name.
fn service_label(service: &str) -> &'static str {
    if let Some(known) = SERVICES.iter().find(|s| s.name == service) {
        known.label
    } else if service == "grpc.health.v1.Health" {
        "health"
    } else if service.starts_with("grpc.reflection.") {
        "reflection"
    } else {
        "unknown"
    }
}

/// The literal segments of every HTTP route, collected once.
static KNOWN_SEGMENTS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    super::openapi::HTTP_ROUTES
        .iter()
        .chain(super::openapi::PAGE_ROUTES)
        .flat_map(|(_, path)| path.split('/'))
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .collect()
});

/// Whether a segment is a literal of some HTTP route (not an id).
fn known_segment(segment: &str) -> bool {
    KNOWN_SEGMENTS.contains(segment)
}

/// The path with every id-like segment replaced by `{id}`.
fn template(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(if known_segment(segment) {
            segment
        } else {
            "{id}"
        });
    }
    if out.is_empty() {
        String::from("/")
    } else {
        out
    }
}

pub fn classify(method: &http::Method, path: &str, content_type: Option<&str>) -> Route {
    let face = Face::of(path, content_type);
    // The public signals routes (SSF metadata and JWKS) before the RPC paths, which their
    // dotted first segment would pass for; labelled as the other signals routes are, the
    // admin face's (the same handlers and error shape).
    if let Some(route) = crate::signals::face::public_route(path)
        && !matches!(face, Face::Grpc | Face::GrpcWeb)
    {
        return Route {
            face: "admin",
            protocol: "http",
            method: Cow::Owned(format!("{method} {route}")),
        };
    }
    let rpc = path.strip_prefix('/').and_then(|p| p.split_once('/'));
    if let Some((service, rpc_method)) = rpc.filter(|(s, _)| s.contains('.')) {
        let label = service_label(service);
        let protocol = match face {
            Face::Grpc => "grpc",
            Face::GrpcWeb => "grpc-web",
            _ => "connect",
        };
        let method = if label == "unknown" {
            Cow::Borrowed("other")
        } else {
            Cow::Owned(rpc_method.to_owned())
        };
        return Route {
            face: label,
            protocol,
            method,
        };
    }
    for service in SERVICES {
        if path.starts_with(service.rest_root) {
            let rpc = service
                .rpcs
                .iter()
                .find(|r| r.http.verb.as_str() == method.as_str() && r.http.matches(path));
            return Route {
                face: service.label,
                protocol: "rest",
                method: Cow::Borrowed(rpc.map_or("other", |r| r.method)),
            };
        }
    }
    let face = match face {
        Face::Admin => "admin",
        Face::SelfService => "self-service",
        Face::KratosAdmin => "kratos-admin",
        _ if super::openapi::HTTP_ROUTES.iter().any(|(_, p)| *p == path) => "ops",
        _ if super::openapi::PAGE_ROUTES.iter().any(|(_, p)| *p == path) => "ui",
        _ => {
            return Route {
                face: "unknown",
                protocol: "http",
                method: Cow::Borrowed("other"),
            };
        }
    };
    Route {
        face,
        protocol: "http",
        method: Cow::Owned(format!("{method} {}", template(path))),
    }
}

/// The event list's REST path also serves the event stream, for `Accept: text/event-stream`:
/// such a request is labelled as the watch over Server-Sent Events.
pub fn streamed(route: Route, headers: &http::HeaderMap) -> Route {
    let events = crate::faces::events::SERVICE.label;
    if route.face == events
        && route.protocol == "rest"
        && crate::faces::sse::wants_event_stream(headers)
    {
        Route {
            face: events,
            protocol: "sse",
            method: Cow::Borrowed("WatchSessionEvents"),
        }
    } else {
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_stream_is_told_from_the_event_list_by_accept() {
        let list = classify(&http::Method::GET, "/v1/session-events", None);
        assert_eq!(
            (list.face, list.protocol, list.method.as_ref()),
            ("events.v1", "rest", "ListSessionEvents")
        );
        let mut headers = http::HeaderMap::new();
        assert_eq!(streamed(list.clone(), &headers), list);
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        let stream = streamed(list, &headers);
        assert_eq!(
            (stream.face, stream.protocol, stream.method.as_ref()),
            ("events.v1", "sse", "WatchSessionEvents")
        );
        let watch = classify(
            &http::Method::POST,
            crate::faces::events::WATCH_PROCEDURE,
            Some("application/connect+json"),
        );
        assert_eq!(
            (watch.face, watch.protocol, watch.method.as_ref()),
            ("events.v1", "connect", "WatchSessionEvents")
        );
    }

    #[test]
    fn routes_are_labelled_with_bounded_names() {
        let cases = [
            (
                "POST",
                "/zitadel.session.v2.SessionService/CreateSession",
                Some("application/grpc"),
                ("session.v2", "grpc", "CreateSession"),
            ),
            (
                "POST",
                "/zitadel.session.v2beta.SessionService/ListSessions",
                Some("application/json"),
                ("session.v2beta", "connect", "ListSessions"),
            ),
            (
                "GET",
                "/v2/sessions/123",
                None,
                ("session.v2", "rest", "GetSession"),
            ),
            (
                "POST",
                "/v2beta/sessions",
                None,
                ("session.v2beta", "rest", "CreateSession"),
            ),
            (
                "PUT",
                "/v2/sessions/1",
                None,
                ("session.v2", "rest", "other"),
            ),
            (
                "DELETE",
                "/auth/admin/api/users/42/sessions/7",
                None,
                (
                    "admin",
                    "http",
                    "DELETE /auth/admin/api/users/{id}/sessions/{id}",
                ),
            ),
            (
                "GET",
                "/auth/sessions/whoami",
                None,
                ("self-service", "http", "GET /auth/sessions/whoami"),
            ),
            ("GET", "/healthz", None, ("ops", "http", "GET /healthz")),
            ("GET", "/ui/app.js", None, ("ui", "http", "GET /ui/app.js")),
            (
                "POST",
                "/auth/self-service/login",
                None,
                ("self-service", "http", "POST /auth/self-service/login"),
            ),
            (
                "POST",
                "/auth/self-service/login",
                None,
                ("self-service", "http", "POST /auth/self-service/login"),
            ),
            (
                "GET",
                "/random/junk/path",
                None,
                ("unknown", "http", "other"),
            ),
            (
                "GET",
                "/.well-known/ssf-configuration",
                None,
                ("admin", "http", "GET /.well-known/ssf-configuration"),
            ),
            (
                "GET",
                "/.well-known/ssf-configuration/tenants/acme",
                None,
                (
                    "admin",
                    "http",
                    "GET /.well-known/ssf-configuration/{*issuer_path}",
                ),
            ),
            (
                "GET",
                "/.well-known/ssf-jwks.json",
                None,
                ("admin", "http", "GET /.well-known/ssf-jwks.json"),
            ),
            (
                "POST",
                "/auth/admin/api/ssf/poll/42",
                None,
                ("admin", "http", "POST /auth/admin/api/ssf/poll/{id}"),
            ),
            (
                "POST",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Some("application/connect+proto"),
                ("reflection", "connect", "ServerReflectionInfo"),
            ),
        ];
        for (method, path, content_type, expected) in cases {
            let method = http::Method::from_bytes(method.as_bytes()).unwrap_or_default();
            let route = classify(&method, path, content_type);
            assert_eq!(
                (route.face, route.protocol, route.method.as_ref()),
                expected,
                "{path}"
            );
        }
    }
}
