//! A client of the UserService (v2 subset) over native gRPC, Connect JSON and REST, with
//! answers and refusals normalised as for the SessionService ([`Outcome`]), and the steps the
//! second-factor tests share (TOTP codes, enrollment, checks).

use std::fmt;

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tonic::transport::Channel;

use std::time::Duration;

use sessiond::domain::Time;
use totp_rs::{Algorithm, Secret, TOTP};

use super::clients::{lower_camel, percent_encode};
use super::{
    Api, EVERY_PERMISSION, Failure, Outcome, Protocol, Reply, TestApp, Version,
    failure_from_connect, failure_from_rest, failure_from_status, grpc_request, ok, v2,
};
pub use sessiond::faces::pb::zitadel::user::v2 as user;

const SERVICE: &str = "zitadel.user.v2.UserService";

/// The protocols the UserService tests drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserProtocol {
    Grpc,
    ConnectJson,
    Rest,
}

impl UserProtocol {
    pub const ALL: [UserProtocol; 3] = [
        UserProtocol::Grpc,
        UserProtocol::ConnectJson,
        UserProtocol::Rest,
    ];
}

#[derive(Clone)]
pub struct UserApi {
    pub protocol: UserProtocol,
    base: String,
    http: reqwest::Client,
    channel: Channel,
}

impl fmt::Display for UserApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserService/{:?}", self.protocol)
    }
}

impl fmt::Debug for UserApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

type Client = user::user_service_client::UserServiceClient<Channel>;

/// One UserService RPC as the three protocols call it.
pub trait UserRpc {
    const METHOD: &'static str;
    type Req: Message + Default + Serialize + Send + 'static;
    type Resp: Message + Default + DeserializeOwned + Send + 'static;

    fn grpc(
        client: Client,
        request: tonic::Request<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Resp>, tonic::Status>>;
}

macro_rules! user_rpc {
    ($($spec:ident $method:literal $req:ident $resp:ident $call:ident;)+) => {
        $(
            pub struct $spec;

            impl UserRpc for $spec {
                const METHOD: &'static str = $method;
                type Req = user::$req;
                type Resp = user::$resp;

                async fn grpc(
                    mut client: Client,
                    request: tonic::Request<user::$req>,
                ) -> Result<tonic::Response<user::$resp>, tonic::Status> {
                    client.$call(request).await
                }
            }
        )+
    };
}

user_rpc! {
    AddHumanUser "AddHumanUser" AddHumanUserRequest AddHumanUserResponse add_human_user;
    RegisterTotp "RegisterTOTP" RegisterTotpRequest RegisterTotpResponse register_totp;
    VerifyTotp "VerifyTOTPRegistration" VerifyTotpRegistrationRequest VerifyTotpRegistrationResponse verify_totp_registration;
    RemoveTotp "RemoveTOTP" RemoveTotpRequest RemoveTotpResponse remove_totp;
    GenerateCodes "GenerateRecoveryCodes" GenerateRecoveryCodesRequest GenerateRecoveryCodesResponse generate_recovery_codes;
    RemoveCodes "RemoveRecoveryCodes" RemoveRecoveryCodesRequest RemoveRecoveryCodesResponse remove_recovery_codes;
    ListMethods "ListAuthenticationMethodTypes" ListAuthenticationMethodTypesRequest ListAuthenticationMethodTypesResponse list_authentication_method_types;
    AddOtpSms "AddOTPSMS" AddOtpsmsRequest AddOtpsmsResponse add_otpsms;
    RemoveOtpSms "RemoveOTPSMS" RemoveOtpsmsRequest RemoveOtpsmsResponse remove_otpsms;
    AddOtpEmail "AddOTPEmail" AddOtpEmailRequest AddOtpEmailResponse add_otp_email;
    RemoveOtpEmail "RemoveOTPEmail" RemoveOtpEmailRequest RemoveOtpEmailResponse remove_otp_email;
    RegisterPasskey "RegisterPasskey" RegisterPasskeyRequest RegisterPasskeyResponse register_passkey;
    VerifyPasskey "VerifyPasskeyRegistration" VerifyPasskeyRegistrationRequest VerifyPasskeyRegistrationResponse verify_passkey_registration;
    ListPasskeys "ListPasskeys" ListPasskeysRequest ListPasskeysResponse list_passkeys;
    RemovePasskey "RemovePasskey" RemovePasskeyRequest RemovePasskeyResponse remove_passkey;
    PasskeyLink "CreatePasskeyRegistrationLink" CreatePasskeyRegistrationLinkRequest CreatePasskeyRegistrationLinkResponse create_passkey_registration_link;
}

impl TestApp {
    pub fn user_api(&self, protocol: UserProtocol) -> UserApi {
        UserApi {
            protocol,
            base: self.base.clone(),
            http: self.http.clone(),
            channel: self.channel.clone(),
        }
    }

