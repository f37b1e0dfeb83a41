//! The SessionService at the protobuf level: wire messages in, wire messages out, one core
//! call in between. Every transport (gRPC, gRPC-Web, Connect, REST) goes through the
//! [`Rpc`] implementations here, so they cannot drift apart.
//!
//! `v2beta` messages are a wire-compatible subset of `v2` (same field numbers), so a v2beta
//! call is re-encoded as its v2 twin, served by the v2 code, and the answer re-encoded as
//! v2beta. Fields v2beta lacks are dropped by the decoder, as any v2beta client would.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use prost::Message;

use super::pb::zitadel::object::v2 as object;
use super::pb::zitadel::session::{v2, v2beta};
use super::pb::zitadel::v1::TimestampQueryMethod;
use crate::auth::Authenticator;
use crate::core::{Checks, CreateSession, ListSessions, SearchQuery, SetSession, UserLookup};
use crate::domain::error_ids;
use crate::domain::{
    Details, Error, LoginName, Password, Principal, Session, SessionId, SessionToken,
    TimeComparison, UserAgent, UserId,
};

/// The protobuf-level session API over the core.
#[derive(Clone)]
pub struct SessionApi {
    auth: Authenticator,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_argument(error_ids::REQUEST_INVALID, message.into())
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
        request: v2::CreateSessionRequest,
    ) -> Result<v2::CreateSessionResponse, Error> {
        let command = validate_create(request)?;
        let change = self.auth.core().create_session(&principal, command).await?;
        Ok(v2::CreateSessionResponse {
            details: Some(details(&change.details)),
            session_id: change.session_id.into_string(),
            session_token: change
                .token
                .map(SessionToken::into_exposed)
                .unwrap_or_default(),
            challenges: None,
        })
    }

    pub async fn set_session(
        &self,
        principal: Principal,
        request: v2::SetSessionRequest,
    ) -> Result<v2::SetSessionResponse, Error> {
        let command = validate_set_request(request)?;
        let change = self.auth.core().set_session(&principal, command).await?;
        Ok(v2::SetSessionResponse {
            details: Some(details(&change.details)),
            session_token: change
                .token
                .map(SessionToken::into_exposed)
                .unwrap_or_default(),
            challenges: None,
        })
    }

    pub async fn get_session(
        &self,
        principal: Principal,
        request: v2::GetSessionRequest,
    ) -> Result<v2::GetSessionResponse, Error> {
        let id = SessionId::parse(request.session_id)?;
        let token = request.session_token.map(session_token).transpose()?;
        let session = self
            .auth
            .core()
            .get_session(&principal, &id, token.as_ref())
            .await?;
        Ok(v2::GetSessionResponse {
            session: Some(session_to_pb(&session)),
        })
    }

    pub async fn list_sessions(
        &self,
        principal: Principal,
        request: v2::ListSessionsRequest,
    ) -> Result<v2::ListSessionsResponse, Error> {
        let command = validate_list(request)?;
        let (sessions, list) = self.auth.core().list_sessions(&principal, command).await?;
        Ok(v2::ListSessionsResponse {
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
        request: v2::DeleteSessionRequest,
    ) -> Result<v2::DeleteSessionResponse, Error> {
        let id = SessionId::parse(request.session_id)?;
        let token = request.session_token.map(SessionToken::from_client);
        let details = self
            .auth
            .core()
            .delete_session(&principal, &id, token.as_ref())
            .await?;
        Ok(v2::DeleteSessionResponse {
            details: Some(self::details(&details)),
        })
    }
}

/// The CreateSession command of a request, validated.
pub(crate) fn validate_create(request: v2::CreateSessionRequest) -> Result<CreateSession, Error> {
    Ok(CreateSession {
        checks: checks(request.checks)?,
        metadata: metadata(request.metadata)?,
        user_agent: user_agent(request.user_agent),
        lifetime: lifetime(request.lifetime)?,
        unsupported_challenges: unsupported_challenges(request.challenges.as_ref()),
    })
}

/// The SetSession command of a request, validated.
pub(crate) fn validate_set_request(request: v2::SetSessionRequest) -> Result<SetSession, Error> {
    Ok(SetSession {
        session_id: SessionId::parse(request.session_id)?,
        checks: checks(request.checks)?,
        metadata: metadata(request.metadata)?,
        lifetime: lifetime(request.lifetime)?,
        unsupported_challenges: unsupported_challenges(request.challenges.as_ref()),
    })
}

/// The SetSession command of protobuf bytes of either package version.
#[cfg(test)]
pub(crate) fn validate_set(bytes: &[u8]) -> Result<SetSession, Error> {
    let request =
        <v2::SetSessionRequest as Message>::decode(bytes).map_err(|e| invalid(e.to_string()))?;
    validate_set_request(request)
}

/// The ListSessions command of a request, validated.
pub(crate) fn validate_list(request: v2::ListSessionsRequest) -> Result<ListSessions, Error> {
    if v2::SessionFieldName::try_from(request.sorting_column).is_err() {
        return Err(invalid(
            "sortingColumn: value must be one of the defined enum values",
        ));
    }
    let query = request.query.unwrap_or_default();
    Ok(ListSessions {
        queries: request
            .queries
            .into_iter()
            .map(search_query)
            .collect::<Result<_, _>>()?,
        offset: query.offset,
        limit: query.limit,
        asc: query.asc,
    })
}

fn session_token(value: String) -> Result<SessionToken, Error> {
    let len = value.chars().count();
    if len == 0 || len > 500 {
        return Err(invalid(
            "sessionToken: value length must be between 1 and 500 runes, inclusive",
        ));
    }
    Ok(SessionToken::from_client(value))
}

fn checks(checks: Option<v2::Checks>) -> Result<Checks, Error> {
    let Some(c) = checks else {
        return Ok(Checks::default());
    };
    let user = match c.user {
        None => None,
        Some(user) => Some(match user.search {
            Some(v2::check_user::Search::UserId(id)) => UserLookup::Id(UserId::parse(id)?),
            Some(v2::check_user::Search::LoginName(name)) => {
                UserLookup::LoginName(LoginName::parse(name)?)
            }
            None => {
                return Err(invalid(
                    "checks.user: one of userId or loginName is required",
                ));
            }
        }),
    };
    let password = c
        .password
        .map(|p| Password::parse(p.password))
        .transpose()?;
    let mut unsupported = Vec::new();
    for (present, name) in [
        (c.web_auth_n.is_some(), "webAuthN"),
        (c.idp_intent.is_some(), "idpIntent"),
        (c.totp.is_some(), "totp"),
        (c.otp_sms.is_some(), "otpSms"),
        (c.otp_email.is_some(), "otpEmail"),
        (c.recovery_code.is_some(), "recoveryCode"),
    ] {
        if present {
            unsupported.push(name);
        }
    }
    Ok(Checks {
        user,
        password,
        unsupported,
    })
}

fn unsupported_challenges(challenges: Option<&v2::RequestChallenges>) -> Vec<&'static str> {
    let Some(c) = challenges else {
        return Vec::new();
    };
    [
        (c.web_auth_n.is_some(), "webAuthN"),
        (c.otp_sms.is_some(), "otpSms"),
        (c.otp_email.is_some(), "otpEmail"),
    ]
    .into_iter()
    .filter_map(|(present, name)| present.then_some(name))
    .collect()
}

