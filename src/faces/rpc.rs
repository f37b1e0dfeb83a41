//! What every transport knows of an RPC, and the macro that turns a service's list of RPCs
//! into everything the transports need.
//!
//! A service is written once, as a list ([`rpc_service!`]): per RPC its method, handler,
//! messages and `google.api.http` rule. From that list come
//!
//! - one marker type per RPC implementing [`Rpc`] (the one call every protocol makes);
//! - the tonic server of the package (gRPC and gRPC-Web), generic in what [`Serve`]s it;
//! - a [`ServiceInfo`] table (Connect and REST routes, access-log and metrics labels, the
//!   OpenAPI and drift tests, the bench's no-op server);
//! - a visitor over the marker types ([`Visit`]) for code generic in the RPC.
//!
//! The services served are registered once, in [`super::services`].

use std::future::Future;

use axum::routing::MethodFilter;
use http::StatusCode;

use super::SessionApi;
use super::edges::Credentials;
use super::pb::sessiond::events::v1::WatchSessionEventsRequest;
use crate::core::EventBatches;
use crate::domain::{Error, Principal};

/// The HTTP verb of a `google.api.http` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    pub const fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// The `google.api.http` rule of an RPC: how REST transcodes it.
#[derive(Clone, Copy, Debug)]
pub struct HttpRule {
    pub verb: Verb,
    /// Path template with `{field}` parameters, e.g. `/v2/sessions/{session_id}`.
    pub path: &'static str,
    /// Whether the body carries the message (`body: "*"`); otherwise the query string does.
    pub body: bool,
    /// Status of a successful answer.
    pub success: StatusCode,
}

impl HttpRule {
    /// Whether a request path fits the template (each `{field}` one non-empty segment).
    pub fn matches(&self, path: &str) -> bool {
        let mut template = self.path.split('/');
        let mut actual = path.split('/');
        loop {
            match (template.next(), actual.next()) {
                (None, None) => return true,
                (Some(t), Some(a)) if t.starts_with('{') => {
                    if a.is_empty() {
                        return false;
                    }
                }
                (Some(t), Some(a)) if t == a => {}
                _ => return false,
            }
        }
    }
}

/// One RPC of one package, as the tables see it.
#[derive(Clone, Copy, Debug)]
pub struct RpcInfo {
    /// Fully qualified service name, e.g. `zitadel.session.v2.SessionService`.
    pub service: &'static str,
    /// Method name, e.g. `CreateSession`.
    pub method: &'static str,
    pub http: HttpRule,
}