    pub fn user_apis(&self) -> Vec<UserApi> {
        UserProtocol::ALL
            .into_iter()
            .map(|p| self.user_api(p))
            .collect()
    }
}

impl UserApi {
    /// ListAuthenticationMethodTypes of `user`.
    pub async fn methods(
        &self,
        auth: Option<&str>,
        user: &str,
    ) -> Outcome<user::ListAuthenticationMethodTypesResponse> {
        self.call::<ListMethods>(
            auth,
            user::ListAuthenticationMethodTypesRequest {
                user_id: user.into(),
                domain_query: None,
            },
        )
        .await
    }

    pub async fn call<R: UserRpc>(&self, auth: Option<&str>, request: R::Req) -> Outcome<R::Resp> {
        match self.protocol {
            UserProtocol::Grpc => R::grpc(
                Client::new(self.channel.clone()),
                grpc_request(request, auth),
            )
            .await
            .map(|r| Reply {
                message: r.into_inner(),
                http_status: None,
                json: None,
            })
            .map_err(|s| failure_from_status(&s)),
            UserProtocol::ConnectJson => {
                let mut builder = self
                    .http
                    .post(format!("{}/{SERVICE}/{}", self.base, R::METHOD))
                    .header("content-type", "application/json")
                    .json(&request);
                if let Some(auth) = auth {
                    builder = builder.header("authorization", auth);
                }
                let response = builder.send().await.expect("Connect request");
                self.answer::<R::Resp>(response, failure_from_connect).await
            }
            UserProtocol::Rest => {
                let rule = sessiond::faces::SERVICES
                    .iter()
                    .filter(|s| s.name == SERVICE)
                    .flat_map(|s| s.rpcs)
                    .find(|r| r.method == R::METHOD)
                    .expect("the RPC is listed")
                    .http;
                let mut json = serde_json::to_value(&request).expect("request JSON");
                let mut path = String::new();
                for segment in rule.path.split('/').filter(|s| !s.is_empty()) {
                    path.push('/');
                    match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(field) => {
                            let value = json
                                .as_object_mut()
                                .and_then(|m| m.remove(&lower_camel(field)))
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            path.push_str(&percent_encode(&value));
                        }
                        None => path.push_str(segment),
                    }
                }
                let verb =
                    reqwest::Method::from_bytes(rule.verb.as_str().as_bytes()).expect("verb");
                let mut builder = self.http.request(verb, format!("{}{path}", self.base));
                if rule.body {
                    builder = builder.json(&json);
                } else if let Some(fields) = json.as_object() {
                    let query: Vec<(String, String)> = fields
                        .iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect();
                    builder = builder.query(&query);
                }
                if let Some(auth) = auth {
                    builder = builder.header("authorization", auth);
                }
                let response = builder.send().await.expect("REST request");
                self.answer::<R::Resp>(response, failure_from_rest).await
            }
        }
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
        failure: fn(u16, &[u8]) -> Failure,
    ) -> Outcome<T> {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        if status == 200 {
            let json: Value = serde_json::from_slice(&bytes).expect("JSON answer");
            let message = serde_json::from_value(json.clone()).expect("answer decodes");
            Ok(Reply {
                message,
                http_status: Some(status),
                json: Some(json),
            })
        } else {
            Err(failure(status, &bytes))
        }
    }
}