fn metadata(
    map: std::collections::HashMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    if map.keys().any(|k| k.is_empty() || k.chars().count() > 200) {
        return Err(invalid("metadata: keys must be between 1 and 200 runes"));
    }
    Ok(map.into_iter().collect())
}

fn user_agent(ua: Option<v2::UserAgent>) -> UserAgent {
    let Some(ua) = ua else {
        return UserAgent::default();
    };
    UserAgent {
        fingerprint_id: ua.fingerprint_id,
        ip: ua.ip,
        description: ua.description,
        header: ua.header.into_iter().map(|(k, v)| (k, v.values)).collect(),
    }
}

fn lifetime(duration: Option<pbjson_types::Duration>) -> Result<Option<Duration>, Error> {
    let Some(d) = duration else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(Error::invalid_argument(
            error_ids::LIFETIME_INVALID,
            "lifetime must be greater than 0s",
        ));
    }
    Ok(Some(Duration::new(
        d.seconds.unsigned_abs(),
        d.nanos.unsigned_abs(),
    )))
}

fn comparison(method: i32) -> Result<TimeComparison, Error> {
    Ok(match TimestampQueryMethod::try_from(method) {
        Ok(TimestampQueryMethod::Equals) => TimeComparison::Equals,
        Ok(TimestampQueryMethod::Greater) => TimeComparison::Greater,
        Ok(TimestampQueryMethod::GreaterOrEquals) => TimeComparison::GreaterOrEquals,
        Ok(TimestampQueryMethod::Less) => TimeComparison::Less,
        Ok(TimestampQueryMethod::LessOrEquals) => TimeComparison::LessOrEquals,
        Err(_) => {
            return Err(invalid(
                "method: value must be one of the defined enum values",
            ));
        }
    })
}

