//! The SessionService at the protobuf level: its list of RPCs, and wire messages in, wire
//! messages out with one core call in between. Every transport (gRPC, gRPC-Web, Connect,
//! REST) goes through the [`Rpc`] implementations the list defines, so they cannot drift
//! apart.
//!
//! `v2beta` messages are a wire-compatible subset of `v2` (same field numbers), so a v2beta
//! call is re-encoded as its v2 twin, served by the v2 code, and the answer re-encoded as
//! v2beta. Fields v2beta lacks are dropped by the decoder, as any v2beta client would.
//!
//! Session ids arrive here with the API's own rule ([`SessionId::parse`]: 1 to 200 runes,
//! no control characters), not the stricter [`SessionId::parse_well_formed`] of the
//! self-service face: ZITADEL answers an id of any other shape with NotFound, and so does
//! this API.

use super::convert::{
    details, session_to_pb, validate_create, validate_list, validate_set_request,
};
use super::edges::Credentials;
use super::pb::sessiond::events::v1::WatchSessionEventsRequest;
use super::pb::zitadel::object::v2 as object;
use super::pb::zitadel::session::v2 as msg;
use super::rpc::{Rpc, Serve, rpc_service};
use crate::auth::Authenticator;
use crate::core::EventBatches;
use crate::domain::{Error, Principal, SessionId, SessionToken};

/// The `challenges` of a Create or Set answer: present when a challenge was requested.
fn challenges(
    web_auth_n: Option<serde_json::Value>,
    codes: crate::core::ReturnedCodes,
) -> Result<Option<msg::Challenges>, Error> {
    let mut challenges = super::convert::challenges_to_pb(codes);
    if let Some(options) = web_auth_n {
        challenges.get_or_insert_with(Default::default).web_auth_n =
            Some(msg::challenges::WebAuthN {
                public_key_credential_request_options: Some(super::convert::json_struct(options)?),
            });
    }
    Ok(challenges)
}

/// The protobuf-level session API over the core.
#[derive(Clone)]
pub struct SessionApi {
    auth: Authenticator,
}

impl SessionApi {
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }

    pub fn core(&self) -> &crate::core::Core {
        self.auth.core()
    }

    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Error> {
        self.auth.authenticate(authorization).await
    }

    pub async fn create_session(
        &self,
        principal: Principal,
        request: msg::CreateSessionRequest,
    ) -> Result<msg::CreateSessionResponse, Error> {
        let command = validate_create(request)?;
        let change = self.auth.core().create_session(&principal, command).await?;
        Ok(msg::CreateSessionResponse {
            details: Some(details(&change.details)),
            session_id: change.session_id.into_string(),
            session_token: exposed(change.token),
            challenges: challenges(change.web_auth_n_options, change.codes)?,
        })
    }

    pub async fn set_session(
        &self,
        principal: Principal,
        request: msg::SetSessionRequest,
    ) -> Result<msg::SetSessionResponse, Error> {
        let command = validate_set_request(request)?;
        let change = self.auth.core().set_session(&principal, command).await?;
        Ok(msg::SetSessionResponse {
            details: Some(details(&change.details)),
            session_token: exposed(change.token),
            challenges: challenges(change.web_auth_n_options, change.codes)?,
        })
    }

    pub async fn get_session(
        &self,
        principal: Principal,
        request: msg::GetSessionRequest,
    ) -> Result<msg::GetSessionResponse, Error> {
        let id = SessionId::parse(request.session_id)?;
        let token = request
            .session_token
            .map(super::convert::session_token)
            .transpose()?;
        let session = self
            .auth
            .core()
            .get_session(&principal, &id, token.as_ref())
            .await?;
        Ok(msg::GetSessionResponse {
            session: Some(session_to_pb(&session)),
        })
    }

    pub async fn list_sessions(
        &self,
        principal: Principal,
        request: msg::ListSessionsRequest,
    ) -> Result<msg::ListSessionsResponse, Error> {
        let command = validate_list(request)?;
        let (sessions, list) = self.auth.core().list_sessions(&principal, command).await?;
        Ok(msg::ListSessionsResponse {
            details: Some(object::ListDetails {
                total_result: list.total_result,
                processed_sequence: 0,
                timestamp: Some(list.timestamp.into()),
            }),
            sessions: sessions.iter().map(session_to_pb).collect(),
        })
    }

    pub async fn delete_session(
        &self,
        principal: Principal,
        request: msg::DeleteSessionRequest,
    ) -> Result<msg::DeleteSessionResponse, Error> {
        let id = SessionId::parse(request.session_id)?;
        let token = request.session_token.map(SessionToken::from_client);
        let details = self
            .auth
            .core()
            .delete_session(&principal, &id, token.as_ref())
            .await?;
        Ok(msg::DeleteSessionResponse {
            details: Some(self::details(&details)),
        })
    }
}