/// The password of the users the second-factor tests create with one.
pub const FACTOR_PASSWORD: &str = "correct horse battery staple";

/// The TOTP code of a base32 secret at `at`.
pub fn totp_code(secret: &str, at: Time) -> String {
    let seed = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32 secret");
    let seconds = u64::try_from(at.unix_micros() / 1_000_000).expect("after 1970");
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, seed).generate(seconds)
}

/// The SessionService client speaking the protocol of a UserService client.
pub fn session_api(app: &TestApp, api: &UserApi) -> Api {
    let protocol = match api.protocol {
        UserProtocol::Grpc => Protocol::Grpc,
        UserProtocol::ConnectJson => Protocol::ConnectJson,
        UserProtocol::Rest => Protocol::Rest,
    };
    app.api(protocol, Version::V2)
}

/// A bearer with every permission.
pub fn operator(app: &TestApp) -> String {
    app.bearer("operator", EVERY_PERMISSION)
}

pub fn with_totp(mut checks: v2::Checks, code: &str) -> v2::Checks {
    checks.totp = Some(v2::CheckTotp { code: code.into() });
    checks
}

pub fn with_recovery(mut checks: v2::Checks, code: &str) -> v2::Checks {
    checks.recovery_code = Some(v2::CheckRecoveryCode { code: code.into() });
    checks
}

pub fn create(checks: v2::Checks) -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        checks: Some(checks),
        ..Default::default()
    }
}

pub fn set(session_id: &str, checks: v2::Checks) -> v2::SetSessionRequest {
    v2::SetSessionRequest {
        session_id: session_id.into(),
        checks: Some(checks),
        ..Default::default()
    }
}

pub fn with_password(checks: v2::Checks, password: &str) -> v2::Checks {
    v2::Checks {
        password: Some(v2::CheckPassword {
            password: password.into(),
        }),
        ..checks
    }
}

/// Generates `count` recovery codes for `user` (0: the default number) and returns them.
pub async fn generate_recovery_codes(
    api: &UserApi,
    auth: &str,
    user: &str,
    count: i32,
) -> Vec<String> {
    ok(
        api,
        api.call::<GenerateCodes>(
            Some(auth),
            user::GenerateRecoveryCodesRequest {
                user_id: user.into(),
                count,
            },
        )
        .await,
    )
    .message
    .recovery_codes
}

/// Enrolls TOTP for `user` through `api` and returns the secret; the clock then moves one
/// step on, so the code that verified the enrollment is not the current one.
pub async fn enroll_totp(app: &TestApp, api: &UserApi, auth: &str, user: &str) -> String {
    let registered = ok(
        api,
        api.call::<RegisterTotp>(
            Some(auth),
            user::RegisterTotpRequest {
                user_id: user.into(),
            },
        )
        .await,
    )
    .message;
    let code = totp_code(&registered.secret, app.now());
    ok(
        api,
        api.call::<VerifyTotp>(
            Some(auth),
            user::VerifyTotpRegistrationRequest {
                user_id: user.into(),
                code,
            },
        )
        .await,
    );
    app.advance(Duration::from_secs(30));
    registered.secret
}

pub async fn session_of(app: &TestApp, api: &Api, id: &str) -> v2::Session {
    let got = ok(
        api,
        api.get(
            Some(&operator(app)),
            v2::GetSessionRequest {
                session_id: id.into(),
                session_token: None,
            },
        )
        .await,
    );
    got.message.session.expect("a session")
}