fn search_query(query: v2::SearchQuery) -> Result<SearchQuery, Error> {
    use v2::search_query::Query;
    let query = query
        .query
        .ok_or_else(|| invalid("queries: each query must set one filter"))?;
    Ok(match query {
        Query::IdsQuery(q) => SearchQuery::Ids(q.ids),
        Query::UserIdQuery(q) => SearchQuery::UserId(q.id),
        Query::CreationDateQuery(q) => SearchQuery::CreationDate(
            comparison(q.method)?,
            q.creation_date
                .ok_or_else(|| invalid("creationDateQuery: creationDate is required"))?
                .into(),
        ),
        Query::CreatorQuery(q) => {
            if q.id.as_ref().is_some_and(|id| id.chars().count() > 200) {
                return Err(invalid("creatorQuery.id: at most 200 runes"));
            }
            SearchQuery::Creator(q.id)
        }
        Query::UserAgentQuery(q) => {
            if q.fingerprint_id
                .as_ref()
                .is_some_and(|id| id.chars().count() > 200)
            {
                return Err(invalid("userAgentQuery.fingerprintId: at most 200 runes"));
            }
            SearchQuery::UserAgent(q.fingerprint_id)
        }
        Query::ExpirationDateQuery(q) => SearchQuery::ExpirationDate(
            comparison(q.method)?,
            q.expiration_date
                .ok_or_else(|| invalid("expirationDateQuery: expirationDate is required"))?
                .into(),
        ),
    })
}

fn details(d: &Details) -> object::Details {
    object::Details {
        sequence: d.sequence,
        change_date: d.change_date.map(Into::into),
        resource_owner: d.resource_owner.clone(),
        creation_date: d.creation_date.map(Into::into),
    }
}

/// A session as the API shows it: factors only when verified, user agent only when set.
pub fn session_to_pb(s: &Session) -> v2::Session {
    let factors = s.factors.user.as_ref().map(|user| v2::Factors {
        user: Some(v2::UserFactor {
            verified_at: Some(user.verified_at.into()),
            id: user.id.as_str().to_owned(),
            login_name: user.login_name.clone(),
            display_name: user.display_name.clone(),
            organization_id: user.organization_id.clone(),
        }),
        password: s.factors.password_verified_at.map(|at| v2::PasswordFactor {
            verified_at: Some(at.into()),
        }),
        ..Default::default()
    });
    let ua = &s.user_agent;
    v2::Session {
        id: s.id.as_str().to_owned(),
        creation_date: Some(s.creation_date.into()),
        change_date: Some(s.change_date.into()),
        sequence: s.sequence,
        factors,
        metadata: s
            .metadata
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        user_agent: (!ua.is_empty()).then(|| v2::UserAgent {
            fingerprint_id: ua.fingerprint_id.clone(),
            ip: ua.ip.clone(),
            description: ua.description.clone(),
            header: ua
                .header
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v2::user_agent::HeaderValues { values: v.clone() },
                    )
                })
                .collect(),
        }),
        expiration_date: s.expiration.map(Into::into),
    }
}

/// Re-encodes a message as a wire-compatible message of another package.
fn transcode<A: Message, B: Message + Default>(from: &A) -> Result<B, Error> {
    B::decode(from.encode_to_vec().as_slice())
        .map_err(|e| Error::internal(error_ids::TRANSCODE_FAILED, e))
}