impl RpcInfo {
    /// The gRPC and Connect path: `/<service>/<method>`.
    pub fn procedure(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

/// One package of a service: its name, labels and RPCs.
#[derive(Clone, Copy, Debug)]
pub struct ServiceInfo {
    /// Fully qualified service name.
    pub name: &'static str,
    /// The `face` label of its requests in access logs and metrics, e.g. `session.v2`.
    pub label: &'static str,
    /// The REST path every rule of the service starts with, e.g. `/v2/sessions`.
    pub rest_root: &'static str,
    pub rpcs: &'static [RpcInfo],
}

/// One RPC of one package version, as every transport calls it.
pub trait Rpc: Send + Sync + 'static {
    type Request: prost::Message + Default + serde::de::DeserializeOwned + Send + 'static;
    type Response: prost::Message + Default + serde::Serialize + Send + 'static;
    const INFO: RpcInfo;

    fn call(
        api: &SessionApi,
        principal: Principal,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Error>> + Send;
}

/// Code generic in the RPC, run once for each RPC of each service.
pub trait Visit {
    fn rpc<R: Rpc>(&mut self);
}

/// What answers RPCs behind the transports: [`SessionApi`] (authenticate, then call), or a
/// stand-in such as the bench's no-op server.
pub trait Serve: Clone + Send + Sync + 'static {
    fn serve<R: Rpc>(
        &self,
        credentials: Credentials,
        request: R::Request,
    ) -> impl Future<Output = Result<R::Response, Error>> + Send;

    /// Opens a watch of the session event feed (`WatchSessionEvents`, the one streaming RPC).
    /// A stand-in without a feed keeps this default, which refuses it.
    fn watch_session_events(
        &self,
        credentials: Credentials,
        request: WatchSessionEventsRequest,
    ) -> impl Future<Output = Result<EventBatches, Error>> + Send {
        let _ = (credentials, request);
        std::future::ready(Err(Error::new(
            crate::domain::ErrorKind::Unimplemented,
            crate::domain::error_ids::STREAM_UNSUPPORTED,
            "this server offers no event stream",
        )))
    }
}

/// Defines a service package from its list of RPCs; see the module header.
///
/// ```text
/// rpc_service! {
///     pub mod v2 {
///         service "zitadel.session.v2.SessionService", label "session.v2", rest "/v2", root "/sessions",
///         messages crate::faces::pb::zitadel::session::v2,
///         server session_service_server::{SessionService, SessionServiceServer},
///         call [direct],            // or [twin v2]: re-encoded as the twin package's RPC
///     }
///     CreateSession(create_session): CreateSessionRequest -> CreateSessionResponse
///         = Post "/sessions" body, CREATED;
///     …
/// }
/// ```
macro_rules! rpc_service {
    (
        $vis:vis mod $module:ident {
            service $name:literal, label $label:literal, rest $rest:literal, root $root:literal,
            messages $pb:path,
            server $server_mod:ident :: { $server_trait:ident, $server:ident },
            call $how:tt $(,)?
        }
        $(
            $method:ident ($handler:ident) : $req:ident -> $resp:ident
                = $verb:ident $path:literal $($body:ident)?, $success:ident;
        )+
    ) => {
        #[doc = concat!("The RPCs of `", $name, "`.")]
        $vis mod $module {
            use $pb as pb;
            use $crate::faces::rpc::{HttpRule, Rpc, RpcInfo, Serve, ServiceInfo, Verb, Visit};
            use $crate::faces::SessionApi;
            use $crate::domain::{Error, Principal};

            $(
                #[doc = concat!("`", $name, "/", stringify!($method), "`.")]
                pub struct $method;

                impl Rpc for $method {
                    type Request = pb::$req;
                    type Response = pb::$resp;
                    const INFO: RpcInfo = RpcInfo {
                        service: $name,
                        method: stringify!($method),
                        http: HttpRule {
                            verb: Verb::$verb,
                            path: concat!($rest, $path),
                            body: $crate::faces::rpc::rpc_service!(@body $($body)?),
                            success: http::StatusCode::$success,
                        },
                    };

                    fn call(
                        api: &SessionApi,
                        principal: Principal,
                        request: pb::$req,
                    ) -> impl std::future::Future<Output = Result<pb::$resp, Error>> + Send {
                        $crate::faces::rpc::rpc_service!(@call $how, $method, $handler, api, principal, request)
                    }
                }
            )+

            /// The package's table.
            pub const SERVICE: ServiceInfo = ServiceInfo {
                name: $name,
                label: $label,
                rest_root: concat!($rest, $root),
                rpcs: &[$(<$method as Rpc>::INFO),+],
            };

            /// Runs `visitor` for every RPC of the package.
            pub fn visit(visitor: &mut impl Visit) {
                $(visitor.rpc::<$method>();)+
            }

            /// The tonic service of the package, each method calling its [`Rpc`].
            pub struct Grpc<S>(S);

            #[tonic::async_trait]
            impl<S: Serve> pb::$server_mod::$server_trait for Grpc<S> {
                $(
                    async fn $handler(
                        &self,
                        request: tonic::Request<pb::$req>,
                    ) -> Result<tonic::Response<pb::$resp>, tonic::Status> {
                        $crate::faces::grpc::unary::<$method, S>(&self.0, request).await
                    }
                )+
            }

            /// The tonic server of the package over `serve`.
            pub fn server<S: Serve>(serve: S) -> pb::$server_mod::$server<Grpc<S>> {
                pb::$server_mod::$server::new(Grpc(serve))
            }
        }
    };
    (@body) => { false };
    (@body body) => { true };
    (@call [direct], $method:ident, $handler:ident, $api:ident, $principal:ident, $request:ident) => {
        $api.$handler($principal, $request)
    };
    (@call [twin $twin:ident], $method:ident, $handler:ident, $api:ident, $principal:ident, $request:ident) => {
        async move {
            let request = $crate::faces::rpc::transcode(&$request)?;
            let response = <super::$twin::$method as Rpc>::call($api, $principal, request).await?;
            $crate::faces::rpc::transcode(&response)
        }
    };
}

pub(crate) use rpc_service;

/// Re-encodes a message as a wire-compatible message of another package.
pub fn transcode<A: prost::Message, B: prost::Message + Default>(from: &A) -> Result<B, Error> {
    B::decode(from.encode_to_vec().as_slice())
        .map_err(|e| Error::internal(crate::domain::error_ids::TRANSCODE_FAILED, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment_per_parameter() {
        let rule = HttpRule {
            verb: Verb::Get,
            path: "/v2/sessions/{session_id}",
            body: false,
            success: StatusCode::OK,
        };
        assert!(rule.matches("/v2/sessions/123"));
        assert!(!rule.matches("/v2/sessions/"));
        assert!(!rule.matches("/v2/sessions/1/extra"));
        assert!(!rule.matches("/v2/session/1"));
    }
}