/// A new session token as the response carries it (empty when none was issued).
fn exposed(token: Option<SessionToken>) -> String {
    token.map(SessionToken::into_exposed).unwrap_or_default()
}

impl Serve for SessionApi {
    async fn serve<R: Rpc>(
        &self,
        credentials: Credentials,
        request: R::Request,
    ) -> Result<R::Response, Error> {
        let principal = self.authenticate(credentials.authorization()).await?;
        R::call(self, principal, request).await
    }

    async fn watch_session_events(
        &self,
        credentials: Credentials,
        request: WatchSessionEventsRequest,
    ) -> Result<EventBatches, Error> {
        let principal = self.authenticate(credentials.authorization()).await?;
        let filter = super::events::watch_filter(request)?;
        self.core()
            .watch_session_event_batches(&principal, filter)
            .await
    }
}

/// The SessionService, one line per RPC: method (handler): messages = the `google.api.http`
/// rule below the version prefix, and the status of a successful REST answer.
macro_rules! session_service {
    ($($package:tt)*) => {
        rpc_service! {
            $($package)*
            ListSessions(list_sessions): ListSessionsRequest -> ListSessionsResponse
                = Post "/sessions/search" body, OK;
            GetSession(get_session): GetSessionRequest -> GetSessionResponse
                = Get "/sessions/{session_id}", OK;
            CreateSession(create_session): CreateSessionRequest -> CreateSessionResponse
                = Post "/sessions" body, CREATED;
            SetSession(set_session): SetSessionRequest -> SetSessionResponse
                = Patch "/sessions/{session_id}" body, OK;
            DeleteSession(delete_session): DeleteSessionRequest -> DeleteSessionResponse
                = Delete "/sessions/{session_id}" body, OK;
        }
    };
}

session_service! {
    pub mod v2 {
        service "zitadel.session.v2.SessionService", label "session.v2", rest "/v2", root "/sessions",
        messages crate::faces::pb::zitadel::session::v2,
        server session_service_server::{SessionService, SessionServiceServer},
        call [direct],
    }
}

session_service! {
    pub mod v2beta {
        service "zitadel.session.v2beta.SessionService", label "session.v2beta", rest "/v2beta", root "/sessions",
        messages crate::faces::pb::zitadel::session::v2beta,
        server session_service_server::{SessionService, SessionServiceServer},
        call [twin v2],
    }
}

#[cfg(test)]
mod tests {
    use super::super::pb::zitadel::session::v2beta as beta;
    use super::super::rpc::transcode;
    use super::*;

    #[test]
    fn v2beta_requests_transcode_to_v2() -> Result<(), Error> {
        let request = beta::DeleteSessionRequest {
            session_id: "42".into(),
            session_token: Some("t".into()),
        };
        let v2: msg::DeleteSessionRequest = transcode(&request)?;
        assert_eq!(v2.session_id, "42");
        assert_eq!(v2.session_token.as_deref(), Some("t"));
        Ok(())
    }

    #[test]
    fn both_packages_list_the_same_methods_with_their_own_rest_paths() {
        let methods = |s: &super::super::rpc::ServiceInfo| {
            s.rpcs.iter().map(|r| r.method).collect::<Vec<_>>()
        };
        assert_eq!(methods(&v2::SERVICE), methods(&v2beta::SERVICE));
        assert_eq!(
            <v2beta::GetSession as Rpc>::INFO.http.path,
            "/v2beta/sessions/{session_id}"
        );
        assert_eq!(v2::SERVICE.rest_root, "/v2/sessions");
    }
}