/// One RPC of one package version, as every transport calls it.
pub trait Rpc: Send + Sync + 'static {
    type Request: Message + Default + serde::de::DeserializeOwned + Send + 'static;
    type Response: Message + Default + serde::Serialize + Send + 'static;
    /// Fully qualified service name, e.g. `zitadel.session.v2.SessionService`.
    const SERVICE: &'static str;
    /// Method name, e.g. `CreateSession`.
    const METHOD: &'static str;

    fn call(
        api: &SessionApi,
        principal: Principal,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, Error>> + Send;
}

macro_rules! v2_rpc {
    ($name:ident, $method:literal, $req:ty, $resp:ty, $handler:ident) => {
        pub struct $name;

        impl Rpc for $name {
            type Request = $req;
            type Response = $resp;
            const SERVICE: &'static str = "zitadel.session.v2.SessionService";
            const METHOD: &'static str = $method;

            fn call(
                api: &SessionApi,
                principal: Principal,
                request: $req,
            ) -> impl Future<Output = Result<$resp, Error>> + Send {
                api.$handler(principal, request)
            }
        }
    };
}

macro_rules! v2beta_rpc {
    ($name:ident, $twin:ident, $req:ty, $resp:ty) => {
        pub struct $name;

        impl Rpc for $name {
            type Request = $req;
            type Response = $resp;
            const SERVICE: &'static str = "zitadel.session.v2beta.SessionService";
            const METHOD: &'static str = <$twin as Rpc>::METHOD;

            fn call(
                api: &SessionApi,
                principal: Principal,
                request: $req,
            ) -> impl Future<Output = Result<$resp, Error>> + Send {
                async move {
                    let request = transcode(&request)?;
                    let response = <$twin as Rpc>::call(api, principal, request).await?;
                    transcode(&response)
                }
            }
        }
    };
}

v2_rpc!(
    ListV2,
    "ListSessions",
    v2::ListSessionsRequest,
    v2::ListSessionsResponse,
    list_sessions
);
v2_rpc!(
    GetV2,
    "GetSession",
    v2::GetSessionRequest,
    v2::GetSessionResponse,
    get_session
);
v2_rpc!(
    CreateV2,
    "CreateSession",
    v2::CreateSessionRequest,
    v2::CreateSessionResponse,
    create_session
);
v2_rpc!(
    SetV2,
    "SetSession",
    v2::SetSessionRequest,
    v2::SetSessionResponse,
    set_session
);
v2_rpc!(
    DeleteV2,
    "DeleteSession",
    v2::DeleteSessionRequest,
    v2::DeleteSessionResponse,
    delete_session
);

v2beta_rpc!(
    ListV2beta,
    ListV2,
    v2beta::ListSessionsRequest,
    v2beta::ListSessionsResponse
);
v2beta_rpc!(
    GetV2beta,
    GetV2,
    v2beta::GetSessionRequest,
    v2beta::GetSessionResponse
);
v2beta_rpc!(
    CreateV2beta,
    CreateV2,
    v2beta::CreateSessionRequest,
    v2beta::CreateSessionResponse
);
v2beta_rpc!(
    SetV2beta,
    SetV2,
    v2beta::SetSessionRequest,
    v2beta::SetSessionResponse
);
v2beta_rpc!(
    DeleteV2beta,
    DeleteV2,
    v2beta::DeleteSessionRequest,
    v2beta::DeleteSessionResponse
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2beta_requests_transcode_to_v2() -> Result<(), Error> {
        let beta = v2beta::DeleteSessionRequest {
            session_id: "42".into(),
            session_token: Some("t".into()),
        };
        let v2: v2::DeleteSessionRequest = transcode(&beta)?;
        assert_eq!(v2.session_id, "42");
        assert_eq!(v2.session_token.as_deref(), Some("t"));
        Ok(())
    }

    #[test]
    fn negative_lifetimes_are_rejected() {
        assert!(
            lifetime(Some(pbjson_types::Duration {
                seconds: -1,
                nanos: 0
            }))
            .is_err()
        );
        assert!(
            lifetime(Some(pbjson_types::Duration {
                seconds: 0,
                nanos: -5
            }))
            .is_err()
        );
        assert_eq!(
            lifetime(Some(pbjson_types::Duration {
                seconds: 3600,
                nanos: 0
            }))
            .ok()
            .flatten(),
            Some(Duration::from_secs(3600))
        );
    }
}
